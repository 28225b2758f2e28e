"""What the SMTP server core asks of its glue: events, the envelope, the limits.

Events that need an answer (``SenderReceived``, ``RecipientReceived``,
``MessageReceived``, ``AuthReceived``) stop the core until the glue calls
``accept`` or ``refuse``; later commands a pipelining client already sent
wait, so replies go out in the order the commands came (RFC 2920).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torsion.cred import CramMD5, UsernamePassword
from torsion.mail.smtp._address import EmailAddress

__all__ = [
    "AuthReceived",
    "Envelope",
    "Event",
    "MessageReceived",
    "RecipientReceived",
    "SMTPLimits",
    "SenderReceived",
    "StartTLSRequested",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class SMTPLimits:
    """Bounds and timeouts of an SMTP server session.

    Attributes:
        max_command_line: Octets in a command line with its CRLF (RFC 5321
            section 4.5.3.1.4 says 512).
        max_auth_line: Octets in an AUTH exchange line (RFC 4954 section 4
            lifts the command limit for them; 12288 as its section 4 suggests).
        max_text_line: Octets in a message line with its CRLF (section
            4.5.3.1.6 says 1000; a larger figure takes what others send).
        max_message_size: Octets of message content (after dot-unstuffing),
            advertised as SIZE (RFC 1870) and enforced on the data itself.
        max_recipients: Recipients per message; more get 452 4.5.3 (RFC 5321
            section 4.5.3.1.8 asks servers to take at least 100).
        max_errors: Refused commands per session before 421 and a close.
        max_commands: Commands per session before 421 and a close (room for
            some 2000 messages on one connection).
        command_timeout: Seconds to wait for a command (section 4.5.3.2.7:
            at least 5 minutes).
        data_timeout: Seconds to wait for more message data.
        bare_newlines: ``"reject"`` (default): a message holding a bare LF
            or CR is refused with 554 5.6.0 once it ends; ``"accept"`` keeps
            them in the content. Either way, only CRLF.CRLF ends the data
            (the "SMTP smuggling" defence), and commands end with CRLF only.
    """

    max_command_line: int = 512
    max_auth_line: int = 12288
    max_text_line: int = 1000
    max_message_size: int = 10 * 1024 * 1024
    max_recipients: int = 100
    max_errors: int = 20
    max_commands: int = 10_000
    command_timeout: float = 300.0
    data_timeout: float = 300.0
    bare_newlines: Literal["reject", "accept"] = "reject"

    def __post_init__(self) -> None:
        if self.max_command_line < 512:
            raise ValueError("max_command_line must be at least 512 (RFC 5321 4.5.3.1.4)")
        if self.max_text_line < 1000:
            raise ValueError("max_text_line must be at least 1000 (RFC 5321 4.5.3.1.6)")
        if self.max_recipients < 1 or self.max_message_size < 1:
            raise ValueError("max_recipients and max_message_size must be positive")
        if self.bare_newlines not in ("reject", "accept"):
            raise ValueError("bare_newlines is 'reject' or 'accept'")


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """One message's envelope, as the client gave it.

    Attributes:
        sender: The reverse-path (None for the null sender ``<>``).
        recipients: The accepted forward-paths, in order.
        body: ``"7BIT"``, ``"8BITMIME"`` (RFC 6152) or None when not said.
        smtputf8: Whether the client asked for SMTPUTF8 (RFC 6531).
        declared_size: The ``SIZE=`` the client declared, if any.
        auth: The ``AUTH=`` identity of ``MAIL FROM`` (RFC 4954 section 5),
            kept only from an authenticated client; None otherwise.
    """

    sender: EmailAddress | None
    recipients: tuple[EmailAddress, ...] = ()
    body: Literal["7BIT", "8BITMIME"] | None = None
    smtputf8: bool = False
    declared_size: int | None = None
    auth: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SenderReceived:
    """``MAIL FROM`` was given and parsed: accept or refuse the sender."""

    envelope: Envelope


@dataclass(frozen=True, slots=True, kw_only=True)
class RecipientReceived:
    """``RCPT TO`` was given and parsed: accept or refuse this recipient.

    Attributes:
        recipient: The forward-path asked for.
        envelope: The transaction so far (the recipients accepted before).
    """

    recipient: EmailAddress
    envelope: Envelope


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageReceived:
    """The data ended with CRLF.CRLF: store it, then accept (250) or refuse.

    Attributes:
        envelope: The envelope, with every accepted recipient.
        data: The message, dot-unstuffed, lines ending in CRLF.
    """

    envelope: Envelope
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthReceived:
    """An AUTH exchange finished: check the credentials, then accept or refuse.

    Attributes:
        mechanism: ``"PLAIN"``, ``"LOGIN"`` or ``"CRAM-MD5"``.
        credentials: What the client proved.
    """

    mechanism: str
    credentials: UsernamePassword | CramMD5


@dataclass(frozen=True, slots=True, kw_only=True)
class StartTLSRequested:
    """STARTTLS was answered 220: start the handshake, then call ``tls_started``."""


Event = SenderReceived | RecipientReceived | MessageReceived | AuthReceived | StartTLSRequested
