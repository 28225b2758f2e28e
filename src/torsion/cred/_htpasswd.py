"""Password files in Apache's htpasswd format, and the checker that reads them.

The format is one ``user:hash`` per line. Blank lines and lines starting
with ``#`` are kept as they are when the file is rewritten. A user name is
at most 255 characters, none of them a colon or a control character, and
appears once; the hash is everything after the first colon. Files Apache's
``htpasswd -B`` writes (bcrypt) and files ``torsion passwd`` writes (scrypt
by default, bcrypt or argon2 on request) both work; which hashes are
accepted is up to ``torsion.cred._hashes``.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from torsion.cred._credentials import UsernamePassword
from torsion.cred._hashes import DEFAULT_SCHEME, check_hash, hash_password, verify_password
from torsion.defer import Deferred
from torsion.errors import PasswordFileError, PasswordHashError, UnauthorizedLogin
from torsion.internet import Address, ThreadRunner

__all__ = ["HtpasswdChecker", "HtpasswdEntry", "HtpasswdFile"]

_log = logging.getLogger("torsion.cred")

MAX_FILE_SIZE = 16 * 2**20
MAX_LINE = 4096
MAX_USERNAME = 255


def check_username(username: str) -> None:
    """Raise ``ValueError`` unless ``username`` can be stored in an htpasswd file."""
    if not username:
        raise ValueError("a user name cannot be empty")
    if len(username) > MAX_USERNAME:
        raise ValueError(f"a user name has at most {MAX_USERNAME} characters")
    if ":" in username or any(ord(c) < 32 or ord(c) == 127 for c in username):
        raise ValueError("a user name cannot hold a colon or a control character")
    if username.startswith("#") or username != username.strip():
        raise ValueError("a user name cannot start with '#' or with or end in a space")


@dataclass(frozen=True, slots=True)
class HtpasswdEntry:
    """One user's line.

    Attributes:
        username: The user name.
        hashed: The password hash, as written.
    """

    username: str
    hashed: str = ""

    def __str__(self) -> str:
        return f"{self.username}:{self.hashed}"


class HtpasswdFile:
    """An htpasswd file's contents: entries, with comments and blank lines kept.

    Args:
        lines: Entries and verbatim lines (comments, blank lines), in order.
    """

    def __init__(self, lines: list[HtpasswdEntry | str] | None = None) -> None:
        self._lines: list[HtpasswdEntry | str] = []
        self._index: dict[str, int] = {}
        for line in lines or []:
            if isinstance(line, HtpasswdEntry):
                self.set(line.username, line.hashed)
            else:
                self._lines.append(line)

    @classmethod
    def parse(cls, text: str, *, path: str | None = None) -> HtpasswdFile:
        """Read a file's text.

        Raises:
            PasswordFileError: A line is not ``user:hash``, a comment or
                blank, is too long, or repeats a user.
        """
        parsed = cls()
        if "\0" in text:
            raise PasswordFileError("holds a NUL character", path=path)
        raw_lines = text.split("\n")
        if raw_lines[-1] == "":
            raw_lines.pop()  # what follows the last newline, or an empty text
        for number, raw in enumerate(raw_lines, 1):
            line = raw.rstrip("\r")  # CRLF files, and stray CRs at the end
            if len(line) > MAX_LINE:
                raise PasswordFileError(f"line longer than {MAX_LINE}", path=path, line=number)
            if not line.strip() or line.lstrip().startswith("#"):
                parsed._lines.append(line)
                continue
            username, colon, hashed = line.partition(":")
            if not colon:
                raise PasswordFileError("expected user:hash", path=path, line=number)
            if username in parsed._index:
                raise PasswordFileError(f"user {username!r} again", path=path, line=number)
            try:
                parsed.set(username, hashed.strip())
            except ValueError as exc:
                raise PasswordFileError(str(exc), path=path, line=number) from None
        return parsed

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> HtpasswdFile:
        """Read the file at ``path``.

        Raises:
            PasswordFileError: It cannot be read, is too large, is not UTF-8,
                or has a bad line.
        """
        name = os.fspath(path)
        try:
            with open(name, "rb") as file:
                data = file.read(MAX_FILE_SIZE + 1)
        except OSError as exc:
            raise PasswordFileError(f"cannot read: {exc.strerror or exc}", path=name) from exc
        if len(data) > MAX_FILE_SIZE:
            raise PasswordFileError(f"larger than {MAX_FILE_SIZE} bytes", path=name)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PasswordFileError(f"not UTF-8 at byte {exc.start}", path=name) from None
        return cls.parse(text, path=name)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the file at ``path`` atomically (a new file renamed over the old).

        A new file is readable by its owner only; a replaced one keeps its mode.
        """
        target = Path(path)
        try:
            mode = target.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o600
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as file:
                file.write(self.to_text())
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temporary, mode)
            os.replace(temporary, target)
        except BaseException:
            os.unlink(temporary)
            raise

    def to_text(self) -> str:
        """Return the file's text: one line each, each ending in a newline."""
        return "".join(f"{line}\n" for line in self._lines)

    def __iter__(self) -> Iterator[HtpasswdEntry]:
        """The entries, in file order."""
        return (line for line in self._lines if isinstance(line, HtpasswdEntry))

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, username: object) -> bool:
        return username in self._index

    def get(self, username: str) -> HtpasswdEntry | None:
        """Return ``username``'s entry, or None."""
        index = self._index.get(username)
        if index is None:
            return None
        line = self._lines[index]
        assert isinstance(line, HtpasswdEntry)
        return line

    def set(self, username: str, hashed: str) -> None:
        """Set ``username``'s hash: its line is replaced in place, or one appended.

        Raises:
            ValueError: The user name or the hash cannot be stored.
        """
        check_username(username)
        if "\n" in hashed or "\r" in hashed or "\0" in hashed:
            raise ValueError("a hash cannot hold a line break or a NUL")
        entry = HtpasswdEntry(username, hashed)
        index = self._index.get(username)
        if index is None:
            self._index[username] = len(self._lines)
            self._lines.append(entry)
        else:
            self._lines[index] = entry

    def set_password(
        self,
        username: str,
        password: str,
        *,
        scheme: str = DEFAULT_SCHEME,
        cost: int | None = None,
    ) -> None:
        """Hash ``password`` and set it as ``username``'s (see ``hash_password``)."""
        self.set(username, hash_password(password, scheme=scheme, cost=cost))

    def remove(self, username: str) -> bool:
        """Remove ``username``'s line; return whether there was one."""
        index = self._index.pop(username, None)
        if index is None:
            return False
        del self._lines[index]
        self._index = {
            line.username: i
            for i, line in enumerate(self._lines)
            if isinstance(line, HtpasswdEntry)
        }
        return True


@dataclass(frozen=True, slots=True)
class _Table:
    """One reading of the file: usable hashes, and the one checked for unknown users."""

    stamp: tuple[int, int, int] | None
    hashes: dict[str, str]
    dummy: str | None
    problem: str | None = None


class HtpasswdChecker:
    """Checks user names and passwords against an htpasswd file.

    The file is read when the checker is made (so that a missing or broken
    file is an error at start-up) and read again when it changes. Hashing
    runs in the reactor's thread pool, never on its thread. If the file
    becomes unreadable or broken, every login fails (and the error is
    logged) until it is fixed.

    Entries whose hash is refused (legacy or unknown schemes, missing
    libraries) are logged when the file is read, and those users cannot log
    in. An unknown user's password is checked against another entry's hash
    (or a made-up one) all the same, so that the work, and so the time,
    does not tell whether the user exists.

    Args:
        path: The file.
        threads: Where hashing runs (the reactor).
        allow_legacy: Accept legacy hashes (SHA-1, MD5-crypt, SHA-crypt).

    Raises:
        PasswordFileError: The file cannot be read or has a bad line.
    """

    credential_types: ClassVar[tuple[type, ...]] = (UsernamePassword,)

    def __init__(
        self, path: str | os.PathLike[str], *, threads: ThreadRunner, allow_legacy: bool = False
    ) -> None:
        self.path = os.fspath(path)
        self._threads = threads
        self.allow_legacy = allow_legacy
        self._lock = threading.Lock()
        self._table = self._read(self._stamp())

    def request_avatar_id(
        self, credentials: UsernamePassword, client: Address | None, /
    ) -> Deferred[str]:
        """Check the password in a worker thread; fire with the user name."""
        return self._threads.defer_to_thread(
            self._check, credentials.username, credentials.password
        )

    def _check(self, username: str, password: str) -> str:
        table = self._current()
        hashed = table.hashes.get(username)
        if hashed is None:
            self._check_dummy(table, password)
            if table.problem is not None:
                raise UnauthorizedLogin(f"password file unusable: {table.problem}")
            raise UnauthorizedLogin("unknown user")
        if not verify_password(password, hashed, allow_legacy=self.allow_legacy):
            raise UnauthorizedLogin("wrong password")
        return username

    def _check_dummy(self, table: _Table, password: str) -> None:
        dummy = table.dummy
        if dummy is None:
            # No usable entry to borrow: make one hash, once, of the default scheme.
            with self._lock:
                if self._table.dummy is None:
                    made = hash_password(os.urandom(16).hex())
                    self._table = _Table(
                        self._table.stamp, self._table.hashes, made, self._table.problem
                    )
                dummy = self._table.dummy
            assert dummy is not None
        verify_password(password, dummy, allow_legacy=self.allow_legacy)

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _current(self) -> _Table:
        stamp = self._stamp()
        with self._lock:
            if stamp == self._table.stamp and stamp is not None:
                return self._table
            try:
                self._table = self._read(stamp)
            except PasswordFileError as exc:
                if self._table.problem is None:
                    _log.error("%s; every login it checks fails until it is fixed", exc)
                self._table = _Table(stamp, {}, self._table.dummy, str(exc))
            return self._table

    def _read(self, stamp: tuple[int, int, int] | None) -> _Table:
        parsed = HtpasswdFile.load(self.path)
        hashes: dict[str, str] = {}
        for entry in parsed:
            try:
                check_hash(entry.hashed, allow_legacy=self.allow_legacy)
            except PasswordHashError as exc:
                _log.warning("%s: user %r cannot log in: %s", self.path, entry.username, exc)
                continue
            hashes[entry.username] = entry.hashed
        # Borrow a real entry's hash for unknown users: same scheme, same cost.
        dummy = next(iter(hashes.values()), None)
        return _Table(stamp, hashes, dummy)

    def __repr__(self) -> str:
        return f"<HtpasswdChecker {self.path!r}>"
