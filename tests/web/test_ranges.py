"""Tests for torsion.web._ranges: Range parsing, coalescing, multipart plans."""

from __future__ import annotations

import email.parser
import email.policy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torsion.web._ranges import (
    ByteRange,
    RangeOutcome,
    RangeRequest,
    parse_range,
    plan_multipart,
    unsatisfiable_content_range,
)

FULL = RangeRequest(RangeOutcome.FULL)
UNSATISFIABLE = RangeRequest(RangeOutcome.NOT_SATISFIABLE)


def _partial(*ranges: tuple[int, int]) -> RangeRequest:
    return RangeRequest(RangeOutcome.PARTIAL, tuple(ByteRange(a, b) for a, b in ranges))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"bytes=0-499", _partial((0, 499))),
        (b"bytes=500-999", _partial((500, 999))),
        (b"bytes=-500", _partial((9500, 9999))),
        (b"bytes=9500-", _partial((9500, 9999))),
        (b"bytes=0-0,-1", _partial((0, 0), (9999, 9999))),
        (b"bytes=0-20000", _partial((0, 9999))),
        (b"bytes=-20000", _partial((0, 9999))),
        (b"BYTES = 0-1", _partial((0, 1))),
        (b"bytes= 0-1 ,, 9000-9001 ", _partial((0, 1), (9000, 9001))),
        (b"bytes=0-1,20000-30000", _partial((0, 1))),
    ],
)
def test_rfc_examples_on_10000_bytes(value: bytes, expected: RangeRequest) -> None:
    assert parse_range(value, 10000) == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"",
        b"bytes",
        b"items=0-1",
        b"bytes=",
        b"bytes=,",
        b"bytes=abc",
        b"bytes=1",
        b"bytes=5-1",
        b"bytes=-",
        b"bytes=1-2-3",
        b"bytes=-1-2",
        b"bytes=+1-2",
        b"bytes=0x1-2",
        b"bytes=0-1,junk",
        b"bytes=\xd9\xa1-2",
        b"bytes=" + b"9" * 40 + b"-",
    ],
)
def test_invalid_fields_are_ignored(value: bytes | None) -> None:
    assert parse_range(value, 10000) == FULL


@pytest.mark.parametrize("value", [b"bytes=10000-", b"bytes=20000-30000", b"bytes=-0"])
def test_unsatisfiable(value: bytes) -> None:
    assert parse_range(value, 10000) == UNSATISFIABLE


def test_empty_representation() -> None:
    assert parse_range(b"bytes=0-1", 0) == UNSATISFIABLE
    assert parse_range(b"bytes=-0", 0) == UNSATISFIABLE
    assert parse_range(b"bytes=-5", 0) == FULL


def test_overlapping_and_adjacent_ranges_coalesce() -> None:
    assert parse_range(b"bytes=0-99,50-149,150-199", 10000, min_gap=0) == _partial((0, 199))
    assert parse_range(b"bytes=500-600,0-10,5-20", 10000, min_gap=0) == _partial(
        (0, 20), (500, 600)
    )
    assert parse_range(b"bytes=0-9,20-29", 10000, min_gap=0) == _partial((0, 9), (20, 29))
    assert parse_range(b"bytes=0-9,20-29", 10000, min_gap=10) == _partial((0, 29))
    assert parse_range(b"bytes=0-99,10-20", 10000) == _partial((0, 99))


def test_many_ranges_are_refused() -> None:
    spread = b"bytes=" + b",".join(b"%d-%d" % (i * 1000, i * 1000) for i in range(17))
    assert parse_range(spread, 100000) == FULL
    assert parse_range(spread, 100000, max_ranges=17).outcome is RangeOutcome.PARTIAL
    many = b"bytes=" + b",".join(b"0-0" for _ in range(101))
    assert parse_range(many, 100000) == FULL


def test_overlapping_abuse_is_refused() -> None:
    # CVE-2011-3192: the whole file asked for many times over.
    abusive = b"bytes=0-," + b",".join(b"%d-" % i for i in range(1, 50))
    assert parse_range(abusive, 1000) == FULL
    assert parse_range(b"bytes=0-,0-", 1000) == _partial((0, 999))
    assert parse_range(b"bytes=0-,0-,0-", 1000) == FULL


def test_content_range_values() -> None:
    assert ByteRange(0, 499).content_range(1234) == b"bytes 0-499/1234"
    assert ByteRange(0, 499).length == 500
    assert unsatisfiable_content_range(1234) == b"bytes */1234"


_specs = st.lists(
    st.one_of(
        st.tuples(st.integers(0, 300), st.none() | st.integers(0, 300)),
        st.tuples(st.none(), st.integers(0, 300)),
    ),
    min_size=1,
    max_size=8,
)


def _field(specs: list[tuple[int | None, int | None]]) -> bytes:
    parts = []
    for first, last in specs:
        text = "" if first is None else str(first)
        text += "-" + ("" if last is None else str(last))
        parts.append(text)
    return ("bytes=" + ",".join(parts)).encode()


@given(_specs, st.integers(0, 250), st.integers(0, 100))
def test_partial_ranges_cover_exactly_what_was_asked(
    specs: list[tuple[int | None, int | None]], length: int, gap: int
) -> None:
    result = parse_range(_field(specs), length, min_gap=gap, max_ranges=100)
    asked: set[int] = set()
    requested = 0
    valid = True
    for first, last in specs:
        if first is None:
            assert last is not None
            piece = range(max(length - last, 0), length)
        elif last is not None and last < first:
            valid = False
            continue
        else:
            piece = range(first, (length - 1 if last is None else min(last, length - 1)) + 1)
        asked.update(piece)
        requested += len(piece)
    if not valid:
        assert result == FULL
    elif not asked:
        zero_suffix = length == 0 and any(f is None and last for f, last in specs)
        assert result == (FULL if zero_suffix else UNSATISFIABLE)
    elif requested > 2 * length:
        assert result == FULL
    else:
        assert result.outcome is RangeOutcome.PARTIAL
        covered = [i for r in result.ranges for i in range(r.first, r.last + 1)]
        assert len(covered) == len(set(covered))  # no overlap
        assert asked <= set(covered)
        assert all(0 <= r.first <= r.last < length for r in result.ranges)
        for before, after in zip(result.ranges, result.ranges[1:], strict=False):
            assert after.first > before.last + 1 + gap  # sorted, coalesced
        # Whatever was added to fill a gap lies between two asked-for bytes.
        for extra in set(covered) - asked:
            assert min(asked) < extra < max(asked)


@given(st.binary(max_size=60), st.integers(0, 1000))
def test_parse_never_raises(value: bytes, length: int) -> None:
    result = parse_range(b"bytes=" + value, length)
    assert isinstance(result.outcome, RangeOutcome)


def test_multipart_plan_layout() -> None:
    data = bytes(range(256)) * 4
    ranges = parse_range(b"bytes=0-9,-5", len(data)).ranges
    plan = plan_multipart(ranges, len(data), b"application/octet-stream", boundary=b"XYZ")
    assert plan.content_type == b"multipart/byteranges; boundary=XYZ"
    body = plan.body(data)
    assert body == (
        b"--XYZ\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Range: bytes 0-9/1024\r\n\r\n" + data[:10] + b"\r\n--XYZ\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Range: bytes 1019-1023/1024\r\n"
        b"\r\n" + data[-5:] + b"\r\n--XYZ--\r\n"
    )
    assert plan.content_length == len(body)


def test_multipart_plan_without_content_type_and_random_boundary() -> None:
    plan = plan_multipart([ByteRange(0, 0), ByteRange(5, 5)], 10, None)
    assert len(plan.boundary) == 32
    assert b"Content-Type" not in plan.parts[0].header
    assert plan_multipart([ByteRange(0, 0)], 10, None).boundary != plan.boundary


@pytest.mark.parametrize("boundary", [b"", b"a" * 71, b"a\r\nb", b"a;b", b'a"b'])
def test_multipart_refuses_bad_boundaries(boundary: bytes) -> None:
    with pytest.raises(ValueError, match="boundary"):
        plan_multipart([ByteRange(0, 0)], 1, None, boundary=boundary)


def test_multipart_refuses_injected_content_type() -> None:
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        plan_multipart([ByteRange(0, 0)], 1, b"text/plain\r\nSet-Cookie: x=y")


@given(st.binary(min_size=1, max_size=400), st.data())
def test_multipart_body_parses_with_the_email_package(data: bytes, draw: st.DataObject) -> None:
    length = len(data)
    pairs = draw.draw(
        st.lists(
            st.tuples(st.integers(0, length - 1), st.integers(0, length - 1)),
            min_size=2,
            max_size=5,
        )
    )
    ranges = [ByteRange(min(a, b), max(a, b)) for a, b in pairs]
    plan = plan_multipart(ranges, length, b"application/octet-stream")
    body = plan.body(data)
    assert plan.content_length == len(body)
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + plan.content_type + b"\r\n\r\n" + body
    )
    parts = list(message.iter_parts())
    assert len(parts) == len(ranges)
    for part, byte_range in zip(parts, ranges, strict=True):
        assert part["Content-Range"] == byte_range.content_range(length).decode()
        assert part.get_payload(decode=True) == data[byte_range.first : byte_range.last + 1]
