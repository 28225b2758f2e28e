"""The process's own standard input and output as a transport.

``stdio`` connects a protocol to standard input and output (or any two
descriptors given in their place) as it would be connected to a socket:
``data_received`` gets what arrives on the input, ``write`` goes to the
output. ``StandardIO`` is that transport. It works on whatever standard I/O
is: pipes and sockets through the loop's pipe transports, terminals written
through ``add_writer``, regular files and ``/dev/null`` read and written
directly (see ``torsion.internet._fdesc`` for why those need transports of
their own).

``StandardIOEndpoint`` is the same as a server endpoint (``stdio:`` as an
endpoint string), so that a program serving a protocol can serve it on
standard I/O (run by inetd, a test harness, or ``ProcessEndpoint`` of
another torsion program) as well as on a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import stat
from typing import Protocol, cast

from torsion.defer import Deferred, fail, succeed
from torsion.internet._address import Address, StandardIOAddress
from torsion.internet._fdesc import (
    HIGH_WATER,
    FDWriteTransport,
    FileReadTransport,
    RawPipe,
    is_pollable,
)
from torsion.internet._listener import ListeningPort
from torsion.internet._protocol import Factory, ProtocolFactory

__all__ = [
    "ReactorStdio",
    "StandardIO",
    "StandardIOEndpoint",
    "StandardIOPort",
    "stdio",
]

_log = logging.getLogger("torsion.internet")


class StandardIO(asyncio.Transport):
    """The process's standard input and output as one transport (see ``stdio``).

    Reading comes from the input descriptor, writing goes to the output one;
    both work through duplicates, so that the numbers 0 and 1 (or whichever
    were given) stay valid for the interpreter. When a side is finished,
    torsion points the original descriptor at ``/dev/null``: the number never
    becomes free for an unrelated ``open()`` to take, ``print()`` cannot write
    into someone else's file, and whoever is at the other end sees the pipe
    close (end of file on our output, EPIPE on our input). The non-blocking
    mode the loop sets on a shared terminal or pipe is put back as it was.

    Attributes:
        stdin: The input descriptor's number as given.
        stdout: The output descriptor's number as given.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, protocol: asyncio.Protocol, stdin: int, stdout: int
    ) -> None:
        # "peername" too, so that Protocol.peer works over standard I/O.
        super().__init__(
            {"stdin": stdin, "stdout": stdout, "peername": StandardIOAddress(stdin, stdout)}
        )
        self.stdin = stdin
        self.stdout = stdout
        self._loop = loop
        self._protocol = protocol
        self._reader: asyncio.ReadTransport | None = None
        self._writer: asyncio.WriteTransport | None = None
        self._reading_done = False
        self._writing_done = False
        self._write_closed = False
        self._made = False
        self._lost = False
        self._error: Exception | None = None
        # The blocking mode of each side's file description before the loop
        # changed it (sides it leaves alone are not there), and whether both
        # sides are one file.
        self._restore: dict[int, bool] = {}
        self._same_file = False
        self._released: set[int] = set()
        self._connected: asyncio.Future[None] = loop.create_future()
        self._closed_waiters: list[Deferred[None]] = []

    # -- the transport ---------------------------------------------------------------------

    def get_protocol(self) -> asyncio.BaseProtocol:
        """Return the protocol."""
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Replace the protocol."""
        self._protocol = cast(asyncio.Protocol, protocol)

    def is_closing(self) -> bool:
        """Return whether the write side is closed or closing."""
        return self._write_closed or self._lost

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Write to standard output; dropped once the write side is closed."""
        if self._write_closed or self._writer is None:
            return
        self._writer.write(data)

    def can_write_eof(self) -> bool:
        """Return True: ``write_eof`` closes standard output."""
        return True

    def write_eof(self) -> None:
        """Flush, then close standard output (its reader sees end of file)."""
        if self._write_closed or self._writer is None:
            return
        self._write_closed = True
        self._writer.close()

    def get_write_buffer_size(self) -> int:
        """Return the bytes waiting to be written to standard output."""
        return 0 if self._writer is None else self._writer.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """Return the output's (low, high) water marks."""
        if self._writer is None:
            return (HIGH_WATER // 4, HIGH_WATER)
        return self._writer.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set the output's water marks."""
        if self._writer is not None:
            self._writer.set_write_buffer_limits(high, low)

    def is_reading(self) -> bool:
        """Return whether standard input is being read."""
        return self._reader is not None and not self._reading_done and self._reader.is_reading()

    def pause_reading(self) -> None:
        """Stop reading standard input until ``resume_reading``."""
        if self._reader is not None and not self._reading_done:
            self._reader.pause_reading()

    def resume_reading(self) -> None:
        """Read standard input again."""
        if self._reader is not None and not self._reading_done:
            self._reader.resume_reading()

    def wait_closed(self) -> Deferred[None]:
        """Wait until both sides are finished and ``connection_lost`` was called.

        Returns:
            A Deferred that fires with None then (at once if it was already).
        """
        if self._lost:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._closed_waiters.append(d)
        return d

    def close(self) -> None:
        """Stop reading, flush the output and close it; ``connection_lost`` follows."""
        self.write_eof()
        if self._reader is not None and not self._reading_done:
            self._reader.close()

    def abort(self) -> None:
        """Close both sides at once, dropping unwritten output."""
        self._write_closed = True
        if self._writer is not None and not self._writing_done:
            self._writer.abort()
        if self._reader is not None and not self._reading_done:
            self._reader.close()

    def __repr__(self) -> str:
        state = "closed" if self._lost else "closing" if self.is_closing() else "open"
        return f"<StandardIO stdin={self.stdin} stdout={self.stdout} {state}>"

    # -- setting up --------------------------------------------------------------------------

    async def _connect(self) -> None:
        try:
            await self._connect_sides()
        except BaseException:
            # Failed or cancelled: whatever was connected closes, and the
            # original descriptors are left as they were.
            self.abort()
            for fd, blocking in self._restore.items():
                with contextlib.suppress(OSError):
                    os.set_blocking(fd, blocking)
            self._released.update((self.stdin, self.stdout))
            # The transports close their copies on the next turn of the loop.
            await asyncio.sleep(0)
            raise

    async def _connect_sides(self) -> None:
        self._same_file = _same_file(self.stdin, self.stdout)
        # The output first: nothing arrives on it, so the protocol can be told
        # connection_made as soon as the input is connected, before any data.
        out_fd = os.dup(self.stdout)
        try:
            mode = os.fstat(out_fd).st_mode
            if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
                self._restore[self.stdout] = os.get_blocking(out_fd)
                pipe = RawPipe(out_fd)
                out_fd = -1  # The pipe object owns it now.
                self._writer, _ = await self._loop.connect_write_pipe(
                    lambda: _OutputSide(self), pipe
                )
            else:
                pollable = is_pollable(out_fd)
                if pollable:
                    self._restore[self.stdout] = os.get_blocking(out_fd)
                self._writer = FDWriteTransport(
                    self._loop, out_fd, _OutputSide(self), pollable=pollable
                )
                out_fd = -1
        except BaseException:
            if out_fd >= 0:
                os.close(out_fd)
            raise
        in_fd = os.dup(self.stdin)
        try:
            if is_pollable(in_fd):
                self._restore[self.stdin] = os.get_blocking(in_fd)
                pipe = RawPipe(in_fd)
                in_fd = -1
                self._reader, _ = await self._loop.connect_read_pipe(
                    lambda: _InputSide(self), pipe
                )
            else:
                self._reader = FileReadTransport(self._loop, in_fd, _InputSide(self))
                in_fd = -1
        except BaseException:
            if in_fd >= 0:
                os.close(in_fd)
            raise
        await self._connected

    # -- events from the two sides ---------------------------------------------------------

    def _input_made(self, reader: asyncio.BaseTransport) -> None:
        self._reader = cast(asyncio.ReadTransport, reader)
        self._made = True
        self._protocol.connection_made(self)
        if not self._connected.done():
            self._connected.set_result(None)
        if self._writing_done:
            # The output broke before we got here: report it now.
            self.abort()

    def _input_data(self, data: bytes) -> None:
        self._protocol.data_received(data)

    def _input_eof(self) -> None:
        if not self._protocol.eof_received():
            self.close()

    def _input_lost(self, exc: Exception | None) -> None:
        self._reading_done = True
        self._release(self.stdin)
        if exc is not None:
            self._error = self._error or exc
            self.abort()
        self._maybe_finish()

    def _output_lost(self, exc: Exception | None) -> None:
        if exc is None and not self._write_closed:
            # We did not close it: its reader went away (asyncio reports that
            # as a clean close when nothing was waiting to be written).
            exc = BrokenPipeError(errno.EPIPE, "nobody reads the output any more")
        self._writing_done = True
        self._write_closed = True
        self._release(self.stdout)
        if exc is not None:
            # Nobody reads our output any more: the conversation is over.
            self._error = self._error or exc
            if self._made:
                self.abort()
        self._maybe_finish()

    def _pause_writing(self) -> None:
        if self._made:
            self._protocol.pause_writing()

    def _resume_writing(self) -> None:
        if self._made:
            self._protocol.resume_writing()

    def _maybe_finish(self) -> None:
        if self._lost or not self._made or not (self._reading_done and self._writing_done):
            return
        self._lost = True
        self._release(self.stdin)
        self._release(self.stdout)
        try:
            self._protocol.connection_lost(self._error)
        finally:
            waiters, self._closed_waiters = self._closed_waiters, []
            for d in waiters:
                d.callback(None)

    def _release(self, fd: int) -> None:
        """Give the original descriptor ``fd`` back as it was, but pointing at /dev/null."""
        if fd in self._released:
            return
        if self._same_file and not (self._reading_done and self._writing_done):
            # One terminal or socket on both: the other side still uses it.
            return
        self._released.add(fd)
        try:
            if fd in self._restore:
                os.set_blocking(fd, self._restore[fd])
            null = os.open(os.devnull, os.O_RDWR)
            try:
                os.dup2(null, fd, inheritable=fd <= 2)
            finally:
                os.close(null)
        except OSError as exc:  # pragma: no cover - someone closed it under us
            _log.debug("Could not release descriptor %d: %s", fd, exc)


def _same_file(a: int, b: int) -> bool:
    first, second = os.fstat(a), os.fstat(b)
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


class _InputSide(asyncio.Protocol):
    """Passes what the input's transport reports to its ``StandardIO``."""

    def __init__(self, owner: StandardIO) -> None:
        self._owner = owner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._owner._input_made(transport)

    def data_received(self, data: bytes) -> None:
        self._owner._input_data(data)

    def eof_received(self) -> bool | None:
        self._owner._input_eof()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._input_lost(exc)


class _OutputSide(asyncio.BaseProtocol):
    """Passes what the output's transport reports to its ``StandardIO``."""

    def __init__(self, owner: StandardIO) -> None:
        self._owner = owner

    def pause_writing(self) -> None:
        self._owner._pause_writing()

    def resume_writing(self) -> None:
        self._owner._resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._output_lost(exc)


def stdio(
    loop: asyncio.AbstractEventLoop, protocol: asyncio.Protocol, *, stdin: int = 0, stdout: int = 1
) -> Deferred[StandardIO]:
    """Connect ``protocol`` to this process's standard input and output.

    The protocol is called as over any connection::

        connection_made [-> data_received*] [-> eof_received] -> connection_lost

    ``data_received`` gets what arrives on standard input; ``write`` goes to
    standard output. At end of input, ``eof_received`` returning a true value
    keeps the output open (to finish writing; close it with ``write_eof`` or
    ``close``), anything else closes it after flushing. ``connection_lost``
    comes once both sides are finished, with None, or the error that ended
    them (``BrokenPipeError`` when nobody reads our output any more).

    Pipes, sockets and terminals are served by the loop's pipe transports
    (terminal output by ``add_writer``); regular files and ``/dev/null``,
    which cannot be polled, are read and written directly (``prog < in >
    out`` works). Closing the transport leaves the original descriptors open,
    pointing at ``/dev/null`` (see ``StandardIO``).

    Args:
        loop: The loop to run on.
        protocol: The protocol to connect.
        stdin: The descriptor to read (0, standard input, by default).
        stdout: The descriptor to write (1, standard output, by default).

    Returns:
        A Deferred that fires with the ``StandardIO`` transport once
        ``connection_made`` was called, or fails with the ``OSError`` that
        prevented it (a closed descriptor, say).
    """
    io = StandardIO(loop, protocol, stdin, stdout)

    async def connect() -> StandardIO:
        await io._connect()
        return io

    return Deferred.from_future(loop.create_task(connect()))


# -- standard I/O as a server endpoint --------------------------------------------------------


class ReactorStdio(Protocol):
    """What connects a protocol to standard I/O (the reactor's ``stdio``)."""

    def stdio(
        self, protocol: asyncio.Protocol, *, stdin: int = 0, stdout: int = 1
    ) -> Deferred[StandardIO]:
        """Connect ``protocol`` to standard input and output; see ``stdio``."""
        ...


class StandardIOPort:
    """The one connection a ``StandardIOEndpoint`` serves, as its listening port.

    Standard I/O carries one connection, made when listening starts, so
    there is nothing else to stop: ``stop_listening`` closes that connection
    (``StandardIO.close``: stop reading the input, flush the output, close
    it). A ``Factory`` is stopped once the connection is over, however it
    ended.

    Attributes:
        transport: The ``StandardIO`` transport of the connection.
    """

    def __init__(self, address: StandardIOAddress, transport: StandardIO) -> None:
        self._address = address
        self.transport = transport

    @property
    def address(self) -> Address:
        """The ``StandardIOAddress`` of the descriptors served."""
        # Address names the socket addresses; the port's is this one.
        return self._address

    def stop_listening(self) -> Deferred[None]:
        """Close the connection over standard I/O.

        Returns:
            A Deferred that fires once the protocol's ``connection_lost`` was
            called (at once if the connection was over already).
        """
        self.transport.close()
        return self.transport.wait_closed()

    def __repr__(self) -> str:
        return f"<StandardIOPort {self._address} {self.transport!r}>"


class StandardIOEndpoint:
    """Serves one connection over this process's standard input and output.

    ``listen`` calls the factory once, with a ``StandardIOAddress``, and
    connects its protocol with ``stdio``; see ``StandardIOPort`` for what
    stopping means.

    Args:
        reactor: Connects standard I/O (``Reactor.stdio``).
        stdin: The descriptor to read (0 by default).
        stdout: The descriptor to write (1 by default).
    """

    def __init__(self, reactor: ReactorStdio, *, stdin: int = 0, stdout: int = 1) -> None:
        self._reactor = reactor
        self.stdin = stdin
        self.stdout = stdout

    def listen(self, factory: ProtocolFactory) -> Deferred[ListeningPort]:
        """Make the protocol and connect it to standard I/O.

        Returns:
            A Deferred that fires with the ``StandardIOPort`` once the
            protocol's ``connection_made`` was called. It fails with the
            ``OSError`` that kept standard I/O from being used (a closed
            descriptor), with what the factory raised, or with
            ``ConnectionRefusedError`` if the factory returned None.
        """
        address = StandardIOAddress(self.stdin, self.stdout)
        if isinstance(factory, Factory):
            factory.start()
        try:
            # Address names the socket addresses; a factory takes any.
            protocol = factory(address)
        except Exception as exc:
            _stop_factory(factory)
            return fail(exc)
        if protocol is None:
            _stop_factory(factory)
            return fail(ConnectionRefusedError(f"the factory refused a connection on {address}"))

        def connected(transport: StandardIO) -> ListeningPort:
            transport.wait_closed().add_callback(lambda _: _stop_factory(factory))
            return StandardIOPort(address, transport)

        def failed(exc: BaseException) -> ListeningPort:
            _stop_factory(factory)
            raise exc

        connecting = self._reactor.stdio(
            cast(asyncio.Protocol, protocol), stdin=self.stdin, stdout=self.stdout
        )
        return connecting.add_callbacks(connected, failed)

    def __repr__(self) -> str:
        return f"<StandardIOEndpoint {StandardIOAddress(self.stdin, self.stdout)}>"


def _stop_factory(factory: ProtocolFactory) -> None:
    if isinstance(factory, Factory):
        factory.stop()
