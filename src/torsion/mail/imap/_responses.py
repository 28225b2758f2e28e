r"""Server responses formatted as octets (RFC 3501 section 7).

Functions return whole responses with their CRLF (``tagged(...)``,
``untagged(...)``, ``exists(3)``...), ready for ``transport.write``. Strings
go out quoted when they can be (printable ASCII without CR, LF or NUL, up to
a modest length), as literals otherwise (``string``). ``ResponseCode`` holds
the bracketed codes: ALERT, PERMANENTFLAGS, UIDVALIDITY, TRYCREATE,
APPENDUID, COPYUID, CAPABILITY....
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from torsion.mail._mutf7 import encode_modified_utf7

__all__ = [
    "ResponseCode",
    "bye",
    "capability",
    "continuation",
    "enabled",
    "exists",
    "expunge",
    "fetch_response",
    "flags",
    "format_date_time",
    "list_response",
    "mailbox_name",
    "namespace",
    "nstring",
    "recent",
    "search_response",
    "status_response",
    "string",
    "tagged",
    "uid_set",
    "untagged",
]

_QUOTABLE = re.compile(rb"[\x20-\x7e]*")
_MAX_QUOTED = 1024
_ATOM_TEXT = re.compile(r"[\x20-\x7e]*")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def string(value: bytes | str) -> bytes:
    """Return ``value`` as an IMAP string: quoted when it can be, else a literal."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    if len(data) <= _MAX_QUOTED and _QUOTABLE.fullmatch(data):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(data) + data


def nstring(value: bytes | str | None) -> bytes:
    """Return ``value`` as an IMAP string, or NIL for None."""
    return b"NIL" if value is None else string(value)


def mailbox_name(name: str, *, utf8: bool = False) -> bytes:
    """Return a mailbox name as an IMAP string.

    Args:
        name: The name.
        utf8: The client enabled UTF8=ACCEPT (RFC 6855 section 3): the name
            goes as UTF-8 instead of modified UTF-7.
    """
    if utf8:
        return string(name)
    return string(encode_modified_utf7(name).encode("ascii"))


def _text(text: str) -> bytes:
    # resp-text is TEXT-CHARs: one line, no CR, LF or NUL.
    if not _ATOM_TEXT.fullmatch(text):
        raise ValueError(f"response text must be printable ASCII: {text!r}")
    return text.encode("ascii")


@dataclass(frozen=True, slots=True)
class ResponseCode:
    r"""A response code (RFC 3501 section 7.1), e.g. ``[UIDNEXT 4392]``.

    Attributes:
        name: The code's atom: ALERT, PERMANENTFLAGS, UIDVALIDITY, UIDNEXT,
            UNSEEN, READ-ONLY, READ-WRITE, TRYCREATE, APPENDUID, COPYUID,
            CAPABILITY, PARSE, BADCHARSET, ...
        value: What follows the name, already in IMAP syntax (``"4392"``,
            ``"(\\Seen \\Deleted)"``), or empty.
    """

    name: str
    value: str = ""

    def __bytes__(self) -> bytes:
        """Return the code with its brackets."""
        inner = f"{self.name} {self.value}" if self.value else self.name
        return b"[" + _text(inner) + b"]"

    @classmethod
    def permanent_flags(cls, names: Iterable[str]) -> ResponseCode:
        r"""PERMANENTFLAGS (names may include ``\*``)."""
        return cls("PERMANENTFLAGS", "(" + " ".join(names) + ")")

    @classmethod
    def capability(cls, names: Iterable[str]) -> ResponseCode:
        """CAPABILITY (``IMAP4rev1`` is the caller's to include)."""
        return cls("CAPABILITY", " ".join(names))

    @classmethod
    def append_uid(cls, uidvalidity: int, uid: int) -> ResponseCode:
        """APPENDUID (RFC 4315 section 3)."""
        return cls("APPENDUID", f"{uidvalidity} {uid}")

    @classmethod
    def copy_uid(
        cls, uidvalidity: int, source: Sequence[int], destination: Sequence[int]
    ) -> ResponseCode:
        """COPYUID (RFC 4315 section 3), UIDs paired in order."""
        return cls("COPYUID", f"{uidvalidity} {uid_set(source)} {uid_set(destination)}")


def uid_set(uids: Sequence[int]) -> str:
    """Return UIDs as a compact set, runs as ranges, in the order given."""
    parts: list[str] = []
    start: int | None = None
    previous = 0
    for uid in uids:
        if start is not None and uid == previous + 1:
            previous = uid
            continue
        if start is not None:
            parts.append(str(start) if start == previous else f"{start}:{previous}")
        start = previous = uid
    if start is not None:
        parts.append(str(start) if start == previous else f"{start}:{previous}")
    return ",".join(parts)


Condition = Literal["OK", "NO", "BAD", "PREAUTH", "BYE"]


def tagged(tag: str, condition: Condition, text: str, code: ResponseCode | None = None) -> bytes:
    """Return a tagged completion: ``a1 OK [code] text``."""
    return _condition(tag.encode("ascii"), condition, text, code)


def untagged(condition: Condition, text: str, code: ResponseCode | None = None) -> bytes:
    """Return an untagged status response: ``* OK [code] text``."""
    return _condition(b"*", condition, text, code)


def bye(text: str) -> bytes:
    """Return ``* BYE text``: the server is closing the connection."""
    return untagged("BYE", text)


def _condition(prefix: bytes, condition: Condition, text: str, code: ResponseCode | None) -> bytes:
    parts = [prefix, condition.encode("ascii")]
    if code is not None:
        parts.append(bytes(code))
    # RFC 3501 section 9: resp-text needs text after the code; say something.
    parts.append(_text(text or condition))
    return b" ".join(parts) + b"\r\n"


def continuation(text: str = "Ready") -> bytes:
    """Return a continuation request: ``+ text``."""
    return b"+ " + _text(text) + b"\r\n"


def capability(names: Iterable[str]) -> bytes:
    """Return ``* CAPABILITY ...``."""
    return b"* CAPABILITY " + _text(" ".join(names)) + b"\r\n"


def enabled(names: Iterable[str]) -> bytes:
    """Return ``* ENABLED ...`` (RFC 5161)."""
    joined = " ".join(names)
    return b"* ENABLED" + (b" " + _text(joined) if joined else b"") + b"\r\n"


def flags(names: Iterable[str]) -> bytes:
    """Return ``* FLAGS (...)``: the flags the mailbox defines."""
    return b"* FLAGS (" + _text(" ".join(names)) + b")\r\n"


def exists(count: int) -> bytes:
    """Return ``* n EXISTS``."""
    return b"* %d EXISTS\r\n" % count


def recent(count: int) -> bytes:
    """Return ``* n RECENT``."""
    return b"* %d RECENT\r\n" % count


def expunge(sequence: int) -> bytes:
    """Return ``* n EXPUNGE``."""
    return b"* %d EXPUNGE\r\n" % sequence


def search_response(numbers: Iterable[int]) -> bytes:
    """Return ``* SEARCH n n ...`` (``* SEARCH`` alone when nothing matched)."""
    return b"".join([b"* SEARCH", *(b" %d" % number for number in numbers), b"\r\n"])


def list_response(
    attributes: Iterable[str],
    delimiter: str | None,
    name: str,
    *,
    command: str = "LIST",
    utf8: bool = False,
) -> bytes:
    r"""Return ``* LIST (\HasNoChildren) "." "INBOX"`` (or LSUB).

    ``utf8`` is as for ``mailbox_name``.
    """
    delimiter_part = b"NIL" if delimiter is None else string(delimiter)
    return b"".join(
        [
            b"* ",
            command.encode("ascii"),
            b" (",
            _text(" ".join(attributes)),
            b") ",
            delimiter_part,
            b" ",
            mailbox_name(name, utf8=utf8),
            b"\r\n",
        ]
    )


def status_response(name: str, items: Iterable[tuple[str, int]], *, utf8: bool = False) -> bytes:
    """Return ``* STATUS "name" (MESSAGES 231 UIDNEXT 44292)``."""
    inner = " ".join(f"{item} {value}" for item, value in items)
    return b"* STATUS " + mailbox_name(name, utf8=utf8) + b" (" + _text(inner) + b")\r\n"


def namespace(
    personal: Sequence[tuple[str, str | None]],
    other: Sequence[tuple[str, str | None]] = (),
    shared: Sequence[tuple[str, str | None]] = (),
) -> bytes:
    """Return ``* NAMESPACE`` (RFC 2342): each kind a list of (prefix, delimiter)."""

    def kind(entries: Sequence[tuple[str, str | None]]) -> bytes:
        if not entries:
            return b"NIL"
        return (
            b"("
            + b"".join(
                b"(" + mailbox_name(prefix) + b" " + nstring(delimiter) + b")"
                for prefix, delimiter in entries
            )
            + b")"
        )

    return b"* NAMESPACE " + b" ".join([kind(personal), kind(other), kind(shared)]) + b"\r\n"


def fetch_response(sequence: int, items: Sequence[tuple[bytes, bytes]]) -> bytes:
    """Return ``* n FETCH (NAME value ...)`` from rendered items (see ``render_fetch``)."""
    body = b" ".join(name + b" " + value for name, value in items)
    return b"* %d FETCH (" % sequence + body + b")\r\n"


def format_date_time(when: datetime) -> bytes:
    """Return INTERNALDATE's quoted ``"17-Jul-1996 02:44:25 -0700"`` (naive is UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    offset = when.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    text = (
        f'"{when.day:2d}-{_MONTHS[when.month - 1]}-{when.year:04d} '
        f"{when.hour:02d}:{when.minute:02d}:{when.second:02d} "
        f'{sign}{minutes // 60:02d}{minutes % 60:02d}"'
    )
    return text.encode("ascii")
