"""Layered configuration: defaults < TOML ([common] < [service]) < env < flags."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from services.common import config as config_module
from services.common.config import (
    AdminConfig,
    CommonConfig,
    ConfigError,
    InfoConfig,
    OrderBookConfig,
    RiskGatewayConfig,
    build_parser,
    env_var_names,
    load_config,
    require_upb_backend,
)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "optivex.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_defaults_and_service_ports() -> None:
    expected: dict[type[CommonConfig], int] = {
        OrderBookConfig: 7401,
        InfoConfig: 7402,
        AdminConfig: 7403,
        RiskGatewayConfig: 7404,
    }
    for cls, port in expected.items():
        cfg = load_config(cls, [], environ={})
        assert cfg.port == port
        assert cfg.host == "127.0.0.1"
        assert cfg.users_file == ""
        assert cfg.max_frame_bytes_before_login == 4096
        assert cfg.service_username == "service"
    ob = load_config(OrderBookConfig, [], environ={})
    assert ob.fsync == "batch"
    assert ob.data_dir == Path("./var/order_book")
    admin = load_config(AdminConfig, [], environ={})
    assert (admin.order_book_port, admin.info_port, admin.request_timeout_s) == (7401, 7402, 5.0)


def test_layering_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [common]
        idle_timeout_s = 20
        login_timeout_s = 7.5
        heartbeat_interval_s = 2.0
        max_output_buffer_bytes = 2000000
        log_level = "warning"

        [order_book]
        login_timeout_s = 8.5
        heartbeat_interval_s = 3.0
        max_output_buffer_bytes = 3000000

        [info]
        port = 9999   # other services' tables are allowed and ignored here
        """,
    )
    environ = {
        "OPTIVEX_HEARTBEAT_INTERVAL_S": "4.0",  # common variable beats the TOML file
        "OPTIVEX_MAX_OUTPUT_BUFFER_BYTES": "4000000",
        "OPTIVEX_ORDER_BOOK_MAX_OUTPUT_BUFFER_BYTES": "5000000",  # service variable wins
        "OPTIVEX_ORDER_BOOK_FSYNC": "none",
    }
    cfg = load_config(OrderBookConfig, ["--config", path, "--fsync", "always"], environ=environ)
    assert cfg.idle_timeout_s == 20.0  # [common] only
    assert isinstance(cfg.idle_timeout_s, float)
    assert cfg.login_timeout_s == 8.5  # [order_book] beats [common]
    assert cfg.heartbeat_interval_s == 4.0  # env beats TOML
    assert cfg.max_output_buffer_bytes == 5_000_000  # OPTIVEX_<SERVICE>_X beats OPTIVEX_X
    assert cfg.fsync == "always"  # flag beats env
    assert cfg.log_level == "WARNING"  # normalized
    assert cfg.port == 7401  # untouched: defaults remain


def test_config_file_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "[admin]\nrequest_timeout_s = 2.5\n")
    cfg = load_config(AdminConfig, [], environ={"OPTIVEX_CONFIG": path})
    assert cfg.request_timeout_s == 2.5
    other = tmp_path / "other.toml"
    other.write_text("[admin]\nrequest_timeout_s = 3.5\n", encoding="utf-8")
    cfg = load_config(AdminConfig, ["--config", str(other)], environ={"OPTIVEX_CONFIG": path})
    assert cfg.request_timeout_s == 3.5  # --config beats OPTIVEX_CONFIG


def test_flags_are_generated_from_fields(tmp_path: Path) -> None:
    cfg = load_config(
        RiskGatewayConfig,
        [
            "--host", "0.0.0.0",
            "--order-book-host", "ob.internal",
            "--order-book-port", "17401",
            "--data-dir", str(tmp_path),
            "--users-file", "users.toml",
        ],
        environ={},
    )  # fmt: skip
    assert cfg.host == "0.0.0.0"
    assert (cfg.order_book_host, cfg.order_book_port) == ("ob.internal", 17401)
    assert cfg.data_dir == tmp_path
    assert cfg.users_file == "users.toml"
    help_text = build_parser(RiskGatewayConfig).format_help()
    assert "--max-frame-bytes-before-login" in help_text
    assert "OPTIVEX_RISK_GATEWAY_PORT" in help_text


def test_port_zero_is_allowed_for_listening() -> None:
    cfg = load_config(InfoConfig, ["--port", "0"], environ={})
    assert cfg.port == 0


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        ([], {"OPTIVEX_ORDER_BOOK_PORT": "abc"}, "OPTIVEX_ORDER_BOOK_PORT: expected an integer, got 'abc'"),
        (["--port", "7.5"], {}, "--port: expected an integer, got '7.5'"),
        ([], {"OPTIVEX_IDLE_TIMEOUT_S": "soon"}, "OPTIVEX_IDLE_TIMEOUT_S: expected a number, got 'soon'"),
        ([], {"OPTIVEX_IDLE_TIMEOUT_S": "nan"}, "OPTIVEX_IDLE_TIMEOUT_S: expected a number, got 'nan'"),
        (["--fsync", "sometimes"], {}, "--fsync: expected one of 'batch', 'always', 'none', got 'sometimes'"),
        (["--fsync", "ALWAYS"], {}, "--fsync: expected one of"),
        (["--port", "65536"], {}, "--port: expected a port number 0-65535, got 65536"),
        (["--port", "-1"], {}, "--port: expected a port number 0-65535, got -1"),
        (["--login-timeout-s", "0"], {}, "--login-timeout-s: expected a positive number of seconds"),
        ([], {"OPTIVEX_LOG_LEVEL": "loud"}, "OPTIVEX_LOG_LEVEL: expected one of DEBUG, INFO"),
        (["--max-frame-bytes-before-login", "2000000"], {}, "--max-frame-bytes-before-login: expected at least 8 bytes and at most max_frame_bytes"),
        ([], {"OPTIVEX_ORDER_BOOK_PROT": "1"}, "OPTIVEX_ORDER_BOOK_PROT: unknown setting for order_book"),
        (["--prot", "1"], {}, "unrecognized arguments: --prot 1"),
        (["--port"], {}, "--port: expected one argument"),
        (["--host", ""], {}, "--host: must not be empty"),
    ],
)  # fmt: skip
def test_errors_name_the_field_and_source(
    argv: list[str], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(OrderBookConfig, argv, environ=environ)
    assert message in str(info.value)


def test_upstream_ports_must_be_real_ports() -> None:
    with pytest.raises(ConfigError, match="--order-book-port: expected a port number 1-65535"):
        load_config(InfoConfig, ["--order-book-port", "0"], environ={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[order_book]\nprot = 1\n", "[order_book] prot: unknown key (not a field of OrderBookConfig)"),
        ("[common]\ndata_dir = 'x'\n", "[common] data_dir: unknown key (not a field of CommonConfig)"),
        ("[orderbook]\nport = 1\n", "unknown table [orderbook]"),
        ("port = 1\n", "unknown table [port]"),
        ("common = 1\n", "common must be a table"),
        ("[order_book]\nport = '7401'\n", "[order_book] port: expected an integer, got '7401'"),
        ("[order_book]\nport = true\n", "[order_book] port: expected an integer, got True"),
        ("[order_book]\nfsync = 'never'\n", "[order_book] fsync: expected one of 'batch', 'always', 'none'"),
        ("[order_book]\ndata_dir = 3\n", "[order_book] data_dir: expected a path, got 3"),
        ("[order_book]\nidle_timeout_s = 'x'\n", "[order_book] idle_timeout_s: expected a number"),
        ("[order_book]\nidle_timeout_s = inf\n", "[order_book] idle_timeout_s: expected a number"),
        ("[order_book]\nport = 70000\n", "[order_book] port: expected a port number 0-65535"),
        ("[order_book\n", "invalid TOML"),
    ],
)  # fmt: skip
def test_toml_errors(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(OrderBookConfig, ["--config", path], environ={})
    assert message in str(info.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(OrderBookConfig, ["--config", str(tmp_path / "nope.toml")], environ={})


@dataclass(frozen=True, kw_only=True)
class _WithBool(OrderBookConfig):
    SERVICE: ClassVar[str] = "order_book"
    verbose: bool = False


@pytest.mark.parametrize(
    ("text", "value"), [("true", True), ("YES", True), ("1", True), ("off", False), ("0", False)]
)
def test_bool_parsing(text: str, value: bool) -> None:
    assert load_config(_WithBool, ["--verbose", text], environ={}).verbose is value


def test_bool_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--verbose: expected a boolean"):
        load_config(_WithBool, ["--verbose", "maybe"], environ={})
    path = write(tmp_path, "[order_book]\nverbose = 1\n")
    with pytest.raises(ConfigError, match="verbose: expected a boolean"):
        load_config(_WithBool, ["--config", path], environ={})


def test_service_password_stays_out_of_repr() -> None:
    cfg = load_config(AdminConfig, [], environ={"OPTIVEX_SERVICE_PASSWORD": "s3cr3t-service-pw"})
    assert cfg.service_password == "s3cr3t-service-pw"
    assert "s3cr3t-service-pw" not in repr(cfg)


def test_config_is_frozen() -> None:
    cfg = load_config(OrderBookConfig, [], environ={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.port = 1  # type: ignore[misc]


def test_env_var_names() -> None:
    assert env_var_names(OrderBookConfig, "port") == ("OPTIVEX_PORT", "OPTIVEX_ORDER_BOOK_PORT")
    assert env_var_names(InfoConfig, "order_book_host") == ("OPTIVEX_INFO_ORDER_BOOK_HOST",)


def test_unsupported_field_types_are_programming_errors() -> None:
    @dataclass(frozen=True, kw_only=True)
    class Bad(OrderBookConfig):
        SERVICE: ClassVar[str] = "order_book"
        tags: list[str] = dataclasses.field(default_factory=list)

    with pytest.raises(TypeError, match="unsupported config type"):
        load_config(Bad, [], environ={})

    @dataclass(frozen=True, kw_only=True)
    class Nameless(CommonConfig):
        pass

    with pytest.raises(TypeError, match="SERVICE"):
        load_config(Nameless, [], environ={})


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(ConfigError, match="port"):
        OrderBookConfig(port=99999)
    assert OrderBookConfig(port=0, log_level="debug").log_level == "DEBUG"


def test_require_upb_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    require_upb_backend()  # the pinned wheel ships upb
    from google.protobuf.internal import api_implementation

    monkeypatch.setattr(api_implementation, "Type", lambda: "python")
    with pytest.raises(RuntimeError, match="'python' backend"):
        require_upb_backend()
    assert config_module.SERVICE_NAMES == ("order_book", "info", "admin", "risk_gateway")
