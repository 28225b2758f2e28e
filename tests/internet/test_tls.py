"""TLS: contexts from files, listen_tls/connect_tls, ALPN, SNI, client certificates,
reloading, bad handshakes, and openssl's s_client and s_server as real peers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from torsion.defer import Deferred
from torsion.errors import CannotListenError, TLSConfigError
from torsion.internet import Address, IPv4Address, Listener, Protocol, Reactor
from torsion.internet._tls import (
    ServerTLS,
    client_context,
    connect_tls,
    listen_tls,
    server_tls,
    tls_info,
)
from torsion.testing import require_peer

Wait = Callable[..., Any]

LOCALHOST = ("localhost", "127.0.0.1", "::1")


# -- certificates -------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def write_pem(path: Path, cert: trustme.LeafCert, *, key: bool = True) -> Path:
    """Write the layout ServerTLS documents: certificate, chain, then the key."""
    parts = [pem.bytes() for pem in cert.cert_chain_pems]
    if key:
        parts.append(cert.private_key_pem.bytes())
    path.write_bytes(b"".join(parts))
    return path


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def cert_file(ca: trustme.CA, tmp_path: Path) -> Path:
    """localhost, 127.0.0.1 and ::1: certificate and key in one file."""
    return write_pem(tmp_path / "localhost.pem", ca.issue_cert(*LOCALHOST))


@pytest.fixture
def client(ca_file: Path) -> ssl.SSLContext:
    """A client that trusts the test CA."""
    return client_context(ca_file=ca_file)


def sans(info_holder: Protocol) -> set[str]:
    """The DNS names in the certificate the other end presented."""
    info = tls_info(info_holder.transport)
    assert info is not None
    assert info.peer_certificate is not None
    return {value for kind, value in info.peer_certificate["subjectAltName"] if kind == "DNS"}


# -- protocols ------------------------------------------------------------------------


class Echo(Protocol):
    """Sends back what it receives."""

    def __init__(self) -> None:
        self.made: Deferred[None] = Deferred()
        self.lost: Deferred[Exception | None] = Deferred()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.made.callback(None)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.lost.callback(exc)


class LineEcho(Echo):
    """Echoes one line, then closes the connection."""

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)
        if data.endswith(b"\n"):
            self.transport.close()


class Client(Protocol):
    """Asks and collects replies; its factory is the class (given the server's address)."""

    def __init__(self, address: Address | None = None) -> None:
        self.address = address
        self.received = b""
        self.expected = 0
        self.reply: Deferred[bytes] | None = None
        self.lost: Deferred[Exception | None] = Deferred()

    def ask(self, message: bytes) -> Deferred[bytes]:
        self.received = b""
        self.expected = len(message)
        self.reply = Deferred()
        self.transport.write(message)
        return self.reply

    def data_received(self, data: bytes) -> None:
        self.received += data
        if self.reply is not None and len(self.received) >= self.expected:
            reply, self.reply = self.reply, None
            reply.callback(self.received)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.lost.callback(exc)


class Served:
    """A server factory that keeps every protocol it made."""

    def __init__(self, make: Callable[[], Echo] = Echo) -> None:
        self.make = make
        self.protocols: list[Echo] = []
        self.peers: list[Address] = []

    def __call__(self, peer: Address) -> Echo:
        self.peers.append(peer)
        self.protocols.append(self.make())
        return self.protocols[-1]


def serve(
    r: Reactor, context: ssl.SSLContext | ServerTLS, served: Served | None = None, **kw: Any
) -> tuple[Listener, Served]:
    served = served if served is not None else Served()
    return r.listen_tls(0, served, context, interface="127.0.0.1", **kw), served


def connect(
    r: Reactor,
    wait: Wait,
    port: int,
    context: ssl.SSLContext | None,
    name: str | None = "localhost",
    host: str = "127.0.0.1",
) -> Client:
    client = wait(r, r.connect_tls(host, port, Client, context=context, server_hostname=name))
    assert isinstance(client, Client)
    return client


def hang_up(r: Reactor, wait: Wait, *protocols: Client | Echo) -> None:
    for protocol in protocols:
        protocol.transport.close()
    for protocol in protocols:
        wait(r, protocol.lost)


def assert_no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    noisy = [
        record.getMessage()
        for record in caplog.records
        if record.levelno >= logging.WARNING or record.exc_info
    ]
    assert noisy == []


def open_sockets() -> int:
    """How many sockets this process has open.

    Sockets only: libuv keeps a descriptor of /dev/null in reserve per loop
    (for running out of descriptors), opened at its first listen.
    """
    if not os.path.isdir("/proc/self/fd"):  # pragma: no cover - not Linux
        pytest.skip("counting file descriptors needs /proc/self/fd")
    count = 0
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor is gone
            count += os.readlink(f"/proc/self/fd/{name}").startswith("socket:")
    return count


# -- our client, our server ---------------------------------------------------------------


def test_echo_over_tls(
    real_reactor: Reactor, wait: Wait, cert_file: Path, client: ssl.SSLContext
) -> None:
    r = real_reactor
    listener, served = serve(r, server_tls(cert_file))
    assert listener.host == "127.0.0.1"
    assert listener.port > 0
    c = connect(r, wait, listener.port, client)
    assert wait(r, c.ask(b"hello over TLS")) == b"hello over TLS"
    assert c.peer == IPv4Address("127.0.0.1", listener.port)
    (server,) = served.protocols
    assert served.peers == [c.host]
    # Both ends see what was negotiated; secure defaults mean TLS 1.2 at least.
    client_info, server_info = tls_info(c.transport), tls_info(server.transport)
    assert client_info is not None
    assert server_info is not None
    assert client_info.version in {"TLSv1.2", "TLSv1.3"}
    assert client_info.version == server_info.version
    assert client_info.cipher == server_info.cipher
    assert client_info.alpn is None
    assert sans(c) == {"localhost"}
    assert client_info.peer_certificate_der is not None
    # The server asked for no client certificate.
    assert server_info.peer_certificate is None
    assert server_info.peer_certificate_der is None
    assert server.transport.get_extra_info("peercert") is None
    hang_up(r, wait, c)
    assert wait(r, server.lost) is None
    wait(r, listener.stop_listening())


def test_connection_options_reach_the_tls_sockets(
    real_reactor: Reactor, wait: Wait, cert_file: Path, client: ssl.SSLContext
) -> None:
    r = real_reactor
    served = Served()
    listener = r.listen_tls(
        0, served, server_tls(cert_file), interface="127.0.0.1", keepalive=True
    )
    connector = r.connect_tls(
        "127.0.0.1",
        listener.port,
        Client,
        context=client,
        server_hostname="localhost",
        bind_address=("127.0.0.2", 0),
        keepalive=True,
    )
    c = wait(r, connector)
    wait(r, served.protocols[0].made)
    assert c.host == served.peers[0] == IPv4Address("127.0.0.2", c.host.port)
    for end in (c, served.protocols[0]):
        sock = end.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    hang_up(r, wait, c)
    wait(r, listener.stop_listening())


def test_tls_info_of_a_plain_connection_is_none(real_reactor: Reactor, wait: Wait) -> None:
    r = real_reactor
    served = Served()
    listener = r.listen_tcp(0, served, interface="127.0.0.1")
    c = wait(r, r.connect_tcp("127.0.0.1", listener.port, Client))
    assert tls_info(c.transport) is None
    hang_up(r, wait, c)
    wait(r, listener.stop_listening())


def test_an_ip_address_is_checked_against_the_certificate(
    real_reactor: Reactor, wait: Wait, ca: trustme.CA, tmp_path: Path, client: ssl.SSLContext
) -> None:
    r = real_reactor
    with_ip, _ = serve(r, server_tls(write_pem(tmp_path / "ip.pem", ca.issue_cert("127.0.0.1"))))
    # No server_hostname: the address connected to is what must match.
    c = connect(r, wait, with_ip.port, client, name=None)
    assert wait(r, c.ask(b"ping")) == b"ping"
    hang_up(r, wait, c)
    names_only, _ = serve(r, server_tls(write_pem(tmp_path / "n.pem", ca.issue_cert("localhost"))))
    with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
        connect(r, wait, names_only.port, client, name=None)
    wait(r, with_ip.stop_listening())
    wait(r, names_only.stop_listening())


def test_wrong_host_name_fails_verification_and_the_server_stays_quiet(
    real_reactor: Reactor,
    wait: Wait,
    cert_file: Path,
    client: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    r = real_reactor
    listener, served = serve(r, server_tls(cert_file))
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        connect(r, wait, listener.port, client, name="wrong.example")
    # A good connection after it: the server has run past the failed one.
    good = connect(r, wait, listener.port, client)
    assert wait(r, good.ask(b"still serving")) == b"still serving"
    hang_up(r, wait, good)
    wait(r, listener.stop_listening())
    # Only the good connection ever reached the factory.
    assert len(served.protocols) == 1
    assert_no_tracebacks(caplog)


def test_default_client_trusts_the_system_store_not_the_test_ca(
    real_reactor: Reactor, wait: Wait, cert_file: Path
) -> None:
    r = real_reactor
    listener, _ = serve(r, server_tls(cert_file))
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
        connect(r, wait, listener.port, None)
    # The same, with the default context built explicitly.
    default = client_context()
    assert default.check_hostname
    assert default.verify_mode == ssl.CERT_REQUIRED
    assert default.minimum_version == ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLCertVerificationError):
        connect(r, wait, listener.port, default)
    wait(r, listener.stop_listening())


def test_verify_false_is_an_explicit_opt_out(
    real_reactor: Reactor, wait: Wait, cert_file: Path
) -> None:
    r = real_reactor
    listener, _ = serve(r, server_tls(cert_file))
    unverified = client_context(verify=False)
    assert not unverified.check_hostname
    assert unverified.verify_mode == ssl.CERT_NONE
    c = connect(r, wait, listener.port, unverified, name="anything.example")
    assert wait(r, c.ask(b"unauthenticated")) == b"unauthenticated"
    info = tls_info(c.transport)
    assert info is not None
    # Nothing was verified, so nothing decoded; the raw certificate is there.
    assert info.peer_certificate is None
    assert info.peer_certificate_der is not None
    hang_up(r, wait, c)
    wait(r, listener.stop_listening())


def only_tls_1_1(context: ssl.SSLContext) -> None:
    """Make ``context`` speak TLS 1.1 and nothing else."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # deprecated is the point
        # TLS 1.1 signs with SHA-1, which security level 1 and up refuse.
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        context.minimum_version = ssl.TLSVersion.TLSv1_1
        context.maximum_version = ssl.TLSVersion.TLSv1_1


def _speaks_tls_1_1() -> bool:
    """Whether this OpenSSL can still do a TLS 1.1 handshake, tried in memory."""
    ca = trustme.CA()
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost").configure_cert(server)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(client)
    try:
        for context in (server, client):
            only_tls_1_1(context)
    except (ssl.SSLError, ValueError):
        return False
    pipes = [(ssl.MemoryBIO(), ssl.MemoryBIO()) for _ in range(2)]
    s = server.wrap_bio(pipes[0][0], pipes[0][1], server_side=True)
    c = client.wrap_bio(pipes[1][0], pipes[1][1], server_hostname="localhost")
    done = {"s": False, "c": False}
    for _ in range(10):
        for name, end in (("c", c), ("s", s)):
            try:
                end.do_handshake()
                done[name] = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                return False
        pipes[0][0].write(pipes[1][1].read())  # client -> server
        pipes[1][0].write(pipes[0][1].read())  # server -> client
        if all(done.values()):
            return c.version() == "TLSv1.1"
    return False


def test_tls_below_1_2_is_refused(
    real_reactor: Reactor, wait: Wait, cert_file: Path, ca_file: Path
) -> None:
    if not _speaks_tls_1_1():
        pytest.skip("this OpenSSL cannot make a TLS 1.1 client to test the refusal with")
    r = real_reactor
    listener, served = serve(r, server_tls(cert_file))
    old = client_context(ca_file=ca_file)
    only_tls_1_1(old)
    # The control: a server that still allows TLS 1.1 takes this client.
    lax = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    lax.load_cert_chain(cert_file)
    only_tls_1_1(lax)
    lax_listener, _ = serve(r, lax)
    c = connect(r, wait, lax_listener.port, old)
    lax_info = tls_info(c.transport)
    assert lax_info is not None
    assert lax_info.version == "TLSv1.1"
    hang_up(r, wait, c)
    # Ours refuses it. (asyncio drops the connection without flushing the
    # protocol_version alert, so the client may see a reset instead.)
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        connect(r, wait, listener.port, old)
    assert served.protocols == []
    wait(r, listener.stop_listening())
    wait(r, lax_listener.stop_listening())


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (("h2", "http/1.1"), "h2"),
        (("http/1.1",), "http/1.1"),
        # The server's preference wins over the client's order.
        (("http/1.1", "h2"), "h2"),
        # No protocol in common: the connection goes ahead without one.
        (("spdy/3",), None),
        ((), None),
    ],
)
def test_alpn(
    real_reactor: Reactor,
    wait: Wait,
    cert_file: Path,
    ca_file: Path,
    offered: Sequence[str],
    chosen: str | None,
) -> None:
    r = real_reactor
    listener, served = serve(r, server_tls(cert_file, alpn=("h2", "http/1.1")))
    c = connect(r, wait, listener.port, client_context(ca_file=ca_file, alpn=offered))
    wait(r, served.protocols[0].made)
    client_info, server_info = tls_info(c.transport), tls_info(served.protocols[0].transport)
    assert client_info is not None
    assert server_info is not None
    assert client_info.alpn == server_info.alpn == chosen
    assert c.transport.get_extra_info("ssl_object").selected_alpn_protocol() == chosen
    hang_up(r, wait, c)
    wait(r, listener.stop_listening())


# -- SNI, client certificates, reload --------------------------------------------------------


@pytest.fixture
def sni_dir(ca: trustme.CA, tmp_path: Path) -> Path:
    directory = tmp_path / "sni"
    directory.mkdir()
    write_pem(directory / "alpha.test.pem", ca.issue_cert("alpha.test"))
    write_pem(directory / "beta.test.pem", ca.issue_cert("beta.test", "www.beta.test"))
    # Not certificates by the layout's rules: ignored.
    (directory / "README").write_text("one PEM file per host name\n")
    (directory / ".hidden.pem").write_text("not read\n")
    (directory / "sub.pem").mkdir()
    return directory


def test_sni_chooses_the_certificate_by_name(
    real_reactor: Reactor, wait: Wait, cert_file: Path, sni_dir: Path, client: ssl.SSLContext
) -> None:
    r = real_reactor
    tls = server_tls(cert_file, sni_dir=sni_dir)
    assert tls.names == ("alpha.test", "beta.test")
    assert "2 names" in repr(tls)
    listener, _ = serve(r, tls)
    seen = {}
    for name in ("alpha.test", "beta.test", "localhost"):
        c = connect(r, wait, listener.port, client, name=name)
        seen[name] = sans(c)
        hang_up(r, wait, c)
    assert seen == {
        "alpha.test": {"alpha.test"},
        "beta.test": {"beta.test", "www.beta.test"},
        "localhost": {"localhost"},  # no file for it: the default
    }
    # A name with no file gets the default certificate, which does not carry it.
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        connect(r, wait, listener.port, client, name="gamma.test")
    # No name at all (an IP address sends none): the default certificate too.
    c = connect(r, wait, listener.port, client, name=None)
    assert sans(c) == {"localhost"}
    hang_up(r, wait, c)
    wait(r, listener.stop_listening())


class UpgradingServer(Protocol):
    """Answers "GO" to a STARTTLS line, upgrades with its settings, then echoes."""

    def __init__(self, tls: ServerTLS) -> None:
        self.tls = tls
        self.upgraded: Deferred[None] | None = None

    def data_received(self, data: bytes) -> None:
        if self.upgraded is None:
            self.transport.write(b"GO\n")
            self.upgraded = self.start_tls(self.tls.context, server_side=True)
        else:
            self.transport.write(data)


class UpgradingClient(Client):
    def __init__(self, address: Address, context: ssl.SSLContext, name: str) -> None:
        super().__init__(address)
        self.context = context
        self.name = name
        self.secure: Deferred[None] = Deferred()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.transport.write(b"STARTTLS\n")

    def data_received(self, data: bytes) -> None:
        if data == b"GO\n" and not self.secure.called:
            upgrade = self.start_tls(self.context, server_hostname=self.name)
            upgrade.add_callbacks(self.secure.callback, self.secure.errback)
        else:
            super().data_received(data)


def test_server_tls_serves_starttls_by_name_too(
    real_reactor: Reactor, wait: Wait, cert_file: Path, sni_dir: Path, client: ssl.SSLContext
) -> None:
    r = real_reactor
    tls = server_tls(cert_file, sni_dir=sni_dir)
    listener = r.listen_tcp(0, lambda _: UpgradingServer(tls), interface="127.0.0.1")
    c = wait(
        r,
        r.connect_tcp(
            "127.0.0.1", listener.port, lambda peer: UpgradingClient(peer, client, "beta.test")
        ),
    )
    wait(r, c.secure)
    assert sans(c) == {"beta.test", "www.beta.test"}
    assert wait(r, c.ask(b"upgraded")) == b"upgraded"
    hang_up(r, wait, c)
    wait(r, listener.stop_listening())


@pytest.fixture
def client_cert_files(ca: trustme.CA, tmp_path: Path) -> tuple[Path, Path]:
    cert = ca.issue_cert("client.example", "client@example.test")
    cert_path = write_pem(tmp_path / "client.pem", cert, key=False)
    key_path = tmp_path / "client.key"
    cert.private_key_pem.write_to_path(str(key_path))
    return cert_path, key_path


@pytest.mark.parametrize("name", ["localhost", "alpha.test"], ids=["default", "by-sni"])
def test_client_certificate_required(
    real_reactor: Reactor,
    wait: Wait,
    cert_file: Path,
    ca_file: Path,
    sni_dir: Path,
    client_cert_files: tuple[Path, Path],
    caplog: pytest.LogCaptureFixture,
    name: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    r = real_reactor
    # By SNI, the handshake is switched to another context: it must check
    # client certificates just the same.
    tls = server_tls(cert_file, sni_dir=sni_dir, client_ca_file=ca_file, require_client_cert=True)
    assert tls.context.verify_mode == ssl.CERT_REQUIRED
    listener, served = serve(r, tls)
    # Without a certificate, or with one from another CA: refused.
    stranger = client_context(ca_file=ca_file)
    trustme.CA().issue_cert("client.example").configure_cert(stranger)
    for refused in (client_context(ca_file=ca_file), stranger):
        try:
            c = connect(r, wait, listener.port, refused, name=name)
        except (ssl.SSLError, ConnectionError):
            continue
        # In TLS 1.3 the client finishes its side of the handshake before the
        # server has checked its certificate; the server then hangs up.
        c.transport.write(b"anyone there?")
        wait(r, c.lost)
        assert c.received == b""
    # With the right one: the server sees who connected.
    cert_path, key_path = client_cert_files
    mutual = client_context(ca_file=ca_file, cert_file=cert_path, key_file=key_path)
    c = connect(r, wait, listener.port, mutual, name=name)
    assert wait(r, c.ask(b"it is me")) == b"it is me"
    assert sans(c) == {name}
    assert len(served.protocols) == 1  # the refused ones never reached the factory
    server = served.protocols[0]
    peercert = server.transport.get_extra_info("peercert")
    assert ("DNS", "client.example") in peercert["subjectAltName"]
    assert ("email", "client@example.test") in peercert["subjectAltName"]
    info = tls_info(server.transport)
    assert info is not None
    assert info.peer_certificate == peercert
    hang_up(r, wait, c)
    wait(r, listener.stop_listening())
    assert_no_tracebacks(caplog)


def test_client_certificate_optional(
    real_reactor: Reactor,
    wait: Wait,
    cert_file: Path,
    ca_file: Path,
    client_cert_files: tuple[Path, Path],
) -> None:
    r = real_reactor
    tls = server_tls(cert_file, client_ca_file=ca_file)
    assert tls.context.verify_mode == ssl.CERT_OPTIONAL
    listener, served = serve(r, tls)
    anonymous = connect(r, wait, listener.port, client_context(ca_file=ca_file))
    assert wait(r, anonymous.ask(b"anyone")) == b"anyone"
    assert served.protocols[0].transport.get_extra_info("peercert") is None
    cert_path, key_path = client_cert_files
    mutual = client_context(ca_file=ca_file, cert_file=cert_path, key_file=key_path)
    known = connect(r, wait, listener.port, mutual)
    assert wait(r, known.ask(b"someone")) == b"someone"
    assert served.protocols[1].transport.get_extra_info("peercert") is not None
    hang_up(r, wait, anonymous, known)
    wait(r, listener.stop_listening())


def test_reload_serves_new_certificates_to_new_connections_only(
    real_reactor: Reactor,
    wait: Wait,
    ca: trustme.CA,
    tmp_path: Path,
    sni_dir: Path,
    client: ssl.SSLContext,
) -> None:
    r = real_reactor
    cert_file = write_pem(tmp_path / "server.pem", ca.issue_cert("localhost"))
    tls = server_tls(cert_file, sni_dir=sni_dir, alpn=("h2",))
    listener, _ = serve(r, tls)
    context = tls.context
    h2_client = client_context(ca_file=tmp_path / "ca.pem", alpn=("h2",))
    first = connect(r, wait, listener.port, h2_client)
    assert sans(first) == {"localhost"}
    # New files: another default certificate, a changed name, a new name.
    write_pem(cert_file, ca.issue_cert("localhost", "reloaded.test"))
    write_pem(sni_dir / "alpha.test.pem", ca.issue_cert("alpha.test", "new.alpha.test"))
    write_pem(sni_dir / "gamma.test.pem", ca.issue_cert("gamma.test"))
    tls.reload()
    assert tls.context is context  # what the listener holds is still current
    assert tls.names == ("alpha.test", "beta.test", "gamma.test")
    second = connect(r, wait, listener.port, h2_client)
    assert sans(second) == {"localhost", "reloaded.test"}
    for name, expected in [
        ("alpha.test", {"alpha.test", "new.alpha.test"}),
        ("gamma.test", {"gamma.test"}),
    ]:
        c = connect(r, wait, listener.port, client, name=name)
        assert sans(c) == expected
        hang_up(r, wait, c)
    # Settings other than the certificates hold after the switch.
    second_info = tls_info(second.transport)
    assert second_info is not None
    assert second_info.alpn == "h2"
    # The first connection carries on with the certificate it began with.
    assert wait(r, first.ask(b"still here")) == b"still here"
    assert sans(first) == {"localhost"}
    hang_up(r, wait, first, second)
    wait(r, listener.stop_listening())


def test_a_failed_reload_keeps_the_old_certificates(
    real_reactor: Reactor,
    wait: Wait,
    ca: trustme.CA,
    tmp_path: Path,
    sni_dir: Path,
    client: ssl.SSLContext,
) -> None:
    r = real_reactor
    cert_file = write_pem(tmp_path / "server.pem", ca.issue_cert("localhost"))
    tls = server_tls(cert_file, sni_dir=sni_dir)
    listener, _ = serve(r, tls)
    # The default is fine, but a file in the SNI directory is broken.
    write_pem(cert_file, ca.issue_cert("localhost", "reloaded.test"))
    broken = sni_dir / "delta.test.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(TLSConfigError) as info:
        tls.reload()
    assert info.value.path == str(broken)
    assert tls.names == ("alpha.test", "beta.test")
    c = connect(r, wait, listener.port, client)
    assert sans(c) == {"localhost"}  # not the reloaded default either
    hang_up(r, wait, c)
    wait(r, listener.stop_listening())


def test_chain_file_completes_the_chain(
    real_reactor: Reactor, wait: Wait, ca: trustme.CA, tmp_path: Path, client: ssl.SSLContext
) -> None:
    r = real_reactor
    intermediate = ca.create_child_ca()
    leaf = intermediate.issue_cert("localhost")
    leaf_file = tmp_path / "leaf.pem"
    leaf.cert_chain_pems[0].write_to_path(str(leaf_file))  # the leaf alone
    key_file = tmp_path / "leaf.key"
    leaf.private_key_pem.write_to_path(str(key_file))
    chain_file = tmp_path / "chain.pem"
    intermediate.cert_pem.write_to_path(str(chain_file))
    incomplete, _ = serve(r, server_tls(leaf_file, key_file))
    with pytest.raises(ssl.SSLCertVerificationError):
        connect(r, wait, incomplete.port, client)
    complete, _ = serve(r, server_tls(leaf_file, key_file, chain_file=chain_file))
    c = connect(r, wait, complete.port, client)
    assert wait(r, c.ask(b"chained")) == b"chained"
    hang_up(r, wait, c)
    wait(r, incomplete.stop_listening())
    wait(r, complete.stop_listening())


# -- bad settings -----------------------------------------------------------------------------


def encrypted_key(cert: trustme.LeafCert) -> bytes:
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), password=None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )


def test_bad_files_fail_at_once_naming_the_file(ca: trustme.CA, tmp_path: Path) -> None:
    cert = ca.issue_cert("localhost")
    cert_only = write_pem(tmp_path / "cert.pem", cert, key=False)
    key_only = tmp_path / "key.pem"
    cert.private_key_pem.write_to_path(str(key_only))
    other_key = tmp_path / "other.key"
    ca.issue_cert("localhost").private_key_pem.write_to_path(str(other_key))
    locked = tmp_path / "locked.key"
    locked.write_bytes(encrypted_key(cert))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello\n")
    mangled = tmp_path / "mangled.pem"
    mangled.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    missing = tmp_path / "missing.pem"

    cases: list[tuple[Callable[[], object], Path, str]] = [
        (lambda: server_tls(missing), missing, "not found"),
        (lambda: server_tls(cert_only, missing), missing, "not found"),
        (lambda: server_tls(tmp_path), tmp_path, "is a directory"),
        (lambda: server_tls(garbage, key_only), garbage, "no PEM certificate"),
        (lambda: server_tls(cert_only), cert_only, "no PEM private key"),
        (lambda: server_tls(cert_only, garbage), garbage, "no PEM private key"),
        (lambda: server_tls(cert_only, other_key), cert_only, "does not match"),
        (lambda: server_tls(cert_only, locked), locked, "encrypted"),
        (lambda: server_tls(cert_only, key_only, chain_file=garbage), garbage, "no PEM"),
        (lambda: server_tls(cert_only, key_only, client_ca_file=garbage), garbage, "no PEM"),
        (lambda: server_tls(cert_only, key_only, sni_dir=missing), missing, "not found"),
        (lambda: server_tls(cert_only, key_only, sni_dir=garbage), garbage, "not a directory"),
        (lambda: server_tls(cert_only, key_only, client_ca_file=mangled), mangled, "client CA"),
        (lambda: server_tls(mangled, key_only), mangled, "cannot load the certificate"),
        (lambda: client_context(ca_file=missing), missing, "not found"),
        (lambda: client_context(ca_file=mangled), mangled, "cannot load the CA"),
        (lambda: client_context(ca_file=garbage), garbage, "no PEM certificate"),
        (lambda: client_context(cert_file=cert_only, key_file=other_key), cert_only, "match"),
    ]
    for build, path, problem in cases:
        with pytest.raises(TLSConfigError) as info:
            build()
        assert info.value.path == str(path)
        assert problem in str(info.value)
        assert str(path) in str(info.value)
        assert isinstance(info.value, ValueError)


def test_bad_settings(ca: trustme.CA, tmp_path: Path) -> None:
    cert_file = write_pem(tmp_path / "server.pem", ca.issue_cert("localhost"))
    with pytest.raises(TLSConfigError, match="needs client_ca_file"):
        server_tls(cert_file, require_client_cert=True)
    with pytest.raises(TLSConfigError, match="key_file was given without cert_file"):
        client_context(key_file=cert_file)
    with pytest.raises(TLSConfigError, match="1 to 255 bytes"):
        server_tls(cert_file, alpn=("h2", ""))
    with pytest.raises(TLSConfigError, match="1 to 255 bytes"):
        client_context(alpn=("x" * 256,))
    with pytest.raises(TypeError, match="sequence of protocol names"):
        client_context(alpn="h2")
    with pytest.raises(TLSConfigError, match="ca_data"):
        client_context(ca_data="not a certificate")
    twice = tmp_path / "twice"
    twice.mkdir()
    write_pem(twice / "a.test.pem", ca.issue_cert("a.test"))
    write_pem(twice / "A.TEST.pem", ca.issue_cert("a.test"))
    with pytest.raises(TLSConfigError, match=r"two files for 'a\.test'"):
        server_tls(cert_file, sni_dir=twice)


def test_contexts_are_checked_for_their_side(
    real_reactor: Reactor, ca: trustme.CA, tmp_path: Path
) -> None:
    r = real_reactor
    cert_file = write_pem(tmp_path / "server.pem", ca.issue_cert("localhost"))
    with pytest.raises(TLSConfigError, match="client context cannot serve"):
        r.listen_tls(0, Served(), client_context(), interface="127.0.0.1")
    with pytest.raises(TLSConfigError, match="server context cannot connect"):
        r.connect_tls("127.0.0.1", 1, Client, context=server_tls(cert_file).context)
    with pytest.raises(ValueError, match="needs an IP address"):
        r.connect_tls("127.0.0.1", 1, Client, bind_address=("localhost", 0))


def test_client_context_takes_ca_data(
    real_reactor: Reactor, wait: Wait, ca: trustme.CA, cert_file: Path
) -> None:
    r = real_reactor
    listener, _ = serve(r, server_tls(cert_file))
    c = connect(r, wait, listener.port, client_context(ca_data=ca.cert_pem.bytes().decode()))
    assert wait(r, c.ask(b"data")) == b"data"
    hang_up(r, wait, c)
    wait(r, listener.stop_listening())


def test_port_taken_raises_cannot_listen(
    real_reactor: Reactor, wait: Wait, cert_file: Path
) -> None:
    r = real_reactor
    tls = server_tls(cert_file)
    first, _ = serve(r, tls)
    with pytest.raises(CannotListenError):
        r.listen_tls(first.port, Served(), tls, interface="127.0.0.1")
    wait(r, first.stop_listening())


# -- faults -------------------------------------------------------------------------------


async def raw_exchange(loop: asyncio.AbstractEventLoop, port: int, payload: bytes) -> bytes:
    """Connect with a plain socket, send ``payload``, and read until the server hangs up."""
    sock = socket.socket()
    sock.setblocking(False)
    received = b""
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
        if payload:
            await loop.sock_sendall(sock, payload)
        while len(received) < 65536:
            try:
                chunk = await loop.sock_recv(sock, 4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    finally:
        sock.close()
    return received


@pytest.mark.parametrize(
    "payload",
    [b"GET / HTTP/1.0\r\n\r\n", bytes(range(256)) * 8, b"\x16\x03\x01\x00\x05hello"],
    ids=["http", "binary", "bad-hello"],
)
def test_garbage_instead_of_a_handshake_closes_cleanly(
    real_reactor: Reactor,
    wait: Wait,
    cert_file: Path,
    client: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
    payload: bytes,
) -> None:
    caplog.set_level(logging.DEBUG)
    r = real_reactor
    before = open_sockets()
    listener, served = serve(r, server_tls(cert_file))
    reply = wait(r, raw_exchange(r.loop, listener.port, payload))
    # Nothing, or a TLS alert record (content type 21, RFC 8446 section 5.1).
    assert reply == b"" or reply[0] == 21
    assert served.protocols == []
    # The server still serves.
    c = connect(r, wait, listener.port, client)
    assert wait(r, c.ask(b"fine")) == b"fine"
    hang_up(r, wait, c, served.protocols[0])
    wait(r, listener.stop_listening())
    assert open_sockets() == before
    assert_no_tracebacks(caplog)


def test_a_silent_client_is_dropped_after_the_handshake_timeout(
    real_reactor: Reactor, wait: Wait, cert_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    r = real_reactor
    before = open_sockets()
    listener, served = serve(r, server_tls(cert_file), handshake_timeout=0.1)
    # Connects and says nothing: the server hangs up once the timeout passed.
    assert wait(r, raw_exchange(r.loop, listener.port, b"")) == b""
    assert served.protocols == []
    wait(r, listener.stop_listening())
    assert open_sockets() == before
    assert_no_tracebacks(caplog)


def test_reactor_close_stops_tls_listeners(loop_name: str, cert_file: Path) -> None:
    reactor = Reactor(uvloop=loop_name == "uvloop")
    listener = reactor.listen_tls(0, Served(), server_tls(cert_file), interface="127.0.0.1")
    reactor.close()
    assert not listener.listening
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", listener.port))  # free again


def test_module_functions_take_the_loop(
    real_reactor: Reactor, wait: Wait, cert_file: Path, client: ssl.SSLContext
) -> None:
    r = real_reactor
    stopped: list[Listener] = []
    listener = listen_tls(
        r.loop,
        0,
        Served(),
        server_tls(cert_file),
        interface="127.0.0.1",
        on_stopped=stopped.append,
    )
    connector = connect_tls(
        r.loop,
        r.resolve_all,
        "127.0.0.1",
        listener.port,
        Client,
        context=client,
        server_hostname="localhost",
    )
    assert repr(connector) == f"<Connector connecting to 127.0.0.1:{listener.port}>"
    c = wait(r, connector)
    assert wait(r, c.ask(b"direct")) == b"direct"
    connector.disconnect()
    wait(r, c.lost)
    wait(r, listener.stop_listening())
    assert stopped == [listener]


# -- openssl as the other side ----------------------------------------------------------


async def run_peer(args: Sequence[str], data: bytes) -> tuple[int, str]:
    """Run a program with ``data`` on its stdin; return its exit status and output."""
    process = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(data), 10)
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it may just have ended
                process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


def test_openssl_s_client_against_our_server(
    real_reactor: Reactor, wait: Wait, cert_file: Path, ca_file: Path, sni_dir: Path
) -> None:
    openssl = require_peer("openssl", package="openssl")
    r = real_reactor
    tls = server_tls(cert_file, sni_dir=sni_dir, alpn=("h2", "http/1.1"))
    listener, served = serve(r, tls, Served(LineEcho))
    status, output = wait(
        r,
        run_peer(
            [
                openssl,
                "s_client",
                "-connect",
                f"127.0.0.1:{listener.port}",
                "-servername",
                "beta.test",
                "-verify_hostname",
                "beta.test",
                "-alpn",
                "h2",
                "-CAfile",
                str(ca_file),
                "-verify_return_error",
                "-ign_eof",  # wait for our server to hang up after its echo
            ],
            b"hello from openssl\n",
        ),
    )
    assert status == 0, output
    assert "hello from openssl" in output
    assert "ALPN protocol: h2" in output
    assert "Verify return code: 0 (ok)" in output
    assert "Verified peername: beta.test" in output
    assert len(served.protocols) == 1
    wait(r, served.protocols[0].lost)
    wait(r, listener.stop_listening())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_our_client_against_openssl_s_server(
    real_reactor: Reactor,
    wait: Wait,
    cert_file: Path,
    ca_file: Path,
    client_cert_files: tuple[Path, Path],
) -> None:
    openssl = require_peer("openssl", package="openssl")
    r = real_reactor
    cert_path, key_path = client_cert_files
    context = client_context(
        ca_file=ca_file, cert_file=cert_path, key_file=key_path, alpn=("h2", "http/1.1")
    )
    port = free_port()

    async def exchange() -> tuple[bytes, str | None, str]:
        server = await asyncio.create_subprocess_exec(
            openssl,
            "s_server",
            "-accept",
            f"127.0.0.1:{port}",
            "-cert",
            str(cert_file),
            "-CAfile",
            str(ca_file),
            "-Verify",
            "1",  # a client certificate is required
            "-verify_return_error",
            "-alpn",
            "http/1.1,h2",
            "-rev",  # answers each line reversed
            "-naccept",
            "1",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert server.stdout is not None
        try:
            banner = b""
            while b"ACCEPT" not in banner:
                line = await asyncio.wait_for(server.stdout.readline(), 10)
                assert line, f"s_server ended before accepting: {banner!r}"
                banner += line
            c = await r.connect_tls(
                "127.0.0.1", port, Client, context=context, server_hostname="localhost"
            )
            reply = await c.ask(b"hello\n")
            info = tls_info(c.transport)
            assert info is not None
            c.transport.close()
            await c.lost
            return reply, info.alpn, info.version
        finally:
            if server.returncode is None:
                with contextlib.suppress(ProcessLookupError):  # it may just have ended
                    server.kill()
            await server.wait()
            await server.stdout.read()

    reply, alpn, version = wait(r, exchange(), 20)
    assert reply == b"olleh\n"
    assert alpn == "http/1.1"  # s_server's preference
    assert version in {"TLSv1.2", "TLSv1.3"}
