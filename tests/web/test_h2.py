"""Tests for the HTTP/2 server connection on fakes, with h2 itself as the client."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import pytest
from _http_server_helpers import Connection, connect
from hyperframe.frame import ContinuationFrame, HeadersFrame, PingFrame, SettingsFrame

from torsion.defer import Deferred
from torsion.testing import success_result_of
from torsion.web import H2Channel, HTTPChannel, Request, Resource, ServerLimits, handles

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
GET_HEADERS = [
    (b":method", b"GET"),
    (b":scheme", b"http"),
    (b":path", b"/"),
    (b":authority", b"a"),
]


class Hello(Resource):
    is_leaf = True

    @handles("GET", "POST")
    async def get(self, request: Request) -> bytes:
        if request.method == "POST":
            return b"got " + await request.body()
        return b"hello " + request.path + b" " + request.headers.get(b"host", b"")


class Held(Resource):
    """Each request waits for the test (its requests are kept)."""

    is_leaf = True
    requests: ClassVar[list[Request]] = []

    @handles("GET", "POST")
    def get(self, request: Request) -> None:
        Held.requests.append(request)


@pytest.fixture(autouse=True)
def _reset() -> None:
    Held.requests = []


class Client:
    """An h2 client connection talking to a server channel on a StringTransport."""

    def __init__(
        self,
        root: Resource,
        *,
        settings: dict[h2.settings.SettingCodes, int] | None = None,
        **kw: Any,
    ) -> None:
        self.conn: Connection = connect(root, **kw)
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        if settings:
            self.h2.local_settings = h2.settings.Settings(client=True, initial_values=settings)
        self.h2.initiate_connection()
        self.send()
        self.events: list[h2.events.Event] = []

    @property
    def server(self) -> H2Channel:
        channel = self.conn.protocol
        assert isinstance(channel, HTTPChannel)
        assert isinstance(channel.switched_to, H2Channel)
        return channel.switched_to

    def send(self, raw: bytes = b"") -> None:
        # The HTTP/1.1 channel stays the transport's protocol and passes
        # everything on to the HTTP/2 channel it handed the connection to.
        self.conn.protocol.data_received(raw or self.h2.data_to_send())

    def lose(self) -> None:
        """The connection goes (the HTTP/1.1 channel tells the HTTP/2 one)."""
        self.conn.protocol.connection_lost(None)

    def receive(self) -> list[h2.events.Event]:
        events = self.h2.receive_data(self.conn.take())
        self.events += events
        out = self.h2.data_to_send()
        if out and not self.conn.transport.closed:
            self.send(out)
        return events

    def request(
        self, path: bytes = b"/", method: bytes = b"GET", body: bytes | None = None, **more: bytes
    ) -> int:
        stream_id = self.h2.get_next_available_stream_id()
        headers = [
            (b":method", method),
            (b":scheme", b"http"),
            (b":path", path),
            (b":authority", b"example.com"),
            *[(k.encode().replace(b"_", b"-"), v) for k, v in more.items()],
        ]
        self.h2.send_headers(stream_id, headers, end_stream=body is None)
        if body:
            self.h2.send_data(stream_id, body, end_stream=True)
        self.send()
        return stream_id

    def response(self, stream_id: int) -> tuple[dict[bytes, bytes], bytes, bool]:
        """Headers, body and whether the stream ended, from the events so far."""
        self.receive()
        headers: dict[bytes, bytes] = {}
        body = b""
        ended = False
        for event in self.events:
            if getattr(event, "stream_id", None) != stream_id:
                continue
            if isinstance(event, h2.events.ResponseReceived):
                headers = dict(event.headers or [])
            elif isinstance(event, h2.events.DataReceived):
                body += event.data or b""
            elif isinstance(event, h2.events.StreamEnded):
                ended = True
        return headers, body, ended

    def goaway(self) -> int | None:
        self.receive()
        for event in self.events:
            if isinstance(event, h2.events.ConnectionTerminated):
                return int(event.error_code or 0)
        return None


# -- getting to HTTP/2 -------------------------------------------------------------


def test_prior_knowledge_serves_a_request() -> None:
    client = Client(Hello())
    stream = client.request(b"/a?b=1")
    headers, body, ended = client.response(stream)
    assert headers[b":status"] == b"200"
    assert headers[b"content-length"] == b"%d" % len(body)
    assert b"date" in headers
    assert headers[b"server"] == b"torsion"
    assert body == b"hello /a example.com"
    assert ended
    client.lose()


def test_preface_in_pieces_still_hands_over() -> None:
    conn = connect(Hello())
    for index in range(len(PREFACE)):
        conn.send(PREFACE[index : index + 1])
    assert isinstance(conn.protocol.switched_to, H2Channel)
    conn.protocol.connection_lost(None)


def test_http_1_1_is_untouched_by_the_sniffing() -> None:
    conn = connect(Hello())
    conn.send(b"P")
    conn.send(b"OST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi")
    assert b"got hi" in conn.take()
    assert conn.protocol.switched_to is None
    conn.lose()


class _SSLObject:
    def __init__(self, alpn: str | None) -> None:
        self.alpn = alpn

    def selected_alpn_protocol(self) -> str | None:
        return self.alpn


def _tls_connect(root: Resource, alpn: str | None) -> Connection:
    from torsion.testing import Clock, StringTransport
    from torsion.web import Site

    clock = Clock()
    site = Site(root, reactor=clock)
    protocol = site(None)  # type: ignore[arg-type]
    transport = StringTransport(protocol, extra={"ssl_object": _SSLObject(alpn)})
    protocol.connection_made(transport)
    return Connection(site, protocol, transport, clock)


def test_alpn_h2_hands_over_at_once_and_a_bad_preface_gets_goaway() -> None:
    conn = _tls_connect(Hello(), "h2")
    server = conn.protocol.switched_to
    assert isinstance(server, H2Channel)
    conn.take()  # the server's SETTINGS
    server.data_received(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    client = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    client.initiate_connection()
    [event] = client.receive_data(conn.take())
    assert isinstance(event, h2.events.ConnectionTerminated)
    assert event.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
    assert conn.transport.closed
    server.connection_lost(None)


def test_alpn_http_1_1_stays_http_1_1() -> None:
    conn = _tls_connect(Hello(), "http/1.1")
    assert conn.protocol.switched_to is None
    conn.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert conn.take().startswith(b"HTTP/1.1 200 OK")
    conn.lose()


# -- requests and responses ------------------------------------------------------


def test_request_body_and_head() -> None:
    client = Client(Hello())
    posted = client.request(b"/", b"POST", body=b"some body")
    head = client.request(b"/x", b"HEAD")
    _, body, _ = client.response(posted)
    assert body == b"got some body"
    headers, body, ended = client.response(head)
    # HEAD is answered by the GET handler, without the body.
    assert headers[b":status"] == b"200"
    assert headers[b"content-length"] == b"%d" % len(b"hello /x example.com")
    assert body == b""
    assert ended
    client.lose()


def test_head_of_a_get_has_the_length_and_no_data() -> None:
    class Page(Resource):
        is_leaf = True

        @handles("GET")
        def get(self, request: Request) -> bytes:
            return b"twelve bytes"

    client = Client(Page())
    stream = client.request(b"/", b"HEAD")
    headers, body, ended = client.response(stream)
    assert headers[b"content-length"] == b"12"
    assert body == b""
    assert ended
    client.lose()


def test_cookies_are_joined_and_connection_fields_dropped() -> None:
    class Fields(Resource):
        is_leaf = True

        @handles("GET")
        def get(self, request: Request) -> bytes:
            request.response_headers.set(b"Connection", b"close")
            request.response_headers.set(b"X-Kept", b"yes")
            return request.headers.get(b"cookie", b"")

    client = Client(Fields())
    stream = client.h2.get_next_available_stream_id()
    client.h2.send_headers(
        stream,
        [
            (b":method", b"GET"),
            (b":scheme", b"http"),
            (b":path", b"/"),
            (b":authority", b"a"),
            (b"cookie", b"a=1"),
            (b"cookie", b"b=2"),
        ],
        end_stream=True,
    )
    client.send()
    headers, body, _ = client.response(stream)
    assert body == b"a=1; b=2"
    assert b"connection" not in headers
    assert headers[b"x-kept"] == b"yes"
    client.lose()


def test_unread_body_is_bounded_by_the_window_and_released_as_read() -> None:
    limits = ServerLimits(body_buffer=1000)
    client = Client(Held(), limits=limits)
    stream = client.h2.get_next_available_stream_id()
    client.h2.send_headers(
        stream,
        [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a")],
    )
    client.send()
    client.receive()
    # The server's SETTINGS gave the stream a 1000-byte window.
    assert client.h2.local_flow_control_window(stream) == 1000
    client.h2.send_data(stream, b"x" * 1000)
    client.send()
    client.receive()
    [request] = Held.requests
    assert request._body_buffered == 1000
    assert client.h2.local_flow_control_window(stream) == 0
    assert len(success_result_of(request.read())) == 1000
    client.receive()
    # Read: the window opens again.
    assert client.h2.local_flow_control_window(stream) == 1000
    request.finish()
    client.lose()


def test_body_over_max_body_gets_413() -> None:
    client = Client(Hello(), limits=ServerLimits(max_body=10))
    stream = client.request(b"/", b"POST", body=b"x" * 11, content_length=b"11")
    headers, _, _ = client.response(stream)
    assert headers[b":status"] == b"413"
    client.lose()


def test_response_waits_for_the_peers_window_even_when_it_goes_negative() -> None:
    client = Client(Held())
    stream = client.request()
    [request] = Held.requests
    request.write(b"a" * 140000)
    _, body, _ = client.response(stream)
    # The default window is 65535: the rest waits, and so does the handler.
    assert len(body) == 65535
    drained = request.drained()
    assert not drained.called
    # A smaller initial window drives the stream's window below zero.
    client.h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    client.send()
    client.receive()
    assert client.server._conn.local_flow_control_window(stream) < 0
    client.h2.increment_flow_control_window(65535 - 1000 + 2000, stream_id=stream)
    client.h2.increment_flow_control_window(200000)
    client.send()
    _, body, _ = client.response(stream)
    assert len(body) == 65535 + 2000
    assert not drained.called
    request.finish()
    client.h2.increment_flow_control_window(100000, stream_id=stream)
    client.send()
    _, body, ended = client.response(stream)
    assert body == b"a" * 140000
    assert ended
    assert drained.called
    assert client.goaway() is None
    client.lose()


def test_a_handler_waiting_for_drain_when_the_client_leaves_logs_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stopped: list[BaseException] = []

    class Streaming(Resource):
        is_leaf = True

        @handles("GET")
        async def get(self, request: Request) -> None:
            try:
                while True:
                    request.write(b"x" * 70000)
                    await request.drained()
            except ConnectionError as exc:
                stopped.append(exc)
                raise

    client = Client(Streaming())
    client.request()
    client.receive()
    with caplog.at_level(logging.DEBUG, logger="torsion.web"):
        client.server.connection_lost(None)
    assert len(stopped) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_client_reset_fails_the_request_and_abort_resets() -> None:
    client = Client(Held())
    first = client.request(b"/1")
    second = client.request(b"/2")
    one, two = Held.requests
    finished = one.notify_finish()
    client.h2.reset_stream(first)
    client.send()
    assert finished.called
    assert one._lost is not None
    finished.add_errback(lambda f: None)
    two.abort()
    client.receive()
    [reset] = [e for e in client.events if isinstance(e, h2.events.StreamReset)]
    assert reset.stream_id == second
    assert reset.error_code == h2.errors.ErrorCodes.INTERNAL_ERROR
    assert not client.conn.transport.closed
    client.lose()


# -- connection errors and floods --------------------------------------------------


def test_hpack_failure_gets_goaway_compression_error_and_close() -> None:
    client = Client(Hello())
    client.receive()
    # Index 0x7f+ beyond both tables: HPACK cannot decode this block.
    frame = HeadersFrame(1, b"\xff\xff\xff\xff\x0f", flags=["END_HEADERS", "END_STREAM"])
    client.send(frame.serialize())
    assert client.goaway() == h2.errors.ErrorCodes.COMPRESSION_ERROR
    assert client.conn.transport.closed


def test_continuation_flood_gets_goaway_and_close() -> None:
    client = Client(Hello())
    client.receive()
    raw = HeadersFrame(1, b"", flags=["END_STREAM"]).serialize()
    raw += b"".join(ContinuationFrame(1, b"\x00" * 100).serialize() for _ in range(70))
    client.send(raw)
    assert client.goaway() == h2.errors.ErrorCodes.PROTOCOL_ERROR
    assert client.conn.transport.closed


def test_oversized_header_list_gets_enhance_your_calm() -> None:
    client = Client(Hello(), limits=ServerLimits(max_head_bytes=1000))
    client.request(b"/", x_big=b"v" * 2000)
    assert client.goaway() == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    assert client.conn.transport.closed


def test_a_clients_goaway_is_not_answered_with_another() -> None:
    client = Client(Hello())
    client.receive()
    client.h2.close_connection()
    client.send()
    assert client.conn.take() == b""
    assert client.conn.transport.closed


@pytest.mark.parametrize("kind", ["ping", "settings"])
def test_ping_and_settings_floods_get_enhance_your_calm(kind: str) -> None:
    client = Client(Hello())
    client.receive()
    if kind == "ping":
        frame = PingFrame(0, opaque_data=b"12345678").serialize()
    else:
        frame = SettingsFrame(0, settings={h2.settings.SettingCodes.ENABLE_PUSH: 0}).serialize()
    client.send(frame * 100)
    assert client.goaway() == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    assert client.conn.transport.closed


def test_rapid_reset_gets_enhance_your_calm() -> None:
    client = Client(Held(), limits=ServerLimits(max_streams=10))
    client.receive()
    for _ in range(25):
        stream = client.h2.get_next_available_stream_id()
        client.h2.send_headers(stream, GET_HEADERS)
        client.h2.reset_stream(stream)
    client.send()
    assert client.goaway() == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    assert client.conn.transport.closed
    assert all(r._lost is not None for r in Held.requests)


def test_resets_spread_over_time_are_no_flood() -> None:
    client = Client(Held(), limits=ServerLimits(max_streams=10))
    client.receive()
    for _ in range(5):
        for _ in range(15):
            stream = client.h2.get_next_available_stream_id()
            client.h2.send_headers(stream, GET_HEADERS)
            client.h2.reset_stream(stream)
        client.send()
        client.conn.clock.advance(1.0)
    assert client.goaway() is None
    client.lose()


def test_reading_pauses_while_the_output_is_full() -> None:
    client = Client(Hello())
    client.receive()
    client.conn.transport.set_write_buffer_limits(high=100)
    client.send(PingFrame(0, opaque_data=b"12345678").serialize() * 10)
    assert not client.conn.transport.is_reading()
    client.conn.take()
    assert client.conn.transport.is_reading()
    client.lose()


def test_max_concurrent_streams_is_announced() -> None:
    client = Client(Hello(), limits=ServerLimits(max_streams=7))
    client.receive()
    assert client.h2.remote_settings.max_concurrent_streams == 7
    client.lose()


def test_idle_connection_gets_goaway_no_error() -> None:
    client = Client(Hello(), limits=ServerLimits(idle_timeout=5))
    stream = client.request()
    client.response(stream)
    client.conn.clock.advance(5)
    assert client.goaway() == h2.errors.ErrorCodes.NO_ERROR
    assert client.conn.transport.closed
    client.server.connection_lost(None)
    assert client.conn.clock.get_delayed_calls() == []


def test_a_client_that_does_not_read_its_goaway_is_aborted() -> None:
    client = Client(Hello())
    client.receive()
    client.send(PingFrame(0, opaque_data=b"12345678").serialize() * 100)
    assert client.conn.transport.closed
    assert not client.conn.transport.aborted
    client.conn.clock.advance(10)
    assert client.conn.transport.aborted
    client.server.connection_lost(None)
    assert client.conn.clock.get_delayed_calls() == []


def test_delayed_answers_are_flushed_when_they_come() -> None:
    class Later(Resource):
        is_leaf = True
        answers: ClassVar[list[Deferred[bytes]]] = []

        @handles("GET")
        def get(self, request: Request) -> Deferred[bytes]:
            d: Deferred[bytes] = Deferred()
            Later.answers.append(d)
            return d

    client = Client(Later())
    stream = client.request()
    [answer] = Later.answers
    answer.callback(b"late")
    _, body, ended = client.response(stream)
    assert (body, ended) == (b"late", True)
    client.lose()


def _frames(data: bytes) -> list[Any]:
    from hyperframe.frame import Frame

    frames = []
    while data:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        frame.parse_body(memoryview(data[9 : 9 + length]))
        frames.append(frame)
        data = data[9 + length :]
    return frames


def test_streams_past_the_bound_are_refused_not_the_connection() -> None:
    import hpack
    from hyperframe.frame import HeadersFrame as Headers
    from hyperframe.frame import RstStreamFrame

    client = Client(Held(), limits=ServerLimits(max_streams=2))
    client.receive()  # acknowledges the server's SETTINGS
    encoder = hpack.Encoder()

    def open_stream(stream_id: int) -> None:
        block = encoder.encode(GET_HEADERS)
        client.send(Headers(stream_id, block, flags=["END_HEADERS", "END_STREAM"]).serialize())

    open_stream(1)
    open_stream(3)
    client.conn.take()
    open_stream(5)
    [refused] = _frames(client.conn.take())
    assert isinstance(refused, RstStreamFrame)
    assert (refused.stream_id, refused.error_code) == (5, h2.errors.ErrorCodes.REFUSED_STREAM)
    assert len(Held.requests) == 2
    # Once a stream ends, another is served (HPACK stayed in step).
    Held.requests[0].finish()
    open_stream(7)
    assert len(Held.requests) == 3
    assert Held.requests[2].path == b"/"
    assert not client.conn.transport.closed
    client.lose()


def test_trailers_are_ignored_and_the_body_kept() -> None:
    client = Client(Hello())
    stream = client.h2.get_next_available_stream_id()
    client.h2.send_headers(stream, [*GET_HEADERS[1:], (b":method", b"POST")])
    client.h2.send_data(stream, b"body")
    client.h2.send_headers(stream, [(b"x-trailer", b"1")], end_stream=True)
    client.send()
    _, body, _ = client.response(stream)
    assert body == b"got body"
    client.lose()


def test_streamed_body_over_max_body_gets_413() -> None:
    client = Client(Hello(), limits=ServerLimits(max_body=10))
    stream = client.h2.get_next_available_stream_id()
    client.h2.send_headers(stream, [*GET_HEADERS[1:], (b":method", b"POST")])
    client.h2.send_data(stream, b"x" * 11)
    client.send()
    headers, _, ended = client.response(stream)
    assert headers[b":status"] == b"413"
    assert ended
    client.lose()


def test_static_files_are_served_over_http_2(tmp_path: Any) -> None:
    import os

    from torsion.web import File

    data = os.urandom(300_000)
    (tmp_path / "big.bin").write_bytes(data)
    client = Client(File(tmp_path, chunk_size=16384))
    client.h2.increment_flow_control_window(1_000_000)
    client.h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1_000_000})
    client.send()
    client.receive()
    stream = client.request(b"/big.bin")
    for _ in range(100):
        headers, body, ended = client.response(stream)
        if ended:
            break
    assert headers[b":status"] == b"200"
    assert headers[b"content-length"] == b"300000"
    assert body == data
    client.lose()


def test_access_log_and_request_facts() -> None:
    seen: list[str] = []
    client = Client(Hello(), access_log=lambda request: seen.append(request.request_line))
    stream = client.request(b"/logged")
    client.response(stream)
    assert seen == ["GET /logged HTTP/2"]
    client.lose()


def test_a_stalled_body_gets_408_and_a_trickle_keeps_it() -> None:
    class Reader(Resource):
        is_leaf = True
        failures: ClassVar[list[BaseException]] = []

        @handles("POST")
        async def post(self, request: Request) -> bytes:
            try:
                return await request.body()
            except Exception as exc:
                Reader.failures.append(exc)
                raise

    client = Client(Reader(), limits=ServerLimits(body_timeout=10))
    stream = client.h2.get_next_available_stream_id()
    client.h2.send_headers(stream, [*GET_HEADERS[1:], (b":method", b"POST")])
    client.send()
    for _ in range(3):
        client.conn.clock.advance(6)
        client.h2.send_data(stream, b"x")
        client.send()
    headers, _, _ = client.response(stream)
    assert headers == {}
    client.conn.clock.advance(10)
    headers, _, ended = client.response(stream)
    assert headers[b":status"] == b"408"
    assert ended
    assert len(Reader.failures) == 1
    assert not client.conn.transport.closed
    client.lose()
    assert client.conn.clock.get_delayed_calls() == []


@pytest.mark.parametrize("whole", [True, False], ids=["whole", "bytewise"])
def test_a_cleartext_preface_gone_wrong_gets_goaway_and_close(whole: bool) -> None:
    conn = connect(Hello())
    bad = b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"
    if whole:
        conn.send(bad)
    else:
        for index in range(len(bad)):
            conn.protocol.data_received(bad[index : index + 1])
    server = conn.protocol.switched_to
    assert isinstance(server, H2Channel)
    client = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    client.initiate_connection()
    events = client.receive_data(conn.take())
    assert isinstance(events[-1], h2.events.ConnectionTerminated)
    assert events[-1].error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
    assert conn.transport.closed
    server.connection_lost(None)


def _raw_frames() -> dict[str, tuple[bytes, int]]:
    import hpack
    from hyperframe.frame import DataFrame, WindowUpdateFrame

    codes = h2.errors.ErrorCodes
    huge = DataFrame(1, b"x" * 20000, flags=["END_STREAM"]).serialize()
    return {
        "data-on-stream-0": (
            b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x",
            codes.PROTOCOL_ERROR,
        ),
        "window-overflow": (
            WindowUpdateFrame(0, window_increment=2**31 - 1).serialize(),
            codes.FLOW_CONTROL_ERROR,
        ),
        "frame-too-large": (
            HeadersFrame(1, hpack.Encoder().encode(GET_HEADERS), flags=["END_HEADERS"]).serialize()
            + huge,
            codes.FRAME_SIZE_ERROR,
        ),
        "settings-on-a-stream": (
            b"\x00\x00\x00\x04\x00\x00\x00\x00\x01",
            codes.PROTOCOL_ERROR,
        ),
    }


@pytest.mark.parametrize("case", list(_raw_frames()))
def test_connection_errors_get_goaway_with_their_code_and_close(
    case: str, caplog: pytest.LogCaptureFixture
) -> None:
    raw, code = _raw_frames()[case]
    client = Client(Hello())
    client.receive()
    with caplog.at_level(logging.DEBUG, logger="torsion.web"):
        client.send(raw)
    assert client.goaway() == code
    assert client.conn.transport.closed
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    client.lose()
