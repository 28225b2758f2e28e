"""SEARCH: the key grammar of RFC 3501 section 6.4.4 as a tree, and its evaluation.

``parse_search_program`` reads the keys of a SEARCH command into one
``SearchKey`` (several keys are their AND). ``matches`` tells whether a
message (``SearchMessage``) satisfies a key: flags, dates, sizes, numbers
and UIDs from what the mailbox knows; headers and text through the stdlib
``email`` package, parsed once per message and only when a key needs them.
String keys match as case-insensitive substrings, as the RFC says; header
fields are compared after decoding RFC 2047 encoded words, text after
undoing transfer encodings. The work is bounded by the key's size (the
parser bounds it) times the message's.
"""

from __future__ import annotations

import email.errors
import email.header
import email.policy
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.message import Message
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from typing import Literal

from torsion.mail.imap._reader import Reader, SequenceSet
from torsion.mail.imap._responses import string

__all__ = [
    "SEARCH_CHARSETS",
    "AllKey",
    "AndKey",
    "DateKey",
    "FlagKey",
    "NotKey",
    "OrKey",
    "SearchKey",
    "SearchMessage",
    "SequenceKey",
    "SizeKey",
    "TextKey",
    "format_search_key",
    "matches",
    "parse_search_program",
]


SEARCH_CHARSETS = frozenset({"US-ASCII", "UTF-8"})
"""The CHARSETs SEARCH takes; for others the server answers
``NO [BADCHARSET (US-ASCII UTF-8)]`` (RFC 3501 sections 6.4.4 and 7.1)."""


@dataclass(frozen=True, slots=True)
class AllKey:
    """ALL: every message."""


@dataclass(frozen=True, slots=True)
class FlagKey:
    r"""A flag set (``present``) or not: ANSWERED, UNSEEN, KEYWORD x, RECENT...

    Attributes:
        flag: ``\Seen``, ``\Recent``, a keyword...
        present: False for the UN- forms.
    """

    flag: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class DateKey:
    """BEFORE, ON, SINCE (internal date) and SENTBEFORE, SENTON, SENTSINCE (Date:).

    Dates compare by day, disregarding time and timezone (RFC 3501 section
    6.4.4).
    """

    sent: bool
    relation: Literal["before", "on", "since"]
    day: date


@dataclass(frozen=True, slots=True)
class SizeKey:
    """LARGER n (``larger``) or SMALLER n, in RFC822.SIZE octets."""

    larger: bool
    size: int


@dataclass(frozen=True, slots=True)
class TextKey:
    """A substring in part of the message.

    Attributes:
        where: ``"header"`` (with ``field_name``), ``"body"`` or ``"text"``
            (header and body); BCC, CC, FROM, SUBJECT and TO are ``"header"``
            keys on their field.
        field_name: The header field, for ``"header"``.
        text: The string to find; empty matches any message that has the
            field (RFC 3501 on HEADER).
    """

    where: Literal["header", "body", "text"]
    text: str
    field_name: str = ""


@dataclass(frozen=True, slots=True)
class SequenceKey:
    """Message numbers (``uid`` False) or UIDs in a set."""

    numbers: SequenceSet
    uid: bool = False


@dataclass(frozen=True, slots=True)
class NotKey:
    """NOT key."""

    key: SearchKey


@dataclass(frozen=True, slots=True)
class OrKey:
    """OR key1 key2."""

    left: SearchKey
    right: SearchKey


@dataclass(frozen=True, slots=True)
class AndKey:
    """Several keys, all of which must match (a parenthesised list or the program)."""

    keys: tuple[SearchKey, ...]


SearchKey = AllKey | FlagKey | DateKey | SizeKey | TextKey | SequenceKey | NotKey | OrKey | AndKey

_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "RECENT": ("\\Recent", True),
    "SEEN": ("\\Seen", True),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
}
_HEADER_KEYS = {"BCC": "Bcc", "CC": "Cc", "FROM": "From", "SUBJECT": "Subject", "TO": "To"}
_DATE_KEYS: dict[str, tuple[bool, Literal["before", "on", "since"]]] = {
    "BEFORE": (False, "before"),
    "ON": (False, "on"),
    "SINCE": (False, "since"),
    "SENTBEFORE": (True, "before"),
    "SENTON": (True, "on"),
    "SENTSINCE": (True, "since"),
}


def parse_search_program(reader: Reader) -> SearchKey:
    """Read SEARCH's keys (one or more, space-separated) as one key.

    Raises:
        IMAPParseError: The keys are not RFC 3501's grammar.
    """
    keys = [_key(reader)]
    while reader.accept(b" "):
        keys.append(_key(reader))
    return keys[0] if len(keys) == 1 else AndKey(tuple(keys))


def _key(reader: Reader) -> SearchKey:
    reader.count_item()
    if reader.peek() == b"(":
        reader.open_list()
        keys = [_key(reader)]
        while reader.accept(b" "):
            keys.append(_key(reader))
        reader.close_list()
        return keys[0] if len(keys) == 1 else AndKey(tuple(keys))
    if reader.peek() in (b"*", b"$") or reader.peek().isdigit():
        return SequenceKey(reader.sequence_set())
    name = reader.atom().upper()
    if name == "ALL":
        return AllKey()
    if name in _FLAG_KEYS:
        flag, present = _FLAG_KEYS[name]
        return FlagKey(flag, present)
    if name == "NEW":
        return AndKey((FlagKey("\\Recent"), FlagKey("\\Seen", present=False)))
    if name == "OLD":
        return FlagKey("\\Recent", present=False)
    if name in ("KEYWORD", "UNKEYWORD"):
        reader.space()
        return FlagKey(reader.atom(), present=name == "KEYWORD")
    if name in _HEADER_KEYS:
        reader.space()
        return TextKey("header", reader.astring_text(), _HEADER_KEYS[name])
    if name in ("BODY", "TEXT"):
        reader.space()
        return TextKey("body" if name == "BODY" else "text", reader.astring_text())
    if name == "HEADER":
        reader.space()
        field_name = reader.astring_text()
        reader.space()
        return TextKey("header", reader.astring_text(), field_name)
    if name in _DATE_KEYS:
        sent, relation = _DATE_KEYS[name]
        reader.space()
        return DateKey(sent, relation, reader.date())
    if name in ("LARGER", "SMALLER"):
        reader.space()
        return SizeKey(name == "LARGER", reader.number())
    if name == "UID":
        reader.space()
        return SequenceKey(reader.sequence_set(), uid=True)
    if name == "NOT":
        reader.space()
        reader.depth += 1
        if reader.depth > reader.max_depth:
            raise reader.error("search keys nested too deeply")
        inner = _key(reader)
        reader.depth -= 1
        return NotKey(inner)
    if name == "OR":
        reader.depth += 1
        if reader.depth > reader.max_depth:
            raise reader.error("search keys nested too deeply")
        reader.space()
        left = _key(reader)
        reader.space()
        right = _key(reader)
        reader.depth -= 1
        return OrKey(left, right)
    raise reader.error(f"unknown search key {name}")


_FLAG_NAMES = {value: name for name, value in _FLAG_KEYS.items()}
_HEADER_NAMES = {value: name for name, value in _HEADER_KEYS.items()}
_DATE_NAMES = {value: name for name, value in _DATE_KEYS.items()}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_search_key(key: SearchKey) -> bytes:
    """Return ``key`` as a client writes it (strings quoted, or as literals).

    The client side's inverse of ``parse_search_program``: a literal
    (``{n}`` CRLF octets) needs the server's ``+`` before its octets.
    """
    if isinstance(key, AllKey):
        return b"ALL"
    if isinstance(key, FlagKey):
        name = _FLAG_NAMES.get((key.flag, key.present))
        if name is not None:
            return name.encode("ascii")
        if key.flag == "\\Recent":
            return b"OLD"
        return (b"KEYWORD " if key.present else b"UNKEYWORD ") + key.flag.encode("ascii")
    if isinstance(key, DateKey):
        name = _DATE_NAMES[(key.sent, key.relation)]
        day = key.day
        return f"{name} {day.day}-{_MONTHS[day.month - 1]}-{day.year:04d}".encode("ascii")
    if isinstance(key, SizeKey):
        return b"LARGER %d" % key.size if key.larger else b"SMALLER %d" % key.size
    if isinstance(key, TextKey):
        text = string(key.text)
        if key.where == "body":
            return b"BODY " + text
        if key.where == "text":
            return b"TEXT " + text
        name = _HEADER_NAMES.get(key.field_name)
        if name is not None:
            return name.encode("ascii") + b" " + text
        return b"HEADER " + string(key.field_name) + b" " + text
    if isinstance(key, SequenceKey):
        return (b"UID " if key.uid else b"") + str(key.numbers).encode("ascii")
    if isinstance(key, NotKey):
        return b"NOT " + format_search_key(key.key)
    if isinstance(key, OrKey):
        return b"OR " + format_search_key(key.left) + b" " + format_search_key(key.right)
    if not key.keys:
        return b"ALL"
    if len(key.keys) == 1:
        return format_search_key(key.keys[0])
    return b"(" + b" ".join(format_search_key(inner) for inner in key.keys) + b")"


@dataclass(slots=True, kw_only=True)
class SearchMessage:
    r"""What SEARCH looks at in one message.

    Attributes:
        sequence: The message's number in the session.
        uid: Its UID.
        flags: Its flags, ``\Recent`` included when this session has it so.
        internal_date: Its INTERNALDATE.
        size: Its RFC822.SIZE.
        content: Its octets, or None if no key needs them (a key that does
            then matches nothing).
        largest_sequence: The mailbox's message count (``*`` for numbers).
        largest_uid: The largest UID in the mailbox (``*`` for UIDs).
    """

    sequence: int
    uid: int
    flags: frozenset[str]
    internal_date: datetime
    size: int
    content: bytes | None = None
    largest_sequence: int = 0
    largest_uid: int = 0
    saved: frozenset[int] = frozenset()
    _parsed: Message | None = field(default=None, repr=False)

    def message(self) -> Message | None:
        """Return the content parsed by the stdlib, parsed once."""
        if self._parsed is None and self.content is not None:
            self._parsed = BytesParser(policy=email.policy.compat32).parsebytes(self.content)
        return self._parsed


def matches(key: SearchKey, message: SearchMessage) -> bool:
    """Return whether ``message`` satisfies ``key``."""
    if isinstance(key, AllKey):
        return True
    if isinstance(key, FlagKey):
        held = key.flag.lower() in {flag.lower() for flag in message.flags}
        return held == key.present
    if isinstance(key, SizeKey):
        return message.size > key.size if key.larger else message.size < key.size
    if isinstance(key, SequenceKey):
        if key.numbers.saved:
            return message.uid in message.saved if key.uid else message.sequence in message.saved
        if key.uid:
            return key.numbers.contains(message.uid, message.largest_uid)
        return key.numbers.contains(message.sequence, message.largest_sequence)
    if isinstance(key, NotKey):
        return not matches(key.key, message)
    if isinstance(key, OrKey):
        return matches(key.left, message) or matches(key.right, message)
    if isinstance(key, AndKey):
        return all(matches(inner, message) for inner in key.keys)
    if isinstance(key, DateKey):
        return _date_matches(key, message)
    return _text_matches(key, message)


def _date_matches(key: DateKey, message: SearchMessage) -> bool:
    if key.sent:
        parsed = message.message()
        if parsed is None:
            return False
        try:
            # RFC 3501: SENT* keys use the Date: header, without regard to time
            # and timezone, so the date as written counts.
            day = parsedate_to_datetime(str(parsed.get("Date", ""))).date()
        except (TypeError, ValueError, IndexError, OverflowError):
            # No usable Date: counts as the epoch's day, as dovecot has it.
            day = date(1970, 1, 1)
    else:
        when = message.internal_date
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        day = when.date()
    if key.relation == "before":
        return day < key.day
    if key.relation == "on":
        return day == key.day
    return day >= key.day


def _text_matches(key: TextKey, message: SearchMessage) -> bool:
    parsed = message.message()
    if parsed is None:
        return False
    needle = key.text.casefold()
    if key.where == "header":
        values = parsed.get_all(key.field_name) or []
        if not values:
            return False
        return any(needle in _decode_header(value).casefold() for value in values)
    if key.where == "text":
        for name, value in parsed.items():
            if needle in f"{name}: {_decode_header(value)}".casefold():
                return True
    return any(needle in text.casefold() for text in _body_texts(parsed))


def _decode_header(value: object) -> str:
    text = str(value)
    try:
        return str(email.header.make_header(email.header.decode_header(text)))
    except (LookupError, ValueError, UnicodeError, email.errors.MessageError):
        return text


def _body_texts(message: Message) -> list[str]:
    texts: list[str] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        texts.append(_decode_text(payload, part.get_content_charset() or "us-ascii"))
    return texts


def _decode_text(payload: bytes, charset: str) -> str:
    # 8-bit text under a missing or wrong charset is most often UTF-8.
    for candidate in (charset, "utf-8"):
        try:
            return payload.decode(candidate)
        except (LookupError, UnicodeDecodeError):
            continue
    return payload.decode("latin-1")
