"""The TCP port forwarder: on fakes, then over real connections on both loops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess

import pytest

from torsion.defer import Deferred
from torsion.internet import (
    Forwarder,
    IPv4Address,
    Reactor,
    TCPClientEndpoint,
)
from torsion.protocols import Echo, PortForward
from torsion.testing import StringTransport, require_peer

BOTH_LOOPS = pytest.mark.parametrize(
    "loop",
    [
        pytest.param("asyncio", marks=pytest.mark.torsion_loop("asyncio")),
        pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop")),
    ],
)

CLIENT = IPv4Address("192.0.2.7", 40000)


class Destination:
    """A client endpoint whose connection attempts the test settles by hand."""

    def __init__(self) -> None:
        self.attempts: list[tuple[Deferred[Forwarder], object]] = []
        self.cancelled: list[Deferred[Forwarder]] = []

    def connect(self, factory: object) -> Deferred[Forwarder]:
        attempt: Deferred[Forwarder] = Deferred(self.cancelled.append)
        self.attempts.append((attempt, factory))
        return attempt


def test_data_sent_before_the_destination_answers_is_held_then_sent_first() -> None:
    destination = Destination()
    forward = PortForward(destination)  # type: ignore[arg-type]
    incoming = forward(CLIENT)
    client = StringTransport()
    incoming.connection_made(client)
    assert forward.active == 1
    incoming.data_received(b"early ")
    assert not client.is_reading()  # held, and reading paused meanwhile
    [(attempt, factory)] = destination.attempts
    outgoing = factory(IPv4Address("198.51.100.1", 80))  # type: ignore[operator]
    server = StringTransport()
    outgoing.connection_made(server)
    attempt.callback(outgoing)
    assert server.value() == b"early "
    assert client.is_reading()
    outgoing.data_received(b"reply")
    assert client.value() == b"reply"
    incoming.connection_lost(None)
    assert server.closed
    assert forward.active == 0


def test_an_unreachable_destination_drops_the_client_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    destination = Destination()
    incoming = PortForward(destination)(CLIENT)  # type: ignore[arg-type]
    client = StringTransport()
    incoming.connection_made(client)
    with caplog.at_level(logging.WARNING, "torsion.protocols.portforward"):
        destination.attempts[0][0].errback(ConnectionRefusedError(111, "Connection refused"))
    assert client.aborted
    [record] = caplog.records
    assert "Cannot forward the connection from 192.0.2.7:40000" in record.getMessage()
    assert "Connection refused" in record.getMessage()
    assert record.exc_info is None


def test_a_client_that_leaves_cancels_the_connection_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    destination = Destination()
    forward = PortForward(destination)  # type: ignore[arg-type]
    incoming = forward(CLIENT)
    incoming.connection_made(StringTransport())
    attempt, _ = destination.attempts[0]
    with caplog.at_level(logging.DEBUG, "torsion.protocols.portforward"):
        incoming.connection_lost(ConnectionResetError())
    assert destination.cancelled == [attempt]
    assert caplog.records == []  # the client's choice, nothing to report
    assert forward.active == 0


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@BOTH_LOOPS
async def test_forwards_both_ways_with_half_close_and_backpressure(
    reactor: Reactor, loop: str
) -> None:
    backend = reactor.listen_tcp(0, lambda _: Echo(), interface="127.0.0.1")
    forward = PortForward(TCPClientEndpoint(reactor, "127.0.0.1", backend.port))
    front = reactor.listen_tcp(0, forward, interface="127.0.0.1")
    reader, writer = await asyncio.open_connection("127.0.0.1", front.port)
    payload = os.urandom(4 * 1024 * 1024)  # far more than every buffer on the way holds

    async def send() -> None:
        writer.write(payload)
        await writer.drain()
        writer.write_eof()  # the half-close reaches the echo server through the forwarder

    sending = asyncio.ensure_future(send())
    echoed = await reader.read()  # EOF comes back once the echo server finished
    await sending
    writer.close()
    await writer.wait_closed()
    assert echoed == payload
    await front.stop_listening()
    await backend.stop_listening()


@BOTH_LOOPS
async def test_a_refused_destination_closes_the_client_and_leaks_nothing(
    reactor: Reactor, loop: str, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        closed_port = spare.getsockname()[1]
    forward = PortForward(TCPClientEndpoint(reactor, "127.0.0.1", closed_port))
    front = reactor.listen_tcp(0, forward, interface="127.0.0.1")

    async def refused_round() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", front.port)
        writer.write(b"hello")
        with contextlib.suppress(ConnectionResetError):  # an abort may come as a reset
            assert await reader.read() == b""
        writer.close()
        with contextlib.suppress(ConnectionResetError):
            await writer.wait_closed()

    # uvloop opens one descriptor (on /dev/null) for good at its first failed connect.
    await refused_round()
    before = open_fds()
    with caplog.at_level(logging.WARNING, "torsion.protocols.portforward"):
        for _ in range(3):
            await refused_round()
    for _ in range(100):  # uvloop closes a handle on a later turn of the loop
        if open_fds() == before:
            break
        await asyncio.sleep(0)
    assert forward.active == 0
    assert open_fds() == before
    assert len(caplog.records) == 4  # caplog sees the warm-up round too
    assert all(record.exc_info is None for record in caplog.records)
    await front.stop_listening()


async def test_nc_through_the_forwarder(reactor: Reactor) -> None:
    require_peer("nc", package="netcat-openbsd")
    received: Deferred[bytes] = Deferred()
    chunks = bytearray()

    class Sink(Echo):
        def data_received(self, data: bytes) -> None:
            chunks.extend(data)

        def eof_received(self) -> bool | None:
            self.transport.write(b"got " + str(len(chunks)).encode() + b"\n")
            received.callback(bytes(chunks))
            return super().eof_received()

    backend = reactor.listen_tcp(0, lambda _: Sink(), interface="127.0.0.1")
    front = reactor.listen_tcp(
        0,
        PortForward(TCPClientEndpoint(reactor, "127.0.0.1", backend.port)),
        interface="127.0.0.1",
    )
    payload = b"line\n" * 20000
    process = await asyncio.create_subprocess_exec(
        "nc",
        "-N",
        "127.0.0.1",
        str(front.port),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(process.communicate(payload), 30)
    assert process.returncode == 0
    assert await received == payload
    assert out == f"got {len(payload)}\n".encode()
    await front.stop_listening()
    await backend.stop_listening()
