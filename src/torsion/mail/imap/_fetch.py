"""FETCH: the attribute grammar (RFC 3501 section 6.4.5) and each item rendered.

``parse_fetch_items`` reads FETCH's argument — a macro (ALL, FAST, FULL),
one attribute or a parenthesised list — into ``FetchItem`` values.
``render_fetch`` turns items and a message (``FetchMessage``) into the
``(name, value)`` pairs of an untagged FETCH response: body sections cut
from the message's own octets by MIME part, partial fetches, ENVELOPE and
BODYSTRUCTURE, with literals for anything not safely quotable.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from torsion.mail.imap._mime import MimePart, header_fields
from torsion.mail.imap._reader import Reader
from torsion.mail.imap._responses import format_date_time, string
from torsion.mail.imap._structure import body_structure, envelope

__all__ = [
    "FetchItem",
    "FetchMessage",
    "Section",
    "needs_content",
    "parse_fetch_items",
    "render_fetch",
    "section_octets",
    "sets_seen",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Section:
    """A body section: ``1.2.HEADER.FIELDS (From To)`` and the like.

    Attributes:
        part: The part number, ``()`` for the whole message.
        text: ``"HEADER"``, ``"HEADER.FIELDS"``, ``"HEADER.FIELDS.NOT"``,
            ``"TEXT"``, ``"MIME"`` or None (the part's body, or the whole
            message).
        fields: The header field names of HEADER.FIELDS[.NOT], as sent.
    """

    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()

    def __str__(self) -> str:
        """Return the section as IMAP writes it, without brackets."""
        pieces = [".".join(str(number) for number in self.part)] if self.part else []
        if self.text is not None:
            pieces.append(self.text)
        spec = ".".join(pieces)
        if self.fields:
            spec += " (" + " ".join(self.fields) + ")"
        return spec


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchItem:
    r"""One FETCH attribute.

    Attributes:
        name: ``ENVELOPE``, ``FLAGS``, ``INTERNALDATE``, ``RFC822``,
            ``RFC822.HEADER``, ``RFC822.SIZE``, ``RFC822.TEXT``, ``BODY``,
            ``BODYSTRUCTURE`` or ``UID``.
        section: For ``BODY[...]``: the section (``BODY`` without one is the
            structure without extension data).
        peek: ``BODY.PEEK[...]``: do not set ``\\Seen``.
        partial: ``<start.length>``.
    """

    name: str
    section: Section | None = None
    peek: bool = False
    partial: tuple[int, int] | None = None

    def __str__(self) -> str:
        """Return the item as a client writes it (``BODY.PEEK[1.MIME]<0.100>``)."""
        if self.section is None:
            return self.name
        text = f"BODY{'.PEEK' if self.peek else ''}[{self.section}]"
        if self.partial is not None:
            text += f"<{self.partial[0]}.{self.partial[1]}>"
        return text

    def response_name(self, *, origin: int | None = None) -> bytes:
        """Return the item's name as the response writes it (``BODY[1]<0>``)."""
        if self.section is None:
            return self.name.encode("ascii")
        name = f"BODY[{self.section}]"
        if self.partial is not None:
            name += f"<{self.partial[0] if origin is None else origin}>"
        return name.encode("ascii")


_SIMPLE = frozenset(
    {
        "ENVELOPE",
        "FLAGS",
        "INTERNALDATE",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.SIZE",
        "RFC822.TEXT",
        "BODY",
        "BODYSTRUCTURE",
        "UID",
    }
)
_MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
_NAME = re.compile(rb"[A-Za-z0-9.]+")
_PART = re.compile(rb"[1-9][0-9]{0,8}(?:\.[1-9][0-9]{0,8})*")
_PARTIAL = re.compile(rb"<([0-9]{1,10})\.([0-9]{1,10})>")


def parse_fetch_items(reader: Reader) -> tuple[FetchItem, ...]:
    """Read FETCH's attributes: a macro, one attribute or a list.

    Raises:
        IMAPParseError: Not RFC 3501's grammar.
    """
    if reader.peek() == b"(":
        reader.open_list()
        items = [_item(reader)]
        while reader.accept(b" "):
            items.append(_item(reader))
        reader.close_list()
        return tuple(items)
    start = reader.position
    match = _NAME.match(reader.data, start)
    if match is not None and match.group(0).upper().decode("ascii") in _MACROS:
        if reader.data[match.end() : match.end() + 1] not in (b"", b" ", b")"):
            raise reader.error("bad fetch attribute")
        reader.position = match.end()
        return tuple(FetchItem(name=name) for name in _MACROS[match.group(0).upper().decode()])
    return (_item(reader),)


def _item(reader: Reader) -> FetchItem:
    reader.count_item()
    match = _NAME.match(reader.data, reader.position)
    if match is None:
        raise reader.error("expected a fetch attribute")
    name = match.group(0).decode("ascii").upper()
    reader.position = match.end()
    if name in ("BODY", "BODY.PEEK") and reader.peek() == b"[":
        section = _section(reader)
        partial: tuple[int, int] | None = None
        found = _PARTIAL.match(reader.data, reader.position)
        if found is not None:
            reader.position = found.end()
            start, length = int(found.group(1)), int(found.group(2))
            if length == 0 or start > 2**32 - 1 or length > 2**32 - 1:
                raise reader.error("bad partial range")
            partial = (start, length)
        return FetchItem(name="BODY", section=section, peek=name == "BODY.PEEK", partial=partial)
    if name not in _SIMPLE:
        raise reader.error(f"unknown fetch attribute {name}")
    return FetchItem(name=name)


def _section(reader: Reader) -> Section:
    reader.expect(b"[")
    if reader.accept(b"]"):
        return Section()
    part: tuple[int, ...] = ()
    found = _PART.match(reader.data, reader.position)
    if found is not None:
        part = tuple(int(number) for number in found.group(0).split(b"."))
        reader.position = found.end()
        if reader.accept(b"]"):
            return Section(part=part)
        reader.expect(b".")
    match = _NAME.match(reader.data, reader.position)
    if match is None:
        raise reader.error("bad section")
    text = match.group(0).decode("ascii").upper()
    reader.position = match.end()
    fields: tuple[str, ...] = ()
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        reader.space()
        reader.open_list()
        names = [reader.astring_text()]
        while reader.accept(b" "):
            reader.count_item()
            names.append(reader.astring_text())
        reader.close_list()
        if any(not name or ":" in name or not name.isascii() for name in names):
            raise reader.error("bad header field name")
        fields = tuple(names)
    elif text not in ("HEADER", "TEXT", "MIME") or (text == "MIME" and not part):
        raise reader.error(f"bad section {text}")
    reader.expect(b"]")
    return Section(part=part, text=text, fields=fields)


def needs_content(items: Sequence[FetchItem]) -> bool:
    """Whether rendering ``items`` needs the message's octets."""
    return any(item.name not in ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "UID") for item in items)


def sets_seen(items: Sequence[FetchItem]) -> bool:
    r"""Whether fetching ``items`` sets ``\Seen`` (RFC 3501 section 6.4.5)."""
    return any(
        (item.section is not None and not item.peek) or item.name in ("RFC822", "RFC822.TEXT")
        for item in items
    )


@dataclass(slots=True, kw_only=True)
class FetchMessage:
    r"""What FETCH renders for one message.

    Attributes:
        uid: Its UID.
        flags: Its flags (with ``\\Recent`` if the session has it so).
        internal_date: Its INTERNALDATE.
        size: Its RFC822.SIZE.
        content: Its octets; needed when ``needs_content`` says so.
    """

    uid: int
    flags: frozenset[str]
    internal_date: datetime
    size: int
    content: bytes | None = None
    _tree: MimePart | None = field(default=None, repr=False)

    def tree(self) -> MimePart:
        """Return the message's MIME tree, parsed once."""
        if self._tree is None:
            self._tree = MimePart.parse(self.content or b"")
        return self._tree


def render_fetch(items: Sequence[FetchItem], message: FetchMessage) -> list[tuple[bytes, bytes]]:
    """Return each item's (name, value), in order, without duplicates.

    Raises:
        ValueError: An item needs the content and ``message.content`` is None.
    """
    if needs_content(items) and message.content is None:
        raise ValueError("these items need the message's content")
    rendered: list[tuple[bytes, bytes]] = []
    seen: set[FetchItem] = set()
    for item in items:
        if item in seen:
            continue
        seen.add(item)
        rendered.append(_render(item, message))
    return rendered


def _render(item: FetchItem, message: FetchMessage) -> tuple[bytes, bytes]:
    name = item.name
    if name == "UID":
        return b"UID", b"%d" % message.uid
    if name == "FLAGS":
        return b"FLAGS", ("(" + " ".join(sorted(message.flags)) + ")").encode("ascii")
    if name == "INTERNALDATE":
        return b"INTERNALDATE", format_date_time(message.internal_date)
    if name == "RFC822.SIZE":
        return b"RFC822.SIZE", b"%d" % message.size
    tree = message.tree()
    if name == "ENVELOPE":
        return b"ENVELOPE", envelope(tree)
    if name == "BODYSTRUCTURE":
        return b"BODYSTRUCTURE", body_structure(tree)
    if name == "RFC822":
        return b"RFC822", string(tree.header + tree.body)
    if name == "RFC822.HEADER":
        return b"RFC822.HEADER", string(tree.header)
    if name == "RFC822.TEXT":
        return b"RFC822.TEXT", string(tree.body)
    if item.section is None:
        return b"BODY", body_structure(tree, extensions=False)
    data = section_octets(tree, item.section)
    if item.partial is not None:
        start, length = item.partial
        data = data[start : start + length]
    # Section text goes out as a literal: it may hold anything (RFC 3501 sections
    # are 8-bit octets, often with CRLF); an empty one as "".
    value = b"{%d}\r\n" % len(data) + data if data else b'""'
    return item.response_name(), value


def section_octets(tree: MimePart, section: Section) -> bytes:
    """Return a section's octets; empty if the message has no such part."""
    if not section.part and section.text is None:
        return tree.header + tree.body
    part = tree.find(section.part) if section.part else tree
    if part is None:
        return b""
    if section.text is None:
        return part.body
    if section.text == "MIME":
        return part.header
    message = part
    if section.part:
        # HEADER and TEXT after a part number apply to a message/rfc822 part.
        if part.embedded is None:
            return b""
        message = part.embedded
    if section.text == "TEXT":
        return message.body
    if section.text == "HEADER":
        return message.header
    wanted = {name.lower() for name in section.fields}
    keep = section.text == "HEADER.FIELDS"
    lines = [
        field_text
        for field_name, field_text in header_fields(message.header)
        if (field_name.lower() in wanted) == keep
    ]
    return b"".join(lines) + b"\r\n"
