"""Serving a bound stream socket: what TCP, TLS and Unix listeners share.

The caller binds and listens on the socket itself, synchronously, so that
errors (a port taken, a path not writable) surface where the call was made
and the real address is known at once; ``Listener`` then has asyncio serve
that socket. Each accepted connection gets its protocol from the factory,
called with the peer's address; from then on the transport talks to the
protocol directly, with no torsion code in between.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Protocol

from torsion.defer import Deferred
from torsion.internet._address import Address, IPv4Address, IPv6Address, to_address
from torsion.internet._protocol import Factory, ProtocolFactory

__all__ = ["Listener", "ListeningPort", "abort_transport"]

_log = logging.getLogger("torsion.internet")


class ListeningPort(Protocol):
    """A port that accepts connections until told to stop."""

    @property
    def address(self) -> Address:
        """The address the port is bound to."""
        ...

    def stop_listening(self) -> Deferred[None]:
        """Stop accepting; the Deferred fires once the port is closed."""
        ...


class Listener:
    """A listening stream socket (TCP, TLS or Unix), as the ``listen_*`` calls return it.

    Args:
        loop: The loop that serves the connections.
        sock: A socket already bound and listening.
        factory: Called with each peer's address; returns its protocol, or
            None to refuse the connection.
        backlog: The backlog the socket listens with.
        ssl_context: Serve TLS with these settings (None: plain text).
        handshake_timeout: Seconds a TLS handshake may take (asyncio's
            default, 60, if None).
        on_stopped: Called with the Listener once it has stopped.
        cleanup: Called once the socket is closed, before ``stop_listening``
            fires (a Unix listener removes its socket file here).

    Attributes:
        address: The address bound to (an ``IPv4Address``, ``IPv6Address``
            or ``UNIXAddress``).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        factory: ProtocolFactory,
        *,
        backlog: int = 100,
        ssl_context: ssl.SSLContext | None = None,
        handshake_timeout: float | None = None,
        on_stopped: Callable[[Listener], object] | None = None,
        cleanup: Callable[[], object] | None = None,
    ) -> None:
        name = sock.getsockname()
        self.address: Address = (
            to_address(name, "unix") if sock.family == socket.AF_UNIX else to_address(name)
        )
        self._loop = loop
        self._sock = sock
        self._factory = factory
        self._on_stopped = on_stopped
        self._cleanup = cleanup
        self._server: asyncio.AbstractServer | None = None
        self._waiters: list[Deferred[None]] = []
        self._stop_task: asyncio.Task[None] | None = None
        self._stopped = False
        if isinstance(factory, Factory):
            factory.start()
        # create_server is a coroutine; the socket already listens meanwhile,
        # so connections arriving before it runs wait in the backlog.
        self._start_task = loop.create_task(self._serve(backlog, ssl_context, handshake_timeout))

    @property
    def host(self) -> str:
        """The IP address bound to ("0.0.0.0" for every IPv4 interface).

        Raises:
            TypeError: This is a Unix socket (see ``address``).
        """
        return self._ip_address().host

    @property
    def port(self) -> int:
        """The port bound to (the one the system chose, if 0 was asked for).

        Raises:
            TypeError: This is a Unix socket (see ``address``).
        """
        return self._ip_address().port

    def _ip_address(self) -> IPv4Address | IPv6Address:
        if isinstance(self.address, IPv4Address | IPv6Address):
            return self.address
        raise TypeError(f"{self!r} is not an IP port")

    @property
    def listening(self) -> bool:
        """Whether the port is open (``stop_listening`` was not called)."""
        return self._stop_task is None

    def stop_listening(self) -> Deferred[None]:
        """Close the port; connections already accepted stay up.

        Returns:
            A Deferred that fires with None once the port is closed. Calling
            again returns another Deferred for the same moment.
        """
        d: Deferred[None] = Deferred()
        if self._stopped:
            d.callback(None)
            return d
        self._waiters.append(d)
        if self._stop_task is None:
            self._stop_task = self._loop.create_task(self._stop())
            self._stop_task.add_done_callback(self._finished_stopping)
        return d

    def close_now(self) -> None:
        """Close the port from outside the event loop, running it if needed.

        For cleaning up when the loop is about to be closed: if it is not
        running, it is run until the port is closed.
        """
        loop = self._loop
        if self._stopped or loop.is_closed():
            return
        self.stop_listening()
        if not loop.is_running() and self._stop_task is not None:
            loop.run_until_complete(asyncio.wait([self._stop_task]))

    async def _serve(
        self, backlog: int, ssl_context: ssl.SSLContext | None, handshake_timeout: float | None
    ) -> None:
        try:
            self._server = await self._loop.create_server(
                self._accept,
                sock=self._sock,
                backlog=backlog,
                ssl=ssl_context,
                ssl_handshake_timeout=handshake_timeout if ssl_context is not None else None,
            )
        except Exception:
            _log.exception("Cannot serve on %s", self.address)
            self._sock.close()

    def _accept(self) -> asyncio.BaseProtocol:
        return _Acceptor(self._factory)

    async def _stop(self) -> None:
        await asyncio.wait([self._start_task])
        server = self._server
        if server is None:
            self._sock.close()
            return
        server.close()
        # uvloop closes its handles on the next turn of the loop.
        await asyncio.sleep(0)

    def _finished_stopping(self, task: asyncio.Task[None]) -> None:
        self._stopped = True
        if self._cleanup is not None:
            try:
                self._cleanup()
            except Exception:
                _log.exception("Cleaning up after %r failed", self)
        if isinstance(self._factory, Factory):
            self._factory.stop()
        waiters, self._waiters = self._waiters, []
        exc = None if task.cancelled() else task.exception()
        for d in waiters:
            if exc is None:
                d.callback(None)
            else:
                d.errback(exc)
        if self._on_stopped is not None:
            self._on_stopped(self)

    def __repr__(self) -> str:
        state = "listening" if self.listening else "stopped"
        return f"<Listener {state} on {self.address}>"


class _Acceptor(asyncio.Protocol):
    """Stands in for the protocol until the factory has made it from the peer address."""

    __slots__ = ("_factory",)

    def __init__(self, factory: ProtocolFactory) -> None:
        self._factory = factory

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peername = transport.get_extra_info("peername")
        if peername is None and _is_ip_socket(transport):
            # uvloop asks for the peer's address only now: a client that
            # reset before this has none, and would pass for an unnamed Unix
            # peer. It is gone; nothing is left to serve.
            transport.close()
            return
        peer = to_address(peername)
        try:
            protocol = self._factory(peer)
        except Exception:
            _log.exception("Protocol factory %r failed for %r", self._factory, peer)
            abort_transport(transport)
            return
        if protocol is None:
            transport.close()
            return
        # From here on the transport talks to the protocol with nothing between.
        transport.set_protocol(protocol)
        protocol.connection_made(transport)


def _is_ip_socket(transport: asyncio.BaseTransport) -> bool:
    sock = transport.get_extra_info("socket")
    return sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6)


def abort_transport(transport: asyncio.BaseTransport) -> None:
    """Drop a connection at once (``abort()`` where the transport has it)."""
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()
    else:
        transport.close()
