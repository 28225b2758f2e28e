"""htpasswd files: the parser (property-tested), rewriting, and the checker over them."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest
from cred_fakes import InlineThreads
from hypothesis import given, settings
from hypothesis import strategies as st

from torsion.cred import (
    HtpasswdChecker,
    HtpasswdEntry,
    HtpasswdFile,
    PasswordFileError,
    UnauthorizedLogin,
    UsernamePassword,
    _htpasswd,
    hash_password,
)
from torsion.internet import Reactor
from torsion.testing import failure_result_of, require_peer, success_result_of

# -- the parser ---------------------------------------------------------------------

usernames = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters=":"),
    min_size=1,
    max_size=40,
).filter(lambda u: u == u.strip() and not u.startswith("#") and u.strip())
hashes = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp")), max_size=80
)
comments = st.one_of(
    st.just(""),
    st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=40).map(
        lambda text: "#" + text
    ),
)


@st.composite
def files(draw: st.DrawFn) -> list[HtpasswdEntry | str]:
    names = draw(st.lists(usernames, unique=True, max_size=8))
    lines: list[HtpasswdEntry | str] = []
    for name in names:
        lines.extend(draw(st.lists(comments, max_size=2)))
        lines.append(HtpasswdEntry(name, draw(hashes)))
    return lines


@given(files())
def test_what_is_written_reads_back_the_same(lines: list[HtpasswdEntry | str]) -> None:
    text = HtpasswdFile(lines).to_text()
    parsed = HtpasswdFile.parse(text)
    assert parsed.to_text() == text
    assert list(parsed) == [line for line in lines if isinstance(line, HtpasswdEntry)]
    for entry in parsed:
        assert parsed.get(entry.username) == entry


@given(
    st.one_of(
        st.text(max_size=300),
        st.lists(
            st.text(alphabet=st.sampled_from("ab:#\r\n\t \0\x0b\x85\u2028"), max_size=12),
            max_size=8,
        ).map("\n".join),
    )
)
def test_any_text_parses_or_is_refused_cleanly(text: str) -> None:
    try:
        parsed = HtpasswdFile.parse(text)
    except PasswordFileError as exc:
        error = exc
    else:
        error = None
    if error is not None:
        assert error.line is None or error.line >= 1
        return
    for entry in parsed:
        assert entry.username
        assert ":" not in entry.username
    # Whatever was read is written back in a form that reads the same.
    assert HtpasswdFile.parse(parsed.to_text()).to_text() == parsed.to_text()


@given(hashes, st.sampled_from(["\n", "\r\n"]))
def test_line_endings_do_not_matter(hashed: str, newline: str) -> None:
    text = f"# users{newline}alice:{hashed}{newline}{newline}bob:x{newline}"
    parsed = HtpasswdFile.parse(text)
    assert [e.username for e in parsed] == ["alice", "bob"]
    assert parsed.get("alice") == HtpasswdEntry("alice", hashed)


@pytest.mark.parametrize(
    ("text", "problem", "line"),
    [
        ("alice\n", "expected user:hash", 1),
        ("# ok\n:hash\n", "empty", 2),
        ("alice:a\nalice:b\n", "again", 2),
        ("al\x01ice:x\n", "control", 1),
        (" alice:x\n", "space", 1),
        ("alice:" + "x" * 5000 + "\n", "longer than", 1),
        ("u" * 256 + ":x\n", "at most 255", 1),
    ],
)
def test_bad_lines_are_named(text: str, problem: str, line: int) -> None:
    with pytest.raises(PasswordFileError, match=problem) as caught:
        HtpasswdFile.parse(text, path="users")
    assert caught.value.line == line
    assert str(caught.value).startswith(f"users:{line}: ")


def test_a_nul_or_a_file_not_utf8_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PasswordFileError, match="NUL"):
        HtpasswdFile.parse("alice:x\0\n")
    with pytest.raises(PasswordFileError, match="line break") as caught:
        HtpasswdFile.parse("# a\nalice:x\ry\n")
    assert caught.value.line == 2
    path = tmp_path / "users"
    path.write_bytes(b"alice:\xff\n")
    with pytest.raises(PasswordFileError, match="not UTF-8"):
        HtpasswdFile.load(path)
    with pytest.raises(PasswordFileError, match="cannot read"):
        HtpasswdFile.load(tmp_path / "missing")


def test_a_huge_file_is_refused_without_reading_it_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_htpasswd, "MAX_FILE_SIZE", 100)
    path = tmp_path / "users"
    path.write_text("alice:x\n" * 20)
    with pytest.raises(PasswordFileError, match="larger than 100"):
        HtpasswdFile.load(path)


def test_set_replaces_in_place_and_remove_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text("# staff\nalice:one\n\nbob:two\ncarol:three\n")
    os.chmod(path, 0o640)
    passwords = HtpasswdFile.load(path)
    passwords.set("bob", "TWO")
    passwords.set("dave", "four")
    assert passwords.remove("alice")
    assert not passwords.remove("nobody")
    passwords.save(path)
    assert path.read_text() == "# staff\n\nbob:TWO\ncarol:three\ndave:four\n"
    assert path.stat().st_mode & 0o777 == 0o640  # the mode is kept
    assert len(HtpasswdFile.load(path)) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["users"]  # no temporary left
    with pytest.raises(ValueError, match="colon"):
        passwords.set("a:b", "x")
    with pytest.raises(ValueError, match="line break"):
        passwords.set("eve", "x\ny")


def test_a_new_file_is_private(tmp_path: Path) -> None:
    passwords = HtpasswdFile()
    passwords.set("alice", "x")
    passwords.save(tmp_path / "new")
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o600


# -- the checker --------------------------------------------------------------------


@pytest.fixture
def users(tmp_path: Path) -> Path:
    path = tmp_path / "htpasswd"
    passwords = HtpasswdFile()
    passwords.set_password("alice", "wonderland", cost=4)
    passwords.set_password("bob", "builder", cost=4)
    passwords.save(path)
    return path


def test_checker_accepts_the_right_password(users: Path, threads: InlineThreads) -> None:
    checker = HtpasswdChecker(users, threads=threads)
    assert (
        success_result_of(checker.request_avatar_id(UsernamePassword("alice", "wonderland"), None))
        == "alice"
    )
    assert threads.jobs == 1  # the hashing went to the thread runner


@pytest.mark.parametrize(
    ("username", "password", "reason"),
    [("alice", "builder", "wrong password"), ("carol", "wonderland", "unknown user")],
)
def test_checker_refuses_alike_unknown_users_and_wrong_passwords(
    users: Path, threads: InlineThreads, username: str, password: str, reason: str
) -> None:
    checker = HtpasswdChecker(users, threads=threads)
    error = failure_result_of(
        checker.request_avatar_id(UsernamePassword(username, password), None), UnauthorizedLogin
    )
    assert str(error) == "login failed"  # what a client may be told: the same
    assert error.reason == reason  # what the audit log is told


def test_an_unknown_user_costs_the_same_hash_as_a_known_one(
    users: Path, threads: InlineThreads, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[str] = []
    real = _htpasswd.verify_password

    def counting(password: str, hashed: str, *, allow_legacy: bool = False) -> bool:
        checked.append(hashed)
        return real(password, hashed, allow_legacy=allow_legacy)

    monkeypatch.setattr(_htpasswd, "verify_password", counting)
    checker = HtpasswdChecker(users, threads=threads)
    for username in ("alice", "nobody", "bob", "x" * 300):
        failure_result_of(
            checker.request_avatar_id(UsernamePassword(username, "guess"), None), UnauthorizedLogin
        )
    # One verification per attempt, known user or not, each against a hash
    # of the same scheme and cost.
    assert len(checked) == 4
    assert {hashed.rsplit("$", 2)[0] for hashed in checked} == {"$scrypt$ln=4,r=8,p=3"}


def test_with_no_usable_entry_unknown_users_are_checked_against_a_made_up_hash(
    tmp_path: Path, threads: InlineThreads, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "empty"
    path.write_text("# nobody yet\n")
    calls: list[str] = []
    monkeypatch.setattr(
        _htpasswd, "verify_password", lambda p, h, allow_legacy=False: calls.append(h) or False
    )
    monkeypatch.setattr(_htpasswd, "hash_password", lambda p: "$scrypt$made-up")
    checker = HtpasswdChecker(path, threads=threads)
    for _ in range(2):
        failure_result_of(
            checker.request_avatar_id(UsernamePassword("alice", "x"), None), UnauthorizedLogin
        )
    assert calls == ["$scrypt$made-up", "$scrypt$made-up"]  # made once, used each time


def test_checker_reads_the_file_again_when_it_changes(users: Path, threads: InlineThreads) -> None:
    checker = HtpasswdChecker(users, threads=threads)
    passwords = HtpasswdFile.load(users)
    passwords.set_password("carol", "new", cost=4)
    passwords.remove("alice")
    passwords.save(users)
    assert (
        success_result_of(checker.request_avatar_id(UsernamePassword("carol", "new"), None))
        == "carol"
    )
    failure_result_of(
        checker.request_avatar_id(UsernamePassword("alice", "wonderland"), None), UnauthorizedLogin
    )


def test_a_broken_file_fails_every_login_until_fixed(
    users: Path, threads: InlineThreads, caplog: pytest.LogCaptureFixture
) -> None:
    checker = HtpasswdChecker(users, threads=threads)
    good = users.read_text()
    users.write_text(good + "no colon here\n")
    with caplog.at_level(logging.ERROR, logger="torsion.cred"):
        for _ in range(2):
            error = failure_result_of(
                checker.request_avatar_id(UsernamePassword("alice", "wonderland"), None),
                UnauthorizedLogin,
            )
            assert "unusable" in error.reason
    assert len(caplog.records) == 1  # said once, not per login
    assert "expected user:hash" in caplog.records[0].getMessage()
    users.write_text(good)
    assert (
        success_result_of(checker.request_avatar_id(UsernamePassword("alice", "wonderland"), None))
        == "alice"
    )
    users.unlink()
    failure_result_of(
        checker.request_avatar_id(UsernamePassword("alice", "wonderland"), None), UnauthorizedLogin
    )


def test_a_missing_file_is_an_error_at_start(tmp_path: Path, threads: InlineThreads) -> None:
    with pytest.raises(PasswordFileError, match="cannot read"):
        HtpasswdChecker(tmp_path / "missing", threads=threads)


def test_legacy_entries_are_logged_and_cannot_log_in(
    tmp_path: Path, threads: InlineThreads, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "users"
    # "password" as SHA-1, and as plain text.
    new = hash_password("password", cost=4)
    path.write_text(f"old:{{SHA}}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\nplain:password\nnew:{new}\n")
    with caplog.at_level(logging.WARNING, logger="torsion.cred"):
        checker = HtpasswdChecker(path, threads=threads)
    assert sorted(r.getMessage().split("user ")[1].split(" ")[0] for r in caplog.records) == [
        "'old'",
        "'plain'",
    ]
    for username in ("old", "plain"):
        failure_result_of(
            checker.request_avatar_id(UsernamePassword(username, "password"), None),
            UnauthorizedLogin,
        )
    assert (
        success_result_of(checker.request_avatar_id(UsernamePassword("new", "password"), None))
        == "new"
    )
    legacy = HtpasswdChecker(path, threads=threads, allow_legacy=True)
    assert (
        success_result_of(legacy.request_avatar_id(UsernamePassword("old", "password"), None))
        == "old"
    )
    failure_result_of(
        legacy.request_avatar_id(UsernamePassword("plain", "password"), None), UnauthorizedLogin
    )


def test_a_file_apache_htpasswd_wrote(tmp_path: Path, threads: InlineThreads) -> None:
    pytest.importorskip("bcrypt", reason="bcrypt hashes need the cred extra (bcrypt)")
    program = require_peer("htpasswd", package="apache2-utils")
    path = tmp_path / "users"
    subprocess.run(
        [program, "-cbB", "-C", "4", str(path), "alice", "wonder land"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    subprocess.run(
        [program, "-bB", "-C", "4", str(path), "bob", "builder"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    checker = HtpasswdChecker(path, threads=threads)
    assert (
        success_result_of(
            checker.request_avatar_id(UsernamePassword("alice", "wonder land"), None)
        )
        == "alice"
    )
    failure_result_of(
        checker.request_avatar_id(UsernamePassword("bob", "wonder land"), None), UnauthorizedLogin
    )


def test_hashing_runs_in_the_reactor_thread_pool(users: Path) -> None:
    # A reactor of the test's own, closed at the end (closing joins the
    # workers), as tests/internet's real_reactor fixture does.
    reactor = Reactor()
    seen: list[str] = []
    checker = HtpasswdChecker(users, threads=reactor)
    real = checker._check

    def check(username: str, password: str) -> str:
        seen.append(threading.current_thread().name)
        return real(username, password)

    checker._check = check  # type: ignore[method-assign]

    async def logins() -> None:
        assert await checker.request_avatar_id(UsernamePassword("bob", "builder"), None) == "bob"
        with pytest.raises(UnauthorizedLogin):
            await checker.request_avatar_id(UsernamePassword("bob", "wrong"), None)

    try:
        reactor.loop.run_until_complete(asyncio.wait_for(logins(), 30))
    finally:
        reactor.close()
    assert len(seen) == 2
    assert threading.main_thread().name not in seen


@settings(max_examples=50, deadline=None)
@given(
    username=st.one_of(st.sampled_from(["alice", "bob", "carol"]), st.text(max_size=30)),
    password=st.one_of(st.sampled_from(["wonderland", "builder"]), st.text(max_size=30)),
)
def test_every_attempt_costs_one_verification_of_the_same_kind(
    username: str, password: str
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "users"
        passwords = HtpasswdFile()
        passwords.set_password("alice", "wonderland", cost=4)
        passwords.set_password("bob", "builder", cost=4)
        passwords.save(path)
        checked: list[str] = []
        real = _htpasswd.verify_password

        def counting(password: str, hashed: str, *, allow_legacy: bool = False) -> bool:
            checked.append(hashed)
            return real(password, hashed, allow_legacy=allow_legacy)

        original, _htpasswd.verify_password = _htpasswd.verify_password, counting
        try:
            d = HtpasswdChecker(path, threads=InlineThreads()).request_avatar_id(
                UsernamePassword(username, password), None
            )
        finally:
            _htpasswd.verify_password = original
    assert len(checked) == 1
    assert checked[0].startswith("$scrypt$ln=4,r=8,p=3$")
    if {"alice": "wonderland", "bob": "builder"}.get(username) == password:
        assert success_result_of(d) == username
    else:
        assert str(failure_result_of(d, UnauthorizedLogin)) == "login failed"
