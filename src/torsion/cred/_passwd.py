"""``torsion passwd FILE USER``: add or change a user's hashed password in an htpasswd file.

The password is asked for twice on the terminal, without echo, or read
from standard input (one line) when that is not a terminal or ``--stdin``
is given. The file is created if missing (readable by its owner only) and
otherwise rewritten atomically, keeping its other lines and its mode.
"""

from __future__ import annotations

import argparse
import getpass
from typing import TYPE_CHECKING, NoReturn, TextIO

from torsion.cred._hashes import DEFAULT_SCHEME, SCHEMES
from torsion.cred._htpasswd import HtpasswdFile
from torsion.errors import PasswordFileError, PasswordHashError

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

__all__ = ["passwd_main"]

_MAX_PASSWORD = 4096


class _ExitError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """An argument parser that writes where it is told and does not exit the process."""

    def __init__(self, stdout: TextIO, stderr: TextIO) -> None:
        super().__init__(
            prog="torsion passwd",
            description="Add or change a user's password in an htpasswd file.",
        )
        self._stdout = stdout
        self._stderr = stderr

    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        if message:
            (
                self._stderr if file is not None and file is not self._stdout else self._stdout
            ).write(message)

    def print_help(self, file: SupportsWrite[str] | None = None) -> None:
        self._stdout.write(self.format_help())

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            self._stderr.write(message)
        raise _ExitError(status)

    def error(self, message: str) -> NoReturn:
        self._stderr.write(self.format_usage())
        self.exit(2, f"{self.prog}: error: {message}\n")


def _read_password(stdin: TextIO, stderr: TextIO, *, from_stdin: bool) -> str | None:
    if from_stdin or not stdin.isatty():
        line = stdin.readline(_MAX_PASSWORD + 2)
        if len(line.rstrip("\r\n")) > _MAX_PASSWORD:
            stderr.write(f"torsion passwd: password longer than {_MAX_PASSWORD}\n")
            return None
        return line.removesuffix("\n").removesuffix("\r")
    # getpass turns echo off on the controlling terminal while reading.
    first = getpass.getpass("New password: ", stream=stderr)
    second = getpass.getpass("Re-type new password: ", stream=stderr)
    if first != second:
        stderr.write("torsion passwd: the passwords differ; nothing changed\n")
        return None
    return first


def passwd_main(argv: list[str], *, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    """Run ``torsion passwd`` with ``argv`` (the arguments after ``passwd``).

    Returns:
        The exit status: 0 done, 1 failed (nothing changed), 2 bad usage.
    """
    parser = _Parser(stdout, stderr)
    parser.add_argument("file", metavar="FILE", help="the htpasswd file (created if missing)")
    parser.add_argument("user", metavar="USER", help="the user to add or change")
    parser.add_argument(
        "--scheme",
        choices=SCHEMES,
        default=DEFAULT_SCHEME,
        help=f"the hash (default {DEFAULT_SCHEME}; bcrypt for files Apache reads too)",
    )
    parser.add_argument("--cost", type=int, help="the hash's work factor (default: the scheme's)")
    parser.add_argument(
        "--stdin", action="store_true", help="read the password from standard input"
    )
    parser.add_argument("-D", "--delete", action="store_true", help="remove the user instead")
    try:
        options = parser.parse_args(argv)
    except _ExitError as exc:
        return exc.status
    try:
        try:
            passwords = HtpasswdFile.load(options.file)
        except PasswordFileError as exc:
            if not isinstance(exc.__cause__, FileNotFoundError) or options.delete:
                raise
            passwords = HtpasswdFile()
        if options.delete:
            if not passwords.remove(options.user):
                stderr.write(f"torsion passwd: no user {options.user!r} in {options.file}\n")
                return 1
            passwords.save(options.file)
            stdout.write(f"Deleted user {options.user} from {options.file}\n")
            return 0
        password = _read_password(stdin, stderr, from_stdin=options.stdin)
        if password is None:
            return 1
        if not password:
            stderr.write("torsion passwd: the password is empty; nothing changed\n")
            return 1
        existed = options.user in passwords
        passwords.set_password(options.user, password, scheme=options.scheme, cost=options.cost)
        passwords.save(options.file)
    except (PasswordFileError, PasswordHashError, ValueError, OSError) as exc:
        stderr.write(f"torsion passwd: {exc}\n")
        return 1
    except (KeyboardInterrupt, EOFError):
        stderr.write("\ntorsion passwd: interrupted; nothing changed\n")
        return 1
    verb = "Updated" if existed else "Added"
    stdout.write(f"{verb} user {options.user} in {options.file}\n")
    return 0
