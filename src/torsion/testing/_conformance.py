"""A conformance suite for stream transports: what every connection must do.

A transport passes when a protocol sees the same behaviour over it as over
any other: bytes in order, large writes whole, half-close where the
transport offers it, abort, backpressure that pauses and resumes the writer,
and ``connection_lost`` exactly once, last. Each check is a coroutine taking
a ``PairMaker``, which connects a client protocol to a server protocol over
the transport under test; ``transport_checks`` lists them all, so a test can run every
one over TCP, TLS, Unix sockets or the in-memory ``loopback``::

    @pytest.mark.parametrize("check", transport_checks.values(), ids=transport_checks.keys())
    async def test_my_transport(check):
        await check(my_pair_maker)

The checks wait only for the events they expect, never for time.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, cast

from torsion.defer import Deferred

__all__ = ["PairMaker", "RecordingProtocol", "transport_checks"]


class RecordingProtocol(asyncio.Protocol):
    """A protocol that records its events and lets a check wait for them.

    Attributes:
        events: Every callback, in order: "made", "data", "eof", "pause",
            "resume", "lost".
        received: The bytes received so far.
        lost_with: What ``connection_lost`` was given (once lost).
        made, lost: Fire on ``connection_made`` / ``connection_lost``.
        paused, resumed: Fire on the first ``pause_writing`` / the first
            ``resume_writing`` after it.
        keep_open_on_eof: What ``eof_received`` returns.
        reply_on_eof: Written (then the transport closed) on end of input,
            for the half-close check.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.events: list[str] = []
        self.received = bytearray()
        self.lost_with: Exception | None = None
        self.made: Deferred[None] = Deferred()
        self.lost: Deferred[None] = Deferred()
        self.paused: Deferred[None] = Deferred()
        self.resumed: Deferred[None] = Deferred()
        self.got_eof: Deferred[None] = Deferred()
        self.keep_open_on_eof = False
        self.reply_on_eof: bytes | None = None
        self._waiting_for: tuple[int, Deferred[None]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        self.events.append("made")
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)
        self.made.callback(None)

    def data_received(self, data: bytes) -> None:
        """Keep the bytes; wake a check waiting for enough of them."""
        self.events.append("data")
        self.received += data
        waiting = self._waiting_for
        if waiting is not None and len(self.received) >= waiting[0]:
            self._waiting_for = None
            waiting[1].callback(None)

    def eof_received(self) -> bool:
        """Note it; answer and close, or keep open, as configured."""
        self.events.append("eof")
        self.got_eof.callback(None)
        if self.reply_on_eof is not None and self.transport is not None:
            self.transport.write(self.reply_on_eof)
            self.transport.close()
            return True
        return self.keep_open_on_eof

    def pause_writing(self) -> None:
        """Note it."""
        self.events.append("pause")
        if not self.paused.called:
            self.paused.callback(None)

    def resume_writing(self) -> None:
        """Note it."""
        self.events.append("resume")
        if self.paused.called and not self.resumed.called:
            self.resumed.callback(None)

    def connection_lost(self, exc: Exception | None) -> None:
        """Note it, once."""
        self.events.append("lost")
        self.lost_with = exc
        if not self.lost.called:
            self.lost.callback(None)
        waiting, self._waiting_for = self._waiting_for, None
        if waiting is not None:
            waiting[1].errback(
                ConnectionError(f"lost with {len(self.received)} of {waiting[0]} bytes")
            )

    def received_at_least(self, count: int) -> Deferred[None]:
        """Fires once ``count`` bytes have arrived (fails if the connection goes first)."""
        d: Deferred[None] = Deferred()
        if len(self.received) >= count:
            d.callback(None)
        elif self.lost.called:
            d.errback(ConnectionError(f"lost with {len(self.received)} of {count} bytes"))
        else:
            self._waiting_for = (count, d)
        return d

    def assert_lost_once_and_last(self) -> None:
        """``connection_lost`` came exactly once, after everything else."""
        assert self.events.count("lost") == 1, self.events
        assert self.events[-1] == "lost", self.events
        assert self.events[0] == "made", self.events


PairMaker = Callable[
    [Callable[[], RecordingProtocol], Callable[[], RecordingProtocol]],
    Awaitable[tuple[RecordingProtocol, RecordingProtocol]],
]
"""Connects ``client_factory()`` to ``server_factory()`` over the transport under
test; returns ``(client, server)`` once both ``connection_made`` have run.
Called as ``make_pair(server_factory, client_factory)``."""


async def _pair(make_pair: PairMaker) -> tuple[RecordingProtocol, RecordingProtocol]:
    client, server = await make_pair(RecordingProtocol, RecordingProtocol)
    await client.made
    await server.made
    return client, server


def _transport(protocol: RecordingProtocol) -> asyncio.Transport:
    assert protocol.transport is not None
    return protocol.transport


async def _close_both(client: RecordingProtocol, server: RecordingProtocol) -> None:
    _transport(client).close()
    await client.lost
    await server.lost
    client.assert_lost_once_and_last()
    server.assert_lost_once_and_last()


async def check_write_order(make_pair: PairMaker) -> None:
    """Many small writes, by ``write`` and ``writelines``, arrive whole and in order."""
    client, server = await _pair(make_pair)
    expected = bytearray()
    transport = _transport(client)
    for i in range(2000):
        if i % 3 == 0:
            parts = [b"%06d:" % i, b"w\n"]
            transport.writelines(parts)
            expected += b"".join(parts)
        else:
            chunk = b"%06d\n" % i
            transport.write(chunk)
            expected += chunk
    await server.received_at_least(len(expected))
    assert bytes(server.received) == bytes(expected)
    await _close_both(client, server)


async def check_large_write(make_pair: PairMaker) -> None:
    """One write of several megabytes arrives whole, in both directions."""
    data = bytes(range(256)) * (16 * 1024)  # 4 MiB
    client, server = await _pair(make_pair)
    _transport(client).write(data)
    _transport(server).write(data[::-1])
    await server.received_at_least(len(data))
    await client.received_at_least(len(data))
    assert hashlib.sha256(server.received).digest() == hashlib.sha256(data).digest()
    assert hashlib.sha256(client.received).digest() == hashlib.sha256(data[::-1]).digest()
    await _close_both(client, server)


async def check_half_close(make_pair: PairMaker) -> None:
    """After the client's ``write_eof`` the server still answers, then closes.

    A transport that cannot half-close (TLS) must say so with
    ``can_write_eof()`` returning False.
    """
    client, server = await _pair(make_pair)
    transport = _transport(client)
    if not transport.can_write_eof():
        await _close_both(client, server)
        return
    server.reply_on_eof = b"reply after your eof"
    transport.write(b"request")
    transport.write_eof()
    await server.got_eof
    assert bytes(server.received) == b"request"
    await client.received_at_least(len(server.reply_on_eof))
    assert bytes(client.received) == server.reply_on_eof
    await client.lost
    await server.lost
    assert client.lost_with is None
    assert server.lost_with is None
    client.assert_lost_once_and_last()
    server.assert_lost_once_and_last()


async def check_abort(make_pair: PairMaker) -> None:
    """``abort()`` ends the connection at once on this side, and the peer sees it end."""
    client, server = await _pair(make_pair)
    transport = _transport(client)
    transport.write(b"x" * (1024 * 1024))
    transport.abort()
    assert transport.is_closing()
    await client.lost
    await server.lost
    assert client.lost_with is None
    assert len(server.received) <= 1024 * 1024
    client.assert_lost_once_and_last()
    server.assert_lost_once_and_last()


async def check_backpressure(make_pair: PairMaker) -> None:
    """A reader that stops reading pauses the writer; reading again resumes it.

    Nothing is lost meanwhile, and the writer's buffer stays within reach
    of its high-water mark (the writer stops writing when paused).
    """
    client, server = await _pair(make_pair)
    server_transport, transport = _transport(server), _transport(client)
    server_transport.pause_reading()
    chunk = b"b" * 65536
    sent = 0
    limit = 256 * 1024 * 1024  # far past any kernel buffer: the writer must pause first
    while not client.paused.called and sent < limit:
        transport.write(chunk)
        sent += len(chunk)
        if sent % (4 * 1024 * 1024) == 0:
            # Let a real transport flush to the kernel, as a writer would.
            await asyncio.sleep(0)
    assert client.paused.called, f"no pause_writing after {sent} bytes"
    high = transport.get_write_buffer_limits()[1]
    assert transport.get_write_buffer_size() <= high + len(chunk)
    server_transport.resume_reading()
    await client.resumed
    await server.received_at_least(sent)
    assert len(server.received) == sent
    await _close_both(client, server)


async def check_lost_once(make_pair: PairMaker) -> None:
    """Closing from the server side: each end's ``connection_lost`` once, last."""
    client, server = await _pair(make_pair)
    _transport(server).write(b"bye")
    _transport(server).close()
    await client.lost
    await server.lost
    assert bytes(client.received) == b"bye"
    _transport(client).close()  # closing again is harmless
    _transport(server).close()
    client.assert_lost_once_and_last()
    server.assert_lost_once_and_last()
    assert client.lost_with is None
    assert server.lost_with is None


transport_checks: dict[str, Callable[[PairMaker], Awaitable[Any]]] = {
    "write_order": check_write_order,
    "large_write": check_large_write,
    "half_close": check_half_close,
    "abort": check_abort,
    "backpressure": check_backpressure,
    "lost_once": check_lost_once,
}
"""Every check, by name."""
