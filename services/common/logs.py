"""Logging set-up shared by the services: one line per record, on stderr.

Format: ``%(asctime)s %(levelname)s %(name)s: %(message)s``. Loggers are named
``optivex.<service>`` for a service's top level and
``optivex.<service>.<component>`` below it (:func:`get_logger`), so operators can
raise or lower one component's level.

Two lines are a stable interface that the launcher (``optivex up``) and the tests
wait for, so their text must not change::

    2026-01-01 12:00:00,000 INFO optivex.order_book: listening on 127.0.0.1:7401
    2026-01-01 12:00:00,001 INFO optivex.order_book: ready

They are written by :func:`log_listening` (with the port actually bound, which
matters with port 0; IPv6 hosts appear in brackets, ``[::1]:7401``) and
:func:`log_ready`, on the service's top-level logger, to stderr only.

Belt and braces: :class:`RedactSecretsFilter` rewrites anything that looks like a
password, secret or token assignment (``password=...``, ``password: "..."``,
``--service-password ...``) to ``***`` before it is written. Code must still never
log secrets; this only limits the damage when someone forgets. Line breaks inside
a message (or a traceback) are escaped as ``\\n`` so one record is always one line
and a hostile string cannot forge extra log lines.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import TextIO

__all__ = [
    "LOG_FORMAT",
    "RedactSecretsFilter",
    "get_logger",
    "log_listening",
    "log_ready",
    "redact",
    "setup_logging",
]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_SECRET_WORD = r"[\w-]*(?:password|passwd|secret|token)[\w-]*"
_VALUE = r"(?:\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|[^\s,;)}\]]+)"
# key=value, key: value, "key": "value" (dicts, protobuf text, reprs) ...
_ASSIGNMENT_RE = re.compile(
    rf"""(?ix) (["']?\b{_SECRET_WORD}["']?) (\s*[=:]\s*) {_VALUE}""",
)
# ... and command-line style: --service-password VALUE
_FLAG_RE = re.compile(rf"(?i)(--{_SECRET_WORD})(\s+){_VALUE}")


def redact(text: str) -> str:
    """``text`` with the values of password-like fields replaced by ``***``."""
    text = _ASSIGNMENT_RE.sub(r"\1\2***", text)
    return _FLAG_RE.sub(r"\1\2***", text)


class RedactSecretsFilter(logging.Filter):
    """Redacts password-like values in a record's message (see :func:`redact`).

    Attached to the handler, so it sees records from every logger, including
    third-party ones. It formats the message once and stores the result, which is
    what the handler would have done anyway.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True


class _OneLineFormatter(logging.Formatter):
    """Escapes line breaks so each record is exactly one line (tracebacks included)."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return redact(text.replace("\r", "\\r").replace("\n", "\\n"))


_HANDLER_MARK = "_optivex_handler"


def setup_logging(level: str, service: str, *, stream: TextIO | None = None) -> logging.Logger:
    """Configure the root logger for one service process; returns ``optivex.<service>``.

    Safe to call again (for example in tests): it replaces the handler it installed
    before rather than adding a second one. ``stream`` defaults to ``sys.stderr``.
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
            handler.close()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(_OneLineFormatter(LOG_FORMAT))
    handler.addFilter(RedactSecretsFilter())
    root.addHandler(handler)
    root.setLevel(numeric)
    return get_logger(service)


def get_logger(service: str, component: str | None = None) -> logging.Logger:
    """``optivex.<service>`` or ``optivex.<service>.<component>``."""
    name = f"optivex.{service}"
    return logging.getLogger(f"{name}.{component}" if component else name)


def log_listening(logger: logging.Logger, host: str, port: int) -> None:
    """Log exactly ``listening on HOST:PORT`` at INFO (a stable, parsed line)."""
    shown = f"[{host}]" if ":" in host else host
    logger.info("listening on %s:%d", shown, port)


def log_ready(logger: logging.Logger) -> None:
    """Log exactly ``ready`` at INFO, once the service accepts work (a stable line)."""
    logger.info("ready")
