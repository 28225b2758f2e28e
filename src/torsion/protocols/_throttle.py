"""``Throttle``: bandwidth limits, read and write, per connection and in total.

Each limit is a token bucket (``TokenBucket``): ``rate`` bytes a second,
with up to ``burst`` bytes of credit saved up. Reading takes from it after
the fact: once a connection's reads put a bucket in debt, the connection
stops reading until the debt is paid off. Writing takes from it before:
what the protocol writes is queued in the throttle and let out as the
buckets allow, at most a burst at a time; while the queue is above its
high-water mark the protocol gets ``pause_writing``, as it would from a
transport whose buffer is full, so a well-behaved protocol's memory stays
bounded.

Total limits are buckets shared by every connection of the wrapped
factories, so that a server as a whole keeps to a rate.
"""

from __future__ import annotations

import asyncio
import collections
import ssl

from torsion.internet import (
    Address,
    Clock,
    DelayedCall,
    ProtocolFactory,
    ProtocolWrapper,
    TransportWrapper,
)

__all__ = ["Throttle", "TokenBucket"]

# What the throttle's own write queue may hold before the protocol is paused,
# and how far it must drain before it is resumed (asyncio's defaults).
_QUEUE_HIGH = 64 * 1024
_QUEUE_LOW = 16 * 1024

# Shortest wait between two releases, so that a slow rate does not turn
# into a timer per byte.
_MIN_WAIT = 0.01


class TokenBucket:
    """A rate limit: ``rate`` tokens a second, up to ``burst`` saved.

    A token is a byte here. ``take`` may overdraw the bucket; ``wait``
    then tells how long until it is out of debt.

    Args:
        clock: Tells the time.
        rate: Tokens added per second.
        burst: The most tokens the bucket holds (``rate``, one second's
            worth, if None).
    """

    def __init__(self, clock: Clock, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError(f"the rate must be positive, not {rate}")
        self._clock = clock
        self.rate = float(rate)
        self.burst = float(rate if burst is None else burst)
        if self.burst <= 0:
            raise ValueError(f"the burst must be positive, not {burst}")
        self._tokens = self.burst
        self._then = clock.seconds()

    def tokens(self) -> float:
        """Return the tokens available now (negative when in debt)."""
        now = self._clock.seconds()
        self._tokens = min(self.burst, self._tokens + (now - self._then) * self.rate)
        self._then = now
        return self._tokens

    def take(self, amount: float) -> None:
        """Take ``amount`` tokens, going into debt if there are not enough."""
        self._tokens = self.tokens() - amount

    def wait(self, need: float = 0.0) -> float:
        """Return the seconds until the bucket holds ``need`` tokens (0 if it does)."""
        missing = need - self.tokens()
        return max(0.0, missing / self.rate)

    def __repr__(self) -> str:
        return f"<TokenBucket {self.rate:g}/s burst {self.burst:g}>"


class Throttle:
    """Bandwidth limits for the connections of the factories it wraps.

    Rates are in bytes a second; None means no limit of that kind.

    Args:
        clock: Tells the time and runs the timers (the reactor).
        read_rate: Each connection's limit on reading.
        write_rate: Each connection's limit on writing.
        total_read_rate: The limit on reading over every connection.
        total_write_rate: The limit on writing over every connection.
        burst: Bytes of credit each bucket saves (one second's worth of its
            rate if None).
    """

    def __init__(
        self,
        clock: Clock,
        *,
        read_rate: float | None = None,
        write_rate: float | None = None,
        total_read_rate: float | None = None,
        total_write_rate: float | None = None,
        burst: float | None = None,
    ) -> None:
        self._clock = clock
        self.read_rate = read_rate
        self.write_rate = write_rate
        self.burst = burst
        self.total_read = (
            None if total_read_rate is None else TokenBucket(clock, total_read_rate, burst)
        )
        self.total_write = (
            None if total_write_rate is None else TokenBucket(clock, total_write_rate, burst)
        )

    def wrap(self, factory: ProtocolFactory) -> ProtocolFactory:
        """Return a factory whose connections keep to the limits."""

        def build(address: Address) -> asyncio.BaseProtocol | None:
            protocol = factory(address)
            if protocol is None:
                return None
            read = self._buckets(self.read_rate, self.total_read)
            write = self._buckets(self.write_rate, self.total_write)
            return _Throttled(protocol, read, write, self._clock)

        return build

    def _buckets(self, rate: float | None, total: TokenBucket | None) -> tuple[TokenBucket, ...]:
        own = () if rate is None else (TokenBucket(self._clock, rate, self.burst),)
        return own + (() if total is None else (total,))

    def __repr__(self) -> str:
        return f"<Throttle read={self.read_rate} write={self.write_rate}>"


def _wait(buckets: tuple[TokenBucket, ...], need: float = 0.0) -> float:
    return max(bucket.wait(need) for bucket in buckets)


class _ThrottledTransport(TransportWrapper):
    """Queues writes and lets them out as the write buckets allow."""

    def __init__(self, transport: asyncio.Transport, throttled: _Throttled) -> None:
        super().__init__(transport, throttled)
        self._throttled = throttled

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._throttled.queue_write(bytes(data))

    async def start_tls(
        self,
        context: ssl.SSLContext,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
        handshake_timeout: float | None = None,
    ) -> TransportWrapper:
        # What is queued was written before the upgrade: it must reach the
        # peer in clear, before the handshake, whatever the rate says.
        self._throttled.flush_now()
        return await super().start_tls(
            context,
            server_side=server_side,
            server_hostname=server_hostname,
            handshake_timeout=handshake_timeout,
        )

    def write_eof(self) -> None:
        self._throttled.finish("eof")

    def close(self) -> None:
        self._throttled.finish("close")

    def abort(self) -> None:
        self._throttled.drop_queue()
        self.wrapped_transport.abort()

    def is_closing(self) -> bool:
        return self._throttled.finishing == "close" or self.wrapped_transport.is_closing()

    def get_write_buffer_size(self) -> int:
        return self._throttled.queued + self.wrapped_transport.get_write_buffer_size()

    def pause_reading(self) -> None:
        self._throttled.set_reading(by_protocol=False)

    def resume_reading(self) -> None:
        self._throttled.set_reading(by_protocol=True)

    def is_reading(self) -> bool:
        return self._throttled.protocol_reading and not self.wrapped_transport.is_closing()


class _Throttled(ProtocolWrapper):
    def __init__(
        self,
        wrapped: asyncio.BaseProtocol,
        read: tuple[TokenBucket, ...],
        write: tuple[TokenBucket, ...],
        clock: Clock,
    ) -> None:
        super().__init__(wrapped)
        self._read = read
        self._write = write
        self._clock = clock
        # Reading: the protocol's wish and the throttle's, both must agree.
        self.protocol_reading = True
        self._read_debt = False
        self._read_timer: DelayedCall | None = None
        # Writing: the queue, and who has paused the protocol.
        self._queue: collections.deque[bytes] = collections.deque()
        self.queued = 0
        self._write_timer: DelayedCall | None = None
        self._transport_full = False
        self._protocol_paused = False
        self.finishing: str | None = None
        self._lost = False

    def make_transport(self, transport: asyncio.Transport) -> TransportWrapper:
        return _ThrottledTransport(transport, self)

    # -- reading ------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.wrapped.data_received(data)  # type: ignore[attr-defined]
        if not self._read or self._lost:
            return
        for bucket in self._read:
            bucket.take(len(data))
        delay = _wait(self._read)
        if delay > 0 and self._read_timer is None:
            self._read_debt = True
            self._apply_reading()
            self._read_timer = self._clock.call_later(max(delay, _MIN_WAIT), self._read_again)

    def _read_again(self) -> None:
        self._read_timer = None
        delay = _wait(self._read)
        if delay > 0:
            self._read_timer = self._clock.call_later(max(delay, _MIN_WAIT), self._read_again)
            return
        self._read_debt = False
        self._apply_reading()

    def set_reading(self, *, by_protocol: bool) -> None:
        self.protocol_reading = by_protocol
        self._apply_reading()

    def _apply_reading(self) -> None:
        transport = self.transport
        if transport.is_closing():
            return
        if self.protocol_reading and not self._read_debt:
            transport.resume_reading()
        else:
            transport.pause_reading()

    # -- writing ------------------------------------------------------------------------

    def queue_write(self, data: bytes) -> None:
        if not data or self.finishing is not None or self._lost:
            return
        if not self._write:
            self.transport.write(data)
            return
        self._queue.append(data)
        self.queued += len(data)
        self._release()

    def finish(self, how: str) -> None:
        if self.finishing == "close" or self._lost:
            return
        self.finishing = how
        self._release()

    def flush_now(self) -> None:
        """Write everything queued at once, taking the buckets into debt."""
        while self._queue:
            chunk = self._queue.popleft()
            self.queued -= len(chunk)
            for bucket in self._write:
                bucket.take(len(chunk))
            self.transport.write(chunk)
        self._update_pause()

    def drop_queue(self) -> None:
        self._queue.clear()
        self.queued = 0
        self._cancel_timers()

    def _release(self) -> None:
        """Write what the buckets allow; come back for the rest."""
        if self._write_timer is not None:
            self._update_pause()
            return
        if self._write:
            while self._queue:
                allowance = min(bucket.tokens() for bucket in self._write)
                if allowance < 1:
                    break
                head = self._queue[0]
                if len(head) <= allowance:
                    self._queue.popleft()
                    chunk = head
                else:
                    chunk = head[: int(allowance)]
                    self._queue[0] = head[int(allowance) :]
                self.queued -= len(chunk)
                for bucket in self._write:
                    bucket.take(len(chunk))
                self.transport.write(chunk)
        if self._queue:
            need = min(float(self.queued), min(bucket.burst for bucket in self._write))
            delay = max(_wait(self._write, need), _MIN_WAIT)
            self._write_timer = self._clock.call_later(delay, self._released)
        elif self.finishing == "eof":
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.finishing = None
        elif self.finishing == "close":
            self.transport.close()
        self._update_pause()

    def _released(self) -> None:
        self._write_timer = None
        self._release()

    def pause_writing(self) -> None:
        self._transport_full = True
        self._update_pause()

    def resume_writing(self) -> None:
        self._transport_full = False
        self._update_pause()

    def _update_pause(self) -> None:
        if self._protocol_paused:
            full = self._transport_full or self.queued > _QUEUE_LOW
        else:
            full = self._transport_full or self.queued > _QUEUE_HIGH
        if full and not self._protocol_paused:
            self._protocol_paused = True
            self.wrapped.pause_writing()
        elif not full and self._protocol_paused and not self._lost:
            self._protocol_paused = False
            self.wrapped.resume_writing()

    # -- the end ------------------------------------------------------------------------

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self.drop_queue()
        super().connection_lost(exc)

    def _cancel_timers(self) -> None:
        for timer in (self._read_timer, self._write_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._read_timer = self._write_timer = None

    def __repr__(self) -> str:
        return f"<Throttled {self.wrapped!r}, {self.queued} bytes queued>"
