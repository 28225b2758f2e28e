"""--auth strings: each kind, and clear errors that never show a password."""

from __future__ import annotations

from pathlib import Path

import pytest
from cred_fakes import InlineThreads

from torsion.cred import (
    AnonymousChecker,
    AuthorizedKeysChecker,
    AuthStringError,
    HtpasswdChecker,
    HtpasswdFile,
    InMemoryChecker,
    PAMChecker,
    UnauthorizedLogin,
    UsernamePassword,
    _strings,
    checker_from_string,
)
from torsion.cred._strings import split_auth_string
from torsion.testing import failure_result_of, success_result_of


def test_memory(threads: InlineThreads) -> None:
    checker = checker_from_string("memory:alice:secret:bob:p\\:w\\\\", threads=threads)
    assert isinstance(checker, InMemoryChecker)
    assert (
        success_result_of(checker.request_avatar_id(UsernamePassword("bob", "p:w\\"), None))
        == "bob"
    )
    assert (
        success_result_of(checker.request_avatar_id(UsernamePassword("alice", "secret"), None))
        == "alice"
    )
    failure_result_of(
        checker.request_avatar_id(UsernamePassword("alice", "p:w\\"), None), UnauthorizedLogin
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("memory", "expected memory:USER:PASSWORD"),
        ("memory:alice", "expected memory:USER:PASSWORD"),
        ("memory:alice:hunter2:bob", "expected memory:USER:PASSWORD"),
        ("memory::hunter2", "empty"),
        ("memory:alice:hunter2:alice:hunter2", "twice"),
        ("memory:alice:hunter2\\", "lone backslash"),
    ],
)
def test_memory_errors_mask_the_passwords(threads: InlineThreads, text: str, problem: str) -> None:
    with pytest.raises(AuthStringError, match=problem) as caught:
        checker_from_string(text, threads=threads)
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in caught.value.text
    assert str(caught.value).startswith("bad --auth 'memory")


def test_file(tmp_path: Path, threads: InlineThreads) -> None:
    path = tmp_path / "htpasswd"
    passwords = HtpasswdFile()
    passwords.set_password("alice", "pw", cost=4)
    passwords.set("old", "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=")
    passwords.save(path)
    checker = checker_from_string(f"file:{path}", threads=threads)
    assert isinstance(checker, HtpasswdChecker)
    assert not checker.allow_legacy
    assert (
        success_result_of(checker.request_avatar_id(UsernamePassword("alice", "pw"), None))
        == "alice"
    )
    legacy = checker_from_string(f"file:{path}:legacy=yes", threads=threads)
    assert isinstance(legacy, HtpasswdChecker)
    assert legacy.allow_legacy
    escaped = str(path).replace(":", "\\:")
    assert isinstance(
        checker_from_string(f"file:{escaped}:legacy=no", threads=threads), HtpasswdChecker
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("file", "expected file:PATH"),
        ("file:", "expected file:PATH"),
        ("file:/no/such/htpasswd", "cannot read"),
        ("file:{path}:legacy=maybe", "unknown option"),
        ("file:{path}:strict", "unknown option"),
    ],
)
def test_file_errors(tmp_path: Path, threads: InlineThreads, text: str, problem: str) -> None:
    path = tmp_path / "users"
    path.write_text("")
    with pytest.raises(AuthStringError, match=problem):
        checker_from_string(text.format(path=path), threads=threads)


def test_unix(threads: InlineThreads, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pam", reason="PAM needs the pam extra (python-pam)")
    checker = checker_from_string("unix", threads=threads)
    assert isinstance(checker, PAMChecker)
    assert checker.service == "login"
    other = checker_from_string("unix:sshd", threads=threads)
    assert isinstance(other, PAMChecker)
    assert other.service == "sshd"
    with pytest.raises(AuthStringError, match="expected unix"):
        checker_from_string("unix:a:b", threads=threads)
    with pytest.raises(AuthStringError, match="service"):
        checker_from_string("unix:../x", threads=threads)


def test_unix_without_pam_says_what_to_install(
    threads: InlineThreads, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        _strings, "pam_available", lambda: "the python-pam library is not installed: pip install"
    )
    with pytest.raises(AuthStringError, match="python-pam"):
        checker_from_string("unix", threads=threads)


def test_anonymous(threads: InlineThreads) -> None:
    assert isinstance(checker_from_string("anonymous", threads=threads), AnonymousChecker)
    with pytest.raises(AuthStringError, match="no arguments"):
        checker_from_string("anonymous:x", threads=threads)


def test_sshkey(tmp_path: Path, threads: InlineThreads) -> None:
    default = checker_from_string("sshkey", threads=threads)
    assert isinstance(default, AuthorizedKeysChecker)
    assert default.path_template == "%h/.ssh/authorized_keys"
    directory = checker_from_string(f"sshkey:{tmp_path}", threads=threads)
    assert isinstance(directory, AuthorizedKeysChecker)
    assert directory.keys_file("alice") == f"{tmp_path}/alice"
    template = checker_from_string("sshkey:/srv/keys/%u.pub", threads=threads)
    assert isinstance(template, AuthorizedKeysChecker)
    assert template.keys_file("alice") == "/srv/keys/alice.pub"
    single = tmp_path / "authorized_keys"
    single.write_text("")
    with pytest.raises(AuthStringError, match="log in as anyone"):
        checker_from_string(f"sshkey:{single}", threads=threads)
    with pytest.raises(AuthStringError, match="no such directory"):
        checker_from_string(f"sshkey:{tmp_path}/missing", threads=threads)
    with pytest.raises(AuthStringError, match="%q"):
        checker_from_string("sshkey:/srv/%q", threads=threads)


def test_unknown_kind(threads: InlineThreads) -> None:
    with pytest.raises(AuthStringError, match="unknown kind 'ldap'") as caught:
        checker_from_string("ldap:server", threads=threads)
    assert isinstance(caught.value, ValueError)


def test_split() -> None:
    assert split_auth_string("a:b\\:c:\\\\:") == ["a", "b:c", "\\", ""]
