"""Options, the session's exchange, per-test worlds and the graded report.

By default one exchange (ours) is started for the whole session as a subprocess
on free ports with a fresh data directory; ``--target`` grades an exchange that
is already running instead.  See docs/grading.md.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from system_tests.harness import conn as conn_module
from system_tests.harness.conn import Endpoint
from system_tests.harness.exchange import (
    DEMO_ADMIN,
    LocalExchange,
    Target,
    local_target,
    parse_logins,
    parse_target,
)
from system_tests.harness.sentinel import Sentinel
from system_tests.harness.world import World
from system_tests.report import GradeReport

REPORT_KEY = pytest.StashKey[GradeReport]()
_CONFIG: list[pytest.Config] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("optivex-grade", "Optivex system tests (black-box grader)")
    group.addoption(
        "--target",
        default=None,
        metavar="HOST:OB,INFO,ADMIN,GW",
        help="grade an exchange already running there instead of starting ours",
    )
    group.addoption("--admin-user", default=DEMO_ADMIN[0], help="admin login (default: admin)")
    group.addoption(
        "--admin-password", default=DEMO_ADMIN[1], help="admin password (default: admin-demo)"
    )
    group.addoption(
        "--participants",
        default=None,
        metavar="USER:PW,...",
        help="participant logins, at least 4 for full coverage (default: the demo ones)",
    )
    group.addoption("--service-user", default="service", help="the services' own account")
    group.addoption(
        "--service-password",
        default=None,
        help="password of the service account; without it (and --target) tests that need "
        "the Order Book port are skipped",
    )
    group.addoption(
        "--grade-results",
        default="results/grade",
        help="folder for summary.md, grade.json and junit.xml (default: results/grade)",
    )
    group.addoption(
        "--grade-timeout",
        type=float,
        default=5.0,
        help="seconds to wait for any expected message (default: 5)",
    )
    group.addoption(
        "--login-timeout",
        type=float,
        default=10.0,
        help="the exchange's configured login timeout in seconds (default: 10)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "restart: restarts the exchange; such tests run after all others"
    )
    config.stash[REPORT_KEY] = GradeReport()
    _CONFIG[:] = [config]
    timeout = config.getoption("--grade-timeout", default=None)
    if timeout:
        conn_module.DEFAULT_TIMEOUT = float(timeout)


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Tests that restart the exchange run last, so every other test sees one run."""
    items.sort(key=lambda item: item.get_closest_marker("restart") is not None)


# --------------------------------------------------------------------------- fixtures


def _external_target(config: pytest.Config) -> Target:
    host, ports = parse_target(config.getoption("--target"))
    names = ("Order Book", "Info", "Admin", "Risk Gateway")
    ob, info, admin, gateway = (Endpoint(n, host, p) for n, p in zip(names, ports, strict=True))
    target = Target(ob, info, admin, gateway)
    target.admin_login = (config.getoption("--admin-user"), config.getoption("--admin-password"))
    if config.getoption("--participants"):
        target.participants = parse_logins(config.getoption("--participants"))
    if config.getoption("--service-password") is not None:
        target.service_login = (
            config.getoption("--service-user"),
            config.getoption("--service-password"),
        )
    return target


@pytest.fixture(scope="session")
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    """The exchange under test, started once per session (or given by --target)."""
    config = request.config
    report = config.stash[REPORT_KEY]
    exchange: LocalExchange | None = None
    report.started = time.time()  # the grade's clock starts with its exchange
    if config.getoption("--target"):
        tgt = _external_target(config)
    else:
        exchange = LocalExchange(tmp_path_factory.mktemp("exchange"))
        try:
            ready = exchange.start()
        except RuntimeError as exc:
            report.target = f"local exchange FAILED TO START: {str(exc).splitlines()[0]}"
            raise
        tgt = local_target(exchange, ready)
        if config.getoption("--participants"):
            tgt.participants = parse_logins(config.getoption("--participants"))
    report.target = tgt.describe()
    for endpoint in tgt.endpoints():
        sentinel = Sentinel(endpoint)
        sentinel.start(max_wait_s=config.getoption("--login-timeout") * 3 + 30)
        tgt.sentinels[endpoint.name] = sentinel
    try:
        yield tgt
    finally:
        if exchange is not None:
            status = exchange.stop()
            if status not in (0, None):
                print(
                    f"\nsystem tests: the exchange stopped with status {status}; log: {exchange.log_path}"
                )


@pytest_asyncio.fixture
async def world(target: Target, request: pytest.FixtureRequest) -> AsyncIterator[World]:
    """A fresh view of the exchange for one test; cleans up after it."""
    w = World(target, request.node.nodeid)
    try:
        yield w
    finally:
        await w.cleanup()


# --------------------------------------------------------------------------- the report


def _rule_of(item: pytest.Item) -> str:
    function = getattr(item, "function", None)
    doc = inspect.getdoc(function) if function is not None else None
    return " ".join((doc or "").split("\n\n")[0].split())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    reason = ""
    if call.excinfo is not None and report.outcome != "passed":
        value = call.excinfo.value
        if call.excinfo.errisinstance(pytest.skip.Exception):
            reason = str(getattr(value, "msg", value))
        else:
            text = str(value).strip()
            first = text.splitlines()[0] if text else ""
            reason = (
                f"{type(value).__name__}: {first}"
                if not isinstance(value, AssertionError)
                else first
            )
            if not reason:
                reason = type(value).__name__
    elif report.outcome == "skipped" and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2])
    report.grade_reason = reason
    report.grade_rule = _rule_of(item)
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    config_report = _report_of(report)
    if config_report is None:
        return
    if report.when == "call" or report.outcome != "passed":
        reason = getattr(report, "grade_reason", "")
        if report.outcome == "skipped" and not reason and isinstance(report.longrepr, tuple):
            reason = str(report.longrepr[2])
        config_report.record(
            report.nodeid,
            report.when,
            report.outcome,
            reason.removeprefix("Skipped: "),
            report.longreprtext if report.outcome == "failed" else "",
            report.duration,
            getattr(report, "grade_rule", ""),
        )


def _report_of(report: pytest.TestReport) -> GradeReport | None:
    if not _CONFIG:
        return None
    return _CONFIG[0].stash.get(REPORT_KEY, None)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    grade = config.stash.get(REPORT_KEY, None)
    if grade is None or not grade.results:
        return
    results_dir = Path(config.getoption("--grade-results"))
    if not results_dir.is_absolute():
        results_dir = Path(config.invocation_params.dir) / results_dir
    try:
        grade.write(results_dir)
    except OSError as exc:
        terminalreporter.write_line(f"could not write the grade report to {results_dir}: {exc}")
        results_dir = None  # type: ignore[assignment]
    terminalreporter.section("Optivex grade")
    terminalreporter.write_line(grade.terminal_text(results_dir))
    terminalreporter.write_line(f"(graded in {time.time() - grade.started:.1f} s)")
