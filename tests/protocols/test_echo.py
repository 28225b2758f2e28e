"""The echo service, on an in-memory transport and over real TCP."""

from __future__ import annotations

import asyncio

from torsion.internet import Reactor
from torsion.protocols import Echo
from torsion.testing import StringTransport


def test_echo_sends_back_each_chunk_and_half_closes_on_eof() -> None:
    transport = StringTransport()
    echo = Echo()
    echo.connection_made(transport)
    echo.data_received(b"hello ")
    echo.data_received(b"world\n")
    assert transport.value() == b"hello world\n"
    assert echo.eof_received() is None
    assert transport.eof_written


def test_echo_stops_reading_while_the_peer_does_not_read() -> None:
    transport = StringTransport()
    echo = Echo()
    echo.connection_made(transport)
    echo.pause_writing()
    assert not transport.is_reading()
    echo.resume_writing()
    assert transport.is_reading()


async def test_echo_over_tcp(reactor: Reactor) -> None:
    listener = reactor.listen_tcp(0, lambda _: Echo(), interface="127.0.0.1")
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    payload = bytes(range(256)) * 4096  # 1 MiB: more than any socket buffer holds
    writer.write(payload)
    writer.write_eof()
    echoed = await reader.read()
    writer.close()
    await writer.wait_closed()
    await listener.stop_listening()
    assert echoed == payload
