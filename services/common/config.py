"""Layered, typed, frozen configuration: one object per service.

Each service describes its settings as a frozen dataclass extending
:class:`CommonConfig` (fields with defaults and simple types) and calls
:func:`load_config` once at start-up. Values are taken from, lowest priority
first:

1. the dataclass defaults;
2. a TOML file, if one is given (``--config FILE``, else the ``OPTIVEX_CONFIG``
   environment variable). Its ``[common]`` table is applied to every service
   first, then the service's own table (``[order_book]``, ``[info]``, ``[admin]``,
   ``[risk_gateway]``). ``[common]`` may hold only fields of :class:`CommonConfig`;
   a service table only fields of that service; any other key or table is an error
   (a typo must not silently fall back to a default). Tables of the other services
   are allowed, so one file can configure the whole exchange;
3. environment variables: ``OPTIVEX_<FIELD>`` for :class:`CommonConfig` fields
   (e.g. ``OPTIVEX_SERVICE_PASSWORD``), then ``OPTIVEX_<SERVICE>_<FIELD>`` for any
   field of that service, which wins (e.g. ``OPTIVEX_ORDER_BOOK_PORT``). Names are
   upper case. A variable starting with ``OPTIVEX_<SERVICE>_`` that names no field
   is an error, for the same reason as unknown TOML keys;
4. command-line flags ``--field-name VALUE`` (underscores become dashes),
   generated from the dataclass fields.

Strings from the environment and flags are converted to the field's type: ``int``
(decimal), ``float`` (finite), ``bool`` (``true/false``, ``yes/no``, ``on/off``,
``1/0``, any case), ``str``, :class:`pathlib.Path`, or a ``Literal`` of strings
(exact match). TOML values must already have the right TOML type (an integer may
stand for a float). Every error raises :class:`ConfigError` naming the field and
where the bad value came from, e.g.
``OPTIVEX_ORDER_BOOK_PORT: expected an integer, got 'abc'``.

Relative paths (``data_dir``, ``users_file``) are relative to the working
directory, not to the TOML file. Port 0 means "any free port" (tests use it to run
in parallel); the service logs the port it actually bound.

:meth:`CommonConfig.__post_init__` checks ranges (ports, positive timeouts, frame
limits), so a config object that exists is valid, however it was built.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import tomllib
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

__all__ = [
    "SERVICE_NAMES",
    "AdminConfig",
    "CommonConfig",
    "ConfigError",
    "InfoConfig",
    "OrderBookConfig",
    "RiskGatewayConfig",
    "build_parser",
    "env_var_names",
    "load_config",
    "require_upb_backend",
]

#: The tables a shared TOML file may contain besides ``[common]``.
SERVICE_NAMES: tuple[str, ...] = ("order_book", "info", "admin", "risk_gateway")

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_ENV_PREFIX = "OPTIVEX_"
#: Variables read by clients, not services, whose names happen to start with a
#: service prefix; the unknown-variable check must not refuse them, or exporting
#: the admin CLI's password would stop the Admin service from starting.
CLIENT_ENV_VARS: frozenset[str] = frozenset({"OPTIVEX_ADMIN_PASSWORD"})

C = TypeVar("C", bound="CommonConfig")


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range.

    ``field`` names the offending field when there is one, so the loader can say
    which layer (file, variable, flag) supplied the bad value.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


# ------------------------------------------------------------------ the configs


@dataclass(frozen=True, kw_only=True)
class CommonConfig:
    """Settings every service has. Services extend it with their own fields.

    ``service_password`` is what this service uses to log in to upstream services
    (normally from ``OPTIVEX_SERVICE_PASSWORD``); it is kept out of ``repr`` so the
    config can be logged safely.
    """

    SERVICE: ClassVar[str] = ""

    host: str = "127.0.0.1"
    port: int = 0
    users_file: str = ""
    log_level: str = "INFO"
    heartbeat_interval_s: float = 1.0
    idle_timeout_s: float = 15.0
    login_timeout_s: float = 10.0
    max_frame_bytes: int = 1_048_576
    max_frame_bytes_before_login: int = 4096
    max_output_buffer_bytes: int = 8_388_608
    service_username: str = "service"
    service_password: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        """Range checks; runs however the object was built (loader, tests, code)."""
        level = self.log_level.upper()
        if level not in _LOG_LEVELS:
            raise ConfigError(
                f"expected one of {', '.join(_LOG_LEVELS)}, got {self.log_level!r}",
                field="log_level",
            )
        object.__setattr__(self, "log_level", level)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "port" or f.name.endswith("_port"):
                low = 0 if f.name == "port" else 1
                if not low <= value <= 65535:
                    raise ConfigError(
                        f"expected a port number {low}-65535, got {value!r}", field=f.name
                    )
            elif f.name.endswith("_s") and not (math.isfinite(value) and value > 0):
                raise ConfigError(
                    f"expected a positive number of seconds, got {value!r}", field=f.name
                )
        if self.max_frame_bytes < 8:
            raise ConfigError("expected at least 8 bytes", field="max_frame_bytes")
        if not 8 <= self.max_frame_bytes_before_login <= self.max_frame_bytes:
            raise ConfigError(
                "expected at least 8 bytes and at most max_frame_bytes",
                field="max_frame_bytes_before_login",
            )
        if self.max_output_buffer_bytes < self.max_frame_bytes:
            raise ConfigError(
                "expected at least max_frame_bytes (one frame must fit)",
                field="max_output_buffer_bytes",
            )
        if not self.host:
            raise ConfigError("must not be empty", field="host")


def _check_tls_pair(config: Any) -> None:
    """A TLS port needs both its certificate and its key (docs/reliability.md, TLS)."""
    if bool(config.tls_cert_file) != bool(config.tls_key_file):
        missing = "tls_key_file" if config.tls_cert_file else "tls_cert_file"
        raise ConfigError(
            "TLS needs both tls_cert_file and tls_key_file (or neither)", field=missing
        )


@dataclass(frozen=True, kw_only=True)
class OrderBookConfig(CommonConfig):
    """The Order Book: the single writer of truth, with its journal in ``data_dir``."""

    SERVICE: ClassVar[str] = "order_book"

    port: int = 7401
    data_dir: Path = Path("./var/order_book")
    fsync: Literal["batch", "always", "none"] = "batch"


@dataclass(frozen=True, kw_only=True)
class InfoConfig(CommonConfig):
    """Info: the market-data mirror of the Order Book's event stream."""

    SERVICE: ClassVar[str] = "info"

    port: int = 7402
    order_book_host: str = "127.0.0.1"
    order_book_port: int = 7401
    data_dir: Path = Path("./var/info")
    book_wait_s: float = 1.0
    """How long an instrument creation waits for its book's OnOrderBookCreated event."""
    upstream_wait_s: float = 5.0
    """How long start-up waits for the first Order Book snapshot before serving anyway."""
    stats_save_interval_s: float = 5.0
    """How often changed trade statistics (quotes, trade numbering) are saved."""
    tls_cert_file: str = ""
    """PEM certificate chain; with ``tls_key_file`` the Info port speaks TLS (empty: plain TCP)."""
    tls_key_file: str = ""
    """PEM private key of ``tls_cert_file``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_tls_pair(self)


@dataclass(frozen=True, kw_only=True)
class AdminConfig(CommonConfig):
    """Admin: orchestrates instrument creation and deletion across Order Book and Info."""

    SERVICE: ClassVar[str] = "admin"

    port: int = 7403
    order_book_host: str = "127.0.0.1"
    order_book_port: int = 7401
    info_host: str = "127.0.0.1"
    info_port: int = 7402
    data_dir: Path = Path("./var/admin")
    request_timeout_s: float = 5.0
    fsync_intents: bool = True
    """fsync the intent log on every change (tests turn it off; see docs/admin.md)."""
    info_tls_ca_file: str = ""
    """PEM certificate (or its authority) to trust when Info speaks TLS; empty: plain TCP."""


@dataclass(frozen=True, kw_only=True)
class RiskGatewayConfig(CommonConfig):
    """The Risk Gateway: participants' only door; checks limits, forwards orders."""

    SERVICE: ClassVar[str] = "risk_gateway"

    port: int = 7404
    order_book_host: str = "127.0.0.1"
    order_book_port: int = 7401
    info_host: str = "127.0.0.1"
    info_port: int = 7402
    data_dir: Path = Path("./var/risk_gateway")
    fsync: Literal["always", "none"] = "none"
    """Journal records are flushed to the OS before a request is forwarded;
    ``always`` also fsyncs them (survives a power cut, costs a disk sync each)."""
    limit_history_s: float = 3600.0
    """Window history kept even without a limit in force, so a limit set later
    applies to its trailing window at once (up to this long)."""
    max_limit_window_s: int = 86400
    """Longest ``window_in_seconds`` a rolling limit may be set to."""
    reconnect_max_backoff_s: float = 2.0
    """Upper bound of the reconnect backoff to the Order Book and Info."""
    tls_cert_file: str = ""
    """PEM certificate chain; with ``tls_key_file`` the Gateway port speaks TLS (empty: plain TCP)."""
    tls_key_file: str = ""
    """PEM private key of ``tls_cert_file``."""
    info_tls_ca_file: str = ""
    """PEM certificate (or its authority) to trust when Info speaks TLS; empty: plain TCP."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_tls_pair(self)


# ------------------------------------------------------------------ conversion


@dataclass(frozen=True)
class _FieldSpec:
    name: str
    kind: type | tuple[str, ...]  # a plain type, or the choices of a Literal
    common: bool

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def describe(self) -> str:
        if isinstance(self.kind, tuple):
            return "one of " + ", ".join(repr(c) for c in self.kind)
        return {
            int: "an integer",
            float: "a number",
            bool: "a boolean (true/false)",
            str: "a string",
            Path: "a path",
        }[self.kind]


def _field_specs(cls: type[CommonConfig]) -> dict[str, _FieldSpec]:
    """Resolve and check the field types of a config dataclass (a programming error
    here is a TypeError, not a ConfigError)."""
    hints = typing.get_type_hints(cls)
    common_names = {f.name for f in dataclasses.fields(CommonConfig)}
    specs: dict[str, _FieldSpec] = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        kind: type | tuple[str, ...]
        if typing.get_origin(hint) is Literal:
            choices = typing.get_args(hint)
            if not all(isinstance(c, str) for c in choices):
                raise TypeError(f"{cls.__name__}.{f.name}: only Literal[str, ...] is supported")
            kind = tuple(str(c) for c in choices)
        elif hint in (str, int, float, bool, Path):
            kind = hint
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: unsupported config type {hint!r}")
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{f.name}: config fields need a default")
        specs[f.name] = _FieldSpec(f.name, kind, f.name in common_names)
    return specs


def _from_string(spec: _FieldSpec, text: Any) -> object:
    """Convert an environment or command-line string; ValueError carries the reason."""
    kind = spec.kind
    if isinstance(kind, tuple):
        if text in kind:
            return text
    elif kind is bool:
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    elif kind is int:
        try:
            return int(text.strip(), 10)
        except ValueError:
            pass
    elif kind is float:
        try:
            number = float(text)
        except ValueError:
            pass
        else:
            if math.isfinite(number):
                return number
    elif kind is Path:
        return Path(text)
    else:
        return text
    raise ValueError(f"expected {spec.describe()}, got {text!r}")


def _from_toml(spec: _FieldSpec, value: object) -> object:
    """Check a TOML value's type (TOML is typed, so no string parsing here)."""
    kind = spec.kind
    if isinstance(kind, tuple):
        if isinstance(value, str) and value in kind:
            return value
    elif kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and isinstance(value, int | float) and math.isfinite(value):
            return float(value)
    elif kind is Path:
        if isinstance(value, str):
            return Path(value)
    elif isinstance(value, str):
        return value
    raise ValueError(f"expected {spec.describe()}, got {value!r}")


# ------------------------------------------------------------------ the loader


def env_var_names(cls: type[CommonConfig], field_name: str) -> tuple[str, ...]:
    """The environment variables that set ``field_name``, lowest priority first."""
    specific = f"{_ENV_PREFIX}{cls.SERVICE.upper()}_{field_name.upper()}"
    if field_name in {f.name for f in dataclasses.fields(CommonConfig)}:
        return (f"{_ENV_PREFIX}{field_name.upper()}", specific)
    return (specific,)


def build_parser(cls: type[CommonConfig], *, prog: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser with ``--config`` and one ``--field-name`` flag per field.

    Defaults are suppressed so that only flags actually given override lower layers.
    """
    _check_service(cls)
    parser = argparse.ArgumentParser(
        prog=prog or f"optivex-{cls.SERVICE.replace('_', '-')}",
        description=(cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else None,
        argument_default=argparse.SUPPRESS,
        exit_on_error=False,
    )
    parser.add_argument(
        "--config", metavar="FILE", help="TOML file ([common] and a table per service)"
    )
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    for spec in _field_specs(cls).values():
        if spec.name == "service_password":
            default = " (prefer the environment: flags are visible in ps)"
        else:
            value = defaults[spec.name]
            shown = repr(value) if isinstance(value, str) else str(value)
            default = f" (default: {shown})"
        env = " / ".join(env_var_names(cls, spec.name))
        parser.add_argument(
            spec.flag,
            dest=spec.name,
            metavar="VALUE",
            help=f"{spec.describe()}{default}; env {env}",
        )
    return parser


def load_config(
    cls: type[C],
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    prog: str | None = None,
) -> C:
    """Build ``cls`` from defaults < TOML < environment < flags (see module docs).

    ``argv`` excludes the program name (``None`` means ``sys.argv[1:]``);
    ``environ`` defaults to :data:`os.environ`. ``--help`` prints and exits as
    usual; every other problem raises :class:`ConfigError`. ``prog`` names the
    command in ``--help`` (default ``optivex-<service>``).
    """
    _check_service(cls)
    environ = os.environ if environ is None else environ
    specs = _field_specs(cls)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}

    parser = build_parser(cls, prog=prog)
    try:
        namespace, extra = parser.parse_known_args(argv)
    except argparse.ArgumentError as exc:
        raise ConfigError(f"command line: {exc}") from None
    if extra:
        raise ConfigError(f"command line: unrecognized arguments: {' '.join(extra)}")
    flags: dict[str, str] = vars(namespace)

    # 2. TOML file
    config_path = flags.pop("config", None) or environ.get(f"{_ENV_PREFIX}CONFIG", "")
    if config_path:
        data = _read_toml(config_path)
        for table_name in ("common", cls.SERVICE):
            table = data.get(table_name, {})
            for key, raw in table.items():
                where = f"{config_path} [{table_name}] {key}"
                spec = specs.get(key)
                if spec is None or (table_name == "common" and not spec.common):
                    scope = CommonConfig if table_name == "common" else cls
                    raise ConfigError(
                        f"{where}: unknown key (not a field of {scope.__name__})", field=key
                    )
                values[key] = _convert(where, _from_toml, spec, raw)
                sources[key] = where

    # 3. environment
    own_prefix = f"{_ENV_PREFIX}{cls.SERVICE.upper()}_"
    known_env = {name for spec in specs.values() for name in env_var_names(cls, spec.name)}
    known_env |= CLIENT_ENV_VARS
    for name in sorted(environ):
        if name.startswith(own_prefix) and name not in known_env:
            raise ConfigError(f"{name}: unknown setting for {cls.SERVICE}")
    for spec in specs.values():
        for name in env_var_names(cls, spec.name):
            if name in environ:
                values[spec.name] = _convert(name, _from_string, spec, environ[name])
                sources[spec.name] = name

    # 4. flags
    for key, text in flags.items():
        spec = specs[key]
        values[key] = _convert(spec.flag, _from_string, spec, text)
        sources[key] = spec.flag

    try:
        return cls(**values)
    except ConfigError as exc:
        where = sources.get(exc.field or "", f"default {exc.field}")
        raise ConfigError(f"{where}: {exc}", field=exc.field) from None


def _convert(
    where: str, convert: Callable[[_FieldSpec, Any], object], spec: _FieldSpec, raw: object
) -> object:
    try:
        return convert(spec, raw)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}", field=spec.name) from None


def _read_toml(path: str) -> dict[str, dict[str, object]]:
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path!r}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    allowed = ("common", *SERVICE_NAMES)
    for key, value in data.items():
        if key not in allowed:
            raise ConfigError(
                f"{path}: unknown table [{key}]; expected "
                + ", ".join(f"[{name}]" for name in allowed)
            )
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: {key} must be a table ([{key}])")
    return data


def _check_service(cls: type[CommonConfig]) -> None:
    if cls.SERVICE not in SERVICE_NAMES:
        raise TypeError(f"{cls.__name__}.SERVICE must be one of {SERVICE_NAMES}")


# ------------------------------------------------------------------ start-up checks


def require_upb_backend() -> None:
    """Refuse to start on the pure-Python protobuf backend (about 20x slower).

    The import is local so that only services, not every importer of this module,
    touch protobuf.
    """
    from google.protobuf.internal import api_implementation

    backend = api_implementation.Type()
    if backend != "upb":
        raise RuntimeError(
            f"protobuf is using its {backend!r} backend, not the fast 'upb' one; "
            "install the binary protobuf wheel for this platform and unset "
            "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"
        )
