"""``IdleTimeout``: close connections on which nothing has happened for a while.

Activity is data received and, unless told otherwise, data written. The
check costs one clock reading per event: the timer is not moved on every
byte, it fires when the quiet period could first have elapsed and, finding
activity since, sets itself again for the time remaining.

An idle connection is closed (what is buffered is still sent); if it has
not gone away ``grace`` seconds later, because the peer does not read
either, it is aborted.
"""

from __future__ import annotations

import asyncio
import logging

from torsion.internet import (
    Address,
    Clock,
    DelayedCall,
    ProtocolFactory,
    ProtocolWrapper,
    TransportWrapper,
)

__all__ = ["IdleTimeout"]

_log = logging.getLogger("torsion.protocols.policies")


class IdleTimeout:
    """Closes connections idle for ``seconds``.

    Args:
        clock: Tells the time and runs the timers (the reactor).
        seconds: How long a connection may stay idle.
        count_writes: Whether data written counts as activity (else only
            data received does: a server streaming to a silent client then
            times out).
        grace: Seconds between closing an idle connection and aborting it
            if it is still there.
    """

    def __init__(
        self,
        clock: Clock,
        seconds: float,
        *,
        count_writes: bool = True,
        grace: float = 10.0,
    ) -> None:
        if seconds <= 0:
            raise ValueError(f"the idle timeout must be positive, not {seconds}")
        self._clock = clock
        self.seconds = seconds
        self.count_writes = count_writes
        self.grace = grace

    def wrap(self, factory: ProtocolFactory) -> ProtocolFactory:
        """Return a factory whose connections close when idle."""

        def build(address: Address) -> asyncio.BaseProtocol | None:
            protocol = factory(address)
            if protocol is None:
                return None
            return _Idle(protocol, self, address)

        return build

    def __repr__(self) -> str:
        return f"<IdleTimeout {self.seconds:g}s>"


class _WatchedTransport(TransportWrapper):
    """Counts writes as activity."""

    def __init__(self, transport: asyncio.Transport, idle: _Idle) -> None:
        super().__init__(transport, idle)
        self._idle = idle

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._idle.last_active = self._idle.clock.seconds()
        self.wrapped_transport.write(data)


class _Idle(ProtocolWrapper):
    def __init__(self, wrapped: asyncio.BaseProtocol, policy: IdleTimeout, peer: Address) -> None:
        super().__init__(wrapped)
        self._policy = policy
        self.clock = policy._clock
        self._peer = peer
        self.last_active = 0.0
        self._timer: DelayedCall | None = None

    def make_transport(self, transport: asyncio.Transport) -> TransportWrapper:
        if not self._policy.count_writes:
            return super().make_transport(transport)
        return _WatchedTransport(transport, self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.last_active = self.clock.seconds()
        self._timer = self.clock.call_later(self._policy.seconds, self._check)
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.last_active = self.clock.seconds()
        self.wrapped.data_received(data)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        super().connection_lost(exc)

    def _check(self) -> None:
        quiet = self.clock.seconds() - self.last_active
        remaining = self._policy.seconds - quiet
        if remaining > 0:
            self._timer = self.clock.call_later(remaining, self._check)
            return
        _log.info("Closing the connection from %s: idle for %gs", self._peer, self._policy.seconds)
        self.transport.close()
        self._timer = self.clock.call_later(self._policy.grace, self._abort)

    def _abort(self) -> None:
        self._timer = None
        _log.info("Aborting the connection from %s: it did not close", self._peer)
        self.transport.abort()
