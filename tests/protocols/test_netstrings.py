"""Netstrings: the decoder, the encoder and NetstringReceiver."""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torsion.errors import NetstringParseError, StringTooLongError
from torsion.internet import Reactor
from torsion.protocols._netstrings import NetstringDecoder, NetstringReceiver, encode_netstring
from torsion.testing import StringTransport, loopback

LOOPS = [
    pytest.param("asyncio", marks=pytest.mark.torsion_loop("asyncio")),
    pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop")),
]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(cut, len(data)) for cut in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def decode(*chunks: bytes, **kwargs: int) -> list[bytes]:
    strings: list[bytes] = []
    decoder = NetstringDecoder(strings.append, **kwargs)
    for chunk in chunks:
        decoder.receive_data(chunk)
    return strings


def test_encode() -> None:
    assert encode_netstring(b"hello world!") == b"12:hello world!,"
    assert encode_netstring(b"") == b"0:,"


def test_netstrings_whole_and_one_byte_at_a_time() -> None:
    stream = b"5:hello,0:,1:,,12:hello world!,"
    expected = [b"hello", b"", b",", b"hello world!"]
    assert decode(stream) == expected
    assert decode(*bytewise(stream)) == expected


def test_a_payload_spread_over_many_reads_is_joined_once() -> None:
    payload = bytes(range(256)) * 1000
    stream = encode_netstring(payload)
    chunks = [stream[i : i + 1000] for i in range(0, len(stream), 1000)]
    strings: list[bytes] = []
    decoder = NetstringDecoder(strings.append, max_length=len(payload))
    for chunk in chunks[:-1]:
        decoder.receive_data(chunk)
        # Held as parts, never as one growing buffer.
        assert len(decoder._buffer) < 30
    decoder.receive_data(chunks[-1])
    assert strings == [payload]
    assert decoder.buffered == 0


def test_exactly_max_length_is_fine_one_more_is_too_long() -> None:
    lengths: list[int] = []
    strings: list[bytes] = []
    decoder = NetstringDecoder(strings.append, length_limit_exceeded=lengths.append, max_length=3)
    decoder.receive_data(b"3:abc,4:abcd,2:ok,")
    assert strings == [b"abc", b"ok"]
    assert lengths == [4]


def test_a_string_too_long_is_reported_when_its_length_is_read_and_never_held() -> None:
    lengths: list[int] = []
    strings: list[bytes] = []
    decoder = NetstringDecoder(strings.append, length_limit_exceeded=lengths.append, max_length=10)
    decoder.receive_data(b"1000000:")
    assert lengths == [1_000_000]
    for _ in range(10):
        decoder.receive_data(b"x" * 100_000)
        assert decoder.buffered == 0
    decoder.receive_data(b",2:ok,")
    assert strings == [b"ok"]


def test_without_a_callback_a_string_too_long_raises() -> None:
    strings: list[bytes] = []
    decoder = NetstringDecoder(strings.append, max_length=3)
    with pytest.raises(StringTooLongError) as caught:
        decoder.receive_data(b"1:a,5:abcde,1:b,")
    assert (caught.value.length, caught.value.max_length) == (5, 3)
    assert strings == [b"a"]
    decoder.receive_data(b"")
    assert strings == [b"a", b"b"]


@pytest.mark.parametrize(
    "stream",
    [
        b"x:abc,",  # not a digit
        b"-1:a,",  # a sign
        b"01:a,",  # a leading zero
        b"00:,",
        b":abc,",  # no length at all
        b"3:abc;",  # no comma
        b"3:abcd,",  # longer than announced
        b"1 :a,",  # a space
        b"\xd9\xa3:abc,",  # a non-ASCII digit (Arabic-Indic three)
        b"123456789012345678901:",  # more digits than any length
    ],
)
def test_malformed_netstrings_raise_and_close(stream: bytes) -> None:
    for chunks in ([stream], bytewise(stream)):
        strings: list[bytes] = []
        decoder = NetstringDecoder(strings.append, max_length=10**30)
        decoder.receive_data(b"2:ok,")
        with pytest.raises(NetstringParseError):  # noqa: PT012 - whichever byte shows it
            for chunk in chunks:
                decoder.receive_data(chunk)
        assert strings == [b"ok"]
        assert decoder.closed
        decoder.receive_data(b"2:no,")
        assert strings == [b"ok"]


def test_a_bad_length_is_refused_before_its_colon_arrives() -> None:
    decoder = NetstringDecoder(print)
    with pytest.raises(NetstringParseError, match="bad netstring length"):
        decoder.receive_data(b"12a")
    decoder = NetstringDecoder(print)
    decoder.receive_data(b"0")
    with pytest.raises(NetstringParseError, match="bad netstring length"):
        decoder.receive_data(b"1")
    decoder = NetstringDecoder(print)
    with pytest.raises(NetstringParseError, match="digits"):
        decoder.receive_data(b"9" * 21)


def test_pausing_and_closing_from_a_callback() -> None:
    strings: list[bytes] = []

    def string_received(string: bytes) -> None:
        strings.append(string)
        if string == b"wait":
            decoder.pause()
        if string == b"end":
            decoder.close()

    decoder = NetstringDecoder(string_received)
    decoder.receive_data(b"1:a,4:wait,1:b,3:e")
    assert strings == [b"a", b"wait"]
    decoder.receive_data(b"nd,1:c,")
    assert strings == [b"a", b"wait"]
    decoder.resume()
    assert strings == [b"a", b"wait", b"b", b"end"]
    assert decoder.closed


def test_bytes_fed_from_a_callback_come_after_what_is_held() -> None:
    strings: list[bytes] = []

    def string_received(string: bytes) -> None:
        strings.append(string)
        if string == b"a":
            decoder.receive_data(b"3:fed,")

    decoder = NetstringDecoder(string_received)
    decoder.receive_data(b"1:a,1:b,")
    assert strings == [b"a", b"b", b"fed"]

    # They follow the bytes received, even a netstring's start: "1:" takes
    # "3" as its payload and finds no comma after it.
    strings.clear()
    decoder = NetstringDecoder(string_received)
    with pytest.raises(NetstringParseError, match="','"):
        decoder.receive_data(b"1:a,1:b,1:")
    assert strings == [b"a", b"b"]


def test_max_length_is_checked() -> None:
    with pytest.raises(ValueError, match="max_length"):
        NetstringDecoder(print, max_length=-1)


@settings(max_examples=300)
@given(
    strings=st.lists(st.binary(max_size=300), max_size=20),
    cuts=st.lists(st.integers(0, 7000), max_size=30),
)
def test_netstrings_round_trip_in_any_chunking(strings: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_netstring(s) for s in strings)
    assert decode(*chunked(stream, cuts), max_length=300) == strings


@settings(max_examples=200)
@given(
    strings=st.lists(st.binary(max_size=30), max_size=20),
    limit=st.integers(0, 30),
    cuts=st.lists(st.integers(0, 800), max_size=30),
)
def test_strings_over_the_limit_are_skipped_in_any_chunking(
    strings: list[bytes], limit: int, cuts: list[int]
) -> None:
    stream = b"".join(encode_netstring(s) for s in strings)
    got: list[bytes] = []
    lengths: list[int] = []
    decoder = NetstringDecoder(got.append, length_limit_exceeded=lengths.append, max_length=limit)
    for chunk in chunked(stream, cuts):
        decoder.receive_data(chunk)
    assert got == [s for s in strings if len(s) <= limit]
    assert lengths == [len(s) for s in strings if len(s) > limit]


# -- the protocol ------------------------------------------------------------------------


class Strings(NetstringReceiver):
    def __init__(self) -> None:
        self.strings: list[bytes] = []

    def string_received(self, string: bytes) -> None:
        self.strings.append(string)
        if string == b"quit":
            self.transport.close()


def connected(protocol: NetstringReceiver) -> StringTransport:
    transport = StringTransport(protocol)
    protocol.connection_made(transport)
    return transport


def test_send_string_and_receive() -> None:
    protocol = Strings()
    transport = connected(protocol)
    protocol.send_string(b"hello")
    protocol.data_received(b"3:abc,0:,")
    assert transport.value() == b"5:hello,"
    assert protocol.strings == [b"abc", b""]


def test_a_malformed_netstring_closes_cleanly_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    protocol = Strings()
    transport = connected(protocol)
    with caplog.at_level(logging.DEBUG, logger="torsion.protocols"):
        protocol.data_received(b"2:ok,3:abc;1:x,")
        protocol.data_received(b"1:y,")
    assert protocol.strings == [b"ok"]
    assert transport.closed
    assert not transport.aborted
    [record] = caplog.records
    assert record.levelno == logging.INFO
    assert record.exc_info is None
    assert "','" in record.getMessage()


def test_too_long_closes_by_default_and_can_be_overridden() -> None:
    protocol = Strings()
    protocol.max_length = 2
    transport = connected(protocol)
    protocol.data_received(b"3:abc,2:ok,")
    assert transport.closed
    assert protocol.strings == []

    class Lenient(Strings):
        max_length = 2

        def length_limit_exceeded(self, length: int) -> None:
            self.send_string(b"too long: %d" % length)

    lenient = Lenient()
    transport = connected(lenient)
    lenient.data_received(b"3:abc,2:ok,")
    assert lenient.strings == [b"ok"]
    assert transport.value() == b"11:too long: 3,"
    assert not transport.closed


def test_closing_from_string_received_ends_delivery() -> None:
    protocol = Strings()
    connected(protocol)
    protocol.data_received(b"1:a,4:quit,1:b,")
    assert protocol.strings == [b"a", b"quit"]


def test_pause_receiving() -> None:
    protocol = Strings()
    transport = connected(protocol)
    protocol.pause_receiving()
    assert not transport.is_reading()
    protocol.data_received(b"1:a,1:b,")
    assert protocol.strings == []
    protocol.resume_receiving()
    assert protocol.strings == [b"a", b"b"]
    assert transport.is_reading()


def test_a_malformed_netstring_held_while_paused_closes_on_resume() -> None:
    protocol = Strings()
    transport = connected(protocol)
    protocol.pause_receiving()
    protocol.data_received(b"1:a,x")
    protocol.resume_receiving()
    assert protocol.strings == [b"a"]
    assert transport.closed
    assert not transport.is_reading()


def test_netstring_receivers_over_a_loopback() -> None:
    class Server(NetstringReceiver):
        def string_received(self, string: bytes) -> None:
            self.send_string(string[::-1])

    client, server = Strings(), Server()
    loopback(client, server)
    client.send_string(b"abc")
    client.send_string(b"")
    assert client.strings == [b"cba", b""]
    client.transport.close()


@pytest.mark.parametrize("loop", LOOPS)
async def test_netstring_receiver_over_tcp(reactor: Reactor, loop: str) -> None:
    done: asyncio.Future[list[bytes]] = reactor.loop.create_future()

    class Server(Strings):
        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            done.set_result(self.strings)

    listener = reactor.listen_tcp(0, lambda _: Server(), interface="127.0.0.1")
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    big = bytes(range(256)) * 300
    strings = [b"s%d" % i for i in range(1000)]
    writer.write(b"".join(encode_netstring(s) for s in [*strings, big]))
    for byte in bytewise(encode_netstring(b"quit")):
        writer.write(byte)
        await writer.drain()
    received = await asyncio.wait_for(done, 10)
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()
    await listener.stop_listening()
    assert received == [*strings, big, b"quit"]
