"""TLS options of the command-line clients (``optivex bot``, ``watch``, ``load``).

Why one module: Info and the Risk Gateway may speak TLS (docs/reliability.md,
"TLS on participant-facing ports"), and every tool that connects to them must
be told so the same way, with the same words in ``--help`` and the same
errors.  Each tool calls :func:`add_tls_options` on its parser and
:func:`ssl_context` on the parsed options; nothing else about TLS lives in
the tools.

One pair of options covers both participant ports, as the SDK takes one
context for both: a deployment that puts one port on TLS puts the other there
too, usually with the same certificate.  ``--tls-ca-file`` may be repeated for
the case of two different (self-signed) certificates.

When a connection fails, :func:`tls_mismatch` tells whether TLS is the reason
(a plain client at a TLS port, a TLS client at a plain port, an untrusted
certificate): a TLS server drops a plaintext login without a word, which would
otherwise look like an exchange that is restarting, so a tool would retry
forever instead of saying what to fix.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
from collections.abc import Iterable

from services.common.wire.client import client_ssl_context

__all__ = ["add_tls_options", "ssl_context", "tls_mismatch"]

PROBE_TIMEOUT_S = 3.0
"""How long a diagnosis probe waits; a TLS server answers a hello at once."""


def add_tls_options(
    parser: argparse.ArgumentParser, ports: str = "the Risk Gateway and Info"
) -> None:
    """Add ``--tls`` and ``--tls-ca-file FILE`` (repeatable) to ``parser``.

    ``ports`` names what the options apply to, for the help text.
    """
    group = parser.add_argument_group(
        "TLS",
        f"For {ports} on TLS (tls_cert_file and tls_key_file set on the service); "
        "without these options the connection is plain TCP.",
    )
    group.add_argument(
        "--tls",
        action="store_true",
        help="connect with TLS, trusting the system's certificate store",
    )
    group.add_argument(
        "--tls-ca-file",
        action="append",
        default=None,
        metavar="FILE",
        help="connect with TLS, trusting the PEM certificate(s) in FILE: the server's own "
        "certificate or the CA that signed it (implies --tls; repeat for several files)",
    )


def ssl_context(
    options: argparse.Namespace, parser: argparse.ArgumentParser | None = None
) -> ssl.SSLContext | None:
    """The TLS context the options ask for, or None for plain TCP.

    Built with :func:`~services.common.wire.client.client_ssl_context` (TLS 1.2
    or later, the server's name or IP checked against its certificate).  With
    ``--tls-ca-file`` only those files are trusted, and each certificate in
    them is a trust anchor by itself (``VERIFY_X509_PARTIAL_CHAIN``, Python
    3.13's default): "trust this certificate" then works for a server
    certificate issued by a CA as well as for a self-signed one.

    A file that cannot be read or is not PEM is a usage error: ``parser.error``
    (exit status 2) when a parser is given, else ``ValueError``.
    """
    files: list[str] = list(getattr(options, "tls_ca_file", None) or [])
    if not (files or getattr(options, "tls", False)):
        return None
    current = files[0] if files else ""
    try:
        context = client_ssl_context(current)
        for current in files[1:]:
            context.load_verify_locations(cafile=current)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        message = f"--tls-ca-file {current}: cannot use it: {reason}"
        if parser is not None:
            parser.error(message)
        raise ValueError(message) from None
    if files:
        context.verify_flags |= getattr(ssl, "VERIFY_X509_PARTIAL_CHAIN", 0)
    return context


async def tls_mismatch(
    targets: Iterable[tuple[str, int]],
    context: ssl.SSLContext | None,
    timeout_s: float = PROBE_TIMEOUT_S,
) -> str | None:
    """Why connecting to ``targets`` failed when the reason is TLS, else None.

    Call it after a connection failed.  Each ``(host, port)`` is probed: one
    TCP connect (nothing listening: not a TLS matter, None), then one TLS
    handshake that trusts anything (it completes only at a port that speaks
    TLS), then, when both sides use TLS, one handshake with ``context`` to see
    whether the certificate is trusted.  The probes send no login.
    """
    grouped: dict[str, list[str]] = {}  # one advice, the ports it applies to
    for host, port in targets:
        advice = await _diagnose(host, port, context, timeout_s)
        if advice:
            grouped.setdefault(advice, []).append(f"{host}:{port}")
    found = []
    for advice, where in grouped.items():
        many = len(where) > 1
        ports = f"ports {' and '.join(where)}" if many else f"port {where[0]}"
        found.append(advice.format(ports=ports, s="" if many else "s", es="" if many else "es"))
    return "; ".join(found) or None


async def _diagnose(
    host: str, port: int, context: ssl.SSLContext | None, timeout_s: float
) -> str | None:
    """The advice for one port (a template of ``{ports}``, ``{s}``, ``{es}``), or None."""
    if not await _handshake(host, port, None, timeout_s):
        return None  # nothing to talk to: the service is down, not misconfigured
    anything = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anything.check_hostname = False
    anything.verify_mode = ssl.CERT_NONE
    speaks_tls = await _handshake(host, port, anything, timeout_s)
    if speaks_tls is None:
        return None  # no answer at all (a frozen service?): nothing proven
    if context is None:
        if speaks_tls:
            return (
                "{ports} speak{s} TLS and this client connected in plain TCP: add "
                "--tls-ca-file FILE (the server's certificate or its CA) or --tls"
            )
        return None
    if not speaks_tls:
        return "{ports} do{es} not speak TLS (plain TCP): drop --tls and --tls-ca-file"
    try:
        await _handshake(host, port, context, timeout_s, strict=True)
    except ssl.SSLCertVerificationError as exc:
        detail = str(exc.verify_message or exc).replace("{", "{{").replace("}", "}}")
        return (
            f"{{ports}}: the certificate failed verification ({detail}): pass the "
            "server's certificate or its CA with --tls-ca-file, and use a host name or "
            "address the certificate lists"
        )
    except (OSError, TimeoutError):
        return None
    return None


async def _handshake(
    host: str,
    port: int,
    context: ssl.SSLContext | None,
    timeout_s: float,
    *,
    strict: bool = False,
) -> bool | None:
    """Whether a TCP connection (and a TLS handshake with ``context``) succeeds.

    None when nothing answered within ``timeout_s``: a port that does not
    speak TLS refuses a TLS hello at once (it is no frame), so only a refusal
    proves anything.  ``strict``: let the failure's exception out instead.
    The connection is aborted at once (no TLS close exchange to wait for).
    """
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context), timeout_s
        )
    except TimeoutError:
        if strict:
            raise
        return None
    except OSError:
        if strict:
            raise
        return False
    with contextlib.suppress(Exception):
        writer.transport.abort()
    return True
