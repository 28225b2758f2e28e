"""SOCKS on real sockets, both event loops: curl as the client, and our own client."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from torsion.defer import Deferred
from torsion.internet import Address, Protocol, Reactor, TCPClientEndpoint
from torsion.protocols import Echo
from torsion.protocols._socks_client import SOCKS4ClientEndpoint, SOCKS5ClientEndpoint
from torsion.protocols._socks_rules import DestinationRules, allow_destinations
from torsion.protocols._socks_server import SOCKSServer
from torsion.protocols._socks_wire import ReplyCode, SOCKSAuthenticationError, SOCKSError
from torsion.testing import require_peer

pytestmark = pytest.mark.integration

try:
    import uvloop  # noqa: F401
except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
    LOOPS = ["asyncio"]
else:
    LOOPS = ["asyncio", "uvloop"]

LOOPBACK = DestinationRules([allow_destinations(networks=["127.0.0.1/32"])])

# curl's exit status for a SOCKS handshake the proxy refused: CURLE_PROXY (97)
# since 7.73; older versions said 7 ("could not connect").
CURL_PROXY_ERROR = 97


@pytest.fixture(params=LOOPS)
def loop_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def real_reactor(loop_name: str) -> Iterator[Reactor]:
    reactor = Reactor(uvloop=loop_name == "uvloop")
    yield reactor
    reactor.close()


def wait(reactor: Reactor, awaitable: Awaitable[Any], timeout: float = 10.0) -> Any:
    async def waiter() -> Any:
        return await awaitable

    return reactor.loop.run_until_complete(asyncio.wait_for(waiter(), timeout))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def settle() -> None:
    # Both loops close a socket just after its protocol's connection_lost.
    for _ in range(3):
        await asyncio.sleep(0)


class Watched:
    """Wraps a factory so that tests can wait for each connection's end."""

    def __init__(self, factory: Callable[[Address], Any]) -> None:
        self._factory = factory
        self.lost: list[Deferred[None]] = []

    def __call__(self, address: Address) -> Any:
        protocol = self._factory(address)
        ended: Deferred[None] = Deferred()
        self.lost.append(ended)
        original = protocol.connection_lost

        def connection_lost(exc: Exception | None) -> None:
            original(exc)
            ended.callback(None)

        protocol.connection_lost = connection_lost
        return protocol


class WatchedEndpoint:
    """A client endpoint whose connections can be waited on to end."""

    def __init__(self, endpoint: Any) -> None:
        self._endpoint = endpoint
        self.lost: list[Deferred[None]] = []

    def connect(self, factory: Callable[[Address], Any]) -> Deferred[Any]:
        watched = Watched(factory)
        self.lost = watched.lost
        return self._endpoint.connect(watched)  # type: ignore[no-any-return]


@contextlib.contextmanager
def http_responder(reactor: Reactor) -> Iterator[tuple[int, list[bytes]]]:
    """A tiny HTTP/1.1 server outside torsion; yields its port and the requests it saw."""
    seen: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            seen.append(await reader.readuntil(b"\r\n\r\n"))
            body = b"hello through socks\n"
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (len(body), body)
            )
            await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = wait(reactor, asyncio.start_server(answer, "127.0.0.1", 0))
    try:
        yield server.sockets[0].getsockname()[1], seen
    finally:
        server.close()
        wait(reactor, server.wait_closed())


@contextlib.contextmanager
def socks_server(reactor: Reactor, **kwargs: Any) -> Iterator[tuple[int, Watched]]:
    watched = Watched(SOCKSServer(reactor, **kwargs))
    port = reactor.listen_tcp(0, watched, interface="127.0.0.1")
    try:
        yield port.port, watched
    finally:
        wait(reactor, port.stop_listening())


async def run(*args: str) -> tuple[int, bytes, bytes]:
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 10)
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out, err


# -- curl as the client ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "host"),
    [
        ("--socks5", "127.0.0.1"),
        ("--socks5-hostname", "localhost"),  # the name goes to our server to resolve
        ("--socks4", "127.0.0.1"),
        ("--socks4a", "localhost"),
    ],
)
def test_curl_through_our_server(real_reactor: Reactor, option: str, host: str) -> None:
    curl = require_peer("curl", package="curl")
    r = real_reactor
    with http_responder(r) as (http_port, seen), socks_server(r, rules=LOOPBACK) as (port, _):
        status, out, err = wait(
            r,
            run(
                curl,
                "-sS",
                "--max-time",
                "5",
                option,
                f"127.0.0.1:{port}",
                f"http://{host}:{http_port}/path",
            ),
        )
    assert (status, out, err) == (0, b"hello through socks\n", b"")
    [request] = seen
    assert request.startswith(b"GET /path HTTP/1.1\r\n")


def test_curl_with_a_password(real_reactor: Reactor) -> None:
    curl = require_peer("curl", package="curl")
    r = real_reactor

    def check(username: str, password: str) -> bool:
        return (username, password) == ("alice", "s3cret")

    with (
        http_responder(r) as (http_port, _),
        socks_server(r, rules=LOOPBACK, authenticate=check) as (port, _),
    ):
        url = f"http://127.0.0.1:{http_port}/"
        proxy = f"127.0.0.1:{port}"
        good = wait(r, run(curl, "-sS", "--socks5", proxy, "--proxy-user", "alice:s3cret", url))
        bad = wait(r, run(curl, "-sS", "--socks5", proxy, "--proxy-user", "alice:nope", url))
        none = wait(r, run(curl, "-sS", "--socks5", proxy, url))
    assert good == (0, b"hello through socks\n", b"")
    assert bad[0] == CURL_PROXY_ERROR
    assert b"user was rejected" in bad[2].lower()
    assert none[0] == CURL_PROXY_ERROR
    assert b"no authentication method was acceptable" in none[2].lower()


@pytest.mark.parametrize("option", ["--socks5", "--socks4"])
def test_curl_to_a_denied_destination(real_reactor: Reactor, option: str) -> None:
    curl = require_peer("curl", package="curl")
    r = real_reactor
    # The default rules: loopback is protected.
    with http_responder(r) as (http_port, seen), socks_server(r) as (port, _):
        status, out, err = wait(
            r,
            run(curl, "-sS", option, f"127.0.0.1:{port}", f"http://127.0.0.1:{http_port}/"),
        )
    assert status == CURL_PROXY_ERROR
    assert out == b""
    assert b"(91)" in err if option == "--socks4" else b"(2)" in err
    assert seen == []  # the responder was never reached


# -- our client against our server -------------------------------------------------------


class Pinger(Protocol):
    """Sends a message and collects what comes back."""

    def __init__(self, message: bytes) -> None:
        self.message = message
        self.received = bytearray()
        self.done: Deferred[bytes] = Deferred()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.transport.write(self.message)

    def data_received(self, data: bytes) -> None:
        self.received += data
        if len(self.received) >= len(self.message) and not self.done.called:
            self.done.callback(bytes(self.received))


@pytest.fixture
def echo_port(real_reactor: Reactor) -> Iterator[int]:
    port = real_reactor.listen_tcp(0, lambda _: Echo(), interface="127.0.0.1")
    yield port.port
    wait(real_reactor, port.stop_listening())


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_our_client_through_our_server(real_reactor: Reactor, echo_port: int, host: str) -> None:
    r = real_reactor
    message = os.urandom(1024 * 1024)  # more than any buffer: backpressure both ways
    with socks_server(r, rules=LOOPBACK) as (port, _):
        socks = SOCKS5ClientEndpoint(r, TCPClientEndpoint(r, "127.0.0.1", port), host, echo_port)
        pinger = wait(r, socks.connect(lambda _: Pinger(message)))
        assert wait(r, pinger.done) == message
        pinger.transport.close()


def test_our_client_with_a_password(real_reactor: Reactor, echo_port: int) -> None:
    r = real_reactor

    async def check(username: str, password: str) -> bool:
        return (username, password) == ("alice", "s3cret")

    with socks_server(r, rules=LOOPBACK, authenticate=check) as (port, _):
        proxy = TCPClientEndpoint(r, "127.0.0.1", port)
        good = SOCKS5ClientEndpoint(
            r, proxy, "127.0.0.1", echo_port, username="alice", password="s3cret"
        )
        pinger = wait(r, good.connect(lambda _: Pinger(b"ping")))
        assert wait(r, pinger.done) == b"ping"
        pinger.transport.close()
        bad = SOCKS5ClientEndpoint(
            r, proxy, "127.0.0.1", echo_port, username="alice", password="guess"
        )
        with pytest.raises(SOCKSAuthenticationError):
            wait(r, bad.connect(lambda _: Pinger(b"ping")))


def test_our_socks4a_client(real_reactor: Reactor, echo_port: int) -> None:
    r = real_reactor
    with socks_server(r, rules=LOOPBACK) as (port, _):
        socks = SOCKS4ClientEndpoint(
            r, TCPClientEndpoint(r, "127.0.0.1", port), "localhost", echo_port
        )
        pinger = wait(r, socks.connect(lambda _: Pinger(b"ping")))
        assert wait(r, pinger.done) == b"ping"
        pinger.transport.close()


@pytest.mark.parametrize(
    ("destination", "code"),
    [
        ("127.0.0.2", ReplyCode.NOT_ALLOWED),  # refused by the rules
        ("127.0.0.1", ReplyCode.CONNECTION_REFUSED),  # allowed, nobody listening
    ],
)
def test_refused_and_failed_connections_leave_nothing_open(
    real_reactor: Reactor, destination: str, code: ReplyCode
) -> None:
    r = real_reactor
    # A port that was just free: nothing listens on it.
    closed = r.listen_tcp(0, lambda _: Echo(), interface="127.0.0.1")
    free_port = closed.port
    wait(r, closed.stop_listening())
    with socks_server(r, rules=LOOPBACK) as (port, served):
        proxy = WatchedEndpoint(TCPClientEndpoint(r, "127.0.0.1", port))
        socks = SOCKS5ClientEndpoint(r, proxy, destination, free_port)
        wait(r, settle())
        before = open_fds()
        made: list[Pinger] = []
        with pytest.raises(SOCKSError) as caught:
            wait(r, socks.connect(lambda _: made.append(Pinger(b"x")) or made[-1]))
        assert caught.value.code == code
        assert made == []
        wait(r, served.lost[-1])  # the server's side of the connection ended
        wait(r, proxy.lost[-1])  # and ours
        wait(r, settle())
        assert open_fds() == before
