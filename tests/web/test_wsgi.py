"""Tests for WSGIResource: PEP 3333 on a fake connection, then Flask and wsgiref on real ports."""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import logging
import ssl
import sys
import threading
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import demo_app
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import pytest
import trustme
from _apps import hello_wsgi, make_flask_app
from _http_server_helpers import (
    BOTH_LOOPS,
    Connection,
    Serving,
    connect,
    exchange,
    read_responses,
    request_bytes,
    run_peer,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from torsion.defer import Deferred, succeed
from torsion.internet import Reactor, ThreadPool
from torsion.testing import require_peer
from torsion.web import (
    AppLoadError,
    Request,
    Resource,
    ServerLimits,
    WSGIResource,
    load_app,
)
from torsion.web._wsgi import _InputStream

# -- a WSGI resource on a fake connection ------------------------------------------


class Watched(WSGIResource):
    """A WSGIResource whose requests the test can wait for, whatever their end."""

    def __init__(self, app: WSGIApplication, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.settled: list[Deferred[None]] = []

    def render(self, request: Request) -> Any:
        coro = super().render(request)
        settled: Deferred[None] = Deferred()
        self.settled.append(settled)

        async def watched() -> Any:
            try:
                return await coro  # type: ignore[misc]
            finally:
                settled.callback(None)

        return watched()


def mount(app: WSGIApplication, reactor: Reactor, at: str = "app", **kwargs: Any) -> Watched:
    resource = Watched(app, reactor=reactor, **kwargs)
    if not at:
        return resource
    root = Resource()
    root.put_child(at, resource)
    resource.root = root  # type: ignore[attr-defined]
    return resource


def open_connection(resource: Watched) -> Connection:
    return connect(getattr(resource, "root", resource))


def environ_app(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    shown = {
        key: value
        for key, value in environ.items()
        if isinstance(value, str | bool | tuple) and key != "wsgi.input"
    }
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(shown).encode()]


async def test_environ_splits_the_path_where_the_resource_sits(reactor: Reactor) -> None:
    resource = mount(environ_app, reactor)
    [response] = await exchange(
        resource,
        request_bytes(
            "/app/a/b%20c?x=1&y=%2F",
            "X-Thing: one",
            "X-Thing: two",
            "Cookie: a=1",
            "Cookie: b=2",
            "Content-Type: text/plain",
            "X_Forwarded_For: 6.6.6.6",
            method="POST",
            body=b"data",
        ),
    )
    environ = json.loads(response.body)
    assert response.status == 200
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["SCRIPT_NAME"] == "/app"
    assert environ["PATH_INFO"] == "/a/b c"
    assert environ["QUERY_STRING"] == "x=1&y=%2F"
    assert environ["CONTENT_TYPE"] == "text/plain"
    assert environ["CONTENT_LENGTH"] == "4"
    assert "HTTP_CONTENT_TYPE" not in environ
    assert environ["HTTP_HOST"] == "example.test"
    assert environ["HTTP_X_THING"] == "one, two"
    assert environ["HTTP_COOKIE"] == "a=1; b=2"
    # A field named with underscores is dropped: it would pose as X-Forwarded-For.
    assert "HTTP_X_FORWARDED_FOR" not in environ
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["SERVER_NAME"] == "192.0.2.1"
    assert environ["SERVER_PORT"] == "12345"
    assert environ["REMOTE_ADDR"] == "192.0.2.2"
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["wsgi.version"] == [1, 0]
    assert (environ["wsgi.multithread"], environ["wsgi.multiprocess"]) == (True, False)
    assert environ["wsgi.run_once"] is False


async def test_environ_at_the_root_and_at_the_mount_point(reactor: Reactor) -> None:
    root_app = mount(environ_app, reactor, at="")
    [response] = await exchange(root_app, request_bytes("/x/y"))
    environ = json.loads(response.body)
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("", "/x/y")

    mounted = mount(environ_app, reactor)
    first, second = await exchange(
        mounted, request_bytes("/app") + request_bytes("/app/"), count=2
    )
    assert json.loads(first.body)["PATH_INFO"] == ""
    assert json.loads(second.body)["PATH_INFO"] == "/"
    assert json.loads(second.body)["SCRIPT_NAME"] == "/app"


async def test_environ_path_is_bytes_as_latin_1(reactor: Reactor) -> None:
    resource = mount(environ_app, reactor, at="")
    [response] = await exchange(resource, request_bytes("/caf%C3%A9"))
    path_info = json.loads(response.body)["PATH_INFO"]
    assert path_info == "/caf\xc3\xa9"
    assert path_info.encode("latin-1").decode("utf-8") == "/café"


def reading_app(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    stream = environ["wsgi.input"]
    first = stream.readline()
    five = stream.read(5)
    limited = stream.readline(3)
    rest = list(stream)
    start_response("200 OK", [])
    return [
        json.dumps(
            [first.decode(), five.decode(), limited.decode(), [r.decode() for r in rest]]
        ).encode()
    ]


async def test_input_reads_lines_and_sizes_as_the_body_arrives(reactor: Reactor) -> None:
    resource = mount(reading_app, reactor)
    conn = open_connection(resource)
    conn.send(
        b"POST /app HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nline 1\r\n"
    )
    # The app blocks in readline() until the rest of the body comes.
    conn.send(b"1\r\n\n\r\n")
    conn.send(b"c\r\n12345abcdefg\r\n")
    conn.send(b"9\r\n\nlast\nend\r\n0\r\n\r\n")
    await resource.settled[0]
    [response] = conn.responses()
    assert json.loads(response.body) == ["line 1\n", "12345", "abc", ["defg\n", "last\n", "end"]]
    conn.lose()


def echo_app(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    body = environ["wsgi.input"].read()
    start_response("200 OK", [])
    return [body, environ["wsgi.input"].read(), environ["wsgi.input"].readline()]


async def test_input_read_to_the_end_then_empty(reactor: Reactor) -> None:
    body = b"x" * 100_000
    [response] = await exchange(
        mount(echo_app, reactor), request_bytes("/app", method="PUT", body=body)
    )
    assert response.body == body
    assert response.header(b"content-length") == b"100000"


async def test_input_over_the_body_limit_is_refused_413(reactor: Reactor) -> None:
    failures: list[BaseException] = []

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        try:
            environ["wsgi.input"].read()
        except Exception as exc:
            failures.append(exc)
            raise
        start_response("200 OK", [])
        return [b"read it all"]

    resource = mount(app, reactor)
    conn = connect(getattr(resource, "root", resource), limits=ServerLimits(max_body=1000))
    conn.send(b"PUT /app HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    conn.send(b"400\r\n" + b"y" * 1024 + b"\r\n")
    await resource.settled[0]
    [response] = conn.responses()
    assert response.status == 413
    assert [type(e).__name__ for e in failures] == ["HTTPProtocolError"]
    conn.lose()


async def test_list_response_goes_in_one_write_with_its_length(reactor: Reactor) -> None:
    [response] = await exchange(mount(hello_wsgi, reactor), request_bytes("/app"))
    assert response.status == 200
    assert response.body == b"Hello, World!"
    assert response.header(b"content-length") == b"13"
    assert response.header(b"content-type") == b"text/plain"
    assert not response.chunked


class Closing:
    """A response iterable that records its close()."""

    def __init__(self, chunks: list[bytes], fail_at: int = -1) -> None:
        self.chunks = chunks
        self.fail_at = fail_at
        self.closed = threading.Event()
        self.produced = 0

    def __iter__(self) -> Iterator[bytes]:
        for index, chunk in enumerate(self.chunks):
            if index == self.fail_at:
                raise RuntimeError("the body failed")
            self.produced += 1
            yield chunk

    def close(self) -> None:
        self.closed.set()


def iterable_app(
    iterable: Closing, status: str = "200 OK", headers: list[tuple[str, str]] | None = None
) -> WSGIApplication:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Closing:
        start_response(status, headers or [])
        return iterable

    return app


async def test_streamed_response_is_chunked_and_closed(reactor: Reactor) -> None:
    body = Closing([b"one ", b"", b"two ", b"three"])
    [response] = await exchange(mount(iterable_app(body), reactor), request_bytes("/app"))
    assert response.body == b"one two three"
    assert response.chunked
    assert body.closed.is_set()


async def test_streamed_response_with_the_apps_length(reactor: Reactor) -> None:
    body = Closing([b"one ", b"two"])
    app = iterable_app(body, headers=[("Content-Length", "7"), ("X-A", "b")])
    [response] = await exchange(mount(app, reactor), request_bytes("/app"))
    assert (response.body, response.chunked) == (b"one two", False)
    assert response.header(b"content-length") == b"7"
    assert response.header(b"x-a") == b"b"


async def test_status_phrase_kept_and_empty_body(reactor: Reactor) -> None:
    app = iterable_app(Closing([]), status="404 Nowhere To Be Found")
    conn = open_connection(mount(app, reactor))
    resource = mount(app, reactor)
    conn = open_connection(resource)
    conn.send(request_bytes("/app"))
    await resource.settled[0]
    data = conn.take()
    assert data.startswith(b"HTTP/1.1 404 Nowhere To Be Found\r\n")
    [response] = read_responses(data)
    assert response.header(b"content-length") == b"0"
    conn.lose()


async def test_head_keeps_the_apps_content_length(reactor: Reactor) -> None:
    app = iterable_app(Closing([]), headers=[("Content-Length", "1234")])
    resource = mount(app, reactor)
    conn = open_connection(resource)
    conn.send(request_bytes("/app", method="HEAD"))
    await resource.settled[0]
    data = conn.take()
    assert b"Content-Length: 1234\r\n" in data
    assert data.endswith(b"\r\n\r\n")
    conn.lose()


async def test_write_callable_then_iterable(reactor: Reactor) -> None:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        write = start_response("200 OK", [])
        write(b"written ")
        write(b"")
        return [b"then ", b"returned"]

    [response] = await exchange(mount(app, reactor), request_bytes("/app"))
    assert response.body == b"written then returned"
    assert response.chunked


async def test_error_before_anything_sent_is_a_500(
    reactor: Reactor, caplog: pytest.LogCaptureFixture
) -> None:
    body = Closing([b"never"], fail_at=0)
    with caplog.at_level(logging.ERROR):
        [response] = await exchange(mount(iterable_app(body), reactor), request_bytes("/app"))
    assert response.status == 500
    assert b"the body failed" not in response.body
    assert body.closed.is_set()
    assert any("the body failed" in repr(r.exc_info) for r in caplog.records if r.exc_info)


async def test_error_after_the_head_was_sent_aborts(
    reactor: Reactor, caplog: pytest.LogCaptureFixture
) -> None:
    body = Closing([b"first", b"never"], fail_at=1)
    resource = mount(iterable_app(body), reactor)
    conn = open_connection(resource)
    with caplog.at_level(logging.ERROR):
        conn.send(request_bytes("/app"))
        await resource.settled[0]
    assert conn.transport.aborted
    [response] = read_responses(conn.take())
    assert (response.status, response.body, response.complete) == (200, b"first", False)
    assert body.closed.is_set()
    conn.lose()


async def test_start_response_with_exc_info_replaces_an_unsent_head(reactor: Reactor) -> None:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("X-Good", "yes")])
        try:
            raise ValueError("oops")
        except ValueError:
            start_response("503 Service Unavailable", [("X-Bad", "yes")], sys.exc_info())
        return [b"sorry"]

    [response] = await exchange(mount(app, reactor), request_bytes("/app"))
    assert (response.status, response.body) == (503, b"sorry")
    assert response.header(b"x-good") is None
    assert response.header(b"x-bad") == b"yes"


async def test_start_response_with_exc_info_after_sending_re_raises(
    reactor: Reactor, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[BaseException] = []

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"sent"
        try:
            raise ValueError("late")
        except ValueError:
            try:
                start_response("500 Oops", [], sys.exc_info())
            except ValueError as exc:
                seen.append(exc)
                raise

    resource = mount(app, reactor)
    conn = open_connection(resource)
    with caplog.at_level(logging.ERROR):
        conn.send(request_bytes("/app"))
        await resource.settled[0]
    assert [str(e) for e in seen] == ["late"]
    assert conn.transport.aborted
    conn.lose()


@pytest.mark.parametrize(
    "app_kind",
    ["twice", "no_start", "str_body", "crlf_header", "bad_status", "write_first"],
)
async def test_misbehaving_apps_get_a_500(
    reactor: Reactor, app_kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        if app_kind == "twice":
            start_response("200 OK", [])
            start_response("200 OK", [])
        elif app_kind == "str_body":
            start_response("200 OK", [])
            return ["text"]
        elif app_kind == "crlf_header":
            start_response("200 OK", [("X-Evil", "a\r\nSet-Cookie: x=1")])
        elif app_kind == "bad_status":
            start_response("OK", [])
        elif app_kind == "write_first":
            return iter([b"body"])
        return [b"body"]

    with caplog.at_level(logging.ERROR):
        [response] = await exchange(mount(app, reactor), request_bytes("/app"))
    assert response.status == 500
    assert response.header(b"set-cookie") is None
    assert response.header(b"x-evil") is None
    assert [r for r in caplog.records if r.levelno == logging.ERROR]


async def test_errors_stream_logs_lines(
    reactor: Reactor, caplog: pytest.LogCaptureFixture
) -> None:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        errors = environ["wsgi.errors"]
        errors.write("first line\nsecond ")
        errors.writelines(["half\n", "unfinished"])
        errors.flush()
        start_response("200 OK", [])
        return [b""]

    with caplog.at_level(logging.ERROR, logger="torsion.web.wsgi"):
        [response] = await exchange(mount(app, reactor), request_bytes("/app"))
    assert response.status == 200
    messages = [r.getMessage() for r in caplog.records if r.name == "torsion.web.wsgi"]
    assert messages == ["first line", "second half", "unfinished"]


async def test_client_gone_stops_the_iteration_and_closes(reactor: Reactor) -> None:
    third: Deferred[None] = Deferred()
    closed = threading.Event()
    count = [0]

    class Endless:
        def __iter__(self) -> Iterator[bytes]:
            while True:
                count[0] += 1
                if count[0] == 3:
                    reactor.call_from_thread(third.callback, None)
                yield b"more " * 100

        def close(self) -> None:
            closed.set()

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Endless:
        start_response("200 OK", [])
        return Endless()

    resource = mount(app, reactor)
    conn = open_connection(resource)
    conn.send(request_bytes("/app"))
    await third
    conn.lose()
    await resource.settled[0]
    assert closed.is_set()
    # Each chunk waits for the loop's thread, which saw the loss at once.
    assert count[0] <= 4


async def test_writes_wait_while_the_transport_is_full(reactor: Reactor) -> None:
    chunk = b"z" * 1000
    produced: list[int] = []

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Length", str(len(chunk) * 20))])
        for index in range(20):
            produced.append(index)
            yield chunk

    resource = mount(app, reactor)
    conn = open_connection(resource)
    conn.transport.set_write_buffer_limits(high=2500, low=0)
    signal: list[Deferred[None]] = [Deferred()]
    pause_writing = conn.protocol.pause_writing

    def paused() -> None:
        pause_writing()
        signal[0].callback(None)

    conn.protocol.pause_writing = paused  # type: ignore[method-assign]
    conn.send(request_bytes("/app"))
    resource.settled[0].add_callback(
        lambda _: None if signal[0].called else signal[0].callback(None)
    )
    try:
        received = b""
        pauses = 0
        while not resource.settled[0].called:
            await signal[0]
            signal[0] = Deferred()
            if resource.settled[0].called:
                break
            pauses += 1
            # Paused past 2500 bytes: the app's thread is held at its third
            # chunk however many loop turns pass.
            before = len(produced)
            for _ in range(100):
                await asyncio.sleep(0)
            assert len(produced) == before
            # At most one chunk past the high-water mark (and the head).
            assert len(conn.transport.value()) <= 2500 + len(chunk) + 200
            received += conn.take()
    finally:
        # A failing test must still free the app's thread.
        conn.lose()
    received += conn.take()
    [response] = read_responses(received)
    assert response.body == chunk * 20
    assert pauses >= 5


async def test_own_thread_pool(reactor: Reactor) -> None:
    pool = ThreadPool(max_workers=1, name="wsgi-test")

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [])
        return [threading.current_thread().name.encode()]

    try:
        [response] = await exchange(mount(app, reactor, thread_pool=pool), request_bytes("/app"))
    finally:
        pool.stop()
    assert response.body == b"wsgi-test-1"


# -- load_app ------------------------------------------------------------------------


def test_load_app_finds_dotted_attributes(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("torsion_test_wsgi_module")
    module.holder = types.SimpleNamespace(app=hello_wsgi)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    assert load_app("torsion_test_wsgi_module:holder.app") is hello_wsgi
    assert load_app("wsgiref.simple_server:demo_app") is demo_app


def test_load_app_from_a_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "torsion_test_app_dir_module.py").write_text("app = 'found'\n")
    (tmp_path / "torsion_test_broken_module.py").write_text("raise KeyError('broken')\n")
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "torsion_test_app_dir_module", raising=False)
    with pytest.raises(AppLoadError, match="cannot import"):
        load_app("torsion_test_app_dir_module:app")
    assert load_app("torsion_test_app_dir_module:app", app_dir=str(tmp_path)) == "found"
    assert sys.path[0] == str(tmp_path)
    with pytest.raises(AppLoadError, match="raised KeyError") as caught:
        load_app("torsion_test_broken_module:app")
    assert isinstance(caught.value.__cause__, KeyError)
    monkeypatch.delitem(sys.modules, "torsion_test_app_dir_module", raising=False)
    monkeypatch.delitem(sys.modules, "torsion_test_broken_module", raising=False)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_colon", "is not of the form"),
        (":app", "is not of the form"),
        ("wsgiref.simple_server:", "is not of the form"),
        ("torsion_no_such_module_here:app", "cannot import"),
        ("wsgiref.simple_server:nothing", "has no attribute"),
    ],
)
def test_load_app_says_what_failed(spec: str, message: str) -> None:
    with pytest.raises(AppLoadError, match=message):
        load_app(spec)
    assert issubclass(AppLoadError, ValueError)


# -- real WSGI apps on real ports -----------------------------------------------------


def flask_root(reactor: Reactor) -> Resource:
    pytest.importorskip("flask")
    root = Resource()
    watched = [Watched(make_flask_app(), reactor=reactor), Watched(demo_app, reactor=reactor)]
    root.put_child("flask", watched[0])
    root.put_child("demo", watched[1])
    root.watched = watched  # type: ignore[attr-defined]
    return root


def _http_client_session(port: int) -> list[Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        results: list[Any] = []
        connection.request("GET", "/flask/")
        response = connection.getresponse()
        results.append((response.status, response.read()))
        connection.request(
            "POST",
            "/flask/json",
            body=json.dumps({"a": [1, 2]}),
            headers={"Content-Type": "application/json"},
        )
        response = connection.getresponse()
        results.append((response.status, json.loads(response.read())))
        connection.request(
            "POST",
            "/flask/form",
            body=iter([b"name=torsion", b"&other=1"]),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            encode_chunked=True,
        )
        response = connection.getresponse()
        results.append((response.status, json.loads(response.read())))
        connection.request("GET", "/flask/where?x=1")
        response = connection.getresponse()
        results.append((response.status, json.loads(response.read())))
        connection.request("GET", "/flask/missing")
        response = connection.getresponse()
        results.append((response.status, response.read()[:0]))
        connection.request("GET", "/demo/")
        response = connection.getresponse()
        results.append((response.status, response.read().splitlines()[0]))
        return results
    finally:
        connection.close()


@BOTH_LOOPS
async def test_flask_with_http_client_on_one_connection(reactor: Reactor, loop: str) -> None:
    server = Serving(reactor, flask_root(reactor))
    try:
        results = await asyncio.get_running_loop().run_in_executor(
            None, _http_client_session, server.port
        )
    finally:
        await server.stop()
    assert results == [
        (200, b"Hello from Flask"),
        (200, {"a": [1, 2]}),
        (200, {"name": "torsion", "files": []}),
        (
            200,
            {
                "script_root": "/flask",
                "path": "/where",
                "url": f"http://127.0.0.1:{server.port}/flask/where?x=1",
                "args": {"x": "1"},
            },
        ),
        (404, b""),
        (200, b"Hello world!"),
    ]
    assert len(server.tracked.ended) == 1


@BOTH_LOOPS
async def test_flask_with_curl(
    reactor: Reactor, loop: str, caplog: pytest.LogCaptureFixture
) -> None:
    curl = require_peer("curl", package="curl")
    server = Serving(reactor, flask_root(reactor))
    base = f"http://127.0.0.1:{server.port}/flask"
    try:
        stream = await run_peer(curl, "-s", "-D", "-", f"{base}/stream")
        upload = await run_peer(
            curl, "-s", "-F", "name=torsion", "-F", "file=@-", f"{base}/form", stdin=b"x" * 50_000
        )
        with caplog.at_level(logging.ERROR):
            failed = await run_peer(
                curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", f"{base}/fail"
            )
    finally:
        await server.stop()
    head, _, body = stream.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    assert body == "".join(f"line {i}\n" for i in range(100)).encode()
    assert json.loads(upload) == {"name": "torsion", "files": ["file"]}
    assert failed == b"500"
    assert any(
        "the view failed" in repr(r.exc_info) for r in caplog.records if r.levelno >= logging.ERROR
    )


@BOTH_LOOPS
async def test_over_a_unix_socket(reactor: Reactor, loop: str, tmp_path: Path) -> None:
    curl = require_peer("curl", package="curl")
    root = Resource()
    root.put_child("app", Watched(environ_app, reactor=reactor))
    root.watched = [root.get_child("app", None)]  # type: ignore[arg-type, attr-defined]
    path = str(tmp_path / "web.sock")
    server = Serving(reactor, root, unix=path)
    try:
        out = await run_peer(curl, "-s", "--unix-socket", path, "http://localhost/app/x")
    finally:
        await server.stop()
    environ = json.loads(out)
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("localhost", "80")
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == ("", "")
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/app", "/x")
    assert environ["HTTP_HOST"] == "localhost"


@BOTH_LOOPS
async def test_over_tls_the_scheme_is_https(reactor: Reactor, loop: str, tmp_path: Path) -> None:
    curl = require_peer("curl", package="curl")
    pytest.importorskip("flask")
    root = Resource()
    root.put_child("flask", Watched(make_flask_app(), reactor=reactor))
    root.watched = [root.get_child("flask", None)]  # type: ignore[arg-type, attr-defined]
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = Serving(reactor, root, tls=context)
    try:
        out = await run_peer(
            curl,
            "-s",
            "--cacert",
            str(ca_file),
            f"https://127.0.0.1:{server.port}/flask/where?x=1",
        )
    finally:
        await server.stop()
    assert json.loads(out)["url"] == f"https://127.0.0.1:{server.port}/flask/where?x=1"


# -- wsgi.input against io.BytesIO (property) -------------------------------------------


class _SameThread:
    """A ThreadRunner whose calls "from another thread" run at once, here."""

    def in_reactor_thread(self) -> bool:
        return False

    def call_from_thread(self, f: Callable[..., object], /, *args: Any) -> None:
        f(*args)


class _ChunkedBody:
    """A request body served by read() in the chunks given."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = [c for c in chunks if c]

    def read(self) -> Deferred[bytes]:
        return succeed(self.chunks.pop(0) if self.chunks else b"")


# Zero bytes become line ends, so that lines are short and many.
_CHUNKS = st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\0", b"\n")))
_OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("read"), st.integers(-1, 40)),
        st.tuples(st.just("readline"), st.integers(-1, 40)),
        st.tuples(st.just("readlines"), st.integers(-1, 40)),
        st.tuples(st.just("iter"), st.just(0)),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(chunks=_CHUNKS, ops=_OPERATIONS)
def test_input_reads_as_bytes_io_whatever_the_chunks(
    chunks: list[bytes], ops: list[tuple[str, int]]
) -> None:
    response = types.SimpleNamespace(_reactor=_SameThread(), _request=_ChunkedBody(chunks))
    stream = _InputStream(response)  # type: ignore[arg-type]
    expected = io.BytesIO(b"".join(chunks))
    for name, size in ops:
        if name == "iter":
            assert list(stream) == list(expected)
        else:
            assert getattr(stream, name)(size) == getattr(expected, name)(size)
    assert stream.read() == expected.read()
