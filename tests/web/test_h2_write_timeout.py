"""The HTTP/2 server's write timeout: clients that stop reading or never open their windows."""

from __future__ import annotations

import asyncio
import logging
from typing import ClassVar

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import pytest
from _http_server_helpers import BOTH_LOOPS, Endless, Tracked, stop_reading
from test_h2 import Client

from torsion.internet import Listener, Reactor
from torsion.web import Request, Resource, ServerLimits, Site, handles


class Held(Resource):
    """Each request waits for the test (its requests are kept)."""

    is_leaf = True
    requests: ClassVar[list[Request]] = []

    @handles("GET")
    def get(self, request: Request) -> None:
        Held.requests.append(request)


@pytest.fixture(autouse=True)
def _reset() -> None:
    Held.requests = []


def _resets(client: Client) -> dict[int, int]:
    client.receive()
    return {
        event.stream_id or 0: int(event.error_code or 0)
        for event in client.events
        if isinstance(event, h2.events.StreamReset)
    }


def test_a_stream_the_client_opens_no_window_for_is_reset_with_cancel(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = Client(Held(), limits=ServerLimits(write_timeout=10))
    stream = client.request()
    other = client.request(b"/other")
    starved, served = Held.requests
    starved.write(b"a" * 200000)
    _, body, _ = client.response(stream)
    # 65535 bytes fit the window; the rest waits for a WINDOW_UPDATE that
    # never comes, and so does the handler.
    assert len(body) == 65535
    drained = starved.drained()
    failures: list[BaseException] = []
    drained.add_errback(failures.append)
    client.conn.clock.advance(9.9)
    assert _resets(client) == {}
    with caplog.at_level(logging.INFO, logger="torsion.web"):
        client.conn.clock.advance(0.1)
    assert _resets(client) == {stream: h2.errors.ErrorCodes.CANCEL}
    assert len(failures) == 1
    assert isinstance(failures[0], ConnectionResetError)
    assert any("opened no window" in r.getMessage() for r in caplog.records)
    # Only that stream: the connection and the other stream go on.
    served.write(b"fine")
    served.finish()
    client.h2.increment_flow_control_window(65535)
    client.send()
    _, body, ended = client.response(other)
    assert (body, ended) == (b"fine", True)
    assert client.goaway() is None
    assert not client.conn.transport.closed
    client.lose()
    assert client.conn.clock.get_delayed_calls() == []


def test_a_slow_reader_that_keeps_opening_its_window_is_not_cut_off() -> None:
    client = Client(Held(), limits=ServerLimits(write_timeout=10))
    stream = client.request()
    [request] = Held.requests
    request.write(b"b" * 100000)
    request.finish()
    got = len(client.response(stream)[1])
    # 1000 bytes every 8 seconds: far slower than the timeout in total,
    # but each wait is shorter than it.
    for _ in range(20):
        client.conn.clock.advance(8)
        client.h2.increment_flow_control_window(1000, stream_id=stream)
        client.h2.increment_flow_control_window(1000)
        client.send()
        _, body, _ = client.response(stream)
        assert len(body) == got + 1000
        got = len(body)
    assert _resets(client) == {}
    client.h2.increment_flow_control_window(100000, stream_id=stream)
    client.h2.increment_flow_control_window(100000)
    client.send()
    _, body, ended = client.response(stream)
    assert (body, ended) == (b"b" * 100000, True)
    client.lose()
    assert client.conn.clock.get_delayed_calls() == []


def test_a_connection_paused_past_the_timeout_is_aborted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = Client(Held(), limits=ServerLimits(write_timeout=10))
    client.receive()
    client.conn.transport.set_write_buffer_limits(high=1000)
    stream = client.request()
    [request] = Held.requests
    failures: list[BaseException] = []
    request.write(b"c" * 5000)
    request.drained().add_errback(failures.append)
    # The client reads nothing: the transport stays paused.
    assert not client.conn.transport.is_reading()
    client.conn.clock.advance(9.9)
    assert not client.conn.transport.aborted
    with caplog.at_level(logging.INFO, logger="torsion.web"):
        client.conn.clock.advance(0.1)
    assert client.conn.transport.aborted
    assert any("read nothing" in r.getMessage() for r in caplog.records)
    # The transport then reports the loss; the handler's wait fails.
    client.lose()
    assert len(failures) == 1
    assert stream == 1
    assert client.conn.clock.get_delayed_calls() == []


def test_a_pause_that_ends_in_time_starts_the_wait_again() -> None:
    client = Client(Held(), limits=ServerLimits(write_timeout=10))
    client.receive()
    client.conn.transport.set_write_buffer_limits(high=1000)
    stream = client.request()
    [request] = Held.requests
    for _ in range(3):
        request.write(b"d" * 5000)
        assert not client.conn.transport.is_reading()
        client.conn.clock.advance(7)
        # The client reads it all: the transport resumes.
        client.response(stream)
        assert client.conn.transport.is_reading()
    client.conn.clock.advance(7)
    assert not client.conn.transport.aborted
    request.finish()
    _, body, ended = client.response(stream)
    assert (body, ended) == (b"d" * 15000, True)
    client.lose()
    assert client.conn.clock.get_delayed_calls() == []


def test_time_paused_does_not_count_against_a_blocked_stream() -> None:
    client = Client(Held(), limits=ServerLimits(write_timeout=10))
    client.receive()
    # Room on the connection: only the first stream's own window closes.
    client.h2.increment_flow_control_window(100000)
    client.send()
    starved_id = client.request()
    other_id = client.request(b"/other")
    starved, other = Held.requests
    starved.write(b"g" * 70000)
    client.response(starved_id)
    # Blocked on its window from now; 5 seconds on, the transport fills
    # and pauses (the client's WINDOW_UPDATEs are not read meanwhile).
    client.conn.clock.advance(5)
    client.conn.transport.set_write_buffer_limits(high=1000)
    other.write(b"h" * 5000)
    assert not client.conn.transport.is_reading()
    client.conn.clock.advance(7)
    assert _resets(client) == {}
    assert not client.conn.transport.aborted
    # Resumed (the client read it all): the stream's wait starts again.
    client.response(other_id)
    client.conn.clock.advance(9.9)
    assert _resets(client) == {}
    client.conn.clock.advance(0.1)
    assert _resets(client) == {starved_id: h2.errors.ErrorCodes.CANCEL}
    assert not client.conn.transport.aborted
    client.lose()
    assert client.conn.clock.get_delayed_calls() == []


def test_without_the_limit_the_default_applies() -> None:
    client = Client(Held())
    stream = client.request()
    [request] = Held.requests
    request.write(b"e" * 70000)
    client.response(stream)
    client.conn.clock.advance(59)
    assert _resets(client) == {}
    client.conn.clock.advance(1)
    assert _resets(client) == {stream: h2.errors.ErrorCodes.CANCEL}
    client.lose()
    assert client.conn.clock.get_delayed_calls() == []


def test_a_handler_streaming_within_a_read_waits_for_the_transport() -> None:
    class Streamer(Resource):
        is_leaf = True
        writes = 0

        @handles("GET")
        async def get(self, request: Request) -> None:
            for _ in range(100):
                request.write(b"f" * 65536)
                Streamer.writes += 1
                await request.drained()
            request.finish()

    wide = 2**31 - 1
    client = Client(Streamer(), settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: wide})
    client.h2.increment_flow_control_window(wide - 65535)
    client.send()
    client.receive()
    client.conn.transport.set_write_buffer_limits(high=200000)
    # The handler runs within the read that brings the request: with the
    # windows wide open, only the transport's buffer can hold it back.
    stream = client.request()
    assert 1 <= Streamer.writes <= 4
    assert len(client.conn.transport.value()) >= 200000
    _, body, ended = client.response(stream)
    while not ended:
        _, body, ended = client.response(stream)
    assert Streamer.writes == 100
    assert len(body) == 100 * 65536
    client.lose()


# -- on 127.0.0.1 ------------------------------------------------------------------


def _serve(reactor: Reactor, root: Resource, timeout: float) -> tuple[Listener, Tracked]:
    tracked = Tracked(Site(root, reactor=reactor, limits=ServerLimits(write_timeout=timeout)))
    return reactor.listen_tcp(0, tracked, interface="127.0.0.1"), tracked


def _client(
    settings: dict[h2.settings.SettingCodes, int] | None = None,
) -> h2.connection.H2Connection:
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    if settings:
        conn.local_settings = h2.settings.Settings(client=True, initial_values=settings)
    conn.initiate_connection()
    return conn


GET = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a")]


@BOTH_LOOPS
async def test_a_client_that_never_sends_window_update_is_reset_in_time(
    reactor: Reactor, loop: str
) -> None:
    root = Endless()
    listener, tracked = _serve(reactor, root, 0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    conn = _client()
    conn.send_headers(1, GET, end_stream=True)
    writer.write(conn.data_to_send())
    start = reactor.loop.time()
    received = 0
    reset: h2.events.StreamReset | None = None
    async with asyncio.timeout(10):
        while reset is None:
            data = await reader.read(65536)
            assert data, "the server closed the connection instead of resetting the stream"
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    # Counted, never acknowledged: no WINDOW_UPDATE is sent.
                    received += len(event.data or b"")
                elif isinstance(event, h2.events.StreamReset):
                    reset = event
            # SETTINGS and PING acknowledgements only.
            writer.write(conn.data_to_send())
    elapsed = reactor.loop.time() - start
    assert reset.stream_id == 1
    assert reset.error_code == h2.errors.ErrorCodes.CANCEL
    assert received == 65535
    assert 0.4 <= elapsed < 5
    assert isinstance(await asyncio.wait_for(root.stopped.as_future(), 10), ConnectionResetError)
    writer.close()
    await writer.wait_closed()
    await listener.stop_listening()
    await tracked.all_ended()


@BOTH_LOOPS
async def test_a_client_that_stops_reading_is_disconnected_in_time(
    reactor: Reactor, loop: str
) -> None:
    root = Endless()
    listener, tracked = _serve(reactor, root, 0.5)
    # Windows wide open: only the unread socket can stop the server.
    conn = _client({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
    conn.increment_flow_control_window(2**31 - 1 - 65535)
    conn.send_headers(1, GET, end_stream=True)
    await stop_reading(reactor, listener.port, conn.data_to_send(), root, tracked)
    await listener.stop_listening()
