"""The classic services (RFC 862-868), on in-memory transports and over real sockets."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from collections.abc import Callable
from typing import Any

from torsion.defer import Deferred
from torsion.internet import DatagramProtocol, Reactor
from torsion.protocols import (
    Chargen,
    Daytime,
    Discard,
    Echo,
    Time,
    UDPChargen,
    UDPDaytime,
    UDPDiscard,
    UDPEcho,
    UDPTime,
    chargen_lines,
    daytime_text,
    rfc868_time,
)
from torsion.testing import Clock, StringTransport


def test_echo_sends_back_each_chunk_and_half_closes_on_eof() -> None:
    transport = StringTransport()
    echo = Echo()
    echo.connection_made(transport)
    echo.data_received(b"hello ")
    echo.data_received(b"world\n")
    assert transport.value() == b"hello world\n"
    assert echo.eof_received() is None
    assert transport.eof_written


def test_echo_stops_reading_while_the_peer_does_not_read() -> None:
    transport = StringTransport()
    echo = Echo()
    echo.connection_made(transport)
    echo.pause_writing()
    assert not transport.is_reading()
    echo.resume_writing()
    assert transport.is_reading()


async def test_echo_over_tcp(reactor: Reactor) -> None:
    listener = reactor.listen_tcp(0, lambda _: Echo(), interface="127.0.0.1")
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    payload = bytes(range(256)) * 4096  # 1 MiB: more than any socket buffer holds
    writer.write(payload)
    writer.write_eof()
    echoed = await reader.read()
    writer.close()
    await writer.wait_closed()
    await listener.stop_listening()
    assert echoed == payload


# -- chargen ------------------------------------------------------------------------------


def test_chargen_lines_follow_rfc_864() -> None:
    lines = chargen_lines(96).split(b"\r\n")
    assert lines[0] == bytes(range(0x20, 0x20 + 72))
    assert lines[1] == bytes(range(0x21, 0x21 + 72))
    # Line 24 is the first to wrap from "~" back to " ".
    assert lines[24] == bytes(range(0x38, 0x7F)) + b" "
    assert lines[95] == lines[0]  # a cycle of 95 lines
    assert all(len(line) == 72 for line in lines[:96])
    assert chargen_lines(2, first=94) == chargen_lines(96)[94 * 74 :]


class PausingTransport(StringTransport):
    """Pauses its protocol once more than ``limit`` bytes are buffered, as asyncio does."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.protocol: Chargen | None = None
        self.paused = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        super().write(data)
        if not self.paused and len(self.value()) > self.limit and self.protocol is not None:
            self.paused = True
            self.protocol.pause_writing()


class Turns:
    """A clock whose scheduled calls run one turn at a time, as the event loop runs them."""

    def __init__(self) -> None:
        self.clock = Clock()

    def call_later(self, delay: float, f: Callable[..., object], /, *args: Any) -> Any:
        return self.clock.call_later(delay, f, *args)

    def seconds(self) -> float:
        return self.clock.seconds()

    def turn(self) -> None:
        """Run what is due now, but not what that schedules (the next turn's)."""
        due = [call for call in self.clock.get_delayed_calls() if call.time <= self.seconds()]
        for call in due:
            call.cancel()
            call.func(*call.args)


def test_chargen_writes_a_burst_per_turn_until_paused_and_resumes() -> None:
    turns = Turns()
    transport = PausingTransport(limit=200_000)
    chargen = Chargen(turns)
    transport.protocol = chargen
    chargen.connection_made(transport)
    assert transport.value() == b""  # nothing until the loop turns
    turns.turn()
    first = len(transport.value())
    assert 0 < first <= 72_000  # one burst per turn (64 KiB, in whole cycles)
    chargen.data_received(b"ignored")  # the peer's bytes are thrown away
    bursts = 1
    while not transport.paused:
        turns.turn()
        bursts += 1
    assert bursts == 3
    assert turns.clock.get_delayed_calls() == []  # paused: nothing scheduled
    sent = transport.value()
    assert sent == chargen_lines(95) * (len(sent) // (95 * 74))  # whole cycles, in order
    assert len(sent) < 200_000 + 72_000  # the write that paused it was the last
    transport.clear()
    chargen.resume_writing()
    chargen.resume_writing()  # unpaired resumes schedule one burst, not two
    assert len(turns.clock.get_delayed_calls()) == 1
    turns.turn()
    assert transport.value()[:74] == chargen_lines(1)
    chargen.connection_lost(None)
    assert turns.clock.get_delayed_calls() == []
    chargen.resume_writing()  # after the end, nothing restarts it
    assert turns.clock.get_delayed_calls() == []


def test_chargen_stops_when_the_transport_closes() -> None:
    clock = Clock()
    transport = StringTransport()
    chargen = Chargen(clock)
    chargen.connection_made(transport)
    transport.close()
    clock.advance(0)
    assert transport.value() == b""
    assert clock.get_delayed_calls() == []


async def test_chargen_over_tcp_keeps_its_buffer_bounded_for_a_slow_reader(
    reactor: Reactor,
) -> None:
    paused: Deferred[Chargen] = Deferred()

    class Watched(Chargen):
        def pause_writing(self) -> None:
            super().pause_writing()
            if not paused.called:
                paused.callback(self)

    listener = reactor.listen_tcp(0, lambda _: Watched(reactor), interface="127.0.0.1")
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port, limit=2**16)
    head = await reader.readexactly(74 * 95 * 3)
    assert head == chargen_lines(95) * 3
    # Stop reading: the server must pause, and its buffer stay near the high-water mark.
    server = await paused
    high_water = server.transport.get_write_buffer_limits()[1]
    assert server.transport.get_write_buffer_size() <= high_water + 72_000
    writer.close()
    await writer.wait_closed()
    await listener.stop_listening()


# -- daytime and time -------------------------------------------------------------------


def test_time_is_seconds_since_1900_as_rfc_868_says() -> None:
    assert rfc868_time(0) == struct.pack("!I", 2_208_988_800)  # 1970-01-01
    assert rfc868_time(189_302_400) == struct.pack("!I", 2_398_291_200)  # 1976-01-01
    assert rfc868_time(2**32 - 2_208_988_800) == b"\0\0\0\0"  # the 2036 wrap


def test_daytime_text_is_english_whatever_the_locale() -> None:
    assert daytime_text(0) == b"Thursday, January 1, 1970 00:00:00-UTC\r\n"
    assert daytime_text(1_795_555_805) == b"Tuesday, November 24, 2026 21:30:05-UTC\r\n"


def test_daytime_and_time_answer_then_close() -> None:
    for protocol, answer in (
        (Daytime(lambda: 0.0), daytime_text(0)),
        (Time(lambda: 0.0), rfc868_time(0)),
    ):
        transport = StringTransport()
        protocol.connection_made(transport)
        assert transport.value() == answer
        assert transport.closed


def test_discard_keeps_nothing() -> None:
    transport = StringTransport()
    discard = Discard()
    discard.connection_made(transport)
    discard.data_received(b"x" * 100_000)
    assert transport.value() == b""
    assert not transport.closed


async def test_daytime_and_time_over_tcp(reactor: Reactor) -> None:
    for protocol, answer in ((Daytime, daytime_text(7.0)), (Time, rfc868_time(7.0))):
        listener = reactor.listen_tcp(
            0, lambda _, p=protocol: p(lambda: 7.0), interface="127.0.0.1"
        )
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        assert await reader.read() == answer  # then EOF: the server closed
        writer.close()
        await writer.wait_closed()
        await listener.stop_listening()


# -- UDP ----------------------------------------------------------------------------------


class Datagrams(asyncio.DatagramTransport):
    """Records what a UDP protocol sends."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[bytes, Any]] = []
        self.closed = False

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        self.sent.append((bytes(data), addr))

    def is_closing(self) -> bool:
        return self.closed


def serve(
    protocol: DatagramProtocol, data: bytes, addr: tuple[str, int]
) -> list[tuple[bytes, Any]]:
    transport = Datagrams()
    protocol.connection_made(transport)
    protocol.datagram_received(data, addr)
    return transport.sent


CLIENT = ("192.0.2.7", 40000)


def test_udp_services_answer_as_their_rfcs_say() -> None:
    assert serve(UDPEcho(), b"hello", CLIENT) == [(b"hello", CLIENT)]
    assert serve(UDPDiscard(), b"hello", CLIENT) == []
    assert serve(UDPDaytime(lambda: 0.0), b"", CLIENT) == [(daytime_text(0), CLIENT)]
    assert serve(UDPTime(lambda: 0.0), b"", CLIENT) == [(rfc868_time(0), CLIENT)]
    lengths = set()
    for seed in range(40):
        [(answer, to)] = serve(UDPChargen(random.Random(seed)), b"", CLIENT)
        assert to == CLIENT
        assert len(answer) <= 512
        assert answer == chargen_lines(7)[: len(answer)]
        lengths.add(len(answer))
    assert len(lengths) > 1  # the length varies


def test_udp_services_do_not_answer_privileged_ports() -> None:
    """A forged source on another service's port would start an endless ping-pong."""
    for service in (UDPEcho(), UDPChargen(), UDPDaytime(), UDPTime()):
        assert serve(service, b"x", ("192.0.2.7", 7)) == []
        assert serve(service, b"x", ("192.0.2.7", 19)) == []
    assert serve(UDPEcho(answer_privileged_ports=True), b"x", ("192.0.2.7", 7)) == [
        (b"x", ("192.0.2.7", 7))
    ]


def test_udp_services_drop_answers_while_the_send_buffer_is_full() -> None:
    echo = UDPEcho()
    transport = Datagrams()
    echo.connection_made(transport)
    echo.pause_writing()
    echo.datagram_received(b"x", CLIENT)
    assert transport.sent == []
    echo.resume_writing()
    echo.datagram_received(b"y", CLIENT)
    assert transport.sent == [(b"y", CLIENT)]


async def test_udp_echo_and_time_over_real_sockets(reactor: Reactor) -> None:
    loop = asyncio.get_running_loop()
    for service, request, expected in (
        (UDPEcho(), b"ping", b"ping"),
        (UDPTime(lambda: 0.0), b"", rfc868_time(0)),
    ):
        port = reactor.listen_udp(0, service, interface="127.0.0.1")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.setblocking(False)
            client.bind(("127.0.0.1", 0))
            await loop.sock_sendto(client, request, ("127.0.0.1", port.port))
            answer, sender = await asyncio.wait_for(loop.sock_recvfrom(client, 1024), 10)
        assert answer == expected
        assert sender == ("127.0.0.1", port.port)
        await port.stop_listening()
