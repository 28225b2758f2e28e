"""TCP over 127.0.0.1: an echo server and client, listening errors, refusals."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from typing import Any

import pytest

from torsion.defer import CancelledError, Deferred
from torsion.errors import CannotListenError
from torsion.internet import Address, IPv4Address, Protocol, Reactor
from torsion.internet._listener import _Acceptor
from torsion.testing import StringTransport

Wait = Callable[..., Any]
Run = Callable[..., None]


class Echo(Protocol):
    """Sends back what it receives."""

    def __init__(self, address: Address) -> None:
        self.address = address
        self.lost: Deferred[Exception | None] = Deferred()

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.callback(exc)


class Client(Protocol):
    """Sends a message and collects the reply."""

    def __init__(self, address: Address, message: bytes = b"hello, torsion") -> None:
        self.address = address
        self.message = message
        self.received = b""
        self.replied: Deferred[bytes] = Deferred()
        self.lost: Deferred[Exception | None] = Deferred()
        self.made = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.made += 1
        self.transport.write(self.message)

    def data_received(self, data: bytes) -> None:
        self.received += data
        if len(self.received) >= len(self.message) and not self.replied.called:
            self.replied.callback(self.received)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.callback(exc)


class NeverResolves:
    """A resolver that never answers; records cancellations."""

    def __init__(self) -> None:
        self.cancelled: list[str] = []

    def resolve(self, host: str) -> Deferred[str]:
        return Deferred()

    def resolve_all(self, host: str) -> Deferred[list[str]]:
        return Deferred(lambda _: self.cancelled.append(host))


def test_echo(real_reactor: Reactor, wait: Wait) -> None:
    r = real_reactor
    servers: list[Echo] = []

    def factory(peer: Address) -> Echo:
        servers.append(Echo(peer))
        return servers[-1]

    listener = r.listen_tcp(0, factory, interface="127.0.0.1")
    assert listener.port > 0
    assert listener.host == "127.0.0.1"
    assert listener.listening
    client = wait(r, r.connect_tcp("127.0.0.1", listener.port, Client))
    assert isinstance(client, Client)
    assert client.made == 1
    # The client's factory got the server's address, typed.
    assert client.address == IPv4Address("127.0.0.1", listener.port)
    assert client.peer == client.address
    assert wait(r, client.replied) == b"hello, torsion"
    # The server's factory got the client's address; each end's host and peer match.
    (server,) = servers
    assert server.address == client.host
    assert server.peer == client.host
    assert server.host == client.peer
    client.transport.close()
    assert wait(r, client.lost) is None
    assert wait(r, server.lost) is None
    assert wait(r, listener.stop_listening()) is None
    assert not listener.listening
    assert wait(r, listener.stop_listening()) is None  # again: fine
    assert "stopped" in repr(listener)


def test_many_clients_and_large_data(real_reactor: Reactor, wait: Wait) -> None:
    r = real_reactor
    listener = r.listen_tcp(0, Echo, interface="127.0.0.1")
    big = bytes(range(256)) * 4096  # 1 MiB: flow control gets involved
    clients = [
        wait(r, r.connect_tcp("127.0.0.1", listener.port, lambda peer: Client(peer, big)))
        for _ in range(3)
    ]
    for client in clients:
        assert wait(r, client.replied) == big
        client.transport.close()
        wait(r, client.lost)
    wait(r, listener.stop_listening())


def test_connect_by_name_goes_through_the_resolver(real_reactor: Reactor, wait: Wait) -> None:
    r = real_reactor
    asked: list[str] = []

    class Table:
        async def resolve(self, host: str) -> str:
            return (await self.resolve_all(host))[0]

        async def resolve_all(self, host: str) -> list[str]:
            asked.append(host)
            return ["127.0.0.1"]

    r.install_resolver(Table())
    listener = r.listen_tcp(0, Echo, interface="127.0.0.1")
    client = wait(r, r.connect_tcp("echo.test", listener.port, Client))
    assert asked == ["echo.test"]
    assert wait(r, client.replied) == b"hello, torsion"
    client.transport.close()
    wait(r, client.lost)
    wait(r, listener.stop_listening())


def test_connect_to_localhost(real_reactor: Reactor, wait: Wait) -> None:
    r = real_reactor
    listener = r.listen_tcp(0, Echo, interface="127.0.0.1")
    # localhost may resolve to ::1 first: the other addresses are tried in turn.
    client = wait(r, r.connect_tcp("localhost", listener.port, Client))
    assert wait(r, client.replied) == b"hello, torsion"
    client.transport.close()
    wait(r, client.lost)
    wait(r, listener.stop_listening())


def test_port_taken_raises_cannot_listen(real_reactor: Reactor, wait: Wait) -> None:
    r = real_reactor
    first = r.listen_tcp(0, Echo, interface="127.0.0.1")
    with pytest.raises(CannotListenError) as info:
        r.listen_tcp(first.port, Echo, interface="127.0.0.1")
    assert info.value.port == first.port
    assert info.value.interface == "127.0.0.1"
    assert isinstance(info.value.reason, OSError)
    assert isinstance(info.value, OSError)
    wait(r, first.stop_listening())
    # Once stopped, the port is free again.
    again = r.listen_tcp(first.port, Echo, interface="127.0.0.1")
    wait(r, again.stop_listening())


def test_unknown_interface_raises_cannot_listen(real_reactor: Reactor) -> None:
    with pytest.raises(CannotListenError):
        real_reactor.listen_tcp(0, Echo, interface="192.0.2.123")  # not ours


def test_listen_on_every_interface(real_reactor: Reactor, wait: Wait) -> None:
    r = real_reactor
    listener = r.listen_tcp(0, Echo)
    assert listener.host == "0.0.0.0"
    client = wait(r, r.connect_tcp("127.0.0.1", listener.port, Client))
    assert wait(r, client.replied) == b"hello, torsion"
    client.transport.close()
    wait(r, client.lost)
    wait(r, listener.stop_listening())


def test_connection_refused(real_reactor: Reactor, wait: Wait) -> None:
    r = real_reactor
    listener = r.listen_tcp(0, Echo, interface="127.0.0.1")
    port = listener.port
    wait(r, listener.stop_listening())
    with pytest.raises(ConnectionRefusedError):
        wait(r, r.connect_tcp("127.0.0.1", port, Client))


def test_factory_returning_none_refuses(real_reactor: Reactor, wait: Wait) -> None:
    r = real_reactor
    peers: list[Address] = []

    def refuse(peer: Address) -> None:
        peers.append(peer)

    listener = r.listen_tcp(0, refuse, interface="127.0.0.1")
    client = wait(r, r.connect_tcp("127.0.0.1", listener.port, Client))
    wait(r, client.lost)
    assert len(peers) == 1
    assert client.received == b""
    wait(r, listener.stop_listening())


def test_server_factory_error_is_logged_and_connection_dropped(
    real_reactor: Reactor, wait: Wait, caplog: pytest.LogCaptureFixture
) -> None:
    r = real_reactor

    def broken(peer: Address) -> Protocol:
        raise RuntimeError("factory broke")

    listener = r.listen_tcp(0, broken, interface="127.0.0.1")
    client = wait(r, r.connect_tcp("127.0.0.1", listener.port, Client))
    wait(r, client.lost)
    assert "factory broke" in caplog.text
    wait(r, listener.stop_listening())


def test_client_factory_error_fails_the_connect(real_reactor: Reactor, wait: Wait) -> None:
    r = real_reactor
    servers: list[Echo] = []

    def factory(peer: Address) -> Echo:
        servers.append(Echo(peer))
        return servers[-1]

    def broken(peer: Address) -> Client:
        raise KeyError("client factory broke")

    listener = r.listen_tcp(0, factory, interface="127.0.0.1")
    with pytest.raises(KeyError):
        wait(r, r.connect_tcp("127.0.0.1", listener.port, broken))
    if servers:
        wait(r, servers[0].lost)
    wait(r, listener.stop_listening())


def test_connect_timeout(real_reactor: Reactor, wait: Wait) -> None:
    resolver = NeverResolves()
    real_reactor.install_resolver(resolver)
    with pytest.raises(TimeoutError):
        wait(real_reactor, real_reactor.connect_tcp("slow.test", 80, Client, timeout=0.05))
    assert resolver.cancelled == ["slow.test"]


def test_cancel_connect(real_reactor: Reactor, wait: Wait) -> None:
    resolver = NeverResolves()
    real_reactor.install_resolver(resolver)
    connector = real_reactor.connect_tcp("slow.test", 80, Client)
    seen: list[Any] = []
    connector.deferred.add_errback(seen.append)

    async def settle() -> None:
        for _ in range(3):
            await asyncio.sleep(0)

    real_reactor.loop.run_until_complete(settle())  # now waiting for the resolver
    assert connector.state == "connecting"
    connector.cancel()
    assert isinstance(seen[0], CancelledError)
    assert connector.state == "failed"
    real_reactor.loop.run_until_complete(settle())
    assert resolver.cancelled == ["slow.test"]


def test_cancel_connect_before_it_started(real_reactor: Reactor, wait: Wait) -> None:
    connector = real_reactor.connect_tcp("127.0.0.1", 9, Client)
    seen: list[Any] = []
    connector.deferred.add_errback(seen.append)
    connector.disconnect()  # before it connected, the same as cancel()
    assert isinstance(seen[0], CancelledError)
    real_reactor.loop.run_until_complete(asyncio.sleep(0))


def test_listen_before_run_and_serve_while_running(real_reactor: Reactor, run: Run) -> None:
    r = real_reactor
    listener = r.listen_tcp(0, Echo, interface="127.0.0.1")
    replies: list[bytes] = []

    def start() -> None:
        d = r.connect_tcp("127.0.0.1", listener.port, Client).deferred

        def connected(client: Client) -> Deferred[Any]:
            def got(data: bytes) -> Deferred[Any]:
                replies.append(data)
                client.transport.close()
                return client.lost

            return client.replied.add_callback(got)

        d.add_callback(connected)
        d.add_callback(lambda _: listener.stop_listening())
        d.add_both(lambda _: r.stop())

    r.call_when_running(start)
    run(r)
    assert replies == [b"hello, torsion"]


def test_close_releases_ports_that_never_served(loop_name: str) -> None:
    reactor = Reactor(uvloop=loop_name == "uvloop")
    listener = reactor.listen_tcp(0, Echo, interface="127.0.0.1")
    port = listener.port
    reactor.close()
    # The port is free: bind it with a plain socket.
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))


def test_connector_disconnects_the_connection_it_made(real_reactor: Reactor, wait: Wait) -> None:
    r = real_reactor
    servers: list[Echo] = []

    def factory(peer: Address) -> Echo:
        servers.append(Echo(peer))
        return servers[-1]

    listener = r.listen_tcp(0, factory, interface="127.0.0.1")
    connector = r.connect_tcp("127.0.0.1", listener.port, Client)
    assert repr(connector) == f"<Connector connecting to 127.0.0.1:{listener.port}>"
    client = wait(r, connector)
    assert connector.state == "connected"
    assert connector.transport is client.transport
    wait(r, client.replied)
    connector.disconnect()
    assert connector.state == "disconnected"
    assert wait(r, client.lost) is None
    assert wait(r, servers[0].lost) is None
    connector.disconnect()  # again: nothing more to do
    connector.cancel()  # too late to cancel: ignored
    assert connector.state == "disconnected"
    wait(r, listener.stop_listening())


# -- options: SO_REUSEPORT, a bind address, SO_KEEPALIVE, TCP_NODELAY -----------------


class Recorded:
    """A server factory that keeps the protocols it made."""

    def __init__(self) -> None:
        self.protocols: list[Echo] = []
        self.made: Deferred[Echo] = Deferred()

    def __call__(self, peer: Address) -> Echo:
        self.protocols.append(Echo(peer))
        if not self.made.called:
            self.made.callback(self.protocols[-1])
        return self.protocols[-1]


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT here")
def test_reuse_port_lets_listeners_share_a_port(real_reactor: Reactor, wait: Wait) -> None:
    r = real_reactor
    first, second = Recorded(), Recorded()
    a = r.listen_tcp(0, first, interface="127.0.0.1", reuse_port=True)
    b = r.listen_tcp(a.port, second, interface="127.0.0.1", reuse_port=True)
    assert b.port == a.port
    # Both must ask for it: a third without the option is refused.
    with pytest.raises(CannotListenError):
        r.listen_tcp(a.port, Echo, interface="127.0.0.1")
    # With the first one gone, the second serves the port on its own.
    wait(r, a.stop_listening())
    client = wait(r, r.connect_tcp("127.0.0.1", a.port, Client))
    assert wait(r, client.replied) == b"hello, torsion"
    assert first.protocols == []
    assert len(second.protocols) == 1
    client.transport.close()
    wait(r, client.lost)
    wait(r, b.stop_listening())


def test_bind_address_sets_the_source(real_reactor: Reactor, wait: Wait) -> None:
    r = real_reactor
    served = Recorded()
    listener = r.listen_tcp(0, served, interface="127.0.0.1")
    client = wait(
        r, r.connect_tcp("127.0.0.1", listener.port, Client, bind_address=("127.0.0.2", 0))
    )
    server = wait(r, served.made)
    assert isinstance(server.address, IPv4Address)
    assert server.address.host == "127.0.0.2"
    assert client.host == server.address
    client.transport.close()
    wait(r, client.lost)
    # A bind address of the other family matches none of the addresses
    # (asyncio says so; uvloop's bind fails with EINVAL).
    with pytest.raises(OSError, match=r"family|Invalid argument"):
        wait(r, r.connect_tcp("127.0.0.1", listener.port, Client, bind_address=("::1", 0)))
    # A name would need a lookup: refused at once.
    with pytest.raises(ValueError, match="needs an IP address"):
        r.connect_tcp("127.0.0.1", listener.port, Client, bind_address=("localhost", 0))
    wait(r, listener.stop_listening())


def socket_option(protocol: Protocol, level: int, option: int) -> int:
    value: int = protocol.transport.get_extra_info("socket").getsockopt(level, option)
    return value


@pytest.mark.parametrize("keepalive", [False, True])
def test_keepalive_when_asked_and_nodelay_always(
    real_reactor: Reactor, wait: Wait, keepalive: bool
) -> None:
    r = real_reactor
    served = Recorded()
    listener = r.listen_tcp(0, served, interface="127.0.0.1", keepalive=keepalive)
    client = wait(r, r.connect_tcp("127.0.0.1", listener.port, Client, keepalive=keepalive))
    server = wait(r, served.made)
    for end in (client, server):
        assert bool(socket_option(end, socket.SOL_SOCKET, socket.SO_KEEPALIVE)) is keepalive
        assert socket_option(end, socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    client.transport.close()
    wait(r, client.lost)
    wait(r, listener.stop_listening())


# -- half-close and abort ------------------------------------------------------------------


class Answerer(Protocol):
    """Reads the whole question (until EOF), then answers on its still-open side."""

    def __init__(self, address: Address) -> None:
        self.question = b""
        self.lost: Deferred[Exception | None] = Deferred()

    def data_received(self, data: bytes) -> None:
        self.question += data

    def eof_received(self) -> bool:
        self.transport.write(b"answer to " + self.question)
        self.transport.close()
        return True  # keep our side open to write the answer

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.lost.callback(exc)


class Asker(Protocol):
    """Sends a question, half-closes, and collects the answer until EOF."""

    def __init__(self, address: Address) -> None:
        self.answer = b""
        self.eof: Deferred[None] = Deferred()
        self.lost: Deferred[Exception | None] = Deferred()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport.can_write_eof()
        self.transport.write(b"the question")
        self.transport.write_eof()

    def data_received(self, data: bytes) -> None:
        self.answer += data

    def eof_received(self) -> None:
        self.eof.callback(None)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.lost.callback(exc)


def test_half_close_from_the_client(real_reactor: Reactor, wait: Wait) -> None:
    r = real_reactor
    servers: list[Answerer] = []

    def factory(peer: Address) -> Answerer:
        servers.append(Answerer(peer))
        return servers[-1]

    listener = r.listen_tcp(0, factory, interface="127.0.0.1")
    client = wait(r, r.connect_tcp("127.0.0.1", listener.port, Asker))
    wait(r, client.eof)
    assert client.answer == b"answer to the question"
    assert wait(r, client.lost) is None
    assert wait(r, servers[0].lost) is None
    wait(r, listener.stop_listening())


class Announcer(Protocol):
    """Says its piece, half-closes, and keeps listening."""

    def __init__(self, address: Address) -> None:
        self.heard = b""
        self.lost: Deferred[Exception | None] = Deferred()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.transport.write(b"announcement")
        self.transport.write_eof()

    def data_received(self, data: bytes) -> None:
        self.heard += data

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.lost.callback(exc)


def test_half_close_from_the_server(real_reactor: Reactor, wait: Wait) -> None:
    r = real_reactor
    servers: list[Announcer] = []

    def factory(peer: Address) -> Announcer:
        servers.append(Announcer(peer))
        return servers[-1]

    listener = r.listen_tcp(0, factory, interface="127.0.0.1")
    # The client answers after the server's EOF, on its side that is still open.
    client = wait(r, r.connect_tcp("127.0.0.1", listener.port, Answerer))
    assert wait(r, client.lost) is None
    assert client.question == b"announcement"
    assert wait(r, servers[0].lost) is None
    assert servers[0].heard == b"answer to announcement"
    wait(r, listener.stop_listening())


class Sink(Protocol):
    """Keeps what it reads."""

    def __init__(self, address: Address) -> None:
        self.received = 0
        self.writing_paused: Deferred[None] = Deferred()
        self.lost: Deferred[Exception | None] = Deferred()

    def data_received(self, data: bytes) -> None:
        self.received += len(data)

    def pause_writing(self) -> None:
        super().pause_writing()
        if not self.writing_paused.called:
            self.writing_paused.callback(None)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.lost.callback(exc)


def readable(loop: asyncio.AbstractEventLoop, protocol: Protocol) -> asyncio.Future[None]:
    """Fire once bytes wait unread in the connection's socket (its reading is paused).

    Watches a duplicate of the socket's descriptor: the loop refuses to watch
    one that a transport owns.
    """
    fd = os.dup(protocol.transport.get_extra_info("socket").fileno())
    ready: asyncio.Future[None] = loop.create_future()

    def done(_: object) -> None:
        loop.remove_reader(fd)
        os.close(fd)

    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    ready.add_done_callback(done)
    return ready


def test_abort_drops_unsent_data_and_the_peer_sees_a_reset(
    real_reactor: Reactor, wait: Wait
) -> None:
    r = real_reactor
    accepted: Deferred[Sink] = Deferred()

    def factory(peer: Address) -> Sink:
        server = Sink(peer)
        # Fires after connection_made: the waiter resumes on a later turn.
        accepted.callback(server)
        return server

    listener = r.listen_tcp(0, factory, interface="127.0.0.1")
    client = wait(r, r.connect_tcp("127.0.0.1", listener.port, Sink))
    server = wait(r, accepted)
    server.transport.pause_reading()
    client.transport.pause_reading()
    # Bytes left unread when a socket closes make the system reset the
    # connection (RFC 2525 section 2.17) instead of closing it in order.
    server.transport.write(b"never read")
    wait(r, readable(r.loop, client))
    # More than the system buffers while the server reads nothing.
    total = 32 * 1024 * 1024
    client.transport.write(b"x" * total)
    wait(r, client.writing_paused)
    assert client.transport.get_write_buffer_size() > 0
    client.transport.abort()
    assert wait(r, client.lost) is None
    server.transport.resume_reading()
    assert isinstance(wait(r, server.lost), ConnectionResetError)
    assert server.received < total
    wait(r, listener.stop_listening())


def test_a_client_gone_before_its_address_was_read_is_not_served() -> None:
    """uvloop reads the peer's address after accept; a client that reset has none."""

    made: list[object] = []
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        transport = StringTransport(peer=None, extra={"socket": sock})
        _Acceptor(made.append).connection_made(transport)  # type: ignore[arg-type]
    assert made == []
    assert transport.closed
