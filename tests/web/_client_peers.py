"""Real HTTP servers the client tests talk to: Python's http.server and twisted.web.

``running_stdlib_server`` serves a small set of routes from a
``ThreadingHTTPServer`` in a thread (over TLS when given a context);
``running_twisted_site`` starts twisted.web in a subprocess. Neither was
written with torsion. ``running_proxy`` is a small HTTP proxy on plain
sockets (CONNECT tunnels, and absolute-form requests forwarded), there being
no proxy program among the installed peers.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import selectors
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


class Handler(BaseHTTPRequestHandler):
    """The routes the client tests ask for."""

    protocol_version = "HTTP/1.1"
    # Set by the test that wants a response never to come, to release it.
    release: threading.Event

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""

    def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("X-Peer-Port", str(self.client_address[1]))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_HEAD(self) -> None:
        """HEAD: as GET, without the body."""
        self.do_GET()

    def do_GET(self) -> None:
        """The routes."""
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/hello":
            self._send(200, b"Hello, World!", {"Content-Type": "text/plain"})
        elif url.path == "/headers":
            fields = [[name, value] for name, value in self.headers.items()]
            self._send(200, json.dumps(fields).encode(), {"Content-Type": "application/json"})
        elif url.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (b"first ", b"second ", b"third"):
                self.wfile.write(b"%x\r\n%b\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        elif url.path == "/gzip":
            self._send(200, gzip.compress(b"squeezed " * 10000), {"Content-Encoding": "gzip"})
        elif url.path == "/redirect":
            self._send(int(query.get("code", ["302"])[0]), b"", {"Location": query["to"][0]})
        elif url.path == "/close":
            self._send(200, b"closing", {"Connection": "close"})
            self.close_connection = True
        elif url.path == "/once":
            # Answers the first request of a connection; closes at the
            # second without a response: a keep-alive connection that went
            # stale just as it was reused.
            if getattr(self, "served", False):
                self.close_connection = True
                return
            self.served = True
            self._send(200, b"once")
        elif url.path == "/drop":
            # Looks kept alive, then the server closes it: a stale pooled connection.
            self._send(200, b"dropped")
            self.close_connection = True
        elif url.path == "/big":
            self._send(200, b"x" * (4 * 1024 * 1024))
        elif url.path == "/stall":
            self.release.wait(30)
            self.close_connection = True
        else:
            self._send(404, b"not found")

    def do_POST(self) -> None:
        """Echo the body back, with how it was framed."""
        if urlsplit(self.path).path == "/once":
            self._read_body()
            self.do_GET()
            return
        framing = "chunked" if "Transfer-Encoding" in self.headers else "length"
        body = self._read_body()
        self._send(200, body, {"X-Framing": framing, "X-Method": "POST"})

    do_PUT = do_POST  # noqa: N815 - http.server's naming


@contextlib.contextmanager
def running_stdlib_server(
    tls: ssl.SSLContext | None = None,
) -> Iterator[tuple[int, threading.Event]]:
    """Serve ``Handler`` on 127.0.0.1 in a thread; yield its port and the stall release."""
    release = threading.Event()
    handler = type("BoundHandler", (Handler,), {"release": release})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1], release
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


_TWISTED_SITE = r"""
import sys
from twisted.internet import reactor
from twisted.web import resource, server, util

class Hello(resource.Resource):
    isLeaf = True
    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain")
        return b"Hello, World!"

class Chunked(resource.Resource):
    isLeaf = True
    def render_GET(self, request):
        # No length set: twisted.web sends the body chunked to HTTP/1.1 clients.
        for piece in (b"first ", b"second ", b"third"):
            request.write(piece)
        request.finish()
        return server.NOT_DONE_YET

class Headers(resource.Resource):
    isLeaf = True
    def render_GET(self, request):
        lines = [b"%s: %s" % (k, v) for k, vs in request.requestHeaders.getAllRawHeaders()
                 for v in vs]
        return b"\n".join(lines)

class Echo(resource.Resource):
    isLeaf = True
    def render_POST(self, request):
        return request.content.read()

root = resource.Resource()
root.putChild(b"hello", Hello())
root.putChild(b"chunked", Chunked())
root.putChild(b"headers", Headers())
root.putChild(b"echo", Echo())
root.putChild(b"redirect", util.Redirect(b"/hello"))
port = reactor.listenTCP(0, server.Site(root), interface="127.0.0.1")
print(port.getHost().port, flush=True)
reactor.run()
"""


@contextlib.contextmanager
def running_twisted_site(directory: Path) -> Iterator[int]:
    """Run a small twisted.web site in a subprocess; yield its port."""
    script = directory / "site.py"
    script.write_text(_TWISTED_SITE)
    process = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.strip().isdigit():
            assert process.stderr is not None
            raise RuntimeError(f"twisted.web did not start: {line}{process.stderr.read()}")
        yield int(line)
    finally:
        process.kill()
        process.wait(10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


class _ProxyHandler(socketserver.StreamRequestHandler):
    """One proxy client: CONNECT, or a request in absolute form."""

    server: _ProxyServer

    def handle(self) -> None:
        request_line = self.rfile.readline(65536)
        head = b""
        while True:
            line = self.rfile.readline(65536)
            if line in (b"\r\n", b"\n", b""):
                break
            head += line
        method, target, version = request_line.split()
        self.server.seen.append((method, target, head))
        if self.server.refuse:
            self.wfile.write(
                b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"
            )
            return
        if method == b"CONNECT":
            host, port = target.rsplit(b":", 1)
            upstream = socket.create_connection((host.strip(b"[]").decode(), int(port)))
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            url = urlsplit(target.decode())
            upstream = socket.create_connection((url.hostname or "", url.port or 80))
            path = (url.path or "/") + ("?" + url.query if url.query else "")
            upstream.sendall(b"%b %b %b\r\n%b\r\n" % (method, path.encode(), version, head))
        with upstream, selectors.DefaultSelector() as selector:
            selector.register(self.connection, selectors.EVENT_READ, upstream)
            selector.register(upstream, selectors.EVENT_READ, self.connection)
            while True:
                for key, _ in selector.select(30):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)


class _ProxyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    seen: list[tuple[bytes, bytes, bytes]]
    refuse: bool


@contextlib.contextmanager
def running_proxy(
    *, refuse: bool = False
) -> Iterator[tuple[int, list[tuple[bytes, bytes, bytes]]]]:
    """An HTTP proxy on 127.0.0.1 in a thread; yield its port and the requests it saw."""
    server = _ProxyServer(("127.0.0.1", 0), _ProxyHandler)
    server.seen = []
    server.refuse = refuse
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1], server.seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
