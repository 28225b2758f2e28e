"""Becoming a daemon: detach from the terminal, and still report how start-up went.

``daemonize()`` does what a well-behaved Unix daemon does: fork (the
command returns to the shell), start a new session (no controlling
terminal), fork again (never to acquire one), point standard input, output
and error at ``/dev/null``, and set the umask. The working directory is
kept, so that relative paths in the application still mean what they
meant.

The command that started the daemon waits until the daemon says how its
start-up went, through a pipe: it exits 0 once the daemon serves, or prints
the daemon's one-line error and exits with its status (2 for a usage
error, 1 for the rest). So ``torsion --daemon echo --listen tcp:80`` on a
taken port fails in the shell, not silently in the background.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import NoReturn

__all__ = ["StartupReport", "daemonize"]

# Status lines are short; this bounds what the waiting command reads.
_MAX_REPORT = 4096


class StartupReport:
    """The daemon's end of the pipe to the command that started it.

    Args:
        fd: The pipe's write end; None when there is nobody to tell (not
            daemonized), and then reporting does nothing.
    """

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    @property
    def waiting(self) -> bool:
        """Whether the starting command still waits for a report."""
        return self._fd is not None

    def succeeded(self) -> None:
        """Tell the command that start-up succeeded (it exits 0)."""
        self._send("0\n")

    def failed(self, status: int, message: str) -> None:
        """Tell the command that start-up failed: it prints ``message`` and exits ``status``."""
        self._send(f"{status}\n{message}\n")

    def _send(self, text: str) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.write(fd, text.encode("utf-8", "replace")[:_MAX_REPORT])
        except OSError:
            pass  # The command is gone (killed); nobody to tell.
        finally:
            os.close(fd)


def daemonize(*, umask: int | None = None) -> StartupReport:
    """Detach this process; only the daemon returns.

    The original process waits for the daemon's report and exits with its
    status (see the module doc); it never returns from this call.

    Args:
        umask: The daemon's file mode mask (unchanged if None).

    Returns:
        The daemon's end of the report pipe.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    if os.fork() > 0:
        os.close(write_end)
        _wait_for_report(read_end)
    os.close(read_end)
    os.setsid()
    if os.fork() > 0:
        # The session leader goes; the daemon can never take a terminal again.
        os._exit(0)
    if umask is not None:
        os.umask(umask)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)
    return StartupReport(write_end)


def _wait_for_report(fd: int) -> NoReturn:
    chunks = []
    while chunk := os.read(fd, _MAX_REPORT):
        chunks.append(chunk)
        if sum(map(len, chunks)) >= _MAX_REPORT:
            break
    os.close(fd)
    # The session leader in between exits at once; reap it (no zombie).
    with contextlib.suppress(ChildProcessError):
        os.wait()
    report = b"".join(chunks).decode("utf-8", "replace")
    status_text, _, message = report.partition("\n")
    if not status_text.isdigit():
        sys.stderr.write("torsion: the daemon exited during start-up (see its log)\n")
        sys.stderr.flush()
        os._exit(1)
    status = int(status_text)
    if message.strip():
        sys.stderr.write(message if message.endswith("\n") else message + "\n")
        sys.stderr.flush()
    os._exit(status)
