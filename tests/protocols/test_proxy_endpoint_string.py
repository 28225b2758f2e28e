"""The haproxy: endpoint-string prefix, from the string to a real connection."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
import trustme

from torsion.defer import Deferred
from torsion.errors import EndpointStringError
from torsion.internet import (
    Address,
    IPv4Address,
    Protocol,
    Reactor,
    TCPServerEndpoint,
    server_from_string,
    split_prefix,
    tls_server_parts,
)
from torsion.protocols import ProxyProtocolServerEndpoint
from torsion.protocols.haproxy import build_v1
from torsion.testing import MemoryReactor

BOTH_LOOPS = pytest.mark.parametrize(
    "loop",
    [
        pytest.param("asyncio", marks=pytest.mark.torsion_loop("asyncio")),
        pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop")),
    ],
)

CLIENT = IPv4Address("203.0.113.7", 51000)


def test_split_prefix_keeps_the_rest_as_written() -> None:
    assert split_prefix("haproxy:tcp:8080") == ("haproxy", {}, "tcp:8080")
    assert split_prefix("haproxy:timeout=5:trusted=10.0.0.0/8:tcp:80:interface=::1") == (
        "haproxy",
        {"timeout": "5", "trusted": "10.0.0.0/8"},
        "tcp:80:interface=::1",
    )
    assert split_prefix(r"haproxy:trusted=\:\:1/128:tcp6:80") == (
        "haproxy",
        {"trusted": "::1/128"},
        "tcp6:80",
    )
    with pytest.raises(EndpointStringError, match="needs an endpoint after it"):
        split_prefix("haproxy:timeout=5")
    with pytest.raises(EndpointStringError, match="option 'timeout' given twice"):
        split_prefix("haproxy:timeout=5:timeout=6:tcp:80")


def test_tls_server_parts_split_a_tls_string(tmp_path: Path) -> None:
    ca = trustme.CA()
    pem = tmp_path / "server.pem"
    ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(str(pem))
    reactor = MemoryReactor()
    endpoint, tls = tls_server_parts(reactor, f"tls:8443:privateKey={pem}:interface=127.0.0.1")
    assert isinstance(endpoint, TCPServerEndpoint)
    assert (endpoint.port, endpoint.interface) == (8443, "127.0.0.1")
    assert tls is not None
    plain, none = tls_server_parts(reactor, "tcp:80")
    assert isinstance(plain, TCPServerEndpoint)
    assert none is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("haproxy:tcp", "bad endpoint 'haproxy:tcp': tcp: needs port"),
        ("haproxy:bogus=1:tcp:80", "unknown option 'bogus' for haproxy:"),
        ("haproxy:timeout=x:tcp:80", "timeout must be a number of seconds"),
        ("haproxy:trusted=nonsense:tcp:80", "'nonsense' does not appear to be"),
        ("haproxy:allowLocal=maybe:tcp:80", "allowLocal must be yes or no"),
        ("haproxy:timeout=1", "needs an endpoint after it"),
    ],
)
def test_bad_haproxy_strings_name_the_whole_string_and_the_problem(
    text: str, problem: str
) -> None:
    with pytest.raises(EndpointStringError, match=problem) as caught:
        server_from_string(MemoryReactor(), text)
    assert caught.value.text == text


class Peer(Protocol):
    def __init__(self, seen: Deferred[tuple[Address, bytes]]) -> None:
        self.seen = seen

    def data_received(self, data: bytes) -> None:
        if not self.seen.called:
            self.seen.callback((self.peer, data))
        self.transport.write(b"ok")


@BOTH_LOOPS
async def test_a_haproxy_string_serves_the_client_address_from_the_header(
    reactor: Reactor, loop: str
) -> None:
    endpoint = server_from_string(reactor, "haproxy:timeout=5:tcp:0:interface=127.0.0.1")
    assert isinstance(endpoint, ProxyProtocolServerEndpoint)
    seen: Deferred[tuple[Address, bytes]] = Deferred()
    port = await endpoint.listen(lambda _: Peer(seen))
    reader, writer = await asyncio.open_connection("127.0.0.1", port.address.port)
    writer.write(build_v1(CLIENT, IPv4Address("198.51.100.1", 80)) + b"hello")
    assert await reader.readexactly(2) == b"ok"
    assert await seen == (CLIENT, b"hello")
    writer.close()
    await writer.wait_closed()
    await port.stop_listening()


@BOTH_LOOPS
async def test_haproxy_tls_shakes_hands_after_the_header(
    reactor: Reactor, loop: str, tmp_path: Path
) -> None:
    ca = trustme.CA()
    pem = tmp_path / "server.pem"
    ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(str(pem))
    text = f"haproxy:tls:0:interface=127.0.0.1:privateKey={pem}"
    seen: Deferred[tuple[Address, bytes]] = Deferred()
    port = await server_from_string(reactor, text).listen(lambda _: Peer(seen))
    reader, writer = await asyncio.open_connection("127.0.0.1", port.address.port)
    writer.write(build_v1(CLIENT, IPv4Address("198.51.100.1", 443)))  # in clear, first
    context = ssl.create_default_context()
    ca.configure_trust(context)
    await writer.start_tls(context, server_hostname="localhost")
    writer.write(b"secret")
    assert await reader.readexactly(2) == b"ok"
    assert await seen == (CLIENT, b"secret")
    writer.close()
    await writer.wait_closed()
    await port.stop_listening()
