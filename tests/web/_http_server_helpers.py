"""Helpers for the HTTP server tests: a site on a fake connection, responses read back, and
real listeners whose connections the test waits to see end."""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any

import httptools
import pytest

from torsion.defer import Deferred
from torsion.internet import Address, Reactor
from torsion.testing import Clock, StringTransport
from torsion.web import HTTPChannel, Request, Resource, ServerLimits, Site, handles
from torsion.web._websocket import WebSocket, WebSocketClosedError

# Runs a real-socket test on the stdlib loop and on uvloop.
BOTH_LOOPS = pytest.mark.parametrize(
    "loop",
    [
        pytest.param("asyncio", marks=pytest.mark.torsion_loop("asyncio")),
        pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop")),
    ],
)


@dataclass
class Response:
    """One response read back from the bytes the server wrote."""

    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    chunked: bool = False
    complete: bool = False

    def header(self, name: bytes) -> bytes | None:
        """The first value of ``name`` (any case), or None."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def all(self, name: bytes) -> list[bytes]:
        """Every value of ``name``."""
        return [v for k, v in self.headers if k.lower() == name.lower()]


class _Reader:
    def __init__(self) -> None:
        self.responses: list[Response] = []
        self.parser: httptools.HttpResponseParser | None = None

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        self.responses[-1].status = self.parser.get_status_code()

    def on_message_begin(self) -> None:
        self.responses.append(Response())

    def on_header(self, name: bytes, value: bytes) -> None:
        self.responses[-1].headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.responses[-1].body += body

    def on_message_complete(self) -> None:
        self.responses[-1].complete = True


def read_responses(data: bytes, *, eof: bool = False) -> list[Response]:
    """Parse every response in ``data`` (to the end of a close-delimited one if ``eof``)."""
    reader = _Reader()
    parser = reader.parser = httptools.HttpResponseParser(reader)
    parser.feed_data(data)
    if eof and reader.responses and not reader.responses[-1].complete:
        parser.feed_data(b"")
    for response in reader.responses:
        response.chunked = (response.header(b"transfer-encoding") or b"").lower() == b"chunked"
    return reader.responses


@dataclass
class Connection:
    """A server connection on a ``StringTransport`` with a fake clock."""

    site: Site
    protocol: HTTPChannel
    transport: StringTransport
    clock: Clock

    def send(self, data: bytes) -> None:
        """Deliver ``data`` from the client."""
        self.protocol.data_received(data)

    def take(self) -> bytes:
        """What the server wrote since the last call."""
        data = self.transport.value()
        self.transport.clear()
        return data

    def responses(self, *, eof: bool = False) -> list[Response]:
        """The responses written since the last call."""
        return read_responses(self.take(), eof=eof)

    def lose(self) -> None:
        """The connection goes."""
        self.protocol.connection_lost(None)


def connect(
    root: Resource,
    *,
    limits: ServerLimits | None = None,
    clock: Clock | None = None,
    wall_clock: float = 1_700_000_000.0,
    **site_options: object,
) -> Connection:
    """A new connection to a site serving ``root``."""
    clock = clock if clock is not None else Clock()
    site = Site(
        root,
        reactor=clock,
        limits=limits,
        wall_clock=lambda: wall_clock,
        **site_options,  # type: ignore[arg-type]
    )
    protocol = site(None)  # type: ignore[arg-type]
    transport = StringTransport(protocol)
    protocol.connection_made(transport)
    return Connection(site, protocol, transport, clock)


def get(path: str = "/", *extra: str, version: str = "1.1") -> bytes:
    """A GET request with a Host and ``extra`` header lines."""
    lines = [f"GET {path} HTTP/{version}", "Host: example.test", *extra, "", ""]
    return "\r\n".join(lines).encode("latin-1")


class _TrackedChannel(HTTPChannel):
    def __init__(self, site: Site, ended: list[Deferred[None]]) -> None:
        super().__init__(site)
        self.ended: Deferred[None] = Deferred()
        ended.append(self.ended)

    def connection_lost(self, exc: Exception | None) -> None:
        # (An HTTP/2 or switched connection's protocol hears of it first.)
        super().connection_lost(exc)
        if not self.ended.called:
            self.ended.callback(None)


class Tracked:
    """A listener's protocol factory: each connection's channel, and when it ended.

    Pass it to ``listen_tcp``/``listen_tls``; ``all_ended()`` waits until every
    connection made so far is gone, so that a test leaks none.

    Attributes:
        site: The site whose channels are made.
        ended: One Deferred per connection, fired when it is lost.
    """

    def __init__(self, site: Site) -> None:
        self.site = site
        self.ended: list[Deferred[None]] = []

    def __call__(self, address: Address) -> HTTPChannel:
        """A channel for a new connection."""
        return _TrackedChannel(self.site, self.ended)

    async def all_ended(self) -> None:
        """Wait for every connection so far to be lost (a broken test times out)."""
        async with asyncio.timeout(10):
            for ended in self.ended:
                await ended.as_future()


class Endless(Resource):
    """Streams data until the stream or the connection fails (for slow-reader tests).

    Attributes:
        stopped: Fires with the error that stopped the stream.
    """

    is_leaf = True

    def __init__(self) -> None:
        super().__init__()
        self.stopped: Deferred[BaseException] = Deferred()

    @handles("GET")
    async def get(self, request: Request) -> None:
        """Write 64 KiB at a time, each once the last has drained."""
        try:
            while True:
                request.write(b"x" * 65536)
                await request.drained()
        except ConnectionError as exc:
            self.stopped.callback(exc)
            raise


async def read_to_the_end(reader: asyncio.StreamReader) -> None:
    """Read until the server ends the connection; raise ConnectionResetError there.

    An aborted connection raises it from the read itself; an end of file
    raises it too, so that a test can expect it either way.
    """
    while await reader.read(1 << 20):
        pass
    raise ConnectionResetError("end of file")


class EchoSockets:
    """The WebSocket tests' default handler: it echoes, and keeps what it saw.

    Attributes:
        sockets: Each WebSocket the handler was given.
        received: Each message received, in order.
        errors: The WebSocketClosedError that ended a handler, if any.
    """

    def __init__(self) -> None:
        self.sockets: list[WebSocket] = []
        self.received: list[str | bytes] = []
        self.errors: list[BaseException] = []

    async def echo(self, ws: WebSocket) -> None:
        """Send each message back until the WebSocket closes."""
        self.sockets.append(ws)
        try:
            async for message in ws:
                self.received.append(message)
                await ws.send(message)
        except WebSocketClosedError as exc:
            self.errors.append(exc)
            raise


async def stop_reading(
    reactor: Reactor, port: int, request: bytes, root: Endless, tracked: Tracked
) -> None:
    """Send ``request`` to ``port`` and read nothing: the server must cut the client off.

    ``root`` streams endlessly on a site whose write timeout is 0.5 s: the
    connection must be aborted within a few seconds (not before the limit),
    the handler's stream fail, and what the client finally reads end in a
    reset instead of the endless body.
    """
    sock = socket.socket()
    # A small receive buffer fills sooner.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(request)
    await writer.drain()
    start = reactor.loop.time()
    # The client reads nothing from here on.
    stopped = await asyncio.wait_for(root.stopped.as_future(), 10)
    elapsed = reactor.loop.time() - start
    assert isinstance(stopped, ConnectionError)
    assert 0.4 <= elapsed < 5
    await tracked.all_ended()
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(read_to_the_end(reader), 10)
    writer.close()


class Serving:
    """A site on 127.0.0.1 port 0 (or a Unix socket) for one test, on a Tracked factory.

    ``stop()`` waits for every connection to end, then for every request of
    the resources in ``root.watched`` (each with a ``settled`` list of
    Deferreds) to settle: a client may have its whole response while the
    app still runs (a background task, a WSGI app's ``close()``).

    Attributes:
        tracked: The factory; ``len(tracked.ended)`` counts the connections.
        port: The TCP port (0 on a Unix socket).
    """

    def __init__(
        self,
        reactor: Reactor,
        root: Resource,
        unix: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.tracked = Tracked(Site(root, reactor=reactor))
        self._watched: list[Any] = getattr(root, "watched", [])
        if unix is not None:
            self.listener = reactor.listen_unix(unix, self.tracked)
            self.port = 0
        elif tls is not None:
            self.listener = reactor.listen_tls(0, self.tracked, tls, interface="127.0.0.1")
            self.port = self.listener.port
        else:
            self.listener = reactor.listen_tcp(0, self.tracked, interface="127.0.0.1")
            self.port = self.listener.port

    async def stop(self) -> None:
        """Stop listening; wait for the connections to end and the requests to settle."""
        await self.listener.stop_listening()
        await self.tracked.all_ended()
        async with asyncio.timeout(10):
            for watched in self._watched:
                for settled in watched.settled:
                    await settled.as_future()


async def run_peer(*argv: str, stdin: bytes | None = None) -> bytes:
    """Run a peer program with ``stdin`` (else none); its output, which must exit 0 in 20 s."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), 20)
    assert process.returncode == 0, err.decode()
    return out


def request_bytes(target: str, *lines: str, method: str = "GET", body: bytes = b"") -> bytes:
    """An HTTP/1.1 request for ``target`` with ``lines`` as headers (and a Content-Length)."""
    head = [f"{method} {target} HTTP/1.1", "Host: example.test", *lines]
    if body:
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join([*head, "", ""])).encode("latin-1") + body


async def exchange(resource: Any, data: bytes, count: int = 1) -> list[Response]:
    """Send ``data`` on a fake connection and wait until ``count`` requests were served.

    ``resource`` (an app container) lists a Deferred per request in
    ``settled``; the site is on its ``root`` if it has one, else on itself.
    """
    conn = connect(getattr(resource, "root", resource))
    conn.send(data)
    # Each request is rendered once the one before it is finished.
    for index in range(count):
        await resource.settled[index]
    responses = conn.responses(eof=True)
    conn.lose()
    return responses
