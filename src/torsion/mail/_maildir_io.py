"""The file work of a Maildir, in functions a worker thread may run.

They take paths and bytes and touch no mailbox state, so that
``MaildirStore(..., threads=reactor)`` can run them off the reactor's
thread; the mailbox takes their results back on its own.
"""

from __future__ import annotations

import contextlib
import os
import shutil

from torsion.mail._mailbox import MessageTooLargeError, to_crlf
from torsion.mail._maildir_files import split_name

__all__ = [
    "copy_files",
    "fsync_directory",
    "make_maildir",
    "read_message",
    "read_piece",
    "wire_size_of_file",
    "write_message",
]

_CHUNK = 1 << 16


def make_maildir(path: str, *, folder: bool) -> None:
    """Make a Maildir (``tmp``, ``new``, ``cur``); a Maildir++ folder is marked so."""
    for sub in ("", "tmp", "new", "cur"):
        os.makedirs(os.path.join(path, sub), mode=0o700, exist_ok=True)
    if folder:
        # Maildir++: a folder says it is one, so that no MDA delivers into
        # it thinking it is a user's top Maildir.
        with open(os.path.join(path, "maildirfolder"), "ab"):
            pass


def wire_size_of_file(path: str) -> int:
    """Return a message file's size with CRLF line endings."""
    # The size with CRLF line endings, counted in chunks so that a large
    # file put here by another program is not read whole.
    size = 0
    bare = 0
    previous = b""
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            size += len(chunk)
            bare += chunk.count(b"\n") - chunk.count(b"\r\n")
            if previous == b"\r" and chunk[:1] == b"\n":
                bare -= 1
            previous = chunk[-1:]
    return size + bare


def fsync_directory(path: str) -> None:
    """Make a directory's entries (a rename into it) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_message(
    folder: str, sub: str, filename: str, data: bytes, mtime: float | None, sync: bool
) -> None:
    """Write a message file under ``tmp/``, then rename it into ``sub``."""
    # maildir(5) delivery: tmp/ first, then a rename into new/ or cur/.
    temporary = os.path.join(folder, "tmp", split_name(filename)[0])
    try:
        # os.open and os.write rather than a buffered file object: one
        # write(2) for the message, and nothing to flush.
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        if mtime is not None:
            os.utime(temporary, (mtime, mtime))
        os.rename(temporary, os.path.join(folder, sub, filename))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    if sync:
        fsync_directory(os.path.join(folder, sub))


def read_message(path: str, limit: int) -> bytes:
    """Read a message file whole, with CRLF line endings; refuse one over ``limit``."""
    with open(path, "rb") as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise MessageTooLargeError(f"message file over the read limit of {limit} octets")
    return to_crlf(data)


def read_piece(path: str, offset: int, size: int) -> bytes:
    """Read up to ``size`` octets of a file from ``offset``, opening and closing it."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.pread(fd, size, offset)
    finally:
        os.close(fd)


def copy_files(jobs: list[tuple[str, str, str]], *, move: bool, sync: bool) -> list[bool]:
    """Copy or move message files; say, for each, whether its source was still there."""
    # Each job: source path, a temporary path in the destination's tmp/, the
    # destination path. A copy is a hard link when it can be (the same file
    # for both, as Dovecot does), else a copy keeping the modification time
    # (the INTERNALDATE). A move is a rename.
    done: list[bool] = []
    for source, temporary, destination in jobs:
        try:
            if move:
                try:
                    os.rename(source, destination)
                except FileNotFoundError:
                    raise
                except OSError:
                    shutil.copy2(source, temporary)
                    os.rename(temporary, destination)
                    os.unlink(source)
            else:
                try:
                    os.link(source, temporary)
                except FileNotFoundError:
                    raise
                except OSError:
                    shutil.copy2(source, temporary)
                os.rename(temporary, destination)
        except FileNotFoundError:
            done.append(False)
            continue
        done.append(True)
    if sync and jobs:
        fsync_directory(os.path.dirname(jobs[0][2]))
    return done
