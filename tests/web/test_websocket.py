"""WebSocketResource: the handshake, the connection's frames and bounds, and a real client.

The connection is taken over through the request's ``switch_protocols``
(the contract written in ``SwitchingRequest``). Unit tests drive a site on a
``StringTransport`` with wsproto as the client.
"""

from __future__ import annotations

import logging
import tracemalloc
from typing import Any

import pytest
from _http_server_helpers import Connection, EchoSockets, connect, read_responses
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection as WSConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Event, Ping, Pong, TextMessage
from wsproto.extensions import PerMessageDeflate

from torsion.defer import Deferred
from torsion.testing import Clock
from torsion.web import Request, Resource
from torsion.web._websocket import (
    WebSocket,
    WebSocketClosedError,
    WebSocketResource,
    websocket_accept,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def handshake(*extra: str, path: str = "/ws", version: str = "13", key: str = KEY) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: example.test",
        "Upgrade: websocket",
        "Connection: keep-alive, Upgrade",
        f"Sec-WebSocket-Key: {key}",
        f"Sec-WebSocket-Version: {version}",
        *extra,
        "",
        "",
    ]
    return "\r\n".join(lines).encode("latin-1")


# -- unit: the handshake ------------------------------------------------------------


def test_accept_value_of_the_rfc_example() -> None:
    # RFC 6455 section 1.3.
    assert websocket_accept(KEY.encode()) == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


class Harness(EchoSockets):
    """A site with one WebSocket resource on a fake connection, and wsproto as the client."""

    def __init__(self, handler: object = None, **options: object) -> None:
        super().__init__()
        self.clock = Clock()
        self.resource = WebSocketResource(
            handler or self.echo,  # type: ignore[arg-type]
            reactor=self.clock,
            **options,  # type: ignore[arg-type]
        )
        root = Resource()
        root.put_child("ws", self.resource)
        self.connection: Connection = connect(root, clock=self.clock)
        self.client = WSConnection(ConnectionType.CLIENT)

    def open(self, *extra: str) -> bytes:
        """Send the handshake; return the head of the 101."""
        self.connection.send(handshake(*extra))
        written = self.connection.take()
        head, _, rest = written.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), written
        # What the handler sent at once, for events() to read.
        self.client.receive_data(rest)
        return head

    @property
    def protocol(self) -> WebSocket:
        protocol = self.connection.protocol.switched_to
        assert isinstance(protocol, WebSocket)
        return protocol

    def send(self, event: Event) -> None:
        self.protocol.data_received(self.client.send(event))

    def lose(self) -> None:
        """The connection goes (told to the WebSocket, which has the transport now)."""
        self.protocol.connection_lost(None)

    def events(self) -> list[Event]:
        self.client.receive_data(self.connection.take())
        return list(self.client.events())


def test_a_handshake_is_answered_101_and_echoes() -> None:
    harness = Harness()
    head = harness.open()
    assert b"\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
    assert b"\r\nUpgrade: websocket" in head
    assert b"\r\nConnection: Upgrade" in head
    assert b"Sec-WebSocket-Protocol" not in head
    harness.send(TextMessage(data="héllo"))
    harness.send(BytesMessage(data=b"\x00\x01"))
    events = harness.events()
    assert [(type(e).__name__, e.data) for e in events] == [  # type: ignore[attr-defined]
        ("TextMessage", "héllo"),
        ("BytesMessage", b"\x00\x01"),
    ]
    assert harness.received == ["héllo", b"\x00\x01"]


def _refusal(request: bytes, **options: object) -> tuple[int, list[tuple[bytes, bytes]]]:
    harness = Harness(**options)
    harness.connection.send(request)
    responses = read_responses(harness.connection.take())
    assert len(responses) == 1
    return responses[0].status, responses[0].headers


def test_a_plain_get_is_told_to_upgrade() -> None:
    status, headers = _refusal(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 426
    assert (b"Upgrade", b"websocket") in headers


@pytest.mark.parametrize(
    "request_bytes",
    [
        handshake(key="short"),
        handshake(key="!" * 24),
        handshake(key="AAAAAAAAAAAAAAAAAAAAAAAAAAAA"),  # 21 bytes, not 16
        handshake("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="),  # two keys
        handshake().replace(b"keep-alive, Upgrade", b"keep-alive"),
        handshake().replace(b"Sec-WebSocket-Version: 13\r\n", b""),
        handshake().replace(b"HTTP/1.1", b"HTTP/1.0"),
    ],
    ids=["short-key", "not-base64", "long-key", "two-keys", "no-connection", "no-version", "1.0"],
)
def test_malformed_handshakes_are_400(request_bytes: bytes) -> None:
    status, _ = _refusal(request_bytes)
    assert status == 400


def test_another_version_is_426_naming_13() -> None:
    status, headers = _refusal(handshake(version="8"))
    assert status == 426
    assert (b"Sec-WebSocket-Version", b"13") in headers


def test_post_is_405() -> None:
    status, _ = _refusal(handshake().replace(b"GET", b"POST", 1))
    assert status == 405


def test_origin_hook_refuses_with_403_and_sees_the_origin() -> None:
    seen: list[str | None] = []

    def check(origin: str | None, request: Request) -> bool:
        seen.append(origin)
        return origin == "https://good.test"

    status, _ = _refusal(handshake("Origin: https://evil.test"), check_origin=check)
    assert status == 403
    harness = Harness(check_origin=check)
    harness.open("Origin: https://good.test")
    assert seen == ["https://evil.test", "https://good.test"]


def test_subprotocol_is_the_first_of_ours_the_client_offers() -> None:
    harness = Harness(subprotocols=["v2.chat", "v1.chat"])
    head = harness.open("Sec-WebSocket-Protocol: v1.chat, v2.chat")
    assert b"\r\nSec-WebSocket-Protocol: v2.chat" in head
    assert harness.sockets[0].subprotocol == "v2.chat"
    other = Harness(subprotocols=["v3"])
    assert b"Sec-WebSocket-Protocol" not in other.open("Sec-WebSocket-Protocol: v1.chat")


def test_permessage_deflate_is_accepted_unless_turned_off() -> None:
    offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"
    head = Harness().open(offer)
    assert b"\r\nSec-WebSocket-Extensions: permessage-deflate" in head
    assert b"Sec-WebSocket-Extensions" not in Harness(compression=False).open(offer)
    assert b"Sec-WebSocket-Extensions" not in Harness().open("Sec-WebSocket-Extensions: x-other")


def test_without_the_switch_hook_the_server_answers_501(monkeypatch: pytest.MonkeyPatch) -> None:
    # A request that cannot switch (another server's, say) gets 501.
    monkeypatch.delattr(Request, "switch_protocols")
    status, _ = _refusal(handshake())
    assert status == 501


# -- unit: the connection -------------------------------------------------------------


def test_pings_are_answered_with_their_payload() -> None:
    harness = Harness()
    harness.open()
    harness.send(Ping(payload=b"are you there"))
    events = harness.events()
    assert len(events) == 1
    assert isinstance(events[0], Pong)
    assert events[0].payload == b"are you there"


def test_our_ping_fires_at_its_pong() -> None:
    harness = Harness()
    harness.open()
    d = harness.sockets[0].ping()
    (ping,) = harness.events()
    assert isinstance(ping, Ping)
    assert not d.called
    harness.send(ping.response())
    assert d.called


def test_fragments_make_one_message() -> None:
    harness = Harness()
    harness.open()
    harness.send(TextMessage(data="ab", message_finished=False))
    harness.send(TextMessage(data="cd", message_finished=False))
    assert harness.received == []
    harness.send(TextMessage(data="e", message_finished=True))
    assert harness.received == ["abcde"]


def test_a_message_too_big_closes_with_1009() -> None:
    harness = Harness(max_message_size=10)
    harness.open()
    harness.send(BytesMessage(data=b"x" * 6, message_finished=False))
    harness.send(BytesMessage(data=b"x" * 6))
    events = harness.events()
    assert isinstance(events[-1], CloseConnection)
    assert events[-1].code == 1009
    assert harness.connection.transport.closed
    harness.lose()
    assert harness.errors[0].code == 1009  # type: ignore[attr-defined]


def test_a_deflate_bomb_is_refused_with_1009() -> None:
    harness = Harness(max_message_size=1000)
    harness.open("Sec-WebSocket-Extensions: permessage-deflate")
    deflate = PerMessageDeflate()
    deflate.finalize("permessage-deflate")
    harness.client = WSConnection(ConnectionType.CLIENT, extensions=[deflate])
    frame = harness.client.send(BytesMessage(data=bytes(20_000_000)))
    assert len(frame) < 100_000
    tracemalloc.start()
    try:
        harness.protocol.data_received(frame)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Inflating stopped at the bound: the 20 MB were never made.
    assert peak < 5_000_000
    (close,) = harness.events()
    assert close.code == 1009  # type: ignore[attr-defined]
    assert harness.received == []


def test_compressed_messages_within_the_bound_arrive() -> None:
    harness = Harness(max_message_size=100_000)
    harness.open("Sec-WebSocket-Extensions: permessage-deflate")
    deflate = PerMessageDeflate()
    deflate.finalize("permessage-deflate")
    harness.client = WSConnection(ConnectionType.CLIENT, extensions=[deflate])
    harness.send(TextMessage(data="a" * 100_000))
    harness.send(TextMessage(data="b" * 10, message_finished=False))
    harness.send(TextMessage(data="c" * 10))
    assert harness.received == ["a" * 100_000, "b" * 10 + "c" * 10]
    assert [e.data for e in harness.events()] == harness.received  # type: ignore[attr-defined]


def test_send_waits_while_the_write_buffer_is_full() -> None:
    sent: list[bool] = []

    async def big(ws: WebSocket) -> None:
        await ws.receive()
        await ws.send(b"x" * 1000)
        sent.append(True)

    harness = Harness(big)
    harness.open()
    transport = harness.connection.transport
    transport.set_write_buffer_limits(high=100, low=10)
    harness.send(TextMessage(data="go"))
    assert transport.get_write_buffer_size() > 1000
    assert sent == []
    harness.connection.take()  # the network took it
    assert sent == [True]


def test_a_client_close_is_echoed_and_the_server_closes_tcp() -> None:
    harness = Harness()
    harness.open()
    harness.send(CloseConnection(code=4001, reason="done"))
    (close,) = harness.events()
    assert isinstance(close, CloseConnection)
    assert close.code == 4001
    assert harness.connection.transport.closed
    assert harness.client.state is ConnectionState.CLOSED
    harness.lose()
    ws = harness.sockets[0]
    assert (ws.close_code, ws.close_reason) == (4001, "done")
    # Iteration ended on a code that is not 1000/1001: the handler saw it raise.
    assert harness.errors[0].code == 4001  # type: ignore[attr-defined]


def test_handler_returning_closes_with_1000_and_waits_for_the_reply() -> None:
    async def hello(ws: WebSocket) -> None:
        await ws.send("hello")

    harness = Harness(hello)
    harness.open()
    events = harness.events()
    assert [type(e) for e in events] == [TextMessage, CloseConnection]
    assert events[1].code == 1000  # type: ignore[attr-defined]
    assert not harness.connection.transport.is_closing()
    harness.send(CloseConnection(code=1000))
    assert harness.connection.transport.is_closing()
    harness.lose()
    assert harness.clock.get_delayed_calls() == []


def test_pings_and_messages_after_our_close_are_taken_quietly() -> None:
    async def leave(ws: WebSocket) -> None:
        await ws.close(1000)

    harness = Harness(leave)
    harness.open()
    # The client has not read our close yet when it sends these.
    harness.send(Ping(payload=b"late"))
    harness.send(TextMessage(data="late too"))
    # No pong may follow our close frame.
    events = harness.events()
    assert [type(e) for e in events] == [CloseConnection]
    harness.send(events[0].response())  # type: ignore[attr-defined]
    assert harness.connection.transport.is_closing()


def test_handler_failing_closes_with_1011(caplog: pytest.LogCaptureFixture) -> None:
    async def broken(ws: WebSocket) -> None:
        raise RuntimeError("boom")

    harness = Harness(broken)
    with caplog.at_level(logging.ERROR, logger="torsion.web.websocket"):
        harness.open()
    (close,) = harness.events()
    assert close.code == 1011  # type: ignore[attr-defined]
    assert "boom" in caplog.text


def test_an_unanswered_close_is_cut_after_close_timeout() -> None:
    async def leave(ws: WebSocket) -> None:
        await ws.close(1000)

    harness = Harness(leave, close_timeout=2.0)
    harness.open()
    harness.clock.advance(1.9)
    assert not harness.connection.transport.closed
    harness.clock.advance(0.2)
    assert harness.connection.transport.aborted


def test_an_idle_connection_is_closed_with_1001() -> None:
    harness = Harness(idle_timeout=30.0, close_timeout=5.0)
    harness.open()
    harness.clock.advance(20)
    harness.send(TextMessage(data="still here"))
    harness.events()
    harness.clock.advance(20)
    assert harness.events() == []
    harness.clock.advance(10.5)
    (close,) = harness.events()
    assert close.code == 1001  # type: ignore[attr-defined]
    harness.clock.advance(5.1)
    assert harness.connection.transport.aborted


def _outcome(d: Deferred[Any]) -> list[object]:
    # What a Deferred fired with so far (its result or its error).
    seen: list[object] = []
    d.add_callbacks(seen.append, seen.append)
    return seen


def test_reading_pauses_while_max_queue_messages_wait() -> None:
    sockets: list[WebSocket] = []

    async def busy(ws: WebSocket) -> None:
        sockets.append(ws)
        await Deferred()  # never reads

    harness = Harness(busy, max_queue=3)
    harness.open()
    transport = harness.connection.transport
    for index in range(2):
        harness.send(TextMessage(data=str(index)))
    assert transport.is_reading()
    harness.send(TextMessage(data="2"))
    assert not transport.is_reading()
    assert _outcome(sockets[0].receive()) == ["0"]
    assert transport.is_reading()
    harness.lose()


def test_connection_lost_fails_a_waiting_receive_and_send() -> None:
    sockets: list[WebSocket] = []
    outcomes: list[object] = []

    async def keep(ws: WebSocket) -> None:
        sockets.append(ws)
        try:
            await ws.receive()
        except WebSocketClosedError as exc:
            outcomes.append(exc.code)
            with pytest.raises(WebSocketClosedError):
                await ws.send("late")
            outcomes.append("send refused")

    harness = Harness(keep)
    harness.open()
    assert outcomes == []
    harness.lose()
    assert outcomes == [1006, "send refused"]
    assert sockets[0].close_code == 1006
    assert not sockets[0].open
    assert harness.clock.get_delayed_calls() == []


# -- properties -------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=8))
def test_any_bytes_after_the_handshake_never_raise_nor_leave_timers(pieces: list[bytes]) -> None:
    harness = Harness(max_message_size=300)
    harness.open()
    for piece in pieces:
        harness.protocol.data_received(piece)
    harness.lose()
    ws = harness.sockets[0]
    assert ws.close_code is not None
    assert harness.clock.get_delayed_calls() == []
