"""The connection glue the POP3 and IMAP clients share.

Both clients are thin protocols around a sans-IO core: they feed it the
server's bytes, settle the commands its events answer, run one reply timer
(armed while the greeting or a reply is awaited), fail whatever waits when
the server breaks the protocol, goes quiet or hangs up, upgrade in place
with STARTTLS/STLS, and are made by connecting and waiting for the
greeting. ``MailClientProtocol`` holds that; each client says how it reads
its events and what it has waiting.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Generic, TypeVar
from typing import Protocol as TypingProtocol

from torsion.defer import Deferred, fail
from torsion.internet import Address, Clock, DelayedCall, ReactorTCP, ReactorTLS, client_context
from torsion.internet import Protocol as BaseProtocol

__all__ = ["MailClientProtocol", "MailClientReactor", "connect_client"]

GreetingT = TypeVar("GreetingT")
EventT = TypeVar("EventT")
ClientT = TypeVar("ClientT", bound="MailClientProtocol[Any, Any]")


class MailClientReactor(Clock, ReactorTCP, ReactorTLS, TypingProtocol):
    """What a mail client needs from a reactor: time, TCP and TLS connections."""


class MailClientProtocol(BaseProtocol, Generic[GreetingT, EventT]):
    """A client connection around a sans-IO core, with its reply timer.

    Subclasses set ``protocol_name`` and ``protocol_error`` and fill in
    ``_receive``, ``_event``, ``_awaiting_reply`` and ``_fail_pending``.

    Args:
        clock: Runs the reply timer (the reactor).
        timeout: Seconds to wait for the greeting and for each reply.

    Attributes:
        greeted: Fires with the greeting once the server greeted.
        closed: Fires once the connection is closed.
    """

    #: The protocol's name, as error messages say it.
    protocol_name: ClassVar[str] = "mail"
    #: What the core raises for bytes that are not the protocol.
    protocol_error: ClassVar[type[Exception]] = Exception

    def __init__(self, clock: Clock, *, timeout: float = 60.0) -> None:
        self.clock = clock
        self.timeout = timeout
        self.greeted: Deferred[GreetingT] = Deferred()
        self.closed: Deferred[None] = Deferred()
        self._timer: DelayedCall | None = None
        self._gone = False

    # -- what each client says ---------------------------------------------------------

    def _receive(self, data: bytes) -> Iterable[EventT]:
        """Hand ``data`` to the core; return its events (may raise ``protocol_error``)."""
        raise NotImplementedError

    def _event(self, event: EventT) -> None:
        """Act on one of the core's events."""
        raise NotImplementedError

    def _awaiting_reply(self) -> bool:
        """Return whether a command waits for a reply under the timer."""
        raise NotImplementedError

    def _fail_pending(self, exc: Exception) -> None:
        """Fail every command still waiting with ``exc``."""
        raise NotImplementedError

    def _events_done(self) -> None:
        """Called after the events of one ``data_received`` (write what they queued)."""

    def _lost_error(self) -> Exception:
        """Return what the commands waiting when the connection is lost fail with."""
        return self._closed_error()

    def _after_lost(self) -> None:
        """Called once the connection is lost, after the waiting commands failed."""

    # -- connection events -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Wait for the greeting."""
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        """Hand the bytes to the core and settle the commands they answer."""
        try:
            events = self._receive(data)
        except self.protocol_error as exc:
            self._fail_all(exc)
            self.transport.close()
            return
        for event in events:
            self._event(event)
        self._events_done()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail every command still waiting."""
        self._gone = True
        self._stop_timer()
        self._fail_all(self._lost_error())
        self._after_lost()
        super().connection_lost(exc)
        self.closed.callback(None)

    def _fail_all(self, exc: Exception) -> None:
        if not self.greeted.called:
            self.greeted.errback(exc)
        self._fail_pending(exc)

    def _closed_error(self) -> ConnectionResetError:
        return ConnectionResetError(f"{self.protocol_name} connection closed")

    def _failed_send(self) -> Deferred[Any]:
        """Return the Deferred of a command given after the connection was lost."""
        return fail(self._closed_error())

    # -- timer -----------------------------------------------------------------------------

    def _stop_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _arm(self) -> None:
        """Restart the reply timer if the greeting or a reply is awaited."""
        self._stop_timer()
        if not self._gone and (self._awaiting_reply() or not self.greeted.called):
            self._timer = self.clock.call_later(self.timeout, self._timed_out)

    def _timed_out(self) -> None:
        self._timer = None
        self._fail_all(TimeoutError(f"no {self.protocol_name} reply in {self.timeout} s"))
        self.transport.close()

    # -- TLS -------------------------------------------------------------------------------

    async def _upgrade(self, context: ssl.SSLContext | None, server_hostname: str | None) -> None:
        """Start TLS on this connection once the server agreed to STARTTLS or STLS."""
        await self.start_tls(
            context if context is not None else client_context(),
            server_hostname=server_hostname,
        )


async def connect_client(
    reactor: MailClientReactor,
    host: str,
    port: int,
    build: Callable[[], ClientT],
    *,
    tls: ssl.SSLContext | None,
    server_hostname: str | None,
    connect_timeout: float,
) -> ClientT:
    """Connect (in clear, or with implicit TLS) and wait for the server's greeting.

    Args:
        reactor: Makes the connection.
        host: The server's name or address.
        port: Its port.
        build: Makes the client protocol.
        tls: Implicit TLS with these settings, or None for a clear connection.
        server_hostname: The name the certificate must carry (``host`` if None).
        connect_timeout: Seconds the connection may take.

    Returns:
        The client, greeted.
    """

    def factory(address: Address) -> ClientT:
        return build()

    if tls is None:
        client = await reactor.connect_tcp(host, port, factory, timeout=connect_timeout)
    else:
        client = await reactor.connect_tls(
            host,
            port,
            factory,
            context=tls,
            server_hostname=server_hostname,
            timeout=connect_timeout,
        )
    await client.greeted
    return client
