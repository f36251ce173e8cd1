"""Grader self-checks (not scored): the suite is independent and its framing is right.

These need no exchange.  They keep the grader honest: it must not import the
code it grades, its framing must reproduce the contract's test vectors, and its
hand-typed type table must agree with the generated protobuf code.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from system_tests import grade
from system_tests.harness.framing import FrameDecoder, FramingError, encode_frame
from system_tests.harness.messages import RESPONSE_OF, TYPES
from system_tests.pb import admin_pb2, common_pb2
from system_tests.report import GradeReport

SUITE = Path(__file__).resolve().parent
FORBIDDEN = ("services", "clients")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
            names += [
                a.value
                for a in node.args
                if isinstance(a, ast.Constant) and isinstance(a.value, str)
            ]
    return names


def test_suite_imports_nothing_from_the_exchange() -> None:
    """system_tests imports nothing from services/ or clients/ (a shared bug must not hide)."""
    offenders = []
    for path in sorted(SUITE.rglob("*.py")):
        if "pb" in path.relative_to(SUITE).parts[:1]:
            continue
        for name in _imports(path):
            if name.split(".")[0] in FORBIDDEN:
                offenders.append(f"{path.relative_to(SUITE)} imports {name}")
    assert not offenders, f"expected no imports from services/ or clients/, received: {offenders}"


def test_generated_pb_is_the_suites_own() -> None:
    """The grader's protobuf modules are its own generated copy (package optivex.systest)."""
    assert common_pb2.__name__ == "system_tests.pb.common_pb2"
    assert common_pb2.LoginRequest.DESCRIPTOR.full_name.startswith("optivex.systest.")


def test_frame_vectors_of_the_contract() -> None:
    """PROTOCOL.md section 1 test vectors."""
    login = common_pb2.LoginRequest(request_id=1, username="alice")
    assert encode_frame(0, login.SerializeToString()).hex() == "0000000d0000000008011205616c696365"
    assert (
        encode_frame(34, admin_pb2.ListInstrumentsRequest().SerializeToString()).hex()
        == "0000000400000022"
    )


def test_decoder_splits_and_coalesces() -> None:
    """Read exactly `length` bytes, however the stream splits or coalesces them."""
    frames = [encode_frame(i % 200, bytes([i % 256]) * (i % 7)) for i in range(1000)]
    stream = b"".join(frames)
    whole = FrameDecoder().feed(stream)
    assert len(whole) == 1000
    decoder = FrameDecoder()
    split: list[tuple[int, bytes]] = []
    for i in range(len(stream)):
        split += decoder.feed(stream[i : i + 1])
    assert split == whole and decoder.pending == 0
    with pytest.raises(FramingError):
        FrameDecoder().feed(bytes.fromhex("00000002ffff"))


def test_type_table_matches_generated_enum() -> None:
    """The hand-typed table of PROTOCOL.md section 4 agrees with common.proto's MessageType."""
    enum = common_pb2.MessageType
    for number, (name, _cls) in TYPES.items():
        actual = enum.Name(number)  # type: ignore[arg-type]
        assert actual == name, f"type {number}: table says {name}, enum says {actual}"
    public = {v.number for v in enum.DESCRIPTOR.values if v.number < 128}
    assert public <= set(TYPES), (
        f"public enum numbers missing from the table: {sorted(public - set(TYPES))}"
    )
    assert RESPONSE_OF[0] == 1 and RESPONSE_OF[40] == 41 and RESPONSE_OF[144] == 145


def test_grade_command_line() -> None:
    """`optivex grade` runs this folder with the pytest settings it needs."""
    args = grade.pytest_args(["-k", "risk"])
    assert args[0] == str(SUITE) and "asyncio_mode=auto" in args and args[-2:] == ["-k", "risk"]


def test_report_renders(tmp_path: Path) -> None:
    """The graded report writes summary.md, grade.json and junit.xml with per-area scores."""
    report = GradeReport(target="unit test")
    report.record("system_tests/test_matching.py::test_a", "call", "passed", "", "", 0.1, "rule a")
    report.record(
        "system_tests/test_matching.py::test_b",
        "call",
        "failed",
        "expected 1, received 2",
        "trace",
        0.1,
        "rule b",
    )
    report.record("system_tests/test_login.py::test_c", "setup", "skipped", "needs x", "", 0.0, "")
    report.write(tmp_path)
    markdown = (tmp_path / "summary.md").read_text()
    assert "| Order book matching | 1 | 2 | 0 | 50.0% |" in markdown
    assert "expected 1, received 2" in markdown
    junit: Any = (tmp_path / "junit.xml").read_text()
    assert 'failures="1"' in junit and "<skipped" in junit
    assert report.overall().score == 50.0
