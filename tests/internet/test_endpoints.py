"""Endpoints over real sockets: TCP from strings, TLS over any endpoint, systemd fds."""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

from torsion.defer import Deferred
from torsion.internet import (
    Address,
    Protocol,
    Reactor,
    SystemdEndpoint,
    TCPClientEndpoint,
    client_context,
    client_from_string,
    listen_fds,
    server_from_string,
    wrap_client_tls,
)
from torsion.testing import MemoryReactor, failure_result_of

Wait = Callable[..., Any]


class Echo(Protocol):
    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class Client(Protocol):
    def __init__(self, address: Address) -> None:
        self.address = address
        self.reply: Deferred[bytes] = Deferred()
        self.made_with: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.made_with = transport
        self.transport.write(b"ping")

    def data_received(self, data: bytes) -> None:
        if not self.reply.called:
            self.reply.callback(data)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_tcp_from_strings_end_to_end(real_reactor: Reactor, wait: Wait) -> None:
    r = real_reactor
    server = server_from_string(r, "tcp:0:interface=127.0.0.1")
    port = wait(r, server.listen(lambda _: Echo()))
    client = wait(r, client_from_string(r, f"tcp:127.0.0.1:{port.address.port}").connect(Client))
    assert wait(r, client.reply) == b"ping"
    client.transport.close()
    wait(r, port.stop_listening())


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(real_reactor: Reactor, wait: Wait, ca: trustme.CA) -> Any:
    """An asyncio TLS echo server for localhost, outside torsion."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    context.set_alpn_protocols(["h2", "http/1.1"])

    async def start() -> asyncio.AbstractServer:
        return await real_reactor.loop.create_server(Echo, "127.0.0.1", 0, ssl=context)

    server = wait(real_reactor, start())
    yield server.sockets[0].getsockname()[1]
    server.close()
    wait(real_reactor, server.wait_closed())


def test_tls_client_string_verifies_and_negotiates(
    real_reactor: Reactor, wait: Wait, ca: trustme.CA, tls_server: int, tmp_path: Path
) -> None:
    r = real_reactor
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    endpoint = client_from_string(r, f"tls:localhost:{tls_server}:caCerts={ca_file}:alpn=h2")
    client = wait(r, endpoint.connect(Client))
    assert wait(r, client.reply) == b"ping"
    ssl_object = client.transport.get_extra_info("ssl_object")
    assert ssl_object is not None  # the protocol was made after the handshake
    assert client.made_with is client.transport
    assert ssl_object.selected_alpn_protocol() == "h2"
    client.transport.close()


def test_tls_client_refuses_a_certificate_for_another_name(
    real_reactor: Reactor, wait: Wait, ca: trustme.CA, tls_server: int, tmp_path: Path
) -> None:
    r = real_reactor
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    made: list[Client] = []
    before = open_fds()
    text = f"tls:127.0.0.1:{tls_server}:caCerts={ca_file}:serverName=mail.test"

    def factory(address: Address) -> Client:
        made.append(Client(address))
        return made[-1]

    with pytest.raises(ssl.SSLCertVerificationError):
        wait(r, client_from_string(r, text).connect(factory))
    assert made == []  # the application never saw the connection

    async def settle() -> None:
        for _ in range(3):
            await asyncio.sleep(0)

    wait(r, settle())
    assert open_fds() == before


def test_tls_client_without_the_ca_uses_the_system_store(
    real_reactor: Reactor, wait: Wait, tls_server: int
) -> None:
    r = real_reactor
    with pytest.raises(ssl.SSLCertVerificationError):
        wait(r, client_from_string(r, f"tls:localhost:{tls_server}").connect(Client))


def test_listen_fds_reads_the_systemd_environment() -> None:
    me = str(os.getpid())
    assert listen_fds({}) == {}
    assert listen_fds({"LISTEN_FDS": "2", "LISTEN_PID": "1"}) == {}  # another process's
    assert listen_fds({"LISTEN_FDS": "x", "LISTEN_PID": me}) == {}
    assert listen_fds({"LISTEN_FDS": "3", "LISTEN_PID": me}) == {"unknown": [3, 4, 5]}
    assert listen_fds(
        {"LISTEN_FDS": "3", "LISTEN_PID": me, "LISTEN_FDNAMES": "web:web:admin"}
    ) == {"web": [3, 4], "admin": [5]}


def test_systemd_endpoint_without_sockets_fails_clearly() -> None:
    endpoint = SystemdEndpoint(MemoryReactor(), index=0, environ={})  # type: ignore[arg-type]
    error = failure_result_of(endpoint.listen(lambda _: None), OSError)
    assert "no sockets were passed by systemd" in str(error)
    me = str(os.getpid())
    named = SystemdEndpoint(
        MemoryReactor(),  # type: ignore[arg-type]
        name="admin",
        environ={"LISTEN_FDS": "1", "LISTEN_PID": me, "LISTEN_FDNAMES": "web"},
    )
    assert "no socket named 'admin' (only: web)" in str(
        failure_result_of(named.listen(lambda _: None), OSError)
    )
    with pytest.raises(ValueError, match="an index or a name"):
        SystemdEndpoint(MemoryReactor(), environ={})  # type: ignore[arg-type]


def test_tls_from_strings_end_to_end(
    real_reactor: Reactor, wait: Wait, ca: trustme.CA, tmp_path: Path
) -> None:
    r = real_reactor
    both, ca_file = tmp_path / "localhost.pem", tmp_path / "ca.pem"
    ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(str(both))
    ca.cert_pem.write_to_path(str(ca_file))
    server = server_from_string(r, f"tls:0:interface=127.0.0.1:privateKey={both}:alpn=h2")
    port = wait(r, server.listen(lambda _: Echo()))
    text = f"tls:localhost:{port.address.port}:caCerts={ca_file}:alpn=h2,http/1.1"
    client = wait(r, client_from_string(r, text).connect(Client))
    assert wait(r, client.reply) == b"ping"
    assert client.transport.get_extra_info("ssl_object").selected_alpn_protocol() == "h2"
    client.transport.close()
    wait(r, port.stop_listening())


def test_wrap_client_tls_runs_tls_over_another_endpoint(
    real_reactor: Reactor, wait: Wait, ca: trustme.CA, tls_server: int
) -> None:
    r = real_reactor
    context = client_context(ca_data=ca.cert_pem.bytes().decode())
    tcp = TCPClientEndpoint(r, "127.0.0.1", tls_server)
    endpoint = wrap_client_tls(tcp, "localhost", context=context, handshake_timeout=5)
    assert endpoint.context is context
    assert endpoint.handshake_timeout == 5
    client = wait(r, endpoint.connect(Client))
    assert wait(r, client.reply) == b"ping"
    assert client.transport.get_extra_info("ssl_object").server_hostname == "localhost"
    client.transport.close()


def test_wrap_client_tls_verifies_against_the_system_store_by_default(
    real_reactor: Reactor, wait: Wait, tls_server: int
) -> None:
    r = real_reactor
    endpoint = wrap_client_tls(TCPClientEndpoint(r, "127.0.0.1", tls_server), "localhost")
    assert endpoint.context.verify_mode == ssl.CERT_REQUIRED
    assert endpoint.context.check_hostname
    with pytest.raises(ssl.SSLCertVerificationError):
        wait(r, endpoint.connect(Client))
