"""IMAP's modified UTF-7 (RFC 3501 section 5.1.3): mailbox names as printable ASCII.

IMAP4rev1 sends mailbox names in it, and Maildir++ stores (Courier's,
Dovecot's by default) name folders with it on disk, so ``MaildirStore``
does too: a folder another server made is read under the same name.
Printable ASCII stands for itself except ``&``, written ``&-``; any other
run of characters is ``&``, their UTF-16BE in base64 with ``,`` for ``/``
and no padding, then ``-``.
"""

from __future__ import annotations

import base64
import binascii
import re

__all__ = ["decode_modified_utf7", "encode_modified_utf7"]

_SHIFTED = re.compile(r"&([A-Za-z0-9+,]*)-")


def _printable(char: str) -> bool:
    return " " <= char <= "~"


def encode_modified_utf7(text: str) -> str:
    """Return ``text`` in modified UTF-7."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be", "surrogatepass")
            encoded = base64.b64encode(raw).rstrip(b"=").replace(b"/", b",")
            out.append("&" + encoded.decode("ascii") + "-")
            pending.clear()

    for char in text:
        if _printable(char):
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def decode_modified_utf7(text: str) -> str:
    """Return the text a modified UTF-7 string stands for.

    Raises:
        ValueError: ``text`` is not modified UTF-7: a character outside
            printable ASCII, an ``&`` without its ``-``, bad base64 or
            UTF-16, or printable ASCII needlessly encoded (RFC 3501 says it
            must not be, and a name must have one spelling).
    """
    out: list[str] = []
    position = 0
    while position < len(text):
        char = text[position]
        if not _printable(char):
            raise ValueError(f"not modified UTF-7: {text!r}")
        if char != "&":
            out.append(char)
            position += 1
            continue
        match = _SHIFTED.match(text, position)
        if match is None:
            raise ValueError(f"not modified UTF-7: {text!r}")
        encoded = match.group(1)
        position = match.end()
        if not encoded:
            out.append("&")
            continue
        padded = encoded.replace(",", "/") + "=" * (-len(encoded) % 4)
        try:
            raw = base64.b64decode(padded, validate=True)
            decoded = raw.decode("utf-16-be")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ValueError(f"not modified UTF-7: {text!r}") from exc
        if not decoded or any(_printable(c) for c in decoded):
            raise ValueError(f"not modified UTF-7: {text!r}")
        out.append(decoded)
    result = "".join(out)
    if encode_modified_utf7(result) != text:
        # Two spellings of one name (e.g. two shifted runs back to back).
        raise ValueError(f"not modified UTF-7 in its one spelling: {text!r}")
    return result
