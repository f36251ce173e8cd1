"""Logging: the stable lines the launcher waits for, one line per record, redaction."""

from __future__ import annotations

import io
import logging
import re

import pytest

from services.common.logs import get_logger, log_listening, log_ready, redact, setup_logging

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (\w+) ([\w.]+): (.*)$")

pytestmark = pytest.mark.usefixtures("restore_logging")


def lines(stream: io.StringIO) -> list[tuple[str, str, str]]:
    out = []
    for line in stream.getvalue().splitlines():
        match = LINE.match(line)
        assert match, line
        out.append((match[1], match[2], match[3]))
    return out


def test_stable_listening_and_ready_lines() -> None:
    stream = io.StringIO()
    logger = setup_logging("INFO", "order_book", stream=stream)
    assert logger.name == "optivex.order_book"
    log_listening(logger, "127.0.0.1", 7401)
    log_listening(logger, "::1", 50123)
    log_ready(logger)
    assert lines(stream) == [
        ("INFO", "optivex.order_book", "listening on 127.0.0.1:7401"),
        ("INFO", "optivex.order_book", "listening on [::1]:50123"),
        ("INFO", "optivex.order_book", "ready"),
    ]


def test_component_loggers_levels_and_idempotent_setup() -> None:
    stream = io.StringIO()
    setup_logging("INFO", "info", stream=stream)
    setup_logging("WARNING", "info", stream=stream)  # replaces, does not duplicate
    engine = get_logger("info", "mirror")
    assert engine.name == "optivex.info.mirror"
    engine.info("hidden")
    engine.warning("shown %d", 1)
    assert lines(stream) == [("WARNING", "optivex.info.mirror", "shown 1")]
    with pytest.raises(ValueError, match="unknown log level"):
        setup_logging("LOUD", "info", stream=stream)


def test_one_line_per_record_even_with_tracebacks() -> None:
    stream = io.StringIO()
    logger = setup_logging("INFO", "admin", stream=stream)
    logger.info("user %r said\nINFO optivex.admin: ready", "eve")
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        logger.exception("failed")
    text = stream.getvalue()
    assert text.count("\n") == 2
    assert "\\nINFO optivex.admin: ready" in text
    assert "Traceback" in text and "boom\\nsecond line" in text


def test_password_like_fields_are_redacted() -> None:
    stream = io.StringIO()
    logger = setup_logging("DEBUG", "risk_gateway", stream=stream)
    logger.debug("login request: %s", 'username: "alice" password: "alice-demo"')
    logger.debug("env OPTIVEX_SERVICE_PASSWORD=%s", "pw-1")
    logger.debug("argv %s", ["--service-password", "pw-2"])
    logger.debug("argv --service-password pw-3 --port 1")
    try:
        raise ValueError("password=pw-4")
    except ValueError:
        logger.exception("oops")
    text = stream.getvalue()
    for secret in ("alice-demo", "pw-1", "pw-3", "pw-4"):
        assert secret not in text
    assert 'username: "alice" password: ***' in text
    assert "--port 1" in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("password=abc", "password=***"),
        ("service_password='zz' x=1", "service_password=*** x=1"),
        ('{"password": "s3 cret", "u": 1}', '{"password": ***, "u": 1}'),
        ("token: abc;", "token: ***;"),
        ("--service-password hunter2 --port 1", "--service-password *** --port 1"),
        ("wrong password for user alice", "wrong password for user alice"),
        ("listening on 127.0.0.1:7401", "listening on 127.0.0.1:7401"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_caplog_still_sees_records(caplog: pytest.LogCaptureFixture) -> None:
    setup_logging("INFO", "order_book", stream=io.StringIO())
    with caplog.at_level(logging.INFO):
        log_ready(get_logger("order_book"))
    assert caplog.records[-1].getMessage() == "ready"
