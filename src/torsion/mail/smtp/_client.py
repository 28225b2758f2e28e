"""The SMTP client: ``send_message`` and the protocol that carries it out.

The protocol is thin glue around ``ClientSession`` (the sans-IO core): it
writes what the core says, upgrades the connection when the core asks for
STARTTLS, and arms one timer for the reply the core waits for (RFC 5321
section 4.5.3.2's timeouts, which the core gives).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Sequence
from typing import Protocol as TypingProtocol

from torsion.defer import Deferred
from torsion.internet import (
    Address,
    ClientEndpoint,
    Clock,
    DelayedCall,
    HostnameEndpoint,
    Protocol,
    ReactorTCP,
    client_context,
)
from torsion.mail.smtp._client_core import (
    TIMEOUT_DATA_BLOCK,
    ClientSession,
    ClientStartTLS,
    ClientWrite,
    SendResult,
    STARTTLSError,
    TLSMode,
)

__all__ = ["SMTPClientProtocol", "SMTPReactor", "send_message"]


class SMTPReactor(Clock, ReactorTCP, TypingProtocol):
    """What the SMTP client needs from a reactor: time, names, TCP."""

    def resolve_all(self, host: str) -> Awaitable[list[str]]:
        """Every address of ``host``, best first."""
        ...


class SMTPClientProtocol(Protocol):
    """Sends one message over one connection, then says QUIT.

    Args:
        session: The core that decides what to send.
        clock: Runs the reply timer (the reactor).
        tls_context: The TLS settings for STARTTLS.
        server_hostname: The name the server's certificate must bear.

    Attributes:
        finished: Fires with the ``SendResult`` once the server has answered
            the message (before QUIT's reply), or fails with
            ``SMTPClientError`` when the session failed.
        closed: Fires with None once the connection is closed.
    """

    def __init__(
        self,
        session: ClientSession,
        clock: SMTPReactor,
        *,
        tls_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        self.session = session
        self.finished: Deferred[SendResult] = Deferred()
        self.closed: Deferred[None] = Deferred()
        self._clock = clock
        self._tls_context = tls_context
        self._server_hostname = server_hostname
        self._timer: DelayedCall | None = None
        self._upgrading = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Wait for the greeting."""
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        """Feed the server's replies to the core and do what it says."""
        self._run(self.session.receive_data(data))

    def connection_lost(self, exc: Exception | None) -> None:
        """End the session; fail ``finished`` if its outcome was not known."""
        super().connection_lost(exc)
        self._disarm()
        if not self._upgrading:
            # A failed handshake is reported by its own errback, with its reason.
            self.session.connection_lost()
            self._report()
        self.closed.callback(None)

    def pause_writing(self) -> None:
        """The message is still being sent: RFC 5321's data block timeout applies."""
        super().pause_writing()
        if self._timer is not None:
            self._arm(TIMEOUT_DATA_BLOCK)

    def resume_writing(self) -> None:
        """Sent: the timeout is the reply's again, counted from now."""
        super().resume_writing()
        if self._timer is not None:
            self._arm()

    def _run(self, events: Sequence[ClientWrite | ClientStartTLS]) -> None:
        for event in events:
            if isinstance(event, ClientWrite):
                self.transport.write(event.data)
            else:
                self._start_tls()
        self._report()
        if self.session.done:
            self._disarm()
            self.transport.close()
        else:
            self._arm()

    def _start_tls(self) -> None:
        context = self._tls_context or client_context()
        self._disarm()
        self._upgrading = True
        upgrade = self.start_tls(context, server_hostname=self._server_hostname)

        def done(_: None) -> None:
            self._upgrading = False
            self._run(self.session.tls_started())

        def failed(exc: BaseException) -> None:
            self._upgrading = False
            reason = str(exc) or type(exc).__name__
            self.session.fail(STARTTLSError(f"STARTTLS handshake failed: {reason}"))
            self._report()

        upgrade.add_callbacks(done, failed)

    def _report(self) -> None:
        if self.finished.called:
            return
        if self.session.result is not None:
            self.finished.callback(self.session.result)
        elif self.session.error is not None:
            self.finished.errback(self.session.error)

    def _arm(self, timeout: float | None = None) -> None:
        # RFC 5321 section 4.5.3.2.5: each piece of the message may take 3
        # minutes to be sent; the 10 for DATA's reply count from its end.
        self._disarm()
        seconds = self.session.timeout if timeout is None else timeout
        self._timer = self._clock.call_later(seconds, self._timed_out)

    def _disarm(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        self.session.timed_out()
        self._report()
        self.transport.abort()


async def send_message(
    reactor: SMTPReactor,
    endpoint_or_host: ClientEndpoint | str,
    sender: str,
    recipients: Sequence[str],
    message: bytes,
    *,
    port: int = 25,
    helo: str | None = None,
    tls: TLSMode | str = TLSMode.OPPORTUNISTIC,
    tls_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    auth: tuple[str, str] | None = None,
    allow_plaintext_auth: bool = False,
    tls_active: bool = False,
) -> SendResult:
    """Send one message over SMTP and say what became of each recipient.

    Args:
        reactor: Gives time and connections.
        endpoint_or_host: Where the server is: a host name or address
            (connected to on ``port``), or any client endpoint.
        sender: The envelope sender (``MAIL FROM``); "" for ``<>``.
        recipients: The envelope recipients (``RCPT TO``).
        message: The message (headers and body); line ends are made CRLF
            and leading dots doubled on the wire.
        port: The port, when ``endpoint_or_host`` is a name.
        helo: The name to give in EHLO (this host's name by default).
        tls: "required" (fail unless STARTTLS works), "opportunistic"
            (STARTTLS when the server offers it) or "none".
        tls_context: The TLS settings; by default the system's trusted CAs,
            the certificate verified against the server's name.
        server_hostname: The name the certificate must bear (the host
            given, or the endpoint's ``host``, by default).
        auth: ``(user, password)`` to log in with: CRAM-MD5, PLAIN or LOGIN,
            whichever the server offers, in that order of preference.
        allow_plaintext_auth: Let PLAIN and LOGIN send the password over a
            connection that is not encrypted.
        tls_active: The endpoint is a TLS one already (no STARTTLS then).

    Returns:
        One outcome per recipient: accepted, failed for now, or refused.

    Raises:
        SMTPClientError: The session failed as a whole (refused greeting,
            TLS required but unavailable, authentication refused, timeout,
            connection closed, protocol error). Its ``permanent`` says
            whether a 5xx reply ended it.
        ValueError: An argument cannot be sent.
        OSError: The connection could not be made.
    """
    session = ClientSession(
        helo=helo or socket.getfqdn(),
        sender=sender,
        recipients=recipients,
        message=message,
        tls=TLSMode(tls),
        tls_active=tls_active,
        auth=auth,
        allow_plaintext_auth=allow_plaintext_auth,
    )
    if isinstance(endpoint_or_host, str):
        server_hostname = server_hostname or endpoint_or_host
        endpoint: ClientEndpoint = HostnameEndpoint(reactor, endpoint_or_host, port)
    else:
        endpoint = endpoint_or_host
        if server_hostname is None:
            host = getattr(endpoint, "host", None)
            server_hostname = host if isinstance(host, str) else None

    def factory(_: Address) -> SMTPClientProtocol:
        return SMTPClientProtocol(
            session, reactor, tls_context=tls_context, server_hostname=server_hostname
        )

    protocol = await endpoint.connect(factory)
    try:
        result = await protocol.finished
    except BaseException:
        protocol.transport.abort()
        raise
    finally:
        # Return once the connection is closed: nothing is left running.
        await protocol.closed
    return result
