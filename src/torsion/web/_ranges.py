"""Range requests (RFC 9110 §14): parse ``Range``, plan 206 and 416 responses.

:func:`parse_range` reads a ``Range: bytes=...`` field against the selected
representation's length and says what to send: the whole representation
(200, the field ignored), part of it (206), or 416 Range Not Satisfiable with
``Content-Range: bytes */LENGTH``. Overlapping and nearly adjacent ranges are
coalesced (§14.3 allows it), and requests that would make the server do much
more work than sending the whole thing are ignored: many ranges, or ranges
that overlap so that the same bytes would go out many times (the
Apache "killer" of CVE-2011-3192). Ignoring, rather than answering 416, is
what RFC 9110 §14.2 lets a server do with a range set it will not honour, and
a client still gets the representation.

For several ranges, :func:`plan_multipart` lays out the
``multipart/byteranges`` body (§14.6): the boundary, each part's header bytes
and byte range, and the closing delimiter, so a static file resource can send
part headers and file slices (or sendfile) without building the body in
memory. Nothing here reads a file or touches a socket.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

__all__ = [
    "ByteRange",
    "MultipartByteRanges",
    "MultipartPart",
    "RangeOutcome",
    "RangeRequest",
    "parse_range",
    "plan_multipart",
    "unsatisfiable_content_range",
]

DEFAULT_MAX_RANGES: Final = 16
DEFAULT_MAX_SPECS: Final = 100
DEFAULT_MIN_GAP: Final = 80
_MAX_DIGITS: Final = 19  # 10**19 bytes is past any real length; bounds int() work


@dataclass(frozen=True, slots=True)
class ByteRange:
    """A satisfiable byte range: ``first`` to ``last`` inclusive, as on the wire.

    Attributes:
        first: Offset of the first byte.
        last: Offset of the last byte (inclusive, so never below ``first``).
    """

    first: int
    last: int

    @property
    def length(self) -> int:
        """How many bytes the range holds."""
        return self.last - self.first + 1

    def content_range(self, complete_length: int) -> bytes:
        """The ``Content-Range`` value for this range, e.g. ``bytes 0-99/1000``.

        Args:
            complete_length: The representation's whole length.
        """
        return b"bytes %d-%d/%d" % (self.first, self.last, complete_length)


def unsatisfiable_content_range(complete_length: int) -> bytes:
    """The ``Content-Range`` value a 416 response carries: ``bytes */LENGTH``.

    Args:
        complete_length: The representation's whole length.
    """
    return b"bytes */%d" % complete_length


class RangeOutcome(enum.Enum):
    """What to answer to a request with a ``Range`` field."""

    FULL = 200
    """Ignore the field: send the whole representation with 200."""
    PARTIAL = 206
    """Send the ranges with 206 (one: ``Content-Range``; more: multipart)."""
    NOT_SATISFIABLE = 416
    """Send 416 with ``Content-Range: bytes */LENGTH``."""


@dataclass(frozen=True, slots=True)
class RangeRequest:
    """The result of :func:`parse_range`.

    Attributes:
        outcome: What to answer.
        ranges: The ranges to send, ascending and not overlapping (empty
            unless ``outcome`` is PARTIAL).
    """

    outcome: RangeOutcome
    ranges: tuple[ByteRange, ...] = ()


_FULL: Final = RangeRequest(RangeOutcome.FULL)
_NOT_SATISFIABLE: Final = RangeRequest(RangeOutcome.NOT_SATISFIABLE)


def _position(text: bytes) -> int | None:
    """A non-negative decimal position, or None when ``text`` is not one."""
    if not text or len(text) > _MAX_DIGITS or not text.isdigit():
        return None
    return int(text)


def parse_range(
    value: bytes | None,
    length: int,
    *,
    max_ranges: int = DEFAULT_MAX_RANGES,
    max_specs: int = DEFAULT_MAX_SPECS,
    min_gap: int = DEFAULT_MIN_GAP,
) -> RangeRequest:
    """Parse a ``Range`` field for a representation of ``length`` bytes.

    Understands ``bytes=first-last``, ``bytes=first-`` (to the end) and
    ``bytes=-suffix`` (the last ``suffix`` bytes), comma-separated (RFC 9110
    §14.1.2). A field that is not valid, or in another unit, is ignored
    (FULL), as §14.2 says. A valid field none of whose ranges fall within the
    representation is NOT_SATISFIABLE. Ranges that overlap, touch, or lie
    fewer than ``min_gap`` bytes apart are coalesced, and the result sorted.

    Refused (FULL) as abusive: more than ``max_specs`` ranges in the field,
    more than ``max_ranges`` after coalescing, or ranges that together ask
    for more bytes than twice the representation's length.

    Args:
        value: The field value, or None when the request has none.
        length: The selected representation's length in bytes.
        max_ranges: Most ranges to send in one multipart response.
        max_specs: Most ranges to read from the field.
        min_gap: Ranges closer than this are sent as one: a part's headers
            cost about this many bytes.

    Returns:
        What to answer, and the ranges for PARTIAL.
    """
    if value is None:
        return _FULL
    unit, equals, spec_text = value.partition(b"=")
    if not equals or unit.strip(b" \t").lower() != b"bytes":
        return _FULL
    specs = spec_text.split(b",")
    if len(specs) > max_specs:
        return _FULL
    wanted: list[ByteRange] = []
    requested = 0
    valid = 0
    for raw in specs:
        spec = raw.strip(b" \t")
        if not spec:
            continue  # empty list elements are allowed (RFC 9110 §5.6.1)
        first_text, dash, last_text = spec.partition(b"-")
        if not dash:
            return _FULL
        if not first_text:
            suffix = _position(last_text)
            if suffix is None:
                return _FULL
            valid += 1
            if suffix and not length:
                # RFC 9110 §14.1.2: the one satisfiable range of an empty
                # representation; its bytes are the whole (empty) thing.
                return _FULL
            if not suffix:
                continue
            first, last = max(length - suffix, 0), length - 1
        else:
            start = _position(first_text)
            if start is None:
                return _FULL
            if last_text:
                end = _position(last_text)
                if end is None or end < start:
                    return _FULL
            else:
                end = length - 1
            valid += 1
            if start >= length:
                continue
            first, last = start, min(end, length - 1)
        requested += last - first + 1
        wanted.append(ByteRange(first, last))
    if not valid:
        return _FULL
    if not wanted:
        return _NOT_SATISFIABLE
    if requested > 2 * length:
        return _FULL
    ranges = _coalesce(wanted, min_gap)
    if len(ranges) > max_ranges:
        return _FULL
    return RangeRequest(RangeOutcome.PARTIAL, tuple(ranges))


def _coalesce(ranges: list[ByteRange], min_gap: int) -> list[ByteRange]:
    """Sort ranges and merge those that overlap or lie within ``min_gap``."""
    if len(ranges) == 1:
        return ranges
    ordered = sorted(ranges, key=lambda r: r.first)
    merged = [ordered[0]]
    for current in ordered[1:]:
        previous = merged[-1]
        if current.first <= previous.last + 1 + min_gap:
            if current.last > previous.last:
                merged[-1] = ByteRange(previous.first, current.last)
        else:
            merged.append(current)
    return merged


@dataclass(frozen=True, slots=True)
class MultipartPart:
    """One part of a ``multipart/byteranges`` body.

    Attributes:
        header: The bytes to send before the range's data: the delimiter
            (preceded by CRLF for every part but the first) and the part's
            ``Content-Type`` and ``Content-Range`` fields, ending in CRLF CRLF.
        range: The representation's bytes to send after ``header``.
    """

    header: bytes
    range: ByteRange


@dataclass(frozen=True, slots=True)
class MultipartByteRanges:
    """The layout of a ``multipart/byteranges`` response body (§14.6).

    Send, in order, each part's ``header`` then its range's bytes, then
    ``trailer``.

    Attributes:
        boundary: The boundary string.
        content_type: The response's ``Content-Type`` value.
        parts: The parts in order.
        trailer: The closing delimiter.
        content_length: The whole body's length, for ``Content-Length``.
    """

    boundary: bytes
    content_type: bytes
    parts: tuple[MultipartPart, ...]
    trailer: bytes
    content_length: int

    def chunks(self, read: Callable[[ByteRange], bytes]) -> Iterator[bytes]:
        """Yield the body's pieces in order, reading each range with ``read``.

        Args:
            read: Returns the representation's bytes for a range.
        """
        for part in self.parts:
            yield part.header
            yield read(part.range)
        yield self.trailer

    def body(self, representation: bytes) -> bytes:
        """Build the whole body for a representation held in memory.

        Args:
            representation: The complete representation.
        """
        return b"".join(self.chunks(lambda r: representation[r.first : r.last + 1]))


def plan_multipart(
    ranges: tuple[ByteRange, ...] | list[ByteRange],
    complete_length: int,
    content_type: bytes | None,
    *,
    boundary: bytes | None = None,
) -> MultipartByteRanges:
    """Lay out a ``multipart/byteranges`` body for several ranges.

    Args:
        ranges: The ranges, as :func:`parse_range` gave them.
        complete_length: The representation's whole length.
        content_type: The representation's media type, repeated in each part
            (None to leave it out).
        boundary: The boundary to use; by default 32 random hex digits, which
            no representation is likely to contain (RFC 2046 §5.1.1).

    Returns:
        The layout, with the body's total length.

    Raises:
        ValueError: ``boundary`` is not 1 to 70 characters from RFC 2046's set,
            or ``content_type`` holds CR, LF or NUL.
    """
    if boundary is None:
        boundary = secrets.token_hex(16).encode("ascii")
    elif not 1 <= len(boundary) <= 70 or boundary.translate(None, _BOUNDARY_CHARS):
        raise ValueError(f"not a valid multipart boundary: {boundary!r}")
    if content_type is not None and any(c in content_type for c in (b"\r", b"\n", b"\0")):
        raise ValueError("a Content-Type value may not hold CR, LF or NUL")
    type_line = b"Content-Type: " + content_type + b"\r\n" if content_type is not None else b""
    parts: list[MultipartPart] = []
    total = 0
    for index, byte_range in enumerate(ranges):
        header = b"".join(
            (
                b"\r\n--" if index else b"--",
                boundary,
                b"\r\n",
                type_line,
                b"Content-Range: ",
                byte_range.content_range(complete_length),
                b"\r\n\r\n",
            )
        )
        parts.append(MultipartPart(header, byte_range))
        total += len(header) + byte_range.length
    trailer = b"\r\n--" + boundary + b"--\r\n"
    return MultipartByteRanges(
        boundary=boundary,
        content_type=b"multipart/byteranges; boundary=" + boundary,
        parts=tuple(parts),
        trailer=trailer,
        content_length=total + len(trailer),
    )


# RFC 2046 §5.1.1 bchars, without the space (which may not end a boundary and
# is needless here).
_BOUNDARY_CHARS: Final = (
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=?"
)
