"""Where the SMTP server hands mail: the ``Delivery`` interface and the session.

The server asks its delivery three things, each of which may answer at once
or later (a Deferred or a coroutine), and each of which refuses by raising
``SMTPReplyError`` with the reply the client is to get::

    validate_sender (MAIL FROM)
    -> validate_recipient* (each RCPT TO: the answer goes to that RCPT)
    -> deliver (after the data's CRLF.CRLF: 250 is sent only once it returned)

The server says ``250`` to a message only after ``deliver`` has finished:
a delivery stores the message durably (or hands it to something that
will) before it returns, so that nothing acknowledged is lost. Any other
exception is the server's own failure and answered ``451 4.3.0`` (the
client keeps the message and retries).
"""

from __future__ import annotations

import typing
from collections.abc import Awaitable
from dataclasses import dataclass

from torsion.internet import Address
from torsion.mail.smtp._address import EmailAddress
from torsion.mail.smtp._events import Envelope

__all__ = ["Delivery", "Session"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    """What is known of the client when a delivery is asked something.

    Attributes:
        hostname: The server's own name.
        helo: The name the client gave in EHLO/HELO.
        peer: The client's address.
        tls: The TLS version in use (``"TLSv1.3"``), or None in clear text.
        authenticated_as: The user the client logged in as (AUTH), or None.
    """

    hostname: str
    helo: str
    peer: Address
    tls: str | None = None
    authenticated_as: str | None = None


class Delivery(typing.Protocol):
    """What an SMTP server delivers through: validation, then storage.

    A delivery that accepts everything returns None from the first two
    methods. Each method may return None, a Deferred or a coroutine, and
    refuses by raising ``SMTPReplyError`` (or failing with it).
    """

    def validate_sender(
        self, session: Session, sender: EmailAddress | None, /
    ) -> Awaitable[object] | None:
        """Accept or refuse the reverse-path of ``MAIL FROM`` (None for ``<>``).

        Raises:
            SMTPReplyError: Refused (e.g. ``553 5.7.1``); the transaction
                does not start.
        """
        ...

    def validate_recipient(
        self, session: Session, recipient: EmailAddress, /
    ) -> Awaitable[object] | None:
        """Accept or refuse one forward-path of ``RCPT TO``.

        Raises:
            SMTPReplyError: Refused for this recipient only: ``550 5.1.1``
                (no such user), ``450 4.2.1``/``451 4.3.0`` (try later),
                ``553 5.7.1`` (relaying denied)...
        """
        ...

    def deliver(
        self, session: Session, envelope: Envelope, message: bytes, /
    ) -> Awaitable[object] | None:
        """Store ``message`` for every recipient of ``envelope``.

        Args:
            session: Who sent it.
            envelope: Its sender and the accepted recipients.
            message: The message with the server's ``Received:`` header on
                top, dot-unstuffed, lines ending in CRLF.

        Raises:
            SMTPReplyError: Refused (``554 5.6.0``, ``452 4.3.1``...); the
                client is told so and nothing is acknowledged.
        """
        ...
