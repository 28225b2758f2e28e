"""Child processes that ``MemoryReactor`` pretends to start.

``spawn_process`` records a ``ProcessCall`` and gives the protocol a
``MemoryProcessTransport``; nothing runs. The test then plays the child,
and the protocol hears what it would hear from a real one, in the same
order and with the same status objects::

    connection_made(transport)
      [-> child_data_received(fd, data)*]   child_writes(fd, data)
      [-> child_connection_lost(fd)]        child_closes(fd), or at the exit
      [-> process_exited(status)]           child_exits(code) / child_killed(sig)
    -> process_ended(status)                once every descriptor is closed

What the code under test does to the child is recorded: ``value(fd)`` is
what it wrote to descriptor ``fd``, ``signals`` the signals it sent,
``closed_fds`` the descriptors it closed. Where the real transport reports
through the loop (a closed pipe's ``child_connection_lost``, the
``process_ended`` after the last one), the memory one calls the protocol at
once. ``close()`` plays what follows on a real child: every descriptor
closes, and the child dies of the SIGKILL it was sent.

The test's mistakes raise rather than pass silently: playing a child that
has not started (``RuntimeError``), output on a descriptor torsion does not
read (``ValueError``), output after that descriptor closed or after the end
(``RuntimeError``), exiting twice (``RuntimeError``).
"""

from __future__ import annotations

import errno
import os
import signal as _signal
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypeAlias

from torsion.defer import Deferred, succeed
from torsion.internet import (
    CannotSpawnError,
    ChildFD,
    ChildProcess,
    ProcessExited,
    ProcessExitedError,
    ProcessProtocol,
    ProcessStatus,
    ProcessTerminated,
    signal_number,
)

__all__ = ["MemoryProcessTransport", "ProcessCall", "check_child_fds"]

StrPath: TypeAlias = str | bytes | os.PathLike[str] | os.PathLike[bytes]

_Buffer = bytes | bytearray | memoryview

# What a terminal's VEOF is unless a program changes it (termios(3): Ctrl-D).
_TERMINAL_EOF = b"\x04"


def check_child_fds(child_fds: Mapping[int, ChildFD], use_pty: bool) -> dict[int, ChildFD]:
    """Check ``child_fds`` as ``spawn_process`` does (without looking at our descriptors).

    Raises:
        ValueError: An entry makes no sense (see ``spawn_process``).
    """
    checked: dict[int, ChildFD] = {}
    for target, how in child_fds.items():
        if isinstance(how, bool) or not isinstance(how, int | str):
            raise ValueError(f"child_fds[{target}] must be 'r', 'w' or a descriptor")
        if target < 0:
            raise ValueError(f"child_fds: {target} is not a descriptor number")
        if target <= 2:
            if use_pty:
                raise ValueError("child_fds: 0, 1 and 2 are the terminal with use_pty")
            default = "w" if target == 0 else "r"
            if isinstance(how, str) and how != default:
                raise ValueError(f"child_fds: descriptor {target} can only be {default!r}")
        elif isinstance(how, str) and how not in ("r", "w"):
            raise ValueError(f"child_fds[{target}] must be 'r', 'w' or a descriptor")
        checked[target] = how
    return checked


# asyncio's default water marks for a pipe: (low, high).
_DEFAULT_LIMITS = (16 * 1024, 64 * 1024)


class MemoryProcessTransport:
    """A child process that a test plays; what the code under test does is recorded.

    Args:
        protocol: The protocol the child talks to.
        pid: The made-up process id.
        use_pty: Whether the child "has" a terminal: then 0 and 1 are the
            terminal (written to and read from), there is no 2, and
            ``close_stdin`` writes the terminal's end-of-file character.
        child_fds: The ``child_fds`` of the spawn, already checked: "r" and
            "w" entries add descriptors torsion reads and writes; a
            descriptor number given for 0, 1 or 2 means torsion holds no
            pipe there.

    Attributes:
        signals: The signals the code under test sent, as numbers, in order
            (``kill()`` and ``close()`` send ``SIGKILL``).
        closed_fds: The descriptors the code under test closed
            (``close_child_fd``, ``close_stdin``), in order. With a terminal,
            ``close_stdin`` writes its end-of-file character instead (it
            shows in ``value(0)``).
        closed: Whether ``close()`` was called.
    """

    # The real constructor takes a loop the memory transport does not have;
    # every public member is overridden, so none of the real state is used.
    def __init__(
        self,
        protocol: ProcessProtocol,
        *,
        pid: int,
        use_pty: bool = False,
        child_fds: Mapping[int, ChildFD] | None = None,
    ) -> None:
        self._protocol = protocol
        self._process_id = pid
        self._use_pty = use_pty
        wanted = dict(child_fds or {})
        if use_pty:
            self._writable = {0}
            self._readable = {1}
        else:
            standard: dict[int, ChildFD] = {0: "w", 1: "r", 2: "r"}
            wanted = {**standard, **wanted}
            self._writable = {fd for fd, how in wanted.items() if how == "w"}
            self._readable = {fd for fd, how in wanted.items() if how == "r"}
        self._open_fds = self._writable | self._readable
        self._written: dict[int, bytearray] = {fd: bytearray() for fd in self._writable}
        self.signals: list[int] = []
        self.closed_fds: list[int] = []
        self.closed = False
        self._begun = False
        self._status: ProcessStatus | None = None
        self._ended = False
        self._reading_paused = False
        # What the child sent while reading was paused: (fd, data), or
        # (fd, None) for the descriptor closing, delivered in order on resume.
        self._held: deque[tuple[int, bytes | None]] = deque()
        self._closing_fds: set[int] = set()
        self._writes_blocked = False
        self._buffered = 0
        self._limits: dict[int, tuple[int, int]] = {}
        self._exit_waiters: list[Deferred[ProcessStatus]] = []
        self._end_waiters: list[Deferred[ProcessStatus]] = []
        self._drain_waiters: list[Deferred[None]] = []

    # -- what the test reads -------------------------------------------------------------

    def value(self, fd: int = 0) -> bytes:
        """Return everything the code under test wrote to the child's descriptor ``fd``.

        Raises:
            ValueError: torsion does not write to ``fd``.
        """
        if fd not in self._written:
            raise ValueError(f"the child's descriptor {fd} is not a pipe torsion writes to")
        return bytes(self._written[fd])

    @property
    def open_fds(self) -> set[int]:
        """The child's descriptors torsion holds that have not closed yet."""
        return set(self._open_fds)

    @property
    def reading_paused(self) -> bool:
        """Whether the code under test paused reading the child's output."""
        return self._reading_paused

    # -- the test plays the child --------------------------------------------------------

    def child_writes(self, fd: int, data: bytes) -> None:
        """Play the child writing ``data`` on its descriptor ``fd`` (1 for output).

        The protocol gets ``child_data_received(fd, data)`` now, or once
        reading is resumed if the code under test paused it.

        Raises:
            RuntimeError: The child has not started, or ``fd`` already
                closed, or the process ended.
            ValueError: torsion does not read ``fd``.
        """
        self._check_playable(fd)
        if fd not in self._readable:
            raise ValueError(f"the child's descriptor {fd} is not a pipe torsion reads")
        self._held.append((fd, bytes(data)))
        self._deliver_held()

    def child_closes(self, fd: int) -> None:
        """Play the pipe of the child's descriptor ``fd`` closing (the child closed its end).

        The protocol gets ``child_connection_lost(fd)``, after any output on
        ``fd`` held while reading is paused; ``process_ended`` follows if the
        child had exited and this was the last descriptor.

        Raises:
            RuntimeError: The child has not started, or ``fd`` already
                closed, or the process ended.
            ValueError: torsion holds no pipe for ``fd``.
        """
        self._check_playable(fd)
        if fd not in self._writable | self._readable:
            raise ValueError(f"torsion holds no pipe for the child's descriptor {fd}")
        self._end_fd(fd)

    def child_exits(self, code: int = 0, *, close_fds: bool = True) -> None:
        """Play the child exiting with ``code``: the protocol gets ``ProcessExited(code)``.

        Args:
            code: The exit status, 0 to 255.
            close_fds: Close every descriptor still open first, as a
                child's exit does (``child_connection_lost`` for each, then
                ``process_exited``, then ``process_ended``). False plays a
                child whose pipes stay open (a grandchild holds them):
                ``process_ended`` waits for ``child_closes``.

        Raises:
            RuntimeError: The child has not started or has already exited.
            ValueError: ``code`` is not 0 to 255.
        """
        if not 0 <= code <= 255:
            raise ValueError(f"an exit status is 0 to 255, not {code}")
        self._finish(ProcessExited(code), close_fds)

    def child_killed(self, sig: str | int, *, close_fds: bool = True) -> None:
        """Play the child killed by signal ``sig``: the protocol gets ``ProcessTerminated``.

        Args:
            sig: A signal name ("TERM", "SIGKILL") or number.
            close_fds: As for ``child_exits``.

        Raises:
            RuntimeError: The child has not started or has already exited.
            ValueError: There is no such signal.
        """
        self._finish(ProcessTerminated(signal_number(sig)), close_fds)

    def block_writes(self) -> None:
        """Play the child not reading its input: its pipes fill.

        The protocol gets ``pause_writing()``; what is written from now on
        counts in ``get_write_buffer_size()`` and ``drained()`` waits, until
        ``unblock_writes``.
        """
        if self._writes_blocked:
            return
        self._writes_blocked = True
        if self._begun and not self._ended:
            self._protocol.pause_writing()

    def unblock_writes(self) -> None:
        """Play the child reading its input again: ``resume_writing()``, ``drained()`` fires."""
        if not self._writes_blocked:
            return
        self._writes_blocked = False
        self._buffered = 0
        if self._begun and not self._ended:
            self._protocol.resume_writing()
        self._wake_drain_waiters()

    # -- ChildProcess: what the code under test calls ------------------------------------

    @property
    def pid(self) -> int:
        """The child's made-up process id."""
        return self._process_id

    @property
    def status(self) -> ProcessStatus | None:
        """How the child ended, once the test played its exit; None before."""
        return self._status

    def exited(self) -> Deferred[ProcessStatus]:
        """Wait until the child has exited (``process_exited``)."""
        if self._status is not None:
            return succeed(self._status)
        d: Deferred[ProcessStatus] = Deferred()
        self._exit_waiters.append(d)
        return d

    def ended(self) -> Deferred[ProcessStatus]:
        """Wait until everything is over (``process_ended``)."""
        if self._ended and self._status is not None:
            return succeed(self._status)
        d: Deferred[ProcessStatus] = Deferred()
        self._end_waiters.append(d)
        return d

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Write to the child's standard input (see ``write_to_child``)."""
        self.write_to_child(0, data)

    def writelines(self, lines: Iterable[bytes | bytearray | memoryview]) -> None:
        """Write each of ``lines`` to the child's standard input."""
        for line in lines:
            self.write_to_child(0, line)

    def write_to_child(self, fd: int, data: bytes | bytearray | memoryview) -> None:
        """Record ``data`` written to the child's descriptor ``fd`` (dropped once closed).

        Raises:
            ValueError: torsion does not write to ``fd``.
            TypeError: ``data`` is not bytes-like.
        """
        self._check_writable(fd)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"data must be bytes-like, not {type(data).__name__}")
        if fd not in self._open_fds or self.closed or self._ended:
            return
        self._written[fd] += data
        if self._writes_blocked:
            self._buffered += len(data)

    def _check_writable(self, fd: int) -> None:
        if fd not in self._writable:
            raise ValueError(f"the child's descriptor {fd} is not a pipe torsion writes to")

    def close_stdin(self) -> None:
        """Close the child's standard input (with a terminal: write its EOF character)."""
        self.close_child_fd(0)

    def write_eof(self) -> None:
        """The same as ``close_stdin``."""
        self.close_child_fd(0)

    def close_child_fd(self, fd: int) -> None:
        """Close the pipe of the child's descriptor ``fd``: ``child_connection_lost(fd)`` now.

        Idempotent; a no-op for a descriptor torsion does not hold. Output
        held while reading is paused is dropped, as closing a real pipe drops
        what was not read.
        """
        if fd == 0 and self._use_pty:
            # A terminal cannot be half-closed: the real transport sends VEOF.
            if 0 in self._open_fds and not self.closed:
                self._written[0] += _TERMINAL_EOF
            return
        if fd not in self._open_fds:
            return
        self.closed_fds.append(fd)
        self._held = deque(event for event in self._held if event[0] != fd)
        self._lose(fd)

    def get_write_buffer_size(self) -> int:
        """Return the bytes written while the test blocks the child's input."""
        return self._buffered

    def get_write_buffer_limits(self, fd: int = 0) -> tuple[int, int]:
        """Return the water marks set for ``fd`` (asyncio's defaults until set).

        The test decides when the pipes are full (``block_writes``); the
        marks are recorded, not obeyed.
        """
        self._check_writable(fd)
        return self._limits.get(fd, _DEFAULT_LIMITS)

    def set_write_buffer_limits(
        self, high: int | None = None, low: int | None = None, *, fd: int = 0
    ) -> None:
        """Record water marks for ``fd`` (asyncio's rules for the defaults)."""
        self._check_writable(fd)
        if high is None:
            high = 4 * low if low is not None else _DEFAULT_LIMITS[1]
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._limits[fd] = (low, high)

    def drained(self) -> Deferred[None]:
        """Wait until the test unblocks the child's input (at once if it is not blocked)."""
        if not self._writes_blocked or self._ended:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._drain_waiters.append(d)
        return d

    def pause_reading(self) -> None:
        """Hold the child's output (and the closing of its pipes) until ``resume_reading``."""
        self._reading_paused = True

    def resume_reading(self) -> None:
        """Deliver what the child sent meanwhile, in order."""
        self._reading_paused = False
        self._deliver_held()

    def signal_process(self, sig: str | int) -> None:
        """Record a signal sent to the child; the child does not react by itself.

        The test plays what the signal does (``child_killed``, ``child_exits``).

        Raises:
            ProcessExitedError: The test played the child's exit already.
            ValueError: There is no such signal.
        """
        number = signal_number(sig)
        if self._status is not None:
            raise ProcessExitedError(self._process_id, self._status)
        self.signals.append(number)

    def kill(self) -> None:
        """Record a SIGKILL if the child still runs; a no-op otherwise."""
        if self._status is None:
            self.signals.append(_signal.SIGKILL)

    def is_closing(self) -> bool:
        """Return whether ``close()`` was called or the process ended."""
        return self.closed or self._ended

    def close(self) -> None:
        """Be done with the child, as the real transport is.

        A child still running is sent SIGKILL; every pipe closes
        (``child_connection_lost``, held output dropped); a child still
        running then dies of the signal (``process_exited`` with
        ``ProcessTerminated(SIGKILL)``), and ``process_ended`` follows.
        """
        if self.closed or self._ended:
            return
        self.closed = True
        self.kill()
        self._held.clear()
        # The real transport aborts its writers before it closes its readers.
        writers = sorted(self._open_fds & self._writable)
        readers = sorted(self._open_fds & self._readable)
        for fd in writers + readers:
            self._lose(fd)
        if self._status is None and self._begun:
            self._exit(ProcessTerminated(_signal.SIGKILL))
        self._maybe_end()

    def __repr__(self) -> str:
        state = "ended" if self._ended else str(self._status or "running")
        return f"<MemoryProcessTransport pid={self._process_id} {state}>"

    # -- internals -----------------------------------------------------------------------

    def _start(self) -> None:
        self._begun = True
        self._protocol.connection_made(self)
        if self._writes_blocked:
            self._protocol.pause_writing()

    def _check_playable(self, fd: int) -> None:
        if not self._begun:
            raise RuntimeError(f"process {self._process_id} has not started")
        if self._ended:
            raise RuntimeError(f"process {self._process_id} has ended")
        if fd in self._closing_fds or (
            fd in self._writable | self._readable and fd not in self._open_fds
        ):
            raise RuntimeError(f"the child's descriptor {fd} is closed")

    def _end_fd(self, fd: int) -> None:
        if fd in self._readable:
            # Behind any output held on it, as a real pipe reads EOF last.
            self._closing_fds.add(fd)
            self._held.append((fd, None))
            self._deliver_held()
        else:
            self._lose(fd)

    def _deliver_held(self) -> None:
        # A callback may pause reading again: stop there; it may resume, and
        # deliver the rest itself, in order (both take from the front).
        while self._held and not self._reading_paused:
            fd, data = self._held.popleft()
            if data is None:
                self._lose(fd)
            elif fd in self._open_fds:
                self._protocol.child_data_received(fd, data)

    def _lose(self, fd: int) -> None:
        if fd not in self._open_fds:
            return
        self._open_fds.discard(fd)
        self._closing_fds.discard(fd)
        if self._begun:
            self._protocol.child_connection_lost(fd)
        self._maybe_end()

    def _finish(self, status: ProcessStatus, close_fds: bool) -> None:
        if not self._begun:
            raise RuntimeError(f"process {self._process_id} has not started")
        if self._status is not None:
            raise RuntimeError(f"process {self._process_id} has already {self._status}")
        if close_fds:
            for fd in sorted(self._open_fds - self._closing_fds):
                self._end_fd(fd)
        self._exit(status)
        self._maybe_end()

    def _exit(self, status: ProcessStatus) -> None:
        self._status = status
        waiters, self._exit_waiters = self._exit_waiters, []
        for d in waiters:
            d.callback(status)
        self._protocol.process_exited(status)

    def _maybe_end(self) -> None:
        if self._ended or self._status is None or self._open_fds:
            return
        self._ended = True
        self._held.clear()
        self._protocol.process_ended(self._status)
        waiters, self._end_waiters = self._end_waiters, []
        for d in waiters:
            d.callback(self._status)
        self._wake_drain_waiters()

    def _wake_drain_waiters(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for d in waiters:
            d.callback(None)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessCall:
    """One recorded ``spawn_process`` call, and the child it pretends to start.

    Attributes:
        protocol: The ``ProcessProtocol`` given.
        executable: The program asked for (not looked up).
        args: The argument vector the child gets (``[executable]`` when the
            caller gave none).
        env: The environment given (None: this process's own).
        path: The working directory asked for.
        uid: The user asked for, as given.
        gid: The group asked for, as given.
        use_pty: Whether a pseudo-terminal was asked for.
        child_fds: The extra descriptors asked for (empty if none).
        transport: The child the test plays.
        deferred: What ``spawn_process`` returned; ``start`` or ``fail``
            fire it, unless the reactor starts children at once.
    """

    protocol: ProcessProtocol
    executable: StrPath
    args: list[StrPath]
    env: Mapping[str, str] | None
    path: StrPath | None
    uid: int | str | None
    gid: int | str | None
    use_pty: bool
    child_fds: dict[int, ChildFD]
    transport: MemoryProcessTransport
    deferred: Deferred[ChildProcess]

    def start(self) -> MemoryProcessTransport:
        """Play the child starting: ``connection_made``, then the Deferred fires.

        Returns:
            The transport, for the test to play the child.

        Raises:
            RuntimeError: The spawn already ended (started, failed or cancelled).
        """
        if self.deferred.called:
            raise RuntimeError(f"the spawn of {self._name()} already ended")
        self.transport._start()
        self.deferred.callback(self.transport)
        return self.transport

    def fail(self, exc: BaseException | None = None) -> None:
        """Play the child failing to start; nothing is called on the protocol.

        Args:
            exc: The error; by default a ``CannotSpawnError`` for a program
                that does not exist (ENOENT).

        Raises:
            RuntimeError: The spawn already ended.
        """
        if self.deferred.called:
            raise RuntimeError(f"the spawn of {self._name()} already ended")
        if exc is None:
            missing = FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), self._name())
            exc = CannotSpawnError(self._name(), missing)
        self.deferred.errback(exc)

    def _name(self) -> str:
        return os.fsdecode(self.executable)
