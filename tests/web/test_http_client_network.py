"""HTTPClient against real servers on 127.0.0.1, on both loops.

The servers are not torsion's: Python's http.server (in a thread, also over
TLS with trustme certificates), twisted.web (in a subprocess) and
``openssl s_server -www``.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trustme
from _client_peers import running_stdlib_server, running_twisted_site

from torsion.internet import Reactor, client_context
from torsion.testing import require_peer
from torsion.web._client import HTTPClient
from torsion.web._client_errors import RedirectRefusedError, ResponseNeverReceivedError

BOTH_LOOPS = pytest.mark.parametrize(
    "loop",
    [
        pytest.param("asyncio", marks=pytest.mark.torsion_loop("asyncio")),
        pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop")),
    ],
)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[int, threading.Event]]:
    """http.server on 127.0.0.1; its port."""
    with running_stdlib_server() as running:
        yield running


@pytest.fixture(scope="module")
def other_server() -> Iterator[tuple[int, threading.Event]]:
    """A second http.server: another origin."""
    with running_stdlib_server() as running:
        yield running


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A test certificate authority."""
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_server(ca: trustme.CA) -> Iterator[tuple[int, threading.Event]]:
    """http.server over TLS, with a certificate for localhost and 127.0.0.1."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with running_stdlib_server(context) as running:
        yield running


@pytest.fixture(scope="module")
def twisted_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A twisted.web site in a subprocess; its port."""
    with running_twisted_site(tmp_path_factory.mktemp("twisted")) as port:
        yield port


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    return client_context(ca_data=ca.cert_pem.bytes().decode(), alpn=("http/1.1",))


# -- http.server --------------------------------------------------------------------


@BOTH_LOOPS
async def test_keep_alive_reuses_one_connection(
    reactor: Reactor, loop: str, server: tuple[int, threading.Event]
) -> None:
    port, _ = server
    client = HTTPClient(reactor)
    try:
        peer_ports = set()
        for _ in range(3):
            response = await client.get(f"http://127.0.0.1:{port}/hello")
            assert response.code == 200
            assert await response.read() == b"Hello, World!"
            peer_ports.add(response.headers.get(b"x-peer-port"))
        assert len(peer_ports) == 1
        assert client.pool.open_count() == 1
        response = await client.get(f"http://127.0.0.1:{port}/close")
        assert await response.read() == b"closing"
        response = await client.get(f"http://127.0.0.1:{port}/hello")
        await response.read()
        assert response.headers.get(b"x-peer-port") not in peer_ports
    finally:
        await client.close()


@BOTH_LOOPS
async def test_a_connection_the_server_dropped_is_not_used_again(
    reactor: Reactor, loop: str, server: tuple[int, threading.Event]
) -> None:
    port, _ = server
    client = HTTPClient(reactor)
    try:
        peers = []
        for _ in range(3):
            # Each connection is closed by the server after its response,
            # without a word; the next request still succeeds, on a new one
            # (found closed in the pool, or retried once when it was not).
            response = await client.get(f"http://127.0.0.1:{port}/drop")
            assert await response.read() == b"dropped"
            peers.append(response.headers.get(b"x-peer-port"))
        assert len(set(peers)) == 3
    finally:
        await client.close()


@BOTH_LOOPS
async def test_a_stale_connection_is_retried_once_for_a_get_not_for_a_post(
    reactor: Reactor, loop: str, server: tuple[int, threading.Event]
) -> None:
    port, _ = server
    client = HTTPClient(reactor)
    url = f"http://127.0.0.1:{port}/once"
    try:
        first = await client.get(url)
        assert await first.read() == b"once"
        second = await client.get(url)  # the server closes the reused connection
        assert await second.read() == b"once"
        assert second.headers.get(b"x-peer-port") != first.headers.get(b"x-peer-port")
        with pytest.raises(ResponseNeverReceivedError):
            await client.post(url, body=b"not twice")
    finally:
        await client.close()


@BOTH_LOOPS
async def test_chunked_gzip_head_and_bodies_sent(
    reactor: Reactor, loop: str, server: tuple[int, threading.Event]
) -> None:
    port, _ = server
    client = HTTPClient(reactor)
    base = f"http://127.0.0.1:{port}"
    try:
        response = await client.get(f"{base}/chunked")
        assert await response.read() == b"first second third"
        response = await client.get(f"{base}/gzip")
        assert response.headers.get(b"content-encoding") == b"gzip"
        assert await response.read() == b"squeezed " * 10000
        response = await client.head(f"{base}/hello")
        assert response.headers.get(b"content-length") == b"13"
        assert await response.read() == b""
        response = await client.post(f"{base}/echo", body=b"posted")
        assert (await response.read(), response.headers.get(b"x-framing")) == (
            b"posted",
            b"length",
        )

        async def pieces() -> AsyncIterator[bytes]:
            for i in range(100):
                yield b"%03d," % i

        response = await client.put(f"{base}/echo", body=pieces())
        assert response.headers.get(b"x-framing") == b"chunked"
        assert await response.read() == b"".join(b"%03d," % i for i in range(100))
        # All of that on one connection.
        assert client.pool.open_count() == 1
    finally:
        await client.close()


@BOTH_LOOPS
async def test_concurrent_requests_share_a_bounded_pool(
    reactor: Reactor, loop: str, server: tuple[int, threading.Event]
) -> None:
    port, _ = server
    client = HTTPClient(reactor, max_per_origin=4)

    async def fetch() -> bytes | None:
        response = await client.get(f"http://127.0.0.1:{port}/hello")
        assert await response.read() == b"Hello, World!"
        assert client.pool.open_count() <= 4
        return response.headers.get(b"x-peer-port")

    try:
        peers = await asyncio.gather(*(fetch() for _ in range(40)))
        assert 1 <= len(set(peers)) <= 4
        assert client.pool.idle_count() == client.pool.open_count()
    finally:
        await client.close()


@BOTH_LOOPS
async def test_a_large_upload_streams_with_backpressure(
    reactor: Reactor, loop: str, server: tuple[int, threading.Event], tmp_path: Path
) -> None:
    port, _ = server
    client = HTTPClient(reactor)
    piece = bytes(range(256)) * 256  # 64 KiB

    async def pieces() -> AsyncIterator[bytes]:
        for _ in range(64):  # 4 MiB, more than any socket buffer takes at once
            yield piece

    path = tmp_path / "upload"
    path.write_bytes(piece * 16)
    try:
        response = await client.post(f"http://127.0.0.1:{port}/echo", body=pieces())
        assert await response.read() == piece * 64
        with path.open("rb") as file:
            response = await client.post(f"http://127.0.0.1:{port}/echo", body=file)
            assert response.headers.get(b"x-framing") == b"length"
            assert await response.read() == piece * 16
    finally:
        await client.close()


@BOTH_LOOPS
async def test_streaming_a_large_body(
    reactor: Reactor, loop: str, server: tuple[int, threading.Event]
) -> None:
    port, _ = server
    client = HTTPClient(reactor)
    try:
        response = await client.get(f"http://127.0.0.1:{port}/big")
        size = 0
        async for piece in response.iter_bytes():
            assert set(piece) == {ord("x")}
            size += len(piece)
        assert size == 4 * 1024 * 1024
        assert client.pool.idle_count() == 1
    finally:
        await client.close()


@BOTH_LOOPS
async def test_a_redirect_chain_across_two_origins_drops_credentials(
    reactor: Reactor,
    loop: str,
    server: tuple[int, threading.Event],
    other_server: tuple[int, threading.Event],
) -> None:
    here = f"http://127.0.0.1:{server[0]}"
    there = f"http://127.0.0.1:{other_server[0]}"
    client = HTTPClient(reactor)
    credentials = {
        "Authorization": "Bearer secret",
        "Cookie": "session=1",
        "Proxy-Authorization": "Basic eA==",
        "X-Harmless": "kept",
    }
    try:
        # Same origin first: the credentials are kept.
        response = await client.get(f"{here}/redirect?to=/headers", headers=credentials)
        fields = dict(json.loads(await response.read()))
        assert fields["Authorization"] == "Bearer secret"
        assert fields["Cookie"] == "session=1"
        # Then to the other origin, by 302 then 307: they are dropped.
        response = await client.get(
            f"{here}/redirect?to={here}/redirect%3Fcode%3D307%26to%3D{there}/headers",
            headers=credentials,
        )
        assert response.url == f"{there}/headers"
        assert len(response.history) == 2
        fields = dict(json.loads(await response.read()))
        assert "Authorization" not in fields
        assert "Cookie" not in fields
        assert "Proxy-Authorization" not in fields
        assert fields["X-Harmless"] == "kept"
        assert fields["Host"] == f"127.0.0.1:{other_server[0]}"
    finally:
        await client.close()


@BOTH_LOOPS
async def test_a_timeout_on_a_silent_server_leaves_nothing(
    reactor: Reactor, loop: str, server: tuple[int, threading.Event]
) -> None:
    port, _ = server
    client = HTTPClient(reactor)
    try:
        with pytest.raises(TimeoutError):
            await client.get(f"http://127.0.0.1:{port}/stall", timeout=0.2)
        assert client.pool.open_count() == 0
    finally:
        await client.close()


@BOTH_LOOPS
async def test_an_asyncio_cancellation_closes_the_connection(
    reactor: Reactor, loop: str, server: tuple[int, threading.Event]
) -> None:
    port, _ = server
    client = HTTPClient(reactor)
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.get(f"http://127.0.0.1:{port}/stall"), 0.2)
        assert client.pool.open_count() == 0
    finally:
        await client.close()


@BOTH_LOOPS
async def test_a_refused_connection(reactor: Reactor, loop: str) -> None:
    client = HTTPClient(reactor)
    with socket_port() as port, pytest.raises(ConnectionRefusedError):
        await client.get(f"http://127.0.0.1:{port}/")
    assert client.pool.open_count() == 0
    await client.close()


class socket_port:  # noqa: N801 - used as a context manager, read like a function
    """A port on 127.0.0.1 that nothing listens on (bound, not listening)."""

    def __enter__(self) -> int:
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        port: int = self._sock.getsockname()[1]
        return port

    def __exit__(self, *_: object) -> None:
        self._sock.close()


# -- TLS ------------------------------------------------------------------------------


@BOTH_LOOPS
async def test_https_with_a_trusted_certificate(
    reactor: Reactor, loop: str, ca: trustme.CA, tls_server: tuple[int, threading.Event]
) -> None:
    port, _ = tls_server
    client = HTTPClient(reactor, tls_context=trusting(ca))
    try:
        for host in ("localhost", "127.0.0.1"):
            response = await client.get(f"https://{host}:{port}/hello")
            assert await response.read() == b"Hello, World!"
            # The client offers http/1.1 only (for now), and says what was agreed.
            assert response.alpn == "http/1.1"
        response = await client.get(f"https://127.0.0.1:{port}/chunked")
        assert await response.read() == b"first second third"
        assert client.pool.open_count() == 2  # one per origin
    finally:
        await client.close()


@BOTH_LOOPS
async def test_https_refuses_an_untrusted_certificate(
    reactor: Reactor, loop: str, tls_server: tuple[int, threading.Event]
) -> None:
    port, _ = tls_server
    client = HTTPClient(reactor)  # the system's trust store
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            await client.get(f"https://localhost:{port}/hello")
        assert client.pool.open_count() == 0
    finally:
        await client.close()


@BOTH_LOOPS
async def test_https_refuses_a_certificate_for_another_name(
    reactor: Reactor, loop: str, ca: trustme.CA
) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("elsewhere.test").configure_cert(context)
    client = HTTPClient(reactor, tls_context=trusting(ca))
    with running_stdlib_server(context) as (port, _):
        try:
            with pytest.raises(ssl.SSLCertVerificationError):
                await client.get(f"https://127.0.0.1:{port}/hello")
        finally:
            await client.close()


@BOTH_LOOPS
async def test_an_https_to_http_redirect_is_refused(
    reactor: Reactor,
    loop: str,
    ca: trustme.CA,
    tls_server: tuple[int, threading.Event],
    server: tuple[int, threading.Event],
) -> None:
    client = HTTPClient(reactor, tls_context=trusting(ca))
    url = f"https://127.0.0.1:{tls_server[0]}/redirect?to=http://127.0.0.1:{server[0]}/hello"
    try:
        with pytest.raises(RedirectRefusedError):
            await client.get(url)
    finally:
        await client.close()


@pytest.fixture
def openssl_server(ca: trustme.CA, tmp_path: Path) -> Iterator[int]:
    """``openssl s_server -www`` with a certificate for 127.0.0.1; its port."""
    openssl = require_peer("openssl", package="openssl")
    cert = ca.issue_cert("127.0.0.1")
    cert_file = tmp_path / "cert.pem"
    key_file = tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    with socket_port() as port:
        pass  # free again: s_server binds it (a race only another test could lose)
    process = subprocess.Popen(
        [
            openssl,
            "s_server",
            "-accept",
            f"127.0.0.1:{port}",
            "-cert",
            str(cert_file),
            "-key",
            str(key_file),
            "-www",
            "-naccept",
            "4",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:  # "ACCEPT" once it listens
            if line.strip() == "ACCEPT":
                break
        else:
            raise RuntimeError("openssl s_server did not start")
        yield port
    finally:
        process.kill()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


@BOTH_LOOPS
async def test_openssl_s_server(
    reactor: Reactor, loop: str, ca: trustme.CA, openssl_server: int
) -> None:
    client = HTTPClient(reactor, tls_context=trusting(ca))
    try:
        response = await client.get(f"https://127.0.0.1:{openssl_server}/")
        assert response.code == 200
        body = await response.read()
        assert b"s_server" in body
        assert b"Cipher" in body or b"Ciphers" in body
    finally:
        await client.close()


# -- twisted.web ------------------------------------------------------------------------


@BOTH_LOOPS
async def test_twisted_web(reactor: Reactor, loop: str, twisted_site: int) -> None:
    base = f"http://127.0.0.1:{twisted_site}"
    client = HTTPClient(reactor)
    try:
        response = await client.get(f"{base}/hello")
        assert await response.read() == b"Hello, World!"
        response = await client.get(f"{base}/chunked")
        assert response.headers.get(b"transfer-encoding") == b"chunked"
        assert await response.read() == b"first second third"
        response = await client.post(f"{base}/echo", body=b"to twisted")
        assert await response.read() == b"to twisted"
        response = await client.get(f"{base}/redirect")
        assert response.url == f"{base}/hello"
        assert await response.read() == b"Hello, World!"
        response = await client.get(f"{base}/headers", headers={"X-Test": "yes"})
        assert b"X-Test: yes" in await response.read()
        assert client.pool.open_count() == 1
    finally:
        await client.close()
