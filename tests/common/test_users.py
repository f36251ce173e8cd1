"""Password hashes, the users file, and the embedded demo accounts.

scrypt costs ~40 ms per run, so each test hashes or verifies with it only a few
times; bulk tests use cheap PBKDF2 entries (one iteration) instead.
"""

from __future__ import annotations

import base64
import hashlib
import stat
from pathlib import Path

import pytest

from services.common.pb import common_pb2
from services.common.users import (
    SERVICE_ACCOUNT,
    Role,
    User,
    UserStore,
    UserStoreError,
    check_password_hash,
    generate_service_password,
    hash_password,
    load_user_store,
    validate_username,
    verify_password,
)

# Published known-answer vectors, written in our encodings.
# RFC 7914 section 12: scrypt("password", "NaCl", N=1024, r=8, p=16, dkLen=64).
RFC7914_SCRYPT = (
    "scrypt$1024$8$16$TmFDbA$/bq+HJ00cgB4VucZDQHp/nxq18vII3gw53N2Y0s3MWIurzDZLiKjiG/"
    "xCSedmDDaxyevuUqD7m2DYMvfoswGQA"
)
# RFC 7914 section 11: PBKDF2-HMAC-SHA256("password", "salt", c=1, dkLen=32).
RFC7914_PBKDF2 = "pbkdf2_sha256$1$salt$Eg+2z/z4syxD5yJSVsT4N6hlSMkszDVICAWYfLcL4Xs="


def fast_hash(password: str, salt: str = "testsalt") -> str:
    """A cheap PBKDF2 hash in the accepted Django layout, for tests that need many."""
    key = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 1)
    return f"pbkdf2_sha256$1${salt}${base64.b64encode(key).decode()}"


def test_scrypt_round_trip_and_format() -> None:
    encoded = hash_password("correct horse")
    scheme, n, r, p, salt, key = encoded.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
    assert len(base64.b64decode(salt + "==")) == 16
    assert len(base64.b64decode(key + "==")) == 32
    assert verify_password(encoded, "correct horse")
    assert not verify_password(encoded, "correct horse ")


def test_salts_differ_between_hashes() -> None:
    salt = b"0123456789abcdef"
    fixed = hash_password("pw", salt=salt)
    assert fixed.split("$")[4] == base64.b64encode(salt).decode().rstrip("=")
    assert hash_password("pw") != fixed  # a fresh random salt by default


def test_known_answer_vectors() -> None:
    assert verify_password(RFC7914_SCRYPT, "password")
    assert not verify_password(RFC7914_SCRYPT, "Password")
    assert verify_password(RFC7914_PBKDF2, "password")
    assert not verify_password(RFC7914_PBKDF2, "passwor")


def test_pbkdf2_django_layout() -> None:
    encoded = fast_hash("s3cret", salt="pepper")
    assert verify_password(encoded, "s3cret")
    assert not verify_password(encoded, "s3cre")


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "plain",
        "md5$abc$def",
        "scrypt$16384$8$1$c2FsdA",  # too few parts
        "scrypt$16385$8$1$c2FsdHNhbHQ$" + "A" * 43,  # n not a power of two
        "scrypt$2097152$8$1$c2FsdHNhbHQ$" + "A" * 43,  # n too large
        "scrypt$16384$99$1$c2FsdHNhbHQ$" + "A" * 43,  # r out of range
        "scrypt$16384$8$1$!!!!$" + "A" * 43,  # salt not base64
        "scrypt$16384$8$1$c2FsdHNhbHQ$QUJD",  # key too short
        "scrypt$-1$8$1$c2FsdHNhbHQ$" + "A" * 43,
        "pbkdf2_sha256$0$salt$" + "A" * 43,
        "pbkdf2_sha256$1$$" + "A" * 43,
        "pbkdf2_sha256$x$salt$" + "A" * 43,
    ],
)
def test_malformed_hashes_are_rejected_and_never_verify(encoded: str) -> None:
    with pytest.raises(ValueError):
        check_password_hash(encoded)
    assert verify_password(encoded, "anything") is False


def test_role_numbers_match_protobuf() -> None:
    assert int(Role.PARTICIPANT) == int(common_pb2.PARTICIPANT) == 1
    assert int(Role.ADMIN) == int(common_pb2.ADMIN) == 2
    assert int(Role.SERVICE) == int(common_pb2.SERVICE) == 3
    assert Role.names() == ("participant", "admin", "service")
    assert Role.from_name("admin") is Role.ADMIN
    assert str(Role.PARTICIPANT) == "participant"
    with pytest.raises(ValueError, match="unknown role 'root'"):
        Role.from_name("root")
    with pytest.raises(ValueError):
        Role(0)  # ROLE_UNSPECIFIED is never a real account's role


def test_user_repr_hides_the_hash() -> None:
    secret_hash = fast_hash("pw")
    user = User("alice", Role.PARTICIPANT, secret_hash)
    assert secret_hash not in repr(user)
    assert secret_hash not in str(user)
    assert "alice" in repr(user)
    store = UserStore.from_mapping({"alice": {"role": "participant", "password_hash": secret_hash}})
    assert secret_hash not in repr(store)


@pytest.mark.parametrize("name", ["alice", "a", "Bob_2", "x.y@z-w", "9lives", "a" * 64])
def test_valid_usernames(name: str) -> None:
    assert validate_username(name) == name


@pytest.mark.parametrize("name", ["", "-x", ".x", "a b", "a\nb", "é", "a" * 65, 'a"b'])
def test_invalid_usernames(name: str) -> None:
    with pytest.raises(ValueError, match="invalid username"):
        validate_username(name)


def test_toml_round_trip(tmp_path: Path) -> None:
    store = UserStore()
    store.add_user("alice", Role.PARTICIPANT, password_hash=fast_hash("a"))
    store.add_user("ops.admin@example", "admin", password_hash=fast_hash("b"))
    store.add_user("svc", Role.SERVICE, password_hash=RFC7914_SCRYPT)
    text = store.to_toml()
    assert '[users."ops.admin@example"]' in text  # not a bare TOML key: quoted
    assert "[users.alice]" in text

    again = UserStore.loads(text)
    assert list(again) == list(store)

    path = tmp_path / "users.toml"
    store.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = UserStore.from_toml(path)
    assert list(loaded) == list(store)
    assert loaded.get("ops.admin@example") == User("ops.admin@example", Role.ADMIN, fast_hash("b"))
    assert loaded.get("nobody") is None
    assert len(loaded) == 3 and "svc" in loaded
    assert [p.name for p in tmp_path.iterdir()] == ["users.toml"]  # no temp file left


def test_add_replace_and_remove() -> None:
    store = UserStore()
    store.add_user("alice", "participant", password_hash=fast_hash("a"))
    store.add_user("alice", "admin", password_hash=fast_hash("b"))
    user = store.get("alice")
    assert user is not None and user.role is Role.ADMIN
    assert store.remove_user("alice") is True
    assert store.remove_user("alice") is False
    with pytest.raises(ValueError, match="exactly one"):
        store.add_user("bob", "participant")
    with pytest.raises(ValueError, match="exactly one"):
        store.add_user("bob", "participant", password="x", password_hash=fast_hash("x"))
    with pytest.raises(ValueError, match="empty"):
        store.add_user("bob", "participant", password="")
    with pytest.raises(ValueError, match="unknown scheme"):
        store.add_user("bob", "participant", password_hash="plaintext")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[users.alice]\nrole = 'participant'\n", "password_hash must be a string"),
        ("[users.alice]\npassword_hash = 'x'\n", "role must be a string"),
        ("[users.alice]\nrole = 'root'\npassword_hash = 'x'\n", "unknown role 'root'"),
        ("[users.alice]\nrole = 'admin'\npassword_hash = 'x'\n", "unknown scheme"),
        ("[users.alice]\nrole = 'admin'\npassword = 'x'\n", "unknown key(s) password"),
        ("[users.'bad name']\nrole = 'admin'\n", "invalid username"),
        ("[groups]\n", "unknown top-level key(s) groups"),
        ("users = 3\n", "'users' must be a table"),
        ("[users.alice\n", "invalid TOML"),
        ("[users]\nalice = 'admin'\n", "expected a table"),
    ],
)
def test_bad_users_files_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(UserStoreError) as info:
        UserStore.loads(text, source="users.toml")
    assert message in str(info.value)
    assert str(info.value).startswith("users.toml")


def test_missing_users_file(tmp_path: Path) -> None:
    with pytest.raises(UserStoreError, match="cannot read users file"):
        UserStore.from_toml(tmp_path / "absent.toml")


def test_demo_store_has_exactly_the_documented_logins() -> None:
    service_password = generate_service_password()
    store = UserStore.demo(service_password)
    roles = {user.name: user.role for user in store}
    assert roles == {
        "admin": Role.ADMIN,
        "alice": Role.PARTICIPANT,
        "bob": Role.PARTICIPANT,
        "carol": Role.PARTICIPANT,
        "dave": Role.PARTICIPANT,
        SERVICE_ACCOUNT: Role.SERVICE,
    }
    # One scrypt verification each (~40 ms): the published demo passwords work.
    for name in ("admin", "alice", "bob", "carol", "dave"):
        user = store.get(name)
        assert user is not None
        assert verify_password(user.password_hash, f"{name}-demo"), name
    service = store.get(SERVICE_ACCOUNT)
    assert service is not None
    assert verify_password(service.password_hash, service_password)
    assert not verify_password(service.password_hash, "service-demo")


def test_demo_needs_a_service_password() -> None:
    with pytest.raises(ValueError, match="service password"):
        UserStore.demo("")


def test_service_passwords_are_random_and_long() -> None:
    first, second = generate_service_password(), generate_service_password()
    assert first != second
    assert len(first) >= 40


def test_load_user_store_follows_configuration(tmp_path: Path) -> None:
    # Empty users_file and no service password: demo logins, no service account.
    store = load_user_store("", "")
    assert SERVICE_ACCOUNT not in store and "alice" in store and len(store) == 5
    # A users file wins over the demo accounts entirely.
    path = tmp_path / "users.toml"
    custom = UserStore()
    custom.add_user("zoe", "participant", password_hash=fast_hash("z"))
    custom.save(path)
    loaded = load_user_store(str(path), "ignored")
    assert [u.name for u in loaded] == ["zoe"]
