"""The HTTP client through proxies: CONNECT tunnels, absolute-form requests, SOCKS 5."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
import trustme
from _client_peers import running_proxy, running_stdlib_server

from torsion.defer import CancelledError, Deferred, succeed
from torsion.internet import Address, IPv4Address, Protocol, Reactor, client_context
from torsion.protocols._socks_rules import DestinationRules, allow_destinations
from torsion.protocols._socks_server import SOCKSServer
from torsion.testing import (
    MemoryReactor,
    StringTransport,
    assert_no_result,
    failure_result_of,
    success_result_of,
)
from torsion.web import (
    BadResponseError,
    Headers,
    HTTPClient,
    HTTPConnectEndpoint,
    ProxyConnectError,
)

P = TypeVar("P", bound=asyncio.BaseProtocol)

BOTH_LOOPS = pytest.mark.parametrize(
    "loop",
    [
        pytest.param("asyncio", marks=pytest.mark.torsion_loop("asyncio")),
        pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop")),
    ],
)


class FakeProxyEndpoint:
    """Connects at once, to a StringTransport."""

    def __init__(self) -> None:
        self.transport = StringTransport()
        self.protocol: asyncio.Protocol | None = None

    def connect(self, factory: Callable[[Address], P]) -> Deferred[P]:
        protocol = factory(IPv4Address("192.0.2.3", 3128))
        assert isinstance(protocol, asyncio.Protocol)
        self.protocol = protocol
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        return succeed(protocol)


class Recorder(Protocol):
    def __init__(self) -> None:
        self.received = b""

    def data_received(self, data: bytes) -> None:
        self.received += data


def tunnel(headers: Headers | None = None) -> tuple[FakeProxyEndpoint, Deferred[Recorder]]:
    proxy = FakeProxyEndpoint()
    endpoint = HTTPConnectEndpoint(proxy, "example.test", 443, headers=headers)
    return proxy, endpoint.connect(lambda _: Recorder())


def test_connect_opens_a_tunnel_and_hands_the_connection_over() -> None:
    proxy, d = tunnel(Headers([("Proxy-Authorization", "Basic eA==")]))
    assert proxy.transport.value() == (
        b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n"
        b"Proxy-Authorization: Basic eA==\r\n\r\n"
    )
    assert_no_result(d)
    assert proxy.protocol is not None
    proxy.protocol.data_received(b"HTTP/1.0 200 Connection established\r\n\r\n")
    protocol = success_result_of(d)
    assert protocol.transport is proxy.transport
    handed = proxy.transport.get_protocol()
    assert handed is protocol
    protocol.data_received(b"from the destination")
    assert protocol.received == b"from the destination"


def test_an_ipv6_destination_is_bracketed() -> None:
    proxy = FakeProxyEndpoint()
    HTTPConnectEndpoint(proxy, "2001:db8::1", 443).connect(lambda _: Recorder())
    assert proxy.transport.value().startswith(b"CONNECT [2001:db8::1]:443 HTTP/1.1\r\n")


def test_a_refusal_fails_with_the_proxys_code() -> None:
    proxy, d = tunnel()
    assert proxy.protocol is not None
    proxy.protocol.data_received(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
    error = failure_result_of(d, ProxyConnectError)
    assert isinstance(error, ProxyConnectError)
    assert error.code == 407
    assert proxy.transport.aborted


@pytest.mark.parametrize(
    "answer", [b"SSH-2.0-OpenSSH\r\n", b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n"]
)
def test_a_proxy_that_does_not_speak_http_fails(answer: bytes) -> None:
    proxy, d = tunnel()
    assert proxy.protocol is not None
    proxy.protocol.data_received(answer)
    failure_result_of(d, BadResponseError)
    assert proxy.transport.aborted


def test_a_proxy_that_hangs_up_fails() -> None:
    proxy, d = tunnel()
    assert proxy.protocol is not None
    proxy.protocol.eof_received()
    failure_result_of(d, BadResponseError)


def test_cancelling_closes_the_proxy_connection() -> None:
    proxy, d = tunnel()
    d.cancel()
    failure_result_of(d, CancelledError)
    assert proxy.transport.aborted


def test_plain_http_through_a_proxy_uses_the_absolute_form() -> None:
    reactor = MemoryReactor()
    client = HTTPClient(
        reactor, proxy="http://proxy.test:3128", proxy_headers={"Proxy-Authorization": "x"}
    )
    d = client.get("http://example.test/path?q=1")
    [call] = reactor.tcp_clients
    assert (call.host, call.port) == ("proxy.test", 3128)
    protocol = call.connect()
    assert protocol.transport.value().startswith(
        b"GET http://example.test/path?q=1 HTTP/1.1\r\nHost: example.test\r\n"
        b"Proxy-Authorization: x\r\n"
    )
    protocol.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert success_result_of(d).code == 200


@pytest.mark.parametrize("proxy", ["ftp://proxy.test", "http://", "socks4://x:1"])
def test_a_bad_proxy_url_is_refused(proxy: str) -> None:
    with pytest.raises(ValueError, match="proxy"):
        HTTPClient(MemoryReactor(), proxy=proxy)


# -- real proxies ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A test certificate authority."""
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_server(ca: trustme.CA) -> Iterator[int]:
    """http.server over TLS for localhost."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    with running_stdlib_server(context) as (port, _):
        yield port


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[int, threading.Event]]:
    """http.server in the clear."""
    with running_stdlib_server() as running:
        yield running


@BOTH_LOOPS
async def test_https_through_a_connect_tunnel(
    reactor: Reactor, loop: str, ca: trustme.CA, tls_server: int
) -> None:
    context = client_context(ca_data=ca.cert_pem.bytes().decode())
    with running_proxy() as (proxy_port, seen):
        client = HTTPClient(
            reactor,
            tls_context=context,
            proxy=f"http://127.0.0.1:{proxy_port}",
            proxy_headers={"Proxy-Authorization": "Basic cHJveHk6cHc="},
        )
        try:
            for _ in range(2):
                response = await client.get(f"https://localhost:{tls_server}/hello")
                assert await response.read() == b"Hello, World!"
            response = await client.get(
                f"https://localhost:{tls_server}/headers",
                headers={"Proxy-Authorization": "Basic bWluZQ==", "X-Kept": "1"},
            )
            fields = dict(json.loads(await response.read()))
            # One tunnel, kept alive; the proxy saw only where to connect,
            # and its credentials; the origin never saw them.
            assert [(m, t) for m, t, _ in seen] == [
                (b"CONNECT", f"localhost:{tls_server}".encode())
            ]
            assert b"Proxy-Authorization: Basic cHJveHk6cHc=" in seen[0][2]
            assert "Proxy-Authorization" not in fields
            assert fields["X-Kept"] == "1"
        finally:
            await client.close()


@BOTH_LOOPS
async def test_plain_http_through_a_forwarding_proxy(
    reactor: Reactor, loop: str, server: tuple[int, threading.Event]
) -> None:
    with running_proxy() as (proxy_port, seen):
        client = HTTPClient(reactor, proxy=f"http://127.0.0.1:{proxy_port}")
        try:
            response = await client.get(f"http://127.0.0.1:{server[0]}/headers")
            fields = dict(json.loads(await response.read()))
            assert fields["Host"] == f"127.0.0.1:{server[0]}"
            assert seen[0][1] == f"http://127.0.0.1:{server[0]}/headers".encode()
        finally:
            await client.close()


@BOTH_LOOPS
async def test_a_proxy_refusing_the_tunnel(
    reactor: Reactor, loop: str, ca: trustme.CA, tls_server: int
) -> None:
    with running_proxy(refuse=True) as (proxy_port, _):
        client = HTTPClient(reactor, proxy=f"http://127.0.0.1:{proxy_port}")
        try:
            with pytest.raises(ProxyConnectError) as caught:
                await client.get(f"https://localhost:{tls_server}/hello")
            assert caught.value.code == 407
            assert client.pool.open_count() == 0
        finally:
            await client.close()


@BOTH_LOOPS
async def test_through_a_socks5_proxy(
    reactor: Reactor,
    loop: str,
    ca: trustme.CA,
    tls_server: int,
    server: tuple[int, threading.Event],
) -> None:
    rules = DestinationRules([allow_destinations(networks=["127.0.0.1/32"])])
    port = reactor.listen_tcp(0, SOCKSServer(reactor, rules=rules), interface="127.0.0.1")
    context = client_context(ca_data=ca.cert_pem.bytes().decode())
    client = HTTPClient(reactor, tls_context=context, proxy=f"socks5://127.0.0.1:{port.port}")
    try:
        response = await client.get(f"http://127.0.0.1:{server[0]}/hello")
        assert await response.read() == b"Hello, World!"
        response = await client.get(f"https://127.0.0.1:{tls_server}/hello")
        assert await response.read() == b"Hello, World!"
    finally:
        await client.close()
        await port.stop_listening()
