"""Login checking: password verification off the event loop, with throttling.

The wire layer calls :meth:`Authenticator.authenticate` for every
``LOGIN_REQUEST`` and then decides, from the returned :class:`User`'s role,
whether this port admits it (PROTOCOL.md section 3). This module only answers
"is this the right password for this user?", and answers it carefully:

* **Off the loop.** One scrypt verification takes ~40-50 ms of CPU; run inline it
  would stall every connection of the service. It runs in a worker thread, and at
  most ``max_concurrent_verifications`` run at once, so a flood of logins costs a
  bounded amount of CPU and memory (scrypt needs 16 MiB per run) and cannot starve
  the matcher. The threads are a small pool of the process's own
  (:data:`VERIFY_THREADS`), not asyncio's default executor: glibc keeps a freed
  scrypt buffer in the arena of the thread that used it, so every distinct
  thread that ever verified a password held on to 16 MiB (measured: the first
  ~120 logins grew a service by ~96 MiB through the default executor's threads).
* **Same path for every failure.** An unknown user is verified against a dummy
  hash of the same cost, and is throttled exactly like a known one, so neither
  timing nor throttling reveals which usernames exist.
* **Throttled.** After ``max_failures`` failed attempts for one username within
  ``window_s`` seconds (or ``max_host_failures`` from one peer host), every further
  attempt for it waits ``base_delay_s * 2**k`` (capped at ``max_delay_s``) before
  it is answered -- correct or not, so the delay cannot be used as an oracle. A
  success clears that username's failures (not the host's: one known password
  must not launder a host that is guessing others). The per-host threshold is
  higher by default because one host legitimately carries many users (the demo
  runs every bot on 127.0.0.1). Delays are capped well below the 10 s login
  timeout so a throttled legitimate user still gets in.
* **Bounded memory.** Failure records expire after ``window_s`` and at most
  ``max_tracked`` keys are kept (least recently failed dropped first).
* **No secrets in logs.** Passwords and hashes are never logged; usernames are
  logged with ``%r`` so a hostile name cannot forge log lines. Failures are logged
  at INFO (with the username, which the wire layer does not know), successes only
  at DEBUG because the wire layer already logs each session's login.

The names of :mod:`services.common.users` are re-exported so most callers only
need this module.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from services.common.clock import Clock
from services.common.users import (
    SERVICE_ACCOUNT,
    Role,
    User,
    UserStore,
    UserStoreError,
    generate_service_password,
    hash_password,
    load_user_store,
    verify_password,
)

__all__ = [
    "SERVICE_ACCOUNT",
    "Authenticator",
    "Role",
    "User",
    "UserStore",
    "UserStoreError",
    "generate_service_password",
    "hash_password",
    "load_user_store",
    "peer_host",
    "verify_password",
]

# An scrypt hash (same parameters as hash_password) of a random password nobody
# knows. Unknown usernames are verified against it so that they cost as much time
# as known ones. Precomputed so importing this module stays cheap.
_DUMMY_HASH = "scrypt$16384$8$1$FtETj59VFrJUAGiT+CMNuw$4JNVoDUwnBr+iuFLMk1+Np82n52uMgr88zJpovojkNQ"

# Usernames longer than any valid one are unknown anyway; truncating them before
# using them as throttle keys bounds the memory one record can take.
_MAX_KEY_CHARS = 128
# Beyond this many doublings the delay is at its cap whatever the settings.
_MAX_DOUBLINGS = 62

SleepFn = Callable[[float], Awaitable[None]]
VerifyFn = Callable[[str, str], bool]


def peer_host(peer: str) -> str:
    """The host part of a peer address: ``"1.2.3.4:5"`` -> ``"1.2.3.4"``.

    Accepts ``host:port``, ``[v6]:port``, a bare IPv6 address or a bare host, so
    callers can pass whatever their transport reports.
    """
    if peer.startswith("["):
        end = peer.find("]")
        return peer[1:end] if end > 0 else peer
    if peer.count(":") == 1:
        return peer.rsplit(":", 1)[0]
    return peer


VERIFY_THREADS: Final = 2
"""Threads that verify passwords, shared by every authenticator of the process.

Two keep both cores of a small machine busy during a login storm; more would
only add arenas that each keep a 16 MiB scrypt buffer (module docstring)."""

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _verify_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(VERIFY_THREADS, thread_name_prefix="optivex-verify")
        return _pool


class Authenticator:
    """Checks username/password pairs for one service; see the module docstring.

    ``sleep`` and ``verify`` are injectable so tests can observe delays without
    waiting and avoid paying for scrypt in loops; production leaves them alone.
    """

    def __init__(
        self,
        store: UserStore,
        clock: Clock,
        *,
        max_failures: int = 5,
        window_s: float = 60.0,
        base_delay_s: float = 0.5,
        max_delay_s: float = 5.0,
        max_host_failures: int | None = None,
        max_tracked: int = 10_000,
        max_concurrent_verifications: int = 2,
        sleep: SleepFn = asyncio.sleep,
        verify: VerifyFn = verify_password,
        logger: logging.Logger | None = None,
    ) -> None:
        if max_failures < 1 or window_s <= 0 or max_tracked < 1:
            raise ValueError("max_failures, window_s and max_tracked must be positive")
        if base_delay_s < 0 or max_delay_s < base_delay_s:
            raise ValueError("need 0 <= base_delay_s <= max_delay_s")
        if max_concurrent_verifications < 1:
            raise ValueError("max_concurrent_verifications must be at least 1")
        self._store = store
        self._clock = clock
        self._max_failures = max_failures
        self._max_host_failures = (
            max_host_failures if max_host_failures is not None else 4 * max_failures
        )
        self._window_s = window_s
        self._base_delay_s = base_delay_s
        self._max_delay_s = max_delay_s
        self._max_tracked = max_tracked
        self._history = max(self._max_failures, self._max_host_failures) + _MAX_DOUBLINGS
        self._sleep = sleep
        self._verify = verify
        self._log = logger if logger is not None else logging.getLogger("optivex.auth")
        # Created lazily: a Semaphore binds to the running loop on first use, and an
        # Authenticator may be built before the loop starts.
        self._slots: asyncio.Semaphore | None = None
        self._max_slots = max_concurrent_verifications
        # key -> monotonic times of recent failures; ordered by last failure.
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()

    @property
    def store(self) -> UserStore:
        """The accounts this authenticator checks against."""
        return self._store

    @property
    def tracked_count(self) -> int:
        """How many usernames and hosts currently have failure records."""
        return len(self._failures)

    async def authenticate(self, username: str, password: str, peer: str) -> User | None:
        """The account if ``password`` is right for ``username``, else None.

        ``peer`` is the client's address (``host:port``), used for per-host
        throttling and logs. May wait (see throttling) before answering.
        """
        user_key = ("user", username[:_MAX_KEY_CHARS])
        host_key = ("host", peer_host(peer)[:_MAX_KEY_CHARS])
        delay = self.throttle_delay(username, peer)
        if delay > 0:
            self._log.debug(
                "delaying login for user %r from %s by %.2f s after repeated failures",
                username[:_MAX_KEY_CHARS],
                peer,
                delay,
            )
            await self._sleep(delay)

        user = self._store.get(username)
        encoded = user.password_hash if user is not None else _DUMMY_HASH
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max_slots)
        async with self._slots:
            matches = await asyncio.get_running_loop().run_in_executor(
                _verify_pool(), self._verify, encoded, password
            )

        now = self._clock.monotonic()
        if matches and user is not None:
            self._failures.pop(user_key, None)
            self._log.debug("login ok: user %r (%s) from %s", user.name, user.role, peer)
            return user
        self._record_failure(user_key, now, self._max_failures, what="user")
        self._record_failure(host_key, now, self._max_host_failures, what="host")
        self._log.info("login failed for user %r from %s", username[:_MAX_KEY_CHARS], peer)
        return None

    def throttle_delay(self, username: str, peer: str) -> float:
        """Seconds the next attempt for ``username`` from ``peer`` would wait."""
        now = self._clock.monotonic()
        user_count = self._recent(("user", username[:_MAX_KEY_CHARS]), now)
        host_count = self._recent(("host", peer_host(peer)[:_MAX_KEY_CHARS]), now)
        return max(
            self._delay_for(user_count, self._max_failures),
            self._delay_for(host_count, self._max_host_failures),
        )

    def _delay_for(self, count: int, threshold: int) -> float:
        if count < threshold:
            return 0.0
        doublings = min(count - threshold, _MAX_DOUBLINGS)
        return min(self._max_delay_s, self._base_delay_s * 2.0**doublings)

    def _recent(self, key: tuple[str, str], now: float) -> int:
        times = self._failures.get(key)
        if times is None:
            return 0
        cutoff = now - self._window_s
        while times and times[0] <= cutoff:
            times.popleft()
        if not times:
            del self._failures[key]
            return 0
        return len(times)

    def _record_failure(self, key: tuple[str, str], now: float, threshold: int, what: str) -> None:
        count = self._recent(key, now)
        times = self._failures.get(key)
        if times is None:
            times = self._failures[key] = deque(maxlen=self._history)
        times.append(now)
        self._failures.move_to_end(key)
        if count + 1 == threshold:
            self._log.warning(
                "%d failed logins for %s %r within %g s; further attempts are delayed",
                threshold,
                what,
                key[1],
                self._window_s,
            )
        self._prune(now)

    def _prune(self, now: float) -> None:
        """Drop expired records, then the least recently failed beyond the cap.

        The dict is ordered by last failure, so expired records sit at the front.
        """
        cutoff = now - self._window_s
        while self._failures:
            key, times = next(iter(self._failures.items()))
            if times and times[-1] > cutoff and len(self._failures) <= self._max_tracked:
                break
            del self._failures[key]
