"""DoH on fakes: the resource on memory connections, the resolver on a MemoryReactor."""

from __future__ import annotations

import base64
import logging
import struct
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import torsion.names
from torsion.defer import Deferred
from torsion.names import Answer, Authority, DNSServer, NotMineError, QueryLimits, Question
from torsion.names._doh import (
    DNS_MESSAGE,
    DoHError,
    DoHResolver,
    DoHResource,
    decode_dns_parameter,
    doh_site,
    encode_dns_parameter,
    response_freshness,
)
from torsion.testing import (
    Clock,
    MemoryReactor,
    StringTransport,
    assert_no_result,
    failure_result_of,
    success_result_of,
)
from torsion.web import HTTPChannel, HTTPClient, HTTPClientError, Resource, Site

ZONE = """\
$ORIGIN example.test.
$TTL 3600
@       IN SOA ns1 hostmaster 5 7200 900 1209600 300
        IN NS  ns1
ns1     IN A   192.0.2.53
host    60 IN A   192.0.2.80
        IN A   192.0.2.81
www     IN CNAME host
axfr    IN TXT "x"
"""
URL = "https://dns.example.test/dns-query"


def question(name: str, rdtype: str = "A") -> Question:
    return Question(dns.name.from_text(name), dns.rdatatype.RdataType.make(rdtype))


def query(name: str, rdtype: str = "A", ident: int = 0) -> bytes:
    message = dns.message.make_query(name, rdtype)
    message.id = ident
    wire: bytes = message.to_wire()
    return wire


# -- the wire helpers -----------------------------------------------------------------


@given(st.binary(max_size=600))
def test_the_dns_parameter_round_trips_without_padding(wire: bytes) -> None:
    encoded = encode_dns_parameter(wire)
    assert "=" not in encoded
    assert set(encoded) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert decode_dns_parameter(encoded) == wire
    # Padding is left out by clients, and taken when a client sends it.
    assert decode_dns_parameter(base64.urlsafe_b64encode(wire).decode()) == wire


@pytest.mark.parametrize("value", ["a", "ab+c", "ab/c", "ab c", "ab.c", "abcde", "ab%3D"])
def test_a_dns_parameter_that_is_not_base64url_is_refused(value: str) -> None:
    assert decode_dns_parameter(value) is None


def test_the_rfc_example_decodes() -> None:
    # RFC 8484 section 4.1.1: the GET for www.example.com A, ID 0.
    wire = decode_dns_parameter("AAABAAABAAAAAAAAA3d3dwdleGFtcGxlA2NvbQAAAQAB")
    assert wire is not None
    message = dns.message.from_wire(wire)
    assert message.id == 0
    assert message.flags & dns.flags.RD
    assert str(message.question[0]) == "www.example.com. IN A"


def response(rcode: dns.rcode.Rcode = dns.rcode.NOERROR, **sections: list[str]) -> bytes:
    message = dns.message.make_response(dns.message.make_query("host.example.test.", "A"))
    message.set_rcode(rcode)
    for section, lines in sections.items():
        for line in lines:
            name, ttl, rdclass, rdtype, rdata = line.split(maxsplit=4)
            rrset = dns.rrset.from_text(name, int(ttl), rdclass, rdtype, rdata)
            getattr(message, section).append(rrset)
    wire: bytes = message.to_wire()
    return wire


SOA = "example.test. 900 IN SOA ns1.example.test. h.example.test. 5 7200 900 1209600 300"


def test_freshness_is_the_smallest_ttl_of_the_answer() -> None:
    wire = response(
        answer=[
            "www.example.test. 3600 IN CNAME host.example.test.",
            "host.example.test. 60 IN A 192.0.2.80",
        ],
        authority=[SOA.replace(" 900 IN", " 10 IN", 1)],
    )
    # The authority's SOA does not count once there is an answer.
    assert response_freshness(wire) == 60


def test_a_negative_answer_is_fresh_for_the_soa_ttl_or_minimum() -> None:
    # RFC 2308 section 5: the smaller of the SOA's TTL and MINIMUM.
    assert response_freshness(response(dns.rcode.NXDOMAIN, authority=[SOA])) == 300
    assert response_freshness(response(authority=[SOA.replace(" 900 IN", " 30 IN", 1)])) == 30


@pytest.mark.parametrize(
    "wire",
    [
        response(),  # NODATA without an SOA: nothing to go by
        response(dns.rcode.SERVFAIL, answer=["host.example.test. 60 IN A 192.0.2.80"]),
        response(dns.rcode.REFUSED),
        b"",
        b"\x00" * 11,
    ],
)
def test_no_freshness_without_a_ttl_to_go_by(wire: bytes) -> None:
    assert response_freshness(wire) == 0


def test_a_truncated_response_is_not_fresh() -> None:
    wire = bytearray(response(answer=["host.example.test. 60 IN A 192.0.2.80"]))
    wire[2] |= 0x02  # TC
    assert response_freshness(bytes(wire)) == 0


@given(st.binary(max_size=300))
def test_freshness_never_raises(wire: bytes) -> None:
    assert 0 <= response_freshness(wire) <= 0x7FFFFFFF


# -- the resource on a memory connection ----------------------------------------------


@dataclass
class HTTPResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def parse_responses(data: bytes) -> list[HTTPResponse]:
    responses = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        responses.append(HTTPResponse(int(lines[0].split()[1]), headers, rest[:length]))
        data = rest[length:]
    return responses


class Server:
    """A site publishing a DoHResource at /dns-query, on one memory connection."""

    def __init__(self, resource: DoHResource, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()
        root = Resource()
        root.put_child("dns-query", resource)
        self.resource = resource
        self.site = Site(root, reactor=self.clock)
        self.channel: HTTPChannel = self.site(None)  # type: ignore[arg-type]
        self.transport = StringTransport(self.channel)
        self.channel.connection_made(self.transport)

    def send(self, data: bytes) -> list[HTTPResponse]:
        self.channel.data_received(data)
        written = self.transport.value()
        self.transport.clear()
        return parse_responses(written)


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: dns.example.test\r\n\r\n".encode()


def post(body: bytes, content_type: str = DNS_MESSAGE, extra: str = "") -> bytes:
    head = (
        f"POST /dns-query HTTP/1.1\r\nHost: dns.example.test\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


def zone_server(limits: QueryLimits | None = None) -> Server:
    return Server(DoHResource(DNSServer([Authority.from_text(ZONE)], limits=limits)))


def test_a_get_is_answered_with_a_dns_message_fresh_for_its_ttl() -> None:
    server = zone_server()
    [answer] = server.send(
        get(f"/dns-query?dns={encode_dns_parameter(query('www.example.test.'))}")
    )
    assert answer.status == 200
    assert answer.headers["content-type"] == DNS_MESSAGE
    assert answer.headers["cache-control"] == "max-age=60"
    message = dns.message.from_wire(answer.body)
    # RFC 8484 section 4.1: ID 0 asked, ID 0 answered.
    assert message.id == 0
    assert message.flags & dns.flags.AA
    # (dnspython renders the records of an RRset in any order.)
    assert sorted(line for rrset in message.answer for line in str(rrset).splitlines()) == [
        "host.example.test. 60 IN A 192.0.2.80",
        "host.example.test. 60 IN A 192.0.2.81",
        "www.example.test. 3600 IN CNAME host.example.test.",
    ]


def test_a_post_is_answered_and_keeps_the_id_it_was_given() -> None:
    server = zone_server()
    [answer] = server.send(post(query("nothing.example.test.", ident=4242)))
    assert answer.status == 200
    message = dns.message.from_wire(answer.body)
    assert message.id == 4242
    assert message.rcode() == dns.rcode.NXDOMAIN
    # Negative caching: the SOA's MINIMUM (RFC 2308 section 5).
    assert answer.headers["cache-control"] == "max-age=300"


def test_the_fast_path_answers_the_second_time_the_same() -> None:
    dns_server = DNSServer([Authority.from_text(ZONE)])
    server = Server(DoHResource(dns_server))
    path = f"/dns-query?dns={encode_dns_parameter(query('host.example.test.'))}"
    [first] = server.send(get(path))
    assert dns_server.cached_response(query("host.example.test."), tcp=True) is not None
    [second] = server.send(get(path))
    assert first.body == second.body
    assert first.headers["cache-control"] == second.headers["cache-control"] == "max-age=60"


def test_a_resolver_is_served_through_a_dns_server_of_its_own() -> None:
    resource = DoHResource(Authority.from_text(ZONE))
    assert isinstance(resource.server, DNSServer)
    [answer] = Server(resource).send(post(query("ns1.example.test.")))
    assert dns.message.from_wire(answer.body).answer[0][0].to_text() == "192.0.2.53"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (get("/dns-query"), 400),
        (get("/dns-query?dns=not*base64"), 400),
        (get("/dns-query?dns=AAAB&dns=AAAB"), 400),
        (get(f"/dns-query?dns={encode_dns_parameter(b'short')}"), 400),
        (get("/dns-query/more?dns=AAAB"), 404),
        (post(query("host.example.test."), "application/json"), 415),
        (post(query("host.example.test."), "text/plain; charset=utf-8"), 415),
        (post(b"x" * 11), 400),
        (post(b"x" * 65536), 413),
    ],
)
def test_what_is_not_a_dns_query_gets_an_http_error(request_bytes: bytes, status: int) -> None:
    server = zone_server()
    [answer] = server.send(request_bytes)
    assert answer.status == status
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["content-type"].startswith("text/plain")


def test_a_dns_response_sent_as_a_query_is_refused_with_400() -> None:
    wire = bytearray(query("host.example.test."))
    wire[2] |= 0x80  # QR
    [answer] = zone_server().send(post(bytes(wire)))
    assert answer.status == 400


def test_a_body_longer_than_a_message_is_refused_even_without_a_length() -> None:
    server = zone_server()
    chunk = b"x" * 40000
    head = (
        b"POST /dns-query HTTP/1.1\r\nHost: d\r\nContent-Type: application/dns-message\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    body = b"%x\r\n%b\r\n" % (len(chunk), chunk) * 2 + b"0\r\n\r\n"
    [answer] = server.send(head + body)
    assert answer.status == 413


def test_a_malformed_message_is_answered_formerr_in_a_200() -> None:
    # RFC 8484 section 4.2.1: a DNS error is a DNS answer, carried by a 2xx.
    wire = query("host.example.test.")[:12] + b"\x07garbage"
    [answer] = zone_server().send(post(wire))
    assert answer.status == 200
    assert dns.rcode.from_flags(struct.unpack("!H", answer.body[2:4])[0], 0) == dns.rcode.FORMERR


def test_zone_transfers_are_refused() -> None:
    dns_server = DNSServer([Authority.from_text(ZONE)], allow_axfr=["0.0.0.0/0"])
    server = Server(DoHResource(dns_server))
    for rdtype in ("AXFR", "IXFR"):
        [answer] = server.send(post(query("example.test.", rdtype)))
        assert answer.status == 200
        message = dns.message.from_wire(answer.body)
        assert message.rcode() == dns.rcode.REFUSED
        assert message.answer == []
        assert answer.headers["cache-control"] == "max-age=0"


def test_the_query_rate_per_client_gets_429() -> None:
    clock = Clock()
    limits = QueryLimits(udp_rate=1.0, udp_burst=2, exempt=())
    resource = DoHResource(DNSServer([Authority.from_text(ZONE)], limits=limits), clock=clock)
    server = Server(resource, clock)
    wire = query("host.example.test.")
    assert [r.status for r in server.send(post(wire) * 3)] == [200, 200, 429]
    assert resource.refused == 1
    clock.advance(1.0)
    assert [r.status for r in server.send(post(wire))] == [200]


def test_the_rate_does_not_hold_for_exempt_networks() -> None:
    limits = QueryLimits(udp_rate=1.0, udp_burst=1, exempt=("192.0.2.0/24",))
    server = Server(DoHResource(DNSServer([Authority.from_text(ZONE)], limits=limits)))
    # The memory connection's client is 192.0.2.2.
    statuses = [r.status for r in server.send(post(query("host.example.test.")) * 5)]
    assert statuses == [200] * 5


class Held:
    """Answers questions about slow.test. when the test says so."""

    def __init__(self) -> None:
        self.pending: list[Deferred[Answer]] = []

    def query(self, question: Question) -> Deferred[Answer]:
        if not question.name.is_subdomain(dns.name.from_text("slow.test.")):
            raise NotMineError(str(question))
        d: Deferred[Answer] = Deferred()
        self.pending.append(d)
        return d


def test_queries_in_flight_per_client_are_bounded() -> None:
    held = Held()
    limits = QueryLimits(max_in_flight=1, exempt=())
    resource = DoHResource(DNSServer([held], limits=limits))
    first, second = Server(resource), Server(resource)
    assert first.send(post(query("a.slow.test."))) == []
    assert resource.in_flight == 1
    # The same client, on another connection: one query of its is in flight.
    [refused] = second.send(post(query("b.slow.test.")))
    assert refused.status == 429
    assert refused.headers["retry-after"] == "1"
    held.pending[0].callback(Answer(dns.rcode.NXDOMAIN))
    [answered] = parse_responses(first.transport.value())
    assert answered.status == 200
    assert resource.in_flight == 0
    assert second.send(post(query("c.slow.test."))) == []
    assert resource.in_flight == 1
    held.pending[1].callback(Answer(dns.rcode.NXDOMAIN))
    assert resource.in_flight == 0


def test_queries_in_flight_in_all_are_bounded_with_503() -> None:
    held = Held()
    limits = QueryLimits(max_udp_in_flight=1)
    resource = DoHResource(DNSServer([held], limits=limits))
    first, second = Server(resource), Server(resource)
    assert first.send(post(query("a.slow.test."))) == []
    [refused] = second.send(post(query("b.slow.test.")))
    assert refused.status == 503
    held.pending[0].callback(Answer(dns.rcode.NXDOMAIN))
    assert resource.in_flight == 0


def test_a_client_gone_before_its_answer_stops_the_work() -> None:
    held = Held()
    resource = DoHResource(DNSServer([held]))
    server = Server(resource)
    server.send(get(f"/dns-query?dns={encode_dns_parameter(query('a.slow.test.'))}"))
    assert resource.in_flight == 1
    [pending] = held.pending
    server.channel.connection_lost(None)
    # The resolver's Deferred was cancelled, and nothing stays counted.
    assert pending.called
    assert resource.in_flight == 0
    assert server.transport.value() == b""


# -- the resolver on a MemoryReactor --------------------------------------------------


class Exchange:
    """A DoHResolver's HTTP client on a MemoryReactor, its connection fed by hand or by a site."""

    def __init__(self, **options: object) -> None:
        self.reactor = MemoryReactor()
        self.reactor.hosts["dns.example.test"] = ["192.0.2.53"]
        self.client = HTTPClient(self.reactor)
        self.resolver = DoHResolver(URL, client=self.client, **options)  # type: ignore[arg-type]

    def connect(self) -> tuple[Any, StringTransport]:
        call = self.reactor.tls_clients[-1]
        assert (call.host, call.port, call.server_hostname) == (
            "dns.example.test",
            443,
            "dns.example.test",
        )
        protocol = call.connect()
        transport = protocol.transport
        assert isinstance(transport, StringTransport)
        return protocol, transport

    def serve(self, server: Server) -> None:
        """Carry bytes between the client's connection and the server's, until both are quiet."""
        protocol, transport = self.connect()
        while True:
            sent = transport.value()
            transport.clear()
            if sent:
                server.channel.data_received(sent)
            answered = server.transport.value()
            server.transport.clear()
            if answered:
                protocol.data_received(answered)
            if not sent and not answered:
                return

    def close(self) -> None:
        done = self.client.close()
        for connection in list(self.client._connections):
            connection.connection_lost(None)
        success_result_of(done)
        assert self.reactor.clock.get_delayed_calls() == []


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_the_resolver_asks_a_doh_resource(method: str) -> None:
    exchange = Exchange(method=method)
    server = zone_server()
    d = exchange.resolver.query(question("www.example.test."))
    requests: list[bytes] = []
    original = server.channel.data_received

    def record(data: bytes) -> None:
        requests.append(data)
        original(data)

    server.channel.data_received = record  # type: ignore[method-assign]
    exchange.serve(server)
    answer = success_result_of(d)
    assert answer.rcode == dns.rcode.NOERROR
    assert answer.authoritative
    assert [rrset.rdtype for rrset in answer.answer] == [dns.rdatatype.CNAME, dns.rdatatype.A]
    sent = b"".join(requests)
    head, _, body = sent.partition(b"\r\n\r\n")
    assert b"Accept: application/dns-message" in head
    if method == "GET":
        assert head.startswith(b"GET /dns-query?dns=")
        target = head.split()[1].decode()
        wire = decode_dns_parameter(target.partition("dns=")[2])
    else:
        assert head.startswith(b"POST /dns-query HTTP/1.1")
        assert b"Content-Type: application/dns-message" in head
        wire = body
    assert wire is not None
    message = dns.message.from_wire(wire)
    assert message.id == 0
    # Padded to a multiple of 128 bytes (RFC 8467 section 4.1).
    assert len(wire) % 128 == 0
    exchange.close()


def ok_response(body: bytes, *extra: str, content_type: str = DNS_MESSAGE) -> bytes:
    head = ["HTTP/1.1 200 OK", f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    return ("\r\n".join([*head, *extra, "", ""])).encode() + body


def answer_to(name: str, ident: int = 0, ttl: int = 100) -> bytes:
    asked = dns.message.make_query(name, "A")
    asked.id = ident
    message = dns.message.make_response(asked)
    message.answer.append(dns.rrset.from_text(name, ttl, "IN", "A", "192.0.2.1"))
    wire: bytes = message.to_wire()
    return wire


def test_ttls_are_aged_by_the_age_of_a_cached_response() -> None:
    exchange = Exchange()
    d = exchange.resolver.query(question("host.example.test."))
    protocol, _ = exchange.connect()
    protocol.data_received(ok_response(answer_to("host.example.test.", ttl=100), "Age: 30"))
    answer = success_result_of(d)
    assert answer.answer[0].ttl == 70
    exchange.close()


@pytest.mark.parametrize(
    ("reply", "match"),
    [
        (b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n", "500"),
        (b"HTTP/1.1 415 Unsupported Media Type\r\nContent-Length: 0\r\n\r\n", "415"),
        (b"HTTP/1.1 301 Moved\r\nLocation: https://x.test/\r\nContent-Length: 0\r\n\r\n", "301"),
        (ok_response(b"<html></html>", content_type="text/html"), "text/html"),
        (ok_response(b"short"), "not a DNS message"),
        (ok_response(answer_to("host.example.test.", ident=7)), "ID 0"),
        (ok_response(answer_to("other.example.test.")), "another question"),
        (ok_response(answer_to("host.example.test.")[:-3]), "does not parse"),
    ],
)
def test_what_is_not_the_answer_fails_clearly(reply: bytes, match: str) -> None:
    exchange = Exchange()
    d = exchange.resolver.query(question("host.example.test."))
    protocol, _ = exchange.connect()
    protocol.data_received(reply)
    error = failure_result_of(d, DoHError)
    assert match in str(error)
    exchange.close()


def test_a_status_error_carries_the_status() -> None:
    exchange = Exchange()
    d = exchange.resolver.query(question("host.example.test."))
    protocol, _ = exchange.connect()
    protocol.data_received(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n")
    error = failure_result_of(d, DoHError)
    assert isinstance(error, DoHError)
    assert error.status == 503
    exchange.close()


def test_a_silent_server_times_out_and_leaves_nothing() -> None:
    exchange = Exchange(timeout=2.0)
    d = exchange.resolver.query(question("host.example.test."))
    exchange.connect()
    exchange.reactor.clock.advance(1.9)
    assert_no_result(d)
    exchange.reactor.clock.advance(0.2)
    failure_result_of(d, TimeoutError)
    exchange.close()


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("http://dns.example.test/dns-query", {}),
        (URL, {"method": "PUT"}),
        (URL, {"timeout": 0}),
        (URL, {"padding": -1}),
        (URL, {}),  # neither a client nor a reactor
    ],
)
def test_bad_settings_are_refused(url: str, options: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        DoHResolver(url, **options)  # type: ignore[arg-type]


def test_a_uri_template_is_taken_and_its_own_client_closed() -> None:
    reactor = MemoryReactor()
    resolver = DoHResolver(URL + "{?dns}", reactor=reactor, method="GET")
    assert resolver.url == URL
    assert repr(resolver) == f"<DoHResolver GET {URL}>"
    success_result_of(resolver.close())
    with pytest.raises(Exception, match="closed"):
        success_result_of(resolver.client.get(URL))


def test_torsion_names_loads_torsion_web_only_for_doh() -> None:
    code = (
        "import sys, torsion.names\n"
        "print(any(m.startswith('torsion.web') for m in sys.modules))\n"
        "print(torsion.names.DoHResource.__module__)\n"
        "print(any(m.startswith('torsion.web') for m in sys.modules))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == ["False", "torsion.names._doh", "True"]
    with pytest.raises(AttributeError):
        _ = torsion.names.DoHNothing


def test_a_refused_connection_is_a_doh_error_with_its_cause() -> None:
    exchange = Exchange()
    d = exchange.resolver.query(question("host.example.test."))
    exchange.reactor.tls_clients[-1].fail(ConnectionRefusedError("refused"))
    error = failure_result_of(d, DoHError)
    assert isinstance(error.__cause__, ConnectionRefusedError)
    assert URL in str(error)
    exchange.close()


def test_a_broken_response_is_a_doh_error_with_its_cause() -> None:
    exchange = Exchange()
    d = exchange.resolver.query(question("host.example.test."))
    protocol, _ = exchange.connect()
    protocol.data_received(b"NOT HTTP AT ALL\r\n\r\n")
    error = failure_result_of(d, DoHError)
    assert isinstance(error.__cause__, HTTPClientError)
    exchange.close()


def test_doh_site_publishes_the_resource_at_its_path() -> None:
    site = doh_site(DNSServer([Authority.from_text(ZONE)]), reactor=Clock(), path="/a/dns")
    channel: HTTPChannel = site(None)  # type: ignore[arg-type]
    transport = StringTransport(channel)
    channel.connection_made(transport)
    wire = encode_dns_parameter(query("host.example.test."))
    channel.data_received(get(f"/a/dns?dns={wire}") + get(f"/dns-query?dns={wire}"))
    found, elsewhere = parse_responses(transport.value())
    assert found.status == 200
    assert found.headers["content-type"] == DNS_MESSAGE
    assert elsewhere.status == 404


@pytest.mark.parametrize("path", ["dns-query", "/", "/a//b", ""])
def test_doh_site_refuses_a_path_that_names_no_resource(path: str) -> None:
    with pytest.raises(ValueError, match="path"):
        doh_site(DNSServer([]), reactor=Clock(), path=path)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300), use_get=st.booleans())
def test_any_bytes_get_an_answer_or_400_and_never_a_logged_error(
    body: bytes, use_get: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.clear()
    server = zone_server()
    request = get(f"/dns-query?dns={encode_dns_parameter(body)}") if use_get else post(body)
    [answer] = server.send(request)
    assert answer.status in (200, 400)
    if answer.status == 200:
        assert answer.headers["content-type"] == DNS_MESSAGE
        assert answer.body[:2] == body[:2]  # the query's ID, whatever it is
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
