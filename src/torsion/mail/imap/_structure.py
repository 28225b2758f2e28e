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
import re
from email.message import Message

from torsion.mail.imap._mime import MimePart
from torsion.mail.imap._responses import nstring, string

__all__ = ["body_structure", "envelope"]

_FOLD = re.compile(r"\r?\n(?=[ \t])")


def _field(fields: Message, name: str) -> str | None:
    value = fields.get(name)
    if value is None:
        return None
    return _FOLD.sub("", str(value))


def envelope(part: MimePart) -> bytes:
    """Return the ENVELOPE of the message ``part`` is (its header, that is)."""
    fields = part.fields
    sender = _field(fields, "sender")
    reply_to = _field(fields, "reply-to")
    from_ = _field(fields, "from")
    items = [
        nstring(_field(fields, "date")),
        nstring(_field(fields, "subject")),
        _addresses(from_),
        # RFC 3501 section 7.4.2: the server sets Sender and Reply-To to From
        # when they are absent.
        _addresses(sender if sender is not None else from_),
        _addresses(reply_to if reply_to is not None else from_),
        _addresses(_field(fields, "to")),
        _addresses(_field(fields, "cc")),
        _addresses(_field(fields, "bcc")),
        nstring(_field(fields, "in-reply-to")),
        nstring(_field(fields, "message-id")),
    ]
    return b"(" + b" ".join(items) + b")"


def _addresses(value: str | None) -> bytes:
    if value is None:
        return b"NIL"
    rendered: list[bytes] = []
    for group, members in _split_groups(value):
        if group is not None:
            rendered.append(b"(NIL NIL " + string(group) + b" NIL)")
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
                        nstring(name or None),
                        b"NIL",
                        nstring(mailbox or None),
                        nstring(host or None),
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


def _params(fields: Message, header: str) -> bytes:
    params = fields.get_params(header=header, unquote=True)
    if not params:
        return b"NIL"
    pairs: list[bytes] = []
    for name, found in params[1:]:
        # The stdlib gives RFC 2231 values as (charset, language, text) tuples.
        raw: object = found
        value = email.utils.collapse_rfc2231_value(raw) if isinstance(raw, tuple) else raw
        pairs.append(string(name.upper()) + b" " + string(str(value)))
    return b"(" + b" ".join(pairs) + b")" if pairs else b"NIL"


def _disposition(fields: Message) -> bytes:
    value = fields.get("content-disposition")
    if value is None:
        return b"NIL"
    kind = str(value).split(";", 1)[0].strip()
    if not kind:
        return b"NIL"
    return b"(" + string(kind.upper()) + b" " + _params(fields, "content-disposition") + b")"


def _language(fields: Message) -> bytes:
    value = _field(fields, "content-language")
    if value is None:
        return b"NIL"
    tags = [tag.strip() for tag in value.split(",") if tag.strip()]
    if not tags:
        return b"NIL"
    if len(tags) == 1:
        return string(tags[0])
    return b"(" + b" ".join(string(tag) for tag in tags) + b")"


def _lines(body: bytes) -> int:
    return body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)


def body_structure(part: MimePart, *, extensions: bool = True) -> bytes:
    """Return BODYSTRUCTURE (``extensions``) or BODY of ``part`` (a message)."""
    return _structure(part, extensions)


def _structure(part: MimePart, extensions: bool) -> bytes:
    fields = part.fields
    maintype, _, subtype = part.content_type.partition("/")
    if part.is_multipart and part.children:
        items = b"".join(_structure(child, extensions) for child in part.children)
        rendered = [items, string(subtype.upper())]
        if extensions:
            rendered += [
                _params(fields, "content-type"),
                _disposition(fields),
                _language(fields),
                nstring(_field(fields, "content-location")),
            ]
        return b"(" + b" ".join(rendered) + b")"
    if part.is_multipart:
        # A multipart without parts cannot be written as one; call it text.
        maintype, subtype = "text", "plain"
    params = _params(fields, "content-type")
    if params == b"NIL" and maintype == "text" and "content-type" not in fields:
        params = b'("CHARSET" "US-ASCII")'
    encoding = _field(fields, "content-transfer-encoding")
    rendered = [
        string(maintype.upper()),
        string(subtype.upper()),
        params,
        nstring(_field(fields, "content-id")),
        nstring(_field(fields, "content-description")),
        string((encoding or "7BIT").strip().upper()),
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
            nstring(_field(fields, "content-md5")),
            _disposition(fields),
            _language(fields),
            nstring(_field(fields, "content-location")),
        ]
    return b"(" + b" ".join(rendered) + b")"
