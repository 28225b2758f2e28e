"""ESMTP (RFC 5321) server: a sans-IO core, its protocol glue and a delivery interface.

- ``SMTPFactory`` serves ESMTP on any stream listener: PIPELINING (RFC
  2920), SIZE (RFC 1870, enforced), 8BITMIME (RFC 6152), SMTPUTF8 (RFC
  6531), ENHANCEDSTATUSCODES (RFC 2034/3463), STARTTLS (RFC 3207) and
  AUTH PLAIN, LOGIN and CRAM-MD5 (RFC 4954) through a cred ``Portal``;
  limits on lines, recipients, message size, errors, commands and idle
  time, on by default.
- ``Delivery`` is what the server hands mail to: it validates the sender
  and each recipient and stores each message before the server says 250.
- ``SMTPServerConnection`` is the state machine itself, bytes in, replies
  and events out, for tests and other I/O worlds.
- ``parse_path`` and ``EmailAddress``: RFC 5321 paths.
- Client: ``send_message`` sends one message (STARTTLS, verified by
  default; AUTH CRAM-MD5/PLAIN/LOGIN; PIPELINING; SIZE, 8BITMIME and
  SMTPUTF8 when needed) and returns a ``SendResult`` with one
  ``RecipientOutcome`` per recipient; ``SMTPClientError`` when the session
  fails as a whole. ``ClientSession`` and ``ReplyParser`` are its sans-IO
  core, ``SMTPClientProtocol`` the glue.

A server that accepts everything into a directory::

    factory = SMTPFactory(MyDelivery(), clock=reactor, hostname="mx.example.test")
    reactor.listen_tcp(2525, factory)
"""

from torsion.mail.smtp._address import EmailAddress, parse_mailbox, parse_parameters, parse_path
from torsion.mail.smtp._client import SMTPClientProtocol, SMTPReactor, send_message
from torsion.mail.smtp._client_core import (
    AuthMechanism,
    Capabilities,
    ClientEvent,
    ClientSession,
    ClientStartTLS,
    ClientWrite,
    DeliveryStatus,
    RecipientOutcome,
    Reply,
    ReplyParser,
    SendResult,
    SMTPClientError,
    STARTTLSError,
    TLSMode,
    domain_of,
    dot_stuff,
)
from torsion.mail.smtp._core import AUTH_MECHANISMS, SMTPServerConnection, State
from torsion.mail.smtp._delivery import Delivery, Session
from torsion.mail.smtp._errors import AddressError, SMTPError, SMTPReplyError
from torsion.mail.smtp._events import (
    AuthReceived,
    Envelope,
    Event,
    MessageReceived,
    RecipientReceived,
    SenderReceived,
    SMTPLimits,
    StartTLSRequested,
)
from torsion.mail.smtp._server import SMTPFactory, SMTPServer, received_header

__all__ = [
    "AUTH_MECHANISMS",
    "AddressError",
    "AuthMechanism",
    "AuthReceived",
    "Capabilities",
    "ClientEvent",
    "ClientSession",
    "ClientStartTLS",
    "ClientWrite",
    "Delivery",
    "DeliveryStatus",
    "EmailAddress",
    "Envelope",
    "Event",
    "MessageReceived",
    "RecipientOutcome",
    "RecipientReceived",
    "Reply",
    "ReplyParser",
    "SMTPClientError",
    "SMTPClientProtocol",
    "SMTPError",
    "SMTPFactory",
    "SMTPLimits",
    "SMTPReactor",
    "SMTPReplyError",
    "SMTPServer",
    "SMTPServerConnection",
    "STARTTLSError",
    "SendResult",
    "SenderReceived",
    "Session",
    "StartTLSRequested",
    "State",
    "TLSMode",
    "domain_of",
    "dot_stuff",
    "parse_mailbox",
    "parse_parameters",
    "parse_path",
    "received_header",
    "send_message",
]
