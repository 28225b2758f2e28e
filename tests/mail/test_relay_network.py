"""Relay on 127.0.0.1: MX from a torsion DNSServer, mail to postfix's smtp-sink and aiosmtpd."""

from __future__ import annotations

import asyncio
import os
import pwd
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trustme
from _aiosmtpd import Handler, serving

from _servers import BOTH_LOOPS
from torsion.internet import Reactor
from torsion.mail._relay import Relay
from torsion.names import Authority, DNSClient, DNSServer
from torsion.testing import require_peer

pytestmark = pytest.mark.integration

# mx1 is preferred, but nothing listens on 127.0.0.2: the relay falls back to mx2.
ZONE = """\
$ORIGIN example.test.
$TTL 300
@        SOA  ns hostmaster 1 3600 600 86400 300
@        NS   ns
ns       A    127.0.0.1
@        MX   10 mx1
@        MX   20 mx2
mx1      A    127.0.0.2
mx2      A    127.0.0.1
implicit A    127.0.0.1
null     MX   0 .
"""

MESSAGE = b"From: a@sender.test\r\nTo: x@example.test\r\nSubject: relayed\r\n\r\nbody\r\n"


@asynccontextmanager
async def dns_server(reactor: Reactor) -> AsyncIterator[DNSClient]:
    ports = DNSServer([Authority.from_text(ZONE)]).listen(reactor, 0)
    try:
        yield DNSClient(reactor, [("127.0.0.1", ports.port)], timeout=5.0, attempts=1)
    finally:
        await ports.stop_listening()


async def _free_port() -> int:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return port


@asynccontextmanager
async def smtp_sink(directory: Path) -> AsyncIterator[int]:
    """Run smtp-sink on 127.0.0.1, dumping each message into ``directory``; yield its port."""
    program = require_peer("smtp-sink", package="postfix")
    port = await _free_port()
    # Run as ourselves (it insists on a -u when started as root).
    user = ["-u", pwd.getpwuid(os.geteuid()).pw_name]
    process = await asyncio.create_subprocess_exec(
        program,
        *user,
        "-d",
        f"{directory}/%Y",
        f"127.0.0.1:{port}",
        "10",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        # Ready once it accepts a connection; between refused tries, wait on
        # the process itself so that a sink that died is seen at once.
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except ConnectionRefusedError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                try:
                    await asyncio.wait_for(asyncio.shield(process.wait()), 0.02)
                except TimeoutError:
                    continue
                assert process.stderr is not None
                error = await process.stderr.read()
                pytest.fail(f"smtp-sink exited: {error.decode()}")
            else:
                writer.close()
                await writer.wait_closed()
                break
        yield port
    finally:
        if process.returncode is None:
            process.terminate()
        await process.communicate()


@BOTH_LOOPS
async def test_relay_to_smtp_sink(reactor: Reactor, loop: str, tmp_path: Path) -> None:
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    async with dns_server(reactor) as resolver, smtp_sink(dumps) as port:
        relay = Relay(reactor, resolver, helo="relay.test", port=port)
        outcomes = await relay.deliver(
            "a@sender.test",
            [
                "x@example.test",
                "y@implicit.example.test",
                "z@null.example.test",
                "w@nx.example.test",
            ],
            MESSAGE,
        )
    assert [o.status.value for o in outcomes] == ["accepted", "accepted", "refused", "refused"]
    assert outcomes[2].reply.code == 556
    assert outcomes[3].reply.enhanced == "5.1.2"
    dumped = sorted(p.read_bytes() for p in dumps.iterdir())
    assert len(dumped) == 2
    for dump in dumped:
        assert b"X-Mail-Args: <a@sender.test>" in dump
        assert b"\nSubject: relayed\n\nbody\n" in dump
    rcpts = sorted(line for d in dumped for line in d.splitlines() if b"X-Rcpt-Args" in line)
    assert rcpts == [b"X-Rcpt-Args: <x@example.test>", b"X-Rcpt-Args: <y@implicit.example.test>"]


@BOTH_LOOPS
async def test_relay_uses_starttls_when_offered(reactor: Reactor, loop: str) -> None:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mx2.example.test").configure_cert(context)
    handler = Handler(refuse={"nobody@example.test"})
    async with dns_server(reactor) as resolver, serving(handler, tls_context=context) as port:
        relay = Relay(reactor, resolver, helo="relay.test", port=port)
        outcomes = await relay.deliver("", ["x@example.test", "nobody@example.test"], MESSAGE)
    assert [o.status.value for o in outcomes] == ["accepted", "refused"]
    (received,) = handler.messages
    assert received.tls
    assert received.sender == ""
    assert received.data == MESSAGE


@BOTH_LOOPS
async def test_failed_handshake_is_tried_again_in_clear(reactor: Reactor, loop: str) -> None:
    server_ca, other_ca = trustme.CA(), trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ca.issue_cert("mx2.example.test").configure_cert(context)
    untrusting = ssl.create_default_context()
    other_ca.configure_trust(untrusting)
    handler = Handler()
    async with dns_server(reactor) as resolver, serving(handler, tls_context=context) as port:
        relay = Relay(reactor, resolver, helo="relay.test", port=port, tls_context=untrusting)
        (outcome,) = await relay.deliver("a@sender.test", ["x@example.test"], MESSAGE)
    assert outcome.status.value == "accepted"
    (received,) = handler.messages
    assert not received.tls
