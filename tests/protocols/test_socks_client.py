"""The SOCKS client endpoints on fakes: the proxy is played by the test."""

from __future__ import annotations

from typing import Any

import pytest

from torsion.defer import CancelledError
from torsion.errors import EndpointStringError
from torsion.internet import (
    Address,
    HostnameEndpoint,
    IPv4Address,
    IPv6Address,
    Protocol,
    TCPClientEndpoint,
    client_from_string,
    parse_endpoint_string,
    server_from_string,
)
from torsion.protocols._socks_client import (
    SOCKS4A_ENDPOINT_KIND,
    SOCKS5_ENDPOINT_KIND,
    SOCKS4ClientEndpoint,
    SOCKS5ClientEndpoint,
    socks4a_client_from_parsed,
    socks5_client_from_parsed,
)
from torsion.protocols._socks_wire import (
    ReplyCode,
    SOCKSAuthenticationError,
    SOCKSError,
    SOCKSProtocolError,
    build_socks4_reply,
    build_socks4_request,
    build_socks5_reply,
    build_socks5_request,
)
from torsion.testing import (
    MemoryReactor,
    StringTransport,
    assert_no_result,
    failure_result_of,
    success_result_of,
)

PROXY = IPv4Address("192.0.2.50", 1080)


class App(Protocol):
    def __init__(self, address: Address) -> None:
        self.address = address
        self.received = bytearray()
        self.paused = False

    def data_received(self, data: bytes) -> None:
        self.received += data

    def pause_writing(self) -> None:
        super().pause_writing()
        self.paused = True


def endpoint(host: str = "example.org", port: int = 443, **kwargs: Any) -> Any:
    reactor = MemoryReactor()
    proxy = TCPClientEndpoint(reactor, PROXY.host, PROXY.port)
    return reactor, SOCKS5ClientEndpoint(reactor, proxy, host, port, **kwargs)


def reach_proxy(reactor: MemoryReactor) -> tuple[Any, StringTransport]:
    """Play the proxy accepting the connection; return its protocol and transport."""
    transport = StringTransport(peer=(PROXY.host, PROXY.port))
    reactor.tcp_clients[-1].connect(transport)
    return transport.get_protocol(), transport


def test_connect_through_the_proxy_by_name() -> None:
    reactor, socks = endpoint()
    made: list[App] = []
    d = socks.connect(lambda address: made.append(App(address)) or made[-1])
    [call] = reactor.tcp_clients
    assert (call.host, call.port) == (PROXY.host, PROXY.port)
    negotiator, transport = reach_proxy(reactor)
    assert transport.value() == b"\x05\x01\x00"
    transport.clear()
    negotiator.data_received(b"\x05\x00")
    # The name goes to the proxy as a name: the proxy resolves it.
    assert transport.value() == build_socks5_request(1, "example.org", 443)
    assert reactor.lookups == []
    assert_no_result(d)
    assert made == []  # no protocol before the proxy said yes
    negotiator.data_received(build_socks5_reply(0, "198.51.100.9", 4000) + b"server first")
    app = success_result_of(d)
    assert made == [app]
    assert app.transport is transport
    assert transport.get_protocol() is app
    assert app.address == PROXY  # only the proxy knows the destination's address
    assert app.received == b"server first"
    assert reactor.get_delayed_calls() == []


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("198.51.100.7", IPv4Address("198.51.100.7", 443)),
        ("2001:db8::7", IPv6Address("2001:db8::7", 443)),
    ],
)
def test_an_address_target_is_the_protocols_address(host: str, address: Address) -> None:
    reactor, socks = endpoint(host)
    d = socks.connect(App)
    negotiator, transport = reach_proxy(reactor)
    negotiator.data_received(b"\x05\x00")
    assert transport.value().endswith(build_socks5_request(1, host, 443))
    negotiator.data_received(build_socks5_reply(0))
    assert success_result_of(d).address == address


def test_username_and_password() -> None:
    reactor, socks = endpoint(username="alice", password="s3cret")
    d = socks.connect(App)
    negotiator, transport = reach_proxy(reactor)
    assert transport.value() == b"\x05\x02\x00\x02"
    transport.clear()
    negotiator.data_received(b"\x05\x02")
    assert transport.value() == b"\x01\x05alice\x06s3cret"
    transport.clear()
    negotiator.data_received(b"\x01\x00")
    assert transport.value() == build_socks5_request(1, "example.org", 443)
    negotiator.data_received(build_socks5_reply(0))
    success_result_of(d)


def test_a_refusal_fails_with_its_code_and_meaning() -> None:
    reactor, socks = endpoint()
    made: list[App] = []
    d = socks.connect(lambda address: made.append(App(address)) or made[-1])
    negotiator, transport = reach_proxy(reactor)
    negotiator.data_received(b"\x05\x00" + build_socks5_reply(ReplyCode.NOT_ALLOWED))
    error = failure_result_of(d, SOCKSError)
    assert isinstance(error, SOCKSError)
    assert (error.version, error.code) == (5, ReplyCode.NOT_ALLOWED)
    assert error.meaning == "connection not allowed by ruleset"
    assert "not allowed by ruleset" in str(error)
    assert made == []
    assert transport.aborted
    assert reactor.get_delayed_calls() == []


def test_credentials_refused() -> None:
    reactor, socks = endpoint(username="alice", password="wrong")
    d = socks.connect(App)
    negotiator, _ = reach_proxy(reactor)
    negotiator.data_received(b"\x05\x02\x01\x01")
    failure_result_of(d, SOCKSAuthenticationError)


def test_proxy_wants_a_password() -> None:
    reactor, socks = endpoint()
    d = socks.connect(App)
    negotiator, _ = reach_proxy(reactor)
    negotiator.data_received(b"\x05\xff")
    assert "username and password" in str(failure_result_of(d, SOCKSAuthenticationError))


def test_proxy_speaking_nonsense() -> None:
    reactor, socks = endpoint()
    d = socks.connect(App)
    negotiator, transport = reach_proxy(reactor)
    negotiator.data_received(b"HTTP/1.1 400 Bad Request\r\n")
    failure_result_of(d, SOCKSProtocolError)
    assert transport.aborted


def test_proxy_unreachable() -> None:
    reactor, socks = endpoint()
    d = socks.connect(App)
    reactor.tcp_clients[0].fail()
    failure_result_of(d, ConnectionRefusedError)
    assert reactor.get_delayed_calls() == []


@pytest.mark.parametrize("how", ["eof", "lost"])
def test_proxy_hanging_up_before_the_reply(how: str) -> None:
    reactor, socks = endpoint()
    d = socks.connect(App)
    negotiator, _ = reach_proxy(reactor)
    negotiator.data_received(b"\x05\x00")
    if how == "eof":
        assert not negotiator.eof_received()
    else:
        negotiator.connection_lost(ConnectionResetError("reset"))
    error = failure_result_of(d, SOCKSError)
    assert "before it replied" in str(error)
    negotiator.connection_lost(None)  # after the EOF: nothing more happens


def test_timeout_while_reaching_the_proxy() -> None:
    reactor, socks = endpoint(timeout=5)
    d = socks.connect(App)
    reactor.advance(5)
    assert "took over 5 s" in str(failure_result_of(d, TimeoutError))
    assert reactor.tcp_clients[0].attempt.called  # stopped


def test_timeout_during_the_handshake() -> None:
    reactor, socks = endpoint(timeout=5)
    d = socks.connect(App)
    negotiator, transport = reach_proxy(reactor)
    reactor.advance(4)
    negotiator.data_received(b"\x05\x00")
    reactor.advance(1)
    failure_result_of(d, TimeoutError)
    assert transport.aborted
    negotiator.data_received(build_socks5_reply(0))  # too late: ignored
    assert reactor.get_delayed_calls() == []


def test_cancel_while_reaching_the_proxy() -> None:
    reactor, socks = endpoint()
    d = socks.connect(App)
    d.cancel()
    failure_result_of(d, CancelledError)
    assert reactor.tcp_clients[0].attempt.called
    assert reactor.get_delayed_calls() == []


def test_cancel_during_the_handshake_closes_the_connection() -> None:
    reactor, socks = endpoint()
    d = socks.connect(App)
    _, transport = reach_proxy(reactor)
    d.cancel()
    failure_result_of(d, CancelledError)
    assert transport.aborted
    assert reactor.get_delayed_calls() == []


def test_a_factory_that_fails() -> None:
    reactor, socks = endpoint()

    def broken(address: Address) -> App:
        raise RuntimeError("no")

    d = socks.connect(broken)
    negotiator, transport = reach_proxy(reactor)
    negotiator.data_received(b"\x05\x00" + build_socks5_reply(0))
    failure_result_of(d, RuntimeError)
    assert transport.aborted


def test_backpressure_during_the_handshake_is_passed_on() -> None:
    reactor, socks = endpoint()
    d = socks.connect(App)
    negotiator, _ = reach_proxy(reactor)
    negotiator.pause_writing()
    negotiator.data_received(b"\x05\x00" + build_socks5_reply(0))
    assert success_result_of(d).paused


def test_no_timeout() -> None:
    reactor, socks = endpoint(timeout=None)
    socks.connect(App)
    assert reactor.get_delayed_calls() == []


# -- SOCKS 4 --------------------------------------------------------------------------


def test_socks4a_by_name() -> None:
    reactor = MemoryReactor()
    proxy = TCPClientEndpoint(reactor, PROXY.host, PROXY.port)
    d = SOCKS4ClientEndpoint(reactor, proxy, "example.org", 80, user_id="me").connect(App)
    negotiator, transport = reach_proxy(reactor)
    assert transport.value() == build_socks4_request(1, "example.org", 80, "me")
    negotiator.data_received(build_socks4_reply(90) + b"hi")
    app = success_result_of(d)
    assert app.received == b"hi"


def test_socks4_refused() -> None:
    reactor = MemoryReactor()
    proxy = TCPClientEndpoint(reactor, PROXY.host, PROXY.port)
    d = SOCKS4ClientEndpoint(reactor, proxy, "198.51.100.1", 80).connect(App)
    negotiator, _ = reach_proxy(reactor)
    negotiator.data_received(build_socks4_reply(91))
    error = failure_result_of(d, SOCKSError)
    assert isinstance(error, SOCKSError)
    assert (error.version, error.code) == (4, 91)


@pytest.mark.parametrize(
    "make",
    [
        lambda r, p: SOCKS4ClientEndpoint(r, p, "2001:db8::1", 80),
        lambda r, p: SOCKS5ClientEndpoint(r, p, "a" * 256, 80),
        lambda r, p: SOCKS5ClientEndpoint(r, p, "example.org", 80, password="x"),
        lambda r, p: SOCKS5ClientEndpoint(r, p, "example.org", 80, timeout=0),
    ],
)
def test_what_cannot_be_sent_fails_at_once(make: Any) -> None:
    reactor = MemoryReactor()
    with pytest.raises(ValueError):  # noqa: PT011 - each has its own message
        make(reactor, TCPClientEndpoint(reactor, PROXY.host, PROXY.port))


def test_repr() -> None:
    _, socks = endpoint("2001:db8::1", 80)
    assert repr(socks).startswith("<SOCKS5ClientEndpoint [2001:db8::1]:80 via <TCPClientEndpoint")


# -- endpoint strings ------------------------------------------------------------------


def from_string(text: str) -> Any:
    parsed = parse_endpoint_string(text)
    kind = SOCKS5_ENDPOINT_KIND if parsed.kind == "socks5" else SOCKS4A_ENDPOINT_KIND
    assert kind.prefix == parsed.kind
    return kind.client(MemoryReactor(), parsed.args, dict(parsed.options))


def test_socks5_string() -> None:
    socks = from_string("socks5:proxy.example:1080:example.org:443:username=u:password=p")
    assert isinstance(socks, SOCKS5ClientEndpoint)
    assert (socks.host, socks.port, socks.username, socks.password) == (
        "example.org",
        443,
        "u",
        "p",
    )
    assert socks.timeout == 30.0
    assert isinstance(socks.proxy, HostnameEndpoint)
    assert (socks.proxy.host, socks.proxy.port) == ("proxy.example", 1080)


def test_socks5_string_with_ipv6_and_timeout() -> None:
    socks = from_string(r"socks5:\:\:1:1080:2001\:db8\:\:1:80:timeout=2.5")
    assert (socks.proxy.host, socks.host, socks.timeout) == ("::1", "2001:db8::1", 2.5)
    assert socks.proxy.timeout == 2.5


def test_socks4a_string() -> None:
    socks = from_string("socks4a:proxy.example:1080:example.org:80:userId=me")
    assert isinstance(socks, SOCKS4ClientEndpoint)
    assert (socks.host, socks.port, socks.user_id) == ("example.org", 80, "me")


@pytest.mark.parametrize(
    ("args", "options", "problem"),
    [
        (("proxy", "1080", "example.org"), {}, "needs PROXYHOST:PROXYPORT:HOST:PORT"),
        (("proxy", "1080", "", "80"), {}, "needs PROXYHOST"),
        (("proxy", "x", "example.org", "80"), {}, "proxy's port must be a whole number"),
        (("proxy", "1080", "example.org", "0"), {}, "port must be 1 to 65535"),
        (("proxy", "1080", "example.org", "80"), {"user": "u"}, "unknown option 'user'"),
        (("proxy", "1080", "example.org", "80"), {"password": "p"}, "password= needs username="),
        (("proxy", "1080", "example.org", "80"), {"timeout": "soon"}, "number of seconds"),
        (("proxy", "1080", "example.org", "80"), {"timeout": "0"}, "more than 0"),
        (("proxy", "1080", "a" * 256, "80"), {}, "1 to 255 bytes"),
    ],
)
def test_bad_socks5_strings(args: tuple[str, ...], options: dict[str, str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        socks5_client_from_parsed(MemoryReactor(), args, options)


def test_bad_socks4a_strings() -> None:
    with pytest.raises(ValueError, match="unknown option 'username'"):
        socks4a_client_from_parsed(MemoryReactor(), ("p", "1", "h", "2"), {"username": "u"})
    with pytest.raises(ValueError, match="IPv6"):
        socks4a_client_from_parsed(MemoryReactor(), ("p", "1", "2001:db8::1", "2"), {})


def test_no_socks_servers_from_strings() -> None:
    with pytest.raises(EndpointStringError, match="no server endpoint kind 'socks5' \\(known: h"):
        server_from_string(MemoryReactor(), "socks5:1080")
    assert repr(SOCKS4A_ENDPOINT_KIND) == "<SOCKSEndpointKind socks4a>"


def test_socks_endpoint_strings_are_found_through_the_entry_points() -> None:
    """torsion.protocols registers its kinds as any third-party package would."""
    reactor = MemoryReactor()
    text = "socks5:proxy.test:1080:example.com:443:username=u:password=p"
    five = client_from_string(reactor, text)
    assert isinstance(five, SOCKS5ClientEndpoint)
    assert (five.host, five.port) == ("example.com", 443)
    four = client_from_string(reactor, "socks4a:proxy.test:1080:example.com:80")
    assert isinstance(four, SOCKS4ClientEndpoint)
    with pytest.raises(EndpointStringError, match="socks5: needs PROXYHOST:PROXYPORT:HOST:PORT"):
        client_from_string(reactor, "socks5:proxy.test:1080:example.com")
