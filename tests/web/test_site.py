"""Tests for Site: the protocol factory, its access log, and what it never echoes."""

from __future__ import annotations

import logging

import pytest
from _http_server_helpers import connect, get, read_responses

from torsion.internet import IPv4Address
from torsion.testing import MemoryReactor, StringTransport
from torsion.web import (
    HTTPChannel,
    Request,
    Resource,
    ServerLimits,
    Site,
    combined_log_line,
    handles,
)


class Hello(Resource):
    is_leaf = True

    @handles("GET")
    def get(self, request: Request) -> bytes:
        return b"Hello, World!"


def test_site_is_the_protocol_factory_of_listen_tcp() -> None:
    reactor = MemoryReactor()
    site = Site(Hello(), reactor=reactor)
    reactor.listen_tcp(8080, site)
    [call] = reactor.tcp_servers
    transport = StringTransport()
    protocol = call.accept(transport, peer=IPv4Address("192.0.2.9", 4000, kind="tcp"))
    assert isinstance(protocol, HTTPChannel)
    protocol.data_received(get())
    [response] = read_responses(transport.value())
    assert response.body == b"Hello, World!"
    protocol.connection_lost(None)
    assert reactor.get_delayed_calls() == []


def test_site_keeps_its_settings() -> None:
    reactor = MemoryReactor()
    limits = ServerLimits(max_body=5)
    root = Hello()
    site = Site(root, reactor=reactor, limits=limits)
    assert (site.root, site.reactor, site.limits) == (root, reactor, limits)
    assert Site(root, reactor=reactor).limits == ServerLimits()


def test_access_log_writes_one_combined_line_per_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("test.access")
    conn = connect(Hello(), access_log=log)
    with caplog.at_level(logging.INFO, logger="test.access"):
        conn.send(get("/x?y=1", "Referer: http://ref.test/", "User-Agent: curl/8"))
        conn.send(get("/missing"))
    lines = [r.getMessage() for r in caplog.records if r.name == "test.access"]
    assert lines[0] == (
        '192.0.2.2 - - [14/Nov/2023:22:13:20 +0000] "GET /x?y=1 HTTP/1.1" 200 13 '
        '"http://ref.test/" "curl/8"'
    )
    assert lines[1].endswith('"GET /missing HTTP/1.1" 200 13 "-" "-"')
    assert len(lines) == 2
    conn.lose()


def test_access_log_line_escapes_what_the_client_sent() -> None:
    class Keep(Resource):
        is_leaf = True
        kept: list[Request] = []  # noqa: RUF012 - test only

        @handles("GET")
        def get(self, request: Request) -> bytes:
            self.kept.append(request)
            return b""

    conn = connect(Keep())
    conn.send(get("/q", 'User-Agent: a"b\tc\x80'))
    [request] = Keep.kept
    line = combined_log_line(request, 0.0)
    assert line == (
        '192.0.2.2 - - [01/Jan/1970:00:00:00 +0000] "GET /q HTTP/1.1" 200 - "-" "a\\"b\\tc\\x80"'
    )
    assert "\n" not in line
    conn.lose()


def test_no_access_log_by_default(caplog: pytest.LogCaptureFixture) -> None:
    conn = connect(Hello())
    with caplog.at_level(logging.DEBUG):
        conn.send(get())
    assert [r for r in caplog.records if r.levelno >= logging.INFO] == []
    conn.lose()


@pytest.mark.parametrize(
    "request_bytes",
    [
        # CVE-2022-39348: the Host of a request that finds nothing must not
        # reach the error page.
        b"GET /missing HTTP/1.1\r\nHost: <script>alert(1)</script>\r\n\r\n",
        b"GET /<script> HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /%3Cscript%3E HTTP/1.1\r\nHost: a\r\n\r\n",
    ],
)
def test_error_pages_never_echo_the_request(request_bytes: bytes) -> None:
    root = Resource()
    conn = connect(root)
    conn.send(request_bytes)
    [response] = conn.responses()
    assert response.status in (400, 404)
    assert b"<script>" not in response.body
    assert b"script" not in response.body
    conn.lose()


def test_protocol_error_pages_do_not_echo_the_request() -> None:
    conn = connect(Hello())
    conn.send(b"GET /<b>x</b> HTTP/1.1\r\nHost: a\r\nBad Header: <script>\r\n\r\n")
    [response] = conn.responses()
    assert response.status == 400
    assert b"script" not in response.body
    assert b"<b>" not in response.body


def test_access_log_may_be_a_function(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[tuple[str, int, int]] = []

    def hook(request: Request) -> None:
        seen.append((request.request_line, request.code, request._sent))
        if request.path == b"/boom":
            raise RuntimeError("hook bug")

    conn = connect(Hello(), access_log=hook)
    with caplog.at_level(logging.ERROR, logger="torsion.web"):
        conn.send(get("/a") + get("/boom") + get("/b"))
    assert seen == [
        ("GET /a HTTP/1.1", 200, 13),
        ("GET /boom HTTP/1.1", 200, 13),
        ("GET /b HTTP/1.1", 200, 13),
    ]
    assert len(conn.responses()) == 3
    assert [r.getMessage() for r in caplog.records] == [
        "The access log hook failed for GET /boom HTTP/1.1"
    ]
    conn.lose()
