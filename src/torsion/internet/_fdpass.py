"""Passing file descriptors over Unix stream sockets (SCM_RIGHTS), with a transport of our own.

A Unix socket can carry open file descriptors from one process to another as
ancillary data (``SCM_RIGHTS``, unix(7)). asyncio's transports, and
uvloop's, only ever call ``send``/``recv``, so they can neither send any nor
see those that arrive (the kernel closes descriptors that a reader does not
ask for). ``UNIXFDTransport`` is therefore the one transport torsion runs
itself, reading and writing its socket with ``recvmsg``/``sendmsg`` when the
loop reports it ready (``add_reader``/``add_writer``); see
``docs/decisions.md``. It keeps asyncio's transport contract, flow control
included, so any protocol runs over it unchanged, and adds ``send_fds``.

Sending: ``transport.send_fds(data, fds)`` sends ``data`` with the
descriptors attached to its first byte. The transport sends duplicates of
them, so the caller may close its own at once.

Receiving: a protocol with a ``fds_received(fds)`` method (``FDReceiver``)
is given the descriptors that came with a message just before
``data_received`` gets the bytes read with them. Those hold the message's
first byte; bytes sent before it may come in the same chunk, bytes sent after
it do not (Linux ends a read that picked up descriptors at the end of the
message they came with), so a protocol that frames its messages can tell
which one they belong to. From then on the descriptors are the protocol's to
close. A protocol without the method never sees them: they are closed at
once, so none leak. One message may carry at most ``MAX_FDS``; a peer that
sends more has the connection closed with ``TooManyFDsError`` (the kernel
truncated them, ``MSG_CTRUNC``; those that did arrive are closed). Received
descriptors are close-on-exec.

The protocol's call order, for one connection::

    connection_made [-> [fds_received] data_received]* [-> eof_received]
        -> connection_lost
"""

from __future__ import annotations

import array
import asyncio
import collections
import contextlib
import errno
import itertools
import logging
import os
import socket
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, cast

from torsion.defer import Deferred
from torsion.errors import TooManyFDsError
from torsion.internet._address import to_address
from torsion.internet._protocol import Factory, ProtocolFactory

__all__ = ["MAX_FDS", "FDReceiver", "UNIXFDListener", "UNIXFDTransport", "open_fd_transport"]

_log = logging.getLogger("torsion.internet")

MAX_FDS = 16
"""The most file descriptors one message may carry, either way."""

# asyncio's own sizes: one read, and the write buffer's high-water mark.
_READ_SIZE = 256 * 1024
_HIGH_WATER = 64 * 1024
# Writes queued behind one another go out in one sendmsg, up to this many.
_MAX_BATCH = 64
_FD_SIZE = array.array("i").itemsize
_ANCILLARY_SIZE = socket.CMSG_SPACE(MAX_FDS * _FD_SIZE)
# Received descriptors must not leak into child processes (Linux only).
_RECV_FLAGS = getattr(socket, "MSG_CMSG_CLOEXEC", 0)
# Accepting fails like this when the process is out of descriptors or memory;
# accepting pauses for a moment (as asyncio does) rather than spin.
_ACCEPT_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_ACCEPT_RETRY = 1.0

BytesLike = bytes | bytearray | memoryview


class FDReceiver(Protocol):
    """A protocol that takes the file descriptors a ``UNIXFDTransport`` receives."""

    def fds_received(self, fds: list[int]) -> None:
        """Called with descriptors that arrived, just before the bytes read with them.

        Args:
            fds: Open descriptors, now owned by the protocol: it must close
                each one (``os.close``) or hand it on.
        """
        ...


class UNIXFDTransport(asyncio.Transport):
    """A Unix stream socket connection that can pass file descriptors.

    Made by ``listen_unix(..., pass_fds=True)`` and
    ``connect_unix(..., pass_fds=True)``, or by ``open_fd_transport`` for a
    socket connected some other way (one end of a ``socketpair``).

    Args:
        loop: The loop that watches the socket.
        sock: A connected Unix stream socket; the transport owns it.
        protocol: The connection's protocol.
    """

    __slots__ = (
        "_buffer",
        "_buffer_size",
        "_closing",
        "_eof_seen",
        "_high",
        "_loop",
        "_lost",
        "_low",
        "_protocol",
        "_protocol_paused",
        "_reader",
        "_reading_paused",
        "_sock",
        "_write_eof",
        "_writer",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        protocol: asyncio.BaseProtocol,
    ) -> None:
        try:
            peername: Any = sock.getpeername()
        except OSError:
            peername = None
        super().__init__({"socket": sock, "sockname": sock.getsockname(), "peername": peername})
        sock.setblocking(False)
        self._loop = loop
        self._sock = sock
        self._protocol = cast(asyncio.Protocol, protocol)
        # Queued writes: bytes, and the descriptors (our duplicates) that go
        # with their first byte.
        self._buffer: collections.deque[tuple[bytes, tuple[int, ...]]] = collections.deque()
        self._buffer_size = 0
        self._high = _HIGH_WATER
        self._low = _HIGH_WATER // 4
        self._protocol_paused = False
        self._closing = False  # close() or abort() was called, or the connection broke
        self._lost = False  # connection_lost is scheduled
        self._write_eof = False
        self._eof_seen = False
        self._reading_paused = False
        self._reader = False
        self._writer = False

    def _start(self) -> None:
        """Tell the protocol the connection is up, and start reading."""
        self._protocol.connection_made(self)
        if not self._closing and not self._reading_paused:
            self._add_reader()

    # -- the asyncio transport contract --------------------------------------------

    def get_protocol(self) -> asyncio.BaseProtocol:
        """Return the protocol the transport talks to."""
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Talk to ``protocol`` from now on."""
        self._protocol = cast(asyncio.Protocol, protocol)

    def is_closing(self) -> bool:
        """Whether the transport is closing or closed."""
        return self._closing

    def is_reading(self) -> bool:
        """Whether the transport is receiving (not paused, not closing)."""
        return not self._closing and not self._reading_paused

    def pause_reading(self) -> None:
        """Stop receiving until ``resume_reading``; what arrives waits in the kernel."""
        if self._closing or self._reading_paused:
            return
        self._reading_paused = True
        self._remove_reader()

    def resume_reading(self) -> None:
        """Receive again after ``pause_reading``."""
        if self._closing or not self._reading_paused:
            return
        self._reading_paused = False
        if not self._eof_seen:
            self._add_reader()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set the write buffer's high- and low-water marks (bytes).

        The protocol's ``pause_writing`` is called when the buffer grows above
        ``high``, ``resume_writing`` when it drains to ``low`` or below.

        Args:
            high: Default 64 KiB, or four times ``low`` if that is given.
            low: Default a quarter of ``high``.

        Raises:
            ValueError: Not ``high >= low >= 0``.
        """
        if high is None:
            high = _HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"need high ({high!r}) >= low ({low!r}) >= 0")
        self._high, self._low = high, low
        self._maybe_pause_protocol()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """Return ``(low, high)``."""
        return self._low, self._high

    def get_write_buffer_size(self) -> int:
        """Return how many bytes wait to be sent."""
        return self._buffer_size

    def write(self, data: BytesLike) -> None:
        """Send ``data``, buffering what the socket does not take at once.

        Raises:
            TypeError: ``data`` is not bytes-like.
            RuntimeError: ``write_eof`` was called.
        """
        self._check_writable(data)
        if data and not self._lost:
            self._queue(data, ())

    def writelines(self, list_of_data: Iterable[BytesLike]) -> None:
        """Send each item of ``list_of_data`` in order."""
        self.write(b"".join(list_of_data))

    def send_fds(self, data: BytesLike, fds: Sequence[int]) -> None:
        """Send ``data`` with the file descriptors ``fds`` attached to its first byte.

        The transport sends duplicates, made now: the caller keeps (and may
        close at once) its own. Like ``write``, this does nothing once the
        connection is lost.

        Args:
            data: At least one byte (descriptors travel with data).
            fds: At most ``MAX_FDS`` open descriptors.

        Raises:
            ValueError: ``data`` is empty, or there are too many descriptors.
            TypeError: ``data`` is not bytes-like.
            RuntimeError: ``write_eof`` was called.
            OSError: A descriptor is not open (EBADF), or the process has no
                descriptors to spare for the duplicates (EMFILE).
        """
        self._check_writable(data)
        if not data:
            raise ValueError("file descriptors travel with data: send at least one byte")
        if len(fds) > MAX_FDS:
            raise ValueError(f"at most {MAX_FDS} file descriptors per message, not {len(fds)}")
        if self._lost:
            return
        duplicates: list[int] = []
        try:
            for fd in fds:
                duplicates.append(os.dup(fd))
        except BaseException:
            _close_all(duplicates)
            raise
        self._queue(data, tuple(duplicates))

    def can_write_eof(self) -> bool:
        """Return True: the write side can be shut down alone."""
        return True

    def write_eof(self) -> None:
        """Shut down the write side once the buffer is sent; reading goes on."""
        if self._closing or self._write_eof:
            return
        self._write_eof = True
        if not self._buffer:
            self._shutdown_write()

    def close(self) -> None:
        """Close once the buffer is sent; ``connection_lost(None)`` follows."""
        if self._closing:
            return
        self._closing = True
        self._remove_reader()
        if not self._buffer:
            self._schedule_connection_lost(None)

    def abort(self) -> None:
        """Close at once, dropping whatever is buffered."""
        self._force_close(None)

    # -- reading ----------------------------------------------------------------------

    def _read_ready(self) -> None:
        try:
            data, ancillary, flags, _ = self._sock.recvmsg(
                _READ_SIZE, _ANCILLARY_SIZE, _RECV_FLAGS
            )
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "recvmsg failed")
            return
        fds = fds_from_ancillary(ancillary)
        if flags & socket.MSG_CTRUNC:
            _close_all(fds)
            self._fatal_error(TooManyFDsError(MAX_FDS), "too many file descriptors")
            return
        if fds:
            receiver: Callable[[list[int]], None] | None = getattr(
                self._protocol, "fds_received", None
            )
            if receiver is None:
                _close_all(fds)
            elif not self._call_protocol(receiver, fds):
                return
        if not data:
            self._eof_received()
        elif not self._lost:
            self._call_protocol(self._protocol.data_received, data)

    def _eof_received(self) -> None:
        self._eof_seen = True
        self._remove_reader()
        try:
            keep_open = self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "protocol.eof_received() failed")
            return
        if not keep_open:
            self.close()

    def _call_protocol(self, method: Callable[[Any], object], argument: Any) -> bool:
        try:
            method(argument)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, f"protocol.{method.__name__}() failed")
            return False
        return True

    # -- writing ----------------------------------------------------------------------

    def _check_writable(self, data: BytesLike) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"data must be bytes-like, not {type(data).__name__}")
        if self._write_eof:
            raise RuntimeError("cannot write after write_eof()")

    def _queue(self, data: BytesLike, fds: tuple[int, ...]) -> None:
        chunk = bytes(data)
        if not self._buffer:
            # Nothing waits: try the socket first, as asyncio's transports do.
            try:
                sent = self._send([chunk], fds)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except (SystemExit, KeyboardInterrupt):
                _close_all(fds)
                raise
            except BaseException as exc:
                _close_all(fds)
                self._fatal_error(exc, "sendmsg failed")
                return
            if sent:
                _close_all(fds)  # They went out with the first byte.
                fds = ()
            if sent == len(chunk):
                return
            chunk = chunk[sent:]
            self._add_writer()
        self._buffer.append((chunk, fds))
        self._buffer_size += len(chunk)
        self._maybe_pause_protocol()

    def _send(self, chunks: list[bytes], fds: tuple[int, ...]) -> int:
        if not fds:
            if len(chunks) == 1:
                return self._sock.send(chunks[0])
            return self._sock.sendmsg(chunks)
        rights = (socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))
        return self._sock.sendmsg(chunks, [rights])

    def _write_ready(self) -> None:
        while self._buffer:
            first, fds = self._buffer[0]
            chunks = [first]
            # Writes without descriptors go out together. A message with
            # descriptors goes alone: its sendmsg is where the receiver's read
            # that picks them up will end.
            if not fds:
                for data, more_fds in itertools.islice(self._buffer, 1, _MAX_BATCH):
                    if more_fds:
                        break
                    chunks.append(data)
            try:
                sent = self._send(chunks, fds)
            except (BlockingIOError, InterruptedError):
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "sendmsg failed")
                return
            self._consume(sent)
            if sent < sum(map(len, chunks)):
                break  # The socket's buffer is full.
        self._maybe_resume_protocol()
        if self._buffer:
            return
        self._remove_writer()
        if self._closing:
            self._schedule_connection_lost(None)
        elif self._write_eof:
            self._shutdown_write()

    def _consume(self, sent: int) -> None:
        self._buffer_size -= sent
        while sent:
            data, fds = self._buffer[0]
            _close_all(fds)  # Sent with this chunk's first byte.
            if len(data) <= sent:
                self._buffer.popleft()
                sent -= len(data)
            else:
                self._buffer[0] = (data[sent:], ())
                sent = 0

    def _shutdown_write(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            self._fatal_error(exc, "shutdown failed")

    def _maybe_pause_protocol(self) -> None:
        if self._protocol_paused or self._buffer_size <= self._high:
            return
        self._protocol_paused = True
        self._tell_protocol("pause_writing")

    def _maybe_resume_protocol(self) -> None:
        if self._protocol_paused and self._buffer_size <= self._low:
            self._protocol_paused = False
            self._tell_protocol("resume_writing")

    def _tell_protocol(self, name: str) -> None:
        try:
            getattr(self._protocol, name)()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler(
                {
                    "message": f"protocol.{name}() failed",
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )

    # -- closing ----------------------------------------------------------------------

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        if isinstance(exc, OSError):
            # The peer went away or misbehaved: the protocol hears of it in
            # connection_lost, and the log gets no traceback.
            _log.debug("%r: %s: %s", self, message, exc)
        else:
            self._loop.call_exception_handler(
                {
                    "message": f"Fatal error on {self!r}: {message}",
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )
        self._force_close(exc if isinstance(exc, Exception) else None)

    def _force_close(self, exc: Exception | None) -> None:
        if self._lost:
            return
        if self._buffer:
            self._drop_buffer()
            self._remove_writer()
        if not self._closing:
            self._closing = True
            self._remove_reader()
        self._schedule_connection_lost(exc)

    def _schedule_connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: Exception | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._release()

    def _release(self) -> None:
        """Stop watching the socket, close it and any descriptors still queued."""
        self._remove_reader()
        self._remove_writer()
        self._drop_buffer()
        self._sock.close()

    def _drop_buffer(self) -> None:
        for _, fds in self._buffer:
            _close_all(fds)
        self._buffer.clear()
        self._buffer_size = 0

    def _add_reader(self) -> None:
        if not self._reader:
            self._loop.add_reader(self._sock.fileno(), self._read_ready)
            self._reader = True

    def _remove_reader(self) -> None:
        if self._reader:
            self._reader = False
            if not self._loop.is_closed():
                self._loop.remove_reader(self._sock.fileno())

    def _add_writer(self) -> None:
        if not self._writer:
            self._loop.add_writer(self._sock.fileno(), self._write_ready)
            self._writer = True

    def _remove_writer(self) -> None:
        if self._writer:
            self._writer = False
            if not self._loop.is_closed():
                self._loop.remove_writer(self._sock.fileno())

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        sock = getattr(self, "_sock", None)
        if sock is not None and sock.fileno() != -1:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._drop_buffer()
            sock.close()

    def __repr__(self) -> str:
        sock = getattr(self, "_sock", None)
        fd = sock.fileno() if sock is not None else -1
        state = "closed" if fd == -1 else "closing" if self._closing else "open"
        return f"<UNIXFDTransport {state} fd={fd}>"


def open_fd_transport(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol: asyncio.BaseProtocol
) -> UNIXFDTransport:
    """Serve the connected Unix stream socket ``sock`` with a ``UNIXFDTransport``.

    Calls ``protocol.connection_made`` before returning.

    Args:
        loop: The loop that watches the socket.
        sock: A connected Unix stream socket; the transport owns it.
        protocol: The connection's protocol.

    Raises:
        Exception: What ``connection_made`` raised; the socket is closed then.
    """
    transport = UNIXFDTransport(loop, sock, protocol)
    try:
        transport._start()
    except BaseException:
        transport._release()
        raise
    return transport


def fds_from_ancillary(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    """Return the descriptors in ``recvmsg``'s ancillary data (SCM_RIGHTS messages)."""
    fds: list[int] = []
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            received = array.array("i")
            # A truncated message may end in part of a descriptor; drop that part.
            received.frombytes(data[: len(data) - len(data) % _FD_SIZE])
            fds.extend(received)
    return fds


def _close_all(fds: Iterable[int]) -> None:
    for fd in fds:
        # Ours, so open; were it not, there would be nothing left to do.
        with contextlib.suppress(OSError):
            os.close(fd)


class UNIXFDListener:
    """A listening Unix stream socket that serves each connection with a ``UNIXFDTransport``.

    What ``listen_unix(..., pass_fds=True)`` returns; it offers what
    ``Listener`` does for a Unix socket.

    Args:
        loop: The loop that accepts the connections.
        sock: A Unix stream socket already bound and listening.
        factory: Called with each peer's address; returns its protocol, or
            None to refuse the connection.
        backlog: The most connections accepted at one go.
        on_stopped: Called with the listener once it has stopped.
        cleanup: Called once the socket is closed (removes the socket file).

    Attributes:
        address: The address bound to (a ``UNIXAddress``).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        factory: ProtocolFactory,
        *,
        backlog: int = 100,
        on_stopped: Callable[[UNIXFDListener], object] | None = None,
        cleanup: Callable[[], object] | None = None,
    ) -> None:
        self.address = to_address(sock.getsockname(), "unix")
        self._loop = loop
        self._sock = sock
        self._factory = factory
        self._backlog = backlog
        self._on_stopped = on_stopped
        self._cleanup = cleanup
        self._retry: asyncio.TimerHandle | None = None
        self._stopped = False
        sock.setblocking(False)
        loop.add_reader(sock.fileno(), self._accept_ready)
        if isinstance(factory, Factory):
            factory.start()

    @property
    def listening(self) -> bool:
        """Whether the socket is open (``stop_listening`` was not called)."""
        return not self._stopped

    def stop_listening(self) -> Deferred[None]:
        """Close the socket and remove its file; connections already accepted stay up.

        Returns:
            A Deferred that has fired: closing takes effect at once.
        """
        if not self._stopped:
            self._stop()
        d: Deferred[None] = Deferred()
        d.callback(None)
        return d

    def close_now(self) -> None:
        """Close the socket (for a reactor being closed)."""
        if not self._stopped:
            self._stop()

    def _stop(self) -> None:
        self._stopped = True
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if not self._loop.is_closed():
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        if self._cleanup is not None:
            try:
                self._cleanup()
            except Exception:
                _log.exception("Cleaning up after %r failed", self)
        if isinstance(self._factory, Factory):
            self._factory.stop()
        if self._on_stopped is not None:
            self._on_stopped(self)

    def _accept_ready(self) -> None:
        for _ in range(self._backlog):
            try:
                conn, peer = self._sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno not in _ACCEPT_RESOURCE_ERRORS:
                    _log.error("Cannot accept on %s: %s", self.address, exc)
                    return
                _log.error(
                    "Cannot accept on %s: %s; trying again in %gs",
                    self.address,
                    exc,
                    _ACCEPT_RETRY,
                )
                self._loop.remove_reader(self._sock.fileno())
                self._retry = self._loop.call_later(_ACCEPT_RETRY, self._resume_accepting)
                return
            self._serve(conn, peer)

    def _resume_accepting(self) -> None:
        self._retry = None
        if not self._stopped:
            self._loop.add_reader(self._sock.fileno(), self._accept_ready)

    def _serve(self, conn: socket.socket, peer: Any) -> None:
        address = to_address(peer, "unix")
        try:
            protocol = self._factory(address)
        except Exception:
            _log.exception("Protocol factory %r failed for %r", self._factory, address)
            conn.close()
            return
        if protocol is None:
            conn.close()
            return
        transport = UNIXFDTransport(self._loop, conn, protocol)
        try:
            transport._start()
        except Exception:
            _log.exception("%r.connection_made failed", protocol)
            transport.abort()

    def __repr__(self) -> str:
        state = "listening" if self.listening else "stopped"
        return f"<UNIXFDListener {state} on {self.address}>"
