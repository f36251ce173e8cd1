"""The intent log: atomic, human-readable, survives restarts, tolerates damage."""

from __future__ import annotations

from pathlib import Path

from services.admin.intents import INTENTS_FILE, Intent, IntentLog, parse_line
from services.admin.model import BookId, Symbol


def test_lifecycle_of_an_intent_is_mirrored_to_the_file(tmp_path: Path) -> None:
    log = IntentLog(tmp_path / "admin", fsync=False)
    key = log.begin("create", Symbol("AAPL"))
    path = tmp_path / "admin" / INTENTS_FILE
    assert path.read_text() == "create AAPL\n"
    log.set_book(key, BookId(17))
    other = log.begin("delete", Symbol("MSFT"), BookId(4))
    assert path.read_text() == "create AAPL 17\ndelete MSFT 4\n"
    log.end(key)
    assert path.read_text() == "delete MSFT 4\n"
    log.end(other)
    assert path.read_text() == ""
    assert not (tmp_path / "admin" / (INTENTS_FILE + ".tmp")).exists()


def test_a_new_log_reads_what_the_previous_run_left(tmp_path: Path) -> None:
    first = IntentLog(tmp_path, fsync=True)
    key = first.begin("create", Symbol("AAPL"))
    first.set_book(key, BookId(3))
    second = IntentLog(tmp_path)
    assert second.load() == [Intent("create", Symbol("AAPL"), BookId(3))]
    assert second.open_intents() == [Intent("create", Symbol("AAPL"), BookId(3))]
    second.clear()
    assert IntentLog(tmp_path).load() == []


def test_damaged_lines_are_reported_and_skipped(tmp_path: Path) -> None:
    (tmp_path / INTENTS_FILE).write_text(
        "create AAPL 1\nfrobnicate X\ncreate bad-symbol\ndelete MSFT x\n\ndelete MSFT 2\n"
    )
    log = IntentLog(tmp_path)
    assert [i.render() for i in log.load()] == ["create AAPL 1", "delete MSFT 2"]
    assert len(log.problems) == 3


def test_missing_file_means_nothing_was_in_flight(tmp_path: Path) -> None:
    log = IntentLog(tmp_path / "nowhere")
    assert log.load() == [] and log.problems == []


def test_parse_line_round_trips() -> None:
    for intent in (Intent("create", Symbol("A.B")), Intent("delete", Symbol("X-1"), BookId(9))):
        assert parse_line(intent.render()) == intent
