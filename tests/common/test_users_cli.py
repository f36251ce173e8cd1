"""`optivex users add/list/remove`: files written right, passwords never echoed."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest

from services.common.users import Role, UserStore, verify_password
from services.common.users_cli import main

PASSWORD = "correct horse battery"


class Tty(io.StringIO):
    """Standard input that claims to be a terminal (so the CLI prompts)."""

    def isatty(self) -> bool:
        return True


def run(
    argv: list[str], stdin: io.StringIO | None = None, answers: list[str] | None = None
) -> tuple[int, str, str, list[str]]:
    out, err = io.StringIO(), io.StringIO()
    replies = list(answers or [])
    prompts: list[str] = []

    def prompt(text: str) -> str:
        prompts.append(text)
        return replies.pop(0)

    stdin = stdin if stdin is not None else io.StringIO()
    code = main(argv, stdin=stdin, stdout=out, stderr=err, prompt=prompt)
    return code, out.getvalue(), err.getvalue(), prompts


def test_add_from_stdin_creates_the_file(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    code, out, err, prompts = run(
        ["add", "alice", "--role", "participant", "--file", str(path), "--password-stdin"],
        stdin=io.StringIO(PASSWORD + "\r\nignored second line\n"),
    )
    assert (code, err, prompts) == (0, "", [])
    assert out == f"added user alice (participant) in {path}\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert PASSWORD not in path.read_text()
    user = UserStore.from_toml(path).get("alice")
    assert user is not None and user.role is Role.PARTICIPANT
    assert verify_password(user.password_hash, PASSWORD)


def test_interactive_add_prompts_twice_and_updates(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    store = UserStore()
    store.add_user("bob", "participant", password_hash="pbkdf2_sha256$1$s$" + "A" * 43)
    store.add_user("carol", "participant", password_hash="pbkdf2_sha256$1$s$" + "B" * 43)
    store.save(path)
    code, out, err, prompts = run(
        ["add", "bob", "--role", "admin", "--file", str(path)],
        stdin=Tty(),
        answers=[PASSWORD, PASSWORD],
    )
    assert code == 0, err
    assert out.startswith("updated user bob (admin)")
    assert prompts == ["Password for bob: ", "Repeat password: "]
    loaded = UserStore.from_toml(path)
    assert [(u.name, u.role) for u in loaded] == [("bob", Role.ADMIN), ("carol", Role.PARTICIPANT)]
    for text in (out, err):
        assert PASSWORD not in text


@pytest.mark.parametrize(
    ("answers", "message"),
    [([PASSWORD, PASSWORD + "!"], "do not match"), (["", ""], "empty password")],
)
def test_interactive_add_refuses_bad_input(
    tmp_path: Path, answers: list[str], message: str
) -> None:
    path = tmp_path / "users.toml"
    code, _, err, _ = run(
        ["add", "bob", "--role", "admin", "--file", str(path)], stdin=Tty(), answers=answers
    )
    assert code == 1 and message in err
    assert not path.exists()


def test_add_without_terminal_needs_password_stdin(tmp_path: Path) -> None:
    code, _, err, prompts = run(["add", "bob", "--role", "admin", "--file", str(tmp_path / "u")])
    assert code == 1 and "--password-stdin" in err and prompts == []


def test_add_rejects_bad_names_and_broken_files(tmp_path: Path) -> None:
    code, _, err, _ = run(["add", "bad name", "--role", "admin", "--file", str(tmp_path / "u")])
    assert code == 1 and "invalid username" in err
    broken = tmp_path / "broken.toml"
    broken.write_text("[users.x]\nrole = 'admin'\n")
    code, _, err, _ = run(
        ["add", "bob", "--role", "admin", "--file", str(broken), "--password-stdin"],
        stdin=io.StringIO("pw\n"),
    )
    assert code == 1 and "password_hash must be a string" in err
    with pytest.raises(SystemExit):
        run(["add", "bob", "--role", "root"])  # argparse: invalid choice


def test_list_and_remove(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    store = UserStore()
    secret_hash = "pbkdf2_sha256$1$s$" + "A" * 43
    store.add_user("alice", "participant", password_hash=secret_hash)
    store.add_user("ops", "admin", password_hash=secret_hash)
    store.save(path)
    code, out, _, _ = run(["list", "--file", str(path)])
    assert code == 0
    assert out == "alice  participant\nops    admin\n"
    assert "pbkdf2" not in out

    code, out, _, _ = run(["remove", "ops", "--file", str(path)])
    assert code == 0 and "removed user ops" in out
    code, _, err, _ = run(["remove", "ops", "--file", str(path)])
    assert code == 1 and "no user 'ops'" in err
    assert [u.name for u in UserStore.from_toml(path)] == ["alice"]

    code, _, err, _ = run(["list", "--file", str(tmp_path / "absent.toml")])
    assert code == 1 and "cannot read users file" in err
