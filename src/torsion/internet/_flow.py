"""Flow control: stream a file into a connection, forward one connection into another.

Both keep memory bounded the same way: nothing is read from the source while
the sink's transport holds more than its high-water mark, so what waits in
memory is at most that mark plus one read (one chunk of the file, one read of
the source socket).

``send_file`` streams a file, zero-copy with ``os.sendfile`` where the event
loop and transport allow it (the stdlib loop over plain TCP), else a chunk at
a time, waiting on ``Protocol.drained()`` between chunks. ``send_stream`` does
the second for any iterable of bytes.

``Forwarder`` is the protocol for a connection whose bytes go on to another
connection, and ``splice(a, b)`` joins two of them into a full-duplex pipe,
the heart of a port forwarder or proxy::

    class Inbound(Forwarder):
        def connection_made(self, transport):
            super().connection_made(transport)  # holds what arrives, for now
            outgoing = reactor.connect_tcp(host, port, lambda _: Forwarder())
            outgoing.deferred.add_callbacks(lambda outbound: splice(self, outbound),
                                            lambda _: self.transport.close())

A forwarder is the *producer* of its sink (``Protocol.register_producer``):
when the sink's write buffer passes its high-water mark, the sink's
``pause_writing`` pauses the forwarder, which stops reading from its own
connection (``pause_reading``) until ``resume_writing``. The two connections
of a splice are each other's producer, one per direction.
"""

from __future__ import annotations

import asyncio
import logging
import typing
from collections.abc import AsyncGenerator, AsyncIterable, Iterable, Iterator

from torsion.internet._protocol import Protocol
from torsion.internet._threads import ThreadRunner

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "BinaryReader",
    "Buffer",
    "Forwarder",
    "send_file",
    "send_stream",
    "splice",
]

DEFAULT_CHUNK_SIZE = 64 * 1024
"""Bytes read from a file at a time: asyncio's default high-water mark, so a
sink holds at most twice that."""

# What a forwarder keeps before it is told where to forward. It stops reading
# at the first data, so this is one read of the socket (asyncio and uvloop
# read at most 256 KiB at a time); more is a misbehaving transport, and the
# connection is dropped.
_MAX_HELD = 256 * 1024

_log = logging.getLogger("torsion.internet")

Buffer: typing.TypeAlias = bytes | bytearray | memoryview
"""What a transport's ``write()`` takes."""


class BinaryReader(typing.Protocol):
    """A file opened for reading in binary mode, or anything that reads like one.

    ``send_file`` sends it zero-copy when it is a regular file (it has a
    ``fileno()``); to honour an ``offset`` it must be able to ``seek()``.
    """

    def read(self, size: int, /) -> bytes:
        """Return up to ``size`` bytes; ``b""`` at the end of the file."""
        ...


class _Seekable(typing.Protocol):
    def seek(self, offset: int, /) -> int: ...


# -- streaming into a connection ----------------------------------------------


async def send_file(
    protocol: Protocol,
    file: BinaryReader,
    *,
    offset: int = 0,
    count: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    threads: ThreadRunner | None = None,
) -> int:
    """Send a file's bytes over ``protocol``'s connection, with bounded memory.

    Where the loop and transport allow it (the stdlib loop, plain TCP, a
    regular file) the kernel copies the file to the socket with
    ``os.sendfile`` (``loop.sendfile``) and no byte passes through Python.
    Otherwise (uvloop, TLS, Unix pipes, in-memory transports, file-like
    objects) the file is read ``chunk_size`` bytes at a time, each read
    waiting until the transport is below its high-water mark, so memory holds
    at most that mark plus one chunk.

    Nothing else may write to the connection until this returns: the stdlib
    transport refuses writes while ``os.sendfile`` runs, and interleaved
    writes would corrupt the stream anyway. Reading from the connection is
    paused during a zero-copy send.

    If sending fails or is cancelled once bytes may have gone out (a lost
    connection, a read error, a cancellation), the connection is aborted as
    well: its peer could not tell where the file stopped.

    Args:
        protocol: The connected protocol whose transport the bytes go to.
        file: What to send: a file opened with ``"rb"``, ``io.BytesIO``, ...
        offset: Where in the file to start; the file is first positioned
            there if it can seek (a file that cannot needs ``offset=0`` and
            is read from where it stands).
        count: How many bytes to send at most; None sends to the end.
        chunk_size: Bytes per read when the file is read in chunks.
        threads: Where to run the reads (the reactor, say), for files on
            slow or network disks; None reads on the loop's thread, which is
            fine for local files. A zero-copy send needs no reads.

    Returns:
        How many bytes were sent: ``count``, or fewer if the file ended
        first. The file is left positioned after the last byte sent.

    Raises:
        ValueError: A negative ``offset`` or ``count``, a ``chunk_size``
            below 1, an ``offset`` in a file that cannot seek, a file opened
            in text mode, or a protocol that is not connected.
        TypeError: The file's ``read()`` returned something other than bytes.
        ConnectionError: The connection was lost or closed before everything
            was sent: its own error if that was a ``ConnectionError``, else
            ``ConnectionResetError`` with that error as its cause.
    """
    _check_limits(count, chunk_size)
    if offset < 0:
        raise ValueError(f"offset must be >= 0, not {offset!r}")
    mode = getattr(file, "mode", "b")
    if isinstance(mode, str) and "b" not in mode:
        raise ValueError("the file must be opened in binary mode")
    seekable = _seekable(file)
    if offset and not seekable:
        raise ValueError(f"offset {offset} given for a file that cannot seek")
    transport = _writable_transport(protocol)
    if count == 0:
        return 0
    if _zero_copy_possible(transport):
        sent = await _send_zero_copy(transport, file, offset, count)
        if sent is not None:
            return sent
    if seekable:
        typing.cast(_Seekable, file).seek(offset)
    return await _send_chunks(protocol, _file_chunks(file, count, chunk_size, threads))


async def send_stream(protocol: Protocol, chunks: Iterable[Buffer] | AsyncIterable[Buffer]) -> int:
    """Send each chunk of an iterable over ``protocol``'s connection, with backpressure.

    The next chunk is only asked for once the transport is below its
    high-water mark, so memory holds at most that mark plus one chunk (of the
    iterable's making). An async iterable may wait for its chunks; the
    iterable is closed (``aclose()``/``close()``) when this returns or fails.

    Args:
        protocol: The connected protocol whose transport the bytes go to.
        chunks: Bytes-like chunks, e.g. an ``async def`` generator.

    Returns:
        How many bytes were sent.

    Raises:
        ValueError: The protocol is not connected.
        TypeError: A chunk is not bytes-like.
        ConnectionError: The connection was lost or closed before everything
            was sent (as for ``send_file``). Once a chunk was sent, any
            failure also aborts the connection.
    """
    _writable_transport(protocol)
    return await _send_chunks(protocol, _iterate(chunks))


def _check_limits(count: int | None, chunk_size: int) -> None:
    if count is not None and count < 0:
        raise ValueError(f"count must be >= 0 or None, not {count!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, not {chunk_size!r}")


def _seekable(file: BinaryReader) -> bool:
    if not callable(getattr(file, "seek", None)):
        return False
    seekable = getattr(file, "seekable", None)
    return bool(seekable()) if callable(seekable) else True


def _writable_transport(protocol: Protocol) -> asyncio.Transport:
    transport: asyncio.Transport | None = getattr(protocol, "transport", None)
    if transport is None:
        raise ValueError(f"{protocol!r} is not connected")
    if protocol._lost or transport.is_closing():
        raise ConnectionResetError("connection closed")
    return transport


def _zero_copy_possible(transport: asyncio.BaseTransport) -> bool:
    # asyncio's transports say themselves whether loop.sendfile can try the
    # syscall: TRY_NATIVE for the stdlib's plain sockets, FALLBACK for TLS
    # (its fallback swaps protocols, which ours does without), nothing for
    # uvloop's and the in-memory ones.
    mode = getattr(transport, "_sendfile_compatible", None)
    return getattr(mode, "name", None) == "TRY_NATIVE"


async def _send_zero_copy(
    transport: asyncio.Transport, file: BinaryReader, offset: int, count: int | None
) -> int | None:
    """Send with ``os.sendfile``; None if the file or loop cannot (nothing was sent)."""
    loop = asyncio.get_running_loop()
    try:
        # A file without fileno() is turned down with SendfileNotAvailableError.
        binary = typing.cast(typing.BinaryIO, file)
        return await loop.sendfile(transport, binary, offset, count, fallback=False)
    except (asyncio.SendfileNotAvailableError, NotImplementedError):
        # Raised before the first byte: not a regular file, or a loop
        # without sendfile. asyncio has put the file back at ``offset``.
        return None
    except OSError as exc:
        # The socket failed part-way; its transport has not noticed (it is
        # paused during the syscall), so drop the connection here.
        transport.abort()
        if isinstance(exc, ConnectionError):
            raise
        raise ConnectionResetError(f"connection lost: {exc}") from exc
    except BaseException:
        # Cancelled, say: asyncio does not say how far the file got.
        transport.abort()
        raise


async def _send_chunks(protocol: Protocol, chunks: AsyncGenerator[Buffer, None]) -> int:
    transport = protocol.transport
    sent = 0
    try:
        while True:
            try:
                # Wait for room before taking the next chunk, so that only
                # one chunk is ever out of the transport's buffer.
                await protocol.drained()
            except ConnectionError:
                raise
            except Exception as exc:  # the error the connection was lost with
                raise ConnectionResetError(f"connection lost: {exc}") from exc
            data = await anext(chunks, None)
            if data is None:
                return sent
            if not isinstance(data, bytes | bytearray | memoryview):
                raise TypeError(f"chunks must be bytes-like, not {type(data).__name__}")
            if protocol._lost or transport.is_closing():
                # asyncio drops writes to a closing transport without a word.
                raise ConnectionResetError("connection closed")
            transport.write(data)
            sent += len(data)
    except BaseException:
        if sent:
            # The peer has part of the stream and cannot know it is partial.
            transport.abort()
        raise
    finally:
        await chunks.aclose()


async def _file_chunks(
    file: BinaryReader, count: int | None, chunk_size: int, threads: ThreadRunner | None
) -> AsyncGenerator[bytes, None]:
    remaining = count
    while remaining is None or remaining > 0:
        size = chunk_size if remaining is None else min(chunk_size, remaining)
        if threads is None:
            data = file.read(size)
        else:
            data = await threads.defer_to_thread(file.read, size)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"read() must return bytes, not {type(data).__name__}")
        if not data:
            return
        if remaining is not None:
            remaining -= len(data)
        yield data


async def _iterate(
    chunks: Iterable[Buffer] | AsyncIterable[Buffer],
) -> AsyncGenerator[Buffer, None]:
    if isinstance(chunks, AsyncIterable):
        iterator = aiter(chunks)
        try:
            async for chunk in iterator:
                yield chunk
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()
    else:
        sync_iterator: Iterator[Buffer] = iter(chunks)
        try:
            for chunk in sync_iterator:
                yield chunk
        finally:
            close = getattr(sync_iterator, "close", None)
            if close is not None:
                close()


# -- forwarding one connection into another ------------------------------------


class Forwarder(Protocol):
    """A protocol that passes what its connection receives on to another connection.

    Until ``forward_to`` (or ``splice``) tells it where to, it holds what
    arrives, pausing reading at the first data, so that a connection
    accepted before its destination is connected loses nothing. Then, for
    each direction ``source -> sink``:

    * data received is written to the sink's transport as it comes;
    * while the sink's write buffer is above its high-water mark, the
      source's transport is paused (``pause_reading``), and resumed with the
      sink's ``resume_writing``;
    * EOF received becomes ``write_eof()`` on the sink (a half-close passed
      through), or ``close()`` where the sink cannot half-close; a spliced
      connection closes once EOF has passed both ways;
    * the source's connection lost closes the sink (after what was written
      to it is flushed), and the sink's lost closes the source.

    The sink is any connected ``Protocol``; in a ``splice`` both ends are
    forwarders. Subclasses overriding the connection events must call the
    base methods.

    Args:
        max_held: The most bytes kept before forwarding starts; a peer that
            sends more (only a transport that ignores ``pause_reading`` lets
            it) has its connection dropped.

    Attributes:
        forwarded: How many bytes went on to the sink so far.
    """

    def __init__(self, *, max_held: int = _MAX_HELD) -> None:
        self.forwarded = 0
        self._max_held = max_held
        self._sink: Protocol | None = None
        # The forwarder writing into this one's connection, in a splice.
        self._upstream: Forwarder | None = None
        self._held = bytearray()
        self._reading = True
        self._waiting = True  # not told where to forward yet
        self._sink_full = False
        self._eof = False  # the peer half-closed
        self._eof_passed = False
        self._upstream_done = False  # the upstream passed its EOF to us

    @property
    def sink(self) -> Protocol | None:
        """Where the data goes, once forwarding started."""
        return self._sink

    # -- wiring ------------------------------------------------------------------

    def forward_to(self, sink: Protocol) -> None:
        """Start passing this connection's data to ``sink``'s connection.

        What was held is written first, then EOF if it came already. Both
        protocols must be connected; either may already be lost, which
        closes the other.

        Raises:
            ValueError: ``sink`` is this forwarder, or a protocol is not connected.
            RuntimeError: This forwarder already forwards somewhere.
        """
        self._link(sink)
        self._start()

    def _link(self, sink: Protocol) -> None:
        if self._sink is not None:
            raise RuntimeError(f"{self!r} already forwards to {self._sink!r}")
        if sink is self:
            raise ValueError("a forwarder cannot forward to itself")
        for protocol in (self, sink):
            if getattr(protocol, "transport", None) is None:
                raise ValueError(f"{protocol!r} is not connected")
        self._sink = sink
        if isinstance(sink, Forwarder):
            sink._upstream = self
        # Paused at once if the sink is full, stopped at once if it is gone.
        sink.register_producer(self)

    def _start(self) -> None:
        sink = self._sink
        assert sink is not None
        self._waiting = False
        held, self._held = bytes(self._held), bytearray()
        if held:
            self._write(sink, held)
        if self._eof:
            self._pass_eof(sink)
        if self._lost:
            sink.transport.close()
        else:
            self._update_reading()

    # -- the source's events -----------------------------------------------------

    def data_received(self, data: bytes) -> None:
        """Write ``data`` to the sink (hold it, if there is no sink yet)."""
        sink = self._sink
        if sink is not None:
            self._write(sink, data)
            return
        self._held += data
        # Paused here rather than in connection_made: asyncio before 3.12 and
        # uvloop start reading after connection_made whatever it asked for
        # (python/cpython#103607), and the stdlib's transport would then
        # believe itself paused while it reads.
        self._update_reading()
        if len(self._held) > self._max_held:
            _log.warning(
                "%r: peer sent over %d bytes before forwarding started; dropping it",
                self,
                self._max_held,
            )
            self._held.clear()
            self.transport.abort()

    def eof_received(self) -> bool:
        """Pass the half-close on; keep the connection open for the other direction."""
        self._eof = True
        if self._sink is not None:
            self._pass_eof(self._sink)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        """Close the sink, after what was written to it is flushed."""
        super().connection_lost(exc)
        sink = self._sink
        if sink is not None:
            sink.unregister_producer(self)
            sink.transport.close()

    # -- as the sink's producer ----------------------------------------------------

    def pause_producing(self) -> None:
        """The sink is full: stop reading from this connection."""
        self._sink_full = True
        self._update_reading()

    def resume_producing(self) -> None:
        """The sink drained: read from this connection again."""
        self._sink_full = False
        self._update_reading()

    def stop_producing(self) -> None:
        """The sink's connection is gone: close this one."""
        self.transport.close()

    # -- inside ------------------------------------------------------------------

    def _write(self, sink: Protocol, data: bytes) -> None:
        if sink.transport.is_closing():
            # The sink is going away and closes us too; asyncio would drop
            # the bytes anyway, with a warning after a few.
            return
        sink.transport.write(data)
        self.forwarded += len(data)

    def _pass_eof(self, sink: Protocol) -> None:
        if self._eof_passed:
            return
        self._eof_passed = True
        transport = sink.transport
        if not transport.is_closing():
            if transport.can_write_eof():
                transport.write_eof()
                if isinstance(sink, Forwarder):
                    sink._upstream_finished()
            else:
                transport.close()
        self._close_if_done()

    def _upstream_finished(self) -> None:
        self._upstream_done = True
        self._close_if_done()

    def _close_if_done(self) -> None:
        # Once nothing more will be read (EOF passed on) and nothing more
        # written (the upstream, if any, passed its EOF), the connection
        # has nothing left to do; asyncio would keep it open for ever.
        if self._eof_passed and (self._upstream is None or self._upstream_done):
            self.transport.close()

    def _update_reading(self) -> None:
        transport = self.transport
        # After EOF the stdlib transport would report EOF again on
        # resume_reading, and a closing one reads nothing anyway.
        if self._eof or transport.is_closing():
            return
        reading = not (self._waiting or self._sink_full)
        if reading == self._reading:
            return
        self._reading = reading
        if reading:
            transport.resume_reading()
        else:
            transport.pause_reading()


def splice(a: Forwarder, b: Forwarder) -> None:
    """Join two connections both ways: what either receives, the other sends.

    Each is the other's sink and producer: a full-duplex pipe with
    backpressure each way, half-closes passed through, and either side's
    loss closing the other. This is what a port forwarder does with the
    connection it accepted and the one it made.

    Args:
        a: One connected forwarder (say, the accepted connection).
        b: The other (the connection made on its behalf).

    Raises:
        ValueError: ``a`` is ``b``, or either is not connected.
        RuntimeError: Either already forwards somewhere.
    """
    if a is b:
        raise ValueError("cannot splice a connection to itself")
    for forwarder in (a, b):
        if forwarder.sink is not None:
            raise RuntimeError(f"{forwarder!r} already forwards to {forwarder.sink!r}")
    # Both directions are wired before anything moves, so that an EOF held
    # by one side sees the other direction and keeps the connection open.
    a._link(b)
    b._link(a)
    a._start()
    b._start()
