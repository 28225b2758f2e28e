"""Tests for Request: what the client sent, and the response written through it."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import pytest
from _http_server_helpers import connect, get, read_responses

from torsion.internet import IPv4Address
from torsion.testing import assert_no_result, failure_result_of, success_result_of
from torsion.web import (
    HTTPProtocolError,
    InvalidHeaderError,
    Request,
    Resource,
    ResponseStateError,
    handles,
)


class Capture(Resource):
    """Keeps each request; answers with what ``action`` does to it."""

    is_leaf = True
    requests: ClassVar[list[Request]] = []
    action: ClassVar[Callable[[Request], bytes | None]] = staticmethod(lambda request: b"ok")

    @handles("GET", "POST")
    def handle(self, request: Request) -> bytes | None:
        Capture.requests.append(request)
        return Capture.action(request)


@pytest.fixture(autouse=True)
def _reset() -> None:
    Capture.requests = []
    Capture.action = staticmethod(lambda request: b"ok")


def serve(
    data: bytes, action: Callable[[Request], bytes | None] | None = None
) -> tuple[Request, list[bytes]]:
    if action is not None:
        Capture.action = staticmethod(action)
    conn = connect(Capture())
    conn.send(data)
    [request] = Capture.requests
    raw = conn.take()
    conn.lose()
    return request, [raw]


def test_target_parts_are_kept_raw_and_args_decoded() -> None:
    request, _ = serve(get("/a%20b/c?x=1&y=%C3%A9&x=2&empty="))
    assert request.method == "GET"
    assert request.uri == b"/a%20b/c?x=1&y=%C3%A9&x=2&empty="
    assert request.path == b"/a%20b/c"
    assert request.query == b"x=1&y=%C3%A9&x=2&empty="
    assert request.args == {"x": ["1", "2"], "y": ["\xe9"], "empty": [""]}
    assert request.version == "HTTP/1.1"
    assert request.prepath == []
    assert request.postpath == ["a b", "c"]
    assert request.request_line == "GET /a%20b/c?x=1&y=%C3%A9&x=2&empty= HTTP/1.1"
    assert "GET /a%20b" in repr(request)


def test_absolute_form_target_keeps_its_path() -> None:
    request, _ = serve(b"GET http://example.test/p/q?z=9 HTTP/1.1\r\nHost: example.test\r\n\r\n")
    assert request.path == b"/p/q"
    assert request.args == {"z": ["9"]}


def test_too_many_query_fields_are_a_bad_request() -> None:
    request, _ = serve(get("/?" + "&".join(f"a{i}=1" for i in range(1001))))
    with pytest.raises(HTTPProtocolError) as caught:
        request.args  # noqa: B018 - the property raises
    assert caught.value.status == 400


def test_headers_addresses_and_security() -> None:
    request, _ = serve(get("/", "X-Thing: one", "x-thing: two"))
    assert request.headers.get_all("X-THING") == [b"one", b"two"]
    assert request.headers.get_str("host") == "example.test"
    assert request.client == IPv4Address("192.0.2.2", 54321, kind="tcp")
    assert request.host == IPv4Address("192.0.2.1", 12345, kind="tcp")
    assert request.is_secure is False


def test_status_code_phrase_and_headers() -> None:
    def action(request: Request) -> bytes:
        request.set_response_code(201, "Made It")
        request.response_headers.add("X-A", "1")
        request.response_headers.add("X-A", "2")
        return b"made"

    _, [raw] = serve(get(), action)
    assert raw.startswith(b"HTTP/1.1 201 Made It\r\n")
    assert b"\r\nX-A: 1\r\nX-A: 2\r\n" in raw


def test_status_codes_out_of_range_and_bad_phrases_are_refused() -> None:
    def action(request: Request) -> bytes:
        with pytest.raises(ValueError, match="between"):
            request.set_response_code(101)
        with pytest.raises(ValueError, match="between"):
            request.set_response_code(600)
        with pytest.raises(InvalidHeaderError):
            request.set_response_code(200, "OK\r\nSet-Cookie: x=1")
        return b"ok"

    _, [raw] = serve(get(), action)
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Set-Cookie" not in raw


def test_header_injection_through_response_headers_is_refused() -> None:
    def action(request: Request) -> bytes:
        with pytest.raises(InvalidHeaderError):
            request.response_headers.set("X-Echo", "a\r\nSet-Cookie: evil=1")
        return b"ok"

    _, [raw] = serve(get(), action)
    assert b"evil" not in raw


def test_framing_headers_set_by_the_handler_are_replaced() -> None:
    def action(request: Request) -> bytes:
        request.response_headers.set("Content-Length", "999")
        request.response_headers.set("Transfer-Encoding", "chunked")
        request.response_headers.set("Connection", "keep-alive")
        return b"four"

    _, [raw] = serve(get(), action)
    head = raw.partition(b"\r\n\r\n")[0]
    assert b"Content-Length: 4" in head
    assert b"999" not in head
    assert b"Transfer-Encoding" not in head
    assert b"Connection" not in head


def test_status_cannot_change_once_sent() -> None:
    def action(request: Request) -> None:
        request.write(b"x")
        assert request.started
        with pytest.raises(ResponseStateError):
            request.set_response_code(404)
        request.finish()
        assert request.finished
        with pytest.raises(ResponseStateError):
            request.write(b"y")
        with pytest.raises(ResponseStateError):
            request.finish()

    serve(get(), action)


def test_finish_without_a_body_sends_an_empty_one() -> None:
    def action(request: Request) -> None:
        request.finish()

    _, [raw] = serve(get(), action)
    assert raw.endswith(b"Content-Length: 0\r\n\r\n")


def test_204_and_304_carry_no_body() -> None:
    def action(request: Request) -> bytes:
        request.set_response_code(204)
        return b"ignored"

    _, [raw] = serve(get(), action)
    assert raw.endswith(b"\r\n\r\n")
    assert b"ignored" not in raw
    assert b"Content-Length" not in raw


@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("/next", b"/next"),
        ("https://example.test/a b", b"https://example.test/a%20b"),
        ("/caf\xe9", b"/caf%C3%A9"),
        ("/x\r\nSet-Cookie: evil=1", b"/x%0D%0ASet-Cookie:%20evil=1"),
    ],
)
def test_redirect_encodes_the_location(url: str, location: bytes) -> None:
    def action(request: Request) -> None:
        request.redirect(url)

    _, [raw] = serve(get(), action)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 302 Found\r\n")
    assert b"\r\nLocation: " + location + b"\r\n" in head
    assert b"\r\nSet-Cookie" not in head
    assert location in body


def test_redirect_escapes_the_url_in_its_page() -> None:
    # CVE-2024-41810: the redirect page must not echo the URL as markup.
    def action(request: Request) -> None:
        request.redirect('/"><script>alert(1)</script>', code=303)

    _, [raw] = serve(get(), action)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 303 See Other\r\n")
    assert b"<script>" not in body
    assert b'"><' not in body


def test_redirect_refuses_other_codes() -> None:
    def action(request: Request) -> bytes:
        with pytest.raises(ValueError, match="redirect"):
            request.redirect("/x", code=200)
        return b"ok"

    serve(get(), action)


def test_notify_finish_fires_when_finished() -> None:
    conn = connect(Capture())
    Capture.action = staticmethod(lambda request: None)
    conn.send(get())
    [request] = Capture.requests
    finished = request.notify_finish()
    assert_no_result(finished)
    request.finish()
    assert success_result_of(finished) is None
    assert success_result_of(request.notify_finish()) is None
    conn.lose()


def test_drained_waits_for_the_write_buffer() -> None:
    conn = connect(Capture())
    Capture.action = staticmethod(lambda request: None)
    conn.transport.set_write_buffer_limits(high=100)
    conn.send(get())
    [request] = Capture.requests
    request.write(b"x" * 200)
    drained = request.drained()
    assert_no_result(drained)
    conn.transport.clear()
    assert success_result_of(drained) is None
    request.finish()
    conn.lose()


def test_body_read_twice_at_once_is_refused() -> None:
    conn = connect(Capture())
    Capture.action = staticmethod(lambda request: None)
    conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab")
    [request] = Capture.requests
    whole = request.body()
    with pytest.raises(ResponseStateError):
        request.read()
    with pytest.raises(ResponseStateError):
        request.body()
    conn.send(b"cd")
    assert success_result_of(whole) == b"abcd"
    request.finish()
    conn.lose()


def test_body_of_a_request_without_one_is_empty() -> None:
    conn = connect(Capture())
    Capture.action = staticmethod(lambda request: None)
    conn.send(get())
    [request] = Capture.requests
    assert success_result_of(request.body()) == b""
    assert success_result_of(request.read()) == b""
    request.finish()
    conn.lose()


def test_abort_closes_the_connection_mid_response() -> None:
    conn = connect(Capture())
    Capture.action = staticmethod(lambda request: None)
    conn.send(get())
    [request] = Capture.requests
    request.response_headers.set(b"Content-Length", b"10")
    request.write(b"abc")
    finished = request.notify_finish()
    request.abort()
    assert conn.transport.aborted
    assert conn.take().endswith(b"abc")
    conn.lose()
    assert isinstance(failure_result_of(finished), ConnectionResetError)
    # Once the connection is gone, aborting again is harmless.
    request.abort()


# -- send_file ------------------------------------------------------------------


def _sending(
    data: bytes, *, length: int | None, method: str = "GET", **kwargs: int
) -> tuple[list[int], bytes]:
    import io

    sent: list[int] = []

    class Sender(Resource):
        is_leaf = True

        @handles("GET", "HEAD")
        async def get(self, request: Request) -> None:
            if length is not None:
                request.response_headers.set(b"Content-Length", b"%d" % length)
            sent.append(await request.send_file(io.BytesIO(data), **kwargs))
            request.finish()

    conn = connect(Sender())
    conn.transport.set_write_buffer_limits(high=1000)
    conn.send(b"%s / HTTP/1.1\r\nHost: a\r\n\r\n" % method.encode())
    received = bytearray()
    for _ in range(1000):
        chunk = conn.take()
        if not chunk:
            break
        # Never more than the high-water mark and one chunk waits.
        assert len(chunk) <= 1000 + 300 + 400
        received += chunk
    conn.lose()
    return sent, bytes(received)


def test_send_file_writes_the_head_then_the_range_as_the_buffer_drains() -> None:
    data = bytes(range(256)) * 40
    sent, raw = _sending(data, length=5000, offset=100, count=5000, chunk_size=300)
    [response] = read_responses(raw)
    assert sent == [5000]
    assert response.status == 200
    assert response.header(b"content-length") == b"5000"
    assert response.body == data[100:5100]


def test_send_file_without_a_length_is_chunked() -> None:
    data = b"abcdefghij" * 100
    sent, raw = _sending(data, length=None, offset=0, count=2000, chunk_size=300)
    [response] = read_responses(raw)
    assert sent == [1000]  # the file ended first
    assert response.chunked
    assert response.body == data


def test_send_file_for_head_sends_no_body() -> None:
    sent, raw = _sending(b"x" * 500, length=500, method="HEAD", offset=0, count=500)
    assert sent == [0]
    assert raw.endswith(b"Content-Length: 500\r\n\r\n")


def test_send_file_past_the_declared_length_is_cut() -> None:
    sent, raw = _sending(b"y" * 500, length=100, offset=0, count=500)
    assert sent == [100]
    head, _, body = raw.partition(b"\r\n\r\n")
    assert body == b"y" * 100
    assert b"Connection: close" not in head  # the head was sent before the cut
    # The response is complete, and the connection is not kept for another.
    [response] = read_responses(raw)
    assert response.complete


def test_send_file_refuses_bad_arguments_and_a_finished_response() -> None:
    import io

    conn = connect(Capture())
    Capture.action = staticmethod(lambda request: None)
    conn.send(get())
    [request] = Capture.requests
    with pytest.raises(ValueError, match="0 or more"):
        request.send_file(io.BytesIO(b""), offset=-1, count=1).send(None)
    request.finish()
    with pytest.raises(ResponseStateError):
        request.send_file(io.BytesIO(b""), offset=0, count=1).send(None)
    conn.lose()
