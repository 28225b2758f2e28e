"""How a child process ended, and signals by name or number.

A child either exits by itself, with a code (``ProcessExited``), or is ended
by a signal (``ProcessTerminated``); ``ProcessStatus`` is either. Both are
small frozen dataclasses to match on. Where an ending must be an exception
(a stream protocol's ``connection_lost``), ``torsion.errors.ProcessFailedError``
carries the status of a child that did not succeed. ``status_from_returncode`` reads
``subprocess``'s convention (minus the signal's number), and
``signal_number`` accepts a signal as "TERM", "SIGTERM" or 15.
"""

from __future__ import annotations

import signal as _signal
from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "ProcessExited",
    "ProcessStatus",
    "ProcessTerminated",
    "signal_number",
    "status_from_returncode",
]


@dataclass(frozen=True, slots=True)
class ProcessExited:
    """The child exited by itself (``exit()``, or returning from ``main``).

    Attributes:
        exit_code: Its exit status, 0 to 255; 0 means success.
    """

    exit_code: int

    @property
    def signal(self) -> None:
        """None: no signal ended it."""
        return None

    @property
    def success(self) -> bool:
        """Whether the exit code is 0."""
        return self.exit_code == 0

    def __str__(self) -> str:
        return f"exited with code {self.exit_code}"


@dataclass(frozen=True, slots=True)
class ProcessTerminated:
    """The child was ended by a signal (it did not exit by itself).

    Attributes:
        signal: The signal's number (``signal.SIGTERM``, ...).
    """

    signal: int

    @property
    def exit_code(self) -> None:
        """None: it did not exit with a code."""
        return None

    @property
    def success(self) -> bool:
        """False: a signal ending a process is never success."""
        return False

    @property
    def signal_name(self) -> str:
        """The signal's name, such as "SIGTERM" (or "signal 42" if it has none)."""
        try:
            return _signal.Signals(self.signal).name
        except ValueError:
            return f"signal {self.signal}"

    def __str__(self) -> str:
        return f"terminated by {self.signal_name}"


ProcessStatus: TypeAlias = ProcessExited | ProcessTerminated
"""How a child process ended; match on the type, or read ``exit_code`` and
``signal`` (one of them is None) and ``success``."""


def status_from_returncode(returncode: int) -> ProcessStatus:
    """Turn a ``subprocess``-style return code into a status.

    Args:
        returncode: The exit code, or minus the signal's number when a signal
            ended the process.
    """
    if returncode < 0:
        return ProcessTerminated(-returncode)
    return ProcessExited(returncode)


def signal_number(sig: str | int) -> int:
    """Return the number of a signal given by name ("TERM", "SIGTERM", "term") or number.

    Raises:
        ValueError: There is no such signal.
    """
    if isinstance(sig, int):
        if not 0 < sig < _signal.NSIG:
            raise ValueError(f"no such signal: {sig!r}")
        return int(sig)
    name = sig.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(_signal.Signals[name])
    except KeyError:
        raise ValueError(f"no such signal: {sig!r}") from None
