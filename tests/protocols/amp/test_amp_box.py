"""The sans-IO box codec: encoding, parsing split anywhere, limits and malformations."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torsion.protocols.amp import (
    DEFAULT_MAX_BOX_SIZE,
    MAX_KEY_LENGTH,
    MAX_VALUE_LENGTH,
    AmpProtocolError,
    Box,
    BoxParser,
    TooLongError,
    encode_box,
)

EXAMPLE = {b"_ask": b"1", b"_command": b"Sum", b"a": b"13", b"b": b"81"}
EXAMPLE_BYTES = (
    b"\x00\x04_ask\x00\x011"
    b"\x00\x08_command\x00\x03Sum"
    b"\x00\x01a\x00\x0213"
    b"\x00\x01b\x00\x0281"
    b"\x00\x00"
)


def test_encode_box_spells_each_pair_with_lengths_and_ends_with_zero() -> None:
    assert encode_box(EXAMPLE) == EXAMPLE_BYTES
    assert encode_box({}) == b"\x00\x00"


def test_parse_a_whole_box() -> None:
    parser = BoxParser()
    boxes = parser.receive_data(EXAMPLE_BYTES)
    assert boxes == [EXAMPLE]
    assert list(boxes[0]) == list(EXAMPLE)  # wire order kept
    assert not parser.pending


def test_parse_one_byte_at_a_time() -> None:
    parser = BoxParser()
    boxes: list[Box] = []
    data = EXAMPLE_BYTES * 3
    for i in range(len(data)):
        boxes += parser.receive_data(data[i : i + 1])
        # A box comes out exactly when its end marker does.
        assert len(boxes) == (i + 1) // len(EXAMPLE_BYTES)
    assert boxes == [EXAMPLE] * 3
    assert not parser.pending


@pytest.mark.parametrize("split", range(1, len(EXAMPLE_BYTES)))
def test_parse_split_at_every_point(split: int) -> None:
    parser = BoxParser()
    first = parser.receive_data(EXAMPLE_BYTES[:split])
    assert first == []
    assert parser.pending
    assert parser.receive_data(EXAMPLE_BYTES[split:] + EXAMPLE_BYTES) == [EXAMPLE, EXAMPLE]
    assert not parser.pending


def test_many_boxes_in_one_chunk_and_empty_boxes() -> None:
    parser = BoxParser()
    data = EXAMPLE_BYTES + b"\x00\x00" + EXAMPLE_BYTES
    assert parser.receive_data(data) == [EXAMPLE, {}, EXAMPLE]


def test_the_longest_key_and_value_the_format_allows() -> None:
    box = {b"k" * MAX_KEY_LENGTH: b"v" * MAX_VALUE_LENGTH, b"e": b""}
    data = encode_box(box)
    assert BoxParser().receive_data(data) == [box]


def test_a_long_value_fed_a_byte_at_a_time_is_not_copied_over_and_over() -> None:
    box = {b"big": bytes(range(256)) * 255, b"after": b"x"}
    data = encode_box(box)
    parser = BoxParser()
    started = time.perf_counter()
    boxes: list[Box] = []
    for i in range(len(data)):
        boxes += parser.receive_data(data[i : i + 1])
    elapsed = time.perf_counter() - started
    assert boxes == [box]
    # Linear: tens of milliseconds. Copying the value per byte would take
    # tens of seconds.
    assert elapsed < 5


def test_a_partial_box_is_pending() -> None:
    parser = BoxParser()
    assert not parser.pending
    parser.receive_data(b"\x00")
    assert parser.pending
    parser.receive_data(b"\x01a\x00\x01b")
    assert parser.pending
    assert parser.receive_data(b"\x00\x00") == [{b"a": b"b"}]
    assert not parser.pending


# -- encoding limits --------------------------------------------------------------


@pytest.mark.parametrize(
    "box",
    [
        {b"": b"value"},
        {b"k" * (MAX_KEY_LENGTH + 1): b"value"},
        {b"key": b"v" * (MAX_VALUE_LENGTH + 1)},
    ],
    ids=["empty key", "key too long", "value too long"],
)
def test_encoding_refuses_what_the_format_cannot_carry(box: dict[bytes, bytes]) -> None:
    with pytest.raises(TooLongError) as info:
        encode_box({b"fine": b"first", **box})
    assert isinstance(info.value, ValueError)
    assert info.value.length in (0, MAX_KEY_LENGTH + 1, MAX_VALUE_LENGTH + 1)


# -- malformations ----------------------------------------------------------------


def _fails(parser: BoxParser, data: bytes, match: str) -> None:
    with pytest.raises(AmpProtocolError, match=match):
        parser.receive_data(data)
    # The stream cannot be resynchronised: the parser stays broken.
    with pytest.raises(AmpProtocolError, match=match):
        parser.receive_data(EXAMPLE_BYTES)
    assert not parser.pending


@pytest.mark.parametrize("length", [256, 0x1000, 0xFFFF])
def test_a_key_longer_than_255_bytes(length: int) -> None:
    _fails(BoxParser(), length.to_bytes(2, "big") + b"k" * 10, "key .* bytes long")


def test_a_key_longer_than_255_bytes_is_refused_from_its_length_alone() -> None:
    parser = BoxParser()
    assert parser.receive_data(EXAMPLE_BYTES + b"\x01") == [EXAMPLE]
    _fails(parser, b"\x00", "256 bytes long")


def test_a_key_twice_in_one_box() -> None:
    _fails(BoxParser(), b"\x00\x01a\x00\x00\x00\x01a\x00\x00\x00\x00", "twice")


def test_too_many_keys() -> None:
    parser = BoxParser(max_keys=3)
    three = encode_box({b"a": b"", b"b": b"", b"c": b""})
    assert parser.receive_data(three) == [{b"a": b"", b"b": b"", b"c": b""}]
    _fails(parser, three[:-2] + b"\x00\x01d\x00\x00\x00\x00", "more than 3 keys")


@pytest.mark.parametrize("chunk", [1, 7, 1000, 10**6])
def test_a_box_too_big(chunk: int) -> None:
    parser = BoxParser(max_box_size=100)
    fits = encode_box({b"k": b"v" * 93})
    assert len(fits) == 100
    assert parser.receive_data(fits) == [{b"k": b"v" * 93}]
    data = encode_box({b"k": b"v" * 50, b"l": b"w" * 50})
    with pytest.raises(AmpProtocolError, match="more than 100 bytes"):
        _feed(parser, data, chunk)


def _feed(parser: BoxParser, data: bytes, chunk: int) -> list[Box]:
    boxes: list[Box] = []
    for i in range(0, len(data), chunk):
        boxes += parser.receive_data(data[i : i + chunk])
    return boxes


def test_a_box_too_big_is_refused_before_its_value_arrives() -> None:
    parser = BoxParser(max_box_size=1000)
    # The length of the value alone says it cannot fit.
    _fails(parser, b"\x00\x01k\xff\xff" + b"v" * 10, "more than 1000 bytes")


def test_the_default_bounds() -> None:
    parser = BoxParser()
    assert parser.max_box_size == DEFAULT_MAX_BOX_SIZE
    big = encode_box({b"k%d" % i: b"v" * MAX_VALUE_LENGTH for i in range(16)})
    assert len(big) > DEFAULT_MAX_BOX_SIZE
    with pytest.raises(AmpProtocolError):
        parser.receive_data(big)


@pytest.mark.parametrize(("keys", "size"), [(0, 100), (1, 1)])
def test_bounds_must_allow_a_box(keys: int, size: int) -> None:
    with pytest.raises(ValueError, match="at least"):
        BoxParser(max_keys=keys, max_box_size=size)


# -- properties -------------------------------------------------------------------

keys = st.binary(min_size=1, max_size=MAX_KEY_LENGTH)
values = st.binary(max_size=300)
boxes = st.dictionaries(keys, values, max_size=8)


@given(st.lists(boxes, max_size=5), st.data())
@settings(max_examples=200, deadline=None)
def test_boxes_round_trip_however_the_bytes_are_split(
    sent: list[dict[bytes, bytes]], data: st.DataObject
) -> None:
    stream = b"".join(encode_box(box) for box in sent)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    parser = BoxParser()
    received: list[Box] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        received += parser.receive_data(stream[start:cut])
        start = cut
    assert received == sent
    assert [list(box) for box in received] == [list(box) for box in sent]
    assert not parser.pending


@given(st.binary(max_size=2000), st.integers(1, 64))
@settings(max_examples=300, deadline=None)
def test_any_bytes_give_boxes_or_a_protocol_error_and_nothing_else(
    garbage: bytes, chunk: int
) -> None:
    parser = BoxParser(max_keys=16, max_box_size=1000)
    try:
        for i in range(0, len(garbage), chunk):
            for box in parser.receive_data(garbage[i : i + chunk]):
                # Whatever comes out is a box that encodes back as it came in.
                assert BoxParser().receive_data(encode_box(box)) == [box]
    except AmpProtocolError:
        pass


def test_the_error_carries_the_boxes_completed_before_it() -> None:
    parser = BoxParser()
    with pytest.raises(AmpProtocolError) as info:
        parser.receive_data(EXAMPLE_BYTES + EXAMPLE_BYTES + b"\x01\x00")
    assert info.value.boxes == [EXAMPLE, EXAMPLE]
    with pytest.raises(AmpProtocolError) as again:
        parser.receive_data(EXAMPLE_BYTES)
    assert again.value.boxes == []
