"""SMTP's errors, under torsion's one root.

The tree::

    TorsionError
    └── SMTPError                   something went wrong in an SMTP exchange
        ├── SMTPReplyError          a refusal, carrying the reply to send
        └── AddressError (+ValueError) a path or mailbox outside RFC 5321's grammar
"""

from __future__ import annotations

from torsion.errors import TorsionError

__all__ = ["AddressError", "SMTPError", "SMTPReplyError"]


class SMTPError(TorsionError):
    """Something went wrong in an SMTP exchange."""


class SMTPReplyError(SMTPError):
    """A refusal that the server sends to the client as an SMTP reply.

    A ``Delivery`` raises it to refuse a sender, a recipient or a message
    with a reply of its choosing, for instance
    ``SMTPReplyError(550, "5.1.1", "no such user")`` or, for a temporary
    failure the client should retry, ``SMTPReplyError(451, "4.3.0", ...)``.

    Args:
        code: The three-digit reply code (4xx or 5xx).
        enhanced: The RFC 3463 enhanced status code (``"5.1.1"``); its class
            must match the reply code's.
        text: The human-readable text (one line, ASCII).

    Raises:
        ValueError: The code is not a failure, or the codes disagree.
    """

    def __init__(self, code: int, enhanced: str, text: str) -> None:
        if not 400 <= code <= 599:
            raise ValueError(f"an SMTP refusal is 4xx or 5xx, not {code}")
        if enhanced[:2] != f"{code // 100}.":
            raise ValueError(f"enhanced code {enhanced} does not match {code}")
        if not text.isascii() or "\r" in text or "\n" in text:
            raise ValueError("reply text must be one line of ASCII")
        super().__init__(f"{code} {enhanced} {text}")
        self.code = code
        self.enhanced = enhanced
        self.text = text


class AddressError(SMTPError, ValueError):
    """A path or mailbox that RFC 5321's grammar does not allow.

    Attributes:
        non_ascii: True when the address would be valid with SMTPUTF8.
    """

    def __init__(self, message: str, *, non_ascii: bool = False) -> None:
        super().__init__(message)
        self.non_ascii = non_ascii
