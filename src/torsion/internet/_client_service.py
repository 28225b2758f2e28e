"""Keeping one client connection up: ``ClientService`` and its retry policy.

``ClientService`` connects through a client endpoint and, whenever the
connection fails or is lost, connects again after a delay its policy sets
(exponential backoff with jitter, capped, by default). Callers ask for the
connection with ``when_connected()``, which waits for the next one if none is
up. Its states::

    stopped -> connecting -> (preparing) -> connected -> waiting -> connecting ...
                  |                            |
                  +-- failed -> waiting -------+-- lost -> waiting
    any state -> stop_service() -> stopped

The clock is the reactor's (or a test's ``Clock``), so retries need no real
time in tests.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from torsion.defer import CancelledError, Deferred, ensure_deferred, succeed
from torsion.internet._address import Address
from torsion.internet._delayed import Clock, DelayedCall

__all__ = ["ClientEndpoint", "ClientService", "ExponentialBackoff", "RetryPolicy"]

P = TypeVar("P", bound=asyncio.BaseProtocol)
P_co = TypeVar("P_co", bound=asyncio.BaseProtocol, covariant=True)

_log = logging.getLogger("torsion.internet")


class ClientEndpoint(Protocol):
    """Something that makes client connections: TCP, TLS, Unix, a host name..."""

    def connect(self, factory: Callable[[Address], P]) -> Deferred[P]:
        """Connect; the Deferred fires with the protocol ``factory`` made.

        Cancelling the Deferred stops the attempt.
        """
        ...


class RetryPolicy(Protocol):
    """How long to wait before the next attempt."""

    def __call__(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failed attempts (0 after a loss)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ExponentialBackoff:
    """Exponential backoff with jitter, capped: the default retry policy.

    The delay after ``n`` failures is ``initial * factor ** n``, at most
    ``maximum``, then stretched by a random fraction of up to ``jitter``
    (so that many clients cut off at once do not all come back at once).

    Attributes:
        initial: Seconds before retrying after a lost connection.
        factor: How much longer each further failure waits.
        maximum: The longest wait, before jitter.
        jitter: The largest random stretch, as a fraction of the delay.
        random: Where the randomness comes from (a function returning
            [0, 1)); tests pass a fixed one.
    """

    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 60.0
    jitter: float = 0.1
    random: Callable[[], float] = random.random

    def __post_init__(self) -> None:
        if self.initial < 0 or self.maximum < 0 or self.factor < 1 or self.jitter < 0:
            raise ValueError(
                "ExponentialBackoff needs initial >= 0, maximum >= 0, factor >= 1, jitter >= 0"
            )

    def __call__(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failed attempts."""
        try:
            delay = min(self.initial * self.factor**failures, self.maximum)
        except OverflowError:
            delay = self.maximum
        return delay * (1 + self.jitter * self.random())


class ClientService(Generic[P]):
    """Keeps one connection to an endpoint up, reconnecting with backoff.

    Args:
        endpoint: Where to connect.
        factory: Makes the protocol for each new connection.
        clock: Times the retries (the reactor).
        retry_policy: The delay before each new attempt; by default
            ``ExponentialBackoff()``.
        prepare_connection: Called with each new protocol before it counts
            as connected (to log in, say); may return an awaitable. If it
            fails, the connection is closed and retried.

    Attributes:
        state: "stopped", "connecting", "preparing", "connected" or "waiting".
    """

    def __init__(
        self,
        endpoint: ClientEndpoint,
        factory: Callable[[Address], P],
        *,
        clock: Clock,
        retry_policy: RetryPolicy | None = None,
        prepare_connection: Callable[[P], Awaitable[object] | object] | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._factory = factory
        self._clock = clock
        self._policy: RetryPolicy = (
            retry_policy if retry_policy is not None else (ExponentialBackoff())
        )
        self._prepare = prepare_connection
        self.state = "stopped"
        self._failures = 0
        self._attempt: Deferred[P] | None = None
        self._preparing: Deferred[object] | None = None
        self._timer: DelayedCall | None = None
        self._protocol: P | None = None
        self._waiters: list[tuple[Deferred[P], int | None]] = []
        self._stopping: Deferred[None] | None = None
        self._was_stopped = False

    @property
    def running(self) -> bool:
        """Whether the service was started and not stopped."""
        return self.state != "stopped"

    # -- the service -----------------------------------------------------------------

    def start_service(self) -> None:
        """Start connecting (and keep connected until stopped).

        Raises:
            RuntimeError: The service is running already.
        """
        if self.running:
            raise RuntimeError(f"{self!r} is running already")
        self._failures = 0
        self._was_stopped = False
        self._connect()

    def stop_service(self) -> Deferred[None]:
        """Stop: cancel an attempt or a pending retry, close the connection.

        Returns:
            A Deferred that fires once the connection (if any) is closed.
            ``when_connected`` waiters fail with ``CancelledError``.
        """
        if self._stopping is not None:
            return _chain(self._stopping)
        state, self.state = self.state, "stopped"
        self._was_stopped = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        for pending in (self._attempt, self._preparing):
            if pending is not None:
                pending.cancel()
        self._attempt = self._preparing = None
        self._fail_waiters(CancelledError(f"{self!r} was stopped"), everyone=True)
        protocol, self._protocol = self._protocol, None
        if protocol is None or state not in ("connected", "preparing"):
            return succeed(None)
        done: Deferred[None] = Deferred()
        self._stopping = done
        transport = getattr(protocol, "transport", None)
        if transport is None:  # pragma: no cover - connected protocols have one
            self._stopping = None
            return succeed(None)
        transport.close()
        return _chain(done)

    def when_connected(self, *, fail_after_failures: int | None = None) -> Deferred[P]:
        """Wait for the connection: at once if it is up, else the next one.

        Args:
            fail_after_failures: Give up (failing with the last attempt's
                error) after this many failed attempts from now; None waits
                for as long as the service runs.

        Returns:
            A Deferred of the connected protocol (asked for before the
            service starts, it waits for the start). It fails with
            ``CancelledError`` if the service was or gets stopped.
        """
        if self.state == "connected" and self._protocol is not None:
            return succeed(self._protocol)
        d: Deferred[P] = Deferred(lambda d: self._forget_waiter(d))
        if self._was_stopped:
            d.errback(CancelledError(f"{self!r} was stopped"))
            return d
        limit = None if fail_after_failures is None else self._failures + fail_after_failures
        self._waiters.append((d, limit))
        return d

    # -- the cycle -----------------------------------------------------------------------

    def _connect(self) -> None:
        self.state = "connecting"
        self._timer = None
        attempt = self._endpoint.connect(self._build)
        self._attempt = attempt
        attempt.add_callbacks(self._made, self._attempt_failed)

    def _build(self, address: Address) -> P:
        protocol = self._factory(address)
        lost = protocol.connection_lost

        def connection_lost(exc: Exception | None) -> None:
            try:
                lost(exc)
            finally:
                self._lost(protocol, exc)

        # Only this instance's method is wrapped; the protocol stays its own.
        protocol.connection_lost = connection_lost  # type: ignore[method-assign]
        return protocol

    def _made(self, protocol: P) -> None:
        self._attempt = None
        if self._prepare is None:
            self._connected(protocol)
            return
        self.state = "preparing"
        self._protocol = protocol
        try:
            outcome = self._prepare(protocol)
        except Exception as exc:
            self._preparation_failed(protocol, exc)
            return
        preparing = _to_deferred(outcome)
        self._preparing = preparing
        preparing.add_callbacks(
            lambda _: self._connected(protocol),
            lambda exc: self._preparation_failed(protocol, exc),
        )

    def _connected(self, protocol: P) -> None:
        self._preparing = None
        if self.state == "stopped":
            return
        self.state = "connected"
        self._protocol = protocol
        self._failures = 0
        waiters, self._waiters = self._waiters, []
        for d, _ in waiters:
            d.callback(protocol)

    def _preparation_failed(self, protocol: P, exc: BaseException) -> None:
        self._preparing = None
        if self.state == "stopped":
            return
        _log.warning("%r: preparing the connection failed: %s", self, exc)
        self._protocol = None
        self.state = "connecting"  # its loss must not count as a second failure
        transport = getattr(protocol, "transport", None)
        if transport is not None:
            transport.abort()
        self._attempt_failed(exc)

    def _attempt_failed(self, exc: BaseException) -> None:
        self._attempt = None
        if self.state == "stopped":
            return
        self._failures += 1
        _log.info("%r: connecting failed (%d in a row): %s", self, self._failures, exc)
        self._fail_waiters(exc, everyone=False)
        self._wait(self._policy(self._failures))

    def _lost(self, protocol: P, exc: Exception | None) -> None:
        if self._stopping is not None:
            done, self._stopping = self._stopping, None
            done.callback(None)
            return
        if protocol is not self._protocol or self.state not in ("connected", "preparing"):
            return
        self._protocol = None
        if self._preparing is not None:
            preparing, self._preparing = self._preparing, None
            preparing.cancel()
            return
        _log.info("%r: connection lost: %s", self, exc or "closed")
        self._wait(self._policy(0))

    def _wait(self, delay: float) -> None:
        self.state = "waiting"
        self._timer = self._clock.call_later(delay, self._connect)

    def _fail_waiters(self, exc: BaseException, *, everyone: bool) -> None:
        keep: list[tuple[Deferred[P], int | None]] = []
        failing: list[Deferred[P]] = []
        for d, limit in self._waiters:
            if everyone or (limit is not None and self._failures >= limit):
                failing.append(d)
            else:
                keep.append((d, limit))
        self._waiters = keep
        for d in failing:
            d.errback(exc)

    def _forget_waiter(self, d: Deferred[P]) -> None:
        self._waiters = [(w, limit) for w, limit in self._waiters if w is not d]

    def __repr__(self) -> str:
        return f"<ClientService {self.state} to {self._endpoint!r}>"


def _chain(d: Deferred[None]) -> Deferred[None]:
    """A new Deferred that fires when ``d`` does, leaving ``d``'s result alone."""
    chained: Deferred[None] = Deferred()

    def fire(result: None) -> None:
        chained.callback(None)
        return result

    d.add_callback(fire)
    return chained


def _to_deferred(outcome: Awaitable[object] | object) -> Deferred[object]:
    if isinstance(outcome, Deferred):
        return outcome
    if inspect.iscoroutine(outcome):
        return ensure_deferred(outcome)
    if inspect.isawaitable(outcome):
        return Deferred.from_future(outcome)
    return succeed(outcome)
