"""Raw file descriptors: watching them, and transports for those pipes cannot serve.

The event loop already watches descriptors (``add_reader``/``add_writer``);
torsion adds a typed interface for it (``ReactorFDs``), a ``FileDescriptor``
that remembers what it registered so that closing it leaves nothing behind,
and one-shot waits (``wait_readable``/``wait_writable``).

asyncio's pipe transports do the reading and writing wherever they can. Two
kinds of descriptor they cannot serve are handled here:

* regular files and devices such as ``/dev/null``, which epoll refuses to
  watch (EPERM; asyncio logs a traceback for them and uvloop aborts the
  process), so they are probed first and then read or written directly:
  such descriptors never block;
* terminals and other character devices to write to: uvloop's write
  transport also reads from its descriptor to notice a closed pipe, and on a
  terminal that swallows the user's (or the child's) input, so torsion writes
  to them through ``add_writer`` instead.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import selectors
import stat
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, cast

from torsion.defer import Deferred

__all__ = [
    "FileDescriptor",
    "FileDescriptorLike",
    "ReactorFDs",
    "SupportsFileno",
    "wait_readable",
    "wait_writable",
]

_log = logging.getLogger("torsion.internet")

# asyncio's defaults for its own transports (HIGH_WATER is shared with stdio).
HIGH_WATER = 64 * 1024
_READ_CHUNK = 256 * 1024


class SupportsFileno(Protocol):
    """Anything with a ``fileno()``: a socket, a file object, a pipe end."""

    def fileno(self) -> int:
        """Return the descriptor's number."""
        ...


FileDescriptorLike: TypeAlias = int | SupportsFileno
"""A descriptor number, or an object whose ``fileno()`` gives one."""


class ReactorFDs(Protocol):
    """What watches file descriptors for readiness (the event loop's own calls).

    Only one reader and one writer callback can be registered per descriptor:
    adding another replaces the first. The descriptor must be one the system
    can poll (a pipe, socket, terminal; not a regular file).
    """

    def add_reader(
        self, fd: FileDescriptorLike, callback: Callable[..., object], *args: Any
    ) -> None:
        """Call ``callback(*args)`` whenever ``fd`` is readable, until removed."""
        ...

    def remove_reader(self, fd: FileDescriptorLike) -> bool:
        """Stop watching ``fd`` for reading; return whether it was watched."""
        ...

    def add_writer(
        self, fd: FileDescriptorLike, callback: Callable[..., object], *args: Any
    ) -> None:
        """Call ``callback(*args)`` whenever ``fd`` is writable, until removed."""
        ...

    def remove_writer(self, fd: FileDescriptorLike) -> bool:
        """Stop watching ``fd`` for writing; return whether it was watched."""
        ...


def _fileno(fd: FileDescriptorLike) -> int:
    return fd if isinstance(fd, int) else fd.fileno()


class FileDescriptor:
    """One descriptor watched on a reactor, with callbacks for when it is ready.

    It registers with the reactor only while reading or writing is started,
    and ``close()`` removes whatever is registered, so that no callback
    outlives it. Usable as a context manager.

    Args:
        reactor: What watches descriptors (a ``Reactor``, or an asyncio loop).
        fd: The descriptor; it must be non-blocking for the callbacks to
            read or write without stalling the loop.
        on_readable: Called with no arguments while reading is started and
            ``fd`` has data (or end of file) to read.
        on_writable: Called with no arguments while writing is started and
            ``fd`` can take more data.
        close_fd: Whether ``close()`` also closes the descriptor.
    """

    def __init__(
        self,
        reactor: ReactorFDs,
        fd: FileDescriptorLike,
        *,
        on_readable: Callable[[], object] | None = None,
        on_writable: Callable[[], object] | None = None,
        close_fd: bool = False,
    ) -> None:
        self._reactor = reactor
        self._fd = _fileno(fd)
        self._on_readable = on_readable
        self._on_writable = on_writable
        self._close_fd = close_fd
        self._reading = False
        self._writing = False
        self._closed = False

    def fileno(self) -> int:
        """Return the descriptor's number."""
        return self._fd

    @property
    def reading(self) -> bool:
        """Whether ``on_readable`` is being called when the descriptor is readable."""
        return self._reading

    @property
    def writing(self) -> bool:
        """Whether ``on_writable`` is being called when the descriptor is writable."""
        return self._writing

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._closed

    def start_reading(self) -> None:
        """Watch for readability (again); a no-op if already reading.

        Raises:
            ValueError: There is no ``on_readable``, or it is closed.
        """
        if self._on_readable is None:
            raise ValueError(f"{self!r} has no on_readable callback")
        self._check_open()
        if not self._reading:
            self._reactor.add_reader(self._fd, self._on_readable)
            self._reading = True

    def stop_reading(self) -> None:
        """Stop watching for readability; a no-op if not reading."""
        if self._reading:
            self._reading = False
            self._reactor.remove_reader(self._fd)

    def start_writing(self) -> None:
        """Watch for writability (again); a no-op if already writing.

        Raises:
            ValueError: There is no ``on_writable``, or it is closed.
        """
        if self._on_writable is None:
            raise ValueError(f"{self!r} has no on_writable callback")
        self._check_open()
        if not self._writing:
            self._reactor.add_writer(self._fd, self._on_writable)
            self._writing = True

    def stop_writing(self) -> None:
        """Stop watching for writability; a no-op if not writing."""
        if self._writing:
            self._writing = False
            self._reactor.remove_writer(self._fd)

    def close(self) -> None:
        """Stop watching, and close the descriptor if it was given with ``close_fd``.

        Idempotent.
        """
        if self._closed:
            return
        self.stop_reading()
        self.stop_writing()
        self._closed = True
        if self._close_fd:
            os.close(self._fd)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"{self!r} is closed")

    def __enter__(self) -> FileDescriptor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = (
            "closed"
            if self._closed
            else "".join(
                [" reading" if self._reading else "", " writing" if self._writing else ""]
            ).strip()
            or "idle"
        )
        return f"<FileDescriptor fd={self._fd} {state}>"


def wait_readable(reactor: ReactorFDs, fd: FileDescriptorLike) -> Deferred[None]:
    """Wait until ``fd`` is readable, once.

    Returns:
        A Deferred that fires with None when ``fd`` has data (or end of file)
        to read. Cancelling it stops watching. It replaces any other reader
        callback on the same descriptor while it waits.
    """
    return _wait_once(reactor, _fileno(fd), writing=False)


def wait_writable(reactor: ReactorFDs, fd: FileDescriptorLike) -> Deferred[None]:
    """Wait until ``fd`` can take more data, once.

    Returns:
        A Deferred that fires with None when ``fd`` is writable. Cancelling
        it stops watching. It replaces any other writer callback on the same
        descriptor while it waits.
    """
    return _wait_once(reactor, _fileno(fd), writing=True)


def _wait_once(reactor: ReactorFDs, fd: int, *, writing: bool) -> Deferred[None]:
    remove = reactor.remove_writer if writing else reactor.remove_reader

    def cancel(_: Deferred[None]) -> None:
        remove(fd)

    d: Deferred[None] = Deferred(cancel)

    def ready() -> None:
        remove(fd)
        if not d.called:
            d.callback(None)

    if writing:
        reactor.add_writer(fd, ready)
    else:
        reactor.add_reader(fd, ready)
    return d


# -- descriptors asyncio's pipe transports cannot serve --------------------------------


def is_pollable(fd: int) -> bool:
    """Return whether the system can watch ``fd`` for readiness.

    Regular files and some devices (``/dev/null``) cannot be: epoll refuses
    them with EPERM (epoll_ctl(2)). They never block, so they are read and
    written directly instead.
    """
    if stat.S_ISREG(os.fstat(fd).st_mode):
        return False
    with selectors.DefaultSelector() as probe:
        try:
            probe.register(fd, selectors.EVENT_READ)
        except PermissionError:
            return False
    return True


class RawPipe:
    """A descriptor to hand to the loop's ``connect_read_pipe``/``connect_write_pipe``.

    The loops differ in who closes it: asyncio calls ``close()``; uvloop has
    libuv close the descriptor, then calls ``close()`` expecting EBADF, but
    not at all when the connection was cancelled halfway. A file object
    would then close the number again when collected (warning, and maybe
    closing someone else's descriptor by then); this closes it only when
    asked, once.

    Args:
        fd: The descriptor, owned from now on.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def fileno(self) -> int:
        """Return the descriptor.

        Raises:
            ValueError: It was closed.
        """
        if self._fd < 0:
            raise ValueError("the pipe is closed")
        return self._fd

    def close(self) -> None:
        """Close the descriptor (the first time only)."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __repr__(self) -> str:
        return f"<RawPipe fd={self._fd}>"


class FDWriteTransport(asyncio.WriteTransport):
    """A write transport over a descriptor asyncio's pipe transport cannot serve.

    Writes go to the descriptor at once when it takes them; what it does not
    take waits in a buffer, written from ``add_writer`` callbacks when the
    descriptor is pollable, and at once in a loop when it is not (a regular
    file, which never blocks). The protocol hears ``pause_writing`` when the
    buffer passes the high-water mark and ``resume_writing`` when it falls
    under the low one; a protocol that keeps writing while paused is what
    grows it. Closing flushes the buffer first; an error (EPIPE, EIO from a
    terminal whose other side is gone) ends the transport quietly with
    ``connection_lost(exc)``.

    Args:
        loop: The loop to run on.
        fd: The descriptor; the transport owns it and closes it at the end.
        protocol: Told ``connection_made`` (soon), flow control, and
            ``connection_lost``.
        pollable: Whether the loop can watch ``fd`` (see ``is_pollable``).
        extra: What ``get_extra_info`` reports.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fd: int,
        protocol: asyncio.BaseProtocol,
        *,
        pollable: bool,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(extra)
        self._loop = loop
        self._fd = fd
        self._protocol = protocol
        self._pollable = pollable
        self._buffer = bytearray()
        self._closing = False
        self._lost = False
        self._watching = False
        self._paused = False
        self._high = HIGH_WATER
        self._low = HIGH_WATER // 4
        if pollable:
            os.set_blocking(fd, False)
        loop.call_soon(protocol.connection_made, self)

    def fileno(self) -> int:
        """Return the descriptor written to."""
        return self._fd

    def get_protocol(self) -> asyncio.BaseProtocol:
        """Return the protocol."""
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Replace the protocol."""
        self._protocol = protocol

    def is_closing(self) -> bool:
        """Return whether the transport is closing or closed."""
        return self._closing or self._lost

    def get_write_buffer_size(self) -> int:
        """Return the bytes waiting to be written."""
        return len(self._buffer)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """Return the (low, high) water marks."""
        return (self._low, self._high)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set the water marks (asyncio's rules: low defaults to high // 4)."""
        if high is None:
            high = HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low
        self._check_high_water()

    def can_write_eof(self) -> bool:
        """Return True: end of file is sent by closing the descriptor."""
        return True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Write ``data``; after ``close()`` or an error it is dropped."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"data must be bytes-like, not {type(data).__name__}")
        if self._closing or self._lost or not data:
            return
        if not self._buffer:
            try:
                written = os.write(self._fd, data)
            except (BlockingIOError, InterruptedError):
                written = 0
            except OSError as exc:
                self._fail(exc)
                return
            data = memoryview(data)[written:]
            if not data:
                return
        self._buffer += data
        self._flush_later()
        self._check_high_water()

    def write_eof(self) -> None:
        """Flush, then close: the reader sees end of file."""
        self.close()

    def close(self) -> None:
        """Flush what is buffered, then close the descriptor."""
        if self._closing or self._lost:
            return
        self._closing = True
        if not self._buffer:
            self._finish(None)

    def abort(self) -> None:
        """Close at once, dropping what is buffered."""
        if self._lost:
            return
        self._closing = True
        self._buffer.clear()
        self._finish(None)

    def _flush_later(self) -> None:
        if self._pollable:
            if not self._watching:
                self._loop.add_writer(self._fd, self._flush)
                self._watching = True
        else:
            # A regular file: it never blocks, so finish the job now.
            self._flush()

    def _flush(self) -> None:
        while self._buffer:
            try:
                written = os.write(self._fd, self._buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._fail(exc)
                return
            del self._buffer[:written]
            if not self._pollable and written == 0:  # pragma: no cover - a full disk
                self._fail(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
                return
        self._stop_watching()
        if self._paused and len(self._buffer) <= self._low:
            self._paused = False
            self._protocol.resume_writing()
        if self._closing:
            self._finish(None)

    def _check_high_water(self) -> None:
        if not self._paused and len(self._buffer) > self._high:
            self._paused = True
            self._protocol.pause_writing()

    def _stop_watching(self) -> None:
        if self._watching:
            self._watching = False
            self._loop.remove_writer(self._fd)

    def _fail(self, exc: OSError) -> None:
        self._buffer.clear()
        self._closing = True
        self._finish(exc)

    def _finish(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._stop_watching()
        os.close(self._fd)
        self._loop.call_soon(self._protocol.connection_lost, exc)

    def __repr__(self) -> str:
        state = "closed" if self._lost else "closing" if self._closing else "open"
        return f"<FDWriteTransport fd={self._fd} {state} buffered={len(self._buffer)}>"


class FileReadTransport(asyncio.ReadTransport):
    """A read transport over a descriptor that cannot be polled (a regular file).

    Such a descriptor never blocks, so it is read one chunk per turn of the
    loop (other work runs in between) until end of file, and the protocol gets
    ``data_received`` for each, then ``eof_received`` and ``connection_lost``.

    Args:
        loop: The loop to run on.
        fd: The descriptor; the transport owns it and closes it at the end.
        protocol: The protocol to deliver to.
        chunk: The most bytes read at a time.
        extra: What ``get_extra_info`` reports.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fd: int,
        protocol: asyncio.Protocol,
        *,
        chunk: int = _READ_CHUNK,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(extra)
        self._loop = loop
        self._fd = fd
        self._protocol = protocol
        self._chunk = chunk
        self._paused = False
        self._closed = False
        self._scheduled: asyncio.Handle | None = None
        loop.call_soon(self._start)

    def fileno(self) -> int:
        """Return the descriptor read from."""
        return self._fd

    def get_protocol(self) -> asyncio.BaseProtocol:
        """Return the protocol."""
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Replace the protocol."""
        self._protocol = cast(asyncio.Protocol, protocol)

    def is_closing(self) -> bool:
        """Return whether the transport is closed."""
        return self._closed

    def is_reading(self) -> bool:
        """Return whether data is being read."""
        return not self._paused and not self._closed

    def pause_reading(self) -> None:
        """Stop reading until ``resume_reading``."""
        self._paused = True
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None

    def resume_reading(self) -> None:
        """Read again."""
        if self._paused and not self._closed:
            self._paused = False
            self._schedule()

    def close(self) -> None:
        """Stop reading and close the descriptor; ``connection_lost(None)`` follows."""
        self._finish(None)

    def _start(self) -> None:
        # Even when closed already: connection_lost must follow connection_made.
        self._protocol.connection_made(self)
        self._schedule()

    def _schedule(self) -> None:
        if self._scheduled is None and not self._paused and not self._closed:
            self._scheduled = self._loop.call_soon(self._read)

    def _read(self) -> None:
        self._scheduled = None
        try:
            data = os.read(self._fd, self._chunk)
        except OSError as exc:
            self._finish(exc)
            return
        if data:
            self._protocol.data_received(data)
            self._schedule()
            return
        keep_open = self._protocol.eof_received()
        if keep_open:
            # Nothing more will come; keeping open only makes sense for sockets.
            _log.debug("%r: the protocol asked to stay open after EOF; closing", self)
        self._finish(None)

    def _finish(self, exc: Exception | None) -> None:
        if self._closed:
            return
        self._closed = True
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        os.close(self._fd)
        self._loop.call_soon(self._protocol.connection_lost, exc)

    def __repr__(self) -> str:
        return f"<FileReadTransport fd={self._fd} {'closed' if self._closed else 'open'}>"


if TYPE_CHECKING:
    # Checked by mypy: an asyncio loop watches descriptors as ReactorFDs says.
    def _loop_provides(loop: asyncio.AbstractEventLoop) -> ReactorFDs:
        return loop
