"""The pieces of IMAP's formal syntax (RFC 3501 section 9) read from bytes.

A ``Reader`` walks one complete command (its literals inline, as they came
over the wire) and reads atoms, strings, lists, sequence sets and dates.
Its base, ``Cursor``, holds what reading a server's response needs too
(literal text, tokens, quoted strings and literals): the client's response
parser is another ``Cursor``, with its own leniency and error.
Every failure is an ``IMAPParseError``; nothing else escapes, whatever the
bytes.
"""

from __future__ import annotations

import bisect
import functools
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from torsion.errors import TorsionError
from torsion.mail._mutf7 import decode_modified_utf7

__all__ = ["Cursor", "IMAPError", "IMAPParseError", "Reader", "SequenceSet"]

# RFC 3501 section 9: ATOM-CHAR is any CHAR except atom-specials
# ("(" / ")" / "{" / SP / CTL / list-wildcards / quoted-specials /
# resp-specials).  ASTRING-CHAR adds "]", list-char adds "%" and "*".
_ATOM = re.compile(rb"[^(){ \x00-\x1f\x7f-\xff%*\"\\\]]+")
_ASTRING_ATOM = re.compile(rb"[^(){ \x00-\x1f\x7f-\xff%*\"\\]+")
_LIST_ATOM = re.compile(rb"[^(){ \x00-\x1f\x7f-\xff\"\\]+")
_QUOTED = re.compile(rb'"((?:[^"\\\r\n\x00\x80-\xff]|\\["\\])*)"')
_QUOTED_UTF8 = re.compile(rb'"((?:[^"\\\r\n\x00]|\\["\\])*)"')
_LITERAL = re.compile(rb"\{([0-9]{1,10})(\+?)\}\r\n")
_NUMBER = re.compile(rb"[0-9]{1,10}")
_SEQ_SET = re.compile(rb"[0-9*:,$]+")
_DATE = re.compile(rb"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
_DATE_TIME = re.compile(
    rb'"([ 0-9][0-9])-([A-Za-z]{3})-([0-9]{4}) '
    rb'([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"'
)
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_MAX_NUMBER = 2**32 - 1
_SYSTEM_FLAGS = {
    flag.lower(): flag
    for flag in ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent")
}


class IMAPError(TorsionError):
    """Something went wrong in an IMAP exchange."""


class IMAPParseError(IMAPError, ValueError):
    """Bytes that IMAP's grammar does not allow, or that break a limit.

    Attributes:
        tag: The command's tag when it could be read, else None (the reply is
            then an untagged BAD).
        fatal: True when the connection cannot go on (the server sends BYE
            and closes), for instance after a non-synchronising literal over
            the limit whose octets would otherwise be read as commands.
    """

    def __init__(self, message: str, *, tag: str | None = None, fatal: bool = False) -> None:
        super().__init__(message)
        self.tag = tag
        self.fatal = fatal


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """A set of message numbers or UIDs (RFC 3501 section 9, ``sequence-set``).

    Attributes:
        ranges: Inclusive ranges in the order the client wrote them; None
            stands for ``*`` (the largest number in use). ``n`` alone is
            ``(n, n)``; a range's ends may come in either order.
        saved: True for ``$``, the result saved by the last SEARCH (RFC 5182).
    """

    ranges: tuple[tuple[int | None, int | None], ...] = ()
    saved: bool = False

    def resolve(self, largest: int) -> list[int]:
        """Return the numbers of the set, ascending, none above ``largest``.

        ``*`` stands for ``largest``; ``largest`` of 0 (an empty mailbox)
        yields nothing. The work is bounded by ``largest`` and the number
        of ranges, not by the ranges' sizes: ``1:4294967295`` or ``1:*``
        written a thousand times is cheap.

        Raises:
            ValueError: The set is ``$``; the caller holds the saved result.
        """
        if self.saved:
            raise ValueError("$ stands for the saved search result")
        numbers: list[int] = []
        for first, last in _merged(self.ranges, largest):
            numbers.extend(range(first, last + 1))
        return numbers

    def contains(self, number: int, largest: int) -> bool:
        """Return whether ``number`` is in the set, ``*`` being ``largest``."""
        merged = _merged(self.ranges, largest)
        index = bisect.bisect_right(merged, (number, _MAX_NUMBER + 1)) - 1
        return index >= 0 and merged[index][0] <= number <= merged[index][1]

    def __str__(self) -> str:
        """Return the set as IMAP writes it."""
        if self.saved:
            return "$"

        def one(number: int | None) -> str:
            return "*" if number is None else str(number)

        return ",".join(
            one(low) if low == high else f"{one(low)}:{one(high)}" for low, high in self.ranges
        )


@functools.lru_cache(maxsize=64)
def _merged(
    ranges: tuple[tuple[int | None, int | None], ...], largest: int
) -> tuple[tuple[int, int], ...]:
    """Return the ranges within 1..largest, sorted and merged."""
    clamped: list[tuple[int, int]] = []
    for low, high in ranges:
        first = largest if low is None else low
        last = largest if high is None else high
        if first > last:
            first, last = last, first
        first, last = max(first, 1), min(last, largest)
        if first <= last:
            clamped.append((first, last))
    clamped.sort()
    merged: list[tuple[int, int]] = []
    for first, last in clamped:
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return tuple(merged)


def parse_sequence_set(text: bytes) -> SequenceSet:
    """Return the sequence set ``text`` spells.

    Raises:
        IMAPParseError: ``text`` is not a sequence set.
    """
    if text == b"$":
        return SequenceSet(saved=True)
    ranges: list[tuple[int | None, int | None]] = []
    for part in text.split(b","):
        ends = part.split(b":")
        if len(ends) > 2:
            raise IMAPParseError(f"bad sequence set {text!r}")
        numbers = [_seq_number(end, text) for end in ends]
        ranges.append((numbers[0], numbers[-1]))
    return SequenceSet(tuple(ranges))


def _seq_number(text: bytes, whole: bytes) -> int | None:
    if text == b"*":
        return None
    if not text.isdigit() or text.startswith(b"0") or len(text) > 10 or int(text) > _MAX_NUMBER:
        raise IMAPParseError(f"bad sequence set {whole!r}")
    return int(text)


class Cursor:
    """A cursor over one complete IMAP unit, literals inline: what both directions share.

    The server reads client commands with ``Reader``, the client reads
    server responses with its own subclass; both walk the same pieces of
    RFC 3501 section 9 (literal text, atoms, quoted strings, literals)
    and differ in which octets they take and in the error they raise.

    Args:
        data: The unit's octets without the final CRLF.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    def error(self, message: str) -> IMAPError:
        """Return the error to raise for ``message`` (subclasses say which)."""
        return IMAPParseError(message)

    def quoted_pattern(self) -> re.Pattern[bytes]:
        """Return the pattern of a quoted string, quotes included (group 1: inside)."""
        return _QUOTED

    def at_end(self) -> bool:
        """Return whether every octet has been read."""
        return self.position >= len(self.data)

    def peek(self, count: int = 1) -> bytes:
        """Return the next ``count`` octets without reading them."""
        return self.data[self.position : self.position + count]

    def accept(self, literal: bytes) -> bool:
        """Read ``literal`` if it comes next (letters in any case); return whether it did."""
        end = self.position + len(literal)
        if self.data[self.position : end].upper() == literal.upper():
            self.position = end
            return True
        return False

    def expect(self, literal: bytes) -> None:
        """Read ``literal`` exactly (case-insensitive for letters)."""
        if not self.accept(literal):
            raise self.error(f"expected {literal.decode('ascii')!r}")

    def _match(self, pattern: re.Pattern[bytes]) -> bytes | None:
        match = pattern.match(self.data, self.position)
        if match is None:
            return None
        self.position = match.end()
        return match.group(0)

    def token(self, pattern: re.Pattern[bytes], what: str) -> bytes:
        """Read what ``pattern`` matches next, or fail with "expected ``what``"."""
        found = self._match(pattern)
        if found is None:
            raise self.error(f"expected {what}")
        return found

    def is_string(self) -> bool:
        """Return whether a quoted string or literal comes next."""
        return self.peek() in (b'"', b"{")

    def string(self) -> bytes:
        """Read a quoted string or a literal; return its octets."""
        if self.peek() == b'"':
            match = self.quoted_pattern().match(self.data, self.position)
            if match is None:
                raise self.error("bad quoted string")
            self.position = match.end()
            return re.sub(rb"\\(.)", rb"\1", match.group(1))
        match = _LITERAL.match(self.data, self.position)
        if match is None:
            raise self.error("expected a string")
        size = int(match.group(1))
        start = match.end()
        if start + size > len(self.data):
            raise self.error("literal shorter than announced")
        self.position = start + size
        return self.data[start : self.position]


class Reader(Cursor):
    """A cursor over one complete command, literals inline.

    Args:
        data: The command's octets without the final CRLF.
        max_depth: How deeply parenthesised lists may nest.
        max_items: How many items all lists together may hold.
        utf8: Accept UTF-8 in quoted strings (after ENABLE UTF8=ACCEPT).
    """

    def __init__(
        self, data: bytes, *, max_depth: int = 16, max_items: int = 10000, utf8: bool = False
    ) -> None:
        super().__init__(data)
        self.tag: str | None = None
        self.max_depth = max_depth
        self.depth = 0
        self.items_left = max_items
        self.utf8 = utf8

    def error(self, message: str) -> IMAPParseError:
        """Return the parse error to raise, carrying the tag if read."""
        return IMAPParseError(message, tag=self.tag)

    def quoted_pattern(self) -> re.Pattern[bytes]:
        """Return the quoted-string pattern: 8-bit octets only after UTF8=ACCEPT."""
        return _QUOTED_UTF8 if self.utf8 else _QUOTED

    def space(self) -> None:
        """Read the one SP between arguments."""
        if self.peek() != b" ":
            raise self.error("expected a space")
        self.position += 1

    def end(self) -> None:
        """Check that nothing is left."""
        if not self.at_end():
            raise self.error("unexpected text at end of command")

    def count_item(self) -> None:
        """Charge one list item or argument against the limit."""
        self.items_left -= 1
        if self.items_left < 0:
            raise self.error("too many arguments")

    def atom(self) -> str:
        """Read an atom (ASCII, no specials) and return it."""
        return self.token(_ATOM, "an atom").decode("ascii")

    def astring_atom(self) -> str:
        """Read 1*ASTRING-CHAR (an atom that may hold ``]``)."""
        return self.token(_ASTRING_ATOM, "an atom").decode("ascii")

    def number(self, *, nonzero: bool = False) -> int:
        """Read a 32-bit unsigned number."""
        found = self._match(_NUMBER)
        if found is None or int(found) > _MAX_NUMBER or (nonzero and int(found) == 0):
            raise self.error("expected a number")
        return int(found)

    def astring(self) -> bytes:
        """Read an astring: an atom with ``]`` allowed, or a string."""
        if self.is_string():
            return self.string()
        return self.astring_atom().encode("ascii")

    def astring_text(self) -> str:
        """Read an astring and decode it as UTF-8 (ASCII in plain IMAP)."""
        raw = self.astring()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.error("string is not UTF-8") from None

    def nstring(self) -> bytes | None:
        """Read a string or NIL."""
        if self.accept(b"NIL"):
            return None
        return self.string()

    def mailbox(self) -> str:
        """Read a mailbox name: decoded from modified UTF-7, INBOX upper-cased.

        RFC 3501 section 5.1: ``INBOX`` is case-insensitive, every other
        name case-sensitive.
        """
        return self._mailbox_text(self.astring())

    def list_mailbox(self) -> str:
        """Read LIST's pattern: like a mailbox, ``%`` and ``*`` allowed bare."""
        if self.is_string():
            return self._mailbox_text(self.string(), inbox=False)
        return self._mailbox_text(self.token(_LIST_ATOM, "a mailbox pattern"), inbox=False)

    def _mailbox_text(self, raw: bytes, *, inbox: bool = True) -> str:
        try:
            text = raw.decode("ascii") if not self.utf8 else raw.decode("utf-8")
            name = decode_modified_utf7(text) if not self.utf8 else text
        except ValueError:
            raise self.error("mailbox name is not modified UTF-7") from None
        if inbox and name.upper() == "INBOX":
            return "INBOX"
        return name

    def sequence_set(self) -> SequenceSet:
        """Read a sequence set (or ``$``)."""
        found = self.token(_SEQ_SET, "a sequence set")
        try:
            return parse_sequence_set(found)
        except IMAPParseError as exc:
            raise self.error(str(exc)) from None

    def open_list(self) -> None:
        """Read ``(`` and charge one level of nesting."""
        self.expect(b"(")
        self.depth += 1
        if self.depth > self.max_depth:
            raise self.error("lists nested too deeply")

    def close_list(self) -> None:
        """Read ``)``."""
        self.expect(b")")
        self.depth -= 1

    def flag(self, *, wildcard: bool = False) -> str:
        r"""Read a flag: ``\System``, a keyword, or ``\*`` where allowed.

        System flags come back spelled as RFC 3501 spells them, keywords as
        sent.
        """
        if self.accept(b"\\"):
            if wildcard and self.accept(b"*"):
                return "\\*"
            name = "\\" + self.atom()
            # RFC 3501 section 2.3.2: system flags in any case are the same flag.
            return _SYSTEM_FLAGS.get(name.lower(), name)
        return self.atom()

    def flag_list(self) -> tuple[str, ...]:
        """Read a parenthesised, space-separated list of flags."""
        self.open_list()
        flags: list[str] = []
        while not self.accept(b")"):
            if flags:
                self.space()
            self.count_item()
            flags.append(self.flag())
        self.depth -= 1
        return tuple(flags)

    def date(self) -> date:
        """Read a date (``1-Feb-1994``, quoted or not) for SEARCH."""
        quoted = self.accept(b'"')
        match = _DATE.match(self.data, self.position)
        if match is None:
            raise self.error("expected a date")
        self.position = match.end()
        if quoted:
            self.expect(b'"')
        day, month, year = match.groups()
        try:
            return date(int(year), _month(month), int(day))
        except (KeyError, ValueError):
            raise self.error("bad date") from None

    def date_time(self) -> datetime:
        """Read a quoted date-time (``"17-Jul-1996 02:44:25 -0700"``)."""
        match = _DATE_TIME.match(self.data, self.position)
        if match is None:
            raise self.error("expected a date-time")
        self.position = match.end()
        day, month, year, hour, minute, second, sign, zone_h, zone_m = match.groups()
        try:
            offset = timedelta(hours=int(zone_h), minutes=int(zone_m))
            if offset >= timedelta(hours=24):
                raise ValueError("zone out of range")
            return datetime(
                int(year),
                _month(month),
                int(day),
                int(hour),
                int(minute),
                int(second),
                tzinfo=timezone(-offset if sign == b"-" else offset),
            )
        except (KeyError, ValueError):
            raise self.error("bad date-time") from None


def _month(name: bytes) -> int:
    return _MONTHS[name.decode("ascii").lower()]
