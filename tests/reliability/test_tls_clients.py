"""The command-line clients over TLS: ``optivex bot``, ``watch`` and ``load``.

Against the in-process exchange of ``conftest.py`` whose Info and Risk Gateway
speak TLS with a self-signed certificate: each tool, given ``--tls-ca-file``,
gets its answers; given nothing (a plaintext client at a TLS port, which the
server drops without a word), or a TLS setting at a plain port, or a
certificate it does not trust, it stops with a message that says what to
change, within seconds, instead of retrying forever.  The bots and the
multi-process load run as real processes, so the options travel the way a
user's do (``--processes`` passing them on to its children included).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from clients import load
from clients.load_run import LoadRun
from clients.tls_args import add_tls_options, ssl_context, tls_mismatch
from clients.watch import WatchApp, build_app
from services.common.wire.client import client_ssl_context
from services.common.wire.server import server_ssl_context
from tests.reliability.inprocess import InProcessExchange
from tests.support.tls import Certificate, make_certificate, make_issued_certificate

ROOT = Path(__file__).resolve().parents[2]


def tls_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="t", exit_on_error=False)
    add_tls_options(parser)
    return parser


# ---------------------------------------------------------------------- the options


def test_the_options_make_the_context(tmp_path: Path, certificate: Certificate) -> None:
    parser = tls_parser()
    assert ssl_context(parser.parse_args([])) is None  # no option: plain TCP
    system = ssl_context(parser.parse_args(["--tls"]))
    assert system is not None and system.verify_mode == ssl.CERT_REQUIRED and system.check_hostname
    other = make_certificate(tmp_path, "other")
    both = ssl_context(
        parser.parse_args(
            ["--tls-ca-file", str(certificate.cert), "--tls-ca-file", str(other.cert)]
        )
    )
    assert both is not None and both.cert_store_stats()["x509"] == 2  # implies TLS, both trusted
    assert both.minimum_version >= ssl.TLSVersion.TLSv1_2 and both.check_hostname


async def test_trusting_the_server_certificate_works_when_a_ca_issued_it(tmp_path: Path) -> None:
    """What the launcher relies on: ``--tls-ca-file`` with the service's own
    certificate, which ``client_ssl_context`` alone refuses when a CA issued it
    ("unable to get local issuer certificate")."""
    leaf, ca = make_issued_certificate(tmp_path)
    server_context = server_ssl_context(str(leaf.cert), str(leaf.key))
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    parser = tls_parser()
    try:
        for trusted in (leaf.cert, ca):
            context = ssl_context(parser.parse_args(["--tls-ca-file", str(trusted)]))
            _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
            writer.transport.abort()
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.open_connection("127.0.0.1", port, ssl=client_ssl_context(str(leaf.cert)))
    finally:
        server.close()


def test_an_unreadable_ca_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = tls_parser()
    missing = parser.parse_args(["--tls-ca-file", str(tmp_path / "missing.pem")])
    with pytest.raises(SystemExit) as exited:
        ssl_context(missing, parser)
    assert exited.value.code == 2
    assert "--tls-ca-file" in capsys.readouterr().err
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ValueError, match=r"garbage\.pem: cannot use it"):
        ssl_context(parser.parse_args(["--tls-ca-file", str(garbage)]))


async def test_tls_mismatch_names_the_cause(
    tls_exchange: InProcessExchange, certificate: Certificate
) -> None:
    ports = tls_exchange.ports
    trusted = client_ssl_context(str(certificate.cert))
    info = ("127.0.0.1", ports["info"].port)
    plain = ("127.0.0.1", ports["admin"].port)  # Admin stays plain TCP
    reason = await tls_mismatch([info], None)
    assert reason == (
        f"port 127.0.0.1:{info[1]} speaks TLS and this client connected in plain TCP: "
        "add --tls-ca-file FILE (the server's certificate or its CA) or --tls"
    )
    reason = await tls_mismatch([plain], trusted)
    assert reason is not None and reason.startswith(f"port 127.0.0.1:{plain[1]} does not speak TLS")
    reason = await tls_mismatch([info], client_ssl_context())  # the system store
    assert reason is not None and "failed verification" in reason and "self-signed" in reason
    assert await tls_mismatch([info, ("127.0.0.1", ports["risk_gateway"].port)], trusted) is None
    assert await tls_mismatch([plain], None) is None
    await tls_exchange.healthy()  # the probes left nothing behind


async def test_a_silent_port_proves_nothing(certificate: Certificate) -> None:
    """A port that accepts and never answers (a frozen service) is no TLS mismatch:
    a plain port refuses a TLS hello at once, so only a refusal counts."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        context = client_ssl_context(str(certificate.cert))
        assert await tls_mismatch([("127.0.0.1", port)], context, timeout_s=0.3) is None
    finally:
        server.close()


# ---------------------------------------------------------------------- optivex watch


async def _run_until(app: WatchApp, condition: Callable[[], bool], what: str) -> None:
    async with app.run_test(size=(120, 30)) as pilot:
        for _ in range(400):
            if condition():
                break
            await pilot.pause(0.025)
        else:
            raise AssertionError(f"the viewer never showed {what} (failure: {app.failure})")
        if app.return_code is None:
            await pilot.press("q")


async def test_watch_over_tls(tls_exchange: InProcessExchange, certificate: Certificate) -> None:
    port = str(tls_exchange.ports["info"].port)
    app = build_app(["TLS", "--port", port, "--tls-ca-file", str(certificate.cert)])
    await _run_until(
        app, lambda: app.selected == "TLS" and app.states["TLS"].depth is not None, "TLS's book"
    )
    assert app.failure is None and app.return_code in (0, None)


async def test_watch_without_tls_at_a_tls_port_stops_with_the_reason(
    tls_exchange: InProcessExchange,
) -> None:
    app = build_app(["--port", str(tls_exchange.ports["info"].port)])
    await _run_until(app, lambda: app.failure is not None, "a failure")
    assert app.failure is not None and "speaks TLS" in app.failure
    assert app.return_code == 1


# ---------------------------------------------------------------------- optivex bot


async def run_bot(exchange: InProcessExchange, *args: str) -> tuple[int, str]:
    """``optivex bot noise`` as a process (bounded by its own options); (status, log)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        "bot",
        "noise",
        "--gateway-port",
        str(exchange.ports["risk_gateway"].port),
        "--info-port",
        str(exchange.ports["info"].port),
        "--seed",
        "7",
        *args,
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(process.communicate(), 30)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError("the bot did not stop by itself") from None
    assert process.returncode is not None
    return process.returncode, err.decode()


async def test_bot_trades_over_tls(
    tls_exchange: InProcessExchange, certificate: Certificate
) -> None:
    status, log = await run_bot(
        tls_exchange,
        "TLS",
        "--tls-ca-file",
        str(certificate.cert),
        "--rate",
        "50",
        "--max-orders",
        "5",
    )
    assert status == 0, log
    assert "orders=5" in log and "rejected=0" in log, log


async def test_bot_without_tls_at_a_tls_port_exits_with_the_reason(
    tls_exchange: InProcessExchange,
) -> None:
    status, log = await run_bot(tls_exchange, "TLS", "--max-orders", "1")
    assert status == 1, log
    gateway, info = tls_exchange.ports["risk_gateway"].port, tls_exchange.ports["info"].port
    assert f"ports 127.0.0.1:{gateway} and 127.0.0.1:{info} speak TLS" in log, log
    assert "add --tls-ca-file FILE" in log, log


# ---------------------------------------------------------------------- optivex load


async def test_load_step_over_tls(
    tls_exchange: InProcessExchange, certificate: Certificate
) -> None:
    ports = tls_exchange.ports
    argv = [
        "--port", str(ports["risk_gateway"].port),
        "--info-port", str(ports["info"].port),
        "--connections", "2",
        "--subscribers", "1",
        "--tls-ca-file", str(certificate.cert),
    ]  # fmt: skip
    options = load.load_options(load.build_parser().parse_args(argv))
    assert options.ssl is not None
    run = LoadRun(options)
    await run.setup()
    try:
        step = await run.step(300.0, 0.5, None, None)
    finally:
        await run.close()
    assert run.instruments_text() == ["TLS"]  # discovered at Info, over TLS
    # asyncio's SSL transport reads into the connection's own buffer, as TCP does.
    assert all(p.conn._rx_view is not None for p in run.participants)
    assert step["sent"] == step["completed"] == 150 and not step["failed"]
    assert step["market_data"]["top_of_book"] > 0  # the subscriber, over TLS


async def test_load_processes_pass_the_tls_options_on(
    tls_exchange: InProcessExchange, certificate: Certificate
) -> None:
    ports = tls_exchange.ports
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "clients.load",
        "--port", str(ports["risk_gateway"].port),
        "--info-port", str(ports["info"].port),
        "--tls-ca-file", str(certificate.cert),
        "--rate", "200", "--duration", "0.5",
        "--processes", "2", "--connections", "2", "--subscribers", "1",
        "--loop", "uvloop",  # its SSL transport reads through data_received
        "--json",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    step = json.loads(out)["steps"][0]
    assert step["processes"] == 2 and step["completed"] == 100 and not step["failed"]


def test_child_argv_keeps_the_tls_options() -> None:
    argv = ["--processes", "2", "--tls", "--tls-ca-file", "a.pem", "--tls-ca-file=b.pem"]
    ns = load.build_parser().parse_args(argv)
    child = load.child_argv(ns, argv, 1, 100.0, 0.0)
    assert child.count("--tls") == 1 and child[child.index("--tls-ca-file") + 1] == "a.pem"
    assert "--tls-ca-file=b.pem" in child


async def test_load_without_tls_at_a_tls_port_exits_with_the_reason(
    tls_exchange: InProcessExchange, capsys: pytest.CaptureFixture[str]
) -> None:
    ports = tls_exchange.ports
    argv = ["--port", str(ports["risk_gateway"].port), "--info-port", str(ports["info"].port)]
    status = await asyncio.wait_for(asyncio.to_thread(load.main, [*argv, "--duration", "1"]), 30)
    assert status == 1
    err = capsys.readouterr().err
    assert "optivex load: cannot connect: ports 127.0.0.1:" in err and "speak TLS" in err, err
    assert "add --tls-ca-file FILE" in err, err
