"""Every stream transport passes the conformance suite: loopback, TCP, TLS, Unix, wrappers."""

from __future__ import annotations

import ssl
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

from torsion.defer import Deferred
from torsion.internet import Connector, Listener, Reactor, ServerTLS, client_context, server_tls
from torsion.protocols import ConnectionLimit, IdleTimeout, Throttle
from torsion.testing import PairMaker, RecordingProtocol, loopback, transport_checks

Check = Callable[[PairMaker], Awaitable[Any]]
CHECKS = pytest.mark.parametrize("check", transport_checks.values(), ids=transport_checks.keys())
ON_BOTH_LOOPS = pytest.mark.parametrize(
    "loop",
    ["asyncio", pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop"))],
)


async def loopback_pair(
    server_factory: Callable[[], RecordingProtocol],
    client_factory: Callable[[], RecordingProtocol],
) -> tuple[RecordingProtocol, RecordingProtocol]:
    client, server = client_factory(), server_factory()
    loopback(client, server)
    return client, server


@CHECKS
async def test_loopback(check: Check) -> None:
    await check(loopback_pair)


Listen = Callable[[Callable[[object], RecordingProtocol]], Listener]
Connect = Callable[[Any, Callable[[object], RecordingProtocol]], Connector[RecordingProtocol]]


def pairs(listen: Listen, connect: Connect) -> PairMaker:
    """Pairs over a real listener: one connection per pair, the port closed after."""

    async def make_pair(
        server_factory: Callable[[], RecordingProtocol],
        client_factory: Callable[[], RecordingProtocol],
    ) -> tuple[RecordingProtocol, RecordingProtocol]:
        accepted: Deferred[RecordingProtocol] = Deferred()

        def accept(_: object) -> RecordingProtocol:
            server = server_factory()
            accepted.callback(server)
            return server

        listener = listen(accept)
        try:
            client = await connect(listener.address, lambda _: client_factory())
            server = await accepted
        finally:
            await listener.stop_listening()
        return client, server

    return make_pair


def tcp_pairs(reactor: Reactor) -> PairMaker:
    return pairs(
        lambda accept: reactor.listen_tcp(0, accept, interface="127.0.0.1"),
        lambda address, factory: reactor.connect_tcp("127.0.0.1", address.port, factory),
    )


@ON_BOTH_LOOPS
@CHECKS
async def test_tcp(check: Check, loop: str, reactor: Reactor) -> None:
    await check(tcp_pairs(reactor))


@pytest.fixture(scope="module")
def tls_contexts() -> tuple[ServerTLS, ssl.SSLContext]:
    ca = trustme.CA()
    with tempfile.TemporaryDirectory() as where:
        both = Path(where) / "localhost.pem"
        ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(str(both))
        server = server_tls(both)
    return server, client_context(ca_data=ca.cert_pem.bytes().decode())


def tls_pairs(reactor: Reactor, contexts: tuple[ServerTLS, ssl.SSLContext]) -> PairMaker:
    server_side, client_side = contexts
    return pairs(
        lambda accept: reactor.listen_tls(0, accept, server_side, interface="127.0.0.1"),
        lambda address, factory: reactor.connect_tls(
            "127.0.0.1", address.port, factory, context=client_side, server_hostname="localhost"
        ),
    )


@ON_BOTH_LOOPS
@CHECKS
async def test_tls(
    check: Check, loop: str, reactor: Reactor, tls_contexts: tuple[ServerTLS, ssl.SSLContext]
) -> None:
    await check(tls_pairs(reactor, tls_contexts))


@ON_BOTH_LOOPS
@CHECKS
async def test_unix(check: Check, loop: str, reactor: Reactor) -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as where:
        path = str(Path(where) / "conformance.sock")
        await check(
            pairs(
                lambda accept: reactor.listen_unix(path, accept),
                lambda _, factory: reactor.connect_unix(path, factory),
            )
        )


def wrapped_tcp_pairs(reactor: Reactor) -> PairMaker:
    """TCP with the server behind every policy wrapper torsion.protocols has."""
    limit = ConnectionLimit(reactor, total=100, per_address=10)
    throttle = Throttle(reactor, read_rate=1e9, write_rate=1e9)
    idle = IdleTimeout(reactor, 60)

    def wrap(accept: Callable[[object], RecordingProtocol]) -> Any:
        return idle.wrap(throttle.wrap(limit.wrap(accept)))  # type: ignore[arg-type]

    return pairs(
        lambda accept: reactor.listen_tcp(0, wrap(accept), interface="127.0.0.1"),
        lambda address, factory: reactor.connect_tcp("127.0.0.1", address.port, factory),
    )


@ON_BOTH_LOOPS
@CHECKS
async def test_tcp_through_policy_wrappers(check: Check, loop: str, reactor: Reactor) -> None:
    await check(wrapped_tcp_pairs(reactor))
