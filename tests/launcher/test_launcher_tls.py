"""``optivex up --with-bots`` when Info and the Risk Gateway speak TLS.

The launcher reads the services' configuration the way they do (a TOML file,
``OPTIVEX_...`` variables) and starts the bots with ``--tls-ca-file`` naming
the services' own certificates; a configuration with only one of the two
ports on TLS is refused before anything starts (the bots have one setting for
both).  The last test runs the whole thing: bots that trade over TLS.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from services.common.wire.client import client_ssl_context
from services.launcher import Launcher, bot_argv, parse_args
from tests.launcher.harness import Exchange, traded_volume
from tests.support.tls import Certificate, make_certificate

SAMPLE = str(Path(__file__).resolve().parents[2] / "clients" / "data" / "sample-listings.csv")


@pytest.fixture
def certificate(tmp_path: Path) -> Certificate:
    return make_certificate(tmp_path)


def tls_config(path: Path, certificate: Certificate, *, gateway: bool = True) -> Path:
    """A TOML file putting Info (and the Gateway unless told not to) on TLS."""
    pair = f'tls_cert_file = "{certificate.cert}"\ntls_key_file = "{certificate.key}"\n'
    trust = f'info_tls_ca_file = "{certificate.cert}"\n'
    text = f"[info]\n{pair}\n[admin]\n{trust}\n[risk_gateway]\n{trust}"
    if gateway:
        text += pair
    path.write_text(text)
    return path


def test_bot_argv_carries_the_tls_options() -> None:
    argv = bot_argv(1, "0.0.0.0", 7404, 7402, ["--tls-ca-file", "/etc/x.pem"])
    assert argv[argv.index("bot") + 1] == "noise" and argv[-2:] == ["--tls-ca-file", "/etc/x.pem"]
    assert argv[argv.index("--host") + 1] == "127.0.0.1"  # a certificate never names 0.0.0.0
    assert argv[argv.index("--username") + 1] == "bob"
    assert "--tls-ca-file" not in bot_argv(0, "127.0.0.1", 7404, 7402, [])


def test_bots_trust_the_certificates_of_a_tls_configuration(
    tmp_path: Path, certificate: Certificate, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPTIVEX_CONFIG", raising=False)
    plain = Launcher(parse_args(["--with-bots", "2"]))
    plain.plan_client_tls()
    assert plain.client_tls == [] and plain.info_tls == []

    config = tls_config(tmp_path / "tls.toml", certificate)
    launcher = Launcher(parse_args(["--with-bots", "2", "--config", str(config)]))
    launcher.plan_client_tls()
    expected = ["--tls-ca-file", str(certificate.cert.absolute())]
    assert launcher.client_tls == expected and launcher.info_tls == expected
    argv = bot_argv(0, "127.0.0.1", 1, 2, launcher.client_tls)
    assert argv[-2:] == expected

    # The same from the environment, with a certificate per service.
    other = make_certificate(tmp_path, "info")
    monkeypatch.setenv("OPTIVEX_INFO_TLS_CERT_FILE", str(other.cert))
    monkeypatch.setenv("OPTIVEX_INFO_TLS_KEY_FILE", str(other.key))
    monkeypatch.setenv("OPTIVEX_RISK_GATEWAY_TLS_CERT_FILE", str(certificate.cert))
    monkeypatch.setenv("OPTIVEX_RISK_GATEWAY_TLS_KEY_FILE", str(certificate.key))
    by_env = Launcher(parse_args(["--with-bots", "1"]))
    by_env.plan_client_tls()
    assert by_env.client_tls == [*expected, "--tls-ca-file", str(other.cert)]
    assert by_env.info_tls == ["--tls-ca-file", str(other.cert)]


async def test_bots_refuse_a_half_tls_configuration(
    tmp_path: Path, certificate: Certificate, exchanges: list[Exchange]
) -> None:
    config = tls_config(tmp_path / "half.toml", certificate, gateway=False)
    exchange = Exchange(tmp_path / "x", extra_args=["--with-bots", "1", "--config", str(config)])
    exchanges.append(exchange)
    with pytest.raises(AssertionError, match="exited early"):
        await asyncio.to_thread(exchange.start, 20)
    assert exchange.process is not None and exchange.process.returncode == 2
    assert "Info speaks TLS and the Risk Gateway does not" in exchange.stderr
    assert not exchange.services()


async def test_up_with_bots_trades_over_tls(
    tmp_path: Path, certificate: Certificate, exchanges: list[Exchange]
) -> None:
    config = tls_config(tmp_path / "tls.toml", certificate)
    exchange = Exchange(
        tmp_path / "x", listings=SAMPLE, extra_args=["--with-bots", "2", "--config", str(config)]
    )
    exchanges.append(exchange)
    await asyncio.to_thread(exchange.start)
    assert len(exchange.services()) == 6  # four services and two bots, still running
    volume = await traded_volume(exchange.ports["info"], client_ssl_context(str(certificate.cert)))
    assert volume > 0, "the bots started by optivex up never traded over TLS"
    assert len(exchange.services()) == 6  # no bot gave up
    status = await asyncio.to_thread(exchange.stop)
    assert status == 0, exchange.stderr
    assert f"--tls-ca-file {certificate.cert.absolute()}" in exchange.stdout  # the watch hint
