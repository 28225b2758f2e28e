"""The PROXY protocol against real peers: curl's header, and HAProxy on both sides.

HAProxy runs in the foreground with a configuration of the test's own, on a
free port, and is stopped (with every connection it had) before the test's
listener closes. It is ready once it accepts a connection; that probe comes
from 127.0.0.2, which the frontend rejects at once, so it never reaches our
server.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trustme

from torsion.defer import Deferred
from torsion.internet import (
    Address,
    IPv4Address,
    IPv6Address,
    Protocol,
    Reactor,
    ServerTLS,
    TCPClientEndpoint,
    client_context,
    server_tls,
)
from torsion.protocols.haproxy._header import Command, HeaderAddress, ProxyHeader
from torsion.protocols.haproxy._protocol import (
    ProxiedTransport,
    ProxyProtocolClientEndpoint,
    ProxyProtocolFactory,
)
from torsion.testing import require_peer

pytestmark = pytest.mark.integration

ON_BOTH_LOOPS = pytest.mark.parametrize(
    "loop",
    ["asyncio", pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop"))],
)


class Answer(Protocol):
    """Answers the first request (a line, or an HTTP request) with what it knows."""

    def __init__(self, address: Address, *, http: bool = False) -> None:
        self.address = address
        self.http = http
        self.buffer = b""
        self.answered = False
        self.lost: Deferred[None] = Deferred()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert isinstance(transport, ProxiedTransport)

    @property
    def header(self) -> ProxyHeader:
        header: ProxyHeader = self.transport.get_extra_info("proxy_header")
        return header

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = b"\r\n\r\n" if self.http else b"\n"
        if self.answered or end not in self.buffer:
            return
        self.answered = True
        tls = self.transport.get_extra_info("ssl_object") is not None
        header = self.header
        unique_id = "yes" if header.unique_id else "no"
        answer = f"{self.peer} {self.host} v{header.version} tls={tls} id={unique_id}"
        if self.http:
            body = answer.encode()
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            self.transport.close()
        else:
            self.transport.write(answer.encode() + b"\n")

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.lost.callback(None)


class Served:
    """The server's factory: an ``Answer`` per connection, each kept."""

    def __init__(self, *, http: bool = False) -> None:
        self.http = http
        self.protocols: list[Answer] = []
        self.arrived: Deferred[Answer] = Deferred()

    def __call__(self, address: Address) -> Answer:
        protocol = Answer(address, http=self.http)
        self.protocols.append(protocol)
        if not self.arrived.called:
            self.arrived.callback(protocol)
        return protocol

    async def all_lost(self) -> None:
        for protocol in self.protocols:
            await protocol.lost


@pytest.fixture(scope="module")
def certificates() -> Iterator[tuple[ServerTLS, ssl.SSLContext]]:
    ca = trustme.CA()
    with tempfile.TemporaryDirectory() as where:
        both = Path(where) / "localhost.pem"
        ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(str(both))
        yield server_tls(both), client_context(ca_data=ca.cert_pem.bytes().decode())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def run(*argv: str) -> str:
    """Run a peer to completion; return its output."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    assert process.returncode == 0, (argv, out, err)
    return out.decode()


# -- curl -------------------------------------------------------------------------------------


@ON_BOTH_LOOPS
@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_curl_haproxy_protocol(
    loop: str, scheme: str, reactor: Reactor, certificates: tuple[ServerTLS, ssl.SSLContext]
) -> None:
    curl = require_peer("curl", package="curl")
    served = Served(http=True)
    tls = certificates[0] if scheme == "https" else None
    listener = reactor.listen_tcp(
        0, ProxyProtocolFactory(served, clock=reactor, tls=tls), interface="127.0.0.1"
    )
    try:
        # curl writes "PROXY TCP4 <its address> <ours> <ports>" first, in
        # clear, then the request (over TLS for https).
        output = await run(
            curl,
            "-sS",
            "--insecure",
            "--haproxy-protocol",
            "--write-out",
            "\n%{local_ip}:%{local_port}",
            f"{scheme}://127.0.0.1:{listener.port}/",
        )
        body, curl_address = output.rsplit("\n", 1)
        assert body == (
            f"{curl_address} 127.0.0.1:{listener.port} v1 tls={scheme == 'https'} id=no"
        )
        [protocol] = served.protocols
        assert str(protocol.address) == curl_address
        await served.all_lost()
    finally:
        await listener.stop_listening()


# -- HAProxy ----------------------------------------------------------------------------------

CONFIG = """\
global
    maxconn 64
defaults
    mode tcp
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend fe
    bind 127.0.0.1:{frontend}{accept}
    # The readiness probe comes from here; it must not reach the server.
    tcp-request connection reject if {{ src 127.0.0.2 }}
    unique-id-format %{{+X}}o%ci:%cp_%fi:%fp_%Ts_%rt
    default_backend be
backend be{checks}
    server ours 127.0.0.1:{backend} {server}
"""


@pytest.fixture
def haproxy() -> str:
    return require_peer("haproxy", package="haproxy")


@contextlib.asynccontextmanager
async def running_haproxy(
    binary: str, backend: int, *, server: str, accept_proxy: bool = False, checks: str = ""
) -> AsyncIterator[int]:
    """Run HAProxy in front of ``backend`` until the block ends; yields its port."""
    frontend = free_port()
    config = CONFIG.format(
        frontend=frontend,
        accept=" accept-proxy" if accept_proxy else "",
        backend=backend,
        server=server,
        checks="".join(f"\n    {line}" for line in checks.splitlines() if line),
    )
    with tempfile.TemporaryDirectory() as where:
        path = Path(where) / "haproxy.cfg"
        path.write_text(config)
        process = await asyncio.create_subprocess_exec(
            binary,
            "-f",
            str(path),
            "-db",  # foreground, no daemon
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            await accepting(frontend, process)
            yield frontend
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()  # hard stop: every connection is closed
            await process.communicate()


async def accepting(port: int, process: asyncio.subprocess.Process) -> None:
    """Wait until HAProxy accepts on ``port``, retrying the connect up to a deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        if process.returncode is not None:
            output = await process.communicate()
            pytest.fail(f"haproxy exited with {process.returncode}: {output[0]!r}")
        try:
            _, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=("127.0.0.2", 0)
            )
        except OSError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.01)  # between attempts, not in place of one
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


async def ask(port: int, *, context: ssl.SSLContext | None = None) -> tuple[bytes, IPv4Address]:
    """Connect to ``port``, ask once; return the answer and our own address."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1",
        port,
        ssl=context,
        server_hostname="localhost" if context is not None else None,
    )
    try:
        ours = IPv4Address(*writer.get_extra_info("sockname"))
        writer.write(b"who\n")
        return await reader.readline(), ours
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


@ON_BOTH_LOOPS
@pytest.mark.parametrize(
    ("server", "version"),
    [
        ("send-proxy", 1),
        ("send-proxy-v2", 2),
        ("send-proxy-v2 proxy-v2-options crc32c,unique-id", 2),
    ],
    ids=["v1", "v2", "v2-crc32c-unique-id"],
)
async def test_behind_haproxy(
    loop: str, server: str, version: int, reactor: Reactor, haproxy: str
) -> None:
    served = Served()
    listener = reactor.listen_tcp(
        0, ProxyProtocolFactory(served, clock=reactor), interface="127.0.0.1"
    )
    try:
        async with running_haproxy(haproxy, listener.port, server=server) as frontend:
            answer, ours = await ask(frontend)
        # Our server saw this client and HAProxy's frontend, not HAProxy's
        # own connection to it.
        unique_id = "yes" if "unique-id" in server else "no"
        assert answer == (
            f"{ours} 127.0.0.1:{frontend} v{version} tls=False id={unique_id}\n".encode()
        )
        [protocol] = served.protocols
        assert protocol.address == ours
        real = protocol.transport
        assert isinstance(real, ProxiedTransport)
        assert real.wrapped_transport.get_extra_info("sockname")[1] == listener.port
        assert real.wrapped_transport.get_extra_info("peername")[1] != ours.port
        await served.all_lost()
    finally:
        await listener.stop_listening()


@ON_BOTH_LOOPS
async def test_behind_haproxy_passing_tls_through(
    loop: str, reactor: Reactor, haproxy: str, certificates: tuple[ServerTLS, ssl.SSLContext]
) -> None:
    # HAProxy in TCP mode: its header in clear, then the client's own TLS,
    # which our server terminates.
    served = Served()
    server_side, client_side = certificates
    listener = reactor.listen_tcp(
        0, ProxyProtocolFactory(served, clock=reactor, tls=server_side), interface="127.0.0.1"
    )
    try:
        async with running_haproxy(haproxy, listener.port, server="send-proxy-v2") as frontend:
            answer, ours = await ask(frontend, context=client_side)
        assert answer == f"{ours} 127.0.0.1:{frontend} v2 tls=True id=no\n".encode()
        await served.all_lost()
    finally:
        await listener.stop_listening()


@ON_BOTH_LOOPS
async def test_haproxy_health_checks_are_local(loop: str, reactor: Reactor, haproxy: str) -> None:
    served = Served()
    listener = reactor.listen_tcp(
        0, ProxyProtocolFactory(served, clock=reactor), interface="127.0.0.1"
    )
    try:
        async with running_haproxy(
            haproxy,
            listener.port,
            server="send-proxy-v2 proxy-v2-options crc32c check check-send-proxy inter 100ms",
            # A check that asks and waits for the answer, so that it is still
            # connected when the server accepts it (a bare connect check is
            # reset at once, before uvloop has read its peer's address).
            checks="option tcp-check\ntcp-check send who\\n\ntcp-check expect rstring .",
        ):
            check = await served.arrived
        # A LOCAL header: the connection keeps its real addresses.
        assert check.header.command is Command.LOCAL
        assert check.header.source is None
        assert isinstance(check.transport, ProxiedTransport)
        assert check.peer == check.address
        assert str(check.address).startswith("127.0.0.1:")
        assert check.host == IPv4Address("127.0.0.1", listener.port)
        await served.all_lost()
    finally:
        await listener.stop_listening()


class Asker(Protocol):
    """Our client: asks once, keeps the answer."""

    def __init__(self) -> None:
        self.answer: Deferred[bytes] = Deferred()
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.transport.write(b"who\n")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if b"\n" in self.buffer and not self.answer.called:
            self.answer.callback(self.buffer)


@ON_BOTH_LOOPS
@pytest.mark.parametrize(
    ("version", "source", "destination"),
    [
        (1, IPv4Address("203.0.113.7", 4242), IPv4Address("198.51.100.1", 443)),
        (2, IPv4Address("203.0.113.7", 4242), IPv4Address("198.51.100.1", 443)),
        (2, IPv6Address("2001:db8::7", 4242), IPv6Address("2001:db8::1", 443)),
    ],
    ids=["v1", "v2", "v2-ipv6"],
)
async def test_our_client_endpoint_through_haproxy(
    loop: str,
    version: int,
    source: HeaderAddress,
    destination: HeaderAddress,
    reactor: Reactor,
    haproxy: str,
) -> None:
    # Our header goes to HAProxy (accept-proxy), which passes what it read
    # on in its own header to our server: the claimed source arrives.
    served = Served()
    listener = reactor.listen_tcp(
        0, ProxyProtocolFactory(served, clock=reactor), interface="127.0.0.1"
    )
    try:
        async with running_haproxy(
            haproxy, listener.port, server="send-proxy-v2", accept_proxy=True
        ) as frontend:
            endpoint = ProxyProtocolClientEndpoint(
                TCPClientEndpoint(reactor, "127.0.0.1", frontend),
                source,
                destination,
                version=version,  # type: ignore[arg-type]
            )
            client = await endpoint.connect(lambda _: Asker())
            answer = await client.answer
            client.transport.close()
        assert answer == f"{source} {destination} v2 tls=False id=no\n".encode()
        [protocol] = served.protocols
        assert protocol.address == source
        await served.all_lost()
    finally:
        await listener.stop_listening()
