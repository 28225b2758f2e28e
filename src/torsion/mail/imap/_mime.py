"""A message's MIME tree over its exact octets, for FETCH sections and BODYSTRUCTURE.

The stdlib ``email`` package reads header fields and parameters, but it does
not keep each part's octets as they were, and IMAP's sections (RFC 3501
section 6.4.5) and sizes are those octets. ``MimePart.parse`` splits the
message itself: header from body at the first empty line, multipart bodies
at their boundary delimiters (RFC 2046 section 5.1.1), message/rfc822
bodies into the message they hold. Line ends become CRLF first, so sizes
agree with RFC822.SIZE. Nesting deeper than a bound is left as a leaf.
"""

from __future__ import annotations

import email.policy
import re
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesHeaderParser

__all__ = ["MAX_MIME_DEPTH", "MimePart", "to_crlf"]

MAX_MIME_DEPTH = 32
_LINE_END = re.compile(rb"\r?\n")
_HEADER_END = re.compile(rb"\r\n\r\n")


def to_crlf(data: bytes) -> bytes:
    """Return ``data`` with every line ending CRLF (IMAP's canonical form)."""
    return _LINE_END.sub(b"\r\n", data)


@dataclass(slots=True, kw_only=True)
class MimePart:
    """One entity: its header octets, body octets and parsed fields.

    Attributes:
        header: The header with the empty line that ends it.
        body: The body octets.
        fields: The header as the stdlib parsed it (compat32: values as sent).
        content_type: ``"text/plain"`` and the like, lower-case.
        children: The parts of a multipart body.
        embedded: The message a message/rfc822 body holds.
    """

    header: bytes
    body: bytes
    fields: Message
    content_type: str
    children: list[MimePart] = field(default_factory=list)
    embedded: MimePart | None = None

    @classmethod
    def parse(
        cls,
        data: bytes,
        *,
        default_type: str = "text/plain",
        depth: int = 0,
        crlf: bool = False,
    ) -> MimePart:
        """Return the tree of ``data`` (a message or a body part)."""
        if not crlf:
            data = to_crlf(data)
        if data.startswith(b"\r\n"):
            header, body = b"\r\n", data[2:]
        else:
            match = _HEADER_END.search(data)
            if match is None:
                header, body = data, b""
            else:
                header, body = data[: match.end()], data[match.end() :]
        fields = BytesHeaderParser(policy=email.policy.compat32).parsebytes(header)
        content_type = _content_type(fields, default_type)
        part = cls(header=header, body=body, fields=fields, content_type=content_type)
        if depth >= MAX_MIME_DEPTH:
            return part
        maintype, _, subtype = content_type.partition("/")
        if maintype == "multipart":
            boundary = fields.get_param("boundary", header="content-type")
            if isinstance(boundary, str) and boundary:
                child_default = "message/rfc822" if subtype == "digest" else "text/plain"
                part.children = [
                    cls.parse(chunk, default_type=child_default, depth=depth + 1, crlf=True)
                    for chunk in _split(body, boundary.encode("ascii", "replace"))
                ]
        elif content_type in ("message/rfc822", "message/global"):
            part.embedded = cls.parse(body, depth=depth + 1, crlf=True)
        return part

    @property
    def is_multipart(self) -> bool:
        """Whether this is a multipart entity."""
        return self.content_type.startswith("multipart/")

    def find(self, path: tuple[int, ...]) -> MimePart | None:
        """Return the part a section number names (RFC 3501 section 6.4.5), or None.

        ``self`` is a message: its part 1 is its body when it is not
        multipart; the parts of a message/rfc822 part are those of the
        message it holds.
        """
        current: MimePart = self
        for index, number in enumerate(path):
            if index:
                if current.embedded is not None:
                    current = current.embedded
                elif not current.is_multipart:
                    return None
            if current.is_multipart:
                if not 1 <= number <= len(current.children):
                    return None
                current = current.children[number - 1]
            elif number != 1:
                return None
        return current


def _content_type(fields: Message, default: str) -> str:
    value = fields.get("content-type")
    if value is None:
        return default
    main = str(value).split(";", 1)[0].strip().lower()
    if main.count("/") != 1 or not all(main.split("/")):
        # RFC 2045 section 5.2: an invalid Content-Type means text/plain.
        return "text/plain"
    return main


def _split(body: bytes, boundary: bytes) -> list[bytes]:
    """Return the parts between ``--boundary`` delimiter lines (RFC 2046 5.1.1)."""
    pattern = re.compile(
        rb"(?:^|\r\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?:\r\n|$)", re.MULTILINE
    )
    parts: list[bytes] = []
    start: int | None = None
    for match in pattern.finditer(body):
        if match.start() > 0 and body[match.start() : match.start() + 2] != b"\r\n":
            continue  # "^" matched after a lone CR or LF inside a line: not a delimiter.
        if start is not None:
            parts.append(body[start : match.start()])
        if match.group(1):
            break
        start = match.end()
    else:
        if start is not None:
            parts.append(body[start:])
    return parts
