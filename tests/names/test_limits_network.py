"""The DNS server's flood limits on real sockets: a UDP burst cut to the bucket, TCP per client."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import dns.message
import pytest

from torsion.internet import Reactor
from torsion.names._limits import QueryLimits
from torsion.names._server import DNSServer
from torsion.names._zone import Authority

BOTH_LOOPS = pytest.mark.parametrize(
    "loop",
    [
        pytest.param("asyncio", marks=pytest.mark.torsion_loop("asyncio")),
        pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop")),
    ],
)

ZONE = """\
$ORIGIN example.test.
$TTL 3600
@       IN SOA ns1 hostmaster 1 7200 900 1209600 300
        IN NS  ns1
ns1     IN A   192.0.2.53
host    IN A   192.0.2.80
"""


class Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answers: list[dns.message.Message] = []
        self.arrived = asyncio.Event()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.answers.append(dns.message.from_wire(data))
        self.arrived.set()


@BOTH_LOOPS
async def test_a_udp_burst_beyond_the_bucket_is_dropped(reactor: Reactor, loop: str) -> None:
    # No exemption: the test's own loopback address is the flooding client.
    # A rate of 1 a second adds no token while the test runs.
    limits = QueryLimits(udp_rate=1, udp_burst=20, exempt=())
    server = DNSServer([Authority.from_text(ZONE)], limits=limits)
    ports = server.listen(reactor, 0)
    running = asyncio.get_running_loop()
    flood, flooded = await running.create_datagram_endpoint(
        Collector, remote_addr=("127.0.0.1", ports.port)
    )
    # Another /24 of loopback: its query is answered, and it comes after the
    # flood in the server's socket, so its answer means the flood was read.
    other, marker = await running.create_datagram_endpoint(
        Collector, local_addr=("127.0.1.1", 0), remote_addr=("127.0.0.1", ports.port)
    )
    try:
        queries = [dns.message.make_query("host.example.test.", "A") for _ in range(100)]
        for query in queries:
            flood.sendto(query.to_wire())
        other.sendto(dns.message.make_query("host.example.test.", "A").to_wire())
        await asyncio.wait_for(marker.arrived.wait(), 10)
        limiter = server.udp_limiter
        assert limiter is not None
        assert limiter.dropped == 80
        # The other 20 were answered (their answers may still be on the way).
        async with asyncio.timeout(10):
            while len(flooded.answers) < 20:
                flooded.arrived.clear()
                await flooded.arrived.wait()
        assert len(flooded.answers) == 20
        assert {answer.id for answer in flooded.answers} <= {query.id for query in queries}
    finally:
        flood.close()
        other.close()
        await ports.stop_listening()


@BOTH_LOOPS
async def test_tcp_connections_beyond_the_per_client_bound_are_closed(
    reactor: Reactor, loop: str
) -> None:
    limits = QueryLimits(max_connections_per_client=2, exempt=())
    server = DNSServer([Authority.from_text(ZONE)], limits=limits)
    ports = server.listen(reactor, 0)
    writers: list[asyncio.StreamWriter] = []
    try:
        streams = []
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", ports.port)
            writers.append(writer)
            streams.append(reader)
        # The third is closed by the server before any query is read.
        assert await asyncio.wait_for(streams[2].read(), 10) == b""
        # The first two are served.
        wire = dns.message.make_query("host.example.test.", "A").to_wire()
        for reader, writer in zip(streams[:2], writers[:2], strict=True):
            writer.write(len(wire).to_bytes(2, "big") + wire)
            length = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), 10), "big")
            answer = dns.message.from_wire(await reader.readexactly(length))
            assert answer.answer[0].to_text() == "host.example.test. 3600 IN A 192.0.2.80"
    finally:
        for writer in writers:
            writer.close()
        for writer in writers:
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await ports.stop_listening()
