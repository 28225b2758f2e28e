"""torsion passwd: adding, changing and deleting users; no echo on a terminal; Apache reads it."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from torsion.cred import HtpasswdFile, identify_hash, verify_password
from torsion.cred._passwd import passwd_main
from torsion.testing import require_peer


def run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = passwd_main(list(argv), stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def test_creates_the_file_then_updates_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "users"
    assert run(str(path), "alice", "--cost", "4", stdin="first\n") == (
        0,
        f"Added user alice in {path}\n",
        "",
    )
    assert path.stat().st_mode & 0o777 == 0o600
    status, out, _ = run(str(path), "bob", "--cost", "4", stdin="bobs\n")
    assert status == 0
    status, out, _ = run(str(path), "alice", "--cost", "4", "--stdin", stdin="second\r\n")
    assert (status, out) == (0, f"Updated user alice in {path}\n")
    passwords = HtpasswdFile.load(path)
    assert [e.username for e in passwords] == ["alice", "bob"]
    alice = passwords.get("alice")
    assert alice is not None
    assert identify_hash(alice.hashed) == "scrypt"
    assert verify_password("second", alice.hashed)
    assert not verify_password("first", alice.hashed)


def test_delete(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text("# team\nalice:x\nbob:y\n")
    assert run(str(path), "alice", "-D") == (0, f"Deleted user alice from {path}\n", "")
    assert path.read_text() == "# team\nbob:y\n"
    status, _, err = run(str(path), "alice", "--delete")
    assert status == 1
    assert "no user 'alice'" in err
    status, _, err = run(str(tmp_path / "missing"), "alice", "-D")
    assert status == 1
    assert "cannot read" in err


def test_refusals_change_nothing(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text("alice:x\n")
    assert run(str(path), "bob", stdin="\n")[0] == 1  # empty password
    assert run(str(path), "bob", stdin="")[0] == 1  # no password at all
    status, _, err = run(str(path), "a:b", stdin="pw\n")
    assert status == 1
    assert "colon" in err
    path.write_text("broken line\n")
    status, _, err = run(str(path), "bob", stdin="pw\n")
    assert status == 1
    assert f"{path}:1: expected user:hash" in err
    assert path.read_text() == "broken line\n"


def test_usage(tmp_path: Path) -> None:
    status, out, err = run()
    assert status == 2
    assert "usage: torsion passwd" in err
    assert "FILE" in err
    status, out, err = run("--help")
    assert status == 0
    assert "--scheme {scrypt,bcrypt,argon2}" in out
    status, out, err = run(str(tmp_path / "f"), "u", "--scheme", "md5")
    assert status == 2
    assert "invalid choice" in err


def test_bcrypt_entries_are_ones_apache_htpasswd_verifies(tmp_path: Path) -> None:
    pytest.importorskip("bcrypt", reason="bcrypt hashes need the cred extra (bcrypt)")
    program = require_peer("htpasswd", package="apache2-utils")
    path = tmp_path / "users"
    assert (
        run(str(path), "alice", "--scheme", "bcrypt", "--cost", "4", stdin="wonder land\n")[0] == 0
    )

    def apache_verifies(password: str) -> bool:
        done = subprocess.run(
            [program, "-vb", str(path), "alice", password],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return done.returncode == 0

    assert apache_verifies("wonder land")
    assert not apache_verifies("wonderland")


def _converse(path: Path, answers: list[bytes]) -> tuple[int, bytes]:
    """Run torsion passwd on a terminal of its own, answering each prompt in turn."""
    code = (
        "import sys; from torsion.cred._passwd import passwd_main; "
        "sys.exit(passwd_main(sys.argv[1:], "
        "stdin=sys.stdin, stdout=sys.stdout, stderr=sys.stderr))"
    )
    master, slave = pty.openpty()
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(path), "alice", "--cost", "4"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,  # no controlling terminal: getpass uses stdin's
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 30
    try:
        for answer in answers:
            while b"password: " not in seen.rsplit(b"\n", 1)[-1]:
                seen += _read(master, deadline)
            os.write(master, answer)
            seen += b"\n<answered>\n"
        while True:
            try:
                chunk = _read(master, deadline)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        return child.wait(timeout=30), seen
    finally:
        os.close(master)
        if child.poll() is None:
            child.kill()
            child.wait()


def _read(fd: int, deadline: float) -> bytes:
    ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
    if not ready:
        raise AssertionError("torsion passwd did not answer in time")
    return os.read(fd, 4096)


def test_a_terminal_gets_two_prompts_without_echo(tmp_path: Path) -> None:
    path = tmp_path / "users"
    status, seen = _converse(path, [b"s3cret-typed\n", b"s3cret-typed\n"])
    assert status == 0, seen
    assert b"New password: " in seen
    assert b"Re-type new password: " in seen
    assert b"s3cret-typed" not in seen  # never echoed
    assert b"Added user alice" in seen
    alice = HtpasswdFile.load(path).get("alice")
    assert alice is not None
    assert verify_password("s3cret-typed", alice.hashed)


def test_a_terminal_mismatch_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "users"
    status, seen = _converse(path, [b"one\n", b"two\n"])
    assert status == 1
    assert b"the passwords differ" in seen
    assert not path.exists()
