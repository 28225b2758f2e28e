"""Tests for the DNS over TLS client on fakes: MemoryReactor's TLS calls, fake time."""

from __future__ import annotations

import ssl
import struct
from typing import Any

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from torsion.defer import CancelledError, Deferred
from torsion.names._answer import Question
from torsion.names._client import DNSClient
from torsion.names._dot import DoTServer
from torsion.testing import MemoryReactor, StringTransport

A = Question(dns.name.from_text("www.example.org."), dns.rdatatype.A)
MX = Question(dns.name.from_text("example.org."), dns.rdatatype.MX)
SERVERS = [DoTServer("192.0.2.53", server_name="dns.example.net"), DoTServer("192.0.2.54")]


def result_of(d: Deferred[Any]) -> Any:
    """The result of a Deferred that succeeded."""
    results: list[Any] = []
    errors: list[BaseException] = []
    d.add_callbacks(results.append, errors.append)
    assert not errors, f"the Deferred failed: {errors[0]!r}"
    assert results, "the Deferred has not fired"
    return results[0]


def failure_of(d: Deferred[Any]) -> BaseException:
    """The error of a Deferred that failed (consumed)."""
    results: list[Any] = []
    errors: list[BaseException] = []
    d.add_callbacks(results.append, errors.append)
    assert not results, f"the Deferred succeeded: {results[0]!r}"
    assert errors, "the Deferred has not fired"
    return errors[0]


def make_client(reactor: MemoryReactor, **kwargs: Any) -> DNSClient:
    kwargs.setdefault("timeout", 2.0)
    kwargs.setdefault("attempts", 1)
    kwargs.setdefault("tls_idle_timeout", 10.0)
    return DNSClient(reactor, tls=SERVERS, **kwargs)


def requests_in(transport: StringTransport) -> list[dns.message.Message]:
    """Every framed request written, in order."""
    data = transport.value()
    messages = []
    while data:
        (length,) = struct.unpack("!H", data[:2])
        messages.append(dns.message.from_wire(data[2 : 2 + length]))
        data = data[2 + length :]
    return messages


def framed_response(
    request: dns.message.Message, *records: str, rcode: dns.rcode.Rcode = dns.rcode.NOERROR
) -> bytes:
    response = dns.message.make_response(request)
    response.set_rcode(rcode)
    [question] = request.question
    if records:
        response.answer.append(
            dns.rrset.from_text(question.name, 60, "IN", question.rdtype, *records)
        )
    wire: bytes = response.to_wire()
    return struct.pack("!H", len(wire)) + wire


def test_queries_share_one_verified_connection_and_are_pipelined() -> None:
    reactor = MemoryReactor()
    client = make_client(reactor)
    first = client.query(A)
    second = client.query(MX)
    [call] = reactor.tls_clients
    assert (call.host, call.port) == ("192.0.2.53", 853)
    assert call.server_hostname == "dns.example.net"
    assert call.context is None  # the reactor's default: trust store, host name checked
    transport = StringTransport()
    protocol = call.connect(transport)
    a_request, mx_request = requests_in(transport)
    assert a_request.id != mx_request.id
    # RFC 8467: EDNS0 padding to a multiple of 128 bytes.
    assert len(a_request.to_wire()) % 128 == 0
    assert any(option.otype == 12 for option in a_request.options)
    # Out of order, one byte at a time.
    data = framed_response(mx_request, "10 mx.example.org.") + framed_response(
        a_request, "192.0.2.80"
    )
    for i in range(len(data)):
        protocol.data_received(data[i : i + 1])
    assert str(result_of(first).answer[0][0]) == "192.0.2.80"
    assert str(result_of(second).answer[0][0]) == "10 mx.example.org."
    assert not transport.closed
    third = client.query(A)
    assert len(reactor.tls_clients) == 1
    request = requests_in(transport)[-1]
    protocol.data_received(framed_response(request, "192.0.2.81"))
    assert str(result_of(third).answer[0][0]) == "192.0.2.81"
    assert client.channels[0].connections == 1
    assert reactor.udp_ports == []
    assert reactor.tcp_clients == []
    closed = client.close()
    assert transport.closed
    assert reactor.get_delayed_calls() == []
    # Closed once the connection says so (after TLS's close exchange).
    assert not closed.called
    protocol.connection_lost(None)
    assert result_of(closed) is None
    assert result_of(client.close()) is None


def test_an_idle_connection_is_closed_and_the_next_query_opens_another() -> None:
    reactor = MemoryReactor()
    client = make_client(reactor, tls_idle_timeout=5.0)
    d = client.query(A)
    transport = StringTransport()
    protocol = reactor.tls_clients[0].connect(transport)
    protocol.data_received(framed_response(requests_in(transport)[0], "192.0.2.80"))
    result_of(d)
    reactor.advance(4.9)
    assert not transport.closed
    reactor.advance(0.1)
    assert transport.closed
    assert reactor.get_delayed_calls() == []
    protocol.connection_lost(None)
    again = client.query(A)
    assert len(reactor.tls_clients) == 2
    transport2 = StringTransport()
    protocol2 = reactor.tls_clients[1].connect(transport2)
    protocol2.data_received(framed_response(requests_in(transport2)[0], "192.0.2.82"))
    assert str(result_of(again).answer[0][0]) == "192.0.2.82"
    client.close()


def test_a_waiting_query_keeps_the_connection_open() -> None:
    reactor = MemoryReactor()
    client = make_client(reactor, timeout=30.0, tls_idle_timeout=5.0)
    d = client.query(A)
    transport = StringTransport()
    reactor.tls_clients[0].connect(transport)
    reactor.advance(20.0)
    assert not transport.closed
    assert not d.called
    client.close()
    assert isinstance(failure_of(d), CancelledError)


def test_a_failed_handshake_moves_on_and_never_falls_back_to_clear_text() -> None:
    reactor = MemoryReactor()
    client = make_client(reactor, attempts=2)
    d = client.query(A)
    reactor.tls_clients[0].fail(ssl.SSLCertVerificationError("certificate verify failed"))
    assert (reactor.tls_clients[1].host, reactor.tls_clients[1].server_hostname) == (
        "192.0.2.54",
        "192.0.2.54",  # no name given: the certificate must carry the address
    )
    reactor.tls_clients[1].fail(ConnectionRefusedError())
    reactor.tls_clients[2].fail(ssl.SSLCertVerificationError("certificate verify failed"))
    reactor.tls_clients[3].fail(ssl.SSLCertVerificationError("certificate verify failed"))
    error = failure_of(d)
    assert isinstance(error, TimeoutError)
    assert isinstance(error.__cause__, ssl.SSLCertVerificationError)
    assert reactor.udp_ports == []
    assert reactor.tcp_clients == []
    assert reactor.get_delayed_calls() == []


def test_queries_made_while_connecting_wait_for_the_connection() -> None:
    reactor = MemoryReactor()
    client = make_client(reactor)
    ds = [client.query(A) for _ in range(3)]
    assert len(reactor.tls_clients) == 1
    transport = StringTransport()
    protocol = reactor.tls_clients[0].connect(transport)
    requests = requests_in(transport)
    assert len({request.id for request in requests}) == 3
    for request in reversed(requests):
        protocol.data_received(framed_response(request, "192.0.2.80"))
    assert all(result_of(d).rcode == dns.rcode.NOERROR for d in ds)
    client.close()


def test_a_reused_connection_closed_under_a_query_is_retried_once_on_a_new_one() -> None:
    reactor = MemoryReactor()
    client = DNSClient(reactor, tls=SERVERS[:1], timeout=2.0, attempts=1)
    d = client.query(A)
    transport = StringTransport()
    protocol = reactor.tls_clients[0].connect(transport)
    protocol.data_received(framed_response(requests_in(transport)[0], "192.0.2.80"))
    result_of(d)
    # The server closes as the next query is written: it is sent again.
    second = client.query(MX)
    protocol.connection_lost(None)
    assert len(reactor.tls_clients) == 2
    transport2 = StringTransport()
    protocol2 = reactor.tls_clients[1].connect(transport2)
    [resent] = requests_in(transport2)
    assert resent.question[0].rdtype == dns.rdatatype.MX
    # Closed again before answering, on a fresh connection: this try has failed.
    protocol2.connection_lost(None)
    error = failure_of(second)
    assert isinstance(error, TimeoutError)
    assert isinstance(error.__cause__, ConnectionError)
    assert reactor.get_delayed_calls() == []


def test_a_fresh_connection_closed_before_answering_moves_to_the_next_server() -> None:
    reactor = MemoryReactor()
    client = make_client(reactor)
    d = client.query(A)
    reactor.tls_clients[0].connect(StringTransport()).connection_lost(None)
    assert reactor.tls_clients[1].host == "192.0.2.54"
    transport = StringTransport()
    protocol = reactor.tls_clients[1].connect(transport)
    protocol.data_received(framed_response(requests_in(transport)[0], "192.0.2.80"))
    assert result_of(d).rcode == dns.rcode.NOERROR
    client.close()


def test_unknown_ids_are_dropped_and_a_wrong_question_fails_the_try() -> None:
    reactor = MemoryReactor()
    client = make_client(reactor)
    d = client.query(A)
    transport = StringTransport()
    protocol = reactor.tls_clients[0].connect(transport)
    [request] = requests_in(transport)
    stranger = dns.message.make_query("www.example.org.", "A")
    stranger.id = (request.id + 1) % 65536
    protocol.data_received(framed_response(stranger, "203.0.113.66"))
    # Too short to be a message: skipped.
    protocol.data_received(b"\x00\x03abc")
    assert not d.called
    wrong = dns.message.make_query("evil.example.", "A")
    wrong.id = request.id
    protocol.data_received(framed_response(wrong, "203.0.113.66"))
    # The next (and last) server is asked.
    assert reactor.tls_clients[1].host == "192.0.2.54"
    client.close()
    assert isinstance(failure_of(d), CancelledError)


def test_a_timed_out_query_leaves_the_connection_and_its_late_answer_is_dropped() -> None:
    reactor = MemoryReactor()
    client = DNSClient(reactor, tls=SERVERS[:1], timeout=2.0, attempts=2)
    d = client.query(A)
    transport = StringTransport()
    protocol = reactor.tls_clients[0].connect(transport)
    reactor.advance(2.0)
    assert not transport.closed
    first, second = requests_in(transport)
    assert first.id != second.id
    protocol.data_received(framed_response(first, "203.0.113.1"))
    assert not d.called
    protocol.data_received(framed_response(second, "192.0.2.80"))
    assert str(result_of(d).answer[0][0]) == "192.0.2.80"
    assert len(reactor.tls_clients) == 1
    client.close()


def test_formerr_is_asked_again_without_edns_on_the_same_connection() -> None:
    reactor = MemoryReactor()
    client = make_client(reactor)
    d = client.query(A)
    transport = StringTransport()
    protocol = reactor.tls_clients[0].connect(transport)
    protocol.data_received(framed_response(requests_in(transport)[0], rcode=dns.rcode.FORMERR))
    retry = requests_in(transport)[1]
    assert retry.edns == -1
    protocol.data_received(framed_response(retry, "192.0.2.80"))
    assert result_of(d).rcode == dns.rcode.NOERROR
    client.close()


def test_cancelling_forgets_the_query_and_keeps_the_connection() -> None:
    reactor = MemoryReactor()
    client = make_client(reactor)
    d = client.query(A)
    transport = StringTransport()
    reactor.tls_clients[0].connect(transport)
    d.cancel()
    assert isinstance(failure_of(d), CancelledError)
    assert client.channels[0].waiting == 0
    assert not transport.closed
    client.close()
    assert reactor.get_delayed_calls() == []


def test_closing_while_connecting_disconnects() -> None:
    reactor = MemoryReactor()
    client = make_client(reactor)
    d = client.query(A)
    [call] = reactor.tls_clients
    client.close()
    assert isinstance(failure_of(d), CancelledError)
    assert call.connector.state == "failed"
    assert reactor.get_delayed_calls() == []


def test_settings_are_checked() -> None:
    reactor = MemoryReactor()
    with pytest.raises(ValueError, match="IP address"):
        DoTServer("dns.example.net")
    with pytest.raises(ValueError, match="port"):
        DoTServer("192.0.2.1", 0)
    with pytest.raises(ValueError, match="not both"):
        DNSClient(reactor, [("192.0.2.1", 53)], tls=SERVERS)
    with pytest.raises(ValueError, match="idle"):
        DNSClient(reactor, tls=SERVERS, tls_idle_timeout=0)
    context = ssl.create_default_context()
    client = DNSClient(reactor, tls=[DoTServer("2001:db8::53", 8853, "dns.example", context)])
    assert client.servers == (("2001:db8::53", 8853),)
    client.query(A)
    assert reactor.tls_clients[0].context is context
    assert "over TLS" in repr(client)
    client.close()
