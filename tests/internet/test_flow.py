"""Flow control: producers on Protocol, send_file/send_stream, Forwarder and splice.

The unit tests run on the in-memory transports with no loop, no sockets and
no sleeps: a StringTransport plays a sink whose network the test drains with
``clear()``, and ``loopback`` pairs play whole connections. The integration
tests stream and forward over 127.0.0.1 on both event loops, with small
socket buffers and a reader that holds back until the sender is blocked.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import random
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from torsion.defer import CancelledError, Deferred, ensure_deferred, succeed
from torsion.internet import Address, Protocol, Reactor
from torsion.internet._flow import DEFAULT_CHUNK_SIZE, Forwarder, send_file, send_stream, splice
from torsion.testing import (
    StringTransport,
    assert_no_result,
    failure_result_of,
    loopback,
    success_result_of,
)

Wait = Callable[..., Any]

HIGH = 64 * 1024  # the default high-water mark of every transport here


def payload(size: int, seed: int = 7) -> bytes:
    """Bytes that do not repeat, so that a reordering or a loss shows."""
    return random.Random(seed).randbytes(size)


def connected(protocol: Protocol, **kwargs: Any) -> StringTransport:
    transport = StringTransport(protocol, **kwargs)
    protocol.connection_made(transport)
    return transport


class Recorder:
    """A producer that records what it is told."""

    def __init__(self, name: str = "p", log: list[str] | None = None) -> None:
        self.name = name
        self.events: list[str] = [] if log is None else log

    def pause_producing(self) -> None:
        self.events.append(f"{self.name}:pause")

    def resume_producing(self) -> None:
        self.events.append(f"{self.name}:resume")

    def stop_producing(self) -> None:
        self.events.append(f"{self.name}:stop")


# -- Protocol as a consumer: producers follow the write buffer -------------------


def test_producer_follows_the_write_buffer() -> None:
    protocol = Protocol()
    transport = connected(protocol)
    transport.set_write_buffer_limits(high=10)
    producer = Recorder()
    protocol.register_producer(producer)
    transport.write(b"x" * 10)
    assert producer.events == []  # at the mark is not above it
    transport.write(b"x")
    transport.write(b"more")
    assert producer.events == ["p:pause"]
    transport.clear()
    assert producer.events == ["p:pause", "p:resume"]
    protocol.unregister_producer(producer)
    transport.write(b"x" * 20)
    transport.clear()
    assert producer.events == ["p:pause", "p:resume"]


def test_producer_registered_while_full_is_paused_at_once() -> None:
    protocol = Protocol()
    connected(protocol)
    protocol.pause_writing()
    producer = Recorder()
    protocol.register_producer(producer)
    assert producer.events == ["p:pause"]
    with pytest.raises(ValueError, match="already registered"):
        protocol.register_producer(producer)


def test_connection_lost_stops_producers_once() -> None:
    protocol = Protocol()
    connected(protocol)
    log: list[str] = []
    a, b = Recorder("a", log), Recorder("b", log)
    protocol.register_producer(a)
    protocol.register_producer(b)
    protocol.connection_lost(None)
    assert log == ["a:stop", "b:stop"]
    # Nothing follows a stop, and a late registration is stopped at once.
    protocol.pause_writing()
    late = Recorder("late", log)
    protocol.register_producer(late)
    assert log == ["a:stop", "b:stop", "late:stop"]


def test_unpaired_pause_and_resume_reach_producers_as_changes_only() -> None:
    protocol = Protocol()
    connected(protocol)
    producer = Recorder()
    protocol.register_producer(producer)
    protocol.resume_writing()  # as asyncio's sendfile fallback may send
    assert producer.events == []
    assert success_result_of(protocol.drained()) is None
    protocol.pause_writing()
    protocol.pause_writing()
    waiting = protocol.drained()
    protocol.resume_writing()
    protocol.resume_writing()
    assert producer.events == ["p:pause", "p:resume"]
    assert success_result_of(waiting) is None


def test_a_producer_unregistered_by_another_is_not_paused() -> None:
    protocol = Protocol()
    connected(protocol)
    second = Recorder("second")

    class Unregisters(Recorder):
        def pause_producing(self) -> None:
            super().pause_producing()
            protocol.unregister_producer(second)

    first = Unregisters("first")
    protocol.register_producer(first)
    protocol.register_producer(second)
    protocol.pause_writing()
    assert first.events == ["first:pause"]
    assert second.events == []


# -- send_file and send_stream on an in-memory transport --------------------------


class Reads(io.BytesIO):
    """A file that records the sink's buffer size at each read."""

    def __init__(self, data: bytes, transport: StringTransport) -> None:
        super().__init__(data)
        self.transport = transport
        self.buffered_at_read: list[int] = []

    def read(self, size: int | None = -1, /) -> bytes:
        self.buffered_at_read.append(self.transport.get_write_buffer_size())
        return super().read(size)


def drain(transport: StringTransport, sending: Deferred[int]) -> tuple[bytes, list[int]]:
    """Play the network: take the buffer until the send is done.

    Returns what was sent, and the buffer's size each time it was taken.
    """
    received = bytearray()
    sizes: list[int] = []
    while not sending.called:
        sizes.append(transport.get_write_buffer_size())
        received += transport.value()
        transport.clear()
    received += transport.value()
    transport.clear()
    return bytes(received), sizes


def test_send_file_reads_only_when_there_is_room() -> None:
    protocol = Protocol()
    transport = connected(protocol)
    data = payload(1024 * 1024)
    file = Reads(data, transport)
    chunk = 16 * 1024
    sending = ensure_deferred(send_file(protocol, file, chunk_size=chunk))
    # The first pause stops it: the buffer went over the mark by one chunk at most.
    assert_no_result(sending)
    assert HIGH < transport.get_write_buffer_size() <= HIGH + chunk
    received, sizes = drain(transport, sending)
    assert success_result_of(sending) == len(data)
    assert received == data
    assert len(sizes) > 10  # it waited for the network again and again
    assert max(sizes) <= HIGH + chunk
    # Each read happened with the buffer at or below the mark: one chunk in hand.
    assert max(file.buffered_at_read) <= HIGH
    assert file.tell() == len(data)
    assert not transport.closed


def test_send_file_offset_and_count() -> None:
    protocol = Protocol()
    transport = connected(protocol)
    data = payload(300_000)
    file = io.BytesIO(data)
    file.seek(1234)  # the offset is from the start, wherever the file stands
    sending = ensure_deferred(send_file(protocol, file, offset=1000, count=200_000))
    received, _ = drain(transport, sending)
    assert success_result_of(sending) == 200_000
    assert received == data[1000:201_000]
    assert file.tell() == 201_000
    # A count past the end sends what there is.
    sending = ensure_deferred(send_file(protocol, file, offset=250_000, count=10**9))
    received, _ = drain(transport, sending)
    assert success_result_of(sending) == 50_000
    assert received == data[250_000:]


def test_send_file_count_zero_sends_nothing() -> None:
    protocol = Protocol()
    transport = connected(protocol)
    assert success_result_of(ensure_deferred(send_file(protocol, io.BytesIO(b"x"), count=0))) == 0
    assert transport.value() == b""


def test_send_file_reads_in_the_threads_given() -> None:
    protocol = Protocol()
    transport = connected(protocol)
    calls: list[tuple[Any, ...]] = []

    class Threads:
        def call_in_thread(self, f: Callable[..., object], /, *args: Any) -> None:
            raise AssertionError("not used")

        def call_from_thread(self, f: Callable[..., object], /, *args: Any) -> None:
            raise AssertionError("not used")

        def defer_to_thread(self, f: Callable[..., Any], /, *args: Any) -> Deferred[Any]:
            calls.append(args)
            return succeed(f(*args))

        def in_reactor_thread(self) -> bool:
            return True

    data = payload(50_000)
    sending = ensure_deferred(
        send_file(protocol, io.BytesIO(data), chunk_size=20_000, threads=Threads())
    )
    assert success_result_of(sending) == len(data)
    assert transport.value() == data
    assert calls == [(20_000,), (20_000,), (20_000,), (20_000,)]  # the last one finds the end


def test_send_file_fails_cleanly_when_the_connection_is_lost() -> None:
    protocol = Protocol()
    transport = connected(protocol)
    sending = ensure_deferred(send_file(protocol, io.BytesIO(payload(500_000))))
    assert_no_result(sending)
    error = BrokenPipeError("peer went away")
    protocol.connection_lost(error)
    assert failure_result_of(sending, ConnectionError) is error
    # Part of the file went out: the connection is dropped, not left mid-file.
    assert transport.aborted


def test_send_file_wraps_a_loss_that_is_not_a_connection_error() -> None:
    protocol = Protocol()
    connected(protocol)
    sending = ensure_deferred(send_file(protocol, io.BytesIO(payload(500_000))))
    cause = OSError(5, "I/O error")
    protocol.connection_lost(cause)
    error = failure_result_of(sending, ConnectionResetError)
    assert error.__cause__ is cause


def test_send_file_stops_when_the_transport_is_closed_meanwhile() -> None:
    protocol = Protocol()
    transport = connected(protocol)
    sending = ensure_deferred(send_file(protocol, io.BytesIO(payload(500_000))))
    transport.close()  # closing, but connection_lost has not come yet
    transport.clear()
    failure_result_of(sending, ConnectionResetError)
    assert transport.aborted


def test_send_file_on_a_closed_connection_sends_nothing() -> None:
    protocol = Protocol()
    transport = connected(protocol)
    protocol.connection_lost(None)
    failure_result_of(ensure_deferred(send_file(protocol, io.BytesIO(b"x"))), ConnectionError)
    assert transport.value() == b""
    assert not transport.aborted


def test_send_file_cancelled_aborts_the_connection() -> None:
    protocol = Protocol()
    transport = connected(protocol)
    sending = ensure_deferred(send_file(protocol, io.BytesIO(payload(500_000))))
    sending.cancel()
    failure_result_of(sending, CancelledError)
    assert transport.aborted


def test_send_file_read_error_propagates() -> None:
    class Failing(io.BytesIO):
        def __init__(self, fail_at: int) -> None:
            super().__init__(payload(100_000))
            self.reads = 0
            self.fail_at = fail_at

        def read(self, size: int | None = -1, /) -> bytes:
            self.reads += 1
            if self.reads == self.fail_at:
                raise OSError(5, "disk on fire")
            return super().read(size)

    protocol = Protocol()
    transport = connected(protocol)
    error = failure_result_of(ensure_deferred(send_file(protocol, Failing(1))), OSError)
    assert not isinstance(error, ConnectionError)
    assert not transport.aborted  # nothing was sent: the stream is intact
    error = failure_result_of(
        ensure_deferred(send_file(protocol, Failing(2), chunk_size=1000)), OSError
    )
    assert isinstance(error, OSError)
    assert error.strerror == "disk on fire"
    assert transport.aborted


def test_send_file_checks_its_arguments(tmp_path: Path) -> None:
    protocol = Protocol()
    connected(protocol)
    (tmp_path / "f").write_text("text")

    with (tmp_path / "f").open() as text:
        d = ensure_deferred(send_file(protocol, text))  # type: ignore[arg-type]
        assert "binary mode" in str(failure_result_of(d, ValueError))
    d = ensure_deferred(send_file(protocol, io.StringIO("text")))  # type: ignore[arg-type]
    assert "must return bytes" in str(failure_result_of(d, TypeError))

    class Unseekable(io.RawIOBase):
        def readable(self) -> bool:
            return True

    cases: list[tuple[dict[str, Any], str]] = [
        ({"offset": -1}, "offset must be"),
        ({"count": -1}, "count must be"),
        ({"chunk_size": 0}, "chunk_size must be"),
    ]
    for kwargs, message in cases:
        d = ensure_deferred(send_file(protocol, io.BytesIO(b"x"), **kwargs))
        assert message in str(failure_result_of(d, ValueError))
    d = ensure_deferred(send_file(protocol, Unseekable(), offset=1))
    assert "cannot seek" in str(failure_result_of(d, ValueError))
    d = ensure_deferred(send_file(Protocol(), io.BytesIO(b"x")))
    assert "not connected" in str(failure_result_of(d, ValueError))


def test_send_stream_asks_for_a_chunk_only_when_there_is_room() -> None:
    protocol = Protocol()
    transport = connected(protocol)
    buffered_at_request: list[int] = []
    finished: list[bool] = []

    async def chunks() -> AsyncIterator[bytes]:
        try:
            for i in range(100):
                buffered_at_request.append(transport.get_write_buffer_size())
                yield bytes([i]) * 10_000
        finally:
            finished.append(True)

    sending = ensure_deferred(send_stream(protocol, chunks()))
    received, _ = drain(transport, sending)
    assert success_result_of(sending) == 1_000_000
    assert received == b"".join(bytes([i]) * 10_000 for i in range(100))
    assert max(buffered_at_request) <= HIGH
    assert finished == [True]


def test_send_stream_closes_the_iterable_when_the_connection_is_lost() -> None:
    protocol = Protocol()
    transport = connected(protocol)
    finished: list[bool] = []

    async def endless() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"y" * 10_000
        finally:
            finished.append(True)

    sending = ensure_deferred(send_stream(protocol, endless()))
    protocol.connection_lost(None)
    failure_result_of(sending, ConnectionResetError)
    assert finished == [True]
    assert transport.aborted


def test_send_stream_takes_plain_iterables_and_checks_chunks() -> None:
    protocol = Protocol()
    transport = connected(protocol)
    assert success_result_of(ensure_deferred(send_stream(protocol, [b"a", bytearray(b"b")]))) == 2
    assert transport.value() == b"ab"
    bad = ensure_deferred(send_stream(protocol, [b"c", "d"]))  # type: ignore[list-item]
    assert "bytes-like" in str(failure_result_of(bad, TypeError))
    assert transport.aborted  # "c" went out: the stream is broken


# -- Forwarder on in-memory transports ---------------------------------------------


class Sink(Protocol):
    """A plain protocol that records its connection's end."""

    def __init__(self) -> None:
        self.lost: list[Exception | None] = []

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.lost.append(exc)


def forwarding(**sink_transport: Any) -> tuple[Forwarder, StringTransport, Sink, StringTransport]:
    source = Forwarder()
    source_transport = connected(source)
    sink = Sink()
    sink_transport_ = connected(sink, **sink_transport)
    source.forward_to(sink)
    return source, source_transport, sink, sink_transport_


def test_forwarder_holds_what_arrives_until_told_where_to() -> None:
    forwarder = Forwarder()
    transport = connected(forwarder)
    forwarder.data_received(b"early ")
    assert not transport.is_reading()  # nowhere to put data yet
    forwarder.data_received(b"bird")
    sink = Sink()
    sink_transport = connected(sink)
    forwarder.forward_to(sink)
    assert forwarder.sink is sink
    assert sink_transport.value() == b"early bird"
    assert transport.is_reading()
    forwarder.data_received(b"!")
    assert sink_transport.value() == b"early bird!"
    assert forwarder.forwarded == 11


def test_forwarder_pauses_its_source_while_the_sink_is_full() -> None:
    source, source_transport, _, sink_transport = forwarding()
    source.data_received(b"x" * HIGH)
    assert source_transport.is_reading()
    source.data_received(b"x")
    assert not source_transport.is_reading()
    sink_transport.clear()
    assert source_transport.is_reading()


def test_forwarder_starts_paused_when_the_sink_is_already_full() -> None:
    forwarder = Forwarder()
    transport = connected(forwarder)
    sink = Sink()
    sink_transport = connected(sink)
    sink_transport.write(b"x" * (HIGH + 1))
    forwarder.forward_to(sink)
    assert not transport.is_reading()
    sink_transport.clear()
    assert transport.is_reading()


def test_forwarder_passes_eof_as_a_half_close() -> None:
    source, source_transport, _, sink_transport = forwarding()
    source.data_received(b"last words")
    assert source.eof_received() is True
    assert sink_transport.value() == b"last words"
    assert sink_transport.eof_written
    assert not sink_transport.closed  # the sink may still talk back
    # Nothing writes into the source's connection, so it has nothing left to do.
    assert source_transport.closed


def test_forwarder_closes_a_sink_that_cannot_half_close() -> None:
    source, _, _, sink_transport = forwarding(can_write_eof=False)
    source.data_received(b"bye")
    source.eof_received()
    assert sink_transport.value() == b"bye"
    assert sink_transport.closed
    assert not sink_transport.aborted
    assert not sink_transport.eof_written


@pytest.mark.parametrize("error", [None, ConnectionResetError("reset")])
def test_source_lost_closes_the_sink(error: Exception | None) -> None:
    source, _, sink, sink_transport = forwarding()
    source.data_received(b"flushed on close")
    source.connection_lost(error)
    assert sink_transport.closed
    assert not sink_transport.aborted  # what was forwarded still goes out
    # The sink's own end no longer concerns the source.
    sink.connection_lost(None)


def test_sink_lost_closes_the_source() -> None:
    _, source_transport, sink, sink_transport = forwarding()
    sink_transport.close()
    sink.connection_lost(BrokenPipeError())
    assert source_transport.closed


def test_forwarder_drops_data_for_a_closing_sink() -> None:
    source, _, _, sink_transport = forwarding()
    sink_transport.close()
    source.data_received(b"too late")
    assert sink_transport.value() == b""
    assert source.forwarded == 0


def test_eof_and_loss_before_forwarding_are_passed_on_when_it_starts() -> None:
    forwarder = Forwarder()
    connected(forwarder)
    forwarder.data_received(b"all of it")
    assert forwarder.eof_received() is True
    forwarder.connection_lost(None)
    sink = Sink()
    sink_transport = connected(sink)
    forwarder.forward_to(sink)
    assert sink_transport.value() == b"all of it"
    assert sink_transport.eof_written
    assert sink_transport.closed


def test_forwarding_to_a_lost_sink_closes_the_source() -> None:
    forwarder = Forwarder()
    transport = connected(forwarder)
    sink = Sink()
    connected(sink)
    sink.connection_lost(None)
    forwarder.forward_to(sink)
    assert transport.closed


def test_forwarder_drops_a_peer_that_sends_too_much_before_forwarding(
    caplog: pytest.LogCaptureFixture,
) -> None:
    forwarder = Forwarder(max_held=100)
    transport = connected(forwarder)
    forwarder.data_received(b"x" * 100)
    assert not transport.is_closing()
    with caplog.at_level(logging.WARNING, logger="torsion.internet"):
        forwarder.data_received(b"x")
    assert transport.aborted
    (record,) = caplog.records
    assert "over 100 bytes before forwarding started" in record.getMessage()
    assert record.exc_info is None  # a line, not a traceback


def test_forwarding_wiring_errors() -> None:
    a, b = Forwarder(), Forwarder()
    with pytest.raises(ValueError, match="not connected"):
        a.forward_to(Sink())
    connected(a)
    with pytest.raises(ValueError, match="not connected"):
        splice(a, b)
    connected(b)
    with pytest.raises(ValueError, match="itself"):
        a.forward_to(a)
    with pytest.raises(ValueError, match="itself"):
        splice(a, a)
    splice(a, b)
    with pytest.raises(RuntimeError, match="already forwards"):
        a.forward_to(Sink())
    c = Forwarder()
    connected(c)
    with pytest.raises(RuntimeError, match="already forwards"):
        splice(c, b)
    assert c.sink is None  # nothing half-wired


# -- splice between two in-memory connections --------------------------------------


class Writer(Protocol):
    """The client that talks to the proxy; records what comes back."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.eof = False
        self.lost: list[Exception | None] = []

    def data_received(self, data: bytes) -> None:
        self.received += data

    def eof_received(self) -> bool | None:
        self.eof = True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.lost.append(exc)


class SlowReader(Protocol):
    """The far server: reads a bite at a time, answers at EOF, then closes."""

    def __init__(self, bite: int = 100_000) -> None:
        self.bite = bite
        self.answer = True
        self.received = bytearray()
        self.since_pause = 0
        self.eof = False
        self.lost: list[Exception | None] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        self.received += data
        self.since_pause += len(data)
        if self.since_pause >= self.bite:
            self.since_pause = 0
            self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        self.eof = True
        if self.answer:
            self.transport.write(b"got %d bytes" % len(self.received))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.lost.append(exc)


class Watched(Forwarder):
    """A forwarder that records its sink's buffer after every write, and its pauses."""

    def __init__(self) -> None:
        super().__init__()
        self.sink_buffer: list[int] = []
        self.pauses = 0
        self.lost: list[Exception | None] = []

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.sink is not None:
            self.sink_buffer.append(self.sink.transport.get_write_buffer_size())

    def pause_producing(self) -> None:
        super().pause_producing()
        self.pauses += 1

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.lost.append(exc)


def proxied() -> tuple[Writer, Watched, Watched, SlowReader, Any, Any]:
    """writer <-> inbound ==splice== outbound <-> reader, all in memory."""
    writer, inbound = Writer(), Watched()
    left = loopback(writer, inbound)
    outbound, reader = Watched(), SlowReader()
    right = loopback(outbound, reader)
    splice(inbound, outbound)
    return writer, inbound, outbound, reader, left, right


def test_splice_keeps_memory_bounded_with_a_slow_reader() -> None:
    writer, inbound, outbound, reader, left, _ = proxied()
    data = payload(2 * 1024 * 1024)
    chunk = 8 * 1024
    sending = ensure_deferred(
        send_stream(writer, (data[i : i + chunk] for i in range(0, len(data), chunk)))
    )
    # The reader has not read yet: the proxy filled up, stopped reading, and
    # the writer is held back in turn.
    assert_no_result(sending)
    assert inbound.pauses == 1
    assert not left.server_transport.is_reading()
    assert left.client_transport.get_write_buffer_size() > HIGH  # the writer's own buffer
    while not sending.called:
        reader.transport.resume_reading()
    assert success_result_of(sending) == len(data)
    writer.transport.write_eof()
    while not reader.eof:
        reader.transport.resume_reading()
    assert bytes(reader.received) == data
    assert inbound.pauses > 5
    # What waited in the proxy never passed the mark plus one read.
    assert max(inbound.sink_buffer) <= HIGH + chunk
    # The reader's answer came back through the half-closed pipe, then the
    # close, and every connection is gone.
    assert bytes(writer.received) == b"got %d bytes" % len(data)
    assert writer.eof
    assert writer.lost == [None]
    assert inbound.lost == [None]
    assert outbound.lost == [None]
    assert reader.lost == [None]
    assert inbound.forwarded == len(data)
    assert outbound.forwarded == len(writer.received)


def test_splice_passes_half_closes_both_ways_before_closing() -> None:
    writer, inbound, outbound, reader, left, right = proxied()
    reader.transport.resume_reading()
    reader.bite = 10**9
    writer.transport.write(b"question")
    writer.transport.write_eof()
    # The reader answered at EOF and closed; the answer went all the way back.
    assert bytes(reader.received) == b"question"
    assert bytes(writer.received) == b"got 8 bytes"
    assert [writer.lost, inbound.lost, outbound.lost, reader.lost] == [[None]] * 4
    assert left.client_transport.is_closing()
    assert right.server_transport.is_closing()


def test_splice_reader_half_closes_first() -> None:
    writer, inbound, outbound, reader, _, _ = proxied()
    reader.transport.resume_reading()
    reader.answer = False
    reader.transport.write(b"banner")
    reader.transport.write_eof()  # the far side is done talking, still listens
    assert bytes(writer.received) == b"banner"
    assert writer.eof  # the writer's eof_received returned None: it closes
    assert [writer.lost, inbound.lost, outbound.lost, reader.lost] == [[None]] * 4


@pytest.mark.parametrize("side", ["writer", "reader"])
def test_splice_loss_on_either_side_closes_the_other(side: str) -> None:
    writer, inbound, outbound, reader, _, _ = proxied()
    reader.transport.resume_reading()
    writer.transport.write(b"hello")
    assert bytes(reader.received) == b"hello"
    (writer if side == "writer" else reader).transport.abort()
    assert len(writer.lost) == len(inbound.lost) == len(outbound.lost) == len(reader.lost) == 1
    aborted, other = (writer, reader) if side == "writer" else (reader, writer)
    assert aborted.lost == [None]
    # The other side saw the proxy close, cleanly, not a reset.
    assert other.lost == [None]
    assert other.eof


# -- over real TCP on both loops --------------------------------------------------

SOCKET_BUFFER = 64 * 1024
MAX_READ = 256 * 1024  # the most asyncio and uvloop read from a socket at a time


def shrink(transport: asyncio.BaseTransport, option: int) -> None:
    """Small kernel buffers, so that a few MB fill them and the sender blocks."""
    transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)


class FileServer(Protocol):
    """The sending side: records its write buffer at every pause."""

    def __init__(self, made: Deferred[FileServer]) -> None:
        self.made = made
        self.paused: Deferred[None] = Deferred()
        self.buffer_at_pause: list[int] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        shrink(transport, socket.SO_SNDBUF)
        self.made.callback(self)

    def pause_writing(self) -> None:
        super().pause_writing()
        # The buffer only grows by writes, and none come while paused: each
        # pause is a peak.
        self.buffer_at_pause.append(self.transport.get_write_buffer_size())
        if not self.paused.called:
            self.paused.callback(None)


class Held(Protocol):
    """Stops reading at its first data, until ``release()``.

    Not from connection_made: asyncio before 3.12 and uvloop start reading
    after it whatever it asked for (python/cpython#103607).
    """

    def __init__(self) -> None:
        self.held = True
        self.received = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        shrink(transport, socket.SO_RCVBUF)

    def data_received(self, data: bytes) -> None:
        self.received += data
        if self.held:
            self.transport.pause_reading()

    def release(self) -> None:
        self.held = False
        self.transport.resume_reading()


class HeldClient(Held):
    """Reads one socket-full, holds until released, then collects ``expected`` bytes."""

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.expected = expected
        self.done: Deferred[bytes] = Deferred()
        self.lost: Deferred[Exception | None] = Deferred()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if len(self.received) >= self.expected and not self.done.called:
            self.done.callback(bytes(self.received))

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.lost.callback(exc)


class SendfileSpy:
    """Wraps ``os.sendfile``: counts calls and notices when the socket is full."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self.blocked: Deferred[None] = Deferred()
        self._real = os.sendfile
        monkeypatch.setattr(os, "sendfile", self)

    def __call__(self, out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        self.calls += 1
        try:
            sent = self._real(out_fd, in_fd, offset, count)
        except BlockingIOError:
            self._full()
            raise
        if 0 < sent < count:  # short of the end of the file: the socket is full
            self._full()
        return sent

    def _full(self) -> None:
        if not self.blocked.called:
            self.blocked.callback(None)


@pytest.fixture
def big_file(tmp_path: Path) -> Iterator[tuple[bytes, io.BufferedReader]]:
    data = payload(4 * 1024 * 1024)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    with path.open("rb") as file:
        yield data, file


def serve_one(reactor: Reactor, wait: Wait, expected: int) -> tuple[Any, FileServer, HeldClient]:
    """Listen, connect a HeldClient, and return both ends once both are connected."""
    accepted: Deferred[FileServer] = Deferred()
    listener = reactor.listen_tcp(0, lambda _: FileServer(accepted), interface="127.0.0.1")
    client = wait(
        reactor, reactor.connect_tcp("127.0.0.1", listener.port, lambda _: HeldClient(expected))
    )
    return listener, wait(reactor, accepted), client


@pytest.mark.integration
def test_send_file_over_tcp_to_a_slow_reader(
    real_reactor: Reactor,
    wait: Wait,
    loop_name: str,
    monkeypatch: pytest.MonkeyPatch,
    big_file: tuple[bytes, io.BufferedReader],
) -> None:
    r = real_reactor
    data, file = big_file
    spy = SendfileSpy(monkeypatch)
    listener, server, client = serve_one(r, wait, len(data))
    sending = r.loop.create_task(send_file(server, file, offset=0))
    # The reader holds back until the sender is blocked on the full socket:
    # os.sendfile's EAGAIN on the zero-copy path, pause_writing otherwise.
    wait(r, spy.blocked if loop_name == "asyncio" else server.paused)
    assert not sending.done()
    client.release()
    assert wait(r, sending) == len(data)
    assert wait(r, client.done) == data
    assert file.tell() == len(data)
    if loop_name == "asyncio":
        # Zero-copy: the kernel sent it, and nothing waited in the transport.
        assert spy.calls > 1
        assert server.buffer_at_pause == []
    else:
        # uvloop has no sendfile: chunks, each waiting for room.
        assert spy.calls == 0
        assert server.buffer_at_pause
        assert max(server.buffer_at_pause) <= HIGH + DEFAULT_CHUNK_SIZE
    # The connection is still good for more.
    server.transport.write(b"trailer")
    client.expected += len(b"trailer")
    client.done = Deferred()
    assert wait(r, client.done).endswith(b"trailer")
    client.transport.close()
    wait(r, client.lost)
    wait(r, listener.stop_listening())


@pytest.mark.integration
def test_send_file_object_over_tcp(
    real_reactor: Reactor, wait: Wait, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = real_reactor
    spy = SendfileSpy(monkeypatch)
    data = payload(1024 * 1024)
    listener, server, client = serve_one(r, wait, len(data) - 100)
    client.release()
    # No fileno(): the stdlib loop turns it down, and chunks go instead.
    assert wait(r, send_file(server, io.BytesIO(data), offset=100)) == len(data) - 100
    assert wait(r, client.done) == data[100:]
    assert spy.calls == 0
    client.transport.close()
    wait(r, client.lost)
    wait(r, listener.stop_listening())


@pytest.mark.integration
def test_send_file_over_tcp_fails_cleanly_when_the_reader_hangs_up(
    real_reactor: Reactor,
    wait: Wait,
    loop_name: str,
    monkeypatch: pytest.MonkeyPatch,
    big_file: tuple[bytes, io.BufferedReader],
) -> None:
    r = real_reactor
    data, file = big_file
    spy = SendfileSpy(monkeypatch)
    listener, server, client = serve_one(r, wait, len(data))
    sending = r.loop.create_task(send_file(server, file))
    wait(r, spy.blocked if loop_name == "asyncio" else server.paused)
    client.transport.abort()
    with pytest.raises(ConnectionError):
        wait(r, sending)
    assert server.transport.is_closing()
    wait(r, client.lost)
    wait(r, listener.stop_listening())


class Backend(Held):
    """The far server behind the proxy: held until released, answers at EOF."""

    def __init__(self) -> None:
        super().__init__()
        self.lost: Deferred[Exception | None] = Deferred()

    def eof_received(self) -> bool | None:
        self.transport.write(b"got %d bytes" % len(self.received))
        return None  # and close

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.lost.callback(exc)


class ProxyClient(Protocol):
    """Sends its payload and EOF through the proxy; collects the answer."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.received = bytearray()
        self.lost: Deferred[Exception | None] = Deferred()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.transport.write(self.data)
        self.transport.write_eof()

    def data_received(self, data: bytes) -> None:
        self.received += data

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.lost.callback(exc)


class Outbound(Forwarder):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        shrink(transport, socket.SO_SNDBUF)


@pytest.mark.integration
def test_port_forwarding_over_tcp_with_a_slow_backend(real_reactor: Reactor, wait: Wait) -> None:
    r = real_reactor
    backends: list[Backend] = []

    def backend_factory(_: Address) -> Backend:
        backends.append(Backend())
        return backends[-1]

    backend_listener = r.listen_tcp(0, backend_factory, interface="127.0.0.1")
    proxies: list[Inbound] = []
    paused: Deferred[None] = Deferred()

    class Inbound(Watched):
        """What a port forwarder is: connect out, then splice."""

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            outgoing = r.connect_tcp("127.0.0.1", backend_listener.port, lambda _: Outbound())
            outgoing.deferred.add_callbacks(
                lambda outbound: splice(self, outbound), lambda _: self.transport.abort()
            )

        def pause_producing(self) -> None:
            super().pause_producing()
            if not paused.called:
                paused.callback(None)

    def proxy_factory(_: Address) -> Inbound:
        proxies.append(Inbound())
        return proxies[-1]

    proxy_listener = r.listen_tcp(0, proxy_factory, interface="127.0.0.1")
    data = payload(4 * 1024 * 1024)
    client = wait(r, r.connect_tcp("127.0.0.1", proxy_listener.port, lambda _: ProxyClient(data)))
    # The backend reads nothing until the proxy had to stop reading.
    wait(r, paused)
    (inbound,) = proxies
    (backend,) = backends
    assert not inbound.transport.is_reading()
    backend.release()
    assert wait(r, client.lost) is None
    assert bytes(backend.received) == data
    assert bytes(client.received) == b"got %d bytes" % len(data)
    # The proxy held at most the mark plus one socket read for the slow side.
    assert max(inbound.sink_buffer) <= HIGH + MAX_READ
    assert inbound.forwarded == len(data)
    wait(r, backend.lost)
    assert inbound.lost == [None]
    wait(r, proxy_listener.stop_listening())
    wait(r, backend_listener.stop_listening())
