"""A self-signed certificate for the TLS tests (services and command-line clients).

Made per test run with the ``cryptography`` package when it is installed, else
with ``openssl req`` (this machine has the command, not the package); the test
is skipped when neither is there.  It names 127.0.0.1 and localhost, which is
where the tests' services listen.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Certificate:
    """The PEM files: ``cert`` is also what a client trusts (``--tls-ca-file``)."""

    cert: Path
    key: Path


def make_certificate(directory: Path, name: str = "server") -> Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost, valid for a day."""
    cert, key = directory / f"{name}.pem", directory / f"{name}-key.pem"
    try:
        _with_cryptography(cert, key)
    except ImportError:
        if shutil.which("openssl") is None:
            pytest.skip("neither the cryptography package nor the openssl command is available")
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "ec",
                "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", str(key), "-out", str(cert), "-days", "1",
                "-subj", "/CN=localhost",
                "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
    return Certificate(cert, key)


def _with_cryptography(cert: Path, key: Path) -> None:
    import datetime
    import ipaddress

    from cryptography import x509  # type: ignore[import-not-found, unused-ignore]
    from cryptography.hazmat.primitives import hashes, serialization  # type: ignore[import-not-found, unused-ignore]
    from cryptography.hazmat.primitives.asymmetric import ec  # type: ignore[import-not-found, unused-ignore]
    from cryptography.x509.oid import NameOID  # type: ignore[import-not-found, unused-ignore]

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def make_issued_certificate(directory: Path) -> tuple[Certificate, Path]:
    """A certificate for 127.0.0.1 and localhost issued by a throwaway CA: (it, the CA's).

    For checking that trusting a server's own certificate works when a CA
    issued it (``openssl`` only; skipped without it).
    """
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not available")
    ca, ca_key = directory / "ca.pem", directory / "ca-key.pem"
    leaf, leaf_key, request = (
        directory / "leaf.pem",
        directory / "leaf-key.pem",
        directory / "leaf.csr",
    )
    extensions = directory / "leaf.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for command in (
        ["openssl", "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-days", "1",
         "-subj", "/CN=optivex test CA"],
        ["openssl", "req", *ec, "-keyout", str(leaf_key), "-out", str(request),
         "-subj", "/CN=localhost"],
        ["openssl", "x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key),
         "-set_serial", "2", "-out", str(leaf), "-days", "1", "-extfile", str(extensions)],
    ):  # fmt: skip
        subprocess.run(command, check=True, capture_output=True)
    return Certificate(leaf, leaf_key), ca
