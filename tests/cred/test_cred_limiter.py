"""The failed-login limiter: growing delays, blocking addresses only, decay, bounds."""

from __future__ import annotations

import pytest

from torsion.cred import LoginLimiter
from torsion.internet import IPv4Address, IPv6Address, UNIXAddress
from torsion.testing import Clock

A = IPv4Address("192.0.2.1", 40000)
B = IPv4Address("198.51.100.7", 40001)


def test_delays_double_up_to_the_cap(clock: Clock) -> None:
    limiter = LoginLimiter(clock, base_delay=1.0, max_delay=30.0)
    delays = [limiter.failed("alice", A) for _ in range(8)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert limiter.failures(username="alice") == 8
    assert limiter.failures(client=A) == 8


def test_the_larger_count_decides(clock: Clock) -> None:
    limiter = LoginLimiter(clock)
    for _ in range(3):
        limiter.failed("alice", A)
    # A new address guessing alice's password waits as alice's count says...
    assert limiter.failed("alice", B) == 8.0
    # ...and one address guessing many names waits as its own count says.
    assert limiter.failed("bob", A) == 8.0


def test_only_the_address_is_blocked_never_the_user(clock: Clock) -> None:
    limiter = LoginLimiter(clock)
    assert limiter.failed("alice", A) == 1.0
    assert limiter.failed("alice", A) == 2.0
    assert limiter.blocked_for(A) == 2.0
    assert limiter.blocked_for(B) == 0.0  # alice's owner, elsewhere, is not held up
    clock.advance(1.5)
    assert limiter.blocked_for(A) == 0.5
    # A timer may run a hair early (asyncio's clock resolution): a client
    # answered when its delay ended is not blocked for the crumbs.
    clock.advance(0.499)
    assert limiter.blocked_for(A) == 0.0
    clock.advance(0.001)
    assert limiter.blocked_for(A) == 0.0
    assert limiter.blocked_for(None) == 0.0


def test_success_forgets_both_counts(clock: Clock) -> None:
    limiter = LoginLimiter(clock)
    limiter.failed("alice", A)
    limiter.failed("alice", A)
    limiter.succeeded("alice", A)
    assert limiter.failures(username="alice") == 0
    assert limiter.failures(client=A) == 0
    assert limiter.blocked_for(A) == 0.0
    assert limiter.failed("alice", A) == 1.0


def test_failures_decay_so_nobody_is_held_forever(clock: Clock) -> None:
    limiter = LoginLimiter(clock, decay=60.0)
    for _ in range(10):
        limiter.failed("alice", A)
    assert limiter.failures(username="alice") == 10
    clock.advance(60 * 4)
    assert limiter.failures(username="alice") == 6
    assert limiter.failed("alice", A) == 30.0  # 7 failures: still at the cap
    clock.advance(60 * 100)
    assert limiter.failures(username="alice") == 0
    assert limiter.failed("alice", A) == 1.0


def test_user_names_count_case_folded_and_cut(clock: Clock) -> None:
    limiter = LoginLimiter(clock)
    limiter.failed("Alice", None)
    limiter.failed("ALICE", None)
    assert limiter.failures(username="alice") == 2
    limiter.failed("x" * 10_000, None)
    limiter.failed("x" * 256 + "different tail", None)
    assert limiter.failures(username="x" * 256) == 2


def test_ipv6_clients_count_per_slash_64(clock: Clock) -> None:
    limiter = LoginLimiter(clock)
    limiter.failed(None, IPv6Address("2001:db8:1:2::1", 1))
    limiter.failed(None, IPv6Address("2001:db8:1:2:ffff::9", 2))
    assert limiter.failures(client=IPv6Address("2001:db8:1:2::77", 3)) == 2
    assert limiter.failures(client=IPv6Address("2001:db8:1:3::1", 3)) == 0
    limiter.failed(None, UNIXAddress(None))
    assert limiter.failures(client=UNIXAddress("/run/x")) == 1  # every local client is one


def test_tables_are_bounded_forgetting_the_least_recently_seen(clock: Clock) -> None:
    limiter = LoginLimiter(clock, max_tracked=3)
    for n in range(3):
        limiter.failed(f"user{n}", IPv4Address(f"192.0.2.{n}", 1))
    limiter.failed("user0", IPv4Address("192.0.2.0", 1))  # seen again: now the newest
    limiter.failed("user3", IPv4Address("192.0.2.3", 1))
    assert limiter.failures(username="user1") == 0  # forgotten
    assert limiter.failures(username="user0") == 2
    assert limiter.failures(client=IPv4Address("192.0.2.1", 1)) == 0
    assert len(limiter._users) == 3
    assert len(limiter._clients) == 3


def test_a_zero_base_delay_turns_delays_off(clock: Clock) -> None:
    limiter = LoginLimiter(clock, base_delay=0)
    assert [limiter.failed("alice", A) for _ in range(5)] == [0.0] * 5
    assert limiter.blocked_for(A) == 0.0
    assert limiter.failures(client=A) == 5


@pytest.mark.parametrize(
    "kwargs",
    [{"base_delay": -1}, {"base_delay": 5, "max_delay": 1}, {"decay": 0}, {"max_tracked": 0}],
)
def test_bad_settings(clock: Clock, kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"must|need"):
        LoginLimiter(clock, **kwargs)  # type: ignore[arg-type]


def test_failures_needs_a_key(clock: Clock) -> None:
    with pytest.raises(TypeError):
        LoginLimiter(clock).failures()
