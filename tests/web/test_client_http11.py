"""The HTTP/1.1 client core and connection, on bytes and a StringTransport."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torsion.defer import CancelledError
from torsion.testing import StringTransport, assert_no_result, failure_result_of, success_result_of
from torsion.web import Headers
from torsion.web._client_errors import (
    BadResponseError,
    InvalidRequestError,
    ResponseNeverReceivedError,
)
from torsion.web._client_http11 import (
    CHUNKED,
    BodyData,
    HTTP11ClientConnection,
    HTTP11ClientCore,
    ResponseComplete,
    ResponseEvent,
    ResponseStarted,
)

HOST = Headers([("Host", "example.test")])


def started(core: HTTP11ClientCore, method: bytes = b"GET", **kwargs: object) -> bytes:
    return core.start_request(method, b"/", HOST, body_length=None, **kwargs)  # type: ignore[arg-type]


def body_of(events: list[ResponseEvent]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, BodyData))


def feed_bytewise(core: HTTP11ClientCore, data: bytes) -> list[ResponseEvent]:
    events: list[ResponseEvent] = []
    for i in range(len(data)):
        events += core.receive_data(data[i : i + 1])
    return events


# -- requests ---------------------------------------------------------------------------


def test_the_request_head_has_the_headers_in_order_and_the_framing() -> None:
    core = HTTP11ClientCore()
    headers = Headers([("Host", "example.test"), ("Accept", "*/*")])
    head = core.start_request(b"POST", b"/a?b=c", headers, body_length=5)
    assert head == (
        b"POST /a?b=c HTTP/1.1\r\nHost: example.test\r\nAccept: */*\r\nContent-Length: 5\r\n\r\n"
    )
    assert core.body_chunk(b"hello") == b"hello"
    assert core.end_body() == b""


def test_a_chunked_request_body_is_framed() -> None:
    core = HTTP11ClientCore()
    head = core.start_request(b"PUT", b"/", HOST, body_length=CHUNKED)
    assert head.endswith(b"Transfer-Encoding: chunked\r\n\r\n")
    assert core.body_chunk(b"x" * 26) == b"1a\r\n" + b"x" * 26 + b"\r\n"
    assert core.body_chunk(b"") == b""  # an empty chunk would end the body
    assert core.end_body() == b"0\r\n\r\n"


@pytest.mark.parametrize(
    "method", [b"GET /evil HTTP/1.1\r\nX:", b"GE T", b"GET\r\n", b"GET\x00", b""]
)
def test_a_method_that_is_not_a_token_is_refused(method: bytes) -> None:
    core = HTTP11ClientCore()
    with pytest.raises(InvalidRequestError):
        core.start_request(method, b"/", HOST, body_length=None)
    assert not core.in_exchange


@pytest.mark.parametrize(
    "target", [b"/a b", b"/\r\nX-Injected: 1", b"/\n", b"/\x00", b"/\x7f", b"/\t", b""]
)
def test_a_target_with_whitespace_or_controls_is_refused(target: bytes) -> None:
    with pytest.raises(InvalidRequestError):
        HTTP11ClientCore().start_request(b"GET", target, HOST, body_length=None)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (b"X-A", b"1\r\nX-Injected: 2"),
        (b"X-A", b"1\n"),
        (b"X-A", b"\x00"),
        (b"X A", b"1"),
        (b"X-A\r\n", b"1"),
        (b"", b"1"),
    ],
)
def test_headers_are_checked_again_even_from_raw(name: bytes, value: bytes) -> None:
    headers = Headers.from_raw([(b"Host", b"example.test"), (name, value)])
    with pytest.raises(InvalidRequestError):
        HTTP11ClientCore().start_request(b"GET", b"/", headers, body_length=None)


@pytest.mark.parametrize("name", [b"Content-Length", b"transfer-encoding"])
def test_framing_headers_are_the_cores_own(name: bytes) -> None:
    headers = Headers.from_raw([(b"Host", b"example.test"), (name, b"3")])
    with pytest.raises(InvalidRequestError, match="itself"):
        HTTP11ClientCore().start_request(b"POST", b"/", headers, body_length=3)


def test_one_exchange_at_a_time() -> None:
    core = HTTP11ClientCore()
    started(core)
    with pytest.raises(RuntimeError):
        started(core)


# -- responses --------------------------------------------------------------------------

RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\n"
    b"Set-Cookie: b=2\r\nContent-Length: 11\r\n\r\nhello world"
)


@pytest.mark.parametrize("bytewise", [False, True])
def test_a_sized_response(bytewise: bool) -> None:
    core = HTTP11ClientCore()
    started(core)
    events = feed_bytewise(core, RESPONSE) if bytewise else core.receive_data(RESPONSE)
    head = events[0]
    assert isinstance(head, ResponseStarted)
    assert (head.code, head.phrase, head.version) == (200, "OK", "HTTP/1.1")
    assert head.headers.get_all("set-cookie") == [b"a=1", b"b=2"]
    assert body_of(events) == b"hello world"
    assert events[-1] == ResponseComplete(reusable=True)
    assert not core.in_exchange


CHUNKED_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n"
)


@pytest.mark.parametrize("bytewise", [False, True])
def test_a_chunked_response(bytewise: bool) -> None:
    core = HTTP11ClientCore()
    started(core)
    data = CHUNKED_RESPONSE
    events = feed_bytewise(core, data) if bytewise else core.receive_data(data)
    assert body_of(events) == b"hello world"
    assert events[-1] == ResponseComplete(reusable=True)


@given(st.lists(st.integers(min_value=1, max_value=len(CHUNKED_RESPONSE)), max_size=8))
def test_any_split_gives_the_same_body(cuts: list[int]) -> None:
    core = HTTP11ClientCore()
    started(core)
    points = sorted({0, *cuts, len(CHUNKED_RESPONSE)})
    events: list[ResponseEvent] = []
    for start, end in itertools.pairwise(points):
        events += core.receive_data(CHUNKED_RESPONSE[start:end])
    assert body_of(events) == b"hello world"
    assert events[-1] == ResponseComplete(reusable=True)


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Header: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTX/1.1 200 OK\r\n\r\n",
        b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
    ],
)
def test_malformed_responses_are_refused(data: bytes) -> None:
    core = HTTP11ClientCore()
    started(core)
    with pytest.raises(BadResponseError):
        core.receive_data(data)


def test_limits_on_the_head() -> None:
    core = HTTP11ClientCore(max_status_line=20)
    started(core)
    with pytest.raises(BadResponseError, match="status line"):
        core.receive_data(b"HTTP/1.1 200 " + b"O" * 30)
    core = HTTP11ClientCore(max_header_count=3)
    started(core)
    with pytest.raises(BadResponseError, match="header fields"):
        core.receive_data(b"HTTP/1.1 200 OK\r\n" + b"X: 1\r\n" * 4 + b"\r\n")
    core = HTTP11ClientCore(max_head_size=1000)
    started(core)
    core.receive_data(b"HTTP/1.1 200 OK\r\nX: ")
    for _ in range(9):  # one endless header value, in pieces
        core.receive_data(b"v" * 100)
    with pytest.raises(BadResponseError, match="head"):
        core.receive_data(b"v" * 100)


def test_interim_responses_are_skipped_up_to_a_bound() -> None:
    core = HTTP11ClientCore(max_interim_responses=2)
    started(core)
    events = core.receive_data(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
        b"HTTP/1.1 204 No Content\r\n\r\n"
    )
    assert [type(e) for e in events] == [ResponseStarted, ResponseComplete]
    assert isinstance(events[0], ResponseStarted)
    assert events[0].code == 204
    started(core)
    with pytest.raises(BadResponseError, match="1xx"):
        core.receive_data(b"HTTP/1.1 100 Continue\r\n\r\n" * 3)


@pytest.mark.parametrize("length", [b"0", b"3"])
def test_a_response_to_head_has_no_body(length: bytes) -> None:
    core = HTTP11ClientCore()
    started(core, b"HEAD", head_only=True)
    events = core.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: " + length + b"\r\n\r\n")
    assert [type(e) for e in events] == [ResponseStarted, ResponseComplete]
    assert events[-1] == ResponseComplete(reusable=True)
    # The next exchange parses from scratch.
    started(core)
    assert body_of(core.receive_data(RESPONSE)) == b"hello world"


def test_bytes_after_a_response_make_the_connection_unusable() -> None:
    core = HTTP11ClientCore()
    started(core, b"HEAD", head_only=True)
    events = core.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
    assert events[-1] == ResponseComplete(reusable=False)
    core = HTTP11ClientCore()
    started(core)
    events = core.receive_data(RESPONSE + b"HTTP/1.1 200 OK\r\n")
    assert body_of(events) == b"hello world"
    assert events[-1] == ResponseComplete(reusable=False)
    with pytest.raises(BadResponseError, match="no response was expected"):
        core.receive_data(b"more")


def test_a_body_delimited_by_the_close() -> None:
    core = HTTP11ClientCore()
    started(core)
    events = core.receive_data(b"HTTP/1.0 200 OK\r\n\r\nsome")
    events += core.receive_data(b" bytes")
    assert body_of(events) == b"some bytes"
    assert core.receive_eof() == [ResponseComplete(reusable=False)]


@pytest.mark.parametrize(
    ("headers", "reusable"),
    [
        (b"Connection: close\r\n", False),
        (b"Connection: keep-alive\r\n", True),
        (b"", True),
    ],
)
def test_connection_close_is_honoured(headers: bytes, reusable: bool) -> None:
    core = HTTP11ClientCore()
    started(core)
    data = b"HTTP/1.1 200 OK\r\n" + headers + b"Content-Length: 0\r\n\r\n"
    assert core.receive_data(data)[-1] == ResponseComplete(reusable=reusable)


def test_an_http10_response_is_not_kept_unless_it_says_so() -> None:
    core = HTTP11ClientCore()
    started(core)
    data = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"
    assert core.receive_data(data)[-1] == ResponseComplete(reusable=False)
    started(core)
    data = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"
    assert core.receive_data(data)[-1] == ResponseComplete(reusable=True)


def test_our_connection_close_is_honoured() -> None:
    core = HTTP11ClientCore()
    headers = Headers([("Host", "example.test"), ("Connection", "close")])
    core.start_request(b"GET", b"/", headers, body_length=None)
    events = core.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert events[-1] == ResponseComplete(reusable=False)


def test_the_end_of_the_stream_before_and_during_a_response() -> None:
    core = HTTP11ClientCore()
    started(core)
    with pytest.raises(ResponseNeverReceivedError):
        core.receive_eof()
    started(core)
    core.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    with pytest.raises(BadResponseError, match="middle"):
        core.receive_eof()
    started(core)
    core.receive_data(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    with pytest.raises(BadResponseError, match="middle"):
        core.receive_eof()


# -- the connection -----------------------------------------------------------------------


class Owner:
    def __init__(self) -> None:
        self.done: list[bool] = []
        self.lost = 0

    def connection(self) -> tuple[HTTP11ClientConnection, StringTransport]:
        connection = HTTP11ClientConnection(
            on_done=lambda _, reusable: self.done.append(reusable),
            on_lost=lambda _: self._lost(),
            body_high_water=16,
        )
        transport = StringTransport(connection)
        connection.connection_made(transport)
        return connection, transport

    def _lost(self) -> None:
        self.lost += 1


def test_a_request_with_a_whole_body_goes_out_in_one_write() -> None:
    owner = Owner()
    connection, transport = owner.connection()
    writes: list[bytes] = []
    transport.write = writes.append  # type: ignore[method-assign,assignment]
    connection.start(b"POST", b"/", HOST, body_length=3, body=b"abc")
    assert writes == [b"POST / HTTP/1.1\r\nHost: example.test\r\nContent-Length: 3\r\n\r\nabc"]


def test_an_exchange_streams_its_body_and_releases_the_connection() -> None:
    owner = Owner()
    connection, transport = owner.connection()
    exchange = connection.start(b"GET", b"/", HOST)
    assert transport.value() == b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n"
    assert_no_result(exchange.head)
    connection.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n" + b"a" * 20)
    head = success_result_of(exchange.head)
    assert head.code == 200
    # Over the high-water mark (16): reading paused until the body is read.
    assert not transport.is_reading()
    assert success_result_of(exchange.body.receive()) == b"a" * 20
    assert transport.is_reading()
    pending = exchange.body.receive()
    assert_no_result(pending)
    connection.data_received(b"b" * 20)
    assert success_result_of(pending) == b"b" * 20
    assert owner.done == [True]
    assert success_result_of(exchange.body.receive()) == b""
    assert connection.is_open
    assert not connection.busy


def test_a_body_streamed_in_chunks() -> None:
    owner = Owner()
    connection, transport = owner.connection()
    exchange = connection.start(b"PUT", b"/", HOST, body_length=CHUNKED)
    connection.write_body(b"abc")
    connection.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    # The response ended first: the connection waits for the request's end.
    assert owner.done == []
    connection.end_body()
    assert owner.done == [True]
    assert transport.value().endswith(b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert success_result_of(exchange.head).code == 200


def test_closing_a_body_before_its_end_closes_the_connection() -> None:
    owner = Owner()
    connection, transport = owner.connection()
    exchange = connection.start(b"GET", b"/", HOST)
    connection.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\nabc")
    exchange.body.close()
    assert transport.closed
    assert owner.done == [False]
    failure_result_of(exchange.body.receive(), BadResponseError)


def test_cancelling_the_head_closes_the_connection() -> None:
    owner = Owner()
    connection, transport = owner.connection()
    exchange = connection.start(b"GET", b"/", HOST)
    exchange.head.cancel()
    failure_result_of(exchange.head, CancelledError)
    assert transport.closed
    assert owner.done == [False]


def test_a_bad_response_fails_the_exchange_and_aborts() -> None:
    owner = Owner()
    connection, transport = owner.connection()
    exchange = connection.start(b"GET", b"/", HOST)
    connection.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n")
    failure_result_of(exchange.head, BadResponseError)
    assert transport.aborted
    assert owner.done == [False]


def test_a_lost_connection_fails_the_waiting_exchange() -> None:
    owner = Owner()
    connection, _ = owner.connection()
    exchange = connection.start(b"GET", b"/", HOST)
    connection.connection_lost(None)
    failure_result_of(exchange.head, ResponseNeverReceivedError)
    assert owner.done == [False]
    assert owner.lost == 0
    connection, _ = owner.connection()
    exchange = connection.start(b"GET", b"/", HOST)
    connection.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc")
    body = exchange.body.receive()
    assert success_result_of(body) == b"abc"
    pending = exchange.body.receive()
    connection.connection_lost(ConnectionResetError("reset"))
    failure_result_of(pending, BadResponseError)


def test_eof_ends_a_body_delimited_by_the_close() -> None:
    owner = Owner()
    connection, transport = owner.connection()
    exchange = connection.start(b"GET", b"/", HOST)
    connection.data_received(b"HTTP/1.1 200 OK\r\n\r\nall of it")
    assert connection.eof_received() is None
    assert success_result_of(exchange.body.receive()) == b"all of it"
    assert success_result_of(exchange.body.receive()) == b""
    assert owner.done == [False]
    assert transport.closed


def test_an_idle_connection_closed_by_the_server_is_reported() -> None:
    owner = Owner()
    connection, _ = owner.connection()
    exchange = connection.start(b"GET", b"/", HOST)
    connection.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert success_result_of(exchange.head).code == 200
    connection.connection_lost(None)
    assert owner.lost == 1
    assert not connection.is_open


def test_bytes_on_an_idle_connection_close_it() -> None:
    owner = Owner()
    connection, transport = owner.connection()
    connection.data_received(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
    assert transport.closed
    assert not connection.is_open


def test_a_close_without_eof_ends_a_body_delimited_by_the_close() -> None:
    owner = Owner()
    connection, _ = owner.connection()
    exchange = connection.start(b"GET", b"/", HOST)
    connection.data_received(b"HTTP/1.0 200 OK\r\n\r\nall of it")
    connection.connection_lost(None)
    assert success_result_of(exchange.body.receive()) == b"all of it"
    assert success_result_of(exchange.body.receive()) == b""
    assert owner.done == [False]


def test_a_reset_breaks_a_body_delimited_by_the_close() -> None:
    owner = Owner()
    connection, _ = owner.connection()
    exchange = connection.start(b"GET", b"/", HOST)
    connection.data_received(b"HTTP/1.0 200 OK\r\n\r\npart")
    connection.connection_lost(ConnectionResetError("reset"))
    assert success_result_of(exchange.body.receive()) == b"part"
    failure_result_of(exchange.body.receive(), ConnectionResetError)
    assert owner.done == [False]


@given(st.binary(max_size=300))
def test_any_bytes_give_events_or_a_bad_response_error(data: bytes) -> None:
    core = HTTP11ClientCore()
    started(core)
    try:
        events = core.receive_data(b"HTTP/1.1 200 OK\r\n" + data)
        events += core.receive_eof()
    except BadResponseError:
        return
    assert all(isinstance(e, ResponseStarted | BodyData | ResponseComplete) for e in events)
