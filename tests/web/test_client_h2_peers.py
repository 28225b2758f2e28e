"""HTTPClient over HTTP/2 on 127.0.0.1, both loops: nghttpd (TLS with ALPN, and
prior knowledge), and torsion.web's own HTTP/2 server."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme
from _http_server_helpers import Tracked

from torsion.internet import Reactor, ServerTLS, client_context
from torsion.testing import require_peer
from torsion.web import Request, Resource, Site, handles
from torsion.web._client import HTTPClient

pytestmark = pytest.mark.integration

BOTH_LOOPS = pytest.mark.parametrize(
    "loop",
    [
        pytest.param("asyncio", marks=pytest.mark.torsion_loop("asyncio")),
        pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop")),
    ],
)

BIG = 3 * 1024 * 1024 + 11


class Root(Resource):
    """``/big`` streams a large body, ``POST`` answers the body's SHA-256, else a greeting."""

    is_leaf = True

    def __init__(self, big: bytes) -> None:
        super().__init__()
        self.big = big

    @handles("GET", "POST")
    async def get(self, request: Request) -> bytes | None:
        if request.method == "POST":
            digest = hashlib.sha256()
            async for chunk in request.stream():
                digest.update(chunk)
            return digest.hexdigest().encode()
        if request.path == b"/big":
            request.response_headers.set(b"Content-Length", b"%d" % len(self.big))
            for start in range(0, len(self.big), 100_000):
                request.write(self.big[start : start + 100_000])
                await request.drained()
            request.finish()
            return None
        return b"Hello, World!"


@dataclass
class NgHTTPd:
    port: int
    ca: trustme.CA
    log: list[bytes] = field(default_factory=list)

    def sessions(self) -> set[bytes]:
        """The connections nghttpd saw (its -v log names each by id)."""
        return set(re.findall(rb"^\[id=(\d+)\]", b"".join(self.log), re.MULTILINE))


def _free_port() -> int:
    # nghttpd does not say which port it got for 0: take one the kernel
    # hands out and give it back.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@asynccontextmanager
async def nghttpd(tmp_path: Path, *, tls: bool) -> AsyncIterator[NgHTTPd]:
    program = require_peer("nghttpd", package="nghttp2-server")
    docroot = tmp_path / "htdocs"
    docroot.mkdir()
    (docroot / "index.html").write_bytes(b"Hello from nghttpd\n")
    (docroot / "big").write_bytes(os.urandom(BIG))
    ca = trustme.CA()
    served = NgHTTPd(_free_port(), ca)
    argv = ["-v", "--address=127.0.0.1", "-d", str(docroot), str(served.port)]
    if tls:
        issued = ca.issue_cert("127.0.0.1")
        key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
        issued.private_key_pem.write_to_path(str(key))
        issued.cert_chain_pems[0].write_to_path(str(cert))
        argv += [str(key), str(cert)]
    else:
        argv.insert(0, "--no-tls")
    process = await asyncio.create_subprocess_exec(
        program, *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    assert process.stdout is not None
    stdout = process.stdout

    async def ready() -> None:
        while True:
            line = await stdout.readline()
            assert line, b"nghttpd ended: " + b"".join(served.log)
            served.log.append(line)
            if b"listen 127.0.0.1:" in line:
                return

    async def drain() -> None:
        while line := await stdout.readline():
            served.log.append(line)

    reader: asyncio.Task[None] | None = None
    try:
        await asyncio.wait_for(ready(), 10)
        reader = asyncio.ensure_future(drain())
        yield served
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)
        if reader is not None:
            await asyncio.wait_for(reader, 10)


@asynccontextmanager
async def serving(
    reactor: Reactor, tmp_path: Path, big: bytes
) -> AsyncIterator[tuple[str, str, str]]:
    """torsion.web on cleartext and on TLS (h2 by ALPN); their URLs and the CA's PEM."""
    ca = trustme.CA()
    cert = tmp_path / "server.pem"
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(cert))
    site = Site(Root(big), reactor=reactor)
    tls = ServerTLS(cert, alpn=("h2", "http/1.1"))
    tracked = Tracked(site)
    plain = reactor.listen_tcp(0, tracked, interface="127.0.0.1")
    secure = reactor.listen_tls(0, tracked, tls, interface="127.0.0.1")
    try:
        yield (
            f"http://127.0.0.1:{plain.port}",
            f"https://127.0.0.1:{secure.port}",
            ca.cert_pem.bytes().decode(),
        )
    finally:
        await plain.stop_listening()
        await secure.stop_listening()
        await tracked.all_ended()


def _client(reactor: Reactor, ca: trustme.CA | None = None, **kwargs: object) -> HTTPClient:
    if ca is not None:
        kwargs["tls_context"] = client_context(
            ca_data=ca.cert_pem.bytes().decode(), alpn=("h2", "http/1.1")
        )
    return HTTPClient(reactor, **kwargs)  # type: ignore[arg-type]


@BOTH_LOOPS
async def test_nghttpd_over_tls_multiplexes_on_one_connection(
    reactor: Reactor, loop: str, tmp_path: Path
) -> None:
    async with nghttpd(tmp_path, tls=True) as server:
        client = _client(reactor, server.ca)
        base = f"https://127.0.0.1:{server.port}"
        try:
            responses = await asyncio.gather(
                *(client.get(f"{base}/index.html").as_future() for _ in range(20)),
                client.get(f"{base}/big").as_future(),
            )
            bodies = [await r.read() for r in responses]
            assert {(r.code, r.version, r.alpn) for r in responses} == {(200, "HTTP/2", "h2")}
            assert bodies[:20] == [b"Hello from nghttpd\n"] * 20
            assert bodies[20] == (tmp_path / "htdocs" / "big").read_bytes()
            # The server's stream limit (nghttpd: 100) left room for all.
            assert client.pool.open_count() == 1
        finally:
            await client.close()
    assert len(server.sessions()) == 1, server.sessions()


@BOTH_LOOPS
async def test_nghttpd_prior_knowledge_takes_a_large_upload(
    reactor: Reactor, loop: str, tmp_path: Path
) -> None:
    async with nghttpd(tmp_path, tls=False) as server:
        client = _client(reactor, http2_prior_knowledge=True)
        base = f"http://127.0.0.1:{server.port}"
        try:
            # nghttpd answers a POST with the file, having read (and
            # granted window for) the whole body.
            upload = os.urandom(BIG)
            posted = await client.post(f"{base}/index.html", upload)
            assert (posted.code, posted.version, posted.alpn) == (200, "HTTP/2", None)
            assert await posted.read() == b"Hello from nghttpd\n"
            got = await client.get(f"{base}/big")
            assert await got.read() == (tmp_path / "htdocs" / "big").read_bytes()
        finally:
            await client.close()
    assert len(server.sessions()) == 1, server.sessions()
    # Every DATA frame of the upload reached the server.
    received = sum(
        int(n) for n in re.findall(rb"recv DATA frame <length=(\d+)", b"".join(server.log))
    )
    assert received == BIG


@BOTH_LOOPS
async def test_torsion_h2_server_both_ways(reactor: Reactor, loop: str, tmp_path: Path) -> None:
    big = os.urandom(BIG)
    async with serving(reactor, tmp_path, big) as (http, https, ca_data):
        tls = client_context(ca_data=ca_data, alpn=("h2", "http/1.1"))
        for client in (
            HTTPClient(reactor, tls_context=tls),
            HTTPClient(reactor, http2_prior_knowledge=True),
        ):
            base = http if client.http2_prior_knowledge else https
            try:
                hello, down, up = await asyncio.gather(
                    client.get(f"{base}/").as_future(),
                    client.get(f"{base}/big").as_future(),
                    client.post(f"{base}/echo", big).as_future(),
                )
                assert {r.version for r in (hello, down, up)} == {"HTTP/2"}
                assert await hello.read() == b"Hello, World!"
                assert hashlib.sha256(await down.read()).digest() == hashlib.sha256(big).digest()
                assert await up.read() == hashlib.sha256(big).hexdigest().encode()
                assert client.pool.open_count() == 1
            finally:
                await client.close()
