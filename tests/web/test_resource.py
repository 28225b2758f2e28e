"""Tests for Resource: the tree walk, declared handlers, results and failures."""

from __future__ import annotations

import logging
from typing import ClassVar

import pytest
from _http_server_helpers import connect, get

from torsion.defer import Deferred, succeed
from torsion.web import ErrorPage, HTTPProtocolError, Request, Resource, error_page, handles


class Leaf(Resource):
    is_leaf = True

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    @handles("GET")
    def get(self, request: Request) -> bytes:
        where = "/".join(request.prepath) + "|" + "/".join(request.postpath)
        return f"{self.name}:{where}".encode()


class Node(Resource):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    @handles("GET")
    def get(self, request: Request) -> bytes:
        return f"node {self.name}".encode()


def tree() -> Resource:
    root = Node("root")
    docs = Node("docs")
    root.put_child("docs", docs)
    docs.put_child("leaf", Leaf("leaf"))
    root.put_child("caf\xe9 bar", Leaf("unicode"))
    return root


def body_of(path: str, root: Resource | None = None) -> tuple[int, bytes]:
    conn = connect(root or tree())
    conn.send(get(path))
    [response] = conn.responses()
    conn.lose()
    return response.status, response.body


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/", (200, b"node root")),
        ("/docs", (200, b"node docs")),
        ("/docs/", (200, b"node docs")),
        ("/docs/leaf", (200, b"leaf:docs/leaf|")),
        ("/docs/leaf/rest/of/it", (200, b"leaf:docs/leaf|rest/of/it")),
        ("/caf%C3%A9%20bar", (200, b"unicode:caf\xc3\xa9 bar|")),
        ("/docs/./leaf", (200, b"leaf:docs/leaf|")),
        ("/docs/x/../leaf", (200, b"leaf:docs/leaf|")),
        ("/../../docs", (200, b"node docs")),
        ("/docs/..", (200, b"node root")),
        ("/docs/leaf?x=1", (200, b"leaf:docs/leaf|")),
    ],
)
def test_the_walk_follows_decoded_segments(path: str, expected: tuple[int, bytes]) -> None:
    assert body_of(path) == expected


@pytest.mark.parametrize(
    "path",
    [
        "/docs%2Fleaf",  # an encoded slash cannot join two segments
        "/docs/leaf/a%2Fb",  # nor hide in the rest of the path
        "/%2e%2e/docs",  # an encoded dot segment is not resolved: refused
        "/docs/%2E",
        "/a%00b",
        "/%ff",
    ],
)
def test_dangerous_encoded_segments_are_refused(path: str) -> None:
    status, body = body_of(path)
    assert status == 400
    assert b"docs" not in body


def test_unknown_child_is_404() -> None:
    status, body = body_of("/nothing/here")
    assert status == 404
    assert b"404 Not Found" in body


def test_put_child_refuses_a_slash() -> None:
    with pytest.raises(ValueError, match="/"):
        Resource().put_child("a/b", Resource())


def test_get_child_can_make_children_on_demand() -> None:
    class Users(Resource):
        def get_child(self, segment: str, request: Request) -> Resource:
            return Leaf(f"user {segment}")

    root = Resource()
    root.put_child("users", Users())
    assert body_of("/users/alice", root) == (200, b"user alice:users/alice|")


def test_methods_without_a_handler_get_405_with_allow() -> None:
    conn = connect(tree())
    conn.send(b"DELETE /docs HTTP/1.1\r\nHost: a\r\n\r\n")
    [response] = conn.responses()
    assert response.status == 405
    assert response.header(b"allow") == b"GET, HEAD, OPTIONS"
    assert not conn.transport.closed
    conn.lose()


def test_options_answers_allow() -> None:
    class Form(Resource):
        is_leaf = True

        @handles("POST", "PUT")
        def change(self, request: Request) -> bytes:
            return b""

    conn = connect(Form())
    conn.send(b"OPTIONS / HTTP/1.1\r\nHost: a\r\n\r\n")
    [response] = conn.responses()
    assert response.status == 204
    assert response.header(b"allow") == b"OPTIONS, POST, PUT"
    assert response.header(b"content-length") is None
    conn.lose()
    assert Form().allowed_methods == ["OPTIONS", "POST", "PUT"]


def test_options_star_is_answered_by_the_server() -> None:
    conn = connect(tree())
    conn.send(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")
    [response] = conn.responses()
    assert response.status == 204
    conn.send(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n")
    [response] = conn.responses()
    assert response.status == 400
    conn.lose()


def test_handler_table_is_inherited_and_extended() -> None:
    class Base(Resource):
        is_leaf = True

        @handles("GET")
        def get(self, request: Request) -> bytes:
            return b"base get"

    class Child(Base):
        @handles("POST")
        def post(self, request: Request) -> bytes:
            return b"child post"

        @handles("GET")
        def get_again(self, request: Request) -> bytes:
            return b"child get"

    conn = connect(Child())
    conn.send(get() + b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
    assert [r.body for r in conn.responses()] == [b"child get", b"child post"]
    conn.lose()
    assert Base().allowed_methods == ["GET", "HEAD", "OPTIONS"]


def test_method_names_are_never_looked_up_as_attributes() -> None:
    # The client's method string picks from the declared table only: a
    # method named like an attribute reaches nothing.
    class Sneaky(Resource):
        is_leaf = True

        def PURGE(self, request: Request) -> bytes:  # noqa: N802 - the point of the test
            raise AssertionError("never called")

        @handles("GET")
        def get(self, request: Request) -> bytes:
            return b"ok"

    conn = connect(Sneaky())
    conn.send(b"PURGE / HTTP/1.1\r\nHost: a\r\n\r\n")
    [response] = conn.responses()
    assert response.status == 405
    conn.lose()


def test_handles_refuses_what_is_not_a_method() -> None:
    with pytest.raises(ValueError, match="at least one"):
        handles()
    with pytest.raises(ValueError, match="not an HTTP method"):
        handles("GET POST")
    with pytest.raises(ValueError, match="not an HTTP method"):
        handles("")


class Results(Resource):
    is_leaf = True
    later: ClassVar[list[Deferred[bytes]]] = []

    @handles("GET")
    def get(self, request: Request) -> object:
        kind = request.args.get("kind", [""])[0]
        if kind == "deferred":
            return succeed(b"from a deferred")
        if kind == "later":
            d: Deferred[bytes] = Deferred()
            self.later.append(d)
            return d
        if kind == "coroutine":
            return self.coroutine()
        if kind == "str":
            return "text"
        if kind == "int":
            return 3
        if kind == "raise":
            raise KeyError("boom")
        if kind == "raise-later":
            request.write(b"half")
            raise KeyError("boom after start")
        if kind == "bad-request":
            raise HTTPProtocolError(400, "the handler refused it")
        if kind == "stream":
            request.write(b"streamed")
            request.finish()
            return None
        return b"plain"

    async def coroutine(self) -> bytes:
        return await succeed(b"from a coroutine")


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("plain", b"plain"),
        ("deferred", b"from a deferred"),
        ("coroutine", b"from a coroutine"),
        ("stream", b"streamed"),
    ],
)
def test_handler_results(kind: str, body: bytes) -> None:
    conn = connect(Results())
    conn.send(get(f"/?kind={kind}"))
    [response] = conn.responses()
    assert (response.status, response.body) == (200, body)
    conn.lose()


def test_handler_result_arriving_later() -> None:
    conn = connect(Results())
    conn.send(get("/?kind=later"))
    assert conn.take() == b""
    Results.later.pop().callback(b"late")
    [response] = conn.responses()
    assert response.body == b"late"
    conn.lose()


@pytest.mark.parametrize("kind", ["str", "int", "raise"])
def test_handler_failure_is_500_logged_once_and_the_connection_kept(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    conn = connect(Results())
    with caplog.at_level(logging.ERROR, logger="torsion.web"):
        conn.send(get(f"/?kind={kind}") + get("/?kind=plain"))
    failed, after = conn.responses()
    assert failed.status == 500
    assert b"boom" not in failed.body
    assert b"Traceback" not in failed.body
    assert after.body == b"plain"
    records = [r for r in caplog.records if r.name == "torsion.web"]
    assert len(records) == 1
    assert "GET /?kind=" + kind + " HTTP/1.1" in records[0].getMessage()
    conn.lose()


def test_handler_failure_after_the_response_started_aborts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    conn = connect(Results())
    with caplog.at_level(logging.ERROR, logger="torsion.web"):
        conn.send(get("/?kind=raise-later"))
    assert conn.transport.aborted
    assert len([r for r in caplog.records if r.name == "torsion.web"]) == 1
    conn.lose()


def test_handler_raising_a_protocol_error_gets_its_status_and_no_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    conn = connect(Results())
    with caplog.at_level(logging.ERROR, logger="torsion.web"):
        conn.send(get("/?kind=bad-request"))
    [response] = conn.responses()
    assert response.status == 400
    assert caplog.records == []
    conn.lose()


def test_error_page_escapes_its_detail() -> None:
    page = error_page(404, "<script>alert(1)</script>")
    assert b"<script>" not in page
    assert b"&lt;script&gt;" in page
    assert b"404 Not Found" in page


def test_error_page_resource_answers_every_method() -> None:
    gone = ErrorPage(410, "Gone for good.")
    conn = connect(gone)
    conn.send(get() + b"DELETE /x HTTP/1.1\r\nHost: a\r\n\r\n")
    assert [r.status for r in conn.responses()] == [410, 410]
    conn.lose()


def test_a_resource_without_handlers_allows_only_options() -> None:
    conn = connect(Resource())
    conn.send(get("/"))
    [response] = conn.responses()
    assert response.status == 405
    assert response.header(b"allow") == b"OPTIONS"
    conn.lose()


def test_connect_is_refused_with_405() -> None:
    conn = connect(tree())
    conn.send(b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n")
    [response] = conn.responses()
    assert response.status == 405
    assert response.header(b"allow") == b"GET, HEAD, OPTIONS"
    # CONNECT ends the HTTP/1.1 stream (what follows would be the tunnel).
    assert conn.transport.closed
    conn.lose()


def test_absolute_form_target_walks_its_path() -> None:
    assert body_of("http://example.test/docs/leaf") == (200, b"leaf:docs/leaf|")
