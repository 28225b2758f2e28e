"""A child process as a client connection: ``ProcessEndpoint``.

``ProcessEndpoint.connect(factory)`` starts a program and runs an ordinary
stream protocol over it, as if the program were a server at the other end of
a socket: what the protocol writes goes to the child's standard input, what
the child writes to its standard output arrives in ``data_received``. The
call order is a connection's::

    connection_made [-> data_received*] [-> eof_received] -> connection_lost

``eof_received`` comes when the child's output closes (usually as it
exits); ``connection_lost`` comes once, when the child has exited and every
pipe to it is closed: with None if it exited with code 0, else with a
``ProcessFailedError`` carrying its status. The child's standard error is
logged line by line, dropped, or left as this process's own.

The transport's peer address is a ``ProcessAddress`` (the program and its
process id); ``get_extra_info("pid")`` gives the id and
``get_extra_info("process")`` the ``ProcessTransport`` underneath (to signal
the child, say).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeAlias, TypeVar, cast

from torsion.defer import Deferred, fail
from torsion.errors import ProcessFailedError
from torsion.internet._address import Address, ProcessAddress
from torsion.internet._child import ChildFD, StrPath
from torsion.internet._client_service import ClientEndpoint
from torsion.internet._process import ChildProcess, ProcessProtocol
from torsion.internet._process_status import ProcessExited, ProcessStatus
from torsion.internet._spawn import ReactorProcess

__all__ = ["ProcessEndpoint", "ProcessStreamTransport", "StderrMode"]

P = TypeVar("P", bound=asyncio.BaseProtocol)

StderrMode: TypeAlias = Literal["log", "drop", "pass"]
"""What becomes of a child's standard error: "log" (each line logged),
"drop" (sent to ``/dev/null``) or "pass" (this process's own standard error)."""

# The longest line of a child's standard error that is logged whole; the
# rest of a longer line is cut, so that the buffer for it stays bounded.
MAX_STDERR_LINE = 4096

_stderr_log = logging.getLogger("torsion.internet.process")


class ProcessEndpoint:
    """Connects a stream protocol to a new child process (a client endpoint).

    Each ``connect`` starts the program anew. The arguments are those of
    ``spawn_process``, but for the child's descriptors: 0 and 1 belong to
    the connection, 2 is what ``stderr`` says, and ``child_fds`` may only
    pass descriptors of this process through at numbers from 3 on.

    Args:
        reactor: Starts the child (``Reactor.spawn_process``).
        executable: The program: a path, or a name looked up on the ``PATH``.
        args: The whole argument vector, ``argv[0]`` included;
            ``[executable]`` if None.
        env: The child's whole environment (this process's own if None).
        path: The child's working directory (this process's if None).
        uid: The user to run as (a number or a name).
        gid: The group to run as (a number or a name).
        use_pty: Run the child on a new pseudo-terminal: its standard error
            is then the terminal too, and arrives mixed with its output, so
            ``stderr`` must stay "log" (there is nothing apart to log).
        child_fds: Child number (3 or more) -> a descriptor of this process
            that the child gets a copy of.
        stderr: "log" (the default: each line is logged on the
            ``torsion.internet.process`` logger at INFO, lines longer than
            4096 bytes cut), "drop", or "pass".

    Raises:
        ValueError: ``args`` is empty, ``child_fds`` names 0, 1 or 2 or
            something other than a descriptor, ``stderr`` is none of the
            three, or it is not "log" with ``use_pty``.
    """

    def __init__(
        self,
        reactor: ReactorProcess,
        executable: StrPath,
        args: Sequence[StrPath] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        path: StrPath | None = None,
        uid: int | str | None = None,
        gid: int | str | None = None,
        use_pty: bool = False,
        child_fds: Mapping[int, int] | None = None,
        stderr: StderrMode = "log",
    ) -> None:
        if args is not None and not args:
            raise ValueError("args must hold at least argv[0]")
        if stderr not in ("log", "drop", "pass"):
            raise ValueError(f"stderr must be 'log', 'drop' or 'pass', not {stderr!r}")
        if use_pty and stderr != "log":
            raise ValueError("with use_pty, standard error is the terminal: stderr must be 'log'")
        for target, fd in (child_fds or {}).items():
            if target <= 2:
                raise ValueError(f"child_fds: {target} belongs to the connection or stderr")
            if isinstance(fd, bool) or not isinstance(fd, int):
                raise ValueError(f"child_fds[{target}] must be a descriptor of this process")
        self._reactor = reactor
        self.executable = executable
        self.args = None if args is None else list(args)
        self.env = env
        self.path = path
        self.uid = uid
        self.gid = gid
        self.use_pty = use_pty
        self.child_fds = dict(child_fds or {})
        self.stderr: StderrMode = stderr

    def connect(self, factory: Callable[[Address], P]) -> Deferred[P]:
        """Start the program and connect a protocol from ``factory`` to it.

        ``factory`` is called with the ``ProcessAddress`` once the child runs.

        Returns:
            A Deferred that fires with the protocol once its
            ``connection_made`` was called. It fails with
            ``CannotSpawnError`` if the program could not be started, with
            ``ValueError`` if a ``child_fds`` descriptor is not open or the
            user or group does not exist, or with what ``factory`` raised
            (the child is then killed). Cancelling it before then kills the
            child.
        """
        name = os.fsdecode(self.executable)
        bridge: _Bridge[P] = _Bridge(factory, name, log_stderr=self.stderr == "log")
        fds: dict[int, ChildFD] = dict(self.child_fds)
        null = -1
        try:
            if self.stderr == "drop":
                null = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
                fds[2] = null
            elif self.stderr == "pass":
                fds[2] = 2
            spawning = self._reactor.spawn_process(
                bridge,
                self.executable,
                self.args,
                env=self.env,
                path=self.path,
                uid=self.uid,
                gid=self.gid,
                use_pty=self.use_pty,
                child_fds=fds,
            )
        except (OSError, ValueError) as exc:
            if null >= 0:
                os.close(null)
            return fail(exc)
        # The child has its copy of /dev/null once the spawn is over, either way.
        return bridge.watch(spawning, lambda: os.close(null) if null >= 0 else None)

    def __repr__(self) -> str:
        return f"<ProcessEndpoint {os.fsdecode(self.executable)!r}>"


class ProcessStreamTransport(asyncio.Transport):
    """A child process as a stream transport (what ``ProcessEndpoint`` connects).

    ``write`` goes to the child's standard input, ``write_eof`` closes it
    (the child reads end of file), ``close`` closes it and lets the child
    finish by itself, ``abort`` kills the child (SIGKILL). ``pause_reading``
    stops reading its output, which in time blocks the child on a full
    pipe. The write buffer is the input pipe's, with its water marks.

    ``get_extra_info`` knows "peername" (a ``ProcessAddress``), "pid" and
    "process" (the ``ProcessTransport``).
    """

    def __init__(
        self, process: ChildProcess, protocol: asyncio.Protocol, address: ProcessAddress
    ) -> None:
        super().__init__({"peername": address, "pid": address.pid, "process": process})
        self._process = process
        self._protocol = protocol
        self._closing = False
        self._aborted = False
        self._lost = False
        self._reading = True

    @property
    def process(self) -> ChildProcess:
        """The child process underneath (to signal it, or wait for its exit)."""
        return self._process

    def get_protocol(self) -> asyncio.BaseProtocol:
        """Return the protocol."""
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Replace the protocol."""
        self._protocol = cast(asyncio.Protocol, protocol)

    def is_closing(self) -> bool:
        """Return whether ``close``/``abort`` was called or the child is gone."""
        return self._closing or self._lost

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Write to the child's standard input; dropped once it is closed."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"data must be bytes-like, not {type(data).__name__}")
        self._process.write(data)

    def writelines(self, list_of_data: Any) -> None:
        """Write each chunk to the child's standard input."""
        for data in list_of_data:
            self.write(data)

    def can_write_eof(self) -> bool:
        """Return True: ``write_eof`` closes the child's input."""
        return True

    def write_eof(self) -> None:
        """Close the child's standard input after what is buffered (it reads end of file)."""
        self._process.close_stdin()

    def close(self) -> None:
        """Close the child's input and let it finish; ``connection_lost`` follows its exit."""
        if self._closing or self._lost:
            return
        self._closing = True
        self._process.close_stdin()

    def abort(self) -> None:
        """Kill the child (SIGKILL) and close its pipes, dropping what is buffered."""
        if self._aborted or self._lost:
            return
        self._closing = True
        self._aborted = True
        self._process.close()

    def get_write_buffer_size(self) -> int:
        """Return the bytes buffered for the child's input."""
        return self._process.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """Return the input pipe's (low, high) water marks."""
        return self._process.get_write_buffer_limits(0)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set the input pipe's water marks."""
        self._process.set_write_buffer_limits(high, low, fd=0)

    def is_reading(self) -> bool:
        """Return whether the child's output is being read."""
        return self._reading and not self._lost

    def pause_reading(self) -> None:
        """Stop reading the child's output until ``resume_reading``."""
        self._reading = False
        self._process.pause_reading()

    def resume_reading(self) -> None:
        """Read the child's output again."""
        self._reading = True
        self._process.resume_reading()

    def __repr__(self) -> str:
        state = "closed" if self._lost else "closing" if self._closing else "open"
        return f"<ProcessStreamTransport {self.get_extra_info('peername')} {state}>"


class _Bridge(ProcessProtocol, Generic[P]):
    """Turns a child process's events into a stream protocol's."""

    def __init__(
        self, factory: Callable[[Address], P], executable: str, *, log_stderr: bool
    ) -> None:
        self._factory = factory
        self._executable = executable
        self._deferred: Deferred[P] = Deferred(self._cancel)
        self._spawning: Deferred[ChildProcess] | None = None
        self._stream: ProcessStreamTransport | None = None
        self._stderr = _StderrLines(executable) if log_stderr else None

    def watch(
        self, spawning: Deferred[ChildProcess], cleanup: Callable[[], object]
    ) -> Deferred[P]:
        """Follow the spawn; return the Deferred that fires with the protocol.

        ``cleanup`` is called once the spawn is over, however it ended.
        """
        self._spawning = spawning

        def spawned(result: ChildProcess | BaseException) -> None:
            cleanup()
            # Success was reported by connection_made already.
            if isinstance(result, BaseException) and not self._deferred.called:
                self._deferred.errback(result)

        spawning.add_both(spawned)
        return self._deferred

    def _cancel(self, _: Deferred[P]) -> None:
        # Kills the child if it started (spawn_process's cancellation).
        if self._spawning is not None:
            self._spawning.cancel()

    def connection_made(self, transport: ChildProcess) -> None:
        super().connection_made(transport)
        if self._deferred.called:
            # Cancelled before asyncio reported the child's start.
            transport.close()
            return
        address = ProcessAddress(self._executable, transport.pid)
        try:
            # Address names the socket addresses; a factory takes any.
            protocol = cast(asyncio.Protocol, self._factory(address))
            stream = ProcessStreamTransport(transport, protocol, address)
            self._stream = stream
            protocol.connection_made(stream)
        except Exception as exc:
            self._stream = None
            transport.close()
            self._deferred.errback(exc)
            return
        self._deferred.callback(cast(P, protocol))

    def out_received(self, data: bytes) -> None:
        if self._stream is not None:
            self._stream._protocol.data_received(data)

    def err_received(self, data: bytes) -> None:
        if self._stderr is not None:
            self._stderr.feed(data)

    def out_connection_lost(self) -> None:
        stream = self._stream
        if stream is None or stream._aborted:
            return
        if not stream._protocol.eof_received():
            stream.close()

    def pause_writing(self) -> None:
        if self._stream is not None:
            self._stream._protocol.pause_writing()

    def resume_writing(self) -> None:
        if self._stream is not None:
            self._stream._protocol.resume_writing()

    def process_ended(self, status: ProcessStatus) -> None:
        if self._stderr is not None:
            self._stderr.flush()
        stream = self._stream
        if stream is None:
            return
        stream._lost = True
        error = None
        if status != ProcessExited(0):
            pid = self.transport.pid
            error = ProcessFailedError(status, pid=pid, executable=self._executable)
        stream._protocol.connection_lost(error)


class _StderrLines:
    """Logs what a child writes to standard error, one record per line, bounded."""

    def __init__(self, executable: str) -> None:
        self._executable = executable
        # The line so far: at most one byte more than is logged, to tell a
        # line of exactly the limit from a longer one.
        self._partial = bytearray()
        self._cutting = False

    def feed(self, data: bytes) -> None:
        """Log every line ``data`` completes; keep (at most a line of) the rest."""
        *complete, rest = data.split(b"\n")
        for line in complete:
            self._add(line)
            if not self._cutting:
                self._emit()
            self._cutting = False
        self._add(rest)
        if len(self._partial) > MAX_STDERR_LINE:
            self._emit()
            self._cutting = True

    def flush(self) -> None:
        """Log what is left of an unfinished last line."""
        if self._partial:
            self._emit()

    def _add(self, piece: bytes) -> None:
        if not self._cutting:
            self._partial += piece[: MAX_STDERR_LINE + 1 - len(self._partial)]

    def _emit(self) -> None:
        cut = len(self._partial) > MAX_STDERR_LINE
        text = self._partial[:MAX_STDERR_LINE].rstrip(b"\r").decode(errors="replace")
        self._partial.clear()
        _stderr_log.info("%s stderr: %s%s", self._executable, text, " [cut]" if cut else "")


if TYPE_CHECKING:
    # Checked by mypy: a ProcessEndpoint is a client endpoint like any other.
    def _is_client_endpoint(endpoint: ProcessEndpoint) -> ClientEndpoint:
        return endpoint
