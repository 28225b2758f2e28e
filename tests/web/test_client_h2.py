"""HTTPClient over HTTP/2 on a MemoryReactor, against an in-process h2 server connection."""

from __future__ import annotations

from collections.abc import AsyncIterator

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import hyperframe.frame
import pytest

from torsion.defer import Deferred
from torsion.internet import client_context
from torsion.testing import (
    MemoryReactor,
    StringTransport,
    assert_no_result,
    failure_result_of,
    success_result_of,
)
from torsion.web._client import HTTPClient, Response
from torsion.web._client_errors import BadResponseError, ClientClosedError
from torsion.web._client_h2 import H2ClientConnection, StreamResetError
from torsion.web._client_http11 import HTTP11ClientConnection
from torsion.web._cookies import CookieJar


class FakeSSLObject:
    """Just what the connection and tls_info read, with h2 agreed."""

    def version(self) -> str:
        return "TLSv1.3"

    def cipher(self) -> tuple[str, str, int]:
        return ("TLS_AES_128_GCM_SHA256", "TLSv1.3", 128)

    def selected_alpn_protocol(self) -> str:
        return "h2"

    def getpeercert(self, binary_form: bool = False) -> None:
        return None


class Server:
    """The server side of one HTTP/2 connection, in process, driven by hand."""

    def __init__(self, connection: HTTP11ClientConnection, transport: StringTransport) -> None:
        self.client = connection
        self.transport = transport
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.h2 = h2.connection.H2Connection(config)
        self.h2.initiate_connection()
        self.events: list[h2.events.Event] = []
        self.pump()

    def pump(self) -> list[h2.events.Event]:
        """Move bytes both ways until neither side has any to send."""
        new: list[h2.events.Event] = []
        while True:
            sent = self.transport.value()
            self.transport.clear()
            if sent:
                new += self.h2.receive_data(sent)
            reply = self.h2.data_to_send()
            if reply:
                self.client.data_received(reply)
            if not sent and not reply:
                break
        self.events += new
        return new

    def stream_for(self, path: bytes) -> int:
        [stream_id] = [s for s, f in self.requests().items() if f[b":path"] == path]
        return stream_id

    def requests(self) -> dict[int, dict[bytes, bytes]]:
        return {
            e.stream_id: dict(e.headers)
            for e in self.events
            if isinstance(e, h2.events.RequestReceived)
        }

    def body(self, stream_id: int) -> bytes:
        return b"".join(
            e.data
            for e in self.events
            if isinstance(e, h2.events.DataReceived) and e.stream_id == stream_id
        )

    def ended(self, stream_id: int) -> bool:
        return any(
            isinstance(e, h2.events.StreamEnded) and e.stream_id == stream_id for e in self.events
        )

    def resets(self) -> dict[int, int]:
        return {
            e.stream_id: int(e.error_code)
            for e in self.events
            if isinstance(e, h2.events.StreamReset)
        }

    def respond(
        self,
        stream_id: int,
        body: bytes = b"ok",
        *,
        status: bytes = b"200",
        headers: list[tuple[bytes, bytes]] | None = None,
        end: bool = True,
    ) -> None:
        fields = [(b":status", status), *(headers or [])]
        self.h2.send_headers(stream_id, fields, end_stream=not body and end)
        if body:
            self.h2.send_data(stream_id, body, end_stream=end)
        self.pump()


def goaway(server: Server, last_stream_id: int) -> None:
    """Send GOAWAY (NO_ERROR) and go on serving the streams up to last_stream_id.

    h2 closes its own side at once when it sends GOAWAY, so the frame is
    written here by hand.
    """
    server.pump()
    frame = hyperframe.frame.GoAwayFrame(0, last_stream_id=last_stream_id, error_code=0)
    server.client.data_received(frame.serialize())


def make_client(**kwargs: object) -> tuple[MemoryReactor, HTTPClient]:
    reactor = MemoryReactor()
    reactor.hosts["example.test"] = ["192.0.2.10"]
    reactor.hosts["other.test"] = ["192.0.2.20"]
    return reactor, HTTPClient(reactor, **kwargs)  # type: ignore[arg-type]


def connect_h2(reactor: MemoryReactor, index: int = -1) -> Server:
    transport = StringTransport(extra={"ssl_object": FakeSSLObject()})
    protocol = reactor.tls_clients[index].connect(transport)
    assert isinstance(protocol, HTTP11ClientConnection)
    assert isinstance(protocol.h2, H2ClientConnection)
    return Server(protocol, transport)


def close(client: HTTPClient) -> None:
    done = client.close()
    for connection in list(client._connections):
        connection.connection_lost(None)
    success_result_of(done)
    assert client.pool.open_count() == 0
    clock = client.reactor
    assert isinstance(clock, MemoryReactor)
    assert clock.clock.get_delayed_calls() == []


def test_alpn_offers_h2_then_http_1_1(monkeypatch: pytest.MonkeyPatch) -> None:
    offered: list[tuple[str, ...]] = []

    def recording(**kwargs: object) -> object:
        offered.append(tuple(kwargs["alpn"]))  # type: ignore[arg-type]
        return client_context(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("torsion.web._client.client_context", recording)
    _, client = make_client()
    client._tls_context()
    _, plain = make_client(http2=False)
    plain._tls_context()
    assert offered == [("h2", "http/1.1"), ("http/1.1",)]


def test_a_slow_reader_does_not_stall_other_streams() -> None:
    reactor, client = make_client()
    slow = client.get("https://example.test/slow")
    quick = client.get("https://example.test/quick")
    server = connect_h2(reactor)
    slow_id, quick_id = server.stream_for(b"/slow"), server.stream_for(b"/quick")
    server.respond(slow_id, b"", end=False)
    piece = b"x" * 16384
    # Far more than the connection's first window, none of it read.
    for _ in range(40):
        if server.h2.local_flow_control_window(slow_id) < len(piece):
            break
        server.h2.send_data(slow_id, piece)
        server.pump()
    assert server.h2.local_flow_control_window(slow_id) < len(piece)
    assert server.h2.outbound_flow_control_window >= len(piece)
    server.respond(quick_id, piece)
    assert success_result_of(success_result_of(quick).read()) == piece
    success_result_of(slow).close()
    close(client)


def test_a_get_over_h2() -> None:
    reactor, client = make_client()
    d = client.get("https://example.test/a?b=c", headers={"X-Test": "1"})
    server = connect_h2(reactor)
    [(stream_id, fields)] = server.requests().items()
    assert fields[b":method"] == b"GET"
    assert fields[b":scheme"] == b"https"
    assert fields[b":authority"] == b"example.test"
    assert fields[b":path"] == b"/a?b=c"
    assert fields[b"x-test"] == b"1"
    assert b"host" not in fields
    assert server.ended(stream_id)
    assert_no_result(d)
    server.respond(stream_id, b"hello", headers=[(b"content-type", b"text/plain")])
    response = success_result_of(d)
    assert (response.code, response.version, response.alpn) == (200, "HTTP/2", "h2")
    assert response.headers.get(b"content-type") == b"text/plain"
    assert success_result_of(response.read()) == b"hello"
    close(client)


def test_concurrent_requests_share_one_connection() -> None:
    reactor, client = make_client()
    # Issued before the first connection is made: they wait to see whether
    # it speaks HTTP/2 instead of each opening their own.
    ds = [client.get(f"https://example.test/{n}") for n in range(5)]
    assert len(reactor.tls_clients) == 1
    server = connect_h2(reactor)
    requests = server.requests()
    # Streams open in the order the requests were made.
    assert [requests[s][b":path"] for s in sorted(requests)] == [b"/%d" % n for n in range(5)]
    for stream_id, fields in requests.items():
        server.respond(stream_id, fields[b":path"])
    bodies = [success_result_of(success_result_of(d).read()) for d in ds]
    assert bodies == [b"/%d" % n for n in range(5)]
    # And later ones too.
    d = client.get("https://example.test/later")
    server.pump()
    [later] = [s for s in server.requests() if s not in requests]
    server.respond(later)
    assert success_result_of(d).code == 200
    assert len(reactor.tls_clients) == 1
    assert client.pool.open_count() == 1
    close(client)


def connect_limited(reactor: MemoryReactor, max_streams: int) -> Server:
    """Connect to a server allowing ``max_streams`` concurrent streams."""
    transport = StringTransport(extra={"ssl_object": FakeSSLObject()})
    protocol = reactor.tls_clients[-1].connect(transport)
    assert isinstance(protocol, HTTP11ClientConnection)
    server = Server.__new__(Server)
    server.client, server.transport, server.events = protocol, transport, []
    config = h2.config.H2Configuration(client_side=False, header_encoding=None)
    server.h2 = h2.connection.H2Connection(config)
    server.h2.local_settings = h2.settings.Settings(
        client=False, initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_streams}
    )
    server.h2.initiate_connection()
    server.pump()
    return server


def test_the_servers_max_concurrent_streams_opens_another_connection() -> None:
    reactor, client = make_client()
    first = client.get("https://example.test/1")
    server = connect_limited(reactor, 1)
    second = client.get("https://example.test/2")
    assert len(reactor.tls_clients) == 2
    other = connect_h2(reactor)
    [(stream_id, _)] = server.requests().items()
    [(other_id, _)] = other.requests().items()
    server.respond(stream_id)
    other.respond(other_id)
    assert success_result_of(first).code == success_result_of(second).code == 200
    close(client)


def test_with_every_connection_full_a_request_waits_for_a_stream() -> None:
    reactor, client = make_client(max_per_origin=1)
    first = client.get("https://example.test/1")
    server = connect_limited(reactor, 1)
    second = client.get("https://example.test/2")
    third = client.get("https://example.test/3")
    assert len(reactor.tls_clients) == 1
    server.pump()
    assert len(server.requests()) == 1
    server.respond(server.stream_for(b"/1"))
    success_result_of(success_result_of(first).read())
    server.pump()
    server.respond(server.stream_for(b"/2"))
    success_result_of(success_result_of(second).read())
    server.pump()
    server.respond(server.stream_for(b"/3"))
    assert success_result_of(third).code == 200
    assert len(reactor.tls_clients) == 1
    # A waiter when the client closes fails, and leaves nothing behind.
    fourth = client.get("https://example.test/4")
    fifth = client.get("https://example.test/5")
    close(client)
    failure_result_of(fourth, ConnectionResetError)
    failure_result_of(fifth, ClientClosedError)


def test_response_body_flow_control_follows_the_reader() -> None:
    reactor, client = make_client()
    d = client.get("https://example.test/big")
    server = connect_h2(reactor)
    [stream_id] = server.requests()
    server.h2.send_headers(stream_id, [(b":status", b"200")])
    server.pump()
    response = success_result_of(d)
    # The client's windows are its body buffer's high-water mark (256 KiB).
    window = server.h2.local_flow_control_window(stream_id)
    assert window == 256 * 1024
    piece = b"x" * 16384
    # Unread data is acknowledged while the buffer is under its mark...
    for _ in range(16):
        server.h2.send_data(stream_id, piece)
        server.pump()
    assert server.h2.local_flow_control_window(stream_id) == window
    # ...and no longer above it: the server must stop.
    for _ in range(16):
        server.h2.send_data(stream_id, piece)
        server.pump()
    stalled = server.h2.local_flow_control_window(stream_id)
    assert stalled < window - 15 * len(piece)
    # Reading the body opens the window again.
    body = response._exchange.body
    taken = 0
    while body._buffered > 64 * 1024:
        taken += len(success_result_of(body.receive()))
    server.pump()
    assert server.h2.local_flow_control_window(stream_id) == window
    server.h2.end_stream(stream_id)
    server.pump()
    rest = success_result_of(response.read(max_size=10 * 1024 * 1024))
    assert taken + len(rest) == 32 * len(piece)
    close(client)


def test_a_request_body_waits_for_the_servers_window() -> None:
    reactor, client = make_client()
    payload = bytes(range(256)) * 1000  # 256,000 bytes, past the 65,535 default window
    d = client.post("https://example.test/upload", payload)
    server = connect_h2(reactor)
    [(stream_id, fields)] = server.requests().items()
    assert fields[b"content-length"] == b"256000"
    received = server.body(stream_id)
    assert len(received) == 65535
    assert not server.ended(stream_id)
    # The server takes what came: the windows open, the rest flows.
    acknowledged = 0
    for _ in range(100):
        if server.ended(stream_id):
            break
        size = len(server.body(stream_id)) - acknowledged
        assert size > 0, "the client sent nothing into an open window"
        acknowledged += size
        server.h2.increment_flow_control_window(size, stream_id)
        server.h2.increment_flow_control_window(size)
        server.pump()
    assert server.body(stream_id) == payload
    server.respond(stream_id, b"stored")
    assert success_result_of(success_result_of(d).read()) == b"stored"
    close(client)


def test_a_streamed_request_body() -> None:
    reactor, client = make_client()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"one,"
        yield b"two"

    d = client.post("https://example.test/s", chunks())
    server = connect_h2(reactor)
    [(stream_id, fields)] = server.requests().items()
    assert b"content-length" not in fields
    assert server.body(stream_id) == b"one,two"
    assert server.ended(stream_id)
    server.respond(stream_id)
    assert success_result_of(d).code == 200
    close(client)


def test_rst_stream_fails_that_request_only() -> None:
    reactor, client = make_client()
    one = client.get("https://example.test/1")
    two = client.get("https://example.test/2")
    server = connect_h2(reactor)
    first, second = server.stream_for(b"/1"), server.stream_for(b"/2")
    server.h2.reset_stream(first, h2.errors.ErrorCodes.INTERNAL_ERROR)
    server.pump()
    error = failure_result_of(one, StreamResetError)
    assert isinstance(error, StreamResetError)
    assert error.error_code == h2.errors.ErrorCodes.INTERNAL_ERROR
    assert "INTERNAL_ERROR" in str(error)
    server.respond(second)
    assert success_result_of(two).code == 200
    assert not server.transport.closed
    close(client)


def test_goaway_retries_unprocessed_streams_on_a_new_connection() -> None:
    reactor, client = make_client()
    sent = {
        b"/1": client.get("https://example.test/1"),
        b"/2": client.get("https://example.test/2"),
    }
    server = connect_h2(reactor)
    processed, unprocessed = sorted(server.requests())
    done_path = server.requests()[processed][b":path"]
    retried_path = server.requests()[unprocessed][b":path"]
    goaway(server, processed)
    # The stream above the last one processed goes to a new connection...
    assert len(reactor.tls_clients) == 2
    fresh = connect_h2(reactor)
    [(retried, fields)] = fresh.requests().items()
    assert fields[b":path"] == retried_path
    fresh.respond(retried, b"again")
    assert success_result_of(success_result_of(sent[retried_path]).read()) == b"again"
    # ...while the other finishes on the old one, which then closes.
    server.respond(processed, b"first")
    assert success_result_of(success_result_of(sent[done_path]).read()) == b"first"
    assert server.transport.closed
    server.client.connection_lost(None)
    assert client.pool.open_count() == 1
    close(client)


def test_goaway_does_not_retry_a_post() -> None:
    reactor, client = make_client()
    warm = client.get("https://example.test/0")
    server = connect_h2(reactor)
    server.respond(server.stream_for(b"/0"))
    success_result_of(success_result_of(warm).read())
    one = client.get("https://example.test/1")
    two = client.post("https://example.test/2", b"data")
    server.pump()
    first = server.stream_for(b"/1")
    assert first < server.stream_for(b"/2")
    goaway(server, first)
    failure_result_of(two, BadResponseError)
    assert len(reactor.tls_clients) == 1
    server.respond(first)
    assert success_result_of(one).code == 200
    close(client)


def test_a_timeout_resets_only_its_stream() -> None:
    reactor, client = make_client()
    slow = client.get("https://example.test/slow", timeout=5)
    fast = client.get("https://example.test/fast")
    server = connect_h2(reactor)
    first, second = server.stream_for(b"/slow"), server.stream_for(b"/fast")
    reactor.clock.advance(5)
    failure_result_of(slow, TimeoutError)
    server.pump()
    assert server.resets() == {first: h2.errors.ErrorCodes.CANCEL}
    server.respond(second)
    assert success_result_of(fast).code == 200
    assert not server.transport.closed
    close(client)


def test_cancelling_and_closing_a_body_reset_the_stream() -> None:
    reactor, client = make_client()
    d = client.get("https://example.test/1")
    server = connect_h2(reactor)
    [first] = server.requests()
    d.cancel()
    server.pump()
    assert server.resets() == {first: h2.errors.ErrorCodes.CANCEL}
    d2 = client.get("https://example.test/2")
    server.pump()
    [second] = [s for s in server.requests() if s != first]
    server.respond(second, b"partial", end=False)
    response = success_result_of(d2)
    response.close()
    server.pump()
    assert server.resets()[second] == h2.errors.ErrorCodes.CANCEL
    assert not server.transport.closed
    close(client)


def test_a_header_list_over_the_bound_fails_the_request() -> None:
    reactor, client = make_client(core_limits={"max_head_size": 4096})
    d = client.get("https://example.test/")
    server = connect_h2(reactor)
    [stream_id] = server.requests()
    server.respond(stream_id, headers=[(b"x-big", b"a" * 5000)])
    failure_result_of(d, BadResponseError)
    close(client)


def test_redirects_and_cookies_over_h2() -> None:
    reactor, client = make_client(cookies=CookieJar(lambda: 1_000_000.0))
    d = client.get("https://example.test/login")
    server = connect_h2(reactor)
    [first] = server.requests()
    server.respond(
        first,
        b"",
        status=b"302",
        headers=[(b"location", b"/home"), (b"set-cookie", b"session=abc")],
    )
    [(second, fields)] = [(s, f) for s, f in server.requests().items() if s != first]
    assert fields[b":path"] == b"/home"
    assert fields[b"cookie"] == b"session=abc"
    server.respond(second, b"home")
    response: Response = success_result_of(d)
    assert response.history == ["https://example.test/login"]
    assert success_result_of(response.read()) == b"home"
    assert len(reactor.tls_clients) == 1
    close(client)


def test_a_protocol_error_fails_every_stream_and_closes() -> None:
    reactor, client = make_client()
    d = client.get("https://example.test/")
    server = connect_h2(reactor)
    # DATA on stream 0 is a connection error (RFC 9113 section 6.1).
    server.client.data_received(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x")
    failure_result_of(d, BadResponseError)
    assert server.transport.closed
    server.client.connection_lost(None)
    assert client.pool.open_count() == 0
    close(client)


def test_prior_knowledge_on_cleartext() -> None:
    reactor, client = make_client(http2_prior_knowledge=True)
    d = client.get("http://example.test/")
    protocol = reactor.tcp_clients[0].connect()
    assert isinstance(protocol, HTTP11ClientConnection)
    transport = protocol.transport
    assert isinstance(transport, StringTransport)
    assert transport.value().startswith(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    server = Server(protocol, transport)
    [(stream_id, fields)] = server.requests().items()
    assert fields[b":scheme"] == b"http"
    server.respond(stream_id)
    response = success_result_of(d)
    assert (response.version, response.alpn) == ("HTTP/2", None)
    close(client)


def test_closing_the_client_says_goaway() -> None:
    reactor, client = make_client()
    d = client.get("https://example.test/")
    server = connect_h2(reactor)
    [stream_id] = server.requests()
    server.respond(stream_id)
    success_result_of(success_result_of(d).read())
    done: Deferred[None] = client.close()
    server.pump()
    assert any(isinstance(e, h2.events.ConnectionTerminated) for e in server.events)
    assert server.transport.closed
    server.client.connection_lost(None)
    success_result_of(done)
    assert client.pool.open_count() == 0


def test_an_idle_connection_closes_after_idle_timeout() -> None:
    reactor, client = make_client(idle_timeout=30)
    d = client.get("https://example.test/1")
    server = connect_h2(reactor)
    server.respond(server.stream_for(b"/1"))
    success_result_of(success_result_of(d).read())
    reactor.clock.advance(20)
    # A request in between starts the count again.
    d = client.get("https://example.test/2")
    server.pump()
    server.respond(server.stream_for(b"/2"))
    success_result_of(success_result_of(d).read())
    reactor.clock.advance(20)
    open_still = not server.transport.closed
    assert open_still
    reactor.clock.advance(10)
    assert server.transport.closed
    server.client.connection_lost(None)
    assert client.pool.open_count() == 0
    assert reactor.clock.get_delayed_calls() == []
    close(client)


def test_a_refused_stream_is_retried_once() -> None:
    reactor, client = make_client()
    d = client.get("https://example.test/again")
    server = connect_h2(reactor)
    first = server.stream_for(b"/again")
    # RFC 9113 section 8.7: REFUSED_STREAM means nothing was processed.
    server.h2.reset_stream(first, h2.errors.ErrorCodes.REFUSED_STREAM)
    server.pump()
    [second] = [s for s in server.requests() if s != first]
    server.h2.reset_stream(second, h2.errors.ErrorCodes.REFUSED_STREAM)
    server.pump()
    # Once only: the second refusal is the request's error.
    failure_result_of(d, BadResponseError)
    assert len(server.requests()) == 2
    assert not server.transport.closed
    close(client)


def test_reading_stops_while_the_transport_cannot_write() -> None:
    reactor, client = make_client()
    d = client.get("https://example.test/")
    server = connect_h2(reactor)
    # The server sends PINGs and reads none of the answers.
    server.client.pause_writing()
    server.h2.ping(b"12345678")
    server.client.data_received(server.h2.data_to_send())
    assert not server.transport.is_reading()
    server.client.resume_writing()
    assert server.transport.is_reading()
    server.pump()
    server.respond(server.stream_for(b"/"))
    assert success_result_of(d).code == 200
    close(client)
