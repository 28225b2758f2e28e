"""Every stream transport passes the conformance suite: loopback, TCP, ..."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from torsion.defer import Deferred
from torsion.internet import Reactor
from torsion.testing import TRANSPORT_CHECKS, PairMaker, RecordingProtocol, loopback

Check = Callable[[PairMaker], Awaitable[Any]]
CHECKS = pytest.mark.parametrize("check", TRANSPORT_CHECKS.values(), ids=TRANSPORT_CHECKS.keys())
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


def tcp_pairs(reactor: Reactor) -> PairMaker:
    async def make_pair(
        server_factory: Callable[[], RecordingProtocol],
        client_factory: Callable[[], RecordingProtocol],
    ) -> tuple[RecordingProtocol, RecordingProtocol]:
        accepted: Deferred[RecordingProtocol] = Deferred()

        def accept(_: object) -> RecordingProtocol:
            server = server_factory()
            accepted.callback(server)
            return server

        listener = reactor.listen_tcp(0, accept, interface="127.0.0.1")
        try:
            client = await reactor.connect_tcp(
                "127.0.0.1", listener.port, lambda _: client_factory()
            )
            server = await accepted
        finally:
            await listener.stop_listening()
        return client, server

    return make_pair


@ON_BOTH_LOOPS
@CHECKS
async def test_tcp(check: Check, loop: str, reactor: Reactor) -> None:
    await check(tcp_pairs(reactor))
