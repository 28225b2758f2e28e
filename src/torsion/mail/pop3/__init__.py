"""POP3 (RFC 1939) server and client, with CAPA (RFC 2449), STLS (RFC 2595) and SASL (RFC 5034).

- ``POP3Factory`` serves POP3 on any stream listener: USER/PASS, APOP and
  AUTH CRAM-MD5/PLAIN/LOGIN through a cred ``Portal`` whose realm hands out
  ``MailStore``s (the INBOX is the maildrop, locked for the session), STLS,
  STAT, LIST, UIDL, RETR and TOP (streamed as the connection drains), DELE
  and RSET, deletions carried out only at QUIT; limits on line length,
  commands, errors, failed logins and idle time, on by default.
- ``POP3ServerConnection`` is the server's state machine, bytes in, replies
  and events out, for tests and other I/O worlds.
- Client: ``connect_pop3`` returns a ``POP3Client`` whose methods are the
  commands (``login`` by CRAM-MD5, APOP, USER/PASS or AUTH PLAIN/LOGIN,
  ``starttls``, ``stat``, ``list``, ``uidl``, ``retrieve`` and ``top``
  streamed to a sink, ``delete``, ``reset``, ``quit``); ``-ERR`` is
  ``POP3ReplyError`` with its response code. ``POP3ClientConnection`` is
  its sans-IO core.
- ``MessageWriter`` and ``MessageUnstuffer``: the byte-stuffed multi-line
  framing, in chunks.

A server for the users of a ``MailUsers``::

    factory = POP3Factory(portal, clock=reactor, tls=server_tls)
    reactor.listen_tcp(110, factory)
"""

from torsion.mail.pop3._client import LoginMethod, POP3Client, POP3Reactor, connect_pop3
from torsion.mail.pop3._client_core import (
    Challenge,
    ClientEvent,
    Greeting,
    MessageChunk,
    MessageEnd,
    POP3ClientConnection,
    POP3Error,
    POP3ProtocolError,
    POP3ReplyError,
    Reply,
    ReplyKind,
)
from torsion.mail.pop3._core import AUTH_MECHANISMS, POP3ServerConnection, State
from torsion.mail.pop3._events import (
    LoginRequested,
    POP3Event,
    POP3Limits,
    RetrieveRequested,
    STLSRequested,
    UpdateRequested,
)
from torsion.mail.pop3._server import POP3Factory, POP3Server
from torsion.mail.pop3._wire import MessageUnstuffer, MessageWriter

__all__ = [
    "AUTH_MECHANISMS",
    "Challenge",
    "ClientEvent",
    "Greeting",
    "LoginMethod",
    "LoginRequested",
    "MessageChunk",
    "MessageEnd",
    "MessageUnstuffer",
    "MessageWriter",
    "POP3Client",
    "POP3ClientConnection",
    "POP3Error",
    "POP3Event",
    "POP3Factory",
    "POP3Limits",
    "POP3ProtocolError",
    "POP3Reactor",
    "POP3ReplyError",
    "POP3Server",
    "POP3ServerConnection",
    "Reply",
    "ReplyKind",
    "RetrieveRequested",
    "STLSRequested",
    "State",
    "UpdateRequested",
    "connect_pop3",
]
