"""ClientService on a fake clock and a scripted endpoint; ExponentialBackoff."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from torsion.defer import CancelledError, Deferred, succeed
from torsion.internet import (
    Address,
    ClientService,
    ExponentialBackoff,
    HostnameEndpoint,
    IPv4Address,
    Protocol,
    Reactor,
)
from torsion.testing import (
    Clock,
    StringTransport,
    assert_no_result,
    failure_result_of,
    success_result_of,
)

Wait = Callable[..., Any]

SERVER = IPv4Address("192.0.2.1", 6667)


class ScriptedEndpoint:
    """A client endpoint whose attempts the test answers one by one."""

    def __init__(self) -> None:
        self.attempts: list[tuple[Deferred[Any], Callable[[Address], Any]]] = []
        self.cancelled = 0

    def connect(self, factory: Callable[[Address], Any]) -> Deferred[Any]:
        d: Deferred[Any] = Deferred(lambda _: self._cancelled())
        self.attempts.append((d, factory))
        return d

    def _cancelled(self) -> None:
        self.cancelled += 1

    def succeed(self) -> tuple[Any, StringTransport]:
        d, factory = self.attempts[-1]
        protocol = factory(SERVER)
        transport = StringTransport()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        d.callback(protocol)
        return protocol, transport

    def fail(self, exc: BaseException | None = None) -> None:
        d, _ = self.attempts[-1]
        d.errback(exc or ConnectionRefusedError("refused"))


class Client(Protocol):
    def __init__(self) -> None:
        self.lost: list[Exception | None] = []

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.lost.append(exc)


def no_jitter(**kwargs: float) -> ExponentialBackoff:
    return ExponentialBackoff(random=lambda: 0.0, **kwargs)


def make(
    **kwargs: Any,
) -> tuple[ClientService[Client], ScriptedEndpoint, Clock]:
    endpoint = ScriptedEndpoint()
    clock = Clock()
    kwargs.setdefault("retry_policy", no_jitter())
    service = ClientService(endpoint, lambda _: Client(), clock=clock, **kwargs)
    return service, endpoint, clock


def lose(transport: StringTransport, exc: Exception | None = None) -> None:
    transport.get_protocol().connection_lost(exc)


def test_exponential_backoff_grows_caps_and_jitters() -> None:
    policy = no_jitter(initial=1.0, factor=2.0, maximum=10.0)
    assert [policy(n) for n in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert policy(10_000) == 10.0  # no overflow
    jittered = ExponentialBackoff(initial=2.0, jitter=0.5, random=lambda: 0.5)
    assert jittered(0) == 2.5
    with pytest.raises(ValueError, match="factor >= 1"):
        ExponentialBackoff(factor=0.5)


def test_connects_on_start_and_when_connected_fires() -> None:
    service, endpoint, _ = make()
    waiting = service.when_connected()
    service.start_service()
    assert service.state == "connecting"
    assert_no_result(waiting)
    protocol, _ = endpoint.succeed()
    assert success_result_of(waiting) is protocol
    assert service.state == "connected"
    assert success_result_of(service.when_connected()) is protocol


def test_failures_back_off_exponentially_then_connect() -> None:
    service, endpoint, clock = make()
    service.start_service()
    endpoint.fail()
    assert service.state == "waiting"
    assert [c.time for c in clock.get_delayed_calls()] == [2.0]  # 1 * 2**1
    clock.advance(2.0)
    assert len(endpoint.attempts) == 2
    endpoint.fail()
    assert [c.time - clock.seconds() for c in clock.get_delayed_calls()] == [4.0]
    clock.advance(4.0)
    protocol, _ = endpoint.succeed()
    assert success_result_of(service.when_connected()) is protocol
    assert clock.get_delayed_calls() == []


def test_a_lost_connection_is_replaced_after_the_initial_delay() -> None:
    service, endpoint, clock = make()
    service.start_service()
    first, transport = endpoint.succeed()
    lose(transport, ConnectionResetError("gone"))
    assert isinstance(first.lost[0], ConnectionResetError)  # the protocol's own method ran
    assert service.state == "waiting"
    waiting = service.when_connected()
    clock.advance(1.0)
    second, _ = endpoint.succeed()
    assert second is not first
    assert success_result_of(waiting) is second


def test_when_connected_can_give_up_after_failures() -> None:
    service, endpoint, clock = make()
    service.start_service()
    patient = service.when_connected()
    impatient = service.when_connected(fail_after_failures=2)
    endpoint.fail(ConnectionRefusedError("one"))
    assert_no_result(impatient)
    clock.advance(2.0)
    endpoint.fail(ConnectionRefusedError("two"))
    assert str(failure_result_of(impatient, ConnectionRefusedError)) == "two"
    assert_no_result(patient)
    clock.advance(4.0)
    protocol, _ = endpoint.succeed()
    assert success_result_of(patient) is protocol


def test_prepare_connection_runs_before_the_connection_counts() -> None:
    prepared: list[Client] = []
    ready: Deferred[None] = Deferred()

    def prepare(protocol: Client) -> Deferred[None]:
        prepared.append(protocol)
        return ready

    service, endpoint, _ = make(prepare_connection=prepare)
    service.start_service()
    waiting = service.when_connected()
    protocol, _ = endpoint.succeed()
    assert prepared == [protocol]
    assert service.state == "preparing"
    assert_no_result(waiting)
    ready.callback(None)
    assert success_result_of(waiting) is protocol


def test_a_failed_preparation_closes_and_retries() -> None:
    def prepare(protocol: Client) -> Deferred[None]:
        raise PermissionError("login refused")

    service, endpoint, clock = make(prepare_connection=prepare)
    service.start_service()
    waiting = service.when_connected(fail_after_failures=1)
    _, transport = endpoint.succeed()
    assert transport.aborted
    failure_result_of(waiting, PermissionError)
    assert service.state == "waiting"
    lose(transport)  # the aborted connection's end does not count again
    assert len(clock.get_delayed_calls()) == 1


def test_an_async_preparation_is_awaited() -> None:
    async def prepare(protocol: Client) -> None:
        await succeed(None)

    service, endpoint, _ = make(prepare_connection=prepare)
    service.start_service()
    protocol, _ = endpoint.succeed()
    assert success_result_of(service.when_connected()) is protocol


def test_stop_while_connected_closes_and_waits_for_the_close() -> None:
    service, endpoint, clock = make()
    service.start_service()
    _, transport = endpoint.succeed()
    stopped = service.stop_service()
    assert transport.closed
    assert_no_result(stopped)
    lose(transport)
    assert success_result_of(stopped) is None
    assert service.state == "stopped"
    assert clock.get_delayed_calls() == []  # no reconnection
    failure_result_of(service.when_connected(), CancelledError)


def test_stop_while_connecting_cancels_the_attempt_and_the_waiters() -> None:
    service, endpoint, clock = make()
    service.start_service()
    waiting = service.when_connected()
    assert success_result_of(service.stop_service()) is None
    assert endpoint.cancelled == 1
    failure_result_of(waiting, CancelledError)
    assert clock.get_delayed_calls() == []


def test_stop_while_waiting_cancels_the_retry() -> None:
    service, endpoint, clock = make()
    service.start_service()
    endpoint.fail()
    assert success_result_of(service.stop_service()) is None
    assert clock.get_delayed_calls() == []
    service.start_service()  # and it can start again
    assert len(endpoint.attempts) == 2


def test_start_twice_is_an_error() -> None:
    service, _, _ = make()
    service.start_service()
    with pytest.raises(RuntimeError, match="running already"):
        service.start_service()
    service.stop_service()


def test_cancelling_a_waiter_forgets_it() -> None:
    service, endpoint, _ = make()
    service.start_service()
    waiting = service.when_connected()
    waiting.cancel()
    failure_result_of(waiting, CancelledError)
    endpoint.succeed()  # nothing left to fire


# -- over real sockets ------------------------------------------------------------------


class Greeter(Protocol):
    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.transport.write(b"hi")
        self.transport.close()


def test_reconnects_to_a_real_server(real_reactor: Reactor, wait: Wait) -> None:
    """The server says hi and hangs up; the service comes back each time."""
    r = real_reactor
    accepted: list[Greeter] = []
    third: Deferred[None] = Deferred()

    def factory(_: Address) -> Greeter:
        accepted.append(Greeter())
        if len(accepted) == 3:
            third.callback(None)
        return accepted[-1]

    listener = r.listen_tcp(0, factory, interface="127.0.0.1")
    endpoint = HostnameEndpoint(r, "127.0.0.1", listener.port, timeout=5)
    service = ClientService(
        endpoint, lambda _: Client(), clock=r, retry_policy=no_jitter(initial=0.01)
    )
    service.start_service()
    first = wait(r, service.when_connected())
    wait(r, third)
    assert first.lost  # the first connection ended, and new ones followed
    wait(r, service.stop_service())
    wait(r, listener.stop_listening())
    assert service.state == "stopped"
    assert r.get_delayed_calls() == []
