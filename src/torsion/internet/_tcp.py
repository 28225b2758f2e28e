"""Minimal TCP: listen on a port, connect to one, over asyncio's transports.

``listen_tcp`` binds its socket at once, in the caller's thread, so that the
port (the real one, for port 0) is known and a port already taken fails
right there with ``CannotListenError``; asyncio then serves on that socket.
Each accepted connection gets its protocol from the factory, called with the
peer's address; the protocol then receives asyncio's events directly, with no
torsion code in between.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from torsion.defer import Deferred
from torsion.errors import CannotListenError
from torsion.internet._address import Address, IPv4Address, IPv6Address, to_address
from torsion.internet._protocol import Factory, ProtocolFactory
from torsion.internet._resolve import is_ip_address

__all__ = ["Listener", "ListeningPort", "ReactorTCP", "connect_tcp", "listen_tcp"]

P = TypeVar("P", bound=asyncio.BaseProtocol)

_log = logging.getLogger("torsion.internet")


class ListeningPort(Protocol):
    """A port that accepts connections until told to stop."""

    @property
    def host(self) -> str:
        """The address the port is bound to ("0.0.0.0" for every interface)."""
        ...

    @property
    def port(self) -> int:
        """The port number (the one the system chose, if 0 was asked for)."""
        ...

    def stop_listening(self) -> Deferred[None]:
        """Stop accepting; the Deferred fires once the port is closed."""
        ...


class ReactorTCP(Protocol):
    """What listens for and makes TCP connections."""

    def listen_tcp(
        self, port: int, factory: ProtocolFactory, *, interface: str = "", backlog: int = 100
    ) -> ListeningPort:
        """Listen on ``port``; each connection gets ``factory(peer_address)``."""
        ...

    def connect_tcp(
        self,
        host: str,
        port: int,
        factory: Callable[[Address], P],
        *,
        timeout: float | None = 30.0,
    ) -> Deferred[P]:
        """Connect to ``host:port``; the Deferred fires with the connected protocol."""
        ...


class Listener:
    """A listening TCP port, as ``listen_tcp`` returns it.

    Attributes:
        interface: The interface asked for ("" means every one).
        host: The address bound to.
        port: The port bound to.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        factory: ProtocolFactory,
        *,
        interface: str,
        backlog: int,
        on_stopped: Callable[[Listener], object] | None = None,
    ) -> None:
        address = sock.getsockname()
        self.interface = interface
        self.host: str = address[0]
        self.port: int = address[1]
        self._loop = loop
        self._sock = sock
        self._factory = factory
        self._on_stopped = on_stopped
        self._server: asyncio.AbstractServer | None = None
        self._waiters: list[Deferred[None]] = []
        self._stop_task: asyncio.Task[None] | None = None
        self._stopped = False
        if isinstance(factory, Factory):
            factory.start()
        # create_server is a coroutine; the socket already listens meanwhile,
        # so connections arriving before it runs wait in the backlog.
        self._start_task = loop.create_task(self._serve(backlog))

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

    async def _serve(self, backlog: int) -> None:
        try:
            self._server = await self._loop.create_server(
                self._accept, sock=self._sock, backlog=backlog
            )
        except Exception:
            _log.exception("Cannot serve on %s:%d", self.host, self.port)
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
        return f"<Listener {state} on {self.host}:{self.port}>"


class _Acceptor(asyncio.Protocol):
    """Stands in for the protocol until the factory has made it from the peer address."""

    __slots__ = ("_factory",)

    def __init__(self, factory: ProtocolFactory) -> None:
        self._factory = factory

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = to_address(transport.get_extra_info("peername"))
        try:
            protocol = self._factory(peer)
        except Exception:
            _log.exception("Protocol factory %r failed for %r", self._factory, peer)
            _abort(transport)
            return
        if protocol is None:
            transport.close()
            return
        # From here on the transport talks to the protocol with nothing between.
        transport.set_protocol(protocol)
        protocol.connection_made(transport)


class _Refuse(asyncio.Protocol):
    """Closes a client connection whose factory failed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        _abort(transport)


def _abort(transport: asyncio.BaseTransport) -> None:
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()
    else:
        transport.close()


def listen_tcp(
    loop: asyncio.AbstractEventLoop,
    port: int,
    factory: ProtocolFactory,
    *,
    interface: str = "",
    backlog: int = 100,
    on_stopped: Callable[[Listener], object] | None = None,
) -> Listener:
    """Bind and listen on ``interface:port`` now, and serve it on ``loop``.

    Args:
        loop: The loop that serves the connections.
        port: The port; 0 lets the system choose (see ``Listener.port``).
        factory: Called with each peer's address; returns its protocol, or
            None to refuse the connection.
        interface: The address to bind to: "" for every IPv4 interface, an
            IP address, or a name (resolved at once, blocking).
        backlog: How many connections may wait to be accepted.
        on_stopped: Called with the Listener once it has stopped.

    Raises:
        CannotListenError: The address could not be bound (taken, not ours,
            not resolvable).
    """
    sock = _bind(interface, port, backlog)
    return Listener(
        loop, sock, factory, interface=interface, backlog=backlog, on_stopped=on_stopped
    )


def _bind(interface: str, port: int, backlog: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(
            interface or "0.0.0.0",  # "" asks for every interface.
            port,
            socket.AF_UNSPEC,
            socket.SOCK_STREAM,
            0,
            socket.AI_PASSIVE,
        )
        family, kind, proto, _, sockaddr = infos[0]
    except (OSError, IndexError) as exc:
        reason = exc if isinstance(exc, OSError) else OSError(str(exc))
        raise CannotListenError(interface, port, reason) from exc
    sock = socket.socket(family, kind, proto)
    try:
        if os.name == "posix":
            # As asyncio does: rebinding a port whose old connections linger is fine.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise CannotListenError(interface, port, exc) from exc
    return sock


def connect_tcp(
    loop: asyncio.AbstractEventLoop,
    resolve_all: Callable[[str], Awaitable[list[str]]],
    host: str,
    port: int,
    factory: Callable[[Address], P],
    *,
    timeout: float | None = 30.0,
) -> Deferred[P]:
    """Connect to ``host:port``, trying each of its addresses in turn.

    Args:
        loop: The loop that runs the connection.
        resolve_all: Turns a host name into addresses (the reactor's resolver).
        host: A name or an IP address.
        port: The port.
        factory: Called with the server's address (an ``IPv4Address`` or
            ``IPv6Address``) once connected; returns the protocol.
        timeout: Seconds for the whole attempt (lookup included); None waits
            as long as the system does.

    Returns:
        A Deferred that fires with the protocol once ``connection_made`` was
        called, or fails with ``TimeoutError``, the ``OSError`` of the last
        address tried (``ConnectionRefusedError``, ...), ``DNSLookupError``
        or what the factory raised. Cancelling it stops the attempt.
    """
    task = loop.create_task(_connect(loop, resolve_all, host, port, factory, limit=timeout))
    return Deferred.from_future(task)


async def _connect(
    loop: asyncio.AbstractEventLoop,
    resolve_all: Callable[[str], Awaitable[list[str]]],
    host: str,
    port: int,
    factory: Callable[[Address], P],
    *,
    limit: float | None,
) -> P:
    async with asyncio.timeout(limit):
        addresses = [host] if is_ip_address(host) else await resolve_all(host)
        error: OSError | None = None
        for address in addresses:
            try:
                return await _connect_to(loop, address, port, factory)
            except OSError as exc:
                error = exc
        if error is None:
            raise OSError(f"no address to connect to for {host!r}")
        raise error


async def _connect_to(
    loop: asyncio.AbstractEventLoop, address: str, port: int, factory: Callable[[Address], P]
) -> P:
    built: list[P] = []
    failure: list[Exception] = []

    peer: Address = IPv6Address(address, port) if ":" in address else IPv4Address(address, port)

    def build() -> asyncio.BaseProtocol:
        try:
            protocol = factory(peer)
        except Exception as exc:
            failure.append(exc)
            return _Refuse()
        built.append(protocol)
        return protocol

    await loop.create_connection(build, address, port)
    if failure:
        raise failure[0]
    return built[0]
