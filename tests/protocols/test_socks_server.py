"""The SOCKS server on fakes: MemoryReactor, StringTransport, fake time."""

from __future__ import annotations

import errno
import logging
from typing import Any

import pytest

from torsion.defer import Deferred
from torsion.internet import Forwarder, IPv4Address
from torsion.protocols._socks_rules import DestinationRules, allow_destinations, deny_destinations
from torsion.protocols._socks_server import SOCKSServer
from torsion.protocols._socks_wire import (
    AddressType,
    Command,
    Reply,
    ReplyCode,
    build_socks4_request,
    build_socks5_request,
    build_username_password,
    parse_socks4_reply,
    parse_socks5_reply,
)
from torsion.testing import MemoryReactor, StringTransport

PEER = IPv4Address("192.0.2.2", 5000)
LOOPBACK = DestinationRules([allow_destinations(networks=["127.0.0.1/32"])])


def start(**kwargs: Any) -> tuple[MemoryReactor, Any, StringTransport]:
    """A server, and one client connected to it (nothing sent yet)."""
    reactor = MemoryReactor()
    reactor.hosts.update(
        {
            "www.example": ["198.51.100.5"],
            "localhost": ["127.0.0.1", "::1"],
            "mixed.example": ["10.0.0.1", "198.51.100.6"],
            "inside.example": ["10.0.0.1", "192.168.0.1"],
        }
    )
    server = SOCKSServer(reactor, **kwargs)
    protocol = server(PEER)
    client = StringTransport(protocol, peer=("192.0.2.2", 5000))
    protocol.connection_made(client)
    return reactor, protocol, client


def greet(protocol: Any, client: StringTransport) -> None:
    protocol.data_received(b"\x05\x01\x00")
    assert client.value() == b"\x05\x00"
    client.clear()


def connect_destination(
    reactor: MemoryReactor, transport: StringTransport | None = None
) -> tuple[Forwarder, StringTransport]:
    """Play the destination accepting the server's (latest) connection."""
    call = reactor.tcp_clients[-1]
    if transport is None:
        transport = StringTransport(peer=(call.host, call.port), host=("192.0.2.1", 12345))
    call.connect(transport)
    protocol = transport.get_protocol()
    assert isinstance(protocol, Forwarder)
    return protocol, transport


def reply5(client: StringTransport) -> Reply:
    parsed = parse_socks5_reply(client.value())
    assert parsed is not None
    reply, size = parsed
    assert size == len(client.value())
    return reply


def refusals(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "torsion.protocols.socks"]


# -- SOCKS 5 CONNECT ----------------------------------------------------------------


@pytest.mark.parametrize("by_byte", [False, True])
def test_connect_then_relay_both_ways(by_byte: bool) -> None:
    reactor, protocol, client = start(rules=LOOPBACK)
    data = b"\x05\x01\x00" + build_socks5_request(1, "127.0.0.1", 8080) + b"GET / HTTP/1.1\r\n"
    for chunk in [data[i : i + 1] for i in range(len(data))] if by_byte else [data]:
        protocol.data_received(chunk)
    assert client.value() == b"\x05\x00"  # no reply before the destination answers
    client.clear()
    [call] = reactor.tcp_clients
    assert (call.host, call.port) == ("127.0.0.1", 8080)
    assert not client.is_reading()  # what came early is held, not buffered without end

    outgoing, destination = connect_destination(reactor)
    assert reply5(client) == Reply(
        version=5,
        code=ReplyCode.SUCCEEDED,
        address_type=AddressType.IPV4,
        host="192.0.2.1",  # the outgoing connection's own address (RFC 1928 section 6)
        port=12345,
    )
    client.clear()
    assert destination.value() == b"GET / HTTP/1.1\r\n"  # the early data, first and in order
    assert client.is_reading()
    protocol.data_received(b"Host: x\r\n\r\n")
    assert destination.value() == b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    outgoing.data_received(b"HTTP/1.1 200 OK\r\n")
    assert client.value() == b"HTTP/1.1 200 OK\r\n"
    # Half-closes pass through.
    assert protocol.eof_received() is True
    assert destination.eof_written
    assert reactor.get_delayed_calls() == []


def test_a_name_is_resolved_by_the_server() -> None:
    reactor, protocol, client = start()
    greet(protocol, client)
    protocol.data_received(build_socks5_request(1, "www.example", 443))
    assert reactor.lookups == ["www.example"]
    [call] = reactor.tcp_clients
    assert (call.host, call.port) == ("198.51.100.5", 443)
    connect_destination(reactor)
    assert reply5(client).code == ReplyCode.SUCCEEDED


def test_only_allowed_addresses_of_a_name_are_tried() -> None:
    reactor, protocol, client = start()
    greet(protocol, client)
    protocol.data_received(build_socks5_request(1, "mixed.example", 80))
    assert [(c.host, c.port) for c in reactor.tcp_clients] == [("198.51.100.6", 80)]
    reactor.advance(1)  # no second attempt: the other address was refused
    assert len(reactor.tcp_clients) == 1
    connect_destination(reactor)
    assert reply5(client).code == ReplyCode.SUCCEEDED


def test_ipv6_destination_and_bound_address() -> None:
    reactor, protocol, client = start()
    greet(protocol, client)
    protocol.data_received(build_socks5_request(1, "2001:db8::7", 80))
    assert reactor.tcp_clients[0].host == "2001:db8::7"
    connect_destination(
        reactor, StringTransport(peer=("2001:db8::7", 80, 0, 0), host=("2001:db8::5", 4444, 0, 0))
    )
    reply = reply5(client)
    assert (reply.address_type, reply.host, reply.port) == (AddressType.IPV6, "2001:db8::5", 4444)


# -- rules ----------------------------------------------------------------------------


def test_loopback_is_refused_by_default(caplog: pytest.LogCaptureFixture) -> None:
    reactor, protocol, client = start()
    greet(protocol, client)
    protocol.data_received(build_socks5_request(1, "127.0.0.1", 22))
    assert reply5(client).code == ReplyCode.NOT_ALLOWED
    assert client.closed
    assert not client.aborted  # a clean close, after the reply
    assert reactor.tcp_clients == []
    [record] = refusals(caplog)
    assert record.levelno == logging.WARNING
    assert "192.0.2.2:5000" in record.getMessage()
    assert "SOCKS destination not allowed" in record.getMessage()
    assert record.exc_info is None
    assert reactor.get_delayed_calls() == []


def test_a_name_resolving_to_loopback_is_refused_like_the_address() -> None:
    reactor, protocol, client = start()
    greet(protocol, client)
    protocol.data_received(build_socks5_request(1, "localhost", 22))
    assert reactor.lookups == ["localhost"]
    assert reply5(client).code == ReplyCode.NOT_ALLOWED
    assert reactor.tcp_clients == []


def test_a_name_allowed_by_name_still_cannot_reach_inside() -> None:
    rules = DestinationRules([allow_destinations(hosts=["inside.example"])], default="deny")
    reactor, protocol, client = start(rules=rules)
    greet(protocol, client)
    protocol.data_received(build_socks5_request(1, "inside.example", 80))
    assert reply5(client).code == ReplyCode.NOT_ALLOWED
    assert reactor.tcp_clients == []


def test_a_denied_name_is_not_even_looked_up(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="torsion.protocols.socks")
    rules = DestinationRules([deny_destinations(hosts=[".example"])])
    reactor, protocol, client = start(rules=rules)
    greet(protocol, client)
    protocol.data_received(build_socks5_request(1, "www.example", 80))
    assert reply5(client).code == ReplyCode.NOT_ALLOWED
    assert reactor.lookups == []
    details = [r.getMessage() for r in refusals(caplog) if r.levelno == logging.DEBUG]
    assert any("www.example:80" in line for line in details)


def test_port_rules_and_default_deny() -> None:
    rules = DestinationRules([allow_destinations(ports=[443])], default="deny")
    reactor, protocol, client = start(rules=rules)
    greet(protocol, client)
    protocol.data_received(build_socks5_request(1, "198.51.100.1", 25))
    assert reply5(client).code == ReplyCode.NOT_ALLOWED
    reactor, protocol, client = start(rules=rules)
    greet(protocol, client)
    protocol.data_received(build_socks5_request(1, "198.51.100.1", 443))
    assert reactor.tcp_clients[0].port == 443


def test_port_zero_is_refused() -> None:
    _, protocol, client = start()
    greet(protocol, client)
    protocol.data_received(build_socks5_request(1, "198.51.100.1", 0))
    assert reply5(client).code == ReplyCode.NOT_ALLOWED


def test_refusals_from_one_client_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    reactor = MemoryReactor()
    server = SOCKSServer(reactor)
    for port in range(1, 50):
        protocol = server(PEER)
        client = StringTransport(protocol)
        protocol.connection_made(client)
        protocol.data_received(b"\x05\x01\x00" + build_socks5_request(1, "127.0.0.1", port))
        assert client.closed
    assert len([r for r in refusals(caplog) if r.levelno >= logging.INFO]) == 1


# -- destinations that do not answer ----------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), ReplyCode.CONNECTION_REFUSED),
        (OSError(errno.ENETUNREACH, "no route"), ReplyCode.NETWORK_UNREACHABLE),
        (OSError(errno.EHOSTUNREACH, "no route to host"), ReplyCode.HOST_UNREACHABLE),
        (TimeoutError("timed out"), ReplyCode.TTL_EXPIRED),
        (OSError(errno.EACCES, "permission denied"), ReplyCode.GENERAL_FAILURE),
    ],
)
def test_connection_failures_get_their_reply(
    error: BaseException, code: ReplyCode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="torsion.protocols.socks")
    reactor, protocol, client = start()
    greet(protocol, client)
    protocol.data_received(build_socks5_request(1, "198.51.100.1", 80) + b"early")
    reactor.tcp_clients[0].fail(error)
    assert reply5(client).code == code
    assert client.closed
    [record] = refusals(caplog)
    assert record.levelno == logging.INFO
    assert "192.0.2.2:5000" in record.getMessage()
    assert "198.51.100.1:80" in record.getMessage()
    assert record.exc_info is None
    assert reactor.get_delayed_calls() == []


def test_unknown_name_is_host_unreachable() -> None:
    reactor, protocol, client = start()
    greet(protocol, client)
    protocol.data_received(build_socks5_request(1, "nowhere.example", 80))
    assert reply5(client).code == ReplyCode.HOST_UNREACHABLE
    assert reactor.tcp_clients == []


def test_connect_timeout_is_ttl_expired_and_stops_the_attempt() -> None:
    reactor, protocol, client = start(connect_timeout=5)
    greet(protocol, client)
    protocol.data_received(build_socks5_request(1, "198.51.100.1", 80))
    [call] = reactor.tcp_clients
    reactor.advance(4.9)
    assert client.value() == b""
    reactor.advance(0.1)
    assert reply5(client).code == ReplyCode.TTL_EXPIRED
    assert client.closed
    assert call.attempt.called  # cancelled: the connection can no longer be made
    with pytest.raises(RuntimeError, match="already ended"):
        call.connect()
    assert reactor.get_delayed_calls() == []


def test_a_slow_lookup_times_out_too() -> None:
    reactor = MemoryReactor()
    lookups: list[Deferred[list[str]]] = []

    class SlowResolver:
        def resolve(self, host: str) -> Deferred[str]:
            raise AssertionError("not used")

        def resolve_all(self, host: str) -> Deferred[list[str]]:
            lookups.append(Deferred())
            return lookups[-1]

    protocol = SOCKSServer(reactor, resolver=SlowResolver(), connect_timeout=3)(PEER)
    client = StringTransport(protocol)
    protocol.connection_made(client)
    greet(protocol, client)
    protocol.data_received(build_socks5_request(1, "www.example", 80))
    assert len(lookups) == 1
    reactor.advance(3)
    assert reply5(client).code == ReplyCode.TTL_EXPIRED
    assert lookups[0].called  # cancelled


def test_client_leaving_while_connecting_cancels_the_attempt() -> None:
    reactor, protocol, client = start()
    greet(protocol, client)
    protocol.data_received(build_socks5_request(1, "198.51.100.1", 80))
    [call] = reactor.tcp_clients
    protocol.connection_lost(None)
    assert call.attempt.called
    assert reactor.get_delayed_calls() == []


def test_destination_closing_closes_the_client() -> None:
    reactor, protocol, client = start()
    greet(protocol, client)
    protocol.data_received(build_socks5_request(1, "198.51.100.1", 80))
    outgoing, _ = connect_destination(reactor)
    outgoing.connection_lost(None)
    assert client.closed


def test_client_eof_while_connecting_reaches_the_destination() -> None:
    reactor, protocol, client = start()
    greet(protocol, client)
    protocol.data_received(build_socks5_request(1, "198.51.100.1", 80) + b"request")
    assert protocol.eof_received() is True  # kept open: the answer is still to come
    _, destination = connect_destination(reactor)
    assert destination.value() == b"request"
    assert destination.eof_written


# -- the handshake's own limits -------------------------------------------------------


def test_a_silent_client_is_closed_after_the_negotiation_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="torsion.protocols.socks")
    reactor, protocol, client = start(negotiation_timeout=10)
    protocol.data_received(b"\x05\x01")  # half a greeting
    reactor.advance(9.9)
    assert not client.closed
    reactor.advance(0.1)
    assert client.closed
    assert client.value() == b""
    [record] = refusals(caplog)
    assert "192.0.2.2:5000" in record.getMessage()
    assert "within 10 s" in record.getMessage()
    protocol.connection_lost(None)
    assert reactor.get_delayed_calls() == []


def test_the_negotiation_timeout_stops_with_the_request() -> None:
    reactor, protocol, client = start(negotiation_timeout=10, connect_timeout=30)
    greet(protocol, client)
    protocol.data_received(build_socks5_request(1, "198.51.100.1", 80))
    reactor.advance(20)
    assert not client.closed
    connect_destination(reactor)
    assert reply5(client).code == ReplyCode.SUCCEEDED
    assert reactor.get_delayed_calls() == []


def test_garbage_is_closed_without_a_reply_or_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reactor, protocol, client = start()
    protocol.data_received(b"GET / HTTP/1.1\r\n\r\n")
    assert client.closed
    assert client.value() == b""
    [record] = refusals(caplog)
    assert "not SOCKS" in record.getMessage()
    assert record.exc_info is None
    protocol.data_received(b"more")  # ignored after the end
    protocol.connection_lost(None)
    assert reactor.get_delayed_calls() == []


def test_unknown_address_type_is_answered() -> None:
    _, protocol, client = start()
    greet(protocol, client)
    protocol.data_received(b"\x05\x01\x00\x09\x00\x00")
    assert reply5(client).code == ReplyCode.ADDRESS_TYPE_NOT_SUPPORTED
    assert client.closed


def test_a_bad_name_is_host_unreachable() -> None:
    _, protocol, client = start()
    greet(protocol, client)
    protocol.data_received(b"\x05\x01\x00\x03\x03a b\x00\x50")
    assert reply5(client).code == ReplyCode.HOST_UNREACHABLE


def test_too_much_before_an_answer_is_dropped() -> None:
    pending: list[Deferred[bool]] = []
    _, protocol, client = start(
        authenticate=lambda u, p: pending.append(Deferred()) or pending[-1]
    )
    protocol.data_received(b"\x05\x01\x02" + build_username_password("u", "p"))
    client.clear()
    protocol.data_received(b"x" * 64 * 1024)  # still waiting on the password check
    assert not client.closed
    protocol.data_received(b"x")
    assert client.closed
    assert client.value() == b""
    protocol.connection_lost(None)
    assert pending[0].called  # the check was cancelled


def test_client_eof_during_negotiation_closes() -> None:
    reactor, protocol, client = start()
    protocol.data_received(b"\x05\x01")
    assert not protocol.eof_received()  # the transport closes the connection
    assert client.value() == b""
    protocol.connection_lost(None)
    assert reactor.get_delayed_calls() == []


@pytest.mark.parametrize(
    ("command", "name"), [(Command.BIND, "BIND"), (Command.UDP_ASSOCIATE, "UDP_ASSOCIATE")]
)
def test_only_connect_is_supported(
    command: Command, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    reactor, protocol, client = start()
    greet(protocol, client)
    protocol.data_received(build_socks5_request(command, "198.51.100.1", 80))
    assert reply5(client).code == ReplyCode.COMMAND_NOT_SUPPORTED
    assert client.closed
    assert reactor.tcp_clients == []
    assert name in refusals(caplog)[0].getMessage()


def test_unknown_commands_are_not_supported() -> None:
    _, protocol, client = start()
    greet(protocol, client)
    protocol.data_received(build_socks5_request(0x42, "198.51.100.1", 80))
    assert reply5(client).code == ReplyCode.COMMAND_NOT_SUPPORTED


# -- authentication -----------------------------------------------------------------------


def check(username: str, password: str) -> bool:
    return (username, password) == ("alice", "s3cret")


def test_password_accepted() -> None:
    reactor, protocol, client = start(authenticate=check)
    protocol.data_received(b"\x05\x02\x00\x02")
    assert client.value() == b"\x05\x02"  # "no authentication" is not taken
    client.clear()
    protocol.data_received(build_username_password("alice", "s3cret"))
    assert client.value() == b"\x01\x00"
    client.clear()
    protocol.data_received(build_socks5_request(1, "198.51.100.1", 80))
    connect_destination(reactor)
    assert reply5(client).code == ReplyCode.SUCCEEDED


def test_everything_at_once_with_a_password() -> None:
    reactor, protocol, client = start(authenticate=check)
    protocol.data_received(
        b"\x05\x01\x02"
        + build_username_password("alice", "s3cret")
        + build_socks5_request(1, "198.51.100.1", 80)
        + b"hello"
    )
    assert client.value() == b"\x05\x02\x01\x00"
    _, destination = connect_destination(reactor)
    assert destination.value() == b"hello"


@pytest.mark.parametrize(
    "credentials",
    [
        build_username_password("alice", "wrong"),
        build_username_password("mallory", "s3cret"),
        b"\x01\x05alice\x02\xff\xfe",  # not UTF-8: refused without asking
    ],
)
def test_password_refused(credentials: bytes, caplog: pytest.LogCaptureFixture) -> None:
    reactor, protocol, client = start(authenticate=check)
    protocol.data_received(b"\x05\x01\x02")
    client.clear()
    protocol.data_received(credentials + build_socks5_request(1, "198.51.100.1", 80))
    assert client.value() == b"\x01\x01"
    assert client.closed
    assert reactor.tcp_clients == []
    [record] = refusals(caplog)
    assert "password refused" in record.getMessage()
    assert "s3cret" not in record.getMessage()


def test_no_password_offered_gets_no_acceptable_methods() -> None:
    _, protocol, client = start(authenticate=check)
    protocol.data_received(b"\x05\x01\x00")
    assert client.value() == b"\x05\xff"
    assert client.closed


def test_without_authentication_a_password_only_client_is_refused() -> None:
    _, protocol, client = start()
    protocol.data_received(b"\x05\x01\x02")
    assert client.value() == b"\x05\xff"
    assert client.closed


def test_an_empty_greeting_is_refused() -> None:
    _, protocol, client = start()
    protocol.data_received(b"\x05\x00")
    assert client.value() == b"\x05\xff"


def test_asynchronous_check() -> None:
    pending: list[tuple[str, str, Deferred[bool]]] = []

    def later(username: str, password: str) -> Deferred[bool]:
        pending.append((username, password, Deferred()))
        return pending[-1][2]

    reactor, protocol, client = start(authenticate=later)
    protocol.data_received(
        b"\x05\x01\x02"
        + build_username_password("bob", "pw")
        + build_socks5_request(1, "198.51.100.1", 80)
    )
    assert client.value() == b"\x05\x02"
    [(username, password, d)] = pending
    assert (username, password) == ("bob", "pw")
    assert reactor.tcp_clients == []
    d.callback(True)
    assert client.value() == b"\x05\x02\x01\x00"
    assert len(reactor.tcp_clients) == 1  # the request that waited is read now


async def test_coroutine_check() -> None:
    async def check_async(username: str, password: str) -> bool:
        return username == "carol"

    reactor, protocol, client = start(authenticate=check_async)
    protocol.data_received(
        b"\x05\x01\x02"
        + build_username_password("carol", "x")
        + build_socks5_request(1, "198.51.100.1", 80)
    )
    assert client.value() == b"\x05\x02\x01\x00"
    assert len(reactor.tcp_clients) == 1


def test_a_checker_that_fails_is_logged_and_the_client_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(username: str, password: str) -> bool:
        raise RuntimeError("database is down")

    _, protocol, client = start(authenticate=broken)
    protocol.data_received(b"\x05\x01\x02" + build_username_password("u", "p"))
    assert client.value() == b"\x05\x02\x01\x01"
    assert client.closed
    [record] = refusals(caplog)
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None  # the server's own fault: its traceback helps


def test_a_check_that_is_not_true_is_a_no() -> None:
    _, protocol, client = start(authenticate=lambda u, p: "yes")
    protocol.data_received(b"\x05\x01\x02" + build_username_password("u", "p"))
    assert client.value() == b"\x05\x02\x01\x01"


# -- SOCKS 4 and 4a -------------------------------------------------------------------------


def test_socks4_connect() -> None:
    reactor, protocol, client = start(rules=LOOPBACK)
    protocol.data_received(build_socks4_request(1, "127.0.0.1", 80, "me") + b"early")
    assert client.value() == b""
    _, destination = connect_destination(reactor)
    reply, _ = parse_socks4_reply(client.value())
    assert reply.succeeded
    assert (reply.host, reply.port) == ("192.0.2.1", 12345)
    assert destination.value() == b"early"


def test_socks4a_resolves_on_the_server() -> None:
    reactor, protocol, _ = start()
    protocol.data_received(build_socks4_request(1, "www.example", 80))
    assert reactor.lookups == ["www.example"]
    assert reactor.tcp_clients[0].host == "198.51.100.5"


@pytest.mark.parametrize(
    ("kwargs", "request_bytes", "reason"),
    [
        ({}, build_socks4_request(1, "127.0.0.1", 80), "not allowed"),
        ({}, build_socks4_request(2, "198.51.100.1", 80), "BIND is not supported"),
        ({"allow_socks4": False}, build_socks4_request(1, "198.51.100.1", 80), "not served"),
        ({"authenticate": check}, build_socks4_request(1, "198.51.100.1", 80), "no password"),
    ],
)
def test_socks4_refusals(
    kwargs: dict[str, Any], request_bytes: bytes, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    reactor, protocol, client = start(**kwargs)
    protocol.data_received(request_bytes)
    assert client.value() == b"\x00\x5b" + bytes(6)
    assert client.closed
    assert reactor.tcp_clients == []
    assert reason in refusals(caplog)[0].getMessage()


def test_socks4_connection_refused() -> None:
    reactor, protocol, client = start()
    protocol.data_received(build_socks4_request(1, "198.51.100.1", 80))
    reactor.tcp_clients[0].fail()
    assert client.value() == b"\x00\x5b" + bytes(6)
    assert client.closed


def test_socks4_overlong_user_id_is_rejected() -> None:
    _, protocol, client = start()
    protocol.data_received(b"\x04\x01\x00\x50\xc6\x33\x64\x01" + b"u" * 300)
    assert client.value() == b"\x00\x5b" + bytes(6)
    assert client.closed


# -- construction --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["negotiation_timeout", "connect_timeout"])
def test_timeouts_must_be_positive(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        SOCKSServer(MemoryReactor(), **{name: 0})


def test_repr() -> None:
    assert "no authentication" in repr(SOCKSServer(MemoryReactor()))
    _, protocol, _ = start()
    assert "negotiating" in repr(protocol)
