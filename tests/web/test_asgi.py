"""Tests for ASGIResource: the ASGI HTTP and lifespan protocols, then Starlette on real ports."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme
from _apps import hello_asgi, make_starlette_app
from _http_server_helpers import (
    BOTH_LOOPS,
    Serving,
    connect,
    exchange,
    read_responses,
    request_bytes,
    run_peer,
)

from torsion.defer import Deferred
from torsion.internet import Reactor
from torsion.testing import require_peer
from torsion.web import (
    ASGIApp,
    ASGIResource,
    LifespanError,
    Request,
    Resource,
    ServerLimits,
)

Message = dict[str, Any]

# -- an ASGI resource on a fake connection -----------------------------------------


class Watched(ASGIResource):
    """An ASGIResource whose requests the test can wait for, whatever their end."""

    def __init__(self, app: ASGIApp, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.settled: list[Deferred[None]] = []
        self.root: Resource = self

    def render(self, request: Request) -> Any:
        result = super().render(request)
        settled: Deferred[None] = Deferred()
        self.settled.append(settled)
        if not asyncio.iscoroutine(result):
            settled.callback(None)
            return result

        async def watched() -> Any:
            try:
                return await result
            finally:
                settled.callback(None)

        return watched()


def mount(app: Any, reactor: Reactor, at: str = "api", **kwargs: Any) -> Watched:
    resource = Watched(app, reactor=reactor, **kwargs)
    if at:
        root = Resource()
        root.put_child(at, resource)
        resource.root = root
    return resource


async def respond(send: Any, body: bytes, status: int = 200, **start: Any) -> None:
    await send({"type": "http.response.start", "status": status, **start})
    await send({"type": "http.response.body", "body": body})


async def scope_app(scope: Any, receive: Any, send: Any) -> None:
    shown = {
        key: value.decode("latin-1") if isinstance(value, bytes) else value
        for key, value in scope.items()
    }
    shown["headers"] = [[n.decode(), v.decode()] for n, v in scope["headers"]]
    await respond(send, json.dumps(shown).encode())


async def test_scope_of_a_mounted_app(reactor: Reactor) -> None:
    [response] = await exchange(
        mount(scope_app, reactor),
        request_bytes("/api/items/caf%C3%A9?q=1&r=%2F", "X-Thing: One", "x_under: kept"),
    )
    scope = json.loads(response.body)
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/api/items/café"
    assert scope["root_path"] == "/api"
    assert scope["raw_path"] == "/api/items/caf%C3%A9"
    assert scope["query_string"] == "q=1&r=%2F"
    assert scope["headers"] == [
        ["host", "example.test"],
        ["x-thing", "One"],
        ["x_under", "kept"],
    ]
    assert scope["client"] == ["192.0.2.2", 54321]
    assert scope["server"] == ["192.0.2.1", 12345]
    assert scope["state"] == {}


async def test_scope_with_a_root_path_and_at_the_root(reactor: Reactor) -> None:
    [response] = await exchange(
        mount(scope_app, reactor, root_path="/prefix/"), request_bytes("/api/x")
    )
    scope = json.loads(response.body)
    assert (scope["root_path"], scope["path"]) == ("/prefix/api", "/prefix/api/x")
    [response] = await exchange(mount(scope_app, reactor, at=""), request_bytes("/"))
    scope = json.loads(response.body)
    assert (scope["root_path"], scope["path"]) == ("", "/")


async def test_receive_gives_the_body_as_it_arrives_then_disconnect(reactor: Reactor) -> None:
    messages: list[Message] = []
    first: Deferred[None] = Deferred()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            messages.append(message)
            if not first.called:
                first.callback(None)
            if not message.get("more_body"):
                break
        await respond(send, b"%d messages" % len(messages))
        messages.append(await receive())

    resource = mount(app, reactor)
    conn = connect(resource.root)
    conn.send(b"POST /api HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    await first
    conn.send(b"6\r\n world\r\n0\r\n\r\n")
    await resource.settled[0]
    [response] = conn.responses()
    assert response.body == b"3 messages"
    assert messages == [
        {"type": "http.request", "body": b"hello", "more_body": True},
        {"type": "http.request", "body": b" world", "more_body": True},
        {"type": "http.request", "body": b"", "more_body": False},
        {"type": "http.disconnect"},
    ]
    conn.lose()


async def test_body_over_the_limit_is_413_and_receive_says_disconnect(reactor: Reactor) -> None:
    messages: list[Message] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            messages.append(message)
            if not message.get("more_body"):
                break

    resource = mount(app, reactor)
    conn = connect(resource.root, limits=ServerLimits(max_body=1000))
    conn.send(b"PUT /api HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    conn.send(b"400\r\n" + b"y" * 1024 + b"\r\n")
    await resource.settled[0]
    [response] = conn.responses()
    assert response.status == 413
    assert messages[-1] == {"type": "http.disconnect"}
    assert sum(len(m.get("body", b"")) for m in messages) <= 1000
    conn.lose()


async def test_one_body_message_gets_a_length(reactor: Reactor) -> None:
    [response] = await exchange(mount(hello_asgi, reactor), request_bytes("/api"))
    assert (response.status, response.body) == (200, b"Hello, World!")
    assert response.header(b"content-length") == b"13"
    assert response.header(b"content-type") == b"text/plain"
    assert not response.chunked


def streaming_app(parts: list[bytes], headers: list[tuple[bytes, bytes]] | None = None) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        start = {"type": "http.response.start", "status": 201, "headers": headers or []}
        await send(start)
        for part in parts:
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body"})

    return app


async def test_streamed_body_is_chunked(reactor: Reactor) -> None:
    [response] = await exchange(
        mount(streaming_app([b"a", b"", b"bc"]), reactor), request_bytes("/api")
    )
    assert (response.status, response.body, response.chunked) == (201, b"abc", True)


async def test_streamed_body_with_the_apps_length(reactor: Reactor) -> None:
    app = streaming_app([b"a", b"bc"], [(b"content-length", b"3")])
    [response] = await exchange(mount(app, reactor), request_bytes("/api"))
    assert (response.body, response.chunked) == (b"abc", False)
    assert response.header(b"content-length") == b"3"


async def test_head_keeps_the_apps_length(reactor: Reactor) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await respond(send, b"", headers=[(b"content-length", b"99")])

    resource = mount(app, reactor)
    conn = connect(resource.root)
    conn.send(request_bytes("/api", method="HEAD"))
    await resource.settled[0]
    data = conn.take()
    assert b"content-length: 99\r\n" in data
    assert data.endswith(b"\r\n\r\n")
    conn.lose()


async def test_send_waits_while_the_transport_is_full(reactor: Reactor) -> None:
    chunk = b"z" * 1000
    sent: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for index in range(20):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            sent.append(index)
        await send({"type": "http.response.body"})

    resource = mount(app, reactor)
    conn = connect(resource.root)
    conn.transport.set_write_buffer_limits(high=2500, low=0)
    received = b""
    pauses = 0
    conn.send(request_bytes("/api"))
    done = resource.settled[0]
    try:
        while not done.called:
            for _ in range(20):
                await asyncio.sleep(0)
            if done.called:
                break
            # Paused past 2500 bytes: send() holds the app, turn after turn.
            assert conn.protocol._writing_paused
            before = len(sent)
            for _ in range(20):
                await asyncio.sleep(0)
            assert len(sent) == before
            assert len(conn.transport.value()) <= 2500 + 2 * len(chunk)
            pauses += 1
            received += conn.take()
    finally:
        conn.lose()
    received += conn.take()
    [response] = read_responses(received)
    assert response.body == chunk * 20
    assert pauses >= 5


async def test_client_gone_send_raises_and_receive_says_disconnect(reactor: Reactor) -> None:
    seen: list[Any] = []
    streaming: Deferred[None] = Deferred()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"x", "more_body": True})
        streaming.callback(None)
        seen.append(await receive())
        try:
            await send({"type": "http.response.body", "body": b"y", "more_body": True})
        except OSError as exc:
            seen.append(type(exc))
            raise

    resource = mount(app, reactor)
    conn = connect(resource.root)
    conn.send(request_bytes("/api"))
    await streaming
    conn.lose()
    await resource.settled[0]
    assert seen == [{"type": "http.disconnect"}, ConnectionResetError]


@pytest.mark.parametrize(
    "kind", ["raise", "return", "body_first", "start_twice", "bad_header", "bad_type"]
)
async def test_misbehaving_apps_get_a_500(
    reactor: Reactor, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if kind == "raise":
            raise RuntimeError("the app failed")
        if kind == "body_first":
            await send({"type": "http.response.body", "body": b"x"})
        if kind == "start_twice":
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.start", "status": 200})
        if kind == "bad_header":
            await respond(send, b"x", headers=[(b"x-evil", b"a\r\nSet-Cookie: x=1")])
        if kind == "bad_type":
            await send({"type": "http.response.other"})

    with caplog.at_level(logging.ERROR):
        [response] = await exchange(mount(app, reactor), request_bytes("/api"))
    assert response.status == 500
    assert response.header(b"set-cookie") is None
    assert b"the app failed" not in response.body
    assert [r for r in caplog.records if r.levelno == logging.ERROR]


async def test_error_after_the_head_was_sent_aborts(
    reactor: Reactor, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        raise RuntimeError("cut short")

    resource = mount(app, reactor)
    conn = connect(resource.root)
    with caplog.at_level(logging.ERROR):
        conn.send(request_bytes("/api"))
        await resource.settled[0]
    assert conn.transport.aborted
    [response] = read_responses(conn.take())
    assert (response.body, response.complete) == (b"first", False)
    conn.lose()


async def test_error_after_the_response_keeps_the_connection(
    reactor: Reactor, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await respond(send, scope["path"].encode())
        raise RuntimeError("a background task failed")

    with caplog.at_level(logging.ERROR):
        first, second = await exchange(
            mount(app, reactor), request_bytes("/api/1") + request_bytes("/api/2"), count=2
        )
    assert (first.body, second.body) == (b"/api/1", b"/api/2")
    assert any("after its response" in r.getMessage() for r in caplog.records)


async def test_websocket_handshake_is_refused_without_the_app(reactor: Reactor) -> None:
    called: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        called.append(scope)

    [response] = await exchange(
        mount(app, reactor),
        request_bytes(
            "/api",
            "Connection: Upgrade",
            "Upgrade: websocket",
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        ),
    )
    assert response.status == 404
    assert called == []


# -- lifespan --------------------------------------------------------------------------


def lifespan_app(log: list[str], *, fail: str = "") -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            assert message["type"] == "lifespan.startup"
            if fail == "startup":
                await send({"type": "lifespan.startup.failed", "message": "no database"})
                return
            scope["state"]["db"] = "connected"
            log.append("startup")
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            assert message["type"] == "lifespan.shutdown"
            log.append("shutdown")
            if fail == "shutdown":
                await send({"type": "lifespan.shutdown.failed", "message": "cannot flush"})
                return
            await send({"type": "lifespan.shutdown.complete"})
            return
        await respond(send, scope["state"]["db"].encode())

    return app


async def test_lifespan_runs_once_and_shares_its_state(reactor: Reactor) -> None:
    log: list[str] = []
    resource = mount(lifespan_app(log), reactor)
    await resource.start()
    assert log == ["startup"]
    with pytest.raises(LifespanError, match="already started"):
        await resource.start()
    [response] = await exchange(resource, request_bytes("/api"))
    assert response.body == b"connected"
    await resource.stop()
    assert log == ["startup", "shutdown"]


def gated_lifespan_app(gate: asyncio.Future[str]) -> Any:
    """An app whose startup completes (or fails) when the test resolves ``gate``."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            outcome = await gate
            if outcome == "fail":
                await send({"type": "lifespan.startup.failed", "message": "no database"})
                return
            scope["state"]["db"] = "connected"
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        await respond(send, scope["state"]["db"].encode())

    return app


@pytest.mark.parametrize("outcome", ["ok", "fail"])
async def test_requests_during_startup_wait_for_it(reactor: Reactor, outcome: str) -> None:
    gate: asyncio.Future[str] = reactor.loop.create_future()
    resource = mount(gated_lifespan_app(gate), reactor)
    starting = asyncio.ensure_future(resource.start())
    await asyncio.sleep(0)  # one turn: the startup has begun
    conn = connect(resource.root)
    conn.send(request_bytes("/api"))
    assert conn.responses() == []  # the request waits for the startup
    gate.set_result(outcome)
    await resource.settled[0]
    [response] = conn.responses()
    if outcome == "ok":
        await starting
        assert (response.status, response.body) == (200, b"connected")
    else:
        with pytest.raises(LifespanError):
            await starting
        assert response.status == 503
    conn.lose()
    await resource.stop()


async def test_lifespan_startup_failure_raises(reactor: Reactor) -> None:
    resource = mount(lifespan_app([], fail="startup"), reactor)
    with pytest.raises(LifespanError, match="no database"):
        await resource.start()
    await resource.stop()


async def test_lifespan_shutdown_failure_raises(reactor: Reactor) -> None:
    log: list[str] = []
    resource = mount(lifespan_app(log, fail="shutdown"), reactor)
    await resource.start()
    with pytest.raises(LifespanError, match="cannot flush"):
        await resource.stop()
    assert log == ["startup", "shutdown"]


async def test_app_without_lifespan_is_served(
    reactor: Reactor, caplog: pytest.LogCaptureFixture
) -> None:
    resource = mount(hello_asgi, reactor)
    with caplog.at_level(logging.INFO, logger="torsion.web"):
        await resource.start()
    assert any("does not use the lifespan" in r.getMessage() for r in caplog.records)
    [response] = await exchange(resource, request_bytes("/api"))
    assert response.body == b"Hello, World!"
    await resource.stop()


async def test_stop_cancels_requests_still_running(reactor: Reactor) -> None:
    waiting: Deferred[None] = Deferred()
    cancelled: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        waiting.callback(None)
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    resource = mount(app, reactor)
    conn = connect(resource.root)
    conn.send(request_bytes("/api"))
    await waiting
    await resource.stop()
    await resource.settled[0]
    assert cancelled == [True]
    [response] = conn.responses()
    assert response.status == 500
    conn.lose()


# -- Starlette on real ports ---------------------------------------------------------


def starlette_resource(reactor: Reactor) -> tuple[Any, ASGIResource, Resource]:
    pytest.importorskip("starlette")
    pytest.importorskip("multipart")
    app = make_starlette_app()
    resource = Watched(app, reactor=reactor)
    root = Resource()
    root.put_child("star", resource)
    root.watched = [resource]  # type: ignore[attr-defined]
    return app, resource, root


def _http_client_session(port: int) -> list[Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        results: list[Any] = []
        for method, target, body, headers in [
            ("GET", "/star/", None, {}),
            ("GET", "/star/items/42?q=x", None, {}),
            (
                "POST",
                "/star/form",
                b"name=torsion&other=1",
                {"Content-Type": "application/x-www-form-urlencoded"},
            ),
            ("POST", "/star/echo", iter([b"ab", b"cd"]), {}),
            ("GET", "/star/missing", None, {}),
        ]:
            # An iterable body goes chunked, bytes with their length.
            connection.request(method, target, body=body, headers=headers)
            response = connection.getresponse()
            results.append((response.status, response.read()))
        return results
    finally:
        connection.close()


@BOTH_LOOPS
async def test_starlette_with_http_client_on_one_connection(reactor: Reactor, loop: str) -> None:
    app, resource, root = starlette_resource(reactor)
    await resource.start()
    server = Serving(reactor, root)
    try:
        results = await asyncio.get_running_loop().run_in_executor(
            None, _http_client_session, server.port
        )
    finally:
        await server.stop()
        await resource.stop()
    assert results[0] == (200, b"Hello from Starlette")
    assert results[1][0] == 200
    assert json.loads(results[1][1]) == {
        "id": 42,
        "q": "x",
        "root_path": "/star",
        "url": f"http://127.0.0.1:{server.port}/star/items/42?q=x",
    }
    assert results[2] == (200, b'{"name":"torsion","upload":""}')
    assert results[3] == (200, b'4 "abcd"')
    assert results[4][0] == 404
    assert len(server.tracked.ended) == 1
    assert app.state.events == ["startup", "shutdown"]


@BOTH_LOOPS
async def test_starlette_with_curl(
    reactor: Reactor, loop: str, caplog: pytest.LogCaptureFixture
) -> None:
    curl = require_peer("curl", package="curl")
    _, resource, root = starlette_resource(reactor)
    await resource.start()
    server = Serving(reactor, root)
    base = f"http://127.0.0.1:{server.port}/star"
    upload = b"u" * 200_000
    try:
        stream = await run_peer(curl, "-s", "-D", "-", f"{base}/stream")
        form = await run_peer(
            curl, "-s", "-F", "name=torsion", "-F", "upload=@-", f"{base}/form", stdin=upload
        )
        echoed = await run_peer(curl, "-s", "--data-binary", "@-", f"{base}/echo", stdin=upload)
        with caplog.at_level(logging.ERROR):
            failed = await run_peer(
                curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", f"{base}/fail"
            )
    finally:
        await server.stop()
        await resource.stop()
    head, _, body = stream.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    assert body == "".join(f"chunk {i}\n" for i in range(50)).encode()
    assert json.loads(form) == {"name": "torsion", "upload": upload.decode()}
    assert echoed == b'200000 "uuuuuuuuuu"'
    assert failed == b"500"
    assert any("the endpoint failed" in repr(r.exc_info) for r in caplog.records if r.exc_info)


@BOTH_LOOPS
async def test_over_a_unix_socket(reactor: Reactor, loop: str, tmp_path: Path) -> None:
    curl = require_peer("curl", package="curl")
    root = Resource()
    root.put_child("app", Watched(scope_app, reactor=reactor))
    root.watched = [root.get_child("app", None)]  # type: ignore[arg-type, attr-defined]
    path = str(tmp_path / "web.sock")
    server = Serving(reactor, root, unix=path)
    try:
        out = await run_peer(curl, "-s", "--unix-socket", path, "http://localhost/app/x")
    finally:
        await server.stop()
    scope = json.loads(out)
    assert (scope["client"], scope["server"]) == (None, None)
    assert (scope["root_path"], scope["path"]) == ("/app", "/app/x")
    assert ["host", "localhost"] in scope["headers"]


@BOTH_LOOPS
async def test_over_tls_the_scheme_is_https(reactor: Reactor, loop: str, tmp_path: Path) -> None:
    curl = require_peer("curl", package="curl")
    _, _, root = starlette_resource(reactor)
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = Serving(reactor, root, tls=context)
    try:
        out = await run_peer(
            curl, "-s", "--cacert", str(ca_file), f"https://127.0.0.1:{server.port}/star/items/7"
        )
    finally:
        await server.stop()
    assert json.loads(out)["url"] == f"https://127.0.0.1:{server.port}/star/items/7"
