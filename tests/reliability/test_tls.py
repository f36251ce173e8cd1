"""Optional TLS on the participant-facing ports (Info and the Risk Gateway).

A self-signed certificate is made per test run (``tests/support/tls.py``; the
``certificate`` and ``tls_exchange`` fixtures are in ``conftest.py``, shared
with ``test_tls_clients.py``).  The Order Book and Admin stay plain TCP; Admin
and the Risk Gateway reach a TLS Info with ``info_tls_ca_file``.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from clients.sdk import Client
from services.common.config import ConfigError, InfoConfig, RiskGatewayConfig, load_config
from services.common.pb import common_pb2, info_pb2
from services.common.wire.client import UpstreamConnection, client_ssl_context
from services.common.wire.framing import encode_frame
from tests.reliability.cluster import DEMO_PASSWORDS, Cluster
from tests.reliability.inprocess import LOGIN_TIMEOUT_S, InProcessExchange
from tests.support.tls import Certificate
from tests.wire.rawclient import RawClient

MT = common_pb2.MessageType


async def test_sdk_trades_and_watches_over_tls(
    tls_exchange: InProcessExchange, certificate: Certificate
) -> None:
    context = client_ssl_context(str(certificate.cert))
    ports = tls_exchange.ports
    assert ports["info"].app.server.tls and ports["risk_gateway"].app.server.tls
    assert not ports["order_book"].app.server.tls and not ports["admin"].app.server.tls
    gateway, info = ports["risk_gateway"].port, ports["info"].port
    async with (
        Client.connect("127.0.0.1", gateway, info, "alice", "alice-demo", ssl=context) as alice,
        Client.connect("127.0.0.1", gateway, info, "bob", "bob-demo", ssl=context) as bob,
    ):
        assert "TLS" in alice.instruments  # Info announced it, over TLS
        top = bob.top_of_book("TLS")
        assert (await top.get(5)).bid is None
        fills = alice.fills()
        order = await alice.buy("TLS", 10.0, 5)  # the Gateway learned TLS from Info over TLS
        state = await top.get(5)
        assert state.bid is not None and (state.bid.price, state.bid.quantity) == (10.0, 5)
        await bob.sell("TLS", 10.0, 2)
        fill = await fills.get(5)
        assert (fill.order_id, fill.quantity, fill.remaining_quantity) == (order.order_id, 2, 3)


async def test_plain_tcp_and_untrusted_clients_are_refused_by_a_tls_port(
    tls_exchange: InProcessExchange,
) -> None:
    for name in ("info", "risk_gateway"):
        port = tls_exchange.ports[name].port
        # A plaintext login is not a TLS handshake: the connection is closed, no answer.
        plain = await RawClient.connect("127.0.0.1", port)
        login = common_pb2.LoginRequest(request_id=1, username="alice", password="alice-demo")
        plain.send_raw(encode_frame(MT.LOGIN_REQUEST, login.SerializeToString()))
        assert await plain.expect_closed(timeout=5) == []
        # A client that does not trust the self-signed certificate refuses it.
        with pytest.raises(ssl.SSLCertVerificationError):
            await UpstreamConnection.open(
                "127.0.0.1", port, "alice", "alice-demo", ssl=client_ssl_context()
            )
    await tls_exchange.healthy()


async def test_a_peer_that_never_handshakes_is_dropped_by_the_login_deadline(
    tls_exchange: InProcessExchange,
) -> None:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", tls_exchange.ports["risk_gateway"].port
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await asyncio.wait_for(reader.read(), LOGIN_TIMEOUT_S + 3) == b""
    assert loop.time() - started < LOGIN_TIMEOUT_S + 2
    writer.close()


async def test_raw_tls_clients_get_the_usual_protocol(
    tls_exchange: InProcessExchange, certificate: Certificate
) -> None:
    context = client_ssl_context(str(certificate.cert))
    client = await RawClient.connect(
        "127.0.0.1", tls_exchange.ports["info"].port, ssl=context, server_hostname="127.0.0.1"
    )
    assert (await client.login("dave", DEMO_PASSWORDS["dave"])).error_message == ""
    client.send_raw(encode_frame(0xBEEF, b""))  # unknown type: ON_ERROR, kept open
    kind, error = await client.recv()
    while kind != MT.ON_ERROR:  # the login announcements come first
        kind, error = await client.recv()
    assert "unknown message type" in error.error_message
    client.send(info_pb2.QuotesRequest(request_id=5))
    kind, quotes = await client.recv()
    assert kind == MT.INFO_QUOTES_RESPONSE and [q.instrument_symbol for q in quotes.quotes] == [
        "TLS"
    ]
    await client.close()


def test_tls_settings_need_both_files() -> None:
    with pytest.raises(ConfigError, match="tls_key_file"):
        InfoConfig(tls_cert_file="cert.pem")
    with pytest.raises(ConfigError, match="tls_cert_file"):
        load_config(RiskGatewayConfig, ["--tls-key-file", "key.pem"], environ={})


async def test_tls_from_the_command_line_of_the_service_processes(
    tmp_path: Path, certificate: Certificate
) -> None:
    tls = ("--tls-cert-file", str(certificate.cert), "--tls-key-file", str(certificate.key))
    trust = ("--info-tls-ca-file", str(certificate.cert))
    cluster = await asyncio.to_thread(
        Cluster(
            tmp_path,
            info=tls,
            admin=("--fsync-intents", "false", *trust),
            gateway=("--reconnect-max-backoff-s", "0.2", *tls, *trust),
        ).start
    )
    try:
        await cluster.create("TLSP")
        context = client_ssl_context(str(certificate.cert))
        async with Client.connect(
            username="carol",
            password="carol-demo",
            gateway_port=cluster.gateway.port,
            info_port=cluster.info.port,
            ssl=context,
        ) as carol:
            assert "TLSP" in carol.instruments
            result = await carol.buy("TLSP", 1.0, 1)
            assert result.resting_quantity == 1
    finally:
        statuses = await asyncio.to_thread(cluster.stop)
    assert set(statuses.values()) == {0}
