"""ENVELOPE and BODYSTRUCTURE of a message (RFC 3501 section 7.4.2).

Both are built from a ``MimePart`` tree: header fields as the message sent
them (encoded words kept, folding removed), address lists split into
``(name adl mailbox host)`` with RFC 5322 groups as IMAP's start and end
markers, and, for each body part, its type, parameters, id, description,
encoding, size in octets, lines for text and message/rfc822, and the
extension data (MD5, disposition, language, location) BODYSTRUCTURE adds.
"""

from __future__ import annotations

import email.utils

from torsion.mail.imap._mime import MimePart, parse_parameters
from torsion.mail.imap._responses import nstring, string

__all__ = ["body_structure", "envelope"]


def _field(part: MimePart, name: str) -> str | None:
    # Latin-1 maps octets to code points one to one: what the message sent
    # (8-bit or not) goes back out unchanged through _octets.
    value = part.field(name)
    return None if value is None else value.decode("latin-1")


def _octets(text: str | None) -> bytes | None:
    return None if text is None else text.encode("latin-1")


def envelope(part: MimePart) -> bytes:
    """Return the ENVELOPE of the message ``part`` is (its header, that is)."""
    sender = _field(part, "sender")
    reply_to = _field(part, "reply-to")
    from_ = _field(part, "from")
    items = [
        nstring(part.field("date")),
        nstring(part.field("subject")),
        _addresses(from_),
        # RFC 3501 section 7.4.2: the server sets Sender and Reply-To to From
        # when they are absent.
        _addresses(sender if sender is not None else from_),
        _addresses(reply_to if reply_to is not None else from_),
        _addresses(_field(part, "to")),
        _addresses(_field(part, "cc")),
        _addresses(_field(part, "bcc")),
        nstring(part.field("in-reply-to")),
        nstring(part.field("message-id")),
    ]
    return b"(" + b" ".join(items) + b")"


def _addresses(value: str | None) -> bytes:
    if value is None:
        return b"NIL"
    rendered: list[bytes] = []
    for group, members in _split_groups(value):
        if group is not None:
            rendered.append(b"(NIL NIL " + string(group.encode("latin-1")) + b" NIL)")
        for member in members:
            name, address = email.utils.parseaddr(member)
            if not address and not name:
                continue
            mailbox, at, host = address.rpartition("@")
            if not at:
                mailbox, host = address, ""
            rendered.append(
                b"("
                + b" ".join(
                    [
                        nstring(_octets(name or None)),
                        b"NIL",
                        nstring(_octets(mailbox or None)),
                        nstring(_octets(host or None)),
                    ]
                )
                + b")"
            )
        if group is not None:
            rendered.append(b"(NIL NIL NIL NIL)")
    if not rendered:
        return b"NIL"
    return b"(" + b"".join(rendered) + b")"


def _split_groups(value: str) -> list[tuple[str | None, list[str]]]:
    """Split an address list at top-level commas, noting ``name: ...;`` groups."""
    result: list[tuple[str | None, list[str]]] = []
    group: str | None = None
    members: list[str] = []
    current: list[str] = []
    depth = 0
    angle = False
    quoted = False
    escape = False
    for char in value:
        if escape:
            escape = False
            current.append(char)
            continue
        if char == "\\" and (quoted or depth):
            escape = True
        elif char == '"' and not depth:
            quoted = not quoted
        elif not quoted:
            if char == "(":
                depth += 1
            elif char == ")" and depth:
                depth -= 1
            elif not depth:
                if char == "<":
                    angle = True
                elif char == ">":
                    angle = False
                elif char == ":" and not angle and group is None:
                    group = "".join(current).strip().strip('"')
                    current = []
                    continue
                elif char == ";" and group is not None:
                    members.append("".join(current))
                    result.append((group, [m for m in members if m.strip()]))
                    group, members, current = None, [], []
                    continue
                elif char == "," and not angle:
                    if group is None:
                        result.append((None, ["".join(current)]))
                    else:
                        members.append("".join(current))
                    current = []
                    continue
        current.append(char)
    if group is not None:
        members.append("".join(current))
        result.append((group, [m for m in members if m.strip()]))
    elif "".join(current).strip():
        result.append((None, ["".join(current)]))
    return result


def _params(part: MimePart, name: str) -> bytes:
    value = part.field(name)
    if value is None:
        return b"NIL"
    pairs = [string(key.upper()) + b" " + string(text) for key, text in parse_parameters(value)[1]]
    return b"(" + b" ".join(pairs) + b")" if pairs else b"NIL"


def _disposition(part: MimePart) -> bytes:
    value = part.field("content-disposition")
    if value is None:
        return b"NIL"
    kind = parse_parameters(value)[0]
    if not kind:
        return b"NIL"
    return b"(" + string(kind.upper()) + b" " + _params(part, "content-disposition") + b")"


def _language(part: MimePart) -> bytes:
    value = part.field("content-language")
    if value is None:
        return b"NIL"
    tags = [tag.strip() for tag in value.split(b",") if tag.strip()]
    if not tags:
        return b"NIL"
    # A list even for one tag, as dovecot writes it (RFC 3501 allows both).
    return b"(" + b" ".join(string(tag) for tag in tags) + b")"


def _lines(body: bytes) -> int:
    # Lines as dovecot counts them: line ends, so a last line without one
    # does not count (RFC 3501 leaves it open).
    return body.count(b"\n")


def body_structure(part: MimePart, *, extensions: bool = True) -> bytes:
    """Return BODYSTRUCTURE (``extensions``) or BODY of ``part`` (a message)."""
    return _structure(part, extensions)


def _structure(part: MimePart, extensions: bool) -> bytes:
    maintype, _, subtype = part.content_type.partition("/")
    if part.is_multipart and part.children:
        items = b"".join(_structure(child, extensions) for child in part.children)
        rendered = [items, string(subtype.upper())]
        if extensions:
            rendered += [
                _params(part, "content-type"),
                _disposition(part),
                _language(part),
                nstring(part.field("content-location")),
            ]
        return b"(" + b" ".join(rendered) + b")"
    if part.is_multipart:
        # A multipart without parts cannot be written as one; call it text.
        maintype, subtype = "text", "plain"
    params = _params(part, "content-type")
    if params == b"NIL" and maintype == "text":
        # RFC 2045 section 5.2: text's charset defaults to US-ASCII (dovecot
        # says so too when a text part names no parameters).
        params = b'("CHARSET" "US-ASCII")'
    encoding = part.field("content-transfer-encoding")
    rendered = [
        string(maintype.upper()),
        string(subtype.upper()),
        params,
        nstring(part.field("content-id")),
        nstring(part.field("content-description")),
        string((encoding or b"7BIT").upper()),
        b"%d" % len(part.body),
    ]
    if part.embedded is not None:
        rendered += [
            envelope(part.embedded),
            _structure(part.embedded, extensions),
            b"%d" % _lines(part.body),
        ]
    elif maintype == "text":
        rendered.append(b"%d" % _lines(part.body))
    if extensions:
        rendered += [
            nstring(part.field("content-md5")),
            _disposition(part),
            _language(part),
            nstring(part.field("content-location")),
        ]
    return b"(" + b" ".join(rendered) + b")"
