"""Length-prefixed strings: the decoder, the encoder and Int8/16/32StringReceiver."""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torsion.errors import StringTooLongError
from torsion.internet import Reactor
from torsion.protocols._prefixed import (
    Int8StringReceiver,
    Int16StringReceiver,
    Int32StringReceiver,
    LengthPrefixedDecoder,
    encode_length_prefixed,
)
from torsion.testing import StringTransport, loopback

LOOPS = [
    pytest.param("asyncio", marks=pytest.mark.torsion_loop("asyncio")),
    pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop")),
]
SIZES = [1, 2, 4]
RECEIVERS = {1: Int8StringReceiver, 2: Int16StringReceiver, 4: Int32StringReceiver}


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(cut, len(data)) for cut in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def decode(size: int, *chunks: bytes, max_length: int = 99_999) -> list[bytes]:
    strings: list[bytes] = []
    decoder = LengthPrefixedDecoder(strings.append, prefix_length=size, max_length=max_length)
    for chunk in chunks:
        decoder.receive_data(chunk)
    return strings


def test_encode_is_big_endian() -> None:
    assert encode_length_prefixed(b"abc", prefix_length=1) == b"\x03abc"
    assert encode_length_prefixed(b"abc", prefix_length=2) == b"\x00\x03abc"
    assert encode_length_prefixed(b"x" * 258) == b"\x00\x00\x01\x02" + b"x" * 258


def test_encode_at_and_over_the_prefix_maximum() -> None:
    assert encode_length_prefixed(b"x" * 255, prefix_length=1)[:1] == b"\xff"
    assert encode_length_prefixed(b"x" * 65535, prefix_length=2)[:2] == b"\xff\xff"
    with pytest.raises(ValueError, match="too long for a 1-byte length"):
        encode_length_prefixed(b"x" * 256, prefix_length=1)
    with pytest.raises(ValueError, match="too long for a 2-byte length"):
        encode_length_prefixed(b"x" * 65536, prefix_length=2)
    with pytest.raises(ValueError, match="prefix_length"):
        encode_length_prefixed(b"x", prefix_length=3)
    with pytest.raises(ValueError, match="prefix_length"):
        LengthPrefixedDecoder(print, prefix_length=8)
    assert LengthPrefixedDecoder(print, prefix_length=2).prefix_length == 2


@pytest.mark.parametrize("size", SIZES)
def test_strings_whole_and_one_byte_at_a_time(size: int) -> None:
    strings = [b"hello", b"", b"\x00\xff" * 50, b"x"]
    stream = b"".join(encode_length_prefixed(s, prefix_length=size) for s in strings)
    assert decode(size, stream) == strings
    assert decode(size, *bytewise(stream)) == strings


@pytest.mark.parametrize("size", SIZES)
def test_an_empty_string_at_the_end_of_a_read_is_delivered_at_once(size: int) -> None:
    assert decode(size, b"\x00" * size) == [b""]


@pytest.mark.parametrize(("size", "maximum"), [(1, 0xFF), (2, 0xFFFF)])
def test_the_largest_string_a_prefix_can_announce(size: int, maximum: int) -> None:
    payload = bytes(range(256)) * (maximum // 256) + b"z" * (maximum % 256)
    stream = encode_length_prefixed(payload, prefix_length=size)
    assert stream[:size] == b"\xff" * size
    assert decode(size, stream, max_length=maximum) == [payload]


def test_a_32_bit_length_at_its_maximum_is_refused_without_holding_anything() -> None:
    lengths: list[int] = []
    decoder = LengthPrefixedDecoder(print, length_limit_exceeded=lengths.append)
    decoder.receive_data(b"\xff\xff\xff\xff" + b"x" * 1000)
    assert lengths == [0xFFFFFFFF]
    assert decoder.buffered == 0


@pytest.mark.parametrize("size", SIZES)
def test_exactly_max_length_is_fine_one_more_is_too_long(size: int) -> None:
    strings: list[bytes] = []
    lengths: list[int] = []
    decoder = LengthPrefixedDecoder(
        strings.append, prefix_length=size, length_limit_exceeded=lengths.append, max_length=3
    )
    for s in [b"abc", b"abcd", b"ok"]:
        decoder.receive_data(encode_length_prefixed(s, prefix_length=size))
    assert strings == [b"abc", b"ok"]
    assert lengths == [4]


def test_without_a_callback_a_string_too_long_raises_and_is_skipped() -> None:
    strings: list[bytes] = []
    decoder = LengthPrefixedDecoder(strings.append, prefix_length=2, max_length=3)
    with pytest.raises(StringTooLongError) as caught:
        decoder.receive_data(b"\x00\x01a\x00\x05abc")
    assert (caught.value.length, caught.value.max_length) == (5, 3)
    decoder.receive_data(b"de\x00\x01b")
    assert strings == [b"a", b"b"]


def test_a_payload_spread_over_many_reads_is_held_as_parts() -> None:
    payload = bytes(range(256)) * 1000
    stream = encode_length_prefixed(payload)
    strings: list[bytes] = []
    decoder = LengthPrefixedDecoder(strings.append, max_length=len(payload))
    for start in range(0, len(stream), 1000):
        decoder.receive_data(stream[start : start + 1000])
        assert len(decoder._buffer) < 4
    assert strings == [payload]
    assert decoder.buffered == 0


def test_pausing_closing_and_feeding_from_callbacks() -> None:
    strings: list[bytes] = []

    def string_received(string: bytes) -> None:
        strings.append(string)
        if string == b"wait":
            decoder.pause()
        elif string == b"feed":
            decoder.receive_data(b"\x03fed")
        elif string == b"end":
            decoder.close()

    decoder = LengthPrefixedDecoder(string_received, prefix_length=1)
    decoder.receive_data(b"\x04feed\x01x")
    assert strings == [b"feed", b"x", b"fed"]

    strings.clear()
    decoder = LengthPrefixedDecoder(string_received, prefix_length=1)
    decoder.receive_data(b"\x01a\x04wait\x01b\x03en")
    assert strings == [b"a", b"wait"]
    assert decoder.paused
    decoder.receive_data(b"d\x01c")
    assert decoder.buffered == len(b"\x01b\x03end\x01c")
    decoder.resume()
    assert strings == [b"a", b"wait", b"b", b"end"]
    assert decoder.closed
    assert decoder.buffered == 0


@settings(max_examples=200)
@given(
    size=st.sampled_from(SIZES),
    strings=st.lists(st.binary(max_size=300), max_size=20),
    limit=st.integers(0, 300),
    cuts=st.lists(st.integers(0, 7000), max_size=30),
)
def test_strings_round_trip_in_any_chunking(
    size: int, strings: list[bytes], limit: int, cuts: list[int]
) -> None:
    strings = [s[:255] for s in strings] if size == 1 else strings
    stream = b"".join(encode_length_prefixed(s, prefix_length=size) for s in strings)
    got: list[bytes] = []
    lengths: list[int] = []
    decoder = LengthPrefixedDecoder(
        got.append, prefix_length=size, length_limit_exceeded=lengths.append, max_length=limit
    )
    for chunk in chunked(stream, cuts):
        decoder.receive_data(chunk)
    assert got == [s for s in strings if len(s) <= limit]
    assert lengths == [len(s) for s in strings if len(s) > limit]
    assert decoder.buffered == 0


# -- the protocols ---------------------------------------------------------------------


def test_receivers_have_their_prefix_and_default_limit() -> None:
    assert (Int8StringReceiver.prefix_length, Int8StringReceiver().max_length) == (1, 255)
    assert (Int16StringReceiver.prefix_length, Int16StringReceiver().max_length) == (2, 65535)
    assert (Int32StringReceiver.prefix_length, Int32StringReceiver().max_length) == (4, 99_999)


@pytest.mark.parametrize("size", SIZES)
def test_send_string_and_receive(size: int) -> None:
    received: list[bytes] = []

    class Receiver(RECEIVERS[size]):  # type: ignore[misc,valid-type]
        def string_received(self, string: bytes) -> None:
            received.append(string)

    protocol = Receiver()
    transport = StringTransport(protocol)
    protocol.connection_made(transport)
    protocol.send_string(b"hi")
    assert transport.value() == b"\x00" * (size - 1) + b"\x02hi"
    protocol.data_received(transport.value() * 2)
    assert received == [b"hi", b"hi"]


def test_send_string_refuses_what_the_prefix_cannot_say() -> None:
    protocol = Int8StringReceiver()
    transport = StringTransport(protocol)
    protocol.connection_made(transport)
    with pytest.raises(ValueError, match="too long"):
        protocol.send_string(b"x" * 256)
    assert transport.value() == b""


def test_too_long_closes_the_connection_and_logs_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Small(Int32StringReceiver):
        max_length = 10

        def __init__(self) -> None:
            self.strings: list[bytes] = []

        def string_received(self, string: bytes) -> None:
            self.strings.append(string)

    protocol = Small()
    transport = StringTransport(protocol)
    protocol.connection_made(transport)
    with caplog.at_level(logging.INFO, logger="torsion.protocols"):
        protocol.data_received(encode_length_prefixed(b"ok") + encode_length_prefixed(b"x" * 11))
        protocol.data_received(encode_length_prefixed(b"late"))
    assert protocol.strings == [b"ok"]
    assert transport.closed
    [record] = caplog.records
    assert record.exc_info is None
    assert "11 bytes is longer than 10" in record.getMessage()


def test_int16_receivers_over_a_loopback_with_pausing() -> None:
    class Server(Int16StringReceiver):
        def string_received(self, string: bytes) -> None:
            self.send_string(string.upper())

    class Client(Int16StringReceiver):
        def __init__(self) -> None:
            self.strings: list[bytes] = []

        def string_received(self, string: bytes) -> None:
            self.strings.append(string)
            self.pause_receiving()

    client, server = Client(), Server()
    pair = loopback(client, server)
    client.send_string(b"a")
    client.send_string(b"b")
    assert client.strings == [b"A"]
    assert not pair.client_transport.is_reading()
    client.resume_receiving()
    assert client.strings == [b"A", b"B"]
    client.resume_receiving()
    assert pair.client_transport.is_reading()
    pair.client_transport.close()


@pytest.mark.parametrize("loop", LOOPS)
async def test_int32_receiver_over_tcp(reactor: Reactor, loop: str) -> None:
    done: asyncio.Future[list[bytes]] = reactor.loop.create_future()

    class Server(Int32StringReceiver):
        max_length = 1 << 20

        def __init__(self) -> None:
            self.strings: list[bytes] = []

        def string_received(self, string: bytes) -> None:
            self.strings.append(string)
            if string == b"quit":
                self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            done.set_result(self.strings)

    listener = reactor.listen_tcp(0, lambda _: Server(), interface="127.0.0.1")
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    strings = [b"s%d" % i for i in range(1000)] + [bytes(range(256)) * 4096]
    writer.write(b"".join(encode_length_prefixed(s) for s in strings))
    for byte in bytewise(encode_length_prefixed(b"quit") + encode_length_prefixed(b"no")):
        writer.write(byte)
        await writer.drain()
    received = await asyncio.wait_for(done, 10)
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()
    await listener.stop_listening()
    assert received == [*strings, b"quit"]
