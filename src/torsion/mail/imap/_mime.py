"""A message's MIME tree over its exact octets, for FETCH sections and BODYSTRUCTURE.

The stdlib ``email`` package does not keep each part's octets (nor 8-bit
header octets) as they were, and IMAP's sections (RFC 3501 section 6.4.5),
sizes and ENVELOPE strings are those octets. ``MimePart.parse`` splits the
message itself: header from body at the first empty line, multipart bodies
at their boundary delimiters (RFC 2046 section 5.1.1), message/rfc822
bodies into the message they hold. Line ends become CRLF first, so sizes
agree with RFC822.SIZE. Nesting deeper than a bound is left as a leaf.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["MAX_MIME_DEPTH", "MimePart", "header_fields", "parse_parameters", "to_crlf"]

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
        fields: The header's fields in order: (name, value) with the value's
            octets as sent, folding removed, ends stripped.
        content_type: ``"text/plain"`` and the like, lower-case.
        children: The parts of a multipart body.
        embedded: The message a message/rfc822 body holds.
    """

    header: bytes
    body: bytes
    fields: list[tuple[str, bytes]]
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
        fields = [
            (name, _FOLD.sub(b"", text.split(b":", 1)[1] if b":" in text else b"").strip())
            for name, text in header_fields(header)
        ]
        content_type = _content_type(fields, default_type)
        part = cls(header=header, body=body, fields=fields, content_type=content_type)
        if depth >= MAX_MIME_DEPTH:
            if content_type.startswith(("multipart/", "message/")):
                # Beyond the bound a container is left unread: opaque octets.
                part.content_type = "application/octet-stream"
            return part
        maintype, _, subtype = content_type.partition("/")
        if maintype == "multipart":
            boundary = part.parameters("content-type").get("boundary")
            if boundary:
                child_default = "message/rfc822" if subtype == "digest" else "text/plain"
                part.children = [
                    cls.parse(chunk, default_type=child_default, depth=depth + 1, crlf=True)
                    for chunk in _split(body, boundary)
                ]
        elif content_type in ("message/rfc822", "message/global"):
            part.embedded = cls.parse(body, depth=depth + 1, crlf=True)
        return part

    def field(self, name: str) -> bytes | None:
        """Return the first field called ``name`` (any case), or None."""
        wanted = name.lower()
        for field_name, value in self.fields:
            if field_name.lower() == wanted:
                return value
        return None

    def parameters(self, name: str) -> dict[str, bytes]:
        """Return the parameters of a field such as Content-Type, names lower-case."""
        value = self.field(name)
        return dict(parse_parameters(value)[1]) if value is not None else {}

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
            # A message/rfc822 part's numbers are those of the message it
            # holds; a leaf's only part is itself (so 2.1 is 2 when part 2
            # is a leaf, as dovecot answers).
            if index and current.embedded is not None:
                current = current.embedded
            if current.is_multipart:
                if not 1 <= number <= len(current.children):
                    return None
                current = current.children[number - 1]
            elif number != 1:
                return None
        return current


def _content_type(fields: list[tuple[str, bytes]], default: str) -> str:
    value = next((text for name, text in fields if name.lower() == "content-type"), None)
    if value is None:
        return default
    main = parse_parameters(value)[0].decode("latin-1").lower()
    if main.count("/") != 1 or not all(main.split("/")):
        # RFC 2045 section 5.2: an invalid Content-Type means text/plain.
        return "text/plain"
    return main


_FOLD = re.compile(rb"\r\n(?=[ \t])")
_PARAMETER = re.compile(rb'\s*;\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s;]*)', re.DOTALL)


def parse_parameters(value: bytes) -> tuple[bytes, list[tuple[str, bytes]]]:
    """Split ``type/subtype; a=1; b="x"`` into its first word and its parameters.

    Parameters are kept as sent (RFC 2231 ``name*`` forms too), quotes and
    escapes removed, names lower-case; what cannot be read is skipped.
    """
    head, _, rest = value.partition(b";")
    parameters: list[tuple[str, bytes]] = []
    for match in _PARAMETER.finditer(b";" + rest):
        name = match.group(1).decode("latin-1").lower()
        text = match.group(2)
        if text.startswith(b'"'):
            text = re.sub(rb"\\(.)", rb"\1", text[1:-1], flags=re.DOTALL)
        parameters.append((name, text))
    return head.strip(), parameters


def header_fields(header: bytes) -> list[tuple[str, bytes]]:
    """Split a header into (name, octets with folding and CRLF) per field."""
    fields: list[tuple[str, bytes]] = []
    for line in header.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and fields:
            name, text = fields[-1]
            fields[-1] = (name, text + line + b"\r\n")
            continue
        name = line.split(b":", 1)[0].strip().decode("latin-1")
        fields.append((name, line + b"\r\n"))
    return fields


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
