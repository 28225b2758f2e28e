"""ReverseProxyResource: which fields pass, and real forwarding on both loops.

The unit tests check the fields sent upstream on a fake connection. The
integration tests put the proxy between curl (or a raw socket) and a real
upstream: Python's http.server in a thread, and twisted.web in a subprocess.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from _client_peers import running_twisted_site
from _http_server_helpers import Connection, connect, get, read_responses

from torsion.defer import Deferred, succeed
from torsion.internet import Reactor
from torsion.testing import Clock, require_peer
from torsion.web import BadResponseError, Headers, Request, Resource, Site
from torsion.web._proxy import ReverseProxyResource, hop_by_hop_fields

# Real sockets and real peers.
INTEGRATION = pytest.mark.integration
BOTH_LOOPS = pytest.mark.parametrize(
    "loop",
    [
        pytest.param("asyncio", marks=[pytest.mark.torsion_loop("asyncio"), INTEGRATION]),
        pytest.param("uvloop", marks=[pytest.mark.torsion_loop("uvloop"), INTEGRATION]),
    ],
)

# -- unit: fields -----------------------------------------------------------------


def test_hop_by_hop_fields_include_those_connection_names() -> None:
    headers = Headers([("Connection", "close, X-Private"), ("Connection", " Foo ,,")])
    named = hop_by_hop_fields(headers)
    assert {b"x-private", b"foo", b"close", b"connection", b"keep-alive", b"te"} <= named
    assert b"transfer-encoding" in named
    assert b"upgrade" in named
    assert b"content-type" not in named


class _Capture(Resource):
    """Stands in front of a proxy resource and records what it would send."""

    is_leaf = True

    def __init__(self, proxy: ReverseProxyResource) -> None:
        super().__init__()
        self.proxy = proxy
        self.sent: list[tuple[str, Headers]] = []

    def render(self, request: Request) -> bytes:
        self.sent.append((self.proxy.upstream_url(request), self.proxy.request_headers(request)))
        return b""


def _captured(proxy: ReverseProxyResource, *lines: str, path: str = "/p/a/b?x=1") -> Headers:
    capture = _Capture(proxy)
    root = Resource()
    root.put_child("p", capture)
    connection = connect(root)
    connection.send(get(path, *lines))
    assert connection.responses()[0].status == 200
    return capture.sent[0][1]


def _proxy(**options: object) -> ReverseProxyResource:
    return ReverseProxyResource("http://upstream.test:81/base", reactor=Clock(), **options)  # type: ignore[arg-type]


def test_path_remainder_and_query_are_appended_to_the_upstream_path() -> None:
    capture = _Capture(_proxy())
    root = Resource()
    root.put_child("p", capture)
    connection = connect(root)
    connection.send(get("/p/a%20b/%C3%A9/?x=1&y=%20"))
    connection.send(get("/p"))
    assert [url for url, _ in capture.sent] == [
        "http://upstream.test:81/base/a%20b/%C3%A9/?x=1&y=%20",
        "http://upstream.test:81/base/",
    ]


def test_hop_by_hop_request_fields_are_not_forwarded() -> None:
    sent = _captured(
        _proxy(),
        "Connection: keep-alive, X-Secret",
        "X-Secret: 1",
        "Keep-Alive: timeout=5",
        "TE: trailers",
        "Upgrade: websocket",
        "Proxy-Authorization: Basic eDp5",
        "Proxy-Connection: keep-alive",
        "X-Kept: yes",
    )
    names = {name.lower() for name, _ in sent.raw}
    assert names.isdisjoint(
        {
            b"connection",
            b"x-secret",
            b"keep-alive",
            b"te",
            b"upgrade",
            b"proxy-authorization",
            b"proxy-connection",
            b"host",
        }
    )
    assert sent.get("x-kept") == b"yes"


def test_x_forwarded_fields_name_the_client_and_append_to_a_chain() -> None:
    sent = _captured(_proxy(), "X-Forwarded-For: 192.0.2.7", "X-Forwarded-Host: forged")
    # The fake connection's client is 192.0.2.2.
    assert sent.get("x-forwarded-for") == b"192.0.2.7, 192.0.2.2"
    assert sent.get("x-forwarded-proto") == b"http"
    assert sent.get_all("x-forwarded-host") == [b"example.test"]
    assert sent.get("via") == b"1.1 torsion"


def test_rfc_7239_forwarded_field() -> None:
    sent = _captured(_proxy(forwarded="forwarded"), "Forwarded: for=192.0.2.1")
    assert sent.get("forwarded") == b"for=192.0.2.1, for=192.0.2.2;proto=http;host=example.test"
    assert b"x-forwarded-for" not in sent


def test_no_forwarding_fields_and_no_via_when_asked() -> None:
    sent = _captured(_proxy(forwarded="none", via=None))
    assert b"x-forwarded-for" not in sent
    assert b"forwarded" not in sent
    assert b"via" not in sent


def test_preserve_host_sends_the_clients_host() -> None:
    sent = _captured(_proxy(preserve_host=True))
    assert sent.raw[0] == (b"Host", b"example.test")


@pytest.mark.parametrize(
    ("url", "options"),
    [("ftp://x/", {"reactor": Clock()}), ("/relative", {"reactor": Clock()}), ("http://x/", {})],
)
def test_bad_construction_is_refused(url: str, options: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"upstream|reactor"):
        ReverseProxyResource(url, **options)  # type: ignore[arg-type]


# -- unit: streaming, on a fake upstream ------------------------------------------


class _FakeResponse:
    """An upstream response whose body pieces are counted as the proxy takes them."""

    def __init__(self, pieces: list[bytes], *, fail_after: int | None = None) -> None:
        self.code = 200
        self.phrase = "OK"
        self.version = "HTTP/1.1"
        self.headers = Headers([("Content-Type", "text/plain"), ("Connection", "close")])
        self.pieces = pieces
        self.pulled = 0
        self.fail_after = fail_after
        self.closed = False

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            if self.fail_after is not None and self.pulled >= self.fail_after:
                raise BadResponseError("the upstream broke off")
            self.pulled += 1
            yield piece

    def close(self) -> None:
        self.closed = True


class _FakeClient:
    def __init__(self, response: _FakeResponse) -> None:
        self.response = response
        self.asked: list[tuple[str, str]] = []

    def request(self, method: str, url: str, **options: object) -> Deferred[_FakeResponse]:
        self.asked.append((method, url))
        return succeed(self.response)


def _streaming(response: _FakeResponse) -> Connection:
    proxy = ReverseProxyResource(
        "http://upstream.test/",
        client=_FakeClient(response),  # type: ignore[arg-type]
    )
    root = Resource()
    root.put_child("p", proxy)
    connection = connect(root)
    connection.transport.set_write_buffer_limits(high=100, low=10)
    return connection


def test_the_upstream_is_read_only_as_fast_as_the_client_takes_it() -> None:
    response = _FakeResponse([b"a" * 1000, b"b" * 1000, b"c" * 1000])
    connection = _streaming(response)
    connection.send(get("/p/x"))
    assert response.pulled == 1
    read = connection.take()
    assert read.endswith(b"a" * 1000 + b"\r\n")
    assert response.pulled == 2
    read += connection.take()
    assert response.pulled == 3
    read += connection.take()  # the last piece: the end of the body follows
    read += connection.take()
    assert response.closed
    # The whole response, as the client read it in three parts.
    (whole,) = read_responses(read)
    assert whole.complete
    assert whole.body == b"a" * 1000 + b"b" * 1000 + b"c" * 1000
    assert whole.header(b"connection") is None


def test_a_client_that_goes_away_stops_the_upstream_read() -> None:
    response = _FakeResponse([b"a" * 1000, b"b" * 1000])
    connection = _streaming(response)
    connection.send(get("/p/x"))
    assert response.pulled == 1
    connection.lose()
    assert response.pulled == 1
    assert response.closed


def test_an_upstream_failing_midway_aborts_the_client_connection() -> None:
    response = _FakeResponse([b"a" * 10, b"b" * 10], fail_after=1)
    connection = _streaming(response)
    connection.transport.set_write_buffer_limits(high=10_000, low=10)
    connection.send(get("/p/x"))
    assert connection.transport.aborted
    assert b"a" * 10 in connection.take()
    assert response.closed


# -- integration: a real upstream -----------------------------------------------------

_UPSTREAM_HOP = "X-Upstream-Private"


class _Upstream(BaseHTTPRequestHandler):
    """Answers with what it received, as JSON; some paths misbehave on purpose."""

    protocol_version = "HTTP/1.1"
    server: _UpstreamServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def _answer(self) -> None:
        body = self._body()
        if self.path.startswith("/base/endless"):
            self._endless()
            return
        if self.path.startswith("/base/big"):
            payload = b"0123456789abcdef" * (1 << 18)  # 4 MiB
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        if self.path.startswith("/base/short"):
            # Promises more than it sends, then hangs up.
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 10)
            self.close_connection = True
            return
        answer = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "headers": [[k, v] for k, v in self.headers.items()],
                "body_length": len(body),
                "body_start": body[:32].decode("latin-1"),
            }
        ).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.send_header("Connection", _UPSTREAM_HOP)
        self.send_header(_UPSTREAM_HOP, "secret")
        self.send_header("Keep-Alive", "timeout=5")
        self.send_header("X-Upstream", "public")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer)

    def _endless(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()  # no length: delimited by the close
        self.close_connection = True
        try:
            while True:
                self.wfile.write(b"x" * 65536)
        except OSError:
            self.server.endless_broken.set()

    do_GET = do_POST = do_PUT = do_HEAD = _answer  # noqa: N815 - http.server's naming


class _UpstreamServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Upstream)
        self.endless_broken = threading.Event()


@contextmanager
def upstream_server() -> Iterator[_UpstreamServer]:
    server = _UpstreamServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@asynccontextmanager
async def proxying(
    reactor: Reactor, upstream: str, **options: object
) -> AsyncIterator[tuple[int, ReverseProxyResource]]:
    proxy = ReverseProxyResource(upstream, reactor=reactor, **options)  # type: ignore[arg-type]
    root = Resource()
    root.put_child("p", proxy)
    listener = reactor.listen_tcp(0, Site(root, reactor=reactor), interface="127.0.0.1")
    try:
        yield listener.port, proxy
    finally:
        await listener.stop_listening()
        await proxy.close()


async def run(*argv: str, stdin: bytes | None = None) -> tuple[bytes, bytes]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), 20)
    assert process.returncode == 0, err.decode()
    return out, err


def curl() -> str:
    return require_peer("curl", package="curl")


def _headers_of(verbose: bytes) -> dict[str, list[str]]:
    # The response fields curl -v printed ("< Name: value").
    fields: dict[str, list[str]] = {}
    for line in verbose.decode("latin-1").splitlines():
        if line.startswith("< ") and ":" in line:
            name, _, value = line[2:].partition(":")
            fields.setdefault(name.strip().lower(), []).append(value.strip())
    return fields


@BOTH_LOOPS
async def test_curl_get_through_the_proxy(reactor: Reactor, loop: str) -> None:
    with upstream_server() as upstream:
        base = f"http://127.0.0.1:{upstream.server_port}/base"
        async with proxying(reactor, base) as (port, _):
            out, err = await run(
                curl(),
                "-sv",
                "-H",
                "Connection: X-Secret",
                "-H",
                "X-Secret: 1",
                "-H",
                "X-End: 2",
                f"http://127.0.0.1:{port}/p/a%20b/c?q=1&r",
            )
    seen = json.loads(out)
    assert seen["method"] == "GET"
    assert seen["path"] == "/base/a%20b/c?q=1&r"
    sent = {name.lower(): value for name, value in seen["headers"]}
    assert "x-secret" not in sent
    assert sent["x-end"] == "2"
    assert sent["x-forwarded-for"] == "127.0.0.1"
    assert sent["x-forwarded-host"] == f"127.0.0.1:{port}"
    assert sent["host"] == f"127.0.0.1:{upstream.server_port}"
    assert sent["via"] == "1.1 torsion"
    fields = _headers_of(err)
    assert b"< HTTP/1.1 201 Created" in err
    assert fields["x-upstream"] == ["public"]
    assert _UPSTREAM_HOP.lower() not in fields
    assert "keep-alive" not in fields
    assert fields["via"] == ["1.1 torsion"]
    assert len(fields["date"]) == 1


@BOTH_LOOPS
async def test_curl_chunked_upload_is_streamed_upstream(reactor: Reactor, loop: str) -> None:
    body = b"".join(b"line %06d\n" % i for i in range(100_000))  # 1.2 MB
    with upstream_server() as upstream:
        base = f"http://127.0.0.1:{upstream.server_port}/base"
        async with proxying(reactor, base) as (port, _):
            out, _ = await run(
                curl(),
                "-s",
                "-H",
                "Transfer-Encoding: chunked",
                "--data-binary",
                "@-",
                f"http://127.0.0.1:{port}/p/upload",
                stdin=body,
            )
    seen = json.loads(out)
    assert seen["method"] == "POST"
    assert seen["body_length"] == len(body)
    assert seen["body_start"] == body[:32].decode()
    sent = {name.lower(): value for name, value in seen["headers"]}
    assert sent["transfer-encoding"] == "chunked"


@BOTH_LOOPS
async def test_head_and_a_large_body(reactor: Reactor, loop: str) -> None:
    with upstream_server() as upstream:
        base = f"http://127.0.0.1:{upstream.server_port}/base"
        async with proxying(reactor, base) as (port, _):
            out, _ = await run(curl(), "-s", f"http://127.0.0.1:{port}/p/big")
            head, _ = await run(curl(), "-sI", f"http://127.0.0.1:{port}/p/x")
    assert out == b"0123456789abcdef" * (1 << 18)
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 201 Created"
    assert any(line.lower().startswith("content-length: ") for line in lines)


@BOTH_LOOPS
async def test_an_unreachable_upstream_is_502(reactor: Reactor, loop: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    async with proxying(reactor, f"http://127.0.0.1:{closed_port}/") as (port, _):
        out, _ = await run(
            curl(), "-s", "-w", "%{http_code}", "-o", "/dev/null", f"http://127.0.0.1:{port}/p/x"
        )
    assert out == b"502"


@BOTH_LOOPS
async def test_a_silent_upstream_is_504(reactor: Reactor, loop: str) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)  # connections complete in the backlog, and nothing answers
        upstream = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        async with proxying(reactor, upstream, timeout=0.3) as (port, _):
            out, _ = await run(
                curl(),
                "-s",
                "-w",
                "%{http_code}",
                "-o",
                "/dev/null",
                f"http://127.0.0.1:{port}/p/x",
            )
    assert out == b"504"


@BOTH_LOOPS
async def test_an_upstream_body_cut_short_cuts_the_client(reactor: Reactor, loop: str) -> None:
    with upstream_server() as upstream:
        base = f"http://127.0.0.1:{upstream.server_port}/base"
        async with proxying(reactor, base) as (port, _):
            process = await asyncio.create_subprocess_exec(
                curl(),
                "-s",
                f"http://127.0.0.1:{port}/p/short",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, _ = await asyncio.wait_for(process.communicate(), 20)
    # curl 18: "transfer closed with outstanding read data remaining".
    assert process.returncode == 18
    assert out == b"x" * 10


@BOTH_LOOPS
async def test_a_client_hanging_up_closes_the_upstream(reactor: Reactor, loop: str) -> None:
    with upstream_server() as upstream:
        base = f"http://127.0.0.1:{upstream.server_port}/base"
        async with proxying(reactor, base) as (port, _):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /p/endless HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 ")
            await reader.readexactly(65536)
            writer.close()
            await writer.wait_closed()
            # The upstream's writes fail once the proxy let its connection go.
            broken = await asyncio.to_thread(upstream.endless_broken.wait, 10)
            assert broken


@BOTH_LOOPS
async def test_twisted_web_upstream(reactor: Reactor, loop: str, tmp_path: Path) -> None:
    with running_twisted_site(tmp_path) as twisted_port:
        base = f"http://127.0.0.1:{twisted_port}"
        async with proxying(reactor, base) as (port, _):
            chunked, err = await run(curl(), "-sv", f"http://127.0.0.1:{port}/p/chunked")
            echoed, _ = await run(
                curl(),
                "-s",
                "--data-binary",
                "@-",
                f"http://127.0.0.1:{port}/p/echo",
                stdin=b"y" * 100_000,
            )
            seen, _ = await run(curl(), "-s", f"http://127.0.0.1:{port}/p/headers")
    assert chunked == b"first second third"
    assert b"< Transfer-Encoding: chunked" in err
    assert echoed == b"y" * 100_000
    assert b"X-Forwarded-For: 127.0.0.1" in seen
    assert b"X-Forwarded-Proto: http" in seen
