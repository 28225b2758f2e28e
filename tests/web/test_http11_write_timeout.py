"""The HTTP/1.1 server's write timeout: clients that stop taking what is sent to them."""

from __future__ import annotations

import asyncio

import pytest
from _http_server_helpers import (
    BOTH_LOOPS,
    Endless,
    Tracked,
    connect,
    get,
    read_responses,
    stop_reading,
)

from torsion.internet import Reactor
from torsion.web import Headers, Request, Resource, ServerLimits, Site, handles

LIMITS = ServerLimits(write_timeout=10.0)


class Big(Resource):
    """A response far larger than the fake transport's high-water mark."""

    is_leaf = True

    @handles("GET")
    def get(self, request: Request) -> bytes:
        return b"x" * 100_000


class Chunks(Resource):
    """Streams ``count`` chunks of 4096 bytes, each once the last has drained."""

    is_leaf = True

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count
        self.written = 0

    @handles("GET")
    async def get(self, request: Request) -> None:
        for _ in range(self.count):
            request.write(b"y" * 4096)
            self.written += 1
            await request.drained()
        request.finish()


def _aborts(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "torsion.web" and r.levelname == "INFO" and text in r.getMessage()
    ]


# -- on fakes --------------------------------------------------------------------


def test_a_client_that_reads_nothing_is_aborted_after_the_write_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    conn = connect(Big(), limits=LIMITS)
    conn.transport.set_write_buffer_limits(high=1024)
    conn.send(get())
    assert conn.transport.get_write_buffer_size() > 1024
    conn.clock.advance(9.9)
    assert not conn.transport.closed
    with caplog.at_level("INFO", logger="torsion.web"):
        conn.clock.advance(0.1)
    assert conn.transport.aborted
    assert _aborts(caplog, "read nothing for 10 seconds")
    conn.lose()
    assert conn.clock.get_delayed_calls() == []


def test_a_slow_reader_that_keeps_reading_is_not_cut_off() -> None:
    chunks = Chunks(20)
    conn = connect(chunks, limits=LIMITS)
    conn.transport.set_write_buffer_limits(high=1024)
    conn.send(get())
    received = b""
    # Each chunk waits 9 seconds to be read: 180 seconds in all, far past
    # the write timeout, but never 10 seconds without reading.
    while not received.endswith(b"0\r\n\r\n"):
        conn.clock.advance(9.0)
        assert not conn.transport.closed
        received += conn.take()
    [response] = read_responses(received)
    assert response.complete
    assert response.body == b"y" * 4096 * 20
    assert chunks.written == 20
    conn.lose()


def test_a_pause_that_ends_in_time_restarts_the_wait() -> None:
    conn = connect(Chunks(5), limits=LIMITS)
    conn.transport.set_write_buffer_limits(high=1024)
    conn.send(get())
    conn.clock.advance(9.0)
    conn.take()  # Read at 9 s: the next chunk pauses the transport again.
    assert conn.transport.get_write_buffer_size() > 1024
    # The first pause's deadline (10 s) passes: the second one's is 19 s.
    conn.clock.advance(9.75)
    assert not conn.transport.closed
    conn.clock.advance(0.25)
    assert conn.transport.aborted
    conn.lose()
    assert conn.clock.get_delayed_calls() == []


def test_closing_a_connection_whose_client_never_reads_aborts_it_after_the_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    conn = connect(Big(), limits=LIMITS)
    conn.send(get("/", "Connection: close"))
    # close() waits for the client to take the buffer, which it never does.
    assert conn.transport.closed
    assert not conn.transport.aborted
    conn.clock.advance(9.9)
    assert not conn.transport.aborted
    with caplog.at_level("INFO", logger="torsion.web"):
        conn.clock.advance(0.1)
    assert conn.transport.aborted
    assert _aborts(caplog, "did not take the last response in 10 seconds")
    conn.lose()
    assert conn.clock.get_delayed_calls() == []


def test_a_close_that_completes_in_time_leaves_no_timer() -> None:
    conn = connect(Big(), limits=LIMITS)
    conn.send(get("/", "Connection: close"))
    assert conn.transport.closed
    assert len(conn.responses()) == 1
    conn.lose()
    assert conn.clock.get_delayed_calls() == []
    assert not conn.transport.aborted


class Small(Resource):
    is_leaf = True

    @handles("GET")
    def get(self, request: Request) -> bytes:
        return b"small"


def test_a_keep_alive_request_answered_at_once_arms_nothing_for_writes() -> None:
    conn = connect(Small(), limits=LIMITS)
    for _ in range(3):
        conn.send(get())
        [response] = conn.responses()
        assert response.complete
        # The idle timer alone: no write timer was made.
        assert len(conn.clock.get_delayed_calls()) == 1
    conn.lose()


class Paused(asyncio.Protocol):
    """A protocol switched to, which records its flow-control events."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def pause_writing(self) -> None:
        self.events.append("pause")

    def resume_writing(self) -> None:
        self.events.append("resume")


class Switcher(Resource):
    is_leaf = True

    def __init__(self) -> None:
        super().__init__()
        self.protocol = Paused()

    @handles("GET")
    def get(self, request: Request) -> None:
        answer = Headers([("Upgrade", "echo"), ("Connection", "Upgrade")])
        request.switch_protocols(self.protocol, answer)


def test_a_switched_connection_pausing_is_left_to_its_protocol() -> None:
    switcher = Switcher()
    conn = connect(switcher, limits=LIMITS)
    conn.send(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
    conn.transport.set_write_buffer_limits(high=1024)
    conn.transport.write(b"z" * 4096)
    assert switcher.protocol.events == ["pause"]
    assert conn.clock.get_delayed_calls() == []
    conn.clock.advance(100.0)
    assert not conn.transport.closed
    conn.lose()


# -- on 127.0.0.1 ------------------------------------------------------------------


@BOTH_LOOPS
async def test_a_client_that_stops_reading_is_disconnected_in_time(
    reactor: Reactor, loop: str
) -> None:
    root = Endless()
    tracked = Tracked(Site(root, reactor=reactor, limits=ServerLimits(write_timeout=0.5)))
    listener = reactor.listen_tcp(0, tracked, interface="127.0.0.1")
    await stop_reading(reactor, listener.port, get(), root, tracked)
    await listener.stop_listening()
