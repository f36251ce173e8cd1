"""The Authenticator: right answers, identical failures, throttling, no secrets.

Throttling tests inject a recording ``sleep`` and a ManualClock, so they observe
the delays without waiting, and a cheap ``verify`` so they do not run scrypt in
loops. A few tests keep the real verification to prove the production path.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import time

import pytest

from services.common.auth import (
    VERIFY_THREADS,
    Authenticator,
    Role,
    UserStore,
    peer_host,
    verify_password,
)
from services.common.clock import ManualClock
from services.common.logs import setup_logging
from tests.common.test_users import fast_hash

SECRET = "hunter2-very-secret"


def make_store() -> UserStore:
    store = UserStore()
    store.add_user("alice", Role.PARTICIPANT, password_hash=fast_hash(SECRET))
    store.add_user("root", Role.ADMIN, password_hash=fast_hash("root-pw"))
    return store


class Recorder:
    """Stands in for asyncio.sleep: remembers delays, advances the manual clock."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.clock.advance(seconds)


class CountingVerify:
    """A cheap verify that records which hashes it was asked about."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, encoded: str, password: str) -> bool:
        self.calls.append(encoded)
        return verify_password(encoded, password)


def fast_verify(encoded: str, password: str) -> bool:
    """Like verify_password, but skips the dummy scrypt run made for unknown users."""
    return not encoded.startswith("scrypt$") and verify_password(encoded, password)


def make_auth(clock: ManualClock, **kwargs: object) -> tuple[Authenticator, Recorder]:
    sleep = Recorder(clock)
    kwargs.setdefault("verify", fast_verify)
    auth = Authenticator(make_store(), clock, sleep=sleep, **kwargs)  # type: ignore[arg-type]
    return auth, sleep


async def test_right_password_returns_the_user() -> None:
    auth, _ = make_auth(ManualClock())
    user = await auth.authenticate("alice", SECRET, "127.0.0.1:5000")
    assert user is not None
    assert (user.name, user.role) == ("alice", Role.PARTICIPANT)


async def test_unknown_user_and_wrong_password_take_the_same_path() -> None:
    verify = CountingVerify()
    auth, _ = make_auth(ManualClock(), verify=verify)
    assert await auth.authenticate("alice", "wrong", "10.0.0.1:1") is None
    assert await auth.authenticate("mallory", SECRET, "10.0.0.1:2") is None
    # Both ran one (equally expensive) verification: the unknown user against the
    # dummy scrypt hash, so the answer time does not tell which usernames exist.
    assert len(verify.calls) == 2
    assert verify.calls[1].startswith("scrypt$16384$8$1$")
    # And both count towards throttling in exactly the same way.
    assert auth.throttle_delay("alice", "10.0.0.2:1") == 0
    assert auth.tracked_count == 3  # user alice, user mallory, host 10.0.0.1


async def test_real_verification_runs_off_the_event_loop() -> None:
    loop_thread = threading.get_ident()
    threads: list[int] = []

    def verify(encoded: str, password: str) -> bool:
        threads.append(threading.get_ident())
        return verify_password(encoded, password)

    auth = Authenticator(make_store(), ManualClock(), verify=verify)
    assert await auth.authenticate("root", "root-pw", "127.0.0.1:1") is not None
    assert threads and threads[0] != loop_thread


async def test_unknown_user_costs_a_real_scrypt_run() -> None:
    auth = Authenticator(make_store(), ManualClock())
    started = time.perf_counter()
    assert await auth.authenticate("nobody", "x", "127.0.0.1:1") is None
    assert time.perf_counter() - started > 0.005  # dummy scrypt, not an early return


async def test_delays_grow_exponentially_and_are_capped() -> None:
    clock = ManualClock()
    auth, sleep = make_auth(clock, max_failures=3, base_delay_s=0.5, max_delay_s=2.0)
    for _ in range(7):
        assert await auth.authenticate("alice", "wrong", "10.0.0.1:1") is None
    # No delay for the first three failures, then 0.5, 1, 2, 2 (capped).
    assert sleep.delays == [0.5, 1.0, 2.0, 2.0]
    assert auth.throttle_delay("alice", "10.0.0.9:1") == 2.0


async def test_throttled_correct_password_waits_then_succeeds_and_resets() -> None:
    clock = ManualClock()
    auth, sleep = make_auth(clock, max_failures=2, base_delay_s=0.5, max_delay_s=4.0)
    for _ in range(2):
        await auth.authenticate("alice", "wrong", "10.0.0.1:1")
    user = await auth.authenticate("alice", SECRET, "10.0.0.2:1")
    assert user is not None
    assert sleep.delays == [0.5]  # waited even though the password was right
    assert auth.throttle_delay("alice", "10.0.0.3:1") == 0.0  # success reset the counter
    await auth.authenticate("alice", SECRET, "10.0.0.3:1")
    assert sleep.delays == [0.5]


async def test_success_does_not_reset_the_host_counter() -> None:
    clock = ManualClock()
    auth, _ = make_auth(clock, max_failures=100, max_host_failures=3)
    for name in ("u1", "u2", "u3"):
        await auth.authenticate(name, "guess", "10.0.0.1:1")
    assert await auth.authenticate("root", "root-pw", "10.0.0.1:2") is not None
    assert auth.throttle_delay("u4", "10.0.0.1:3") > 0


async def test_per_host_throttling_across_usernames() -> None:
    clock = ManualClock()
    auth, sleep = make_auth(clock, max_failures=100, max_host_failures=3, base_delay_s=1.0)
    for i in range(3):
        await auth.authenticate(f"user{i}", "guess", "10.0.0.1:1000")
    assert sleep.delays == []
    await auth.authenticate("user9", "guess", "10.0.0.1:2000")  # same host, new port
    assert sleep.delays == [1.0]
    await auth.authenticate("user9", "guess", "10.0.0.2:1000")  # another host
    assert sleep.delays == [1.0]


async def test_default_host_threshold_is_higher_than_the_user_one() -> None:
    auth, _ = make_auth(ManualClock(), max_failures=2)
    for i in range(4):
        await auth.authenticate(f"user{i}", "guess", "127.0.0.1:1")
    # One host carries many users (every demo bot is on 127.0.0.1).
    assert auth.throttle_delay("someone-else", "127.0.0.1:9") == 0.0


async def test_failures_expire_after_the_window() -> None:
    clock = ManualClock()
    auth, sleep = make_auth(clock, max_failures=2, window_s=60.0)
    for _ in range(2):
        await auth.authenticate("alice", "wrong", "10.0.0.1:1")
    assert auth.throttle_delay("alice", "10.0.0.1:1") > 0
    clock.advance(60.5)
    assert auth.throttle_delay("alice", "10.0.0.1:1") == 0
    assert auth.tracked_count == 0  # expired records are dropped, not just ignored
    assert sleep.delays == []


async def test_failure_memory_is_bounded() -> None:
    clock = ManualClock()
    auth, _ = make_auth(clock, max_tracked=10)
    for i in range(50):
        await auth.authenticate(f"spray{i}", "guess", f"10.0.{i}.1:1")
        clock.advance(0.01)
    assert auth.tracked_count <= 10
    # The most recent failures are the ones kept.
    assert auth.throttle_delay("spray49", "1.1.1.1:1") == 0  # one failure: below threshold
    # Huge usernames are truncated before being used as keys.
    await auth.authenticate("x" * 4000, "guess", "10.9.9.9:1")
    assert auth.tracked_count <= 10


async def test_concurrent_verifications_are_bounded() -> None:
    running = 0
    peak = 0
    lock = threading.Lock()

    def slow_verify(encoded: str, password: str) -> bool:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        return False

    auth = Authenticator(
        make_store(), ManualClock(), verify=slow_verify, max_concurrent_verifications=2
    )
    results = await asyncio.gather(
        *(auth.authenticate(f"u{i}", "x", f"10.0.0.{i}:1") for i in range(6))
    )
    assert results == [None] * 6
    assert peak == 2


async def test_verifications_reuse_a_few_threads_of_their_own() -> None:
    """Every thread that runs scrypt keeps a 16 MiB buffer in its malloc arena:
    many logins, from several authenticators, must share the same few threads."""
    names: set[str] = set()

    def verify(encoded: str, password: str) -> bool:
        names.add(threading.current_thread().name)
        time.sleep(0.002)
        return False

    authenticators = [
        Authenticator(make_store(), ManualClock(), verify=verify, max_concurrent_verifications=4)
        for _ in range(3)
    ]
    await asyncio.gather(
        *(
            auth.authenticate(f"u{i}", "x", f"10.0.{n}.{i}:1")
            for n, auth in enumerate(authenticators)
            for i in range(12)
        )
    )
    assert names and all(name.startswith("optivex-verify") for name in names)
    assert len(names) <= VERIFY_THREADS


@pytest.mark.usefixtures("restore_logging")
async def test_no_secrets_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    stream = io.StringIO()
    setup_logging("DEBUG", "risk_gateway", stream=stream)
    caplog.set_level(logging.DEBUG)
    auth, _ = make_auth(ManualClock(), max_failures=1)
    await auth.authenticate("alice", SECRET + "x", "10.0.0.1:1")
    await auth.authenticate("mallory", SECRET, "10.0.0.1:1")
    await auth.authenticate("alice", SECRET, "10.0.0.1:1")
    assert "login failed for user 'alice'" in caplog.text
    assert "login ok: user 'alice' (participant)" in caplog.text
    for text in (caplog.text, stream.getvalue()):
        assert SECRET not in text
        assert "pbkdf2_sha256$" not in text  # hashes are not logged either


async def test_hostile_usernames_cannot_forge_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    auth, _ = make_auth(ManualClock())
    await auth.authenticate("eve\nINFO optivex.auth: login ok", "x", "10.0.0.1:1")
    assert "'eve\\nINFO optivex.auth: login ok'" in caplog.text


@pytest.mark.parametrize(
    ("peer", "host"),
    [
        ("127.0.0.1:5000", "127.0.0.1"),
        ("[::1]:5000", "::1"),
        ("::1", "::1"),
        ("example.org", "example.org"),
        ("example.org:1", "example.org"),
    ],
)
def test_peer_host(peer: str, host: str) -> None:
    assert peer_host(peer) == host


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Authenticator(make_store(), ManualClock(), max_failures=0)
    with pytest.raises(ValueError):
        Authenticator(make_store(), ManualClock(), base_delay_s=2.0, max_delay_s=1.0)
