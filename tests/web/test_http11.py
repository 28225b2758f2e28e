"""Tests for the HTTP/1.1 server connection on fakes: framing, order, limits, time."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, ClassVar

import pytest
from _http_server_helpers import connect, get, read_responses
from hypothesis import given, settings
from hypothesis import strategies as st

from torsion.defer import Deferred
from torsion.testing import failure_result_of, success_result_of
from torsion.web import (
    Headers,
    HTTPProtocolError,
    Request,
    RequestParser,
    Resource,
    ResponseStateError,
    ServerLimits,
    handles,
)


class Recorder(Resource):
    """Answers every request with its method and path; counts renders."""

    is_leaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Request] = []

    @handles("GET", "POST", "PUT", "DELETE")
    def answer(self, request: Request) -> bytes:
        self.seen.append(request)
        return f"{request.method} {request.path.decode()}".encode()


class Pending(Resource):
    """Each request waits for the test to answer it (through ``answers``)."""

    is_leaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Request] = []
        self.answers: list[Deferred[bytes]] = []

    @handles("GET", "POST")
    def answer(self, request: Request) -> Deferred[bytes]:
        self.requests.append(request)
        d: Deferred[bytes] = Deferred()
        self.answers.append(d)
        return d


# -- the parser core ------------------------------------------------------------


class Owner:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def message_begun(self) -> None:
        self.events.append("begin")

    def head_received(self, *args: Any) -> None:
        self.events.append(("head", *args))

    def body_received(self, data: bytes) -> None:
        if self.events and isinstance(self.events[-1], bytes):
            self.events[-1] += data
        else:
            self.events.append(data)

    def message_complete(self) -> None:
        self.events.append("end")


CHUNKED_POST = (
    b"POST /up?x=1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
    b"Expect: 100-continue\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n"
)
EXPECTED_EVENTS = [
    "begin",
    (
        "head",
        b"POST",
        b"/up?x=1",
        "1.1",
        [(b"Host", b"a"), (b"Transfer-Encoding", b"chunked"), (b"Expect", b"100-continue")],
        True,
        True,
        True,
    ),
    b"abcde",
    "end",
]


def test_parser_reads_a_chunked_request_whole() -> None:
    owner = Owner()
    RequestParser(owner, ServerLimits()).receive_data(CHUNKED_POST)
    assert owner.events == EXPECTED_EVENTS


def test_parser_reads_a_request_byte_by_byte() -> None:
    owner = Owner()
    parser = RequestParser(owner, ServerLimits())
    for index in range(len(CHUNKED_POST)):
        parser.receive_data(CHUNKED_POST[index : index + 1])
    assert owner.events == EXPECTED_EVENTS


def test_parser_reports_http_1_0_without_keep_alive() -> None:
    owner = Owner()
    RequestParser(owner, ServerLimits()).receive_data(b"GET / HTTP/1.0\r\n\r\n")
    assert owner.events[1] == ("head", b"GET", b"/", "1.0", [], False, False, False)


@pytest.mark.parametrize("piece", [1, 3, 1000])
def test_parser_reads_each_requests_own_version(piece: int) -> None:
    # A chunked body (after which the next request's start is not known)
    # holding the next target and " HTTP/1.1": the HTTP/1.0 request that
    # follows is still read as 1.0, and so refused with Transfer-Encoding.
    data = (
        b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"10\r\n/b HTTP/1.1\r\nxyz\r\n0\r\n\r\n"
        b"GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        b"GET /c HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /c HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    )
    owner = Owner()
    parser = RequestParser(owner, ServerLimits())

    def feed() -> None:
        for index in range(0, len(data), piece):
            parser.receive_data(data[index : index + piece])

    with pytest.raises(HTTPProtocolError) as caught:
        feed()
    assert caught.value.status == 400
    heads = [(event[2], event[3]) for event in owner.events if event[0] == "head"]
    assert heads == [(b"/a", "1.1"), (b"/b", "1.0"), (b"/c", "1.1")]


def test_stopped_parser_drops_what_follows() -> None:
    owner = Owner()
    parser = RequestParser(owner, ServerLimits())
    parser.stop()
    parser.receive_data(get())
    assert owner.events == []


# -- smuggling and malformed requests: 400 and close ------------------------------

# Each of these is a trick from request smuggling advisories (Twisted's
# CVE-2022-24801, CVE-2020-10108, CVE-2020-10109 among them) or a request
# line or header that RFC 9112 makes invalid. The smuggled request in the
# body, where there is one, must never be served.
SMUGGLING = {
    "content-length-and-chunked": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    "chunked-and-content-length": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Length: 4\r\n\r\n0\r\n\r\n",
    "content-length-twice-same": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
    b"Content-Length: 3\r\n\r\nabc",
    "content-length-twice-different": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
    b"Content-Length: 30\r\n\r\nabc",
    "content-length-list": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc",
    "content-length-plus": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc",
    "content-length-minus": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -3\r\n\r\nabc",
    "content-length-hex": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x3\r\n\r\nabc",
    "content-length-underscore": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1_0\r\n\r\nabc",
    "transfer-encoding-gzip": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
    "transfer-encoding-gzip-chunked": b"POST / HTTP/1.1\r\nHost: a\r\n"
    b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "transfer-encoding-chunked-gzip": b"POST / HTTP/1.1\r\nHost: a\r\n"
    b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    "transfer-encoding-chunked-twice": b"POST / HTTP/1.1\r\nHost: a\r\n"
    b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
    "transfer-encoding-two-fields": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "transfer-encoding-xchunked": b"POST / HTTP/1.1\r\nHost: a\r\n"
    b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "transfer-encoding-space-before-colon": b"POST / HTTP/1.1\r\nHost: a\r\n"
    b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    "transfer-encoding-in-http-1.0": b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\n",
    "chunk-size-plus": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"+3\r\nabc\r\n0\r\n\r\n",
    "chunk-size-0x": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0x3\r\nabc\r\n0\r\n\r\n",
    "chunk-size-trailing-space": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
    b"\r\n3 \r\nabc\r\n0\r\n\r\n",
    "chunk-size-leading-space": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
    b"\r\n 3\r\nabc\r\n0\r\n\r\n",
    "chunk-size-underscore": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"1_0\r\n0123456789abcdef\r\n0\r\n\r\n",
    "chunk-size-overflow": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"fffffffffffffffff\r\nabc\r\n0\r\n\r\n",
    "chunk-extension-control": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
    b"\r\n3;a=\x00b\r\nabc\r\n0\r\n\r\n",
    "chunk-extension-bare-lf": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
    b"\r\n3;a\nb\r\nabc\r\n0\r\n\r\n",
    "chunk-bare-lf": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\nabc\n0\n\n",
    "chunk-data-without-crlf": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
    b"\r\n3\r\nabcX0\r\n\r\n",
    "bare-lf-line-ends": b"GET / HTTP/1.1\nHost: a\n\n",
    "bare-lf-in-head": b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n",
    "bare-cr-in-head": b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n",
    "nul-in-value": b"GET / HTTP/1.1\r\nHost: a\r\nX: b\x00c\r\n\r\n",
    "control-in-value": b"GET / HTTP/1.1\r\nHost: a\r\nX: b\x01c\r\n\r\n",
    "cr-in-value": b"GET / HTTP/1.1\r\nHost: a\r\nX: b\rc\r\n\r\n",
    "space-before-colon": b"GET / HTTP/1.1\r\nHost: a\r\nX : b\r\n\r\n",
    "name-not-a-token": b"GET / HTTP/1.1\r\nHost: a\r\nX(y): b\r\n\r\n",
    "empty-name": b"GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n",
    "nul-in-name": b"GET / HTTP/1.1\r\nHost: a\r\nX\x00: b\r\n\r\n",
    "leading-space-first-field": b"GET / HTTP/1.1\r\n Host: a\r\n\r\n",
    "invalid-method": b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n",
    "lowercase-method": b"get / HTTP/1.1\r\nHost: a\r\n\r\n",
    "tab-after-method": b"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n",
    "two-spaces-after-method": b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
    "space-after-version": b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
    "space-in-target": b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
    "control-in-target": b"GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n",
    "del-in-target": b"GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n",
    "lowercase-version": b"GET / http/1.1\r\nHost: a\r\n\r\n",
    "version-1.2": b"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
    "http-0.9": b"GET /\r\n\r\n",
    "no-host": b"GET / HTTP/1.1\r\n\r\n",
    "two-hosts": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "two-hosts-http-1.0": b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
    "http2-preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
}


@pytest.mark.parametrize("payload", SMUGGLING.values(), ids=SMUGGLING.keys())
@pytest.mark.parametrize("whole", [True, False], ids=["whole", "bytewise"])
def test_malformed_request_gets_400_and_close(payload: bytes, whole: bool) -> None:
    recorder = Recorder()
    # HTTP/1.1 alone: a site that speaks HTTP/2 takes the preface as one.
    conn = connect(recorder, http2=False)
    if whole:
        conn.send(payload)
    else:
        for index in range(len(payload)):
            if conn.transport.closed:
                break
            conn.send(payload[index : index + 1])
    responses = conn.responses()
    # A body whose framing breaks comes after a valid head: its request may
    # have been answered already, and then the connection just ends (a 400
    # then would read as the answer to the client's next request).
    assert len(responses) == 1
    response = responses[0]
    if recorder.seen:
        assert response.status == 200
    else:
        assert response.status == 400
        assert response.header(b"connection") == b"close"
        assert b"<h1>400 Bad Request</h1>" in response.body
    assert conn.transport.closed
    assert [r.path for r in recorder.seen] in ([], [b"/"])
    conn.lose()


def test_smuggled_request_after_a_good_one_is_not_served() -> None:
    recorder = Recorder()
    conn = connect(recorder)
    conn.send(get("/first") + SMUGGLING["content-length-and-chunked"])
    # The POST is answered (400 once its framing is read: it was not served).
    first, refused = conn.responses()
    assert (first.status, first.body) == (200, b"GET /first")
    assert refused.status == 400
    assert [r.path for r in recorder.seen] == [b"/first"]
    assert conn.transport.closed


def test_http_2_request_line_gets_505() -> None:
    conn = connect(Recorder())
    conn.send(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n")
    [response] = conn.responses()
    assert response.status == 505
    assert conn.transport.closed


def test_unsupported_expectation_gets_417() -> None:
    recorder = Recorder()
    conn = connect(recorder)
    conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx")
    [response] = conn.responses()
    assert response.status == 417
    assert recorder.seen == []


def test_transfer_encoding_chunked_in_any_case_is_accepted() -> None:
    recorder = Recorder()
    conn = connect(recorder)
    conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n")
    [response] = conn.responses()
    assert response.status == 200
    assert not conn.transport.closed


# -- limits --------------------------------------------------------------------


def test_long_target_gets_414() -> None:
    conn = connect(Recorder(), limits=ServerLimits(max_target=100))
    conn.send(get("/" + "a" * 100))
    [response] = conn.responses()
    assert response.status == 414
    assert conn.transport.closed


def test_long_target_arriving_in_pieces_gets_414_before_it_ends() -> None:
    conn = connect(Recorder(), limits=ServerLimits(max_target=100))
    conn.send(b"GET /")
    for _ in range(20):
        if conn.transport.closed:
            break
        conn.send(b"a" * 10)
    [response] = conn.responses()
    assert response.status == 414


def test_too_many_header_fields_get_431() -> None:
    conn = connect(Recorder(), limits=ServerLimits(max_headers=10))
    conn.send(get("/", *[f"X-{i}: {i}" for i in range(10)]))
    [response] = conn.responses()
    assert response.status == 431
    assert conn.transport.closed


def test_huge_header_field_gets_431_while_it_is_arriving() -> None:
    conn = connect(Recorder(), limits=ServerLimits(max_head_bytes=4096))
    conn.send(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ")
    sent = 0
    while not conn.transport.closed:
        conn.send(b"x" * 1000)
        sent += 1000
        assert sent < 10_000, "the head was never refused"
    [response] = conn.responses()
    assert response.status == 431


def test_declared_body_over_the_limit_gets_413_before_it_is_read() -> None:
    recorder = Recorder()
    conn = connect(recorder, limits=ServerLimits(max_body=10))
    conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n")
    [response] = conn.responses()
    assert response.status == 413
    assert conn.transport.closed
    assert recorder.seen == []


def test_chunked_body_over_the_limit_gets_413() -> None:
    class Reader(Resource):
        is_leaf = True
        error: ClassVar[list[BaseException]] = []

        @handles("POST")
        async def post(self, request: Request) -> bytes:
            try:
                return await request.body()
            except HTTPProtocolError as exc:
                self.error.append(exc)
                raise

    conn = connect(Reader(), limits=ServerLimits(max_body=10))
    conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    conn.send(b"6\r\nabcdef\r\n6\r\nghijkl\r\n")
    [response] = conn.responses()
    assert response.status == 413
    assert conn.transport.closed
    assert [e.status for e in Reader.error] == [413]  # type: ignore[attr-defined]
    conn.lose()


# -- keep-alive and close --------------------------------------------------------


def test_keep_alive_serves_requests_one_after_another() -> None:
    conn = connect(Recorder())
    for path in ("/a", "/b", "/c"):
        conn.send(get(path))
        [response] = conn.responses()
        assert response.body == b"GET " + path.encode()
        assert response.header(b"content-length") == str(len(response.body)).encode()
        assert response.header(b"connection") is None
    assert not conn.transport.closed
    conn.lose()


def test_connection_close_is_honoured() -> None:
    recorder = Recorder()
    conn = connect(recorder)
    conn.send(get("/a", "Connection: close") + get("/b"))
    [response] = conn.responses()
    assert response.header(b"connection") == b"close"
    assert conn.transport.closed
    assert [r.path for r in recorder.seen] == [b"/a"]


def test_http_1_0_closes_by_default() -> None:
    conn = connect(Recorder())
    conn.send(b"GET / HTTP/1.0\r\n\r\n")
    [response] = conn.responses()
    assert response.status == 200
    assert response.header(b"connection") == b"close"
    assert conn.transport.closed


def test_http_1_0_keep_alive_is_kept_and_said() -> None:
    conn = connect(Recorder())
    for _ in range(2):
        conn.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        [response] = conn.responses()
        assert response.header(b"connection") == b"keep-alive"
        assert response.header(b"content-length") == b"5"
    assert not conn.transport.closed
    conn.lose()


def test_date_and_server_fields_are_sent_and_the_date_cached_per_second() -> None:
    now = [1_700_000_000.25]
    conn = connect(Recorder())
    conn.site._dates._wall_clock = lambda: now[0]
    conn.send(get())
    [first] = conn.responses()
    now[0] += 0.5
    conn.send(get())
    [second] = conn.responses()
    now[0] += 1
    conn.send(get())
    [third] = conn.responses()
    assert first.header(b"date") == b"Tue, 14 Nov 2023 22:13:20 GMT"
    assert second.header(b"date") == first.header(b"date")
    assert third.header(b"date") == b"Tue, 14 Nov 2023 22:13:21 GMT"
    assert first.header(b"server") == b"torsion"
    conn.lose()


def test_server_field_can_be_left_out() -> None:
    conn = connect(Recorder(), server="")
    conn.send(get())
    [response] = conn.responses()
    assert response.header(b"server") is None
    conn.lose()


# -- pipelining ------------------------------------------------------------------


def test_pipelined_requests_are_answered_in_order() -> None:
    pending = Pending()
    conn = connect(pending)
    conn.send(get("/1") + get("/2") + get("/3"))
    # Only the first is rendered until it is answered.
    assert [r.path for r in pending.requests] == [b"/1"]
    assert conn.take() == b""
    pending.answers[0].callback(b"one")
    assert [r.path for r in pending.requests] == [b"/1", b"/2"]
    pending.answers[1].callback(b"two")
    pending.answers[2].callback(b"three")
    assert [r.body for r in conn.responses()] == [b"one", b"two", b"three"]
    conn.lose()


def test_streamed_response_is_never_interleaved_with_the_next() -> None:
    # CVE-2024-41671: a response written in parts while the next request
    # is already read must still go out whole before the next one.
    class Streamer(Resource):
        is_leaf = True
        first: ClassVar[list[Request]] = []

        @handles("GET")
        def get(self, request: Request) -> bytes | None:
            if request.path == b"/slow":
                request.write(b"part1,")
                self.first.append(request)
                return None
            return b"fast"

    conn = connect(Streamer())
    conn.send(get("/slow") + get("/fast"))
    [request] = Streamer.first
    request.write(b"part2")
    request.finish()
    slow, fast = conn.responses()
    assert slow.chunked
    assert slow.body == b"part1,part2"
    assert fast.body == b"fast"
    conn.lose()


def test_pipelined_flood_in_one_read_is_held_unparsed_beyond_the_bound() -> None:
    # A flood of pipelined requests must not be held without bound
    # (CVE-2023-46137): past max_pipelined parsed requests, the rest stays
    # as bytes, reading pauses, and parsing resumes as answers go out.
    pending = Pending()
    conn = connect(pending, limits=ServerLimits(max_pipelined=4))
    conn.send(b"".join(get(f"/{i}") for i in range(300)) + get("/last", "Connection: close"))
    assert not conn.transport.is_reading()
    assert len(conn.protocol._queue) == 4
    bodies = []
    answered = 0
    while pending.answers[answered:]:
        assert len(conn.protocol._queue) <= 4
        pending.answers[answered].callback(b"%d" % answered)
        answered += 1
        bodies += [r.body for r in conn.responses()]
    assert answered == 301
    assert bodies == [b"%d" % i for i in range(301)]
    assert [r.path for r in pending.requests[-2:]] == [b"/299", b"/last"]
    assert conn.transport.closed


def test_pipelined_flood_that_cannot_be_held_is_cut_off_at_the_bound() -> None:
    # Chunked bodies leave no exact place to hold from: the server answers
    # what it read up to the bound, then closes (RFC 9112 section 9.3.2:
    # the client retries the rest).
    pending = Pending()
    conn = connect(pending, limits=ServerLimits(max_pipelined=4))
    post = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    conn.send(post * 100)
    answered = 0
    while pending.answers[answered:]:
        pending.answers[answered].callback(b"ok")
        answered += 1
    assert answered == 5
    assert [r.status for r in conn.responses()] == [200] * 5
    assert conn.transport.closed


def test_reading_pauses_while_the_pipeline_is_full_and_resumes_after() -> None:
    pending = Pending()
    conn = connect(pending, limits=ServerLimits(max_pipelined=2))
    conn.send(get("/1"))
    conn.send(get("/2"))
    assert not conn.transport.is_reading()
    pending.answers[0].callback(b"1")
    assert conn.transport.is_reading()
    pending.answers[1].callback(b"2")
    assert len(conn.responses()) == 2
    assert not conn.transport.closed
    conn.lose()


def test_next_request_waits_while_the_write_buffer_is_full() -> None:
    recorder = Recorder()
    conn = connect(recorder)
    conn.transport.set_write_buffer_limits(high=10)
    conn.send(get("/1") + get("/2"))
    # The first response filled the buffer: the second waits for a drain.
    assert [r.path for r in recorder.seen] == [b"/1"]
    conn.transport.clear()
    assert [r.path for r in recorder.seen] == [b"/1", b"/2"]
    conn.lose()


# -- bodies both ways ----------------------------------------------------------


class Echo(Resource):
    is_leaf = True

    @handles("POST")
    async def post(self, request: Request) -> bytes:
        return await request.body()


def test_request_body_with_content_length_is_read() -> None:
    conn = connect(Echo())
    conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhel")
    assert conn.take() == b""
    conn.send(b"lo" + get())
    echoed, _ = conn.responses()
    assert echoed.body == b"hello"
    conn.lose()


def test_chunked_request_body_is_read() -> None:
    conn = connect(Echo())
    conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    conn.send(b"3\r\nabc\r\n")
    conn.send(b"4\r\ndefg\r\n0\r\n\r\n")
    [response] = conn.responses()
    assert response.body == b"abcdefg"
    conn.lose()


def test_unread_body_pauses_reading_until_the_handler_reads() -> None:
    class Slow(Resource):
        is_leaf = True
        requests: ClassVar[list[Request]] = []

        @handles("POST")
        def post(self, request: Request) -> None:
            self.requests.append(request)

    conn = connect(Slow(), limits=ServerLimits(body_buffer=10))
    conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    conn.send(b"8\r\n01234567\r\n")
    assert conn.transport.is_reading()
    conn.send(b"8\r\n89abcdef\r\n")
    assert not conn.transport.is_reading()
    [request] = Slow.requests
    chunks = [success_result_of(request.read()), success_result_of(request.read())]
    assert chunks == [b"01234567", b"89abcdef"]
    assert conn.transport.is_reading()
    pending = request.read()
    conn.send(b"0\r\n\r\n")
    assert success_result_of(pending) == b""
    request.finish()
    [response] = conn.responses()
    assert response.status == 200
    conn.lose()


def test_body_can_be_streamed_with_async_for() -> None:
    class Counter(Resource):
        is_leaf = True

        @handles("POST")
        async def post(self, request: Request) -> bytes:
            sizes = [len(chunk) async for chunk in request.stream()]
            return repr(sizes).encode()

    conn = connect(Counter())
    conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n")
    conn.send(b"3\r\ncde\r\n0\r\n\r\n")
    [response] = conn.responses()
    assert response.body == b"[2, 3]"
    conn.lose()


def test_streamed_response_is_chunked_on_http_1_1() -> None:
    class Parts(Resource):
        is_leaf = True

        @handles("GET")
        def get(self, request: Request) -> None:
            request.write(b"ab")
            request.write(b"")
            request.write(b"cde")
            request.finish()

    conn = connect(Parts())
    conn.send(get())
    data = conn.take()
    assert data.endswith(b"\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n")
    [response] = read_responses(data)
    assert response.chunked
    assert response.body == b"abcde"
    assert response.header(b"content-length") is None
    conn.lose()


def test_streamed_response_is_close_delimited_on_http_1_0() -> None:
    class Parts(Resource):
        is_leaf = True

        @handles("GET")
        def get(self, request: Request) -> None:
            request.write(b"ab")
            request.write(b"cd")
            request.finish()

    conn = connect(Parts())
    conn.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    data = conn.take()
    assert data.endswith(b"\r\n\r\nabcd")
    assert b"Transfer-Encoding" not in data
    assert b"Connection: close\r\n" in data
    assert conn.transport.closed


def test_streamed_response_with_its_own_content_length_is_not_chunked() -> None:
    class Sized(Resource):
        is_leaf = True

        @handles("GET")
        def get(self, request: Request) -> None:
            request.response_headers.set("Content-Length", "4")
            request.write(b"ab")
            request.write(b"cd")
            request.finish()

    conn = connect(Sized())
    conn.send(get())
    [response] = conn.responses()
    assert not response.chunked
    assert response.body == b"abcd"
    assert not conn.transport.closed
    conn.lose()


def test_writing_past_a_declared_length_is_cut_and_closes() -> None:
    class Liar(Resource):
        is_leaf = True

        @handles("GET")
        def get(self, request: Request) -> None:
            request.response_headers.set("Content-Length", "2")
            request.write(b"abcd")
            request.finish()

    conn = connect(Liar())
    conn.send(get() + get())
    data = conn.take()
    assert data.endswith(b"\r\n\r\nab")
    assert conn.transport.closed


def test_head_gets_the_get_headers_without_a_body() -> None:
    class Page(Resource):
        is_leaf = True

        @handles("GET")
        def get(self, request: Request) -> bytes:
            request.response_headers.set("Content-Type", "text/plain")
            return b"page body"

    conn = connect(Page())
    conn.send(b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n" + get("/x"))
    data = conn.take()
    head, _, rest = data.partition(b"\r\n\r\n")
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n")
    [response] = read_responses(rest)
    assert response.body == b"page body"
    assert head.split(b"\r\n") == rest.partition(b"\r\n\r\n")[0].split(b"\r\n")
    assert b"Content-Length: 9" in head
    conn.lose()


def test_head_of_a_streamed_response_sends_no_body() -> None:
    class Parts(Resource):
        is_leaf = True

        @handles("GET")
        def get(self, request: Request) -> None:
            request.write(b"body")
            request.finish()

    conn = connect(Parts())
    conn.send(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n")
    data = conn.take()
    assert data.endswith(b"Transfer-Encoding: chunked\r\n\r\n")
    assert not conn.transport.closed
    conn.lose()


# -- Expect: 100-continue --------------------------------------------------------


def test_100_continue_is_sent_only_when_the_body_is_read() -> None:
    class Later(Resource):
        is_leaf = True
        requests: ClassVar[list[Request]] = []

        @handles("POST")
        def post(self, request: Request) -> None:
            self.requests.append(request)

    conn = connect(Later())
    conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
    assert conn.take() == b""
    [request] = Later.requests
    body = request.body()
    assert conn.take() == b"HTTP/1.1 100 Continue\r\n\r\n"
    conn.send(b"abc")
    assert success_result_of(body) == b"abc"
    request.finish()
    [response] = conn.responses()
    assert response.status == 200
    assert not conn.transport.closed
    conn.lose()


def test_answer_without_reading_an_expected_body_closes() -> None:
    recorder = Recorder()
    conn = connect(recorder)
    conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
    data = conn.take()
    assert b"100 Continue" not in data
    [response] = read_responses(data)
    assert response.status == 200
    assert response.header(b"connection") == b"close"
    assert conn.transport.closed


def test_unread_body_is_skipped_and_the_connection_kept() -> None:
    recorder = Recorder()
    conn = connect(recorder)
    conn.send(b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n01234")
    conn.send(b"56789" + get("/b"))
    first, second = conn.responses()
    assert (first.body, second.body) == (b"POST /a", b"GET /b")
    assert not conn.transport.closed
    conn.lose()


# -- timeouts --------------------------------------------------------------------


def test_slow_head_gets_408_and_close() -> None:
    conn = connect(Recorder(), limits=ServerLimits(header_timeout=5.0))
    conn.send(b"GET / HTTP/1.1\r\nHost: a\r\n")
    conn.clock.advance(4.9)
    conn.send(b"X-Slow: 1\r\n")
    assert not conn.transport.closed
    conn.clock.advance(0.2)
    [response] = conn.responses()
    assert response.status == 408
    assert conn.transport.closed
    conn.lose()
    assert conn.clock.get_delayed_calls() == []


def test_connection_sending_nothing_gets_408() -> None:
    conn = connect(Recorder(), limits=ServerLimits(header_timeout=5.0))
    conn.clock.advance(5.0)
    [response] = conn.responses()
    assert response.status == 408
    assert conn.transport.closed
    conn.lose()


def test_idle_keep_alive_connection_is_closed_quietly() -> None:
    conn = connect(Recorder(), limits=ServerLimits(header_timeout=5.0, idle_timeout=30.0))
    conn.send(get())
    conn.take()
    conn.clock.advance(29.0)
    assert not conn.transport.closed
    conn.send(get())
    conn.take()
    conn.clock.advance(29.0)
    assert not conn.transport.closed
    conn.clock.advance(1.0)
    assert conn.transport.closed
    assert conn.take() == b""
    conn.lose()
    assert conn.clock.get_delayed_calls() == []


def test_no_timeout_while_a_response_is_rendering() -> None:
    pending = Pending()
    conn = connect(pending, limits=ServerLimits(header_timeout=1.0, idle_timeout=1.0))
    conn.send(get())
    conn.clock.advance(100.0)
    assert not conn.transport.closed
    pending.answers[0].callback(b"late")
    [response] = conn.responses()
    assert response.body == b"late"
    conn.clock.advance(1.0)
    assert conn.transport.closed
    conn.lose()


def test_one_timer_per_connection_however_many_requests() -> None:
    conn = connect(Recorder())
    for _ in range(50):
        conn.send(get())
    assert len(conn.clock.get_delayed_calls()) == 1
    conn.lose()
    assert conn.clock.get_delayed_calls() == []


# -- connection lost -------------------------------------------------------------


def test_lost_connection_fails_notify_finish_and_the_body_reader() -> None:
    class Waiting(Resource):
        is_leaf = True
        requests: ClassVar[list[Request]] = []

        @handles("POST")
        def post(self, request: Request) -> None:
            self.requests.append(request)

    conn = connect(Waiting())
    conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nabc")
    [request] = Waiting.requests
    finished = request.notify_finish()
    reading = request.body()
    conn.lose()
    assert isinstance(failure_result_of(finished), ConnectionResetError)
    assert isinstance(failure_result_of(reading), ConnectionResetError)
    # Writes after the loss are dropped, and finishing is harmless.
    request.write(b"late")
    request.finish()
    assert conn.clock.get_delayed_calls() == []


def test_handler_waiting_for_drain_when_the_client_leaves_logs_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stopped: list[BaseException] = []

    class Streaming(Resource):
        is_leaf = True

        @handles("GET")
        async def get(self, request: Request) -> None:
            try:
                while True:
                    request.write(b"x" * 100)
                    await request.drained()
            except ConnectionError as exc:
                stopped.append(exc)
                raise

    conn = connect(Streaming())
    conn.transport.set_write_buffer_limits(high=10)
    conn.send(get())
    assert conn.take().startswith(b"HTTP/1.1 200 OK")
    with caplog.at_level("DEBUG", logger="torsion.web"):
        conn.lose()
    assert len(stopped) == 1
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    assert any("stopped after the connection was lost" in r.getMessage() for r in caplog.records)


def test_eof_after_pipelined_requests_answers_them_then_closes() -> None:
    pending = Pending()
    conn = connect(pending)
    conn.send(get("/1") + get("/2"))
    assert conn.protocol.eof_received() is True
    pending.answers[0].callback(b"1")
    pending.answers[1].callback(b"2")
    assert [r.body for r in conn.responses()] == [b"1", b"2"]
    assert conn.transport.closed


def test_upgrade_request_is_served_plainly_and_the_connection_closed() -> None:
    recorder = Recorder()
    conn = connect(recorder)
    conn.send(get("/ws", "Upgrade: websocket", "Connection: upgrade") + get("/after"))
    [response] = conn.responses()
    assert response.body == b"GET /ws"
    assert conn.transport.closed
    assert [r.path for r in recorder.seen] == [b"/ws"]


def test_stalled_body_gets_408() -> None:
    class Slow(Resource):
        is_leaf = True
        requests: ClassVar[list[Request]] = []

        @handles("POST")
        def post(self, request: Request) -> None:
            self.requests.append(request)
            request.body().add_errback(lambda _: None)

    conn = connect(Slow(), limits=ServerLimits(body_timeout=10.0))
    conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
    conn.clock.advance(9.0)
    conn.send(b"def")
    conn.clock.advance(9.0)
    assert not conn.transport.closed
    conn.clock.advance(1.0)
    [response] = conn.responses()
    assert response.status == 408
    assert conn.transport.closed
    conn.lose()


def test_body_held_for_a_slow_handler_never_times_out() -> None:
    class Idle(Resource):
        is_leaf = True
        requests: ClassVar[list[Request]] = []

        @handles("POST")
        def post(self, request: Request) -> None:
            self.requests.append(request)

    conn = connect(Idle(), limits=ServerLimits(body_timeout=10.0, body_buffer=4))
    conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabcdef")
    assert not conn.transport.is_reading()
    conn.clock.advance(100.0)
    assert not conn.transport.closed
    [request] = Idle.requests
    assert success_result_of(request.read()) == b"abcdef"
    assert conn.transport.is_reading()
    conn.clock.advance(10.0)
    [response] = conn.responses()
    assert response.status == 408
    conn.lose()


def test_oversized_body_of_a_waiting_request_is_answered_in_its_turn() -> None:
    pending = Pending()
    conn = connect(pending, limits=ServerLimits(max_body=4))
    conn.send(get("/1") + b"POST /2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    conn.send(b"5\r\nabcde\r\n")
    assert conn.take() == b""
    pending.answers[0].callback(b"first")
    first, refused = conn.responses()
    assert first.body == b"first"
    assert refused.status == 413
    assert [r.path for r in pending.requests] == [b"/1"]
    assert conn.transport.closed
    conn.lose()


def test_oversized_body_being_skipped_just_closes() -> None:
    recorder = Recorder()
    conn = connect(recorder, limits=ServerLimits(max_body=4))
    conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    [answered] = conn.responses()
    assert answered.body == b"POST /"
    conn.send(b"5\r\nabcde\r\n")
    assert conn.take() == b""
    assert conn.transport.closed
    conn.lose()


# -- properties ------------------------------------------------------------------

VALID_STREAM = (
    get("/a?x=1", "Accept: */*")
    + CHUNKED_POST.replace(b"Expect: 100-continue\r\n", b"")
    + b"PUT /p HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbody"
    + b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
)


def _events(chunks: list[bytes]) -> list[Any]:
    owner = Owner()
    parser = RequestParser(owner, ServerLimits())
    for chunk in chunks:
        parser.receive_data(chunk)
    return owner.events


@given(st.lists(st.integers(min_value=0, max_value=len(VALID_STREAM)), max_size=12))
@settings(max_examples=200, deadline=None)
def test_any_split_of_a_stream_gives_the_same_requests(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(VALID_STREAM)]
    chunks = [VALID_STREAM[a:b] for a, b in itertools.pairwise(points)]
    assert _events(chunks) == _events([VALID_STREAM])


@given(st.binary(max_size=300), st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_never_raise_past_the_connection(first: bytes, second: bytes) -> None:
    conn = connect(Recorder())
    conn.send(first)
    conn.send(second)
    data = conn.take()
    if data and not (first + second).startswith(b"PRI * HTTP/2.0\r\n"):
        # (Bytes that begin with the HTTP/2 preface are answered in HTTP/2.)
        assert data.startswith(b"HTTP/1.1 ")
    conn.lose()
    assert conn.clock.get_delayed_calls() == []


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_parser_refuses_with_a_status_or_reads(data: bytes) -> None:
    owner = Owner()
    refused: HTTPProtocolError | None = None
    try:
        RequestParser(owner, ServerLimits()).receive_data(b"GET / HTTP/1.1\r\n" + data)
    except HTTPProtocolError as exc:
        refused = exc
    if refused is not None:
        assert refused.status in (400, 413, 414, 417, 431, 505)


def test_head_handler_may_state_the_length_without_a_body() -> None:
    class Sized(Resource):
        is_leaf = True

        @handles("GET")
        def get(self, request: Request) -> None:
            request.response_headers.set("Content-Length", "1234")
            if request.method != "HEAD":
                request.write(b"x" * 1234)
            request.finish()

    conn = connect(Sized())
    conn.send(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n")
    data = conn.take()
    assert data.endswith(b"Content-Length: 1234\r\n\r\n")
    assert b"chunked" not in data
    assert not conn.transport.closed
    conn.lose()


def test_head_held_back_by_a_full_pipeline_does_not_time_out() -> None:
    pending = Pending()
    conn = connect(pending, limits=ServerLimits(max_pipelined=2, header_timeout=5.0))
    conn.send(get("/1") + get("/2") + b"GET /3 HTTP/1.1\r\n")
    assert not conn.transport.is_reading()
    conn.clock.advance(60.0)
    assert not conn.transport.closed
    pending.answers[0].callback(b"1")
    assert conn.transport.is_reading()
    # Reading again: the head must now arrive in time.
    conn.clock.advance(5.0)
    pending.answers[1].callback(b"2")
    first, second, timed_out = conn.responses()
    assert (first.body, second.body, timed_out.status) == (b"1", b"2", 408)
    assert conn.transport.closed
    conn.lose()


def test_chunk_extension_flood_is_refused() -> None:
    # Megabytes of chunk extension for a byte of body would hold the
    # connection past every body limit (the kind of abuse Node.js fixed as
    # CVE-2024-22019).
    conn = connect(Echo())
    conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;ext=")
    sent = 0
    while not conn.transport.closed:
        conn.send(b"a" * 8192)
        sent += 8192
        assert sent < 1_000_000, "the extension was never refused"
    [response] = conn.responses()
    assert response.status == 400
    conn.lose()


def test_small_chunks_are_not_mistaken_for_abuse() -> None:
    conn = connect(Echo())
    conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    conn.send(b"1;a=b\r\nx\r\n" * 20000 + b"0\r\n\r\n")
    [response] = conn.responses()
    assert response.body == b"x" * 20000
    conn.lose()


def test_trailers_never_join_the_request_headers() -> None:
    class Headed(Resource):
        is_leaf = True

        @handles("POST")
        async def post(self, request: Request) -> bytes:
            await request.body()
            return repr(request.headers.get_all("x-auth")).encode()

    conn = connect(Headed())
    conn.send(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nab\r\n0\r\nX-Auth: admin\r\nHost: evil\r\n\r\n" + get()
    )
    answer, _ = conn.responses()
    assert answer.body == b"[]"
    conn.lose()


def test_too_many_trailers_get_431() -> None:
    conn = connect(Echo(), limits=ServerLimits(max_headers=5))
    trailers = b"".join(b"T-%d: x\r\n" % i for i in range(6))
    conn.send(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n" + trailers + b"\r\n"
    )
    [response] = conn.responses()
    assert response.status == 431
    conn.lose()


# -- switching protocols ---------------------------------------------------------


class Recording(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.BaseTransport | None = None
        self.received: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received.append(data)


class Switcher(Resource):
    is_leaf = True
    protocols: ClassVar[list[Recording]] = []
    later: ClassVar[list[Deferred[None]]] = []

    @handles("GET")
    def get(self, request: Request) -> Deferred[None] | None:
        protocol = Recording()
        self.protocols.append(protocol)
        answer = Headers([("Upgrade", "echo"), ("Connection", "Upgrade")])
        if request.path == b"/later":
            d: Deferred[None] = Deferred()
            d.add_callback(lambda _: request.switch_protocols(protocol, answer))
            self.later.append(d)
            return d
        request.switch_protocols(protocol, answer)
        return None


UPGRADE = b"GET /%b HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"


@pytest.fixture
def switcher() -> Switcher:
    Switcher.protocols = []
    Switcher.later = []
    return Switcher()


def test_switch_protocols_hands_over_the_connection(switcher: Switcher) -> None:
    conn = connect(switcher)
    conn.send(UPGRADE % b"now" + b"first bytes")
    assert conn.take() == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n"
    )
    [protocol] = switcher.protocols
    assert protocol.transport is conn.transport
    assert conn.protocol.switched_to is protocol
    assert protocol.received == [b"first bytes"]
    assert conn.transport.is_reading()
    assert conn.clock.get_delayed_calls() == []


def test_switch_protocols_later_holds_the_bytes_until_then(switcher: Switcher) -> None:
    conn = connect(switcher)
    conn.send(UPGRADE % b"later" + b"early")
    assert not conn.transport.is_reading()
    assert conn.take() == b""
    switcher.later[0].callback(None)
    assert conn.take().startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    [protocol] = switcher.protocols
    assert protocol.received == [b"early"]
    assert conn.transport.is_reading()
    assert conn.clock.get_delayed_calls() == []


def test_switch_protocols_needs_a_request_that_asked() -> None:
    class Eager(Resource):
        is_leaf = True
        errors: ClassVar[list[Exception]] = []

        @handles("GET")
        def get(self, request: Request) -> bytes:
            try:
                request.switch_protocols(Recording(), Headers())
            except ResponseStateError as exc:
                self.errors.append(exc)
            return b"plain"

    conn = connect(Eager())
    conn.send(get())
    [response] = conn.responses()
    assert response.body == b"plain"
    assert len(Eager.errors) == 1
    conn.lose()


@pytest.mark.parametrize(
    "bad",
    [
        {"max_target": 0},
        {"max_headers": 0},
        {"max_head_bytes": -1},
        {"body_buffer": 0},
        {"max_pipelined": 0},
        {"max_streams": 0},
        {"max_body": -1},
        {"header_timeout": 0.0},
        {"idle_timeout": -1.0},
        {"body_timeout": float("nan")},
        {"write_timeout": 0.0},
    ],
)
def test_limits_refuse_bounds_that_make_no_sense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        ServerLimits(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("piece", [1, 7, 64, 700, 100_000])
def test_held_pipeline_resumes_exactly_where_it_stopped(piece: int) -> None:
    # Identical targets, targets repeated in fields, bodies, and empty
    # lines between requests: the bytes kept while the pipeline is full
    # start exactly at the next request, every time.
    class Log(Resource):
        is_leaf = True
        seen: ClassVar[list[bytes]] = []
        answers: ClassVar[list[Deferred[bytes]]] = []

        @handles("GET", "POST")
        async def handle(self, request: Request) -> bytes:
            body = await request.body()
            self.seen.append(request.uri + b" " + body)
            d: Deferred[bytes] = Deferred()
            self.answers.append(d)
            return await d

    stream = b""
    expected = []
    for i in range(60):
        if i % 3 == 0:
            stream += b"GET / HTTP/1.1\r\nHost: a\r\nReferer: / HTTP/1.1\r\n\r\n"
            expected.append(b"/ ")
        elif i % 3 == 1:
            body = b"GET / HTTP/1.1\r\n\r\n%d" % i
            stream += b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%b" % (
                len(body),
                body,
            )
            expected.append(b"/p " + body)
        else:
            stream += b"\r\nGET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % i
            expected.append(b"/%d " % i)
    Log.seen = []
    Log.answers = []
    conn = connect(Log(), limits=ServerLimits(max_pipelined=3))
    sent = 0

    def feed() -> None:
        # The client sends as fast as the server reads, a piece at a time.
        nonlocal sent
        while sent < len(stream) and conn.transport.is_reading():
            conn.send(stream[sent : sent + piece])
            sent += piece

    feed()
    answered = 0
    held = 0
    while Log.answers[answered:]:
        assert len(conn.protocol._queue) <= 3
        held += conn.protocol._held is not None
        Log.answers[answered].callback(b"%d" % answered)
        answered += 1
        conn.take()
        feed()
    assert sent >= len(stream)
    if piece >= 64:
        # Reads of several requests found the pipeline full mid-read.
        assert held > 0
    assert Log.seen == expected
    assert not conn.transport.closed
    conn.lose()
