"""Users, roles and password hashes: the exchange's account configuration.

Accounts live in a small TOML file, one table per user::

    [users.alice]
    role = "participant"
    password_hash = "scrypt$16384$8$1$<salt>$<key>"

Passwords are stored only as salted, deliberately slow hashes. Two encodings are
understood, both self-describing so the parameters travel with the hash and can be
raised later without breaking old entries:

``scrypt$<n>$<r>$<p>$<salt>$<key>``
    What :func:`hash_password` writes: :func:`hashlib.scrypt` with n=2**14, r=8,
    p=1, a 16-byte random salt and a 32-byte key; salt and key are standard base64
    (RFC 4648, padding optional). One hash or verification costs about 40-50 ms of
    CPU and 16 MiB of memory, which is the point: it makes offline guessing slow.

``pbkdf2_sha256$<iterations>$<salt>$<key>``
    Accepted for verification only, so hashes made by other tools can be imported.
    This is Django's layout: the salt is used as the literal UTF-8 text between the
    ``$`` signs and the key is standard base64 of PBKDF2-HMAC-SHA256 output (its
    length sets the derived-key length). Prefer scrypt for new entries.

Usernames are 1-64 characters from ``A-Z a-z 0-9 _ . @ -``, starting with a letter
or digit. The restriction keeps names safe to print in logs and to use as keys.

This module imports neither asyncio nor protobuf; :mod:`services.common.auth` adds
the asynchronous, throttled login check on top.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import os
import re
import secrets
import tempfile
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

__all__ = [
    "SERVICE_ACCOUNT",
    "Role",
    "User",
    "UserStore",
    "UserStoreError",
    "check_password_hash",
    "generate_service_password",
    "hash_password",
    "load_user_store",
    "validate_username",
    "verify_password",
]

#: The account the services use to log in to each other.
SERVICE_ACCOUNT = "service"

# Parameters of newly written hashes. n=2**14, r=8 is the classic interactive-login
# setting: ~16 MiB and a few tens of milliseconds per attempt.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32

# Bounds on parameters accepted from a users file, so a typo (or a hostile file)
# cannot make one login cost gigabytes of memory or minutes of CPU.
_MAX_SCRYPT_N = 2**20
_MAX_SCRYPT_R = 32
_MAX_SCRYPT_P = 16
_MAX_SCRYPT_MEMORY = 1 << 30
_MAX_PBKDF2_ITERATIONS = 10_000_000

_USERNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_BARE_TOML_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")


class UserStoreError(ValueError):
    """A users file or entry is malformed; the message says where and why."""


class Role(enum.IntEnum):
    """Account roles, numbered exactly like the protobuf ``Role`` enum in common.proto.

    ``ROLE_UNSPECIFIED = 0`` is deliberately absent: no account has it, so
    ``Role(0)`` raises and a missing role can never pass for a real one.
    """

    PARTICIPANT = 1
    ADMIN = 2
    SERVICE = 3

    @property
    def config_name(self) -> str:
        """The spelling used in configuration files and on the command line."""
        return self.name.lower()

    @classmethod
    def from_name(cls, name: str) -> Role:
        """Parse a configuration spelling (``participant``, ``admin``, ``service``)."""
        for role in cls:
            if role.config_name == name:
                return role
        choices = ", ".join(repr(n) for n in cls.names())
        raise ValueError(f"unknown role {name!r}; expected one of {choices}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """All configuration spellings, in protobuf order."""
        return tuple(role.config_name for role in cls)

    def __str__(self) -> str:
        return self.config_name


@dataclass(frozen=True, slots=True)
class User:
    """One account. The hash is kept out of ``repr`` so it never lands in a log."""

    name: str
    role: Role
    password_hash: str = field(repr=False)


# --------------------------------------------------------------------------- hashes


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    return base64.b64decode(padded.encode("ascii"), validate=True)


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """Hash ``password`` with salted scrypt; returns the self-describing string.

    Costs ~40-50 ms: call it once per password change, never per request. ``salt``
    exists for reproducible tests only; leave it out so a fresh random salt is used.
    """
    if salt is None:
        salt = os.urandom(SALT_BYTES)
    key = _scrypt(password.encode("utf-8"), salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, KEY_BYTES)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64encode(salt)}${_b64encode(key)}"


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    # OpenSSL refuses anything above its 32 MiB default unless maxmem says more; the
    # requirement is 128*r*(n + p + 2) bytes, plus some slack.
    maxmem = 128 * r * (n + p + 2) + (1 << 20)
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=maxmem)


@dataclass(frozen=True, slots=True)
class _Scrypt:
    n: int
    r: int
    p: int
    salt: bytes
    key: bytes

    def derive(self, password: bytes) -> bytes:
        return _scrypt(password, self.salt, self.n, self.r, self.p, len(self.key))


@dataclass(frozen=True, slots=True)
class _Pbkdf2:
    iterations: int
    salt: bytes
    key: bytes

    def derive(self, password: bytes) -> bytes:
        return hashlib.pbkdf2_hmac("sha256", password, self.salt, self.iterations, len(self.key))


def _parse_int(text: str, what: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"{what} is not a positive integer")
    return int(text)


def _parse_hash(encoded: str) -> _Scrypt | _Pbkdf2:
    """Decode and bound-check a stored hash; raises ValueError (no secrets in it)."""
    parts = encoded.split("$")
    scheme = parts[0]
    try:
        if scheme == "scrypt":
            if len(parts) != 6:
                raise ValueError("expected scrypt$<n>$<r>$<p>$<salt>$<key>")
            n = _parse_int(parts[1], "n")
            r = _parse_int(parts[2], "r")
            p = _parse_int(parts[3], "p")
            if n < 2 or n > _MAX_SCRYPT_N or n & (n - 1):
                raise ValueError(f"n must be a power of two between 2 and {_MAX_SCRYPT_N}")
            if not 1 <= r <= _MAX_SCRYPT_R or not 1 <= p <= _MAX_SCRYPT_P:
                raise ValueError(f"r must be 1-{_MAX_SCRYPT_R} and p 1-{_MAX_SCRYPT_P}")
            if 128 * r * (n + p + 2) > _MAX_SCRYPT_MEMORY:
                raise ValueError("parameters need more than 1 GiB of memory")
            salt, key = _b64decode(parts[4]), _b64decode(parts[5])
            if not salt or len(key) < 16:
                raise ValueError("salt is empty or key shorter than 16 bytes")
            return _Scrypt(n, r, p, salt, key)
        if scheme == "pbkdf2_sha256":
            if len(parts) != 4:
                raise ValueError("expected pbkdf2_sha256$<iterations>$<salt>$<key>")
            iterations = _parse_int(parts[1], "iterations")
            if not 1 <= iterations <= _MAX_PBKDF2_ITERATIONS:
                raise ValueError(f"iterations must be 1-{_MAX_PBKDF2_ITERATIONS}")
            key = _b64decode(parts[3])
            if not parts[2] or len(key) < 16:
                raise ValueError("salt is empty or key shorter than 16 bytes")
            return _Pbkdf2(iterations, parts[2].encode("utf-8"), key)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("salt or key is not valid base64") from exc
    raise ValueError("unknown scheme; expected 'scrypt$...' or 'pbkdf2_sha256$...'")


def check_password_hash(encoded: str) -> None:
    """Raise ValueError if ``encoded`` is not a hash this module can verify."""
    _parse_hash(encoded)


def verify_password(encoded: str, password: str) -> bool:
    """True if ``password`` matches the stored hash ``encoded``.

    Slow on purpose (one scrypt or PBKDF2 run), so async callers must run it off
    the event loop; :class:`services.common.auth.Authenticator` does. A malformed
    hash verifies nothing rather than raising, so a bad entry is just a failed login.
    """
    try:
        parsed = _parse_hash(encoded)
    except ValueError:
        return False
    derived = parsed.derive(password.encode("utf-8", errors="surrogatepass"))
    return hmac.compare_digest(derived, parsed.key)


def generate_service_password() -> str:
    """A fresh random password for the ``service`` account (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def validate_username(name: str) -> str:
    """Return ``name`` if it is an acceptable username, else raise ValueError."""
    if not isinstance(name, str) or not _USERNAME_RE.fullmatch(name):
        raise ValueError(
            f"invalid username {name!r}: use 1-64 characters from A-Z a-z 0-9 _ . @ -, "
            "starting with a letter or digit"
        )
    return name


# ----------------------------------------------------------------------- the store


def _toml_string(text: str) -> str:
    """A TOML basic string literal for ``text`` (escapes quotes, backslashes, controls)."""
    out = ['"']
    for ch in text:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_key(key: str) -> str:
    return key if _BARE_TOML_KEY_RE.fullmatch(key) else _toml_string(key)


class UserStore:
    """The set of accounts a service accepts, keyed by username.

    Lookups are plain dictionary reads; all the slow work (hash verification) is
    done by the caller, normally :class:`services.common.auth.Authenticator`.
    """

    def __init__(self, users: Mapping[str, User] | None = None) -> None:
        self._users: dict[str, User] = {}
        for user in (users or {}).values():
            self._put(user)

    # -- construction

    @classmethod
    def from_mapping(cls, users: Mapping[str, object], *, source: str = "<mapping>") -> UserStore:
        """Build from ``{name: {"role": ..., "password_hash": ...}}`` (the ``[users]`` table).

        Every entry is checked: valid name, known role, parseable hash, no other
        keys. Errors name ``source`` and the user so a bad file is easy to fix.
        """
        store = cls()
        for name, entry in users.items():
            where = f"{source}: users.{name}"
            try:
                validate_username(name)
            except ValueError as exc:
                raise UserStoreError(f"{where}: {exc}") from None
            if not isinstance(entry, Mapping):
                raise UserStoreError(f"{where}: expected a table with role and password_hash")
            unknown = sorted(set(entry) - {"role", "password_hash"})
            if unknown:
                raise UserStoreError(f"{where}: unknown key(s) {', '.join(unknown)}")
            role_name, encoded = entry.get("role"), entry.get("password_hash")
            if not isinstance(role_name, str):
                raise UserStoreError(f"{where}: role must be a string")
            if not isinstance(encoded, str):
                raise UserStoreError(f"{where}: password_hash must be a string")
            try:
                role = Role.from_name(role_name)
                check_password_hash(encoded)
            except ValueError as exc:
                raise UserStoreError(f"{where}: {exc}") from None
            store._put(User(name, role, encoded))
        return store

    @classmethod
    def loads(cls, text: str, *, source: str = "<string>") -> UserStore:
        """Parse the TOML text of a users file."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise UserStoreError(f"{source}: invalid TOML: {exc}") from None
        unknown = sorted(set(data) - {"users"})
        if unknown:
            raise UserStoreError(f"{source}: unknown top-level key(s) {', '.join(unknown)}")
        users = data.get("users", {})
        if not isinstance(users, dict):
            raise UserStoreError(f"{source}: 'users' must be a table")
        return cls.from_mapping(users, source=source)

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> UserStore:
        """Read a users file; missing or malformed files raise :class:`UserStoreError`."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise UserStoreError(f"cannot read users file {os.fspath(path)!r}: {exc}") from None
        return cls.loads(text, source=os.fspath(path))

    @classmethod
    def demo(cls, service_password: str) -> UserStore:
        """The built-in demo accounts plus ``service`` with ``service_password``.

        The five demo logins (see PROTOCOL.md section 3) come from the embedded
        ``demo_users.toml`` with precomputed hashes, so start-up pays for exactly one
        scrypt run (~50 ms) -- hashing the per-start service password. Never use
        this configuration in production: its passwords are public.
        """
        if not service_password:
            raise ValueError("the demo configuration needs a non-empty service password")
        store = _embedded_demo_store()
        store.add_user(SERVICE_ACCOUNT, Role.SERVICE, password=service_password)
        return store

    # -- access

    def get(self, username: str) -> User | None:
        """The account called ``username``, or None."""
        return self._users.get(username)

    def __contains__(self, username: object) -> bool:
        return username in self._users

    def __len__(self) -> int:
        return len(self._users)

    def __iter__(self) -> Iterator[User]:
        """Users in name order (stable output for listings and files)."""
        return iter(sorted(self._users.values(), key=lambda u: u.name))

    def __repr__(self) -> str:
        return f"UserStore({len(self._users)} users)"

    # -- changes

    def add_user(
        self,
        name: str,
        role: Role | str,
        *,
        password: str | None = None,
        password_hash: str | None = None,
    ) -> User:
        """Create or replace an account; give exactly one of password / password_hash.

        With ``password`` the hash is computed here (~50 ms).
        """
        validate_username(name)
        if isinstance(role, str) and not isinstance(role, Role):
            role = Role.from_name(role)
        if (password is None) == (password_hash is None):
            raise ValueError("give exactly one of password or password_hash")
        if password is not None:
            if not password:
                raise ValueError("the password must not be empty")
            password_hash = hash_password(password)
        assert password_hash is not None
        check_password_hash(password_hash)
        user = User(name, Role(role), password_hash)
        self._put(user)
        return user

    def remove_user(self, name: str) -> bool:
        """Delete an account; True if it existed."""
        return self._users.pop(name, None) is not None

    def _put(self, user: User) -> None:
        self._users[user.name] = user

    # -- persistence

    def to_toml(self) -> str:
        """The store as users-file TOML (users in name order)."""
        lines = [
            "# Optivex users: roles and salted password hashes (never plain passwords).",
            "# Manage with `optivex users add NAME --role ROLE --file FILE`.",
        ]
        for user in self:
            lines += [
                "",
                f"[users.{_toml_key(user.name)}]",
                f"role = {_toml_string(user.role.config_name)}",
                f"password_hash = {_toml_string(user.password_hash)}",
            ]
        return "\n".join(lines) + "\n"

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the users file atomically, readable by its owner only (mode 0600).

        Atomic (temporary file, fsync, rename) so a crash never leaves half a file
        that would lock everyone out.
        """
        target = Path(path)
        directory = target.parent
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                os.fchmod(handle.fileno(), 0o600)
                handle.write(self.to_toml())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise


def load_user_store(users_file: str, service_password: str) -> UserStore:
    """The accounts a service should accept, following its configuration.

    * ``users_file`` set: exactly that file (it must contain the ``service``
      account if services are to log in to each other).
    * ``users_file`` empty: the embedded demo accounts, plus ``service`` with
      ``service_password``. If that is empty too, ``service`` is left out (nobody
      knows a password for it), which suits a single service started on its own.
    """
    if users_file:
        return UserStore.from_toml(users_file)
    if service_password:
        return UserStore.demo(service_password)
    return _embedded_demo_store()


def _embedded_demo_store() -> UserStore:
    """The five demo logins from the packaged ``demo_users.toml`` (no ``service``)."""
    text = resources.files("services.common").joinpath("demo_users.toml").read_text("utf-8")
    return UserStore.loads(text, source="<embedded demo_users.toml>")
