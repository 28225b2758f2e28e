"""The files of a Maildir: unique names, flags in names, the UID list, locks.

Everything here works on paths and bytes; the mailbox logic is in
``_maildir``. The formats:

- A message file's name (maildir(5)) is ``BASE`` in ``new/`` and
  ``BASE:2,FLAGS`` in ``cur/``. Torsion's ``BASE`` is
  ``SECONDS.MusecPpidQcounterRrandom.HOST,S=octets,W=octets``: ``S=`` is the
  file's size on disk (its line endings are LF, as mutt and other Maildir
  readers expect) and ``W=`` the size with CRLF line endings that POP3 and
  IMAP report, the fields Dovecot uses, so that a listing needs no reading.
  ``FLAGS`` are letters in ASCII order: ``D`` draft, ``F`` flagged, ``P``
  passed, ``R`` replied, ``S`` seen, ``T`` trashed, then ``a`` to ``z`` for
  keywords, numbered by the folder's ``dovecot-keywords`` file (Dovecot's
  format: ``INDEX NAME`` lines) so that Dovecot reads them the same.
- ``torsion-uidlist`` in each folder: a first line
  ``torsion-uidlist 1 UIDVALIDITY UIDNEXT``, then ``UID BASE`` lines. It is
  replaced whole (written beside it, then renamed over it) while
  ``torsion-uidlist.lock`` is held with ``flock(2)``, so that concurrent
  processes neither lose nor duplicate a UID.
- ``torsion-uidvalidity`` at the top: the last UIDVALIDITY given, so that a
  folder that lost its UID list gets a new, larger one even within a second.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

from torsion.mail._mailbox import ANSWERED, DELETED, DRAFT, FLAGGED, SEEN

__all__ = [
    "KEYWORDS_FILE",
    "UIDLIST_FILE",
    "UidList",
    "flags_from_info",
    "flock",
    "info_from_flags",
    "new_uidvalidity",
    "read_uidlist",
    "unique_base",
    "write_atomically",
    "write_uidlist",
]

UIDLIST_FILE = "torsion-uidlist"
UIDLIST_LOCK = "torsion-uidlist.lock"
UIDVALIDITY_FILE = "torsion-uidvalidity"
KEYWORDS_FILE = "dovecot-keywords"
POP3_LOCK = "torsion-pop3.lock"

# maildir(5) letters for IMAP's system flags; "P" (passed) has no IMAP flag
# and is kept as it is found.
FLAG_LETTERS = {DRAFT: "D", FLAGGED: "F", ANSWERED: "R", SEEN: "S", DELETED: "T"}
LETTER_FLAGS = {letter: flag for flag, letter in FLAG_LETTERS.items()}
KEYWORD_LETTERS = "abcdefghijklmnopqrstuvwxyz"

_counter = itertools.count(1)


def _host() -> str:
    # maildir(5): "/" and ":" in the host name are written as octal escapes;
    # "," too here, as it separates the S= and W= fields.
    name = socket.gethostname() or "localhost"
    return name.replace("/", "\\057").replace(":", "\\072").replace(",", "\\054")


_HOST = _host()

# The process's id and random part of unique names, set again in a forked
# child: the time, the pid and the counter already make a name unique on
# this host (maildir(5)); the random part, drawn once per process rather
# than once per message, guards against a pid reused within a microsecond.
_pid = os.getpid()
_random = os.urandom(8).hex()


def _after_fork() -> None:
    global _pid, _random, _counter
    _pid = os.getpid()
    _random = os.urandom(8).hex()
    _counter = itertools.count(1)


os.register_at_fork(after_in_child=_after_fork)


def unique_base(fields: str) -> str:
    """Return a new message file's unique name (without flags).

    Args:
        fields: What follows the unique part, e.g. ``,S=120,W=124``.
    """
    now = time.time()
    seconds = int(now)
    usec = int((now - seconds) * 1_000_000)
    return f"{seconds}.M{usec}P{_pid}Q{next(_counter)}R{_random}.{_HOST}{fields}"


def size_fields(disk_size: int, wire_size: int) -> str:
    """Return the ``,S=...,W=...`` fields of a message file's name."""
    return f",S={disk_size},W={wire_size}"


def fields_of(base: str) -> str:
    """Return the fields after a base's unique part (``,S=...`` and the like), or ``""``."""
    _, comma, rest = base.partition(",")
    return comma + rest


def wire_size_of(base: str) -> int | None:
    """Return the ``W=`` field of a message file's name, or None."""
    for field in base.split(",")[1:]:
        if field.startswith("W=") and field[2:].isdigit():
            return int(field[2:])
    return None


def split_name(filename: str) -> tuple[str, str | None]:
    """Split a message file's name into its unique base and its flag letters.

    The letters are None for a name without ``:2,`` (a message in ``new/``,
    or an info of another version, which maildir(5) leaves undefined).
    """
    base, sep, info = filename.partition(":")
    if sep and info.startswith("2,"):
        return base, info[2:]
    return base, None


def flags_from_info(letters: str | None, keywords: list[str]) -> frozenset[str]:
    """Return the IMAP flags and keywords the letters stand for; unknown letters are ignored."""
    if not letters:
        return frozenset()
    flags: set[str] = set()
    for letter in letters:
        flag = LETTER_FLAGS.get(letter)
        if flag is not None:
            flags.add(flag)
        elif "a" <= letter <= "z":
            index = ord(letter) - ord("a")
            if index < len(keywords) and keywords[index]:
                flags.add(keywords[index])
    return frozenset(flags)


def info_from_flags(flags: frozenset[str], keywords: list[str], kept: str = "") -> str:
    """Return the sorted letters for flags (all keywords must be in ``keywords``).

    Args:
        flags: IMAP flags and keywords.
        keywords: The folder's keyword list.
        kept: The old letters; those with no IMAP meaning (``P``, unknown
            ones) are kept.
    """
    letters = {letter for letter in kept if letter.isupper() and letter not in LETTER_FLAGS}
    for flag in flags:
        letter = FLAG_LETTERS.get(flag)
        if letter is None:
            letter = KEYWORD_LETTERS[keywords.index(flag)]
        letters.add(letter)
    return "".join(sorted(letters))


@contextlib.contextmanager
def flock(path: str) -> Iterator[None]:
    """Hold an exclusive ``flock(2)`` on ``path`` (created if missing), waiting for it.

    Every holder keeps it for one directory listing and one small file
    write, so the wait is short.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


def try_flock(path: str) -> int | None:
    """Take an exclusive ``flock(2)`` on ``path`` without waiting.

    Returns:
        The descriptor holding it (close it to release), or None when
        another holds it. ``flock`` locks belong to an open file, so a
        second open in the same process is refused too.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_atomically(path: str, data: bytes, *, sync: bool = False) -> None:
    """Replace ``path`` with ``data``: written beside it, then renamed over it."""
    directory, name = os.path.split(path)
    temporary = os.path.join(directory, f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        with open(temporary, "wb") as file:
            file.write(data)
            if sync:
                file.flush()
                os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


@dataclass(slots=True)
class UidList:
    """A folder's UID list: UIDVALIDITY, UIDNEXT, and each base's UID (ascending)."""

    uidvalidity: int
    uidnext: int
    uids: dict[str, int]


def read_uidlist(path: str) -> UidList | None:
    """Read a UID list; None when it is missing or damaged (a new UIDVALIDITY is due)."""
    try:
        with open(path, "rb") as file:
            text = file.read().decode("utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    lines = text.splitlines()
    try:
        magic, version, validity, uidnext = lines[0].split()
        if magic != UIDLIST_FILE or version != "1":
            return None
        uids: dict[str, int] = {}
        last = 0
        for line in lines[1:]:
            uid_text, base = line.split(" ", 1)
            uid = int(uid_text)
            if uid <= last:
                return None
            uids[base] = last = uid
        result = UidList(int(validity), int(uidnext), uids)
    except (ValueError, IndexError):
        return None
    if result.uidnext <= last or result.uidvalidity <= 0:
        return None
    return result


def write_uidlist(path: str, uidlist: UidList) -> None:
    """Replace a UID list file with ``uidlist``."""
    lines = [f"{UIDLIST_FILE} 1 {uidlist.uidvalidity} {uidlist.uidnext}\n"]
    lines.extend(f"{uid} {base}\n" for base, uid in uidlist.uids.items())
    write_atomically(path, "".join(lines).encode("utf-8"))


def new_uidvalidity(root: str) -> int:
    """Return a UIDVALIDITY larger than any this Maildir gave before (and than the time)."""
    path = os.path.join(root, UIDVALIDITY_FILE)
    with flock(path + ".lock"):
        try:
            with open(path, "rb") as file:
                last = int(file.read().strip() or b"0")
        except (FileNotFoundError, ValueError):
            last = 0
        value = max(int(time.time()), last + 1)
        write_atomically(path, f"{value}\n".encode())
    return value


def read_keywords(path: str) -> list[str]:
    """Read a ``dovecot-keywords`` file: keyword names by letter index (gaps are empty)."""
    keywords: list[str] = []
    try:
        with open(path, "rb") as file:
            text = file.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return keywords
    for line in text.splitlines():
        index_text, _, name = line.partition(" ")
        if not index_text.isdigit() or not name:
            continue
        index = int(index_text)
        if index < len(KEYWORD_LETTERS):
            keywords.extend([""] * (index + 1 - len(keywords)))
            keywords[index] = name
    return keywords


def write_keywords(path: str, keywords: list[str]) -> None:
    """Replace a ``dovecot-keywords`` file."""
    text = "".join(f"{index} {name}\n" for index, name in enumerate(keywords) if name)
    write_atomically(path, text.encode("utf-8"))
