"""Resolving names: IP literals at once, the system resolver, a plugged-in one."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest

from torsion.defer import Deferred, fail, succeed
from torsion.errors import DNSLookupError
from torsion.internet import Reactor, Resolver, SystemResolver, is_ip_address

Wait = Callable[..., Any]


class FakeResolver:
    """Answers from a table; records what it was asked."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def resolve(self, host: str) -> str:
        return (await self.resolve_all(host))[0]

    async def resolve_all(self, host: str) -> list[str]:
        self.asked.append(host)
        try:
            return self.table[host]
        except KeyError:
            raise DNSLookupError(host) from None


@pytest.mark.parametrize(
    ("host", "expected"),
    [("127.0.0.1", True), ("::1", True), ("fe80::1%1", True), ("localhost", False), ("", False)],
)
def test_is_ip_address(host: str, expected: bool) -> None:
    assert is_ip_address(host) is expected


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "::1"])
def test_ip_literal_resolves_at_once(real_reactor: Reactor, address: str) -> None:
    d = real_reactor.resolve(address)
    assert d.called
    seen: list[str] = []
    d.add_callback(seen.append)
    assert seen == [address]
    # No lookup: no worker thread was started.
    assert real_reactor.thread_pool.worker_count == 0


def test_resolve_localhost(real_reactor: Reactor, wait: Wait) -> None:
    assert wait(real_reactor, real_reactor.resolve("localhost")) in ("127.0.0.1", "::1")
    addresses = wait(real_reactor, real_reactor.resolve_all("localhost"))
    assert set(addresses) & {"127.0.0.1", "::1"}
    assert len(addresses) == len(set(addresses))


def test_system_resolver_family(real_reactor: Reactor, wait: Wait) -> None:
    resolver = SystemResolver(real_reactor, family=socket.AF_INET)
    assert wait(real_reactor, resolver.resolve("localhost")) == "127.0.0.1"
    assert wait(real_reactor, resolver.resolve_all("127.0.0.1")) == ["127.0.0.1"]


class _FailingThreads:
    """A ThreadRunner whose getaddrinfo fails the way the system's does."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def call_in_thread(self, f: Callable[..., object], /, *args: Any) -> None:
        raise NotImplementedError

    def call_from_thread(self, f: Callable[..., object], /, *args: Any) -> None:
        raise NotImplementedError

    def defer_to_thread(self, f: Callable[..., Any], /, *args: Any) -> Deferred[Any]:
        return fail(self.error)

    def in_reactor_thread(self) -> bool:
        return True


def test_lookup_errors_become_dns_lookup_error() -> None:
    gaierror = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    resolver = SystemResolver(_FailingThreads(gaierror))
    seen: list[BaseException] = []
    resolver.resolve("nowhere.invalid").add_errback(seen.append)
    assert isinstance(seen[0], DNSLookupError)
    assert isinstance(seen[0], OSError)
    assert seen[0].host == "nowhere.invalid"
    assert seen[0].__cause__ is gaierror


def test_empty_answer_is_an_error() -> None:
    class NoAnswer(_FailingThreads):
        def defer_to_thread(self, f: Callable[..., Any], /, *args: Any) -> Deferred[Any]:
            return succeed([])

    seen: list[BaseException] = []
    SystemResolver(NoAnswer(RuntimeError())).resolve_all("x.test").add_errback(seen.append)
    assert isinstance(seen[0], DNSLookupError)


def test_plugged_in_resolver(wait: Wait) -> None:
    fake = FakeResolver({"db.test": ["10.0.0.5", "10.0.0.6"]})
    reactor = Reactor(uvloop=False, resolver=fake)
    try:
        assert reactor.resolver is fake
        assert wait(reactor, reactor.resolve("db.test")) == "10.0.0.5"
        assert wait(reactor, reactor.resolve_all("db.test")) == ["10.0.0.5", "10.0.0.6"]
        with pytest.raises(DNSLookupError):
            wait(reactor, reactor.resolve("other.test"))
        # IP literals never reach the resolver.
        assert wait(reactor, reactor.resolve("192.0.2.1")) == "192.0.2.1"
        assert fake.asked == ["db.test", "db.test", "other.test"]
    finally:
        reactor.close()


def test_install_resolver_returns_the_previous_one(real_reactor: Reactor, wait: Wait) -> None:
    fake = FakeResolver({"localhost": ["192.0.2.7"]})
    previous = real_reactor.install_resolver(fake)
    assert isinstance(previous, SystemResolver)
    assert wait(real_reactor, real_reactor.resolve("localhost")) == "192.0.2.7"
    assert real_reactor.install_resolver(previous) is fake


def test_resolver_returning_deferreds(real_reactor: Reactor, wait: Wait) -> None:
    class DeferredResolver:
        def resolve(self, host: str) -> Deferred[str]:
            return succeed("198.51.100.1")

        def resolve_all(self, host: str) -> Deferred[list[str]]:
            return succeed(["198.51.100.1"])

    resolver: Resolver = DeferredResolver()
    real_reactor.install_resolver(resolver)
    assert wait(real_reactor, real_reactor.resolve("x.test")) == "198.51.100.1"
