"""torsion's AMP at both ends of real TCP connections on 127.0.0.1, on both loops."""

from __future__ import annotations

from typing import Any

import pytest
from _amp_commands import Double, Relay

from torsion.defer import Deferred, gather
from torsion.internet import Reactor
from torsion.protocols.amp import AMP, Command, ConnectionLostError, String

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize(
        "loop",
        [
            pytest.param("asyncio", marks=pytest.mark.torsion_loop("asyncio")),
            pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop")),
        ],
    ),
]


class Echo(Command, arguments={"data": String()}, response={"data": String()}):
    """Answers with what it was sent."""


class Hold(Command):
    """Answered only when the test says so."""


class Side(AMP):
    def __init__(self) -> None:
        super().__init__()
        self.lost: Deferred[Exception | None] = Deferred()
        self.held: list[Deferred[dict[str, Any]]] = []

    @Double.responder
    def double(self, x: int) -> dict[str, int]:
        return {"x": 2 * x}

    @Relay.responder
    async def relay(self, x: int) -> dict[str, int]:
        answer = await self.call_remote(Double, x=x)
        return {"x": answer["x"]}

    @Echo.responder
    def echo(self, data: bytes) -> dict[str, bytes]:
        return {"data": data}

    @Hold.responder
    def hold(self) -> Deferred[dict[str, Any]]:
        self.held.append(Deferred())
        return self.held[-1]

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.lost.callback(exc)


async def test_many_calls_both_ways_with_large_values(reactor: Reactor, loop: str) -> None:
    servers: list[Side] = []

    def factory(_: object) -> Side:
        servers.append(Side())
        return servers[-1]

    listener = reactor.listen_tcp(0, factory, interface="127.0.0.1")
    client = await reactor.connect_tcp("127.0.0.1", listener.port, lambda _: Side())
    (server,) = servers

    doubled = await gather(client.call_remote(Double, x=n) for n in range(500))
    assert doubled == [{"x": 2 * n} for n in range(500)]
    relayed = await gather(server.call_remote(Relay, x=n) for n in range(200))
    assert relayed == [{"x": 2 * n} for n in range(200)]
    # Values as long as the format allows, many at once: boxes split
    # across reads and writes bigger than the socket buffers.
    blobs = [bytes([n]) * 65535 for n in range(64)]
    echoed = await gather(client.call_remote(Echo, data=blob) for blob in blobs)
    assert echoed == [{"data": blob} for blob in blobs]

    waiting = client.call_remote(Hold)
    await client.call_remote(Double, x=0)  # the Hold call has arrived
    assert len(server.held) == 1
    server.transport.close()
    await server.lost
    assert await client.lost is None
    with pytest.raises(ConnectionLostError, match="before Hold was answered"):
        await waiting
    await listener.stop_listening()
