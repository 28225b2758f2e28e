"""The POP3 server on a connection: the core's glue to transport, clock, cred and mailbox.

``POP3Factory`` builds one ``POP3Server`` per connection. The protocol feeds
what it reads to ``POP3ServerConnection`` (the sans-IO core), writes its
replies and answers its events: logins through a cred ``Portal`` (the avatar
is the user's ``MailStore``, whose INBOX is the maildrop), message bodies
from the mailbox, written in slices as the transport drains, the deletions
at QUIT, and STLS through ``Protocol.start_tls``. While an answer is
awaited, reading is paused, so a pipelining client's commands wait in the
socket, not in memory.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

from torsion.cred import (
    APOP,
    Portal,
    UnauthorizedLogin,
    UnhandledCredentials,
    apop_challenge,
)
from torsion.cred import Login as CredLogin
from torsion.defer import Deferred, ensure_deferred
from torsion.internet import Address, Clock, ServerTLS
from torsion.mail._mailbox import (
    DELETED,
    FlagMode,
    Mailbox,
    MailboxError,
    MaildropLock,
    MaildropLockedError,
    MailStore,
)
from torsion.mail._server_glue import MailServerFactory, MailServerProtocol
from torsion.mail._session_timer import SessionTimer
from torsion.mail.pop3._core import AUTH_MECHANISMS, POP3ServerConnection
from torsion.mail.pop3._events import (
    LoginRequested,
    POP3Event,
    POP3Limits,
    RetrieveRequested,
    STLSRequested,
    UpdateRequested,
)
from torsion.mail.pop3._wire import MessageWriter

__all__ = ["POP3Factory", "POP3Server"]

log = logging.getLogger("torsion.mail.pop3")

#: The slice of a message written before waiting for the transport to drain.
_SLICE = 64 * 1024

#: The most users whose last login time is kept for LOGIN-DELAY.
_MAX_TRACKED = 100_000


class POP3Factory(MailServerFactory):
    """Builds the POP3 server protocol for each connection.

    Pass it as the factory of any stream listener (``listen_tcp``, or
    ``listen_tls`` for implicit TLS on port 995).

    Args:
        portal: Logs credentials in; the avatar is asked for as a
            ``MailStore`` and its ``INBOX`` is the maildrop.
        clock: Tells the time (the reactor), for the idle timeout.
        hostname: The server's name in the APOP time stamp and CRAM-MD5
            challenges (the machine's FQDN if None).
        tls: Certificates for STLS (RFC 2595); None: no STLS.
        limits: Bounds and timeouts.
        plaintext_without_tls: Take USER/PASS and AUTH PLAIN/LOGIN before
            TLS (otherwise refused until STLS, as RFC 2595 section 2.1 asks).
        apop: Offer APOP when a checker takes ``APOP`` credentials.
        login_delay: Seconds a user must wait between logins (RFC 2449
            LOGIN-DELAY; refused with ``[LOGIN-DELAY]``), or None.
        expire: Advertise EXPIRE with this argument (``NEVER`` or days).
    """

    def __init__(
        self,
        portal: Portal,
        *,
        clock: Clock,
        hostname: str | None = None,
        tls: ssl.SSLContext | ServerTLS | None = None,
        limits: POP3Limits | None = None,
        plaintext_without_tls: bool = False,
        apop: bool = True,
        login_delay: int | None = None,
        expire: str | None = None,
    ) -> None:
        super().__init__(
            portal,
            clock=clock,
            hostname=hostname,
            tls=tls,
            plaintext_without_tls=plaintext_without_tls,
        )
        self.limits = limits if limits is not None else POP3Limits()
        self.apop = apop and any(issubclass(APOP, t) for t in portal.credential_types)
        if login_delay is not None and login_delay < 1:
            raise ValueError("login_delay must be at least 1 second")
        self.login_delay = login_delay
        self.expire = expire
        # When each user last logged in, oldest first, for LOGIN-DELAY.
        self._last_logins: dict[str, float] = {}
        # Offered in the order the core knows them.
        self.auth_mechanisms = tuple(m for m in AUTH_MECHANISMS if m in self.auth_mechanisms)

    def __call__(self, address: Address) -> POP3Server:
        """Return a new server protocol for a connection from ``address``."""
        return POP3Server(self)

    def login_allowed(self, user: str) -> bool:
        """Record a login by ``user``; return False if it came too soon (LOGIN-DELAY)."""
        if self.login_delay is None:
            return True
        now = self.clock.seconds()
        last = self._last_logins.get(user)
        if last is not None and now - last < self.login_delay:
            # The refused attempt does not restart the wait.
            return False
        # Moved to the end: the table stays in order of time.
        self._last_logins.pop(user, None)
        self._last_logins[user] = now
        # Bounded: users whose delay has passed are forgotten, oldest first.
        while self._last_logins:
            name = next(iter(self._last_logins))
            recent = now - self._last_logins[name] < self.login_delay
            if recent and len(self._last_logins) <= _MAX_TRACKED:
                break
            del self._last_logins[name]
        return True


class POP3Server(MailServerProtocol):
    """One POP3 server connection (RFC 1939 with CAPA, STLS and SASL).

    Build it through ``POP3Factory``. Deletions are carried out only after
    QUIT in the TRANSACTION state; a connection lost before that deletes
    nothing, and the maildrop lock is released either way.

    Attributes:
        core: The session's state machine.
    """

    def __init__(self, factory: POP3Factory) -> None:
        self.factory = factory
        self.core: POP3ServerConnection
        self._timer = SessionTimer(factory.clock, lambda: self.core.timeout, self._timed_out)
        self._waiting: Deferred[Any] | None = None
        self._mailbox: Mailbox | None = None
        self._lock: MaildropLock | None = None

    # -- connection events -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Greet the client and start the idle timer."""
        super().connection_made(transport)
        factory = self.factory
        self.core = POP3ServerConnection(
            hostname=factory.hostname,
            limits=factory.limits,
            tls_available=factory.tls_context is not None,
            tls_active=transport.get_extra_info("ssl_object") is not None,
            apop_timestamp=apop_challenge(factory.hostname) if factory.apop else None,
            auth_mechanisms=factory.auth_mechanisms,
            plaintext_without_tls=factory.plaintext_without_tls,
            login_delay=factory.login_delay,
            expire=factory.expire,
        )
        self._pump()

    def data_received(self, data: bytes) -> None:
        """Hand the bytes to the core and act on what it says."""
        self.core.receive_data(data)
        self._pump()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop what was under way, release the maildrop and log out; delete nothing."""
        self._gone = True
        self.core.connection_lost()
        self._timer.stop()
        if self._waiting is not None:
            waiting, self._waiting = self._waiting, None
            waiting.cancel()
        self._end_session()
        super().connection_lost(exc)

    def _end_session(self) -> None:
        if self._lock is not None:
            lock, self._lock = self._lock, None
            lock.release()
        self._mailbox = None
        self._log_out()

    # -- driving the core --------------------------------------------------------------

    def _pump(self) -> None:
        core = self.core
        while not self._gone:
            out = core.data_to_send()
            if out:
                self.transport.write(out)
            event = core.next_event()
            if event is None:
                break
            self._handle(event)
        if self._gone:
            return
        if core.closing:
            self.transport.close()
            return
        # During the TLS handshake the loop's TLS machinery owns reading.
        self._set_reading_paused(core.waiting and not self._handshaking)
        self._timer.touch()

    def _handle(self, event: POP3Event) -> None:
        if isinstance(event, LoginRequested):
            self._login(event)
        elif isinstance(event, RetrieveRequested):
            self._retrieve(event)
        elif isinstance(event, UpdateRequested):
            self._update(event)
        else:
            assert isinstance(event, STLSRequested)
            self._start_tls()

    def _login(self, event: LoginRequested) -> None:
        credentials = event.credentials

        def logged_in(login: CredLogin) -> None:
            self._waiting = None
            if self._gone:
                login.logout()
                return
            if not self.factory.login_allowed(credentials.username):
                login.logout()
                self.core.login_refused("[LOGIN-DELAY] minimum time between logins not reached")
                self._pump()
                return
            store: MailStore = login.avatar
            try:
                mailbox = store.mailbox("INBOX")
                # Deliveries by other processes since this one last looked.
                mailbox.refresh()
                lock = mailbox.lock_maildrop()
            except MaildropLockedError:
                login.logout()
                self.core.login_refused("[IN-USE] maildrop already locked by another session")
            except MailboxError as exc:
                login.logout()
                log.error("POP3 maildrop of %r unavailable", credentials.username, exc_info=exc)
                self.core.login_refused("[SYS/TEMP] maildrop cannot be opened")
            else:
                self._mailbox = mailbox
                self._lock = lock
                self._logout = login.logout
                self.core.login_accepted(
                    credentials.username, mailbox.messages(), uidvalidity=mailbox.uidvalidity
                )
            self._pump()

        def refused(exc: BaseException) -> None:
            self._waiting = None
            if self._gone:
                return
            if isinstance(exc, UnauthorizedLogin | UnhandledCredentials):
                self.core.login_refused()
            else:
                log.error("POP3 login failed in the realm", exc_info=exc)
                self.core.login_refused("[SYS/TEMP] authentication unavailable")
            self._pump()

        d = self.factory.portal.login(credentials, None, MailStore, client=self.peer)
        self._waiting = d
        d.add_callbacks(logged_in, refused)

    def _retrieve(self, event: RetrieveRequested) -> None:
        mailbox = self._mailbox
        assert mailbox is not None  # RETR and TOP come after a login
        d = ensure_deferred(self._send_message(mailbox, event))
        self._waiting = d

        def sent(_: object) -> None:
            self._waiting = None
            if not self._gone:
                self._pump()

        def failed(exc: BaseException) -> None:
            self._waiting = None
            if self._gone or isinstance(exc, asyncio.CancelledError | ConnectionError):
                return
            log.error("POP3 message could not be sent", exc_info=exc)
            self.transport.close()

        d.add_callbacks(sent, failed)

    async def _send_message(self, mailbox: Mailbox, event: RetrieveRequested) -> None:
        chunks = mailbox.read_stream(event.uid)
        try:
            try:
                chunk = await anext(chunks, b"")
            except MailboxError:
                # Gone (expunged by an IMAP session) or unreadable: an answer
                # is still possible, since nothing of the message went out.
                self.core.message_failed("[SYS/TEMP] message cannot be read now")
                return
            if self._gone or self.core.closing:
                return
            self.core.message_found()
            self.transport.write(self.core.data_to_send())
            writer = MessageWriter(event.body_lines)
            while True:
                out = writer.feed(chunk)
                if out:
                    self.transport.write(out)
                if writer.done:
                    break
                # Backpressure: the next slice is read once the client took
                # the last; a failure from here on can only close.
                await self.drained()
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
            self.transport.write(writer.finish())
            self.core.message_sent()
        finally:
            await chunks.aclose()

    def _update(self, event: UpdateRequested) -> None:
        mailbox = self._mailbox
        assert mailbox is not None  # UPDATE comes after a login
        ok = True
        if event.uids:
            try:
                # The mailbox interface's way of POP3's removal (see _mailbox).
                mailbox.set_flags(event.uids, [DELETED], FlagMode.ADD)
                mailbox.expunge(event.uids)
            except MailboxError as exc:
                log.error("POP3 deletions failed", exc_info=exc)
                ok = False
        self._end_session()
        self.core.update_done(ok)

    def _start_tls(self) -> None:
        context = self.factory.tls_context
        assert context is not None  # STLS is offered only with a context
        d = ensure_deferred(self._upgrade(context))
        self._waiting = d

        def failed(exc: BaseException) -> None:
            self._waiting = None
            if not isinstance(exc, asyncio.CancelledError):  # cancelled: the connection is gone
                log.error("POP3 STLS could not go on", exc_info=exc)

        d.add_errback(failed)

    async def _upgrade(self, context: ssl.SSLContext) -> None:
        started = await self._server_handshake(context, log, "POP3 STLS")
        self._waiting = None
        if started and not self._gone:
            self.core.tls_started()
            self._pump()

    # -- the idle timer ------------------------------------------------------------------

    def _timed_out(self) -> None:
        self.core.timed_out()
        self._pump()
