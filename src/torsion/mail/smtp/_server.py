"""The ESMTP server on a connection: the core's glue to transport, clock, cred and delivery.

``SMTPFactory`` builds one ``SMTPServer`` per connection. The protocol feeds
the bytes it reads to ``SMTPServerConnection`` (the sans-IO core), writes
its replies, and answers its events: senders, recipients and messages
through the ``Delivery``, AUTH through a cred ``Portal``, STARTTLS through
``Protocol.start_tls``. While an answer is awaited, reading is paused, so
that a pipelining client's commands wait in the socket, not in memory.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import logging
import os
import secrets
import socket
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from torsion.cred import CramMD5, Portal, UnauthorizedLogin, UnhandledCredentials, UsernamePassword
from torsion.cred import Login as CredLogin
from torsion.defer import Deferred, awaitable_deferred
from torsion.internet import Address, Clock, IPv4Address, IPv6Address, ServerTLS
from torsion.internet import Protocol as BaseProtocol
from torsion.mail._session_timer import SessionTimer
from torsion.mail.smtp._core import AUTH_MECHANISMS, SMTPServerConnection
from torsion.mail.smtp._delivery import Delivery, Session
from torsion.mail.smtp._errors import SMTPReplyError
from torsion.mail.smtp._events import (
    AuthReceived,
    Envelope,
    Event,
    MessageReceived,
    RecipientReceived,
    SenderReceived,
    SMTPLimits,
)

__all__ = ["SMTPFactory", "SMTPServer", "received_header"]

log = logging.getLogger("torsion.mail.smtp")

_LOCAL_ERROR = SMTPReplyError(451, "4.3.0", "Local error in processing; try again later")
_AUTH_FAILED = SMTPReplyError(535, "5.7.8", "Authentication credentials invalid")
_AUTH_UNAVAILABLE = SMTPReplyError(454, "4.7.0", "Temporary authentication failure")


class SMTPFactory:
    """Builds the ESMTP server protocol for each connection.

    Pass it as the factory of any stream listener (``listen_tcp``,
    ``listen_tls`` for implicit TLS on port 465, an endpoint).

    Args:
        delivery: Validates senders and recipients and stores messages.
        clock: Tells the time (the reactor), for the timeouts.
        hostname: The server's name in the greeting, replies and
            ``Received:`` headers (the machine's FQDN if None).
        portal: Logs AUTH credentials in; the avatar is asked for as a
            ``Delivery``, which then serves the rest of the session (so a
            realm can let authenticated users relay). None: no AUTH.
        tls: Certificates for STARTTLS (RFC 3207); None: no STARTTLS.
        limits: Bounds and timeouts.
        auth_without_tls: Offer AUTH before TLS (otherwise refused with 538
            5.7.11: passwords are not sent in clear text).
        require_auth: Refuse MAIL until the client logged in (submission).
    """

    def __init__(
        self,
        delivery: Delivery,
        *,
        clock: Clock,
        hostname: str | None = None,
        portal: Portal | None = None,
        tls: ssl.SSLContext | ServerTLS | None = None,
        limits: SMTPLimits | None = None,
        auth_without_tls: bool = False,
        require_auth: bool = False,
    ) -> None:
        self.delivery = delivery
        self.clock = clock
        self.hostname = hostname if hostname is not None else socket.getfqdn()
        self.portal = portal
        self.tls_context = tls.context if isinstance(tls, ServerTLS) else tls
        self.limits = limits if limits is not None else SMTPLimits()
        self.auth_without_tls = auth_without_tls
        self.require_auth = require_auth
        self.auth_mechanisms = _mechanisms(portal)
        if require_auth and not self.auth_mechanisms:
            raise ValueError("require_auth needs a portal taking passwords")

    def __call__(self, address: Address) -> SMTPServer:
        """Return a new server protocol for a connection from ``address``."""
        return SMTPServer(self)


def _mechanisms(portal: Portal | None) -> tuple[str, ...]:
    if portal is None:
        return ()
    types = portal.credential_types
    offered: list[str] = []
    if any(issubclass(UsernamePassword, t) for t in types):
        offered += ["PLAIN", "LOGIN"]
    if any(issubclass(CramMD5, t) for t in types):
        # Only checkers that hold the secrets can take CRAM-MD5.
        offered.append("CRAM-MD5")
    return tuple(m for m in AUTH_MECHANISMS if m in offered)


class SMTPServer(BaseProtocol):
    """One ESMTP server connection (RFC 5321 with its usual extensions).

    Build it through ``SMTPFactory``. A delivery in progress when the client
    goes away still finishes (a stored message cannot be taken back, and
    the client, not having seen 250, sends it again); a message whose data
    did not end when the client went is never delivered.

    Attributes:
        core: The session's state machine.
    """

    def __init__(self, factory: SMTPFactory) -> None:
        self.factory = factory
        self.delivery: Delivery = factory.delivery
        self.core: SMTPServerConnection
        self._timer = SessionTimer(factory.clock, self._timeout, self._timed_out)
        self._waiting: Deferred[Any] | None = None
        self._delivering = False
        self._logout: Callable[[], object] | None = None
        self._reading_paused = False
        self._pumping = False
        self._gone = False
        # The client's address and the TLS version, asked of the transport
        # once rather than for every event.
        self._peer: Address | None = None
        self._tls: str | None = None
        self._session_cache: Session | None = None

    # -- connection events -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Greet the client and start the command timer."""
        super().connection_made(transport)
        factory = self.factory
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self._tls = ssl_object.version()
        self.core = SMTPServerConnection(
            hostname=factory.hostname,
            limits=factory.limits,
            tls_available=factory.tls_context is not None,
            tls_active=ssl_object is not None,
            auth_mechanisms=factory.auth_mechanisms,
            auth_without_tls=factory.auth_without_tls,
            require_auth=factory.require_auth,
        )
        self._pump()

    def data_received(self, data: bytes) -> None:
        """Hand the bytes to the core and act on what it says."""
        self.core.receive_data(data)
        self._pump()

    def eof_received(self) -> bool | None:
        """The client stopped sending: close (an unfinished message is dropped)."""
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop what was under way, stop the timer and log out."""
        self._gone = True
        self.core.connection_lost()
        self._timer.stop()
        if self._waiting is not None and not self._delivering:
            # A login or a validation is of no use any more; a delivery is
            # let finish (a message half stored is worse than a duplicate).
            waiting, self._waiting = self._waiting, None
            waiting.cancel()
        if self._logout is not None:
            logout, self._logout = self._logout, None
            logout()
        super().connection_lost(exc)

    def shut_down(self) -> None:
        """The server is stopping: say 421 4.3.2 and close (RFC 5321 section 3.8).

        A delivery under way still finishes; its 250 is not sent, so the
        client sends the message again later.
        """
        if not self._gone:
            self.core.shut_down()
            self._pump()

    # -- driving the core ----------------------------------------------------------

    def _pump(self) -> None:
        # Answers that come at once (a synchronous delivery) call back in
        # here while the loop below runs: they only mark the work, so that
        # the replies to one read go out in one write.
        if self._pumping:
            return
        self._pumping = True
        core = self.core
        try:
            while not self._gone:
                event = core.next_event()
                if event is None:
                    break
                self._handle(event)
            if not self._gone:
                out = core.data_to_send()
                if out:
                    self.transport.write(out)
        finally:
            self._pumping = False
        if self._gone:
            return
        if core.closing:
            self.transport.close()
            return
        waiting = core.waiting
        if waiting != self._reading_paused:
            self._reading_paused = waiting
            if waiting:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()
        self._timer.touch()

    def _handle(self, event: Event) -> None:
        # The most frequent events first.
        if isinstance(event, RecipientReceived):
            delivery = self.delivery
            self._ask("check", delivery.validate_recipient, self._session(), event.recipient)
        elif isinstance(event, SenderReceived):
            sender = event.envelope.sender
            self._ask("check", self.delivery.validate_sender, self._session(), sender)
        elif isinstance(event, MessageReceived):
            self._deliver(event)
        elif isinstance(event, AuthReceived):
            self._authenticate(event)
        else:
            self._start_tls()

    def _deliver(self, event: MessageReceived) -> None:
        session = self._session()
        header = received_header(session, event.envelope, id=message_id())
        self._ask("delivery", self.delivery.deliver, session, event.envelope, header + event.data)

    def _ask(self, what: str, method: Callable[..., object], *args: object) -> None:
        # Ask the delivery; an answer given at once (None, a value, or a
        # raised SMTPReplyError) is acted on here with no Deferred, and the
        # pump loop goes on to the next event; a Deferred or a coroutine is
        # waited for.
        try:
            result = method(*args)
        except SMTPReplyError as exc:
            self.core.refuse(exc)
            return
        except Exception as exc:
            log.error("SMTP %s failed; answered 451", what, exc_info=exc)
            self.core.refuse(_LOCAL_ERROR)
            return
        if result is not None:
            d = awaitable_deferred(result)
            if d is not None:
                self._wait(d, what)
                return
        self.core.accept()

    def _wait(self, d: Deferred[Any], what: str) -> None:
        # The answer may come at once (then the pump loop goes on) or later.
        self._waiting = d
        self._delivering = what == "delivery"

        def succeeded(_: object) -> None:
            self._waiting = None
            self._delivering = False
            if not self._gone:
                self.core.accept()
                self._pump()

        def failed(exc: BaseException) -> None:
            self._waiting = None
            self._delivering = False
            if self._gone:
                if not isinstance(exc, asyncio.CancelledError | SMTPReplyError):
                    log.error("SMTP %s failed after the client left", what, exc_info=exc)
                return
            if isinstance(exc, SMTPReplyError):
                self.core.refuse(exc)
            else:
                log.error("SMTP %s failed; answered 451", what, exc_info=exc)
                self.core.refuse(_LOCAL_ERROR)
            self._pump()

        d.add_callbacks(succeeded, failed)

    def _authenticate(self, event: AuthReceived) -> None:
        portal = self.factory.portal
        assert portal is not None  # AUTH is offered only with a portal
        credentials = event.credentials

        def logged_in(login: CredLogin) -> None:
            self._waiting = None
            if self._gone:
                login.logout()
                return
            self._logout = login.logout
            if login.interface is Delivery:
                self.delivery = login.avatar
            self.core.accept_auth(credentials.username)
            self._pump()

        def refused(exc: BaseException) -> None:
            self._waiting = None
            if self._gone:
                return
            if isinstance(exc, UnauthorizedLogin | UnhandledCredentials):
                self.core.refuse(_AUTH_FAILED)
            else:
                log.error("SMTP AUTH failed in the realm; answered 454", exc_info=exc)
                self.core.refuse(_AUTH_UNAVAILABLE)
            self._pump()

        d = portal.login(credentials, None, Delivery, client=self.peer)
        self._waiting = d
        d.add_callbacks(logged_in, refused)

    def _start_tls(self) -> None:
        context = self.factory.tls_context
        assert context is not None  # STARTTLS is offered only with a context
        # The 220 goes out in clear text before the handshake starts.
        self.transport.write(self.core.data_to_send())
        # No more clear text is read: what came with STARTTLS was dropped by
        # the core, and what comes from now on must come through TLS (RFC
        # 3207 section 4.2, CVE-2011-0411). Decrypted commands can arrive
        # before the handshake's Deferred fires; the core holds them.
        self.transport.pause_reading()
        self._reading_paused = True
        d = self.start_tls(context, server_side=True)
        self._waiting = d

        def done(_: object) -> None:
            self._waiting = None
            if not self._gone:
                # The TLS transport is a new one, and reading.
                self._reading_paused = False
                ssl_object = self.transport.get_extra_info("ssl_object")
                self._tls = ssl_object.version() if ssl_object is not None else None
                self.core.tls_started()
                self._pump()

        def failed(exc: BaseException) -> None:
            # The connection is closed by start_tls; a failed handshake is
            # the client's affair and is not logged as an error.
            self._waiting = None
            log.debug("STARTTLS handshake failed: %s", exc)

        d.add_callbacks(done, failed)

    def _session(self) -> Session:
        # One Session per connection until what it says changes (EHLO,
        # AUTH, STARTTLS): it is frozen, so handing out the same one is safe.
        core = self.core
        helo = core.helo or ""
        cached = self._session_cache
        if (
            cached is not None
            and cached.helo == helo
            and cached.authenticated_as == core.authenticated_as
            and cached.tls == self._tls
        ):
            return cached
        if self._peer is None:
            self._peer = self.peer
        cached = self._session_cache = Session(
            hostname=self.factory.hostname,
            helo=helo,
            peer=self._peer,
            tls=self._tls,
            authenticated_as=core.authenticated_as,
        )
        return cached

    # -- timeouts ------------------------------------------------------------------

    def _timeout(self) -> float | None:
        return self.core.timeout

    def _timed_out(self) -> None:
        self.core.timed_out()
        self._pump()


# Message identifiers: a random part drawn once per process (again in a
# forked child) and a counter, as unique as a random draw per message
# without a getrandom(2) call each time.
_id_prefix = secrets.token_hex(6)
_id_counter = itertools.count(1)


def _new_id_prefix() -> None:
    global _id_prefix, _id_counter
    _id_prefix = secrets.token_hex(6)
    _id_counter = itertools.count(1)


os.register_at_fork(after_in_child=_new_id_prefix)


def message_id() -> str:
    """Return a new identifier for a message, unique to this server process."""
    return f"{_id_prefix}{next(_id_counter):06x}"


# The date of Received: headers changes once a second; formatting it costs
# more than the rest of the header.
_date_second = -1
_date_text = ""


def _date() -> str:
    global _date_second, _date_text
    second = int(time.time())
    if second != _date_second:
        _date_text = email.utils.format_datetime(datetime.fromtimestamp(second, UTC))
        _date_second = second
    return _date_text


def received_header(session: Session, envelope: Envelope, *, id: str) -> bytes:
    """Return the ``Received:`` trace header for a message (RFC 5321 section 4.4).

    The protocol name is RFC 3848's (``ESMTP``, ``ESMTPS``, ``ESMTPA``,
    ``ESMTPSA``; ``UTF8SMTP...`` after SMTPUTF8, RFC 6531), the date is in
    UTC, and the recipient is named only when there is one (naming them all
    would tell each who else got a copy).

    Args:
        session: Who sent the message.
        envelope: Its envelope.
        id: The server's identifier for the message.
    """
    peer = session.peer
    if isinstance(peer, IPv4Address):
        literal = f"[{peer.host}]"
    elif isinstance(peer, IPv6Address):
        literal = f"[IPv6:{peer.host}]"
    else:
        literal = "[UNIX]"
    protocol = "UTF8SMTP" if envelope.smtputf8 else "ESMTP"
    if session.tls:
        protocol += "S"
    if session.authenticated_as is not None:
        protocol += "A"
    tls = f" ({session.tls})" if session.tls else ""
    recipient = f"\r\n\tfor <{envelope.recipients[0]}>" if len(envelope.recipients) == 1 else ""
    header = (
        f"Received: from {session.helo} ({literal})\r\n"
        f"\tby {session.hostname} with {protocol}{tls} id {id}{recipient};\r\n"
        f"\t{_date()}\r\n"
    )
    return header.encode("utf-8")
