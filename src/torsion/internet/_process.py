"""A running child process: its protocol and its transport.

``spawn_process`` (in ``torsion.internet._spawn``) starts a program and
connects a ``ProcessProtocol`` to it through a ``ProcessTransport``. The
protocol hears what the child writes on each descriptor, when each one
closes, when the child exits and when everything is over; the transport
writes to the child, closes its input, and signals it. How the child ended is
a typed status: ``ProcessExited`` with an exit code or ``ProcessTerminated``
with a signal number.

Beyond standard input, output and error, a child can be given more
descriptors (``child_fds``): pipes torsion reads or writes, or descriptors of
this process passed through, each at the number the child expects. A
pseudo-terminal (``use_pty``) can stand in for the three standard ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal as _signal
import termios
import typing
from collections.abc import Iterable
from typing import TYPE_CHECKING, cast

from torsion.defer import Deferred, succeed
from torsion.errors import ProcessExitedError
from torsion.internet._process_status import ProcessStatus, signal_number, status_from_returncode

if TYPE_CHECKING:
    from torsion.internet._spawn import ProcessTracker

__all__ = ["ChildProcess", "ProcessProtocol", "ProcessTransport"]

# -- the interface ------------------------------------------------------------------------


class ChildProcess(typing.Protocol):
    """A child process as its protocol sees it: ``ProcessTransport``, or a fake.

    See ``ProcessTransport`` for what each member does.
    """

    @property
    def pid(self) -> int: ...

    @property
    def status(self) -> ProcessStatus | None: ...

    def exited(self) -> Deferred[ProcessStatus]: ...

    def ended(self) -> Deferred[ProcessStatus]: ...

    def write(self, data: bytes | bytearray | memoryview) -> None: ...

    def writelines(self, lines: Iterable[bytes | bytearray | memoryview]) -> None: ...

    def write_to_child(self, fd: int, data: bytes | bytearray | memoryview) -> None: ...

    def close_stdin(self) -> None: ...

    def write_eof(self) -> None: ...

    def close_child_fd(self, fd: int) -> None: ...

    def get_write_buffer_size(self) -> int: ...

    def get_write_buffer_limits(self, fd: int = 0) -> tuple[int, int]: ...

    def set_write_buffer_limits(
        self, high: int | None = None, low: int | None = None, *, fd: int = 0
    ) -> None: ...

    def drained(self) -> Deferred[None]: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def signal_process(self, sig: str | int) -> None: ...

    def kill(self) -> None: ...

    def is_closing(self) -> bool: ...

    def close(self) -> None: ...


# -- the protocol --------------------------------------------------------------------------


class ProcessProtocol:
    """Base class for what reacts to a child process: override what you need.

    The call order, for one child::

        connection_made(transport)
          [-> child_data_received(fd, data)*]   out_received / err_received for 1 / 2
          [-> child_connection_lost(fd)]        once per descriptor torsion holds
          [-> process_exited(status)]           once, when the child exits
        -> process_ended(status)                once, last

    ``process_exited`` comes as soon as the child has exited, which can be
    before the last of its output was delivered (or while a grandchild still
    holds a pipe open); ``process_ended`` comes once the child has exited and
    every descriptor torsion held for it is closed: after it, nothing more
    is called. ``pause_writing`` and ``resume_writing`` may come in between
    (see ``ProcessTransport.drained``).

    ``child_connection_lost`` comes for each descriptor torsion reads or
    writes: 0 (the input), 1, 2, and each "r"/"w" entry of ``child_fds``;
    with a pseudo-terminal, 0 and 1 are the terminal and there is no 2.

    Attributes:
        transport: The process's transport, set by ``connection_made``.
    """

    transport: ChildProcess

    def connection_made(self, transport: ChildProcess) -> None:
        """Called once, when the child has started; keeps ``transport``."""
        self.transport = transport

    def child_data_received(self, fd: int, data: bytes) -> None:
        """Called with what the child wrote on its descriptor ``fd``.

        The default hands output (1) to ``out_received`` and errors (2) to
        ``err_received``; override it to hear the ``child_fds`` pipes.
        """
        if fd == 1:
            self.out_received(data)
        elif fd == 2:
            self.err_received(data)

    def out_received(self, data: bytes) -> None:
        """Called with each chunk the child writes to standard output."""

    def err_received(self, data: bytes) -> None:
        """Called with each chunk the child writes to standard error."""

    def child_connection_lost(self, fd: int) -> None:
        """Called once the pipe (or terminal) of the child's descriptor ``fd`` is closed.

        The default hands 0, 1 and 2 to ``in_connection_lost``,
        ``out_connection_lost`` and ``err_connection_lost``.
        """
        if fd == 0:
            self.in_connection_lost()
        elif fd == 1:
            self.out_connection_lost()
        elif fd == 2:
            self.err_connection_lost()

    def in_connection_lost(self) -> None:
        """The child's standard input is closed (by us, or the child is gone)."""

    def out_connection_lost(self) -> None:
        """The child's standard output is closed: everything it wrote there arrived."""

    def err_connection_lost(self) -> None:
        """The child's standard error is closed: everything it wrote there arrived."""

    def process_exited(self, status: ProcessStatus) -> None:
        """Called once, when the child has exited (its output may still be arriving)."""

    def process_ended(self, status: ProcessStatus) -> None:
        """Called once, last: the child exited and every descriptor is closed."""

    def pause_writing(self) -> None:
        """A write buffer to the child went above its high-water mark."""

    def resume_writing(self) -> None:
        """The write buffers to the child drained below their low-water marks."""


# -- the transport -------------------------------------------------------------------------


class ProcessTransport:
    """A running (or finished) child process, as ``spawn_process`` gives it.

    Writes to the child's descriptors are buffered by the pipes' transports;
    past their high-water marks the protocol is told ``pause_writing`` and
    ``drained()`` waits, which is how a writer keeps the buffers bounded. The
    child's output is handed to the protocol as it arrives and never
    accumulates here; ``pause_reading`` stops it (the child then blocks on a
    full pipe).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        protocol: ProcessProtocol,
        *,
        pty_master: bool,
        tracker: ProcessTracker | None = None,
    ) -> None:
        self._loop = loop
        self._protocol = protocol
        self._pty = pty_master
        self._tracker = tracker
        self._subprocess: asyncio.SubprocessTransport | None = None
        self._stdin: asyncio.WriteTransport | None = None
        self._outputs: dict[int, asyncio.ReadTransport] = {}
        self._pty_fd = -1
        self._pid: int | None = None
        self._status: ProcessStatus | None = None
        # Pipes torsion connected itself ("r"/"w" child fds and a terminal),
        # by the child's descriptor number.
        self._readers: dict[int, asyncio.ReadTransport] = {}
        self._writers: dict[int, asyncio.WriteTransport] = {}
        self._own_open: set[int] = set()
        self._own_done: dict[int, asyncio.Future[None]] = {}
        self._closed_fds: set[int] = set()
        self._made = False
        self._subprocess_lost = False
        self._ended = False
        self._closing = False
        self._reading_paused = False
        self._paused_writers: set[int] = set()
        self._exit_waiters: list[Deferred[ProcessStatus]] = []
        self._end_waiters: list[Deferred[ProcessStatus]] = []
        self._drain_waiters: list[Deferred[None]] = []
        if tracker is not None:
            tracker._add(self)

    # -- what the child is -------------------------------------------------------------------

    @property
    def pid(self) -> int:
        """The child's process id (kept after it ended)."""
        if self._pid is None:
            raise RuntimeError("the process has not started yet")
        return self._pid

    @property
    def status(self) -> ProcessStatus | None:
        """How the child ended, once it has exited; None while it runs."""
        return self._status

    def exited(self) -> Deferred[ProcessStatus]:
        """Wait until the child has exited (``process_exited``).

        Returns:
            A Deferred that fires with the status (at once if known already).
        """
        if self._status is not None:
            return succeed(self._status)
        d: Deferred[ProcessStatus] = Deferred()
        self._exit_waiters.append(d)
        return d

    def ended(self) -> Deferred[ProcessStatus]:
        """Wait until everything is over (``process_ended``).

        Returns:
            A Deferred that fires with the status after ``process_ended``
            was called (at once if it was already).
        """
        if self._ended and self._status is not None:
            return succeed(self._status)
        d: Deferred[ProcessStatus] = Deferred()
        self._end_waiters.append(d)
        return d

    # -- writing ---------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Write to the child's standard input (see ``write_to_child``)."""
        self.write_to_child(0, data)

    def writelines(self, lines: Iterable[bytes | bytearray | memoryview]) -> None:
        """Write each of ``lines`` to the child's standard input."""
        for line in lines:
            self.write_to_child(0, line)

    def write_to_child(self, fd: int, data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` to the child's descriptor ``fd``.

        Data written after the descriptor was closed (by ``close_child_fd``,
        or because the child is gone) is dropped.

        Raises:
            ValueError: torsion does not write to ``fd`` (it is not 0 or a
                "w" entry of ``child_fds``).
        """
        writer = self._writer(fd)
        if writer is None or fd in self._closed_fds or writer.is_closing():
            return
        writer.write(data)

    def close_stdin(self) -> None:
        """Close the child's standard input: it reads end of file.

        With a pseudo-terminal, which cannot be half-closed, the terminal's
        end-of-file character (VEOF, normally Ctrl-D) is written instead: the
        child reads end of file if its terminal is in canonical mode and the
        current line is empty.
        """
        self.close_child_fd(0)

    def write_eof(self) -> None:
        """The same as ``close_stdin``."""
        self.close_child_fd(0)

    def close_child_fd(self, fd: int) -> None:
        """Close the pipe to (or from) the child's descriptor ``fd``, after flushing.

        Idempotent; a no-op for a descriptor torsion does not hold.
        """
        if fd == 0 and self._pty:
            writer = self._writers.get(0)
            if writer is not None and not writer.is_closing() and 0 not in self._closed_fds:
                writer.write(_eof_character(self._pty_fd))
            return
        transport = self._pipe(fd)
        if transport is not None and not transport.is_closing():
            transport.close()

    def get_write_buffer_limits(self, fd: int = 0) -> tuple[int, int]:
        """Return the (low, high) water marks of the pipe to the child's ``fd``.

        Raises:
            ValueError: torsion writes to no pipe at ``fd``.
            RuntimeError: The child has not started yet.
        """
        return self._started_writer(fd).get_write_buffer_limits()

    def set_write_buffer_limits(
        self, high: int | None = None, low: int | None = None, *, fd: int = 0
    ) -> None:
        """Set the water marks of the pipe to the child's ``fd`` (asyncio's rules).

        Raises:
            ValueError: torsion writes to no pipe at ``fd``.
            RuntimeError: The child has not started yet.
        """
        self._started_writer(fd).set_write_buffer_limits(high, low)

    def _started_writer(self, fd: int) -> asyncio.WriteTransport:
        writer = self._writer(fd)
        if writer is None:
            raise RuntimeError("the process has not started yet")
        return writer

    def get_write_buffer_size(self) -> int:
        """Return the bytes buffered for the child, over all its input pipes."""
        total = 0
        for fd in [0, *self._writers]:
            writer = self._writer(fd)
            if writer is not None and not writer.is_closing():
                total += writer.get_write_buffer_size()
        return total

    def drained(self) -> Deferred[None]:
        """Wait until no pipe to the child is above its high-water mark.

        Returns:
            A Deferred that fires at once if none is, else when the last one
            drained (``resume_writing``), or when the process ended.
        """
        if not self._paused_writers or self._ended:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._drain_waiters.append(d)
        return d

    # -- reading ---------------------------------------------------------------------------

    def pause_reading(self) -> None:
        """Stop delivering the child's output until ``resume_reading``."""
        self._reading_paused = True
        for transport in self._read_transports():
            transport.pause_reading()

    def resume_reading(self) -> None:
        """Deliver the child's output again."""
        self._reading_paused = False
        for transport in self._read_transports():
            transport.resume_reading()

    # -- signals and the end -------------------------------------------------------------------

    def signal_process(self, sig: str | int) -> None:
        """Send a signal to the child.

        Args:
            sig: A name ("TERM", "SIGKILL", "hup") or a number.

        Raises:
            ProcessExitedError: The child has already exited.
            ValueError: There is no such signal.
        """
        number = signal_number(sig)
        pid = self.pid
        status = self._current_status()
        if status is not None:
            raise ProcessExitedError(pid, status)
        # os.kill rather than Popen.send_signal: that one polls the child,
        # which can reap it under asyncio's child watcher (which then reports
        # an unknown child and a made-up exit code). Until the watcher has
        # reported the exit, the pid is still ours, at worst a zombie.
        try:
            os.kill(pid, number)
        except ProcessLookupError as exc:  # pragma: no cover - reaped this instant
            raise ProcessExitedError(pid, self._current_status()) from exc

    def kill(self) -> None:
        """Kill the child (SIGKILL) if it is still running; a no-op otherwise."""
        if self._pid is not None and self._current_status() is None:
            with contextlib.suppress(ProcessLookupError):  # exited meanwhile
                os.kill(self._pid, _signal.SIGKILL)

    def is_closing(self) -> bool:
        """Return whether ``close()`` was called or the process ended."""
        return self._closing or self._ended

    def close(self) -> None:
        """Be done with the child: kill it if it still runs, and close every pipe.

        What is still buffered for the child is dropped, and output still on
        its way is not delivered. ``process_exited`` (if not called yet) and
        ``process_ended`` follow. To let the child finish instead, close its
        input (``close_stdin``) and wait for ``ended()``.
        """
        if self._closing or self._ended:
            return
        self._closing = True
        self.kill()
        writers = [*self._writers.values()]
        if self._stdin is not None:
            writers.append(self._stdin)
        for writer in writers:
            if not writer.is_closing():
                writer.abort()
        for reader in self._read_transports():
            reader.close()
        # asyncio's subprocess transport itself is closed once the child's
        # exit is known (``_lost``): closing it earlier polls the child, with
        # the race described in ``signal_process``.

    def __repr__(self) -> str:
        pid = "?" if self._pid is None else self._pid
        state = "ended" if self._ended else str(self._status or "running")
        return f"<ProcessTransport pid={pid} {state}>"

    # -- internals -----------------------------------------------------------------------------

    def _current_status(self) -> ProcessStatus | None:
        if self._status is not None:
            return self._status
        if self._subprocess is not None:
            code = self._subprocess.get_returncode()
            if code is not None:
                return status_from_returncode(code)
        return None

    def _writer(self, fd: int) -> asyncio.WriteTransport | None:
        if fd in self._writers:
            return self._writers[fd]
        if fd == 0 and self._stdin is not None:
            return self._stdin
        if fd == 0 and not self._made:
            return None  # not started yet: nothing to write to
        raise ValueError(f"the child's descriptor {fd} is not a pipe torsion writes to")

    def _pipe(self, fd: int) -> asyncio.BaseTransport | None:
        if fd in self._writers:
            return self._writers[fd]
        if fd in self._readers:
            return self._readers[fd]
        if fd == 0:
            return self._stdin
        return self._outputs.get(fd)

    def _read_transports(self) -> list[asyncio.ReadTransport]:
        found = [*self._readers.values(), *self._outputs.values()]
        return [t for t in found if not t.is_closing()]

    def _add_reader(
        self, fd: int, transport: asyncio.ReadTransport, done: asyncio.Future[None]
    ) -> None:
        self._readers[fd] = transport
        self._own_open.add(fd)
        self._own_done[fd] = done

    def _add_writer(
        self, fd: int, transport: asyncio.WriteTransport, done: asyncio.Future[None]
    ) -> None:
        self._writers[fd] = transport
        self._own_open.add(fd)
        self._own_done[fd] = done

    async def _abandon(self) -> None:
        """Close the pipes torsion connected and wait until they are closed."""
        for writer in self._writers.values():
            writer.abort()
        for reader in self._readers.values():
            reader.close()
        pending = [f for f in self._own_done.values() if not f.done()]
        if pending:
            await asyncio.wait(pending)
        # A connection cancelled halfway closes its descriptor on the next
        # turn of the loop (asyncio's): let it.
        await asyncio.sleep(0)

    # Events, from asyncio's subprocess transport and from torsion's own pipes.

    def _started(self, transport: asyncio.SubprocessTransport) -> None:
        self._subprocess = transport
        if self._tracker is not None:
            # Again, if the spawn had failed before asyncio reported the start.
            self._tracker._add(self)
        self._pid = transport.get_pid()
        stdin = transport.get_pipe_transport(0)
        if stdin is not None:
            self._stdin = cast(asyncio.WriteTransport, stdin)
        for fd in (1, 2):
            pipe = transport.get_pipe_transport(fd)
            if pipe is not None:
                self._outputs[fd] = cast(asyncio.ReadTransport, pipe)
        self._made = True
        self._protocol.connection_made(self)
        if not self._reading_paused:
            for reader in self._readers.values():
                reader.resume_reading()

    def _data(self, fd: int, data: bytes) -> None:
        if self._made:
            self._protocol.child_data_received(fd, data)

    def _pipe_lost(self, fd: int) -> None:
        if fd in self._closed_fds:
            return
        self._closed_fds.add(fd)
        self._paused_writers.discard(fd)
        if self._made:
            self._protocol.child_connection_lost(fd)
        if not self._paused_writers:
            self._wake_drain_waiters()

    def _own_lost(self, fd: int) -> None:
        self._pipe_lost(fd)
        self._own_open.discard(fd)
        if fd == 1:
            self._release_terminal()
        self._maybe_end()

    def _release_terminal(self) -> None:
        """Close the terminal's last descriptor once its output ended and the child exited.

        Reading it fails (EIO) as soon as the child closed its side, which a
        program may do before it exits (cat closes 0, 1 and 2 at the end);
        closing the master then would hang the terminal up, and the system
        sends SIGHUP to the terminal's controlling process (POSIX.1, General
        Terminal Interface, "Modem Disconnect"): the child, killed before it
        exits by itself. So the writer's copy stays open until the exit.
        """
        writer = self._writers.get(0)
        if self._pty and writer is not None and 1 in self._closed_fds and self._status is not None:
            writer.abort()

    def _exited(self) -> None:
        if self._subprocess is None or self._status is not None:
            return
        code = self._subprocess.get_returncode()
        if code is None:  # pragma: no cover - asyncio reports the code first
            return
        status = self._status = status_from_returncode(code)
        waiters, self._exit_waiters = self._exit_waiters, []
        for d in waiters:
            d.callback(status)
        self._protocol.process_exited(status)
        self._release_terminal()

    def _lost(self) -> None:
        self._subprocess_lost = True
        self._exited()  # in case the loop did not report the exit first
        if self._subprocess is not None:
            # Marks asyncio's transport closed (or it warns when collected).
            self._subprocess.close()
        self._maybe_end()

    def _maybe_end(self) -> None:
        if self._ended or not self._subprocess_lost or self._own_open or self._status is None:
            return
        self._ended = True
        # On the next turn: the pipes' transports close their descriptors
        # after their connection_lost returns.
        self._loop.call_soon(self._end, self._status)

    def _end(self, status: ProcessStatus) -> None:
        if self._tracker is not None:
            self._tracker._discard(self)
        self._protocol.process_ended(status)
        waiters, self._end_waiters = self._end_waiters, []
        for d in waiters:
            d.callback(status)
        self._wake_drain_waiters()

    def _pause(self, fd: int) -> None:
        was_paused = bool(self._paused_writers)
        self._paused_writers.add(fd)
        if not was_paused and self._made:
            self._protocol.pause_writing()

    def _resume(self, fd: int) -> None:
        if fd not in self._paused_writers:
            return
        self._paused_writers.discard(fd)
        if not self._paused_writers:
            if self._made:
                self._protocol.resume_writing()
            self._wake_drain_waiters()

    def _wake_drain_waiters(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for d in waiters:
            d.callback(None)


class _SubprocessEvents(asyncio.SubprocessProtocol):
    """Passes what asyncio's subprocess transport reports to the ``ProcessTransport``."""

    def __init__(self, owner: ProcessTransport) -> None:
        self._owner = owner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._owner._started(cast(asyncio.SubprocessTransport, transport))

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        self._owner._data(fd, cast(bytes, data))

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._owner._pipe_lost(fd)

    def process_exited(self) -> None:
        self._owner._exited()

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._lost()

    def pause_writing(self) -> None:
        self._owner._pause(0)

    def resume_writing(self) -> None:
        self._owner._resume(0)


class _OwnPipe(asyncio.Protocol):
    """Passes what one of torsion's own pipes (or the terminal) reports."""

    def __init__(self, owner: ProcessTransport, fd: int, done: asyncio.Future[None]) -> None:
        self._owner = owner
        self._fd = fd
        self._done = done

    def data_received(self, data: bytes) -> None:
        self._owner._data(self._fd, data)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        # Errors end the pipe quietly: EIO is how a terminal reports that the
        # child's side closed, EPIPE how a pipe says nobody reads it any more.
        if not self._done.done():
            self._done.set_result(None)
        self._owner._own_lost(self._fd)

    def pause_writing(self) -> None:
        self._owner._pause(self._fd)

    def resume_writing(self) -> None:
        self._owner._resume(self._fd)


def _eof_character(terminal: int) -> bytes:
    """Return the character that ends input on ``terminal`` (VEOF, termios(3))."""
    character = termios.tcgetattr(terminal)[6][termios.VEOF]
    return character if isinstance(character, bytes) else bytes([character])
