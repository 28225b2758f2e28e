"""Line framing: the LineDecoder core, LineReceiver and LineOnlyReceiver."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Iterator
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torsion.errors import LineTooLongError
from torsion.internet import Protocol, Reactor
from torsion.protocols import _lines
from torsion.protocols._lines import (
    LineDecoder,
    LineOnlyReceiver,
    LineReceiver,
    _first_too_long,
)
from torsion.testing import StringTransport, loopback

LOOPS = [
    pytest.param("asyncio", marks=pytest.mark.torsion_loop("asyncio")),
    pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop")),
]

Event = tuple[str, bytes]


class Recorder:
    """Callbacks for a LineDecoder that record what they get."""

    def __init__(self, **kwargs: object) -> None:
        self.events: list[Event] = []
        self.decoder = LineDecoder(
            lambda line: self.events.append(("line", line)),
            raw_data_received=lambda data: self.events.append(("raw", data)),
            line_length_exceeded=lambda line: self.events.append(("long", line)),
            **kwargs,  # type: ignore[arg-type]
        )

    def feed(self, *chunks: bytes) -> list[Event]:
        for chunk in chunks:
            self.decoder.receive_data(chunk)
        return self.events


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def lines_of(events: list[Event]) -> list[bytes]:
    return [value for kind, value in events if kind == "line"]


# -- the decoder: whole and byte by byte --------------------------------------------


def test_lines_whole_and_one_byte_at_a_time_give_the_same_lines() -> None:
    stream = b"HELO a\r\nMAIL FROM:<x@y>\r\n\r\nlast\r\npartial"
    whole = Recorder().feed(stream)
    assert lines_of(whole) == [b"HELO a", b"MAIL FROM:<x@y>", b"", b"last"]
    assert Recorder().feed(*bytewise(stream)) == whole


def test_only_the_partial_line_of_a_read_is_kept() -> None:
    recorder = Recorder()
    recorder.feed(b"x" * 62 + b"\r\n")
    recorder.feed(b"line\r\n" * 40_000 + b"part")
    assert recorder.decoder.buffered == 4
    assert len(recorder.decoder._buffer) == 4  # not the read it ends


def test_a_delimiter_split_across_reads_still_ends_the_line() -> None:
    recorder = Recorder()
    assert recorder.feed(b"one\r") == []
    assert recorder.feed(b"\ntwo\r", b"\n") == [("line", b"one"), ("line", b"two")]


@pytest.mark.parametrize("cut", range(1, 5))
def test_a_long_delimiter_split_at_every_place(cut: int) -> None:
    stream = b"alpha<END>beta<END>"
    first = stream.index(b"<END>") + cut
    recorder = Recorder(delimiter=b"<END>")
    recorder.feed(stream[:first], stream[first:])
    assert lines_of(recorder.events) == [b"alpha", b"beta"]


def test_a_delimiter_that_starts_like_itself() -> None:
    # "aab" holds "ab" at 1: the line is "a", not cut at the first "a".
    recorder = Recorder(delimiter=b"ab")
    recorder.feed(*bytewise(b"aabxab"))
    assert lines_of(recorder.events) == [b"a", b"x"]


# -- limits --------------------------------------------------------------------------


def test_a_line_of_exactly_max_length_is_fine_one_more_is_too_long() -> None:
    recorder = Recorder(max_length=5)
    recorder.feed(b"12345\r\n123456\r\nok\r\n")
    assert recorder.events == [("line", b"12345"), ("long", b"123456"), ("line", b"ok")]


def test_max_length_holds_byte_by_byte() -> None:
    recorder = Recorder(max_length=5)
    recorder.feed(*bytewise(b"12345\r\n123456\r\nok\r\n"))
    assert recorder.events == [("line", b"12345"), ("long", b"123456"), ("line", b"ok")]


def test_a_partial_line_is_too_long_as_soon_as_it_is_known() -> None:
    recorder = Recorder(max_length=5)
    assert recorder.feed(b"12345") == []
    # Five bytes and a CR could still be a line of five.
    assert recorder.feed(b"\r") == []
    assert recorder.feed(b"6") == [("long", b"12345\r6")]
    # The rest of that line is dropped, not held, up to its delimiter.
    recorder.feed(b"x" * 100_000)
    assert recorder.decoder.buffered == 0
    recorder.feed(b"yyy\r", b"\nnext\r\n")
    assert recorder.events == [("long", b"12345\r6"), ("line", b"next")]


def test_a_partial_line_of_max_length_plus_a_partial_delimiter_waits() -> None:
    recorder = Recorder(max_length=3, delimiter=b"<END>")
    assert recorder.feed(b"abc<EN") == []
    assert recorder.feed(b"D>") == [("line", b"abc")]


def test_a_dropped_line_ends_at_a_delimiter_split_across_reads() -> None:
    recorder = Recorder(max_length=2, delimiter=b"<END>")
    recorder.feed(b"toolong<E", b"N", b"D>ok<END>")
    assert recorder.events == [("long", b"toolong<E"[:7]), ("line", b"ok")]


def test_a_long_line_amid_short_ones_in_one_read() -> None:
    recorder = Recorder(max_length=10)
    lines = [b"a" * 10] * 50 + [b"b" * 11] + [b"c" * 10] * 50
    recorder.feed(b"".join(line + b"\r\n" for line in lines))
    assert recorder.events == (
        [("line", b"a" * 10)] * 50 + [("long", b"b" * 11)] + [("line", b"c" * 10)] * 50
    )


def test_without_a_callback_a_long_line_raises_after_the_lines_before_it() -> None:
    seen: list[bytes] = []
    decoder = LineDecoder(seen.append, max_length=3)
    with pytest.raises(LineTooLongError) as caught:
        decoder.receive_data(b"abc\r\nabcd\r\nxyz\r\n")
    assert caught.value.line == b"abcd"
    assert caught.value.max_length == 3
    assert seen == [b"abc"]
    # Decoding goes on after the long line.
    decoder.receive_data(b"")
    assert seen == [b"abc", b"xyz"]


@given(
    lines=st.lists(st.binary(max_size=40).filter(lambda b: b"\n" not in b), max_size=60),
    limit=st.integers(0, 45),
)
def test_first_too_long_agrees_with_checking_every_line(lines: list[bytes], limit: int) -> None:
    data = b"\n".join([*lines, b""])
    expected = next((i for i, line in enumerate(lines) if len(line) > limit), -1)
    end = len(data)
    assert _first_too_long(data, end, lines, limit, b"\n") == expected


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="delimiter"):
        LineDecoder(print, delimiter=b"")
    with pytest.raises(ValueError, match="max_length"):
        LineDecoder(print, max_length=-1)
    decoder = LineDecoder(print)
    with pytest.raises(ValueError, match="delimiter"):
        decoder.delimiter = "\n"  # type: ignore[assignment]
    with pytest.raises(TypeError, match="raw_data_received"):
        decoder.set_raw_mode()


# -- switching modes, settings and pausing mid-stream ---------------------------------


class Switcher:
    """Switches to raw for N bytes on a line "RAW N", and back with the rest."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.remaining = 0
        self.decoder = LineDecoder(
            self.line_received, raw_data_received=self.raw_data_received, delimiter=b"\n"
        )

    def line_received(self, line: bytes) -> None:
        self.events.append(("line", line))
        if line.startswith(b"RAW "):
            self.remaining = int(line[4:])
            self.decoder.set_raw_mode()

    def raw_data_received(self, data: bytes) -> None:
        body, rest = data[: self.remaining], data[self.remaining :]
        self.remaining -= len(body)
        if body:
            self.events.append(("raw", body))
        if not self.remaining:
            self.decoder.set_line_mode(rest)


def merge_raw(events: list[Event]) -> list[Event]:
    merged: list[Event] = []
    for kind, value in events:
        if kind == "raw" and merged and merged[-1][0] == "raw":
            merged[-1] = ("raw", merged[-1][1] + value)
        else:
            merged.append((kind, value))
    return merged


def test_raw_mode_mid_read_gets_the_rest_of_the_read_and_hands_back_the_extra() -> None:
    switcher = Switcher()
    switcher.decoder.receive_data(b"a\nRAW 5\n12\n45b\nRAW 0\nc\n")
    assert switcher.events == [
        ("line", b"a"),
        ("line", b"RAW 5"),
        ("raw", b"12\n45"),
        ("line", b"b"),
        ("line", b"RAW 0"),
        ("line", b"c"),
    ]


def test_raw_mode_byte_by_byte() -> None:
    switcher = Switcher()
    for byte in bytewise(b"a\nRAW 5\n12\n45b\nc\n"):
        switcher.decoder.receive_data(byte)
    assert merge_raw(switcher.events) == [
        ("line", b"a"),
        ("line", b"RAW 5"),
        ("raw", b"12\n45"),
        ("line", b"b"),
        ("line", b"c"),
    ]


def test_bytes_handed_back_need_not_be_the_end_of_the_raw_data() -> None:
    events: list[Event] = []

    def line_received(line: bytes) -> None:
        events.append(("line", line))
        if line == b"raw":
            decoder.set_raw_mode()

    def raw_data_received(data: bytes) -> None:
        events.append(("raw", data[:2]))
        decoder.set_line_mode(b"made\nup" + data[2:])

    decoder = LineDecoder(line_received, raw_data_received=raw_data_received, delimiter=b"\n")
    decoder.receive_data(b"raw\nxxtail\nlast\n")
    assert events == [
        ("line", b"raw"),
        ("raw", b"xx"),
        ("line", b"made"),
        ("line", b"uptail"),
        ("line", b"last"),
    ]


def test_the_rest_of_a_read_after_a_switch_comes_raw_in_growing_pieces() -> None:
    pieces: list[bytes] = []
    decoder = LineDecoder(
        lambda line: decoder.set_raw_mode(), raw_data_received=pieces.append, delimiter=b"\n"
    )
    decoder.receive_data(b"\n" + bytes(100_000))
    assert b"".join(pieces) == bytes(100_000)
    sizes = [len(piece) for piece in pieces]
    assert sizes[0] == _lines.FIRST_WINDOW
    assert max(sizes) == _lines.WINDOW
    # The next read comes whole.
    read = bytes(300_000)
    decoder.receive_data(read)
    assert pieces[-1] is read


def test_set_raw_mode_from_outside_delivers_the_partial_line_raw() -> None:
    recorder = Recorder()
    recorder.feed(b"line\r\npart")
    recorder.decoder.set_raw_mode()
    assert recorder.events == [("line", b"line"), ("raw", b"part")]
    assert not recorder.decoder.line_mode
    recorder.feed(b"more\r\n")
    assert recorder.events[-1] == ("raw", b"more\r\n")


def test_set_line_mode_from_outside_reads_the_extra_at_once() -> None:
    recorder = Recorder()
    recorder.decoder.set_raw_mode()
    recorder.feed(b"raw")
    recorder.decoder.set_line_mode(b"x\r\ny")
    assert recorder.events == [("raw", b"raw"), ("line", b"x")]
    recorder.feed(b"z\r\n")
    assert recorder.events[-1] == ("line", b"yz")


def test_the_extra_comes_before_what_is_held() -> None:
    recorder = Recorder()
    recorder.decoder.set_raw_mode()
    recorder.decoder.pause()
    recorder.feed(b"held\r\n")
    recorder.decoder.set_line_mode(b"first\r\n")
    recorder.decoder.resume()
    assert recorder.events == [("line", b"first"), ("line", b"held")]


def test_a_new_delimiter_applies_from_the_next_line() -> None:
    events: list[bytes] = []

    def line_received(line: bytes) -> None:
        events.append(line)
        decoder.delimiter = b"\n"

    decoder = LineDecoder(line_received)
    decoder.receive_data(b"a\r\nb\nc\r\n")
    assert events == [b"a", b"b", b"c\r"]
    assert decoder.delimiter == b"\n"


def test_a_new_delimiter_from_outside_reads_what_is_held() -> None:
    recorder = Recorder()
    recorder.feed(b"a\nb\nc")
    recorder.decoder.delimiter = b"\n"
    assert lines_of(recorder.events) == [b"a", b"b"]


def test_a_new_max_length_applies_from_the_next_line() -> None:
    def line_received(line: bytes) -> None:
        recorder.events.append(("line", line))
        recorder.decoder.max_length = 2

    recorder = Recorder()
    recorder.decoder = LineDecoder(
        line_received,
        line_length_exceeded=lambda line: recorder.events.append(("long", line)),
    )
    recorder.feed(b"long line\r\nabc\r\nab\r\n")
    assert recorder.events == [("line", b"long line"), ("long", b"abc"), ("line", b"ab")]
    assert recorder.decoder.max_length == 2


def test_pausing_from_a_callback_stops_after_it_and_holds_what_comes() -> None:
    events: list[bytes] = []

    def line_received(line: bytes) -> None:
        events.append(line)
        if line == b"stop":
            decoder.pause()

    decoder = LineDecoder(line_received, delimiter=b"\n")
    decoder.receive_data(b"a\nstop\nb\nc")
    assert events == [b"a", b"stop"]
    assert decoder.paused
    decoder.receive_data(b"\nd\n")
    assert events == [b"a", b"stop"]
    assert decoder.buffered == len(b"b\nc\nd\n")
    decoder.resume()
    assert events == [b"a", b"stop", b"b", b"c", b"d"]
    assert decoder.buffered == 0


def test_a_lower_max_length_set_while_paused_applies_to_the_lines_held() -> None:
    def line_received(line: bytes) -> None:
        recorder.events.append(("line", line))
        recorder.decoder.pause()

    recorder = Recorder()
    recorder.decoder = LineDecoder(
        line_received,
        line_length_exceeded=lambda line: recorder.events.append(("long", line)),
    )
    recorder.feed(b"first\r\nlonger\r\nok\r\n")
    recorder.decoder.max_length = 3
    while recorder.decoder.paused:
        recorder.decoder.resume()
    assert recorder.events == [("line", b"first"), ("long", b"longer"), ("line", b"ok")]


def test_raw_data_that_ends_inside_a_delimiter() -> None:
    events: list[Event] = []

    def line_received(line: bytes) -> None:
        events.append(("line", line))
        if line == b"a":
            decoder.set_raw_mode()

    def raw_data_received(data: bytes) -> None:
        events.append(("raw", data[:2]))
        decoder.set_line_mode(data[2:])

    decoder = LineDecoder(line_received, raw_data_received=raw_data_received)
    decoder.receive_data(b"a\r\nb\r\nc\r\nd\r\n")
    assert events == [("line", b"a"), ("raw", b"b\r"), ("line", b"\nc"), ("line", b"d")]


def test_pause_and_resume_within_one_callback_change_nothing() -> None:
    events: list[bytes] = []

    def line_received(line: bytes) -> None:
        events.append(line)
        decoder.pause()
        decoder.resume()

    decoder = LineDecoder(line_received, delimiter=b"\n")
    decoder.receive_data(b"a\nb\nc\n")
    assert events == [b"a", b"b", b"c"]


def test_closing_from_a_callback_ends_delivery() -> None:
    events: list[bytes] = []

    def line_received(line: bytes) -> None:
        events.append(line)
        decoder.close()

    decoder = LineDecoder(line_received, delimiter=b"\n")
    decoder.receive_data(b"a\nb\n")
    decoder.receive_data(b"c\n")
    decoder.resume()
    assert events == [b"a"]
    assert decoder.closed
    assert decoder.buffered == 0


def test_stop_when_ends_delivery_after_the_line_that_made_it_true() -> None:
    events: list[bytes] = []
    decoder = LineDecoder(events.append, delimiter=b"\n")
    decoder.stop_when = lambda: events[-1] == b"quit"
    decoder.receive_data(b"a\nquit\nb\n")
    assert events == [b"a", b"quit"]
    assert decoder.closed


def test_bytes_fed_from_a_callback_come_after_what_is_held() -> None:
    events: list[bytes] = []

    def line_received(line: bytes) -> None:
        events.append(line)
        if line == b"a":
            decoder.receive_data(b"fed\n")

    decoder = LineDecoder(line_received, delimiter=b"\n")
    decoder.receive_data(b"a\nb\nc")
    assert events == [b"a", b"b", b"cfed"]


def test_bytes_fed_from_a_callback_that_then_pauses_are_held_in_order() -> None:
    events: list[bytes] = []

    def line_received(line: bytes) -> None:
        events.append(line)
        if line == b"a":
            decoder.receive_data(b"fed\n")
            decoder.pause()

    decoder = LineDecoder(line_received, delimiter=b"\n")
    decoder.receive_data(b"a\nb\n")
    assert events == [b"a"]
    assert decoder.buffered == len(b"b\nfed\n")
    decoder.resume()
    assert events == [b"a", b"b", b"fed"]


def test_a_callback_that_raises_loses_no_line() -> None:
    events: list[bytes] = []

    def line_received(line: bytes) -> None:
        if line == b"bad" and b"bad" not in events:
            events.append(line)
            raise RuntimeError("bug")
        events.append(line)

    decoder = LineDecoder(line_received, delimiter=b"\n")
    with pytest.raises(RuntimeError):
        decoder.receive_data(b"a\nbad\nb\nc")
    decoder.receive_data(b"\n")
    assert events == [b"a", b"bad", b"b", b"c"]


# -- property tests ---------------------------------------------------------------------


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(cut, len(data)) for cut in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


delimiters = st.sampled_from([b"\r\n", b"\n", b"\x00", b"<END>", b"aa"])


# Windows much smaller than the default, so that reads span many of them.
windows = st.sampled_from([1, 2, 7, 50, _lines.WINDOW])


@contextlib.contextmanager
def small_windows(window: int) -> Iterator[None]:
    with (
        mock.patch.object(_lines, "WINDOW", window),
        mock.patch.object(_lines, "FIRST_WINDOW", max(1, window // 4)),
        # Lines given back are used again however few they are.
        mock.patch.object(_lines, "_SPARE_MIN", 1),
    ):
        yield


@settings(max_examples=300)
@given(
    delimiter=delimiters,
    lines=st.lists(st.binary(max_size=30), max_size=30),
    cuts=st.lists(st.integers(0, 2000), max_size=30),
    window=windows,
    limit=st.integers(0, 35),
)
def test_lines_round_trip_in_any_chunking(
    delimiter: bytes, lines: list[bytes], cuts: list[int], window: int, limit: int
) -> None:
    # Only lines that a delimiter can end unambiguously.
    lines = [line for line in lines if (line + delimiter).find(delimiter) == len(line)]
    stream = b"".join(line + delimiter for line in lines)
    events: list[Event] = []
    decoder = LineDecoder(
        lambda line: events.append(("line", line)),
        line_length_exceeded=lambda line: events.append(("long", line)),
        delimiter=delimiter,
        max_length=limit,
    )
    with small_windows(window):
        for chunk in chunked(stream, cuts):
            decoder.receive_data(chunk)
    assert lines_of(events) == [line for line in lines if len(line) <= limit]
    # A long line is reported once: whole, or as much of it as had arrived.
    long_lines = [line for line in lines if len(line) > limit]
    reported = [value for kind, value in events if kind == "long"]
    assert len(reported) == len(long_lines)
    for line, start in zip(long_lines, reported, strict=True):
        assert line.startswith(start)
        assert len(start) > limit
    assert decoder.buffered == 0


# Pairs of delimiters a stream switches between: one byte, two bytes, and
# two that overlap themselves.
DELIMITER_PAIRS = [(b"\n", b"|"), (b"\r\n", b"<>"), (b"aa", b"ab")]


class Replayer:
    """Rebuilds the stream from what a decoder delivers, switching as told.

    A line ``R<n>`` switches to raw for ``n`` bytes; ``P`` pauses (the test
    resumes); ``D`` changes to the other delimiter of the pair.
    """

    def __init__(self, pair: tuple[bytes, bytes]) -> None:
        self.pair = pair
        self.out: list[bytes] = []
        self.remaining = 0
        self.decoder = LineDecoder(
            self.line_received, raw_data_received=self.raw_data_received, delimiter=pair[0]
        )

    def line_received(self, line: bytes) -> None:
        self.out.append(line + self.decoder.delimiter)
        if line.startswith(b"R"):
            self.remaining = int(line[1:])
            self.decoder.set_raw_mode()
        elif line == b"P":
            self.decoder.pause()
        elif line == b"D":
            first, second = self.pair
            self.decoder.delimiter = second if self.decoder.delimiter == first else first

    def raw_data_received(self, data: bytes) -> None:
        body, rest = data[: self.remaining], data[self.remaining :]
        self.remaining -= len(body)
        self.out.append(body)
        if not self.remaining:
            self.decoder.set_line_mode(rest)


@st.composite
def switching_streams(draw: st.DrawFn) -> tuple[tuple[bytes, bytes], bytes]:
    pair = draw(st.sampled_from(DELIMITER_PAIRS))
    banned = set(pair[0] + pair[1])
    delimiter = pair[0]
    parts: list[bytes] = []
    for _ in range(draw(st.integers(0, 25))):
        kind = draw(st.sampled_from(["line", "line", "raw", "pause", "delimiter"]))
        if kind == "line":
            text = bytes(b for b in draw(st.binary(max_size=12)) if b not in banned)
            parts.append(b"L" + text + delimiter)
        elif kind == "raw":
            body = draw(st.binary(max_size=20))
            parts.append(b"R%d" % len(body) + delimiter + body)
        elif kind == "pause":
            parts.append(b"P" + delimiter)
        else:
            parts.append(b"D" + delimiter)
            delimiter = pair[1] if delimiter == pair[0] else pair[0]
    return pair, b"".join(parts)


@settings(max_examples=300)
@given(
    case=switching_streams(),
    cuts=st.lists(st.integers(0, 600), max_size=40),
    window=windows,
)
def test_mode_switches_pauses_and_new_delimiters_lose_or_reorder_no_byte(
    case: tuple[tuple[bytes, bytes], bytes], cuts: list[int], window: int
) -> None:
    pair, stream = case
    replayer = Replayer(pair)
    with small_windows(window):
        for chunk in chunked(stream, cuts):
            replayer.decoder.receive_data(chunk)
            while replayer.decoder.paused:
                replayer.decoder.resume()
    assert b"".join(replayer.out) == stream
    assert replayer.decoder.buffered == 0


# -- the protocols ---------------------------------------------------------------------


class Lines(LineReceiver):
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.remaining = 0

    def line_received(self, line: bytes) -> None:
        self.events.append(("line", line))
        if line.startswith(b"DATA "):
            self.remaining = int(line[5:])
            self.set_raw_mode()
        elif line == b"QUIT":
            self.transport.close()
        elif line == b"WAIT":
            self.pause_receiving()

    def raw_data_received(self, data: bytes) -> None:
        body, rest = data[: self.remaining], data[self.remaining :]
        self.remaining -= len(body)
        self.events.append(("raw", body))
        if not self.remaining:
            self.set_line_mode(rest)


def connected(protocol: Protocol) -> StringTransport:
    transport = StringTransport(protocol)
    protocol.connection_made(transport)
    return transport


def test_line_receiver_switches_to_raw_and_back() -> None:
    protocol = Lines()
    connected(protocol)
    protocol.data_received(b"HELO\r\nDATA 4\r\nab\r\nEHLO\r\n")
    assert protocol.events == [
        ("line", b"HELO"),
        ("line", b"DATA 4"),
        ("raw", b"ab\r\n"),
        ("line", b"EHLO"),
    ]
    assert protocol.line_mode


def test_closing_the_transport_from_line_received_ends_delivery() -> None:
    protocol = Lines()
    transport = connected(protocol)
    protocol.data_received(b"a\r\nQUIT\r\nb\r\n")
    protocol.data_received(b"c\r\n")
    assert protocol.events == [("line", b"a"), ("line", b"QUIT")]
    assert transport.closed


def test_closing_the_transport_from_raw_data_received_ends_delivery() -> None:
    class Closing(Lines):
        def raw_data_received(self, data: bytes) -> None:
            super().raw_data_received(data)
            self.transport.close()

    protocol = Closing()
    transport = connected(protocol)
    protocol.data_received(b"DATA 2\r\nab")
    protocol.set_raw_mode()  # already raw: nothing changes
    protocol.data_received(b"cd\r\n")
    assert protocol.events == [("line", b"DATA 2"), ("raw", b"ab")]
    assert transport.closed


def test_pause_receiving_pauses_the_transport_and_resume_delivers_what_was_held() -> None:
    protocol = Lines()
    transport = connected(protocol)
    protocol.data_received(b"a\r\nWAIT\r\nb\r\nc")
    assert protocol.events == [("line", b"a"), ("line", b"WAIT")]
    assert protocol.receiving_paused
    assert not transport.is_reading()
    protocol.data_received(b"\r\n")
    assert len(protocol.events) == 2
    protocol.resume_receiving()
    assert protocol.events[2:] == [("line", b"b"), ("line", b"c")]
    assert transport.is_reading()
    assert not protocol.receiving_paused


def test_resume_stays_paused_for_the_transport_if_a_callback_pauses_again() -> None:
    protocol = Lines()
    transport = connected(protocol)
    protocol.data_received(b"WAIT\r\nWAIT\r\nlast\r\n")
    protocol.resume_receiving()
    assert protocol.events == [("line", b"WAIT"), ("line", b"WAIT")]
    assert not transport.is_reading()
    protocol.resume_receiving()
    assert protocol.events[-1] == ("line", b"last")
    assert transport.is_reading()
    protocol.resume_receiving()  # not paused: nothing happens
    assert transport.is_reading()


def test_a_transport_that_ignores_the_pause_gets_closed(caplog: pytest.LogCaptureFixture) -> None:
    protocol = Lines()
    transport = connected(protocol)
    protocol.pause_receiving()
    chunk = b"x" * 65536
    with caplog.at_level(logging.INFO, logger="torsion.protocols"):
        for _ in range(65):
            protocol.data_received(chunk)
    assert transport.closed
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "arrived while paused" in record.getMessage()


def test_a_line_too_long_closes_the_connection_and_logs_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Short(LineOnlyReceiver):
        max_length = 4

        def __init__(self) -> None:
            self.lines: list[bytes] = []

        def line_received(self, line: bytes) -> None:
            self.lines.append(line)

    protocol = Short()
    transport = connected(protocol)
    with caplog.at_level(logging.INFO, logger="torsion.protocols"):
        protocol.data_received(b"ok\r\ntoo long\r\nmore\r\n")
        protocol.data_received(b"x" * 100)
    assert protocol.lines == [b"ok"]
    assert transport.closed
    [record] = caplog.records
    assert record.levelno == logging.INFO
    assert record.exc_info is None
    assert "longer than 4 bytes" in record.getMessage()


def test_line_length_exceeded_can_answer_and_go_on() -> None:
    class Answering(LineOnlyReceiver):
        max_length = 4

        def line_received(self, line: bytes) -> None:
            self.send_line(b"ok " + line)

        def line_length_exceeded(self, line: bytes) -> None:
            self.send_line(b"500 line too long")

    protocol = Answering()
    transport = connected(protocol)
    protocol.data_received(b"a\r\n" + b"y" * 10)
    protocol.data_received(b"y" * 10 + b"\r\nb\r\n")
    assert transport.value() == b"ok a\r\n500 line too long\r\nok b\r\n"
    assert not transport.closed


def test_class_attributes_configure_and_instance_assignment_changes_mid_stream() -> None:
    class Newlines(LineOnlyReceiver):
        delimiter = b"\n"
        max_length = 100

        def __init__(self) -> None:
            self.lines: list[bytes] = []

        def line_received(self, line: bytes) -> None:
            self.lines.append(line)
            if line == b"switch":
                self.delimiter = b"\r\n"
                self.max_length = 3

    assert (Newlines().delimiter, Newlines().max_length) == (b"\n", 100)
    protocol = Newlines()
    transport = connected(protocol)
    protocol.data_received(b"a\nswitch\nb\r\n")
    protocol.send_line(b"out")
    assert protocol.lines == [b"a", b"switch", b"b"]
    assert (protocol.delimiter, protocol.max_length) == (b"\r\n", 3)
    assert transport.value() == b"out\r\n"
    # Another instance starts from the class's settings.
    assert (Newlines().delimiter, Newlines().max_length) == (b"\n", 100)
    assert (LineReceiver().delimiter, LineReceiver().max_length) == (b"\r\n", 16384)


def test_line_only_receiver_has_no_raw_mode() -> None:
    assert not hasattr(LineOnlyReceiver, "set_raw_mode")
    assert not hasattr(LineOnlyReceiver, "raw_data_received")


def test_what_is_held_is_dropped_when_the_connection_is_lost() -> None:
    protocol = Lines()
    connected(protocol)
    protocol.data_received(b"WAIT\r\nheld\r\n")
    protocol.connection_lost(None)
    protocol.resume_receiving()
    protocol.data_received(b"late\r\n")
    assert protocol.events == [("line", b"WAIT")]


def test_line_receivers_talk_over_a_loopback() -> None:
    class Server(LineReceiver):
        def line_received(self, line: bytes) -> None:
            if line.startswith(b"DATA "):
                self.remaining = int(line[5:])
                self.body = b""
                self.set_raw_mode()
            else:
                self.send_line(b"echo " + line)

        def raw_data_received(self, data: bytes) -> None:
            take = data[: self.remaining]
            self.body += take
            self.remaining -= len(take)
            if not self.remaining:
                self.send_line(b"got %d bytes" % len(self.body))
                self.set_line_mode(data[len(take) :])

    class Client(LineOnlyReceiver):
        def __init__(self) -> None:
            self.replies: list[bytes] = []

        def line_received(self, line: bytes) -> None:
            self.replies.append(line)

    client, server = Client(), Server()
    pair = loopback(client, server)
    client.send_line(b"hi")
    client.transport.write(b"DATA 6\r\nab")
    client.transport.write(b"\r\ncd")
    client.transport.write(b"after\r\n")
    assert client.replies == [b"echo hi", b"got 6 bytes", b"echo after"]
    pair.client_transport.close()


@pytest.mark.parametrize("loop", LOOPS)
async def test_line_receiver_over_tcp(reactor: Reactor, loop: str) -> None:
    done: asyncio.Future[list[Event]] = reactor.loop.create_future()

    class Server(Lines):
        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            done.set_result(self.events)

    listener = reactor.listen_tcp(0, lambda _: Server(), interface="127.0.0.1")
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    body = bytes(range(256)) * 2048  # 512 KiB of raw data, delimiters and all
    lines = [b"line %d" % i for i in range(2000)]
    writer.write(b"".join(line + b"\r\n" for line in lines))
    writer.write(b"DATA %d\r\n" % len(body) + body + b"tail\r\n")
    for byte in bytewise(b"one\r\nQUIT\r\nignored\r\n"):
        writer.write(byte)
        await writer.drain()
    events = await asyncio.wait_for(done, 10)
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()
    await listener.stop_listening()
    assert lines_of(events) == [*lines, b"DATA %d" % len(body), b"tail", b"one", b"QUIT"]
    assert b"".join(value for kind, value in events if kind == "raw") == body
