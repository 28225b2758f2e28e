"""The HTTP/1.1 server on 127.0.0.1, on both loops, with clients it did not write.

curl and Python's http.client talk to it as clients do; raw sockets send
what clients should not (pipelined bursts, smuggling attempts, a slow head).
"""

from __future__ import annotations

import asyncio
import http.client
import ssl
import typing
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from _http_server_helpers import read_responses

from torsion.defer import Deferred, gather
from torsion.internet import Address, IPv4Address, Reactor
from torsion.testing import require_peer
from torsion.web import Headers, HTTPChannel, Request, Resource, ServerLimits, Site, handles

pytestmark = pytest.mark.integration

BOTH_LOOPS = pytest.mark.parametrize(
    "loop",
    [
        pytest.param("asyncio", marks=pytest.mark.torsion_loop("asyncio")),
        pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop")),
    ],
)


class Hello(Resource):
    is_leaf = True

    @handles("GET")
    def get(self, request: Request) -> bytes:
        request.response_headers.set("Content-Type", "text/plain")
        return b"Hello, World!"


class Echo(Resource):
    is_leaf = True

    @handles("POST", "PUT")
    async def post(self, request: Request) -> bytes:
        body = await request.body()
        request.response_headers.set("X-Expected", str(request.headers.get_str("expect")))
        return body


class Stream(Resource):
    is_leaf = True

    @handles("GET")
    async def get(self, request: Request) -> None:
        for index in range(5):
            request.write(b"part %d\n" % index)
            await request.drained()
            # Handlers are coroutines of the running loop too.
            await asyncio.sleep(0)
        request.finish()


def make_root() -> Resource:
    root = Resource()
    root.put_child("hello", Hello())
    root.put_child("echo", Echo())
    root.put_child("stream", Stream())
    return root


@dataclass
class Server:
    port: int
    channels: list[HTTPChannel]


class TrackedChannel(HTTPChannel):
    """A channel whose end the test can wait for (so nothing is left open)."""

    def __init__(self, site: Site) -> None:
        super().__init__(site)
        self.closed: Deferred[None] = Deferred()

        self.most_queued = 0

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.closed.callback(None)

    def head_received(self, *args: object) -> None:
        # The queue's length once this request joins it.
        self.most_queued = max(self.most_queued, len(self._queue) + 1)
        super().head_received(*args)  # type: ignore[arg-type]


@asynccontextmanager
async def serving(reactor: Reactor, limits: ServerLimits | None = None) -> AsyncIterator[Server]:
    site = Site(make_root(), reactor=reactor, limits=limits)
    channels: list[HTTPChannel] = []

    def factory(address: Address) -> HTTPChannel:
        channel = TrackedChannel(site)
        channels.append(channel)
        return channel

    listener = reactor.listen_tcp(0, factory, interface="127.0.0.1")
    try:
        yield Server(listener.port, channels)
    finally:
        await listener.stop_listening()
        await asyncio.wait_for(
            gather([c.closed for c in channels if isinstance(c, TrackedChannel)]), 10
        )


async def run(*argv: str, stdin: bytes | None = None) -> tuple[bytes, bytes]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), 20)
    assert process.returncode == 0, err.decode()
    return out, err


def curl() -> str:
    return require_peer("curl", package="curl")


# -- curl ----------------------------------------------------------------------


@BOTH_LOOPS
async def test_curl_reuses_one_keep_alive_connection(reactor: Reactor, loop: str) -> None:
    async with serving(reactor) as server:
        url = f"http://127.0.0.1:{server.port}/hello"
        out, _ = await run(curl(), "-s", url, url, url, "-w", " %{num_connects} %{http_code}\n")
        assert out.decode().splitlines() == [
            "Hello, World! 1 200",
            "Hello, World! 0 200",
            "Hello, World! 0 200",
        ]
        assert len(server.channels) == 1


@BOTH_LOOPS
async def test_curl_chunked_upload_is_echoed(reactor: Reactor, loop: str) -> None:
    body = b"".join(b"line %d\n" % i for i in range(5000))
    async with serving(reactor) as server:
        out, _ = await run(
            curl(),
            "-s",
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            "@-",
            f"http://127.0.0.1:{server.port}/echo",
            stdin=body,
        )
        assert out == body


@BOTH_LOOPS
async def test_curl_http_1_0(reactor: Reactor, loop: str) -> None:
    async with serving(reactor) as server:
        out, err = await run(curl(), "-sv", "--http1.0", f"http://127.0.0.1:{server.port}/stream")
        assert out == b"".join(b"part %d\n" % i for i in range(5))
        assert b"< Connection: close" in err
        assert b"Transfer-Encoding" not in err


@BOTH_LOOPS
async def test_curl_head(reactor: Reactor, loop: str) -> None:
    async with serving(reactor) as server:
        out, _ = await run(curl(), "-sI", f"http://127.0.0.1:{server.port}/hello")
        lines = out.decode().split("\r\n")
        assert lines[0] == "HTTP/1.1 200 OK"
        assert "Content-Length: 13" in lines
        assert "Content-Type: text/plain" in lines


@BOTH_LOOPS
async def test_curl_expect_100_continue(reactor: Reactor, loop: str) -> None:
    async with serving(reactor) as server:
        out, err = await run(
            curl(),
            "-sv",
            "-H",
            "Expect: 100-continue",
            "--data-binary",
            "x" * 3000,
            f"http://127.0.0.1:{server.port}/echo",
        )
        assert out == b"x" * 3000
        assert b"< HTTP/1.1 100 Continue" in err
        assert b"< X-Expected: 100-continue" in err


@BOTH_LOOPS
async def test_curl_streamed_response_is_chunked(reactor: Reactor, loop: str) -> None:
    async with serving(reactor) as server:
        out, err = await run(curl(), "-sv", f"http://127.0.0.1:{server.port}/stream")
        assert out == b"".join(b"part %d\n" % i for i in range(5))
        assert b"< Transfer-Encoding: chunked" in err


# -- http.client -----------------------------------------------------------------


def _http_client_session(port: int) -> list[tuple[int, bytes, str | None]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        results = []
        connection.request("GET", "/hello")
        response = connection.getresponse()
        results.append((response.status, response.read(), response.getheader("Content-Type")))
        connection.request("POST", "/echo", body=b"posted")
        response = connection.getresponse()
        results.append((response.status, response.read(), None))
        connection.request("PUT", "/echo", body=iter([b"ab", b"cd"]), encode_chunked=True)
        response = connection.getresponse()
        results.append((response.status, response.read(), None))
        connection.request("DELETE", "/hello")
        response = connection.getresponse()
        results.append((response.status, response.read()[:0], response.getheader("Allow")))
        connection.request("GET", "/missing")
        response = connection.getresponse()
        results.append((response.status, response.read()[:0], None))
        return results
    finally:
        connection.close()


@BOTH_LOOPS
async def test_http_client_session_on_one_connection(reactor: Reactor, loop: str) -> None:
    async with serving(reactor) as server:
        results = await asyncio.get_running_loop().run_in_executor(
            None, _http_client_session, server.port
        )
        assert results == [
            (200, b"Hello, World!", "text/plain"),
            (200, b"posted", None),
            (200, b"abcd", None),
            (405, b"", "GET, HEAD, OPTIONS"),
            (404, b"", None),
        ]
        assert len(server.channels) == 1


# -- raw sockets -----------------------------------------------------------------


async def exchange(port: int, data: bytes, until: Callable[[bytes], bool] | None = None) -> bytes:
    """Send ``data``, read until EOF (or until ``until`` is satisfied)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        received = b""
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            received += chunk
            if not chunk or (until is not None and until(received)):
                return received
    finally:
        writer.close()
        await writer.wait_closed()


def request(path: str, *extra: str) -> bytes:
    return "\r\n".join([f"GET {path} HTTP/1.1", "Host: t", *extra, "", ""]).encode()


@BOTH_LOOPS
async def test_pipelined_burst_is_answered_in_order(reactor: Reactor, loop: str) -> None:
    async with serving(reactor) as server:
        burst = b"".join(
            [
                request("/hello"),
                b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nfirst",
                request("/stream"),
                b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"6\r\nsecond\r\n0\r\n\r\n",
                request("/hello", "Connection: close"),
            ]
        )
        data = await exchange(server.port, burst)
        bodies = [r.body for r in read_responses(data)]
        assert bodies == [
            b"Hello, World!",
            b"first",
            b"".join(b"part %d\n" % i for i in range(5)),
            b"second",
            b"Hello, World!",
        ]


@BOTH_LOOPS
async def test_smuggling_attempt_is_refused_and_closed(reactor: Reactor, loop: str) -> None:
    async with serving(reactor) as server:
        data = await exchange(
            server.port,
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        [response] = read_responses(data)
        assert response.status == 400
        assert b"Hello" not in data


@BOTH_LOOPS
async def test_slow_head_gets_408_on_a_real_clock(reactor: Reactor, loop: str) -> None:
    limits = ServerLimits(header_timeout=0.2)
    async with serving(reactor, limits) as server:
        # The server ends the connection itself: reading waits for that.
        data = await exchange(server.port, b"GET /hello HTTP/1.1\r\nHost: t\r\n")
        [response] = read_responses(data)
        assert response.status == 408


@BOTH_LOOPS
async def test_flood_of_pipelined_requests_stays_bounded(reactor: Reactor, loop: str) -> None:
    # CVE-2023-46137: thousands of requests in one burst, each answered by a
    # coroutine that yields to the loop. The server parses at most
    # max_pipelined ahead (the rest waits as bytes, reading paused) and
    # answers every one, in order.
    limits = ServerLimits(max_pipelined=8)
    async with serving(reactor, limits) as server:
        flood = request("/stream") * 3000 + request("/hello", "Connection: close")
        data = await exchange(server.port, flood)
        responses = read_responses(data)
        assert len(responses) == 3001
        assert all(r.complete for r in responses)
        assert {r.body for r in responses[:-1]} == {b"".join(b"part %d\n" % i for i in range(5))}
        assert responses[-1].body == b"Hello, World!"
        [channel] = server.channels
        assert channel.most_queued == 8  # type: ignore[attr-defined]


@BOTH_LOOPS
async def test_pipelining_within_the_bound_is_answered_whole(reactor: Reactor, loop: str) -> None:
    async with serving(reactor) as server:
        burst = request("/stream") * 10 + request("/hello", "Connection: close")
        data = await exchange(server.port, burst)
        responses = read_responses(data)
        assert len(responses) == 11
        assert responses[-1].body == b"Hello, World!"
        assert {r.body for r in responses[:-1]} == {b"".join(b"part %d\n" % i for i in range(5))}


class Secure(Resource):
    is_leaf = True

    @handles("GET")
    def get(self, request: Request) -> bytes:
        client = request.client
        assert isinstance(client, IPv4Address)
        return f"secure={request.is_secure} client={client.host}".encode()


@BOTH_LOOPS
async def test_site_over_tls_knows_it_is_secure(
    reactor: Reactor, loop: str, tmp_path: Path
) -> None:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    site = Site(Secure(), reactor=reactor)
    channels: list[TrackedChannel] = []

    def factory(address: Address) -> HTTPChannel:
        channel = TrackedChannel(site)
        channels.append(channel)
        return channel

    listener = reactor.listen_tls(0, factory, context, interface="127.0.0.1")
    try:
        out, _ = await run(
            curl(), "-s", "--cacert", str(ca_file), f"https://127.0.0.1:{listener.port}/"
        )
        assert out == b"secure=True client=127.0.0.1"
    finally:
        await listener.stop_listening()
        await asyncio.wait_for(gather([c.closed for c in channels]), 10)


@BOTH_LOOPS
async def test_site_over_a_unix_socket(reactor: Reactor, loop: str, tmp_path: Path) -> None:
    site = Site(make_root(), reactor=reactor)
    channels: list[TrackedChannel] = []

    def factory(address: Address) -> HTTPChannel:
        channel = TrackedChannel(site)
        channels.append(channel)
        return channel

    path = tmp_path / "web.sock"
    listener = reactor.listen_unix(str(path), factory)
    try:
        out, _ = await run(curl(), "-s", "--unix-socket", str(path), "http://localhost/hello")
        assert out == b"Hello, World!"
    finally:
        await listener.stop_listening()
        await asyncio.wait_for(gather([c.closed for c in channels]), 10)


class Shout(asyncio.Protocol):
    """After the switch: sends back what it gets, upper-cased, until "BYE"."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data.upper())
        if b"bye" in data:
            self.transport.close()


class Upgrading(Resource):
    is_leaf = True

    @handles("GET")
    async def get(self, request: Request) -> None:
        await asyncio.sleep(0)
        request.switch_protocols(
            Shout(), Headers([("Upgrade", "shout"), ("Connection", "Upgrade")])
        )


@BOTH_LOOPS
async def test_switching_protocols_over_a_real_connection(reactor: Reactor, loop: str) -> None:
    site = Site(Upgrading(), reactor=reactor)
    listener = reactor.listen_tcp(0, site, interface="127.0.0.1")
    try:
        data = await exchange(
            listener.port,
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: shout\r\n\r\n"
            b"hello, bye",
        )
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
        assert b"\r\nUpgrade: shout" in head
        assert rest == b"HELLO, BYE"
    finally:
        await listener.stop_listening()
