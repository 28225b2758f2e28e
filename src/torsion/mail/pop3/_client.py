"""The POP3 client: ``connect_pop3`` and the protocol whose methods are the commands.

``POP3Client`` is thin glue around ``POP3ClientConnection`` (the sans-IO
core): each method writes a command and returns a Deferred of its parsed
reply; replies are matched to commands in order, so several may be in
flight. A message is handed to a sink line by line as it arrives, so a
large one need not be held whole. Every command has a reply timeout.
"""

from __future__ import annotations

import base64
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any, Literal
from typing import Protocol as TypingProtocol

from torsion.cred import apop_digest, cram_md5_response
from torsion.defer import Deferred
from torsion.internet import Clock
from torsion.mail._client_glue import MailClientProtocol, MailClientReactor, connect_client
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

__all__ = ["LoginMethod", "POP3Client", "POP3Reactor", "connect_pop3"]

#: How ``POP3Client.login`` proves the password.
LoginMethod = Literal["auto", "user", "apop", "plain", "login", "cram-md5"]

_Sink = Callable[[bytes], object]


class POP3Reactor(MailClientReactor, TypingProtocol):
    """What ``connect_pop3`` needs from a reactor: time, TCP and TLS connections."""


class _Pending:
    __slots__ = ("deferred", "kind", "parts", "sasl", "sink")

    def __init__(
        self,
        kind: ReplyKind,
        sink: _Sink | None = None,
        sasl: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self.deferred: Deferred[Any] = Deferred()
        self.kind = kind
        self.parts: list[bytes] = []
        self.sink = sink
        self.sasl = sasl


class POP3Client(MailClientProtocol[str, ClientEvent]):
    """One POP3 client connection (RFC 1939, with CAPA, STLS and SASL).

    Get one from ``connect_pop3``. Each command method returns a Deferred
    that fails with ``POP3ReplyError`` on ``-ERR``, ``POP3ProtocolError``
    when the server breaks the protocol (the connection is then closed),
    ``TimeoutError`` when it does not answer in time and
    ``ConnectionResetError`` when the connection is lost.

    Args:
        clock: Runs the reply timer (the reactor).
        timeout: Seconds to wait for each reply.

    Attributes:
        greeted: Fires with the greeting's text once the server greeted.
        apop_timestamp: The greeting's APOP time stamp, or None.
        closed: Fires once the connection is closed.
    """

    protocol_name = "POP3"
    protocol_error = POP3ProtocolError

    def __init__(self, clock: Clock, *, timeout: float = 60.0) -> None:
        super().__init__(clock, timeout=timeout)
        self.core = POP3ClientConnection()
        self.apop_timestamp: bytes | None = None
        self._pending: deque[_Pending] = deque()
        self._capabilities: dict[str, list[str]] | None = None
        self._tls_context: ssl.SSLContext | None = None

    # -- connection events -------------------------------------------------------------

    def _receive(self, data: bytes) -> list[ClientEvent]:
        return self.core.receive_data(data)

    def _awaiting_reply(self) -> bool:
        return bool(self._pending)

    def _event(self, event: ClientEvent) -> None:
        if isinstance(event, Greeting):
            self.apop_timestamp = event.timestamp
            if event.ok:
                self.greeted.callback(event.text)
            else:
                self.greeted.errback(POP3ReplyError(event.text))
                self.transport.close()
            return
        pending = self._pending[0]
        if isinstance(event, Challenge):
            self._answer_challenge(pending, event)
        elif isinstance(event, MessageChunk):
            if pending.sink is not None:
                pending.sink(event.data)
            else:
                pending.parts.append(event.data)
        elif isinstance(event, MessageEnd):
            self._pending.popleft()
            pending.deferred.callback(b"".join(pending.parts))
        elif not event.ok:
            self._pending.popleft()
            pending.deferred.errback(POP3ReplyError(event.text))
        elif pending.kind is not ReplyKind.MESSAGE:
            # A message's +OK is followed by the message; it settles at its end.
            self._pending.popleft()
            pending.deferred.callback(event)

    def _answer_challenge(self, pending: _Pending, event: Challenge) -> None:
        assert pending.sasl is not None
        try:
            challenge = base64.b64decode(event.data, validate=True)
            answer = base64.b64encode(pending.sasl(challenge))
        except (ValueError, POP3Error):
            answer = b"*"
        self.transport.write(self.core.sasl_response(answer))

    def _fail_pending(self, exc: Exception) -> None:
        pending, self._pending = self._pending, deque()
        for item in pending:
            item.deferred.errback(exc)

    # -- sending ---------------------------------------------------------------------------

    def _send(
        self,
        line: str,
        kind: ReplyKind = ReplyKind.SINGLE,
        *,
        sink: _Sink | None = None,
        sasl: Callable[[bytes], bytes] | None = None,
    ) -> Deferred[Any]:
        if self._gone:
            return self._failed_send()
        pending = _Pending(kind, sink, sasl)
        self.transport.write(self.core.command(line, kind))
        self._pending.append(pending)
        self._arm()
        return pending.deferred

    async def _text(self, line: str) -> str:
        reply: Reply = await self._send(line)
        return reply.text

    async def _lines(self, line: str) -> tuple[bytes, ...]:
        reply: Reply = await self._send(line, ReplyKind.LISTING)
        return reply.lines or ()

    # -- commands ----------------------------------------------------------------------------

    async def capabilities(self) -> dict[str, list[str]]:
        """Ask CAPA (RFC 2449): each capability's name (upper case) and its arguments."""
        lines = await self._lines("CAPA")
        capabilities: dict[str, list[str]] = {}
        for line in lines:
            words = line.decode("utf-8", "replace").split()
            if words:
                capabilities[words[0].upper()] = words[1:]
        self._capabilities = capabilities
        return capabilities

    async def starttls(
        self, context: ssl.SSLContext | None = None, *, server_hostname: str | None = None
    ) -> None:
        """Upgrade to TLS with STLS (RFC 2595); the capabilities are asked again after.

        Args:
            context: The TLS settings (``client_context()``, verifying, if None).
            server_hostname: The name the certificate must carry.
        """
        await self._text("STLS")
        await self._upgrade(context, server_hostname)
        self._capabilities = None

    async def login(self, user: str, password: str, *, method: LoginMethod = "auto") -> str:
        """Log in; return the server's reply text.

        ``"auto"`` picks CRAM-MD5 when offered, else APOP when the greeting
        has a time stamp, else USER/PASS, else AUTH PLAIN.
        """
        if method == "auto":
            method = await self._choose_method()
        if method == "user":
            await self._text(f"USER {user}")
            return await self._text(f"PASS {password}")
        if method == "apop":
            if self.apop_timestamp is None:
                raise POP3Error("the server's greeting has no APOP time stamp")
            return await self._text(f"APOP {user} {apop_digest(password, self.apop_timestamp)}")
        if method == "plain":
            token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
            reply: Reply = await self._send(f"AUTH PLAIN {token}", ReplyKind.SASL, sasl=_refuse)
            return reply.text
        if method == "login":
            answers = iter([user.encode(), password.encode()])

            def login_step(challenge: bytes) -> bytes:
                return next(answers, b"")

            reply = await self._send("AUTH LOGIN", ReplyKind.SASL, sasl=login_step)
            return reply.text

        def cram_step(challenge: bytes) -> bytes:
            return f"{user} {cram_md5_response(password, challenge)}".encode()

        reply = await self._send("AUTH CRAM-MD5", ReplyKind.SASL, sasl=cram_step)
        return reply.text

    async def _choose_method(self) -> LoginMethod:
        capabilities = self._capabilities
        if capabilities is None:
            try:
                capabilities = await self.capabilities()
            except POP3ReplyError:
                capabilities = {}
        mechanisms = [m.upper() for m in capabilities.get("SASL", [])]
        if "CRAM-MD5" in mechanisms:
            return "cram-md5"
        if self.apop_timestamp is not None:
            return "apop"
        if "USER" in capabilities or not mechanisms:
            return "user"
        return "plain"

    async def stat(self) -> tuple[int, int]:
        """Return the maildrop's message count and size in octets."""
        words = (await self._text("STAT")).split()
        try:
            return int(words[0]), int(words[1])
        except (IndexError, ValueError):
            raise POP3ProtocolError(f"a STAT reply without numbers: {words!r}") from None

    async def list(self) -> dict[int, int]:
        """Return each message's number and size."""
        return {n: int(v) for n, v in _pairs(await self._lines("LIST"))}

    async def uidl(self) -> dict[int, str]:
        """Return each message's number and unique id."""
        return dict(_pairs(await self._lines("UIDL")))

    def retrieve(self, number: int, sink: _Sink | None = None) -> Deferred[bytes]:
        """Retrieve a message (RETR), unstuffed, with CRLF line endings.

        Args:
            number: The message's number.
            sink: Called with each piece as it arrives (whole lines); the
                Deferred then fires with ``b""``. None: the Deferred fires
                with the whole message.
        """
        return self._send(f"RETR {number}", ReplyKind.MESSAGE, sink=sink)

    def top(self, number: int, lines: int, sink: _Sink | None = None) -> Deferred[bytes]:
        """Retrieve a message's header and first ``lines`` body lines (TOP)."""
        return self._send(f"TOP {number} {lines}", ReplyKind.MESSAGE, sink=sink)

    async def delete(self, number: int) -> None:
        """Mark a message deleted (DELE); the server removes it at ``quit``."""
        await self._text(f"DELE {number}")

    async def reset(self) -> None:
        """Unmark every deletion (RSET)."""
        await self._text("RSET")

    async def noop(self) -> None:
        """Say NOOP."""
        await self._text("NOOP")

    async def quit(self) -> str:
        """Say QUIT (the server removes the deleted messages) and close."""
        try:
            return await self._text("QUIT")
        finally:
            if not self._gone:
                self.transport.close()
            await self.closed


def _refuse(challenge: bytes) -> bytes:
    # PLAIN with its initial response expects no challenge (RFC 4616).
    raise POP3Error("unexpected SASL challenge")


def _pairs(lines: tuple[bytes, ...]) -> list[tuple[int, str]]:
    pairs = []
    for line in lines:
        words = line.decode("utf-8", "replace").split()
        if len(words) < 2 or not words[0].isdigit():
            raise POP3ProtocolError(f"a listing line that is not 'number value': {line[:80]!r}")
        pairs.append((int(words[0]), words[1]))
    return pairs


async def connect_pop3(
    reactor: POP3Reactor,
    host: str,
    port: int = 110,
    *,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    reply_timeout: float = 60.0,
) -> POP3Client:
    """Connect to a POP3 server and wait for its greeting.

    Args:
        reactor: Makes the connection.
        host: The server's name or address.
        port: Its port (110; 995 for implicit TLS).
        tls: Implicit TLS (POP3S) with these settings; for STLS, connect in
            clear and call ``POP3Client.starttls``.
        server_hostname: The name the certificate must carry (``host`` if None).
        reply_timeout: Seconds for the connection and for each reply.

    Raises:
        POP3ReplyError: The greeting was ``-ERR``.
    """
    return await connect_client(
        reactor,
        host,
        port,
        lambda: POP3Client(reactor, timeout=reply_timeout),
        tls=tls,
        server_hostname=server_hostname,
        connect_timeout=reply_timeout,
    )
