"""ConnectionPool on a fake clock: reuse, limits, waiting, idle expiry, closing."""

from __future__ import annotations

import pytest

from torsion.defer import CancelledError, Deferred, QueueOverflowError, succeed
from torsion.testing import Clock, assert_no_result, failure_result_of, success_result_of
from torsion.web._client_errors import ClientClosedError
from torsion.web._pool import ConnectionPool, Lease


class FakeConnection:
    """A connection that records whether it was closed."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False

    @property
    def is_open(self) -> bool:
        return not self.closed

    def close(self) -> None:
        self.closed = True

    def __repr__(self) -> str:
        return f"<FakeConnection {self.name}>"


class Connector:
    """Makes connections when asked; each attempt is a Deferred the test fires."""

    def __init__(self) -> None:
        self.attempts: list[Deferred[FakeConnection]] = []
        self.cancelled = 0
        self.made = 0

    def __call__(self) -> Deferred[FakeConnection]:
        def cancel(_: Deferred[FakeConnection]) -> None:
            self.cancelled += 1

        d: Deferred[FakeConnection] = Deferred(cancel)
        self.attempts.append(d)
        return d

    def connect_now(self) -> Deferred[FakeConnection]:
        self.made += 1
        return succeed(FakeConnection(f"c{self.made}"))


def lease(d: Deferred[Lease[FakeConnection]]) -> Lease[FakeConnection]:
    return success_result_of(d)


def test_a_released_connection_is_reused_for_its_key_only() -> None:
    clock = Clock()
    pool: ConnectionPool[str, FakeConnection] = ConnectionPool(clock)
    connector = Connector()
    first = lease(pool.acquire("a", connector.connect_now))
    assert not first.reused
    pool.release("a", first.connection, reusable=True)
    assert pool.idle_count("a") == 1
    again = lease(pool.acquire("a", connector.connect_now))
    assert again.connection is first.connection
    assert again.reused
    other = lease(pool.acquire("b", connector.connect_now))
    assert other.connection is not first.connection
    assert pool.open_count() == 2
    assert pool.open_count("a") == 1


def test_a_connection_not_reusable_is_closed_and_frees_its_place() -> None:
    pool: ConnectionPool[str, FakeConnection] = ConnectionPool(Clock(), max_per_key=1)
    connector = Connector()
    first = lease(pool.acquire("a", connector.connect_now))
    waiting = pool.acquire("a", connector.connect_now)
    assert_no_result(waiting)
    pool.release("a", first.connection, reusable=False)
    assert first.connection.closed
    second = lease(waiting)
    assert second.connection is not first.connection
    assert not second.reused
    assert pool.open_count("a") == 1


def test_the_per_key_limit_makes_callers_wait_in_order() -> None:
    pool: ConnectionPool[str, FakeConnection] = ConnectionPool(Clock(), max_per_key=2)
    connector = Connector()
    one = lease(pool.acquire("a", connector.connect_now))
    lease(pool.acquire("a", connector.connect_now))
    third = pool.acquire("a", connector.connect_now)
    fourth = pool.acquire("a", connector.connect_now)
    assert pool.waiting == 2
    pool.release("a", one.connection, reusable=True)
    # Handed over directly, not put idle: the first waiter gets it.
    assert lease(third).connection is one.connection
    assert_no_result(fourth)
    assert pool.idle_count() == 0
    fourth.cancel()
    assert pool.waiting == 0
    failure_result_of(fourth, CancelledError)


def test_the_total_limit_closes_the_oldest_idle_connection_for_another_key() -> None:
    clock = Clock()
    pool: ConnectionPool[str, FakeConnection] = ConnectionPool(clock, max_total=2)
    connector = Connector()
    a = lease(pool.acquire("a", connector.connect_now))
    clock.advance(1)
    b = lease(pool.acquire("b", connector.connect_now))
    pool.release("a", a.connection, reusable=True)
    clock.advance(1)
    pool.release("b", b.connection, reusable=True)
    c = lease(pool.acquire("c", connector.connect_now))
    assert a.connection.closed
    assert not b.connection.closed
    assert pool.open_count() == 2
    assert pool.idle_count("a") == 0
    # With every connection busy, a new key waits until one is given back.
    assert lease(pool.acquire("b", connector.connect_now)).connection is b.connection
    d = pool.acquire("d", connector.connect_now)
    assert_no_result(d)
    pool.release("c", c.connection, reusable=True)
    # Given back reusable, but "d" waits for room: the idle one makes way.
    assert c.connection.closed
    assert not lease(d).reused


def test_idle_connections_expire() -> None:
    clock = Clock()
    pool: ConnectionPool[str, FakeConnection] = ConnectionPool(clock, idle_timeout=30)
    connector = Connector()
    first = lease(pool.acquire("a", connector.connect_now))
    pool.release("a", first.connection, reusable=True)
    clock.advance(29)
    assert first.connection.is_open
    clock.advance(1)
    assert first.connection.closed
    assert pool.open_count() == 0
    assert clock.get_delayed_calls() == []


def test_a_reused_connection_is_not_expired() -> None:
    clock = Clock()
    pool: ConnectionPool[str, FakeConnection] = ConnectionPool(clock, idle_timeout=30)
    connector = Connector()
    first = lease(pool.acquire("a", connector.connect_now))
    pool.release("a", first.connection, reusable=True)
    clock.advance(20)
    assert lease(pool.acquire("a", connector.connect_now)).connection is first.connection
    clock.advance(10)  # the sweep comes and finds nothing idle
    assert first.connection.is_open
    assert clock.get_delayed_calls() == []


def test_one_sweep_expires_each_idle_connection_in_its_time() -> None:
    clock = Clock()
    pool: ConnectionPool[str, FakeConnection] = ConnectionPool(clock, idle_timeout=30)
    connector = Connector()
    a = lease(pool.acquire("a", connector.connect_now)).connection
    b = lease(pool.acquire("b", connector.connect_now)).connection
    pool.release("a", a, reusable=True)
    clock.advance(10)
    pool.release("b", b, reusable=True)
    assert len(clock.get_delayed_calls()) == 1
    clock.advance(20)
    assert a.closed
    assert b.is_open
    clock.advance(9)
    assert b.is_open
    clock.advance(1)
    assert b.closed
    assert pool.open_count() == 0
    assert clock.get_delayed_calls() == []


def test_an_idle_connection_the_server_closed_is_forgotten() -> None:
    clock = Clock()
    pool: ConnectionPool[str, FakeConnection] = ConnectionPool(clock, max_per_key=1)
    connector = Connector()
    first = lease(pool.acquire("a", connector.connect_now))
    pool.release("a", first.connection, reusable=True)
    first.connection.closed = True
    pool.lost("a", first.connection)
    assert pool.open_count() == 0
    assert lease(pool.acquire("a", connector.connect_now)).connection is not first.connection


def test_a_closed_idle_connection_is_skipped() -> None:
    pool: ConnectionPool[str, FakeConnection] = ConnectionPool(Clock())
    connector = Connector()
    first = lease(pool.acquire("a", connector.connect_now))
    pool.release("a", first.connection, reusable=True)
    first.connection.closed = True  # closed, and not yet reported lost
    second = lease(pool.acquire("a", connector.connect_now))
    assert second.connection is not first.connection
    assert pool.open_count("a") == 1


def test_fresh_skips_idle_connections_and_makes_room() -> None:
    pool: ConnectionPool[str, FakeConnection] = ConnectionPool(Clock(), max_per_key=1)
    connector = Connector()
    first = lease(pool.acquire("a", connector.connect_now))
    pool.release("a", first.connection, reusable=True)
    second = lease(pool.acquire("a", connector.connect_now, fresh=True))
    assert not second.reused
    assert first.connection.closed
    assert pool.open_count("a") == 1


def test_a_failed_attempt_frees_its_place_and_fails_the_caller() -> None:
    pool: ConnectionPool[str, FakeConnection] = ConnectionPool(Clock(), max_per_key=1)
    connector = Connector()
    d = pool.acquire("a", connector)
    waiting = pool.acquire("a", connector)
    connector.attempts[0].errback(ConnectionRefusedError("no"))
    failure_result_of(d, ConnectionRefusedError)
    # The waiter's turn came: it is connecting now.
    assert len(connector.attempts) == 2
    connector.attempts[1].callback(FakeConnection("x"))
    assert lease(waiting).connection.name == "x"


def test_cancelling_a_connecting_caller_cancels_the_attempt() -> None:
    pool: ConnectionPool[str, FakeConnection] = ConnectionPool(Clock())
    connector = Connector()
    d = pool.acquire("a", connector)
    d.cancel()
    assert connector.cancelled == 1
    failure_result_of(d, CancelledError)
    assert pool.open_count() == 0


def test_closing_the_pool_closes_idle_connections_and_fails_waiters() -> None:
    clock = Clock()
    pool: ConnectionPool[str, FakeConnection] = ConnectionPool(clock, max_per_key=1)
    connector = Connector()
    busy = lease(pool.acquire("a", connector.connect_now))
    idle = lease(pool.acquire("b", connector.connect_now))
    pool.release("b", idle.connection, reusable=True)
    waiting = pool.acquire("a", connector.connect_now)
    pool.close()
    assert idle.connection.closed
    failure_result_of(waiting, ClientClosedError)
    failure_result_of(pool.acquire("a", connector.connect_now), ClientClosedError)
    pool.release("a", busy.connection, reusable=True)
    assert busy.connection.closed
    assert pool.open_count() == 0
    assert clock.get_delayed_calls() == []


def test_the_waiting_line_is_bounded() -> None:
    pool: ConnectionPool[str, FakeConnection] = ConnectionPool(
        Clock(), max_per_key=1, max_waiters=1
    )
    connector = Connector()
    lease(pool.acquire("a", connector.connect_now))
    pool.acquire("a", connector.connect_now)
    failure_result_of(pool.acquire("a", connector.connect_now), QueueOverflowError)


@pytest.mark.parametrize(("per_key", "total"), [(0, 1), (1, 0)])
def test_limits_must_leave_room(per_key: int, total: int) -> None:
    with pytest.raises(ValueError, match="room"):
        ConnectionPool(Clock(), max_per_key=per_key, max_total=total)


def test_a_connection_made_after_the_pool_closed_is_closed() -> None:
    pool: ConnectionPool[str, FakeConnection] = ConnectionPool(Clock())
    connector = Connector()
    d = pool.acquire("a", connector)
    pool.close()
    late = FakeConnection("late")
    connector.attempts[0].callback(late)
    assert late.closed
    failure_result_of(d, ClientClosedError)
    assert pool.open_count() == 0
