"""WebSocket over HTTP/2 (RFC 8441): extended CONNECT to a WebSocketResource.

Unit tests drive a site on a ``StringTransport`` with h2 as the HTTP/2 client
and wsproto framing the WebSocket inside the stream; one test does the same
over 127.0.0.1 on both loops. No third-party RFC 8441 client is installed
here (curl, nghttp and the ``websockets`` library speak WebSocket over
HTTP/1.1 only), so h2 and wsproto are the client.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import pytest
from _http_server_helpers import BOTH_LOOPS, EchoSockets, Tracked
from hyperframe.frame import HeadersFrame, RstStreamFrame
from test_h2 import Client, Hello, _frames
from wsproto.connection import Connection as WSConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Event, TextMessage
from wsproto.extensions import PerMessageDeflate

from torsion.defer import Deferred
from torsion.internet import Reactor
from torsion.web import H2Channel, Resource, ServerLimits, Site
from torsion.web._websocket import WebSocket, WebSocketResource

T = TypeVar("T")


def connect_headers(
    path: bytes = b"/ws", protocol: bytes = b"websocket", *extra: tuple[bytes, bytes]
) -> list[tuple[bytes, bytes]]:
    return [
        (b":method", b"CONNECT"),
        (b":protocol", protocol),
        (b":scheme", b"http"),
        (b":path", path),
        (b":authority", b"example.test"),
        (b"sec-websocket-version", b"13"),
        *extra,
    ]


class Harness(EchoSockets):
    """An h2 client on a fake connection to a site with a WebSocketResource at /ws."""

    def __init__(self, handler: Any = None, *, limits: ServerLimits | None = None, **options: Any):
        super().__init__()
        self.root = Resource()
        self.client = Client(self.root, limits=limits)
        self.clock = self.client.conn.clock
        self.resource = WebSocketResource(
            handler if handler is not None else self.echo, reactor=self.clock, **options
        )
        self.root.put_child("ws", self.resource)
        self.root.put_child("hello", Hello())
        self.client.receive()
        self.ws = WSConnection(ConnectionType.CLIENT)
        # How many of the client's h2 events were looked at for DATA.
        self.seen = 0

    def open(self, *extra: tuple[bytes, bytes], path: bytes = b"/ws") -> int:
        stream = self.client.h2.get_next_available_stream_id()
        self.client.h2.send_headers(stream, connect_headers(path, b"websocket", *extra))
        self.client.send()
        return stream

    def send(self, stream: int, event: Event) -> None:
        self.client.h2.send_data(stream, self.ws.send(event))
        self.client.send()

    def events(self, stream: int) -> list[Event]:
        """WebSocket events from the DATA received on ``stream`` so far (acknowledged)."""
        self.client.receive()
        fresh = self.client.events[self.seen :]
        self.seen = len(self.client.events)
        for event in fresh:
            if isinstance(event, h2.events.DataReceived) and event.stream_id == stream:
                self.ws.receive_data(event.data)
                self.client.h2.acknowledge_received_data(event.flow_controlled_length or 0, stream)
        self.client.send()
        return list(self.ws.events())

    def stream_events(self, stream: int, kind: type[T]) -> list[T]:
        return [
            e
            for e in self.client.events
            if isinstance(e, kind) and getattr(e, "stream_id", None) == stream
        ]


def _status(harness: Harness, stream: int) -> bytes:
    headers, _, _ = harness.client.response(stream)
    return headers.get(b":status", b"")


def test_the_server_announces_extended_connect() -> None:
    harness = Harness()
    assert harness.client.h2.remote_settings.enable_connect_protocol == 1
    harness.client.lose()


def test_echo_over_a_stream_and_a_clean_close() -> None:
    harness = Harness()
    stream = harness.open()
    headers, _, ended = harness.client.response(stream)
    assert headers[b":status"] == b"200"
    # RFC 8441 section 5: no key, no accept, no Upgrade on HTTP/2.
    assert b"sec-websocket-accept" not in headers
    assert b"upgrade" not in headers
    assert not ended
    [ws] = harness.sockets
    assert ws.request.method == "CONNECT"
    harness.send(stream, TextMessage(data="hello"))
    harness.send(stream, BytesMessage(data=b"\x00\x01"))
    events = harness.events(stream)
    assert [type(e) for e in events] == [TextMessage, BytesMessage]
    assert [e.data for e in events] == ["hello", b"\x00\x01"]  # type: ignore[attr-defined]
    assert harness.received == ["hello", b"\x00\x01"]
    # The client closes; the server echoes the close and ends the stream.
    harness.send(stream, CloseConnection(code=1000, reason="bye"))
    events = harness.events(stream)
    assert isinstance(events[0], CloseConnection)
    assert events[0].code == 1000
    assert harness.ws.state is ConnectionState.CLOSED
    assert harness.stream_events(stream, h2.events.StreamEnded)
    assert ws.close_code == 1000
    assert not ws.open
    assert harness.errors == []
    # The stream is gone from the server: the connection is idle again.
    assert harness.client.server._streams == {}
    assert harness.client.goaway() is None
    harness.client.lose()
    assert harness.clock.get_delayed_calls() == []


def test_subprotocol_and_compression_are_negotiated_as_on_http_1_1() -> None:
    harness = Harness(subprotocols=["chat"])
    stream = harness.open(
        (b"sec-websocket-protocol", b"other, chat"),
        (b"sec-websocket-extensions", b"permessage-deflate"),
    )
    headers, _, _ = harness.client.response(stream)
    assert headers[b":status"] == b"200"
    assert headers[b"sec-websocket-protocol"] == b"chat"
    assert headers[b"sec-websocket-extensions"] == b"permessage-deflate"
    deflate = PerMessageDeflate()
    deflate.finalize("permessage-deflate")
    harness.ws = WSConnection(ConnectionType.CLIENT, extensions=[deflate])
    frame = harness.ws.send(TextMessage(data="z" * 10000))
    assert len(frame) < 1000
    harness.client.h2.send_data(stream, frame)
    harness.client.send()
    [event] = harness.events(stream)
    assert event.data == "z" * 10000  # type: ignore[attr-defined]
    assert harness.sockets[0].subprotocol == "chat"
    harness.client.lose()


@pytest.mark.parametrize(
    ("path", "protocol", "extra", "status"),
    [
        (b"/ws", b"not-websocket", (), b"501"),
        (b"/nowhere", b"websocket", (), b"404"),
        # A resource without a CONNECT handler.
        (b"/hello", b"websocket", (), b"405"),
    ],
    ids=["unknown-protocol", "no-such-resource", "not-a-websocket-resource"],
)
def test_refusals(path: bytes, protocol: bytes, extra: tuple[Any, ...], status: bytes) -> None:
    harness = Harness()
    stream = harness.client.h2.get_next_available_stream_id()
    harness.client.h2.send_headers(stream, connect_headers(path, protocol, *extra))
    harness.client.send()
    assert _status(harness, stream) == status
    assert harness.sockets == []
    assert harness.client.goaway() is None
    harness.client.lose()


def test_an_origin_check_applies_on_http_2_too() -> None:
    seen: list[str | None] = []

    def check(origin: str | None, request: Any) -> bool:
        seen.append(origin)
        return origin == "https://good.test"

    harness = Harness(check_origin=check)
    bad = harness.open((b"origin", b"https://evil.test"))
    assert _status(harness, bad) == b"403"
    good = harness.open((b"origin", b"https://good.test"))
    assert _status(harness, good) == b"200"
    assert seen == ["https://evil.test", "https://good.test"]
    assert len(harness.sockets) == 1
    harness.client.lose()


def test_a_bad_version_gets_426_and_none_400() -> None:
    harness = Harness()
    h2c = harness.client.h2
    bad = h2c.get_next_available_stream_id()
    fields = [f for f in connect_headers() if f[0] != b"sec-websocket-version"]
    h2c.send_headers(bad, [*fields, (b"sec-websocket-version", b"8")])
    harness.client.send()
    headers, _, _ = harness.client.response(bad)
    assert headers[b":status"] == b"426"
    assert headers[b"sec-websocket-version"] == b"13"
    missing = h2c.get_next_available_stream_id()
    h2c.send_headers(missing, fields)
    harness.client.send()
    assert _status(harness, missing) == b"400"
    assert harness.sockets == []
    harness.client.lose()


def test_a_websocket_handshake_by_get_over_http_2_is_refused() -> None:
    harness = Harness()
    stream = harness.client.request(b"/ws")
    # A GET without Upgrade (which HTTP/2 forbids anyway) is no handshake.
    assert _status(harness, stream) == b"426"
    harness.client.lose()


def test_without_the_setting_protocol_is_malformed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(H2Channel, "enable_connect_protocol", False)
    harness = Harness()
    assert harness.client.h2.remote_settings.enable_connect_protocol == 0
    stream = harness.open()
    harness.client.receive()
    [reset] = harness.stream_events(stream, h2.events.StreamReset)
    assert reset.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
    assert harness.sockets == []
    # A stream error only: the connection serves on.
    other = harness.client.request(b"/hello")
    assert _status(harness, other) == b"200"
    harness.client.lose()


def test_sending_waits_for_the_clients_window() -> None:
    sent: list[int] = []

    async def talker(ws: WebSocket) -> None:
        for n in range(4):
            await ws.send(b"m" * 100000)
            sent.append(n)
        await ws.close()

    harness = Harness(talker, compression=False)
    stream = harness.open()
    harness.client.receive()
    # The client's initial window (65535) takes part of the first message;
    # with the second, the stream's queue passes its bound and the handler
    # waits.
    assert sent == [0]
    messages: list[Event] = []
    for _ in range(100):
        # Each round the client reads and reopens the window by as much.
        messages += harness.events(stream)
        if harness.stream_events(stream, h2.events.StreamEnded):
            break
    assert sent == [0, 1, 2, 3]
    data = [e for e in messages if isinstance(e, BytesMessage)]
    assert b"".join(bytes(e.data) for e in data) == b"m" * 400000
    assert any(isinstance(e, CloseConnection) for e in messages)
    harness.client.lose()


def test_a_handler_that_does_not_read_closes_the_clients_window() -> None:
    harness = Harness(lambda ws: Deferred(), max_queue=2, compression=False)
    stream = harness.open()
    harness.client.receive()
    h2c = harness.client.h2
    for _ in range(6):
        if h2c.local_flow_control_window(stream) < 20000:
            break
        harness.send(stream, BytesMessage(data=b"q" * 10000))
        harness.client.receive()
    # Two messages wait for the handler; past them reading pauses and the
    # server stops reopening the window.
    window = h2c.local_flow_control_window(stream)
    assert window < 65535 - 20000
    harness.client.receive()
    assert h2c.local_flow_control_window(stream) == window
    harness.client.lose()


def test_a_client_reset_ends_the_websocket_with_1006() -> None:
    harness = Harness()
    stream = harness.open()
    harness.client.receive()
    [ws] = harness.sockets
    harness.client.h2.reset_stream(stream, h2.errors.ErrorCodes.CANCEL)
    harness.client.send()
    assert ws.close_code == 1006
    assert [e.code for e in harness.errors] == [1006]  # type: ignore[attr-defined]
    assert harness.client.server._streams == {}
    harness.client.lose()
    assert harness.clock.get_delayed_calls() == []


def test_the_clients_end_stream_without_a_close_ends_ours_too() -> None:
    harness = Harness()
    stream = harness.open()
    harness.client.receive()
    [ws] = harness.sockets
    harness.client.h2.end_stream(stream)
    harness.client.send()
    harness.client.receive()
    assert harness.stream_events(stream, h2.events.StreamEnded)
    assert ws.close_code == 1006
    assert harness.client.server._streams == {}
    harness.client.lose()


def test_the_websocket_ends_with_the_connection() -> None:
    harness = Harness()
    harness.open()
    harness.client.receive()
    [ws] = harness.sockets
    harness.client.lose()
    assert ws.close_code == 1006
    assert harness.clock.get_delayed_calls() == []


def test_a_websocket_client_that_opens_no_window_is_reset_after_the_write_timeout() -> None:

    async def talker(ws: WebSocket) -> None:
        while True:
            await ws.send(b"w" * 50000)

    harness = Harness(talker, limits=ServerLimits(write_timeout=10), compression=False)
    stream = harness.open()
    harness.client.receive()
    # The client reads, but never acknowledges: its window stays shut.
    harness.clock.advance(10)
    harness.client.receive()
    [reset] = harness.stream_events(stream, h2.events.StreamReset)
    assert reset.error_code == h2.errors.ErrorCodes.CANCEL
    assert harness.client.server._streams == {}
    assert harness.client.goaway() is None
    harness.client.lose()
    assert harness.clock.get_delayed_calls() == []


def test_a_websocket_stream_counts_against_max_streams() -> None:
    harness = Harness(limits=ServerLimits(max_streams=1))
    harness.client.receive()
    harness.open()
    harness.client.receive()
    assert len(harness.sockets) == 1
    # A second stream, sent past the client's own bookkeeping (it knows the
    # bound), with its encoder so that HPACK stays in step.
    block = harness.client.h2.encoder.encode(connect_headers(b"/hello", b"websocket"))
    harness.client.send(HeadersFrame(3, block, flags=["END_HEADERS"]).serialize())
    frames = [f for f in _frames(harness.client.conn.take()) if isinstance(f, RstStreamFrame)]
    assert [(f.stream_id, f.error_code) for f in frames] == [
        (3, h2.errors.ErrorCodes.REFUSED_STREAM)
    ]
    assert len(harness.sockets) == 1
    harness.client.lose()


# -- on 127.0.0.1 ----------------------------------------------------------------------


@BOTH_LOOPS
async def test_websocket_over_http_2_on_a_real_socket(reactor: Reactor, loop: str) -> None:
    async def echo(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    root = Resource()
    root.put_child("ws", WebSocketResource(echo, reactor=reactor))
    tracked = Tracked(Site(root, reactor=reactor))
    listener = reactor.listen_tcp(0, tracked, interface="127.0.0.1")
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    conn.initiate_connection()
    writer.write(conn.data_to_send())
    ws = WSConnection(ConnectionType.CLIENT)
    big = bytes(range(256)) * 1200  # Several windows' worth each way.
    received: list[Event] = []
    stream = 1
    opened = False
    settings_seen = False

    async def pump() -> list[h2.events.Event]:
        data = await reader.read(65536)
        assert data, "the server closed the connection"
        events = conn.receive_data(data)
        for event in events:
            if isinstance(event, h2.events.DataReceived) and event.stream_id == stream:
                ws.receive_data(event.data)
                conn.acknowledge_received_data(event.flow_controlled_length or 0, stream)
        received.extend(ws.events())
        writer.write(conn.data_to_send())
        return events

    async with asyncio.timeout(10):
        while not settings_seen:
            events = await pump()
            settings_seen = any(isinstance(e, h2.events.RemoteSettingsChanged) for e in events)
        assert conn.remote_settings.enable_connect_protocol == 1
        conn.send_headers(stream, connect_headers())
        writer.write(conn.data_to_send())
        while not opened:
            for event in await pump():
                if isinstance(event, h2.events.ResponseReceived):
                    assert dict(event.headers or [])[b":status"] == b"200"
                    opened = True
        outgoing = ws.send(TextMessage(data="hi")) + ws.send(BytesMessage(data=big))
        while outgoing:
            # Within the server's windows, as they reopen.
            room = min(conn.local_flow_control_window(stream), conn.max_outbound_frame_size)
            if room > 0:
                conn.send_data(stream, outgoing[:room])
                outgoing = outgoing[room:]
                writer.write(conn.data_to_send())
            else:
                await pump()
        while len([e for e in received if isinstance(e, TextMessage | BytesMessage)]) < 2:
            await pump()
        conn.send_data(stream, ws.send(CloseConnection(code=1000)))
        writer.write(conn.data_to_send())
        while not any(isinstance(e, CloseConnection) for e in received):
            await pump()
    texts = [e.data for e in received if isinstance(e, TextMessage)]
    blobs = b"".join(bytes(e.data) for e in received if isinstance(e, BytesMessage))
    assert texts == ["hi"]
    assert blobs == big
    writer.close()
    await writer.wait_closed()
    await listener.stop_listening()
    await tracked.all_ended()
