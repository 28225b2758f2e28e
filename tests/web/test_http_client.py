"""HTTPClient on a MemoryReactor: requests, reuse, retries, redirects, timeouts, decoding."""

from __future__ import annotations

import gzip
import ssl
import zlib
from collections.abc import AsyncIterator

import pytest

from torsion.defer import CancelledError, Deferred
from torsion.testing import (
    MemoryReactor,
    StringTransport,
    assert_no_result,
    failure_result_of,
    success_result_of,
)
from torsion.web._client import HTTPClient, Response
from torsion.web._client_errors import (
    BadResponseError,
    ClientClosedError,
    InvalidRequestError,
    RedirectRefusedError,
    ResponseNeverReceivedError,
    ResponseTooLargeError,
    TooManyRedirectsError,
)
from torsion.web._client_http11 import HTTP11ClientConnection
from torsion.web._cookies import CookieJar

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def make_client(**kwargs: object) -> tuple[MemoryReactor, HTTPClient]:
    reactor = MemoryReactor()
    reactor.hosts["example.test"] = ["192.0.2.10"]
    return reactor, HTTPClient(reactor, **kwargs)  # type: ignore[arg-type]


def connect(
    reactor: MemoryReactor, index: int = -1
) -> tuple[HTTP11ClientConnection, StringTransport]:
    protocol = reactor.tcp_clients[index].connect()
    assert isinstance(protocol, HTTP11ClientConnection)
    transport = protocol.transport
    assert isinstance(transport, StringTransport)
    return protocol, transport


def respond(connection: HTTP11ClientConnection, data: bytes = OK) -> None:
    connection.data_received(data)


def request_lines(transport: StringTransport) -> list[bytes]:
    return transport.value().split(b"\r\n")


def close(client: HTTPClient, reactor: MemoryReactor) -> None:
    done = client.close()
    # StringTransports never report the loss themselves: play it.
    for connection in list(client._connections):
        connection.connection_lost(None)
    success_result_of(done)
    assert reactor.clock.get_delayed_calls() == []


def test_a_get_request_on_the_wire() -> None:
    reactor, client = make_client()
    d = client.get("http://example.test/a/b?c=d", headers={"X-Test": "1"})
    [call] = reactor.tcp_clients
    assert (call.host, call.port) == ("example.test", 80)
    connection, transport = connect(reactor)
    assert transport.value() == (
        b"GET /a/b?c=d HTTP/1.1\r\nHost: example.test\r\nX-Test: 1\r\n"
        b"Accept-Encoding: gzip, deflate, br\r\n\r\n"  # br: brotli is in the web extra
    )
    assert_no_result(d)
    respond(
        connection,
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
    )
    response = success_result_of(d)
    assert (response.code, response.phrase, response.version) == (200, "OK", "HTTP/1.1")
    assert response.headers.get_str("content-type") == "text/plain"
    assert response.url == "http://example.test/a/b?c=d"
    assert success_result_of(response.read()) == b"hello"
    close(client, reactor)


def test_the_host_field_carries_a_port_that_is_not_the_default() -> None:
    reactor, client = make_client()
    client.get("http://[2001:db8::1]:8080/")
    [call] = reactor.tcp_clients
    assert (call.host, call.port) == ("2001:db8::1", 8080)
    _, transport = connect(reactor)
    assert b"Host: [2001:db8::1]:8080" in request_lines(transport)


def test_a_keep_alive_connection_is_reused() -> None:
    reactor, client = make_client()
    first = client.get("http://example.test/1")
    connection, transport = connect(reactor)
    respond(connection)
    success_result_of(success_result_of(first).read())
    transport.clear()
    second = client.get("http://example.test/2")
    assert len(reactor.tcp_clients) == 1
    assert transport.value().startswith(b"GET /2 HTTP/1.1\r\n")
    respond(connection)
    assert success_result_of(success_result_of(second).read()) == b"ok"
    assert client.pool.open_count() == 1
    close(client, reactor)


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ],
)
def test_a_connection_the_server_closes_is_not_reused(response: bytes) -> None:
    reactor, client = make_client()
    first = client.get("http://example.test/1")
    connection, transport = connect(reactor)
    respond(connection, response)
    success_result_of(success_result_of(first).read())
    assert transport.closed
    client.get("http://example.test/2")
    assert len(reactor.tcp_clients) == 2


def test_an_unread_body_is_never_reused_and_close_frees_the_connection() -> None:
    reactor, client = make_client(max_per_origin=1)
    first = client.get("http://example.test/1")
    connection, transport = connect(reactor)
    respond(connection, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    response = success_result_of(first)
    second = client.get("http://example.test/2")
    assert_no_result(second)  # the only connection is still busy
    response.close()
    assert transport.closed
    assert len(reactor.tcp_clients) == 2
    connection2, _ = connect(reactor)
    respond(connection2)
    assert success_result_of(second).code == 200


def test_a_stale_pooled_connection_is_retried_once_for_idempotent_requests() -> None:
    reactor, client = make_client()
    first = client.get("http://example.test/1")
    connection, _ = connect(reactor)
    respond(connection)
    success_result_of(success_result_of(first).read())
    second = client.get("http://example.test/2")
    # The server had closed it: the connection ends before any response byte.
    connection.connection_lost(ConnectionResetError("reset"))
    assert len(reactor.tcp_clients) == 2
    connection2, transport2 = connect(reactor)
    assert transport2.value().startswith(b"GET /2 ")
    respond(connection2)
    assert success_result_of(second).code == 200


def test_a_post_on_a_stale_connection_is_not_retried() -> None:
    reactor, client = make_client()
    first = client.get("http://example.test/1")
    connection, _ = connect(reactor)
    respond(connection)
    success_result_of(success_result_of(first).read())
    post = client.post("http://example.test/2", body=b"x")
    connection.connection_lost(None)
    failure_result_of(post, ResponseNeverReceivedError)
    assert len(reactor.tcp_clients) == 1
    assert client.pool.open_count() == 0


def test_a_new_connection_failing_is_not_retried() -> None:
    reactor, client = make_client()
    d = client.get("http://example.test/")
    connection, _ = connect(reactor)
    connection.connection_lost(None)
    failure_result_of(d, ResponseNeverReceivedError)
    assert len(reactor.tcp_clients) == 1


def test_a_refused_connection_fails_the_request_and_frees_its_place() -> None:
    reactor, client = make_client()
    d = client.get("http://example.test/")
    reactor.tcp_clients[0].fail()
    failure_result_of(d, ConnectionRefusedError)
    assert client.pool.open_count() == 0
    assert reactor.clock.get_delayed_calls() == []


@pytest.mark.parametrize(
    ("method", "url", "headers"),
    [
        ("GET", "http://example.test/a b", None),
        ("GET", "http://example.test/\r\nX-Injected: 1", None),
        ("GET", "http://example.test/\x00", None),
        ("GET", "http://example.test/\t", None),
        ("GET / HTTP/1.1\r\nX:", "http://example.test/", None),
        ("GET", "http://example.test/", {"X-A": "1\r\nX-Injected: 2"}),
        ("GET", "http://example.test/", {"X-A\r\n": "1"}),
        ("GET", "http://example.test/", {"X A": "1"}),
        ("GET", "ftp://example.test/", None),
        ("GET", "http:///nohost", None),
        ("GET", "http://user:secret@example.test/", None),
        ("GET", "http://example.test:99999/", None),
        ("GET", "/relative", None),
    ],
)
def test_what_may_not_be_sent_is_refused_before_connecting(
    method: str, url: str, headers: dict[str, str] | None
) -> None:
    reactor, client = make_client()
    failure_result_of(client.request(method, url, headers=headers), InvalidRequestError)
    assert reactor.tcp_clients == []


def test_a_url_with_unicode_is_encoded() -> None:
    reactor, client = make_client()
    reactor.hosts["xn--bcher-kva.example"] = ["192.0.2.11"]
    client.get("http://bücher.example/é?q=ü")
    [call] = reactor.tcp_clients
    assert call.host == "xn--bcher-kva.example"
    _, transport = connect(reactor)
    assert request_lines(transport)[0] == b"GET /%C3%A9?q=%C3%BC HTTP/1.1"


# -- redirects -----------------------------------------------------------------------------


def redirect(code: int, location: bytes) -> bytes:
    return b"HTTP/1.1 %d Moved\r\nLocation: %b\r\nContent-Length: 0\r\n\r\n" % (code, location)


def test_a_redirect_chain_across_origins_drops_credentials() -> None:
    reactor, client = make_client()
    reactor.hosts["other.test"] = ["192.0.2.20"]
    d = client.get(
        "http://example.test/start",
        headers={
            "Authorization": "Basic c2VjcmV0",
            "Cookie": "session=1",
            "Proxy-Authorization": "Basic eA==",
            "X-Kept": "yes",
        },
    )
    first, transport = connect(reactor)
    respond(first, redirect(302, b"/next"))
    # Same origin: the same connection, credentials kept.
    lines = request_lines(transport)
    assert b"GET /next HTTP/1.1" in lines
    assert b"Authorization: Basic c2VjcmV0" in lines
    transport.clear()
    respond(first, redirect(301, b"http://other.test/there"))
    second, transport2 = connect(reactor)
    lines = request_lines(transport2)
    assert lines[0] == b"GET /there HTTP/1.1"
    assert b"Host: other.test" in lines
    assert b"X-Kept: yes" in lines
    assert not any(
        line.lower().startswith((b"authorization", b"cookie", b"proxy-authorization"))
        for line in lines
    )
    respond(second)
    response = success_result_of(d)
    assert response.url == "http://other.test/there"
    assert response.history == ["http://example.test/start", "http://example.test/next"]


@pytest.mark.parametrize(
    ("code", "method", "expected"),
    [
        (301, "POST", "GET"),
        (302, "POST", "GET"),
        (303, "POST", "GET"),
        (303, "PUT", "GET"),
        (303, "HEAD", "HEAD"),
        (307, "POST", "POST"),
        (308, "PUT", "PUT"),
        (302, "PUT", "PUT"),
    ],
)
def test_redirect_method_rules(code: int, method: str, expected: str) -> None:
    reactor, client = make_client()
    client.request(
        method, "http://example.test/a", body=b"payload", headers={"Content-Type": "x/y"}
    )
    connection, transport = connect(reactor)
    transport.clear()
    respond(connection, redirect(code, b"/b"))
    lines = request_lines(transport)
    assert lines[0] == f"{expected} /b HTTP/1.1".encode()
    if expected == "GET":
        assert transport.value().endswith(b"\r\n\r\n")
        assert not any(line.lower().startswith(b"content-") for line in lines)
    elif expected != "HEAD":
        assert transport.value().endswith(b"\r\n\r\npayload")
        assert b"Content-Type: x/y" in lines


def test_https_to_http_is_refused_by_default() -> None:
    reactor, client = make_client()
    d = client.get("https://example.test/")
    [call] = reactor.tls_clients
    assert call.server_hostname == "example.test"
    protocol = call.connect()
    protocol.data_received(redirect(302, b"http://example.test/"))
    failure_result_of(d, RedirectRefusedError)
    assert reactor.tcp_clients == []


def test_https_to_http_when_allowed() -> None:
    reactor, client = make_client(allow_insecure_redirects=True)
    d = client.get("https://example.test/")
    reactor.tls_clients[0].connect().data_received(redirect(302, b"http://example.test/"))
    connection, _ = connect(reactor)
    respond(connection)
    assert success_result_of(d).url == "http://example.test/"


def test_a_redirect_to_another_scheme_is_refused() -> None:
    reactor, client = make_client()
    d = client.get("http://example.test/")
    connection, _ = connect(reactor)
    respond(connection, redirect(302, b"file:///etc/passwd"))
    failure_result_of(d, RedirectRefusedError)


def test_too_many_redirects() -> None:
    reactor, client = make_client(max_redirects=2)
    d = client.get("http://example.test/0")
    connection, _ = connect(reactor)
    for i in range(3):
        respond(connection, redirect(302, b"/%d" % (i + 1)))
    error = failure_result_of(d, TooManyRedirectsError)
    assert isinstance(error, TooManyRedirectsError)
    assert error.urls[-1] == "http://example.test/3"


def test_redirects_not_followed_when_asked() -> None:
    reactor, client = make_client()
    d = client.get("http://example.test/", follow_redirects=False)
    connection, _ = connect(reactor)
    respond(connection, redirect(302, b"/elsewhere"))
    assert success_result_of(d).code == 302


def test_a_307_with_a_streamed_body_is_returned_not_followed() -> None:
    reactor, client = make_client()

    async def body() -> AsyncIterator[bytes]:
        yield b"abc"

    d = client.post("http://example.test/", body=body())
    connection, _ = connect(reactor)
    respond(connection, redirect(307, b"/again"))
    assert success_result_of(d).code == 307


# -- timeouts and cancellation ------------------------------------------------------------


def test_the_request_timeout_closes_the_connection_and_leaves_nothing() -> None:
    reactor, client = make_client(timeout=5)
    d = client.get("http://example.test/")
    connection, transport = connect(reactor)
    reactor.clock.advance(5)
    failure_result_of(d, TimeoutError)
    assert transport.closed
    assert client.pool.open_count() == 0
    assert reactor.clock.get_delayed_calls() == []
    del connection


def test_a_timeout_while_connecting_cancels_the_attempt() -> None:
    reactor, client = make_client(timeout=5)
    d = client.get("http://example.test/")
    reactor.clock.advance(5)
    failure_result_of(d, TimeoutError)
    assert reactor.tcp_clients[0].connector.deferred.called
    assert client.pool.open_count() == 0
    assert reactor.clock.get_delayed_calls() == []


def test_cancelling_the_request_closes_the_connection() -> None:
    reactor, client = make_client()
    d = client.get("http://example.test/")
    _, transport = connect(reactor)
    d.cancel()
    failure_result_of(d, CancelledError)
    assert transport.closed
    assert client.pool.open_count() == 0
    assert reactor.clock.get_delayed_calls() == []


def test_a_body_that_stalls_times_out() -> None:
    reactor, client = make_client(timeout=5)
    d = client.get("http://example.test/")
    connection, transport = connect(reactor)
    respond(connection, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    response = success_result_of(d)
    reading = response.read()
    reactor.clock.advance(5)
    failure_result_of(reading, TimeoutError)
    assert transport.closed
    assert reactor.clock.get_delayed_calls() == []


# -- bodies ---------------------------------------------------------------------------------


def test_a_body_streamed_from_an_async_iterable_goes_chunked() -> None:
    reactor, client = make_client()

    async def body() -> AsyncIterator[bytes]:
        yield b"hello "
        yield b""
        yield b"world"

    d = client.put("http://example.test/", body=body())
    connection, transport = connect(reactor)
    assert transport.value().endswith(
        b"Transfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"
    )
    respond(connection)
    assert success_result_of(d).code == 200


def test_a_declared_length_streams_without_chunks_and_is_checked() -> None:
    reactor, client = make_client()

    async def body() -> AsyncIterator[bytes]:
        yield b"abc"

    d = client.put("http://example.test/", body=body(), headers={"Content-Length": "5"})
    _, transport = connect(reactor)
    assert b"Content-Length: 5" in request_lines(transport)
    failure_result_of(d, InvalidRequestError)
    assert transport.closed


def test_a_failing_body_fails_the_request() -> None:
    reactor, client = make_client()

    async def body() -> AsyncIterator[bytes]:
        yield b"abc"
        raise OSError("disk on fire")

    d = client.put("http://example.test/", body=body())
    _, transport = connect(reactor)
    failure_result_of(d, OSError)
    assert transport.closed


def test_a_file_body_is_sent_with_its_length(tmp_path: object) -> None:
    import pathlib

    path = pathlib.Path(str(tmp_path)) / "f"
    path.write_bytes(b"file content")
    reactor, client = make_client()
    with path.open("rb") as file:
        d = client.post("http://example.test/", body=file)
        connection, transport = connect(reactor)
    assert transport.value().endswith(b"Content-Length: 12\r\n\r\nfile content")
    respond(connection)
    assert success_result_of(d).code == 200


def test_an_empty_post_says_so() -> None:
    reactor, client = make_client()
    client.post("http://example.test/")
    _, transport = connect(reactor)
    assert b"Content-Length: 0" in request_lines(transport)


def test_read_is_bounded() -> None:
    reactor, client = make_client()
    d = client.get("http://example.test/")
    connection, transport = connect(reactor)
    respond(connection, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100)
    failure_result_of(success_result_of(d).read(max_size=99), ResponseTooLargeError)
    # That body had come whole: its connection is clean, and reused.
    d = client.get("http://example.test/")
    assert len(reactor.tcp_clients) == 1
    respond(
        connection, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n" + b"x" * 100
    )
    failure_result_of(success_result_of(d).read(max_size=99), ResponseTooLargeError)
    # This one had not ended: its connection is closed.
    assert transport.closed
    assert client.pool.open_count() == 0


def test_iter_bytes_streams_with_backpressure() -> None:
    reactor, client = make_client()
    d = client.get("http://example.test/")
    connection, transport = connect(reactor)
    respond(connection, b"HTTP/1.1 200 OK\r\nContent-Length: 600000\r\n\r\n")
    response = success_result_of(d)
    for _ in range(5):
        connection.data_received(b"x" * 100_000)
    assert not transport.is_reading()
    chunks: list[bytes] = []

    async def consume() -> None:
        async for chunk in response.iter_bytes():
            chunks.append(chunk)

    from torsion.defer import ensure_deferred

    done = ensure_deferred(consume())
    assert transport.is_reading()
    connection.data_received(b"y" * 100_000)
    success_result_of(done)
    assert sum(map(len, chunks)) == 600_000


def test_gzip_and_deflate_are_decoded() -> None:
    reactor, client = make_client()
    connection: HTTP11ClientConnection | None = None
    for coding, data in [
        (b"gzip", gzip.compress(b"hello " * 1000)),
        (b"deflate", zlib.compress(b"hello " * 1000)),
        (b"deflate", zlib.compress(b"hello " * 1000)[2:-4]),  # raw deflate
        (b"gzip", gzip.compress(b"hello " * 500) + gzip.compress(b"hello " * 500)),
    ]:
        d = client.get("http://example.test/")
        if connection is None:
            connection, _ = connect(reactor)
        assert len(reactor.tcp_clients) == 1
        head = b"HTTP/1.1 200 OK\r\nContent-Encoding: %b\r\nContent-Length: %d\r\n\r\n" % (
            coding,
            len(data),
        )
        respond(connection, head + data)
        assert success_result_of(success_result_of(d).read()) == b"hello " * 1000


def test_a_decompression_bomb_is_stopped() -> None:
    reactor, client = make_client(max_body_size=1_000_000)
    bomb = gzip.compress(b"\0" * 50_000_000)
    assert len(bomb) < 100_000
    d = client.get("http://example.test/")
    connection, transport = connect(reactor)
    respond(
        connection,
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb)
        + bomb,
    )
    failure_result_of(success_result_of(d).read(), ResponseTooLargeError)
    del transport


def test_a_broken_gzip_body_fails() -> None:
    reactor, client = make_client()
    d = client.get("http://example.test/")
    connection, _ = connect(reactor)
    data = gzip.compress(b"hello" * 100)[:-20]
    respond(
        connection,
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(data)
        + data,
    )
    failure_result_of(success_result_of(d).read(), BadResponseError)


def test_an_unknown_coding_is_left_alone() -> None:
    reactor, client = make_client()
    d = client.get("http://example.test/")
    connection, _ = connect(reactor)
    respond(
        connection, b"HTTP/1.1 200 OK\r\nContent-Encoding: zstd\r\nContent-Length: 3\r\n\r\nabc"
    )
    assert success_result_of(success_result_of(d).read()) == b"abc"


def test_no_decoding_when_turned_off() -> None:
    reactor, client = make_client(decode_content=False)
    d = client.get("http://example.test/")
    connection, transport = connect(reactor)
    assert b"Accept-Encoding" not in transport.value()
    data = gzip.compress(b"x")
    respond(
        connection,
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(data)
        + data,
    )
    assert success_result_of(success_result_of(d).read()) == data


# -- cookies, TLS, closing -----------------------------------------------------------------


def test_cookies_are_kept_and_sent_by_origin() -> None:
    reactor, client = make_client(cookies=CookieJar(lambda: 1_000_000.0))
    d = client.get("http://example.test/login")
    connection, transport = connect(reactor)
    respond(
        connection,
        b"HTTP/1.1 200 OK\r\nSet-Cookie: session=abc; Path=/\r\nContent-Length: 0\r\n\r\n",
    )
    success_result_of(d)
    transport.clear()
    client.get("http://example.test/next", headers={"Cookie": "mine=1"})
    assert b"Cookie: mine=1; session=abc" in request_lines(transport)


def test_https_uses_tls_with_the_host_name_and_http11_alpn() -> None:
    reactor, client = make_client()
    d = client.get("https://example.test:8443/")
    [call] = reactor.tls_clients
    assert (call.host, call.port, call.server_hostname) == ("example.test", 8443, "example.test")
    assert call.context is not None
    assert call.context.verify_mode == ssl.CERT_REQUIRED
    assert call.context.check_hostname
    protocol = call.connect()
    protocol.data_received(OK)
    assert success_result_of(d).code == 200


def test_closing_the_client_closes_connections_and_refuses_requests() -> None:
    reactor, client = make_client()
    d = client.get("http://example.test/")
    connection, transport = connect(reactor)
    respond(connection)
    success_result_of(success_result_of(d).read())
    closed = client.close()
    again = client.close()
    assert transport.closed
    assert_no_result(closed)
    connection.connection_lost(None)
    success_result_of(closed)
    success_result_of(again)
    failure_result_of(client.get("http://example.test/"), ClientClosedError)
    assert reactor.clock.get_delayed_calls() == []


def test_the_response_repr_and_alpn() -> None:
    reactor, client = make_client()
    d = client.get("http://example.test/")
    connection, _ = connect(reactor)
    respond(connection)
    response: Response = success_result_of(d)
    assert repr(response) == "<Response 200 OK from http://example.test/>"
    assert response.alpn is None


def test_a_requests_own_timeout_also_bounds_its_body_reads() -> None:
    reactor, client = make_client(timeout=100)
    d = client.get("http://example.test/", timeout=5)
    connection, transport = connect(reactor)
    respond(connection, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    reading = success_result_of(d).read()
    reactor.clock.advance(5)
    failure_result_of(reading, TimeoutError)
    assert transport.closed


class FakeSSLObject:
    """Just what tls_info reads, with h2 agreed."""

    def version(self) -> str:
        return "TLSv1.3"

    def cipher(self) -> tuple[str, str, int]:
        return ("TLS_AES_128_GCM_SHA256", "TLSv1.3", 128)

    def selected_alpn_protocol(self) -> str:
        return "h2"

    def getpeercert(self, binary_form: bool = False) -> None:
        return None


def test_a_server_choosing_h2_unoffered_is_refused() -> None:
    reactor, client = make_client(http2=False)
    d = client.get("https://example.test/")
    transport = StringTransport(extra={"ssl_object": FakeSSLObject()})
    reactor.tls_clients[0].connect(transport)
    failure_result_of(d, BadResponseError)
    assert transport.value() == b""
    assert transport.closed
    assert client.pool.open_count() == 0


def test_jar_cookies_follow_each_hop_of_a_redirect_by_origin() -> None:
    reactor, client = make_client(cookies=CookieJar(lambda: 1_000_000.0))
    reactor.hosts["other.test"] = ["192.0.2.20"]
    d = client.get("http://example.test/login")
    first, transport = connect(reactor)
    transport.clear()
    respond(
        first,
        b"HTTP/1.1 302 Found\r\nSet-Cookie: session=abc\r\nLocation: /home\r\n"
        b"Content-Length: 0\r\n\r\n",
    )
    # The next hop, same origin, carries the cookie just set.
    assert b"Cookie: session=abc" in request_lines(transport)
    respond(first, redirect(302, b"http://other.test/"))
    second, transport2 = connect(reactor)
    # Another origin: the jar has nothing for it.
    assert not any(line.startswith(b"Cookie") for line in request_lines(transport2))
    respond(second)
    assert success_result_of(d).url == "http://other.test/"


def test_an_early_answer_to_a_streamed_upload_ends_the_exchange() -> None:
    reactor, client = make_client()
    more: Deferred[None] = Deferred()

    async def body() -> AsyncIterator[bytes]:
        yield b"first"
        await more
        yield b"never sent"

    d = client.put("http://example.test/", body=body())
    connection, transport = connect(reactor)
    respond(
        connection,
        b"HTTP/1.1 413 Content Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    )
    response = success_result_of(d)
    assert response.code == 413
    assert transport.closed
    more.callback(None)  # the upload resumes, finds the connection gone, and stops
    assert b"never sent" not in transport.value()
    assert client.pool.open_count() == 0
