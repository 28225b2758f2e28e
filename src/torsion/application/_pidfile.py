"""The pidfile: the running service's process id, in a file other tools read.

``check()`` refuses a pidfile held by a process that is alive and removes
one left behind by a process that is gone (a stale pidfile, after a crash
or a reboot). ``write()`` creates the file exclusively, so two services
started at once cannot both think they own it; ``remove()`` deletes it only
while it still holds our own process id.

A file that does not hold a process id is never removed: the path may be
wrong, and the file someone else's.
"""

from __future__ import annotations

import errno
import logging
import os

from torsion.application._errors import PidfileError

__all__ = ["Pidfile"]

_log = logging.getLogger(__name__)

# A pidfile holds a number and a newline; anything much longer is not one.
_MAX_SIZE = 64


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # kill(2): signal 0 checks the process exists.
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # It exists, and belongs to someone else.
    return True


class Pidfile:
    """A pidfile at ``path``.

    Args:
        path: Where it is (made absolute now, before a daemon changes directory).
    """

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self._written: int | None = None

    def read(self) -> int | None:
        """Return the process id in the file, or None if there is no file.

        Raises:
            PidfileError: The file cannot be read, or holds no process id.
        """
        try:
            with open(self.path, "rb") as f:
                content = f.read(_MAX_SIZE + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise PidfileError(f"cannot read the pidfile {self.path}: {exc.strerror}") from exc
        text = content.decode("ascii", "replace").strip()
        if len(content) > _MAX_SIZE or not text.isdigit() or int(text) <= 0:
            raise PidfileError(
                f"the pidfile {self.path} does not hold a process id; "
                "check the path, or remove the file"
            )
        return int(text)

    def check(self) -> None:
        """Make sure no running process holds the pidfile; remove a stale one.

        Raises:
            PidfileError: A running process holds it, or it is unusable.
        """
        pid = self.read()
        if pid is None:
            return
        if pid != os.getpid() and _alive(pid):
            raise PidfileError(f"the pidfile {self.path} is held by running process {pid}")
        _log.warning("Removing the stale pidfile %s (process %d is gone)", self.path, pid)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise PidfileError(
                f"cannot remove the stale pidfile {self.path}: {exc.strerror}"
            ) from exc

    def write(self) -> None:
        """Create the pidfile with this process's id.

        Raises:
            PidfileError: It exists (another service got there first) and is
                held, or it cannot be created.
        """
        pid = os.getpid()
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self.check()  # Raises if held; removes it if stale.
                continue
            except OSError as exc:
                raise PidfileError(
                    f"cannot create the pidfile {self.path}: {exc.strerror}"
                ) from exc
            with os.fdopen(fd, "w") as f:
                f.write(f"{pid}\n")
            self._written = pid
            return
        raise PidfileError(
            f"the pidfile {self.path} keeps coming back; is another service starting?"
        )

    def remove(self) -> None:
        """Delete the pidfile if this process wrote it and it still holds its id."""
        if self._written is None:
            return
        written, self._written = self._written, None
        try:
            if self.read() != written:
                return  # Someone else's now.
        except PidfileError:
            return
        try:
            os.unlink(self.path)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                _log.warning("Cannot remove the pidfile %s: %s", self.path, exc.strerror)

    def __repr__(self) -> str:
        return f"<Pidfile {self.path}>"
