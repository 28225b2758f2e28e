"""DNSServer in this process, on 127.0.0.1 on both loops, asked by dig and kdig."""

from __future__ import annotations

import asyncio
import re
import socket

import pytest
from _dns_peers import dig as _dig
from _dns_peers import kdig, records

from torsion.internet import Reactor
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
@       IN SOA ns1 hostmaster 7 7200 900 1209600 300
        IN NS  ns1
        IN NS  ns2
        IN MX  10 mail
ns1     IN A   192.0.2.53
ns2     IN AAAA 2001:db8::53
mail    IN A   192.0.2.25
        IN AAAA 2001:db8::25
www     IN CNAME web
web     IN CNAME host
host    IN A   192.0.2.80
txt     IN TXT "hello world" "and more"
_sip._tcp IN SRV 0 5 5060 host
sub     IN NS  ns.sub
ns.sub  IN A   192.0.2.200
"""
ZONE += "".join(f"many IN A 198.51.100.{n}\n" for n in range(1, 80))


async def dig(port: int, *args: str) -> str:
    return await _dig(port, *args, recursion=False)


@BOTH_LOOPS
async def test_dig_and_kdig_on_udp_and_tcp(reactor: Reactor, loop: str) -> None:
    server = DNSServer([Authority.from_text(ZONE)], allow_axfr=["127.0.0.1/32"])
    ports = server.listen(reactor, 0)
    try:
        for transport in ("+notcp", "+tcp"):
            a = await dig(ports.port, transport, "host.example.test.", "A")
            assert re.search(r"flags: qr aa;", a)
            assert records(a) == ["host.example.test. 3600 IN A 192.0.2.80"]
            aaaa = await kdig(ports.port, transport, "mail.example.test.", "AAAA")
            assert re.search(r"Flags: qr aa;", aaaa)
            assert records(aaaa) == ["mail.example.test. 3600 IN AAAA 2001:db8::25"]
            soa = await dig(ports.port, transport, "example.test.", "SOA")
            assert records(soa)[0] == (
                "example.test. 3600 IN SOA ns1.example.test. hostmaster.example.test. "
                "7 7200 900 1209600 300"
            )
            ns = await kdig(ports.port, transport, "example.test.", "NS")
            # The records of an RRset come in no particular order.
            assert sorted(records(ns)) == [
                "example.test. 3600 IN NS ns1.example.test.",
                "example.test. 3600 IN NS ns2.example.test.",
                "ns1.example.test. 3600 IN A 192.0.2.53",
                "ns2.example.test. 3600 IN AAAA 2001:db8::53",
            ]
            txt = await kdig(ports.port, transport, "txt.example.test.", "TXT")
            assert records(txt) == ['txt.example.test. 3600 IN TXT "hello world" "and more"']
            chain = await kdig(ports.port, transport, "www.example.test.", "A")
            assert records(chain)[-1] == "host.example.test. 3600 IN A 192.0.2.80"
            assert len(records(chain)) == 3
            nx = await kdig(ports.port, transport, "nothing.example.test.", "A")
            assert "status: NXDOMAIN" in nx
            assert re.search(r"Flags: qr aa;", nx)
            assert records(nx)[0].startswith("example.test. 300 IN SOA ")
            referral = await dig(ports.port, transport, "www.sub.example.test.", "A")
            assert "status: NOERROR" in referral
            assert not re.search(r"flags: qr aa", referral)
            assert records(referral) == [
                "sub.example.test. 3600 IN NS ns.sub.example.test.",
                "ns.sub.example.test. 3600 IN A 192.0.2.200",
            ]
        axfr = records(await kdig(ports.port, "example.test.", "AXFR"))
        assert axfr[0] == axfr[-1]
        assert len(axfr) == 95
    finally:
        await ports.stop_listening()


@BOTH_LOOPS
async def test_truncated_udp_answer_is_retried_over_tcp(reactor: Reactor, loop: str) -> None:
    server = DNSServer([Authority.from_text(ZONE)])
    ports = server.listen(reactor, 0)
    try:
        truncated = await dig(ports.port, "+noedns", "+ignore", "many.example.test.", "A")
        assert re.search(r"flags: qr aa tc;", truncated)
        assert records(truncated) == []
        # Without +ignore, dig sees TC and asks again over TCP.
        whole = await dig(ports.port, "+noedns", "many.example.test.", "A")
        assert len(records(whole)) == 79
        assert "(TCP)" in whole
    finally:
        await ports.stop_listening()


@BOTH_LOOPS
async def test_tcp_pipelined_queries_and_hostile_prefixes(reactor: Reactor, loop: str) -> None:
    server = DNSServer([Authority.from_text(ZONE)])
    ports = server.listen(reactor, 0)
    try:
        # kdig sends every query of a +keepopen run on one connection.
        output = await kdig(
            ports.port,
            "+tcp",
            "+keepopen",
            "host.example.test.",
            "A",
            "mail.example.test.",
            "AAAA",
        )
        assert "host.example.test. 3600 IN A 192.0.2.80" in records(output)
        assert "mail.example.test. 3600 IN AAAA 2001:db8::25" in records(output)
        # A prefix cut short, then the connection closed: nothing is answered.
        reader, writer = await asyncio.open_connection("127.0.0.1", ports.port)
        writer.write(b"\x00")
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
        await writer.wait_closed()
        # Garbage over TCP gets FORMERR, and the connection serves on.
        reader, writer = await asyncio.open_connection("127.0.0.1", ports.port)
        garbage = b"\xbe\xef\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01"
        writer.write(len(garbage).to_bytes(2, "big") + garbage)
        length = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), 10), "big")
        response = await reader.readexactly(length)
        assert response[:2] == b"\xbe\xef"
        assert response[3] & 0x0F == 1  # FORMERR
        writer.close()
        await writer.wait_closed()
    finally:
        await ports.stop_listening()


@BOTH_LOOPS
async def test_udp_garbage_gets_formerr_or_nothing(reactor: Reactor, loop: str) -> None:
    server = DNSServer([Authority.from_text(ZONE)])
    ports = server.listen(reactor, 0)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.connect(("127.0.0.1", ports.port))
            event_loop = asyncio.get_running_loop()
            await event_loop.sock_sendall(sock, b"\x01")  # too short: dropped
            await event_loop.sock_sendall(sock, b"\xbe\xef\x01\x00" + b"\xff" * 30)
            response = await asyncio.wait_for(event_loop.sock_recv(sock, 4096), 10)
            assert response[:2] == b"\xbe\xef"
            assert response[3] & 0x0F == 1  # FORMERR
    finally:
        await ports.stop_listening()
