"""Conditional requests (RFC 9110 §13): validators, HTTP dates, preconditions.

A resource that knows its entity tag and modification time hands them, with
the request's conditional header fields, to :func:`evaluate_preconditions`,
which applies RFC 9110 §13.2.2's order of evaluation and says what to do:
proceed, answer 304 Not Modified, or answer 412 Precondition Failed.
:func:`if_range_allows` says whether a ``Range`` still applies (§13.1.5).

Header values are taken as the raw bytes the parser gave. A field sent on
several lines must be passed joined with ``b", "`` (RFC 9110 §5.3), which is
what a multi-valued header container's combined value is.

HTTP dates are parsed strictly in the three forms RFC 9110 §5.6.7 requires a
recipient to accept (IMF-fixdate, RFC 850, asctime) and always formatted as
IMF-fixdate. Anything else is "not a valid date", which the RFC says to ignore.
"""

from __future__ import annotations

import calendar
import enum
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from torsion.web._headers import Headers

__all__ = [
    "ETag",
    "Precondition",
    "check_preconditions",
    "evaluate_preconditions",
    "format_http_date",
    "if_range_allows",
    "make_etag",
    "parse_etags",
    "parse_http_date",
]

_DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_LONG_DAYS: Final = (
    b"Monday", b"Tuesday", b"Wednesday", b"Thursday", b"Friday", b"Saturday", b"Sunday",
)  # fmt: skip
_MONTHS: Final = (
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
)  # fmt: skip
_MONTH_NUMBERS: Final = {name.encode(): number for number, name in enumerate(_MONTHS, 1)}
_SHORT_DAYS: Final = frozenset(day.encode() for day in _DAYS)


def format_http_date(seconds: float) -> str:
    """Format a time as an IMF-fixdate, e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``.

    Args:
        seconds: Seconds since the epoch (fractions are dropped).

    Returns:
        The date in the one form RFC 9110 §5.6.7 lets a sender generate.
    """
    t = time.gmtime(int(seconds))
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def _clock(value: bytes) -> tuple[int, int, int] | None:
    """Parse ``HH:MM:SS`` (two digits each), or None."""
    if len(value) != 8 or value[2:3] != b":" or value[5:6] != b":":
        return None
    hour, minute, second = value[0:2], value[3:5], value[6:8]
    if not (hour.isdigit() and minute.isdigit() and second.isdigit()):
        return None
    # Second 60 is a leap second (RFC 5322 §3.3 allows it); it becomes :59.
    h, m, s = int(hour), int(minute), int(second)
    if h > 23 or m > 59 or s > 60:
        return None
    return h, m, min(s, 59)


def _timestamp(year: int, month: int, day: int, clock: tuple[int, int, int]) -> float | None:
    """Seconds since the epoch for a UTC date, or None when the date is impossible."""
    if year < 1 or not 1 <= day <= calendar.monthrange(year, month)[1]:
        return None
    return float(calendar.timegm((year, month, day, *clock)))


def _digits(value: bytes, length: int) -> int | None:
    """The number ``value`` spells in exactly ``length`` ASCII digits, or None."""
    if len(value) != length or not value.isdigit() or not value.isascii():
        return None
    return int(value)


def parse_http_date(value: bytes | str, *, now: float | None = None) -> float | None:
    """Parse an HTTP date in any of the three forms of RFC 9110 §5.6.7.

    IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``), the obsolete RFC 850 form
    (``Sunday, 06-Nov-94 08:49:37 GMT``) and asctime
    (``Sun Nov  6 08:49:37 1994``). The day name must fit the form but is not
    checked against the date, and the time zone must be GMT, as the RFC says.

    Args:
        value: The field value.
        now: The current time, to place an RFC 850 two-digit year: one that
            would be more than 50 years in the future is taken as the most
            recent past year with those digits. Defaults to the system time.

    Returns:
        Seconds since the epoch, or None when ``value`` is not a valid date.
    """
    raw = value.encode("latin-1", "replace") if isinstance(value, str) else value
    parts = raw.strip(b" \t").split()
    if len(parts) == 6 and parts[5] == b"GMT" and parts[0][:-1] in _SHORT_DAYS:
        # IMF-fixdate: day-name "," SP day SP month SP year SP time SP "GMT"
        if not parts[0].endswith(b","):
            return None
        day = _digits(parts[1], 2)
        month = _MONTH_NUMBERS.get(parts[2])
        year = _digits(parts[3], 4)
        clock = _clock(parts[4])
        if day is None or month is None or year is None or clock is None:
            return None
        return _timestamp(year, month, day, clock)
    if len(parts) == 4 and parts[3] == b"GMT" and parts[0][:-1] in _LONG_DAYS:
        # RFC 850: day-name-l "," SP day "-" month "-" 2DIGIT SP time SP "GMT"
        if not parts[0].endswith(b","):
            return None
        pieces = parts[1].split(b"-")
        if len(pieces) != 3:
            return None
        day = _digits(pieces[0], 2)
        month = _MONTH_NUMBERS.get(pieces[1])
        short_year = _digits(pieces[2], 2)
        clock = _clock(parts[2])
        if day is None or month is None or short_year is None or clock is None:
            return None
        this_year = time.gmtime(time.time() if now is None else now).tm_year
        year = this_year - this_year % 100 + short_year
        if year > this_year + 50:
            year -= 100
        return _timestamp(year, month, day, clock)
    if len(parts) == 5 and parts[0] in _SHORT_DAYS:
        # asctime: day-name SP month SP ( 2DIGIT / ( SP DIGIT )) SP time SP year
        month = _MONTH_NUMBERS.get(parts[1])
        day = _digits(parts[2], len(parts[2])) if len(parts[2]) in (1, 2) else None
        clock = _clock(parts[3])
        year = _digits(parts[4], 4)
        if day is None or month is None or year is None or clock is None:
            return None
        return _timestamp(year, month, day, clock)
    return None


@dataclass(frozen=True, slots=True)
class ETag:
    """An entity tag (RFC 9110 §8.8.3): an opaque validator, strong or weak.

    Attributes:
        tag: The opaque tag, without its quotes; characters from ``!`` and
            ``#`` to ``~`` (no spaces, no ``"``).
        weak: Whether the tag is weak (``W/"..."``): equal only in meaning,
            not byte for byte.
    """

    tag: str
    weak: bool = False

    def __post_init__(self) -> None:
        """Refuse a tag that could not be written between quotes."""
        for char in self.tag:
            if not (char == "!" or "#" <= char <= "~"):
                raise ValueError(f"not a valid entity-tag character: {char!r}")

    def format(self) -> str:
        """Return the tag as it is written in an ``ETag`` field, quotes and all."""
        return f'W/"{self.tag}"' if self.weak else f'"{self.tag}"'

    def strong_equals(self, other: ETag) -> bool:
        """Strong comparison (§8.8.3.2): both strong and the same tag."""
        return not self.weak and not other.weak and self.tag == other.tag

    def weak_equals(self, other: ETag) -> bool:
        """Weak comparison (§8.8.3.2): the same tag, strong or weak."""
        return self.tag == other.tag


def make_etag(size: int, modified: float, *, weak: bool = False) -> ETag:
    """Make an entity tag for a file from its size and modification time.

    Args:
        size: The file's size in bytes.
        modified: Its modification time in seconds (nanoseconds are kept).
        weak: Whether to make a weak tag.

    Returns:
        A tag that changes whenever the size or the modification time does.
    """
    return ETag(f"{int(modified * 1_000_000_000):x}-{size:x}", weak=weak)


_ANY: Final = "*"


def parse_etags(value: bytes) -> list[ETag] | None:
    """Parse an entity-tag list (``If-Match``, ``If-None-Match``).

    Args:
        value: The field value: ``*`` or a comma-separated list of tags.

    Returns:
        The tags in order, or None for ``*``. Parsing stops at the first
        malformed element, keeping the tags before it: a recipient cannot
        know what a damaged list meant, and a shorter list only makes a
        condition fail safe (a miss for ``If-Match``, a full response for
        ``If-None-Match``).
    """
    text = value.decode("latin-1").strip(" \t")
    if text == _ANY:
        return None
    tags: list[ETag] = []
    position, end = 0, len(text)
    while position < end:
        char = text[position]
        if char in ", \t":
            position += 1
            continue
        weak = text.startswith("W/", position)
        if weak:
            position += 2
        if position >= end or text[position] != '"':
            break
        close = text.find('"', position + 1)
        if close < 0:
            break
        try:
            tags.append(ETag(text[position + 1 : close], weak=weak))
        except ValueError:
            break
        position = close + 1
        if position < end and text[position] not in ", \t":
            break
    return tags


class Precondition(enum.Enum):
    """What to do with a request once its preconditions are evaluated."""

    PROCEED = 200
    """Handle the request as if it had no conditional fields."""
    NOT_MODIFIED = 304
    """Answer 304 Not Modified (GET and HEAD only)."""
    PRECONDITION_FAILED = 412
    """Answer 412 Precondition Failed."""


def _matches(value: bytes, etag: ETag | None, exists: bool, *, strong: bool) -> bool:
    """Whether an entity-tag list field matches the current representation."""
    tags = parse_etags(value)
    if tags is None:
        return exists
    if etag is None:
        return False
    if strong:
        return any(tag.strong_equals(etag) for tag in tags)
    return any(tag.weak_equals(etag) for tag in tags)


def evaluate_preconditions(
    method: bytes,
    *,
    etag: ETag | None = None,
    last_modified: float | None = None,
    exists: bool = True,
    if_match: bytes | None = None,
    if_none_match: bytes | None = None,
    if_modified_since: bytes | None = None,
    if_unmodified_since: bytes | None = None,
) -> Precondition:
    """Evaluate a request's preconditions in RFC 9110 §13.2.2's order.

    1. ``If-Match`` (strong comparison) false: 412.
    2. Else ``If-Unmodified-Since`` false: 412.
    3. ``If-None-Match`` (weak comparison) false: 304 for GET and HEAD,
       412 otherwise.
    4. Else, for GET and HEAD, ``If-Modified-Since`` false: 304.

    A date field that is not a valid HTTP date is ignored, and so is a date
    field when the resource has no modification time. Times are compared in
    whole seconds, the resolution of an HTTP date.

    Args:
        method: The request method, e.g. ``b"GET"``.
        etag: The selected representation's current entity tag, if any.
        last_modified: Its modification time in seconds, if known.
        exists: Whether there is a current representation (for ``*``).
        if_match: The ``If-Match`` field value, if sent.
        if_none_match: The ``If-None-Match`` field value, if sent.
        if_modified_since: The ``If-Modified-Since`` field value, if sent.
        if_unmodified_since: The ``If-Unmodified-Since`` field value, if sent.

    Returns:
        What to do.
    """
    modified = None if last_modified is None else int(last_modified)
    if if_match is not None:
        if not _matches(if_match, etag, exists, strong=True):
            return Precondition.PRECONDITION_FAILED
    elif if_unmodified_since is not None and modified is not None:
        date = parse_http_date(if_unmodified_since)
        if date is not None and modified > date:
            return Precondition.PRECONDITION_FAILED
    safe = method in (b"GET", b"HEAD")
    if if_none_match is not None:
        if _matches(if_none_match, etag, exists, strong=False):
            return Precondition.NOT_MODIFIED if safe else Precondition.PRECONDITION_FAILED
    elif safe and if_modified_since is not None and modified is not None:
        date = parse_http_date(if_modified_since)
        if date is not None and modified <= date:
            return Precondition.NOT_MODIFIED
    return Precondition.PROCEED


def _combined(headers: Headers, name: bytes) -> bytes | None:
    """A field's lines joined with ", " (RFC 9110 §5.3), or None when absent."""
    values = headers.get_all(name)
    if not values:
        return None
    return values[0] if len(values) == 1 else b", ".join(values)


def check_preconditions(
    method: bytes,
    headers: Headers,
    *,
    etag: ETag | None = None,
    last_modified: float | None = None,
    exists: bool = True,
) -> Precondition:
    """Evaluate a request's preconditions from its header fields.

    :func:`evaluate_preconditions` with the four fields taken from
    ``headers`` (each field's lines joined as one list).

    Args:
        method: The request method, e.g. ``b"GET"``.
        headers: The request's header fields.
        etag: The selected representation's current entity tag, if any.
        last_modified: Its modification time in seconds, if known.
        exists: Whether there is a current representation (for ``*``).

    Returns:
        What to do.
    """
    return evaluate_preconditions(
        method,
        etag=etag,
        last_modified=last_modified,
        exists=exists,
        if_match=_combined(headers, b"if-match"),
        if_none_match=_combined(headers, b"if-none-match"),
        if_modified_since=headers.get(b"if-modified-since"),
        if_unmodified_since=headers.get(b"if-unmodified-since"),
    )


def if_range_allows(
    if_range: bytes | None, *, etag: ETag | None = None, last_modified: float | None = None
) -> bool:
    """Whether a ``Range`` field still applies given ``If-Range`` (§13.1.5).

    An entity tag must match strongly (a weak tag never does); a date must
    equal the modification time exactly. When the condition is false the
    server ignores ``Range`` and sends the whole representation with 200.

    Args:
        if_range: The ``If-Range`` field value, or None when not sent.
        etag: The selected representation's current entity tag, if any.
        last_modified: Its modification time in seconds, if known.

    Returns:
        True when the range request goes ahead.
    """
    if if_range is None:
        return True
    value = if_range.strip(b" \t")
    if value.startswith((b'"', b"W/")):
        tags = parse_etags(value)
        if not tags or len(tags) != 1 or etag is None:
            return False
        return tags[0].strong_equals(etag)
    date = parse_http_date(value)
    return date is not None and last_modified is not None and int(last_modified) == date
