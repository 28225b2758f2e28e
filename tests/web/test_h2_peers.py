"""HTTP/2 on 127.0.0.1, both loops: curl, nghttp, h2load and openssl s_client as clients."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from _http_server_helpers import Tracked

from torsion.internet import Reactor, ServerTLS
from torsion.testing import require_peer
from torsion.web import Request, Resource, Site, handles

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
    is_leaf = True

    def __init__(self, big: bytes) -> None:
        super().__init__()
        self.big = big

    @handles("GET", "POST")
    async def get(self, request: Request) -> bytes | None:
        if request.method == "POST":
            # Read as it comes: the client's window opens as we do.
            digest = hashlib.sha256()
            async for chunk in request.stream():
                digest.update(chunk)
            return digest.hexdigest().encode()
        if request.path == b"/big":
            # Streamed with backpressure through the peer's windows.
            request.response_headers.set(b"Content-Length", b"%d" % len(self.big))
            for start in range(0, len(self.big), 100_000):
                request.write(self.big[start : start + 100_000])
                await request.drained()
            request.finish()
            return None
        return b"Hello, World!"


@dataclass
class Served:
    http: str
    https: str
    port: int
    ca_file: str


@asynccontextmanager
async def serving(
    reactor: Reactor, tmp_path: Path, big: bytes, root: Resource | None = None
) -> AsyncIterator[Served]:
    ca = trustme.CA()
    cert = tmp_path / "server.pem"
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(cert))
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    tracked = Tracked(Site(root if root is not None else Root(big), reactor=reactor))
    tls = ServerTLS(cert, alpn=("h2", "http/1.1"))
    plain = reactor.listen_tcp(0, tracked, interface="127.0.0.1")
    secure = reactor.listen_tls(0, tracked, tls, interface="127.0.0.1")
    try:
        yield Served(
            f"http://127.0.0.1:{plain.port}",
            f"https://127.0.0.1:{secure.port}",
            secure.port,
            str(ca_file),
        )
    finally:
        await plain.stop_listening()
        await secure.stop_listening()
        await tracked.all_ended()


async def run(program: str, package: str, *argv: str, stdin: bytes | None = None) -> bytes:
    process = await asyncio.create_subprocess_exec(
        require_peer(program, package=package),
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), 60)
    assert process.returncode == 0, (out + err).decode(errors="replace")
    return out


@pytest.fixture
def big() -> bytes:
    return os.urandom(BIG)


@BOTH_LOOPS
async def test_curl_prior_knowledge_and_alpn(
    reactor: Reactor, loop: str, tmp_path: Path, big: bytes
) -> None:
    upload = tmp_path / "upload.bin"
    upload.write_bytes(big)
    async with serving(reactor, tmp_path, big) as served:
        w = ["-sS", "--max-time", "30", "-w", "\n%{http_version}"]
        clear = await run("curl", "curl", *w, "--http2-prior-knowledge", f"{served.http}/")
        tls = await run(
            "curl", "curl", *w, "--http2", "--cacert", served.ca_file, f"{served.https}/"
        )
        downloaded = await run(
            "curl", "curl", "-sS", "--http2-prior-knowledge", f"{served.http}/big"
        )
        posted = await run(
            "curl", "curl", "-sS", "--http2", "--cacert", served.ca_file,
            "--data-binary", f"@{upload}", f"{served.https}/echo",
        )  # fmt: skip
        http1 = await run("curl", "curl", *w, "--http1.1", f"{served.http}/")
    assert clear == b"Hello, World!\n2"
    assert tls == b"Hello, World!\n2"
    assert http1 == b"Hello, World!\n1.1"
    assert hashlib.sha256(downloaded).digest() == hashlib.sha256(big).digest()
    assert posted == hashlib.sha256(big).hexdigest().encode()


@BOTH_LOOPS
async def test_nghttp_over_tls(reactor: Reactor, loop: str, tmp_path: Path, big: bytes) -> None:
    async with serving(reactor, tmp_path, big) as served:
        out = await run("nghttp", "nghttp2-client", "-s", f"{served.https}/", f"{served.https}/a")
    # -s prints statistics per request: both answered 200.
    assert len(re.findall(rb"\b200\b", out)) == 2, out


@BOTH_LOOPS
async def test_h2load_all_requests_succeed(
    reactor: Reactor, loop: str, tmp_path: Path, big: bytes
) -> None:
    async with serving(reactor, tmp_path, big) as served:
        clear = await run("h2load", "nghttp2-client", "-n", "1000", "-c", "4", "-m", "10",
                          f"{served.http}/")  # fmt: skip
        tls = await run("h2load", "nghttp2-client", "-n", "1000", "-c", "4", "-m", "10",
                        f"{served.https}/")  # fmt: skip
    for out in (clear, tls):
        assert b"1000 succeeded, 0 failed, 0 errored" in out, out
        assert b"status codes: 1000 2xx" in out, out
    assert b"Application protocol: h2" in tls


@BOTH_LOOPS
async def test_openssl_s_client_sees_h2_chosen(
    reactor: Reactor, loop: str, tmp_path: Path, big: bytes
) -> None:
    async with serving(reactor, tmp_path, big) as served:
        out = await run(
            "openssl", "openssl", "s_client", "-connect", f"127.0.0.1:{served.port}",
            "-alpn", "h2", "-CAfile", served.ca_file, stdin=b"",
        )  # fmt: skip
    assert b"ALPN protocol: h2" in out


@BOTH_LOOPS
async def test_wsgi_and_asgi_apps_over_http_2(
    reactor: Reactor, loop: str, tmp_path: Path, big: bytes
) -> None:
    from _apps import hello_asgi, hello_wsgi

    from torsion.web import ASGIResource, WSGIResource

    root = Resource()
    root.put_child("wsgi", WSGIResource(hello_wsgi, reactor=reactor))
    root.put_child("asgi", ASGIResource(hello_asgi, reactor=reactor))
    async with serving(reactor, tmp_path, big, root) as served:
        w = ["-sS", "--max-time", "30", "-w", "\n%{http_version}", "--http2-prior-knowledge"]
        wsgi = await run("curl", "curl", *w, f"{served.http}/wsgi")
        asgi = await run("curl", "curl", *w, f"{served.http}/asgi")
    assert wsgi == b"Hello, World!\n2"
    assert asgi == b"Hello, World!\n2"
