"""The SOCKS codec and handshakes: every message whole and byte by byte, every malformation."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torsion.internet import is_ip_address
from torsion.protocols._socks_handshake import (
    ServerState,
    SOCKSClientHandshake,
    SOCKSServerHandshake,
)
from torsion.protocols._socks_wire import (
    MAX_NAME_LENGTH,
    AddressType,
    AuthenticationReply,
    Command,
    Greeting,
    Method,
    MethodSelection,
    Reply,
    ReplyCode,
    Request,
    SOCKS4ReplyCode,
    SOCKSAuthenticationError,
    SOCKSError,
    SOCKSProtocolError,
    UsernamePassword,
    build_authentication_reply,
    build_greeting,
    build_method_selection,
    build_socks4_reply,
    build_socks4_request,
    build_socks5_reply,
    build_socks5_request,
    build_username_password,
    parse_authentication_reply,
    parse_greeting,
    parse_method_selection,
    parse_socks4_reply,
    parse_socks4_request,
    parse_socks5_reply,
    parse_socks5_request,
    parse_username_password,
    reply_meaning,
)

Parser = Callable[[bytes], Any]


def parse_by_bytes(parse: Parser, data: bytes) -> Any:
    """Every proper prefix asks for more; the whole gives the message and its length."""
    for end in range(len(data)):
        assert parse(data[:end]) is None, f"complete after {end} of {len(data)} bytes"
    message, size = parse(data)
    assert size == len(data)
    # Bytes after the message are not its own.
    assert parse(data + b"extra")[1] == size
    return message


# -- messages, whole and byte by byte -------------------------------------------------


def test_greeting() -> None:
    data = b"\x05\x02\x00\x02"
    assert parse_by_bytes(parse_greeting, data) == Greeting(methods=(0, 2))
    assert build_greeting([Method.NO_AUTHENTICATION, Method.USERNAME_PASSWORD]) == data


def test_greeting_without_methods_is_read_for_the_server_to_refuse() -> None:
    assert parse_greeting(b"\x05\x00") == (Greeting(methods=()), 2)


def test_method_selection() -> None:
    assert parse_by_bytes(parse_method_selection, b"\x05\x02") == MethodSelection(method=2)
    assert build_method_selection(Method.NO_ACCEPTABLE) == b"\x05\xff"


def test_username_password() -> None:
    data = b"\x01\x04user\x06secret"
    expected = UsernamePassword(username=b"user", password=b"secret")
    assert parse_by_bytes(parse_username_password, data) == expected
    assert build_username_password("user", "secret") == data


def test_empty_username_and_password_are_read() -> None:
    assert parse_username_password(b"\x01\x00\x00") == (
        UsernamePassword(username=b"", password=b""),
        3,
    )


def test_authentication_reply() -> None:
    assert parse_by_bytes(parse_authentication_reply, b"\x01\x00").ok
    assert not parse_by_bytes(parse_authentication_reply, b"\x01\x01").ok
    assert build_authentication_reply(True) == b"\x01\x00"
    assert build_authentication_reply(False) == b"\x01\x01"


@pytest.mark.parametrize(
    ("host", "kind", "encoded"),
    [
        ("192.0.2.7", AddressType.IPV4, b"\x01\xc0\x00\x02\x07"),
        ("2001:db8::1", AddressType.IPV6, b"\x04" + ipaddress.ip_address("2001:db8::1").packed),
        ("example.com", AddressType.DOMAIN_NAME, b"\x03\x0bexample.com"),
    ],
)
def test_socks5_request(host: str, kind: AddressType, encoded: bytes) -> None:
    data = b"\x05\x01\x00" + encoded + b"\x01\xbb"
    assert parse_by_bytes(parse_socks5_request, data) == Request(
        version=5, command=Command.CONNECT, address_type=kind, host=host, port=443
    )
    assert build_socks5_request(Command.CONNECT, host, 443) == data


def test_socks5_reply() -> None:
    data = b"\x05\x00\x00\x01\x7f\x00\x00\x01\x9c\x40"
    reply = parse_by_bytes(parse_socks5_reply, data)
    assert reply == Reply(
        version=5, code=0, address_type=AddressType.IPV4, host="127.0.0.1", port=40000
    )
    assert reply.succeeded
    assert build_socks5_reply(ReplyCode.SUCCEEDED, "127.0.0.1", 40000) == data


def test_socks5_reply_may_carry_a_name() -> None:
    reply = parse_by_bytes(parse_socks5_reply, b"\x05\x00\x00\x03\x01a\x00\x50")
    assert (reply.address_type, reply.host, reply.port) == (AddressType.DOMAIN_NAME, "a", 80)


def test_socks4_request() -> None:
    data = b"\x04\x01\x00\x50\xc0\x00\x02\x07alice\x00"
    assert parse_by_bytes(parse_socks4_request, data) == Request(
        version=4,
        command=Command.CONNECT,
        address_type=AddressType.IPV4,
        host="192.0.2.7",
        port=80,
        user_id=b"alice",
    )
    assert build_socks4_request(Command.CONNECT, "192.0.2.7", 80, "alice") == data


def test_socks4a_request_carries_the_name() -> None:
    data = b"\x04\x01\x00\x50\x00\x00\x00\x01\x00example.com\x00"
    assert parse_by_bytes(parse_socks4_request, data) == Request(
        version=4,
        command=Command.CONNECT,
        address_type=AddressType.DOMAIN_NAME,
        host="example.com",
        port=80,
    )
    assert build_socks4_request(Command.CONNECT, "example.com", 80) == data


def test_socks4_address_zero_is_not_4a() -> None:
    request, _ = parse_socks4_request(b"\x04\x01\x00\x50\x00\x00\x00\x00\x00")
    assert (request.address_type, request.host) == (AddressType.IPV4, "0.0.0.0")


def test_socks4_reply() -> None:
    data = b"\x00\x5a\x00\x00\x00\x00\x00\x00"
    reply = parse_by_bytes(parse_socks4_reply, data)
    assert reply.succeeded
    assert reply.code == SOCKS4ReplyCode.GRANTED
    assert build_socks4_reply(SOCKS4ReplyCode.GRANTED) == data
    assert not parse_socks4_reply(b"\x00\x5b" + bytes(6))[0].succeeded


def test_limits_are_inclusive() -> None:
    name = "a" * MAX_NAME_LENGTH
    request, _ = parse_socks5_request(build_socks5_request(Command.CONNECT, name, 80))
    assert request.host == name
    request, _ = parse_socks4_request(build_socks4_request(Command.CONNECT, name, 80, "u" * 255))
    assert (request.host, request.user_id) == (name, b"u" * 255)


def test_reply_meanings() -> None:
    assert reply_meaning(5, ReplyCode.NOT_ALLOWED) == "connection not allowed by ruleset"
    assert reply_meaning(5, ReplyCode.TTL_EXPIRED) == "TTL expired"
    assert reply_meaning(4, SOCKS4ReplyCode.REJECTED) == "request rejected or failed"
    assert reply_meaning(5, 0x42) == "unknown reply code 0x42"
    error = SOCKSError("refused", version=5, code=ReplyCode.CONNECTION_REFUSED)
    assert error.meaning == "connection refused"
    assert SOCKSError("no reply").meaning is None
    assert isinstance(error, ConnectionError)
    assert isinstance(SOCKSProtocolError("bad"), ValueError)
    assert isinstance(SOCKSProtocolError("bad"), SOCKSError)


# -- malformations ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parse", "data"),
    [
        (parse_greeting, b"\x04\x01\x00"),
        (parse_method_selection, b"\x04\x00"),
        (parse_username_password, b"\x05\x01u\x01p"),
        (parse_authentication_reply, b"\x05\x00"),
        (parse_socks5_request, b"\x04\x01\x00\x01"),
        (parse_socks5_reply, b"\x04\x00\x00\x01"),
        (parse_socks4_request, b"\x05\x01\x00\x50"),
        (parse_socks4_reply, b"\x04\x5a"),
    ],
)
def test_a_wrong_version_is_an_error_from_the_first_byte(parse: Parser, data: bytes) -> None:
    with pytest.raises(SOCKSProtocolError, match="version"):
        parse(data[:1])


def test_unknown_address_type() -> None:
    with pytest.raises(SOCKSProtocolError, match="address type 0x02") as caught:
        parse_socks5_request(b"\x05\x01\x00\x02")
    assert caught.value.code == ReplyCode.ADDRESS_TYPE_NOT_SUPPORTED
    with pytest.raises(SOCKSProtocolError) as caught:
        parse_socks5_reply(b"\x05\x00\x00\x05")
    assert caught.value.code is None  # nobody answers a reply


@pytest.mark.parametrize(
    "name", [b"", b"exa mple.com", b"exa\x00mple", b"caf\xc3\xa9.example", b"\x7f", b"a\tb"]
)
def test_bad_socks5_names(name: bytes) -> None:
    with pytest.raises(SOCKSProtocolError, match="host name") as caught:
        parse_socks5_request(b"\x05\x01\x00\x03" + bytes((len(name),)) + name + b"\x00\x50")
    assert caught.value.code == ReplyCode.HOST_UNREACHABLE


def test_socks4_user_id_over_the_limit() -> None:
    head = b"\x04\x01\x00\x50\xc0\x00\x02\x07"
    assert parse_socks4_request(head + b"u" * 255) is None  # the NUL may come yet
    with pytest.raises(SOCKSProtocolError, match="user id longer than 255") as caught:
        parse_socks4_request(head + b"u" * 256)
    assert caught.value.code == SOCKS4ReplyCode.REJECTED
    with pytest.raises(SOCKSProtocolError):
        parse_socks4_request(head + b"u" * 9 + b"\0", max_user_id=8)


def test_socks4a_name_over_the_limit_or_empty() -> None:
    head = b"\x04\x01\x00\x50\x00\x00\x00\x09id\x00"
    assert parse_socks4_request(head + b"n" * 255) is None
    with pytest.raises(SOCKSProtocolError, match="host name longer than 255"):
        parse_socks4_request(head + b"n" * 256)
    with pytest.raises(SOCKSProtocolError, match="empty host name"):
        parse_socks4_request(head + b"\x00")
    with pytest.raises(SOCKSProtocolError, match="not printable"):
        parse_socks4_request(head + b"a b\x00")


@pytest.mark.parametrize(
    "make",
    [
        lambda: build_greeting([]),
        lambda: build_greeting(range(256)),
        lambda: build_greeting([256]),
        lambda: build_method_selection(-1),
        lambda: build_username_password("u" * 256, "p"),
        lambda: build_username_password("u", b"p" * 256),
        lambda: build_socks5_request(1, "a" * 256, 80),
        lambda: build_socks5_request(1, "", 80),
        lambda: build_socks5_request(1, "bad name", 80),
        lambda: build_socks5_request(1, "example.com", 65536),
        lambda: build_socks5_request(256, "example.com", 80),
        lambda: build_socks4_request(1, "2001:db8::1", 80),
        lambda: build_socks4_request(1, "0.0.0.9", 80),
        lambda: build_socks4_request(1, "192.0.2.1", 80, "a\0b"),
        lambda: build_socks4_request(1, "192.0.2.1", 80, "u" * 256),
        lambda: build_socks4_reply(90, "2001:db8::1"),
    ],
)
def test_builders_refuse_what_does_not_fit(make: Callable[[], bytes]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        make()


def test_a_name_in_another_script_goes_in_its_dns_form() -> None:
    request, _ = parse_socks5_request(build_socks5_request(1, "bücher.example", 80))
    assert request.host == "xn--bcher-kva.example"


# -- the server's handshake ----------------------------------------------------------


def feed(handshake: SOCKSServerHandshake, data: bytes, *, by_byte: bool) -> list[Any]:
    events = []
    for chunk in [data[i : i + 1] for i in range(len(data))] if by_byte else [data]:
        handshake.receive_data(chunk)
        while (event := handshake.next_event()) is not None:
            events.append(event)
    return events


@pytest.mark.parametrize("by_byte", [False, True])
def test_server_socks5_with_password(by_byte: bool) -> None:
    server = SOCKSServerHandshake()
    assert feed(server, b"\x05\x02\x00\x02", by_byte=by_byte) == [Greeting(methods=(0, 2))]
    assert server.version == 5
    assert server.state is ServerState.METHOD
    assert server.next_event() is None  # the server owes the answer
    assert server.select_method(Method.USERNAME_PASSWORD) == b"\x05\x02"
    assert feed(server, b"\x01\x01u\x01p", by_byte=by_byte) == [
        UsernamePassword(username=b"u", password=b"p")
    ]
    assert server.authentication_result(True) == b"\x01\x00"
    request = build_socks5_request(1, "example.com", 80)
    [event] = feed(server, request + b"GET / HTTP/1.1\r\n", by_byte=by_byte)
    assert event.host == "example.com"
    assert server.state is ServerState.REPLY
    assert server.reply(ReplyCode.SUCCEEDED, "192.0.2.1", 5000) == build_socks5_reply(
        0, "192.0.2.1", 5000
    )
    assert server.state is ServerState.DONE
    assert server.take_rest() == b"GET / HTTP/1.1\r\n"
    assert server.take_rest() == b""


def test_server_keeps_everything_pipelined_in_one_chunk() -> None:
    server = SOCKSServerHandshake()
    data = (
        b"\x05\x01\x02"
        + build_username_password("u", "p")
        + build_socks5_request(1, "192.0.2.9", 80)
        + b"first data"
    )
    assert feed(server, data, by_byte=False) == [Greeting(methods=(2,))]
    server.select_method(Method.USERNAME_PASSWORD)
    assert isinstance(server.next_event(), UsernamePassword)
    server.authentication_result(True)
    assert isinstance(server.next_event(), Request)
    assert server.take_rest() == b"first data"


@pytest.mark.parametrize("by_byte", [False, True])
def test_server_socks4(by_byte: bool) -> None:
    server = SOCKSServerHandshake()
    [request] = feed(
        server, build_socks4_request(1, "example.com", 80, "me") + b"x", by_byte=by_byte
    )
    assert (server.version, request.version, request.user_id) == (4, 4, b"me")
    assert server.reply(ReplyCode.SUCCEEDED, "192.0.2.1", 5000) == build_socks4_reply(
        90, "192.0.2.1", 5000
    )
    assert server.take_rest() == b"x"


def test_server_socks4_replies_rejected_and_no_ipv6() -> None:
    server = SOCKSServerHandshake()
    feed(server, build_socks4_request(1, "192.0.2.1", 80), by_byte=False)
    assert server.reply(ReplyCode.CONNECTION_REFUSED) == build_socks4_reply(91)
    assert server.state is ServerState.CLOSED
    server = SOCKSServerHandshake()
    feed(server, build_socks4_request(1, "192.0.2.1", 80), by_byte=False)
    assert server.reply(ReplyCode.SUCCEEDED, "2001:db8::1", 80) == build_socks4_reply(90)


@pytest.mark.parametrize("first", [b"\x00", b"\x03", b"G", b"\x16"])
def test_server_refuses_other_versions(first: bytes) -> None:
    server = SOCKSServerHandshake()
    with pytest.raises(SOCKSProtocolError, match="not SOCKS") as caught:
        feed(server, first + b"ET / HTTP/1.1", by_byte=False)
    assert server.state is ServerState.CLOSED
    assert server.error_reply(caught.value) == b""


def test_server_error_replies() -> None:
    server = SOCKSServerHandshake()
    feed(server, b"\x05\x01\x00", by_byte=False)
    server.select_method(0)
    with pytest.raises(SOCKSProtocolError) as caught:
        feed(server, b"\x05\x01\x00\x07", by_byte=False)
    assert server.error_reply(caught.value) == build_socks5_reply(
        ReplyCode.ADDRESS_TYPE_NOT_SUPPORTED
    )
    server = SOCKSServerHandshake()
    with pytest.raises(SOCKSProtocolError) as caught:
        feed(server, b"\x04\x01\x00\x50\x00\x00\x00\x01\x00\x00", by_byte=False)
    assert server.error_reply(caught.value) == build_socks4_reply(91)


def test_server_bad_authentication_version() -> None:
    server = SOCKSServerHandshake()
    feed(server, b"\x05\x01\x02", by_byte=False)
    server.select_method(2)
    with pytest.raises(SOCKSProtocolError, match="username/password"):
        feed(server, b"\x05\x01u\x01p", by_byte=False)


def test_server_bounds_what_waits() -> None:
    server = SOCKSServerHandshake(max_buffered=100)
    feed(server, b"\x05\x01\x02", by_byte=False)
    server.receive_data(b"x" * 100)  # waiting for the method: kept
    with pytest.raises(SOCKSProtocolError, match="over 100 bytes"):
        server.receive_data(b"x")
    assert server.state is ServerState.CLOSED


def test_server_takes_any_amount_once_done() -> None:
    server = SOCKSServerHandshake(max_buffered=10)
    feed(server, b"\x05\x01\x00", by_byte=False)
    server.select_method(0)
    feed(server, build_socks5_request(1, "192.0.2.1", 80), by_byte=False)
    server.reply(ReplyCode.SUCCEEDED)
    server.receive_data(b"y" * 100)
    assert server.take_rest() == b"y" * 100


def test_server_answers_only_in_turn() -> None:
    server = SOCKSServerHandshake()
    with pytest.raises(RuntimeError, match="state greeting"):
        server.select_method(0)
    feed(server, b"\x05\x01\x00", by_byte=False)
    with pytest.raises(RuntimeError, match="not offered"):
        server.select_method(Method.USERNAME_PASSWORD)
    with pytest.raises(RuntimeError):
        server.authentication_result(True)
    with pytest.raises(RuntimeError):
        server.reply(ReplyCode.SUCCEEDED)
    assert server.select_method(Method.NO_ACCEPTABLE) == b"\x05\xff"
    assert server.state is ServerState.CLOSED
    assert server.next_event() is None


def test_server_failed_authentication_closes() -> None:
    server = SOCKSServerHandshake()
    feed(server, b"\x05\x01\x02", by_byte=False)
    server.select_method(2)
    feed(server, b"\x01\x01u\x01p" + build_socks5_request(1, "192.0.2.1", 80), by_byte=False)
    assert server.authentication_result(False) == b"\x01\x01"
    assert server.state is ServerState.CLOSED
    assert server.next_event() is None  # the request after a failure is not read


# -- the client's handshake -----------------------------------------------------------


def test_client_socks5_with_password_then_rest() -> None:
    client = SOCKSClientHandshake("example.com", 443, username="u", password="p")
    assert client.start() == b"\x05\x02\x00\x02"
    with pytest.raises(RuntimeError):
        client.start()
    assert client.receive_data(b"\x05") == b""
    assert client.receive_data(b"\x02") == b"\x01\x01u\x01p"
    assert client.receive_data(b"\x01\x00") == build_socks5_request(1, "example.com", 443)
    reply = build_socks5_reply(0, "192.0.2.1", 5000)
    assert client.receive_data(reply[:5]) == b""
    assert not client.done
    assert client.receive_data(reply[5:] + b"server first") == b""
    assert client.done
    assert client.reply is not None
    assert (client.reply.host, client.reply.port) == ("192.0.2.1", 5000)
    assert client.take_rest() == b"server first"


def test_client_socks5_without_authentication_in_one_chunk() -> None:
    client = SOCKSClientHandshake("2001:db8::1", 80)
    assert client.start() == b"\x05\x01\x00"
    assert client.receive_data(b"\x05\x00") == build_socks5_request(1, "2001:db8::1", 80)
    assert client.receive_data(build_socks5_reply(0)) == b""
    assert client.done


def test_client_answers_everything_that_came_at_once() -> None:
    client = SOCKSClientHandshake("example.com", 80, username="u", password="p")
    client.start()
    out = client.receive_data(b"\x05\x02\x01\x00" + build_socks5_reply(0) + b"data")
    assert out == b"\x01\x01u\x01p" + build_socks5_request(1, "example.com", 80)
    assert client.done
    assert client.take_rest() == b"data"


def test_client_refused_request() -> None:
    client = SOCKSClientHandshake("example.com", 80)
    client.start()
    client.receive_data(b"\x05\x00")
    with pytest.raises(SOCKSError, match="connection not allowed by ruleset") as caught:
        client.receive_data(build_socks5_reply(ReplyCode.NOT_ALLOWED))
    assert (caught.value.version, caught.value.code) == (5, ReplyCode.NOT_ALLOWED)
    assert not client.done


def test_client_no_acceptable_method() -> None:
    client = SOCKSClientHandshake("example.com", 80)
    client.start()
    with pytest.raises(SOCKSAuthenticationError, match="may want a username"):
        client.receive_data(b"\x05\xff")


def test_client_credentials_refused() -> None:
    client = SOCKSClientHandshake("example.com", 80, username="u", password="bad")
    client.start()
    client.receive_data(b"\x05\x02")
    with pytest.raises(SOCKSAuthenticationError, match="refused the credentials"):
        client.receive_data(b"\x01\x01")


def test_client_method_not_offered() -> None:
    client = SOCKSClientHandshake("example.com", 80)
    client.start()
    with pytest.raises(SOCKSProtocolError, match="not offered"):
        client.receive_data(b"\x05\x02")


def test_client_socks4() -> None:
    client = SOCKSClientHandshake("example.com", 80, version=4, user_id="me")
    assert client.start() == build_socks4_request(1, "example.com", 80, "me")
    assert client.receive_data(build_socks4_reply(90) + b"hi") == b""
    assert client.done
    assert client.take_rest() == b"hi"
    client = SOCKSClientHandshake("192.0.2.1", 80, version=4)
    client.start()
    with pytest.raises(SOCKSError, match="rejected or failed") as caught:
        client.receive_data(build_socks4_reply(91))
    assert (caught.value.version, caught.value.code) == (4, 91)


def test_client_bounds_and_garbage() -> None:
    client = SOCKSClientHandshake("example.com", 80)
    client.start()
    with pytest.raises(SOCKSProtocolError, match="version"):
        client.receive_data(b"HTTP/1.1 400")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"version": 4, "username": "u"},
        {"version": 6},
        {"password": "p"},
        {"username": "u" * 256},
    ],
)
def test_client_refuses_what_cannot_be_sent(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        SOCKSClientHandshake("example.com", 80, **kwargs)


# -- properties: builders and parsers agree ----------------------------------------------

names = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=255
).filter(lambda name: not is_ip_address(name))
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
ports = st.integers(0, 65535)
byte_strings = st.binary(max_size=255)


@given(st.lists(st.integers(0, 255), min_size=1, max_size=255))
def test_greeting_round_trip(methods: list[int]) -> None:
    assert parse_greeting(build_greeting(methods))[0] == Greeting(methods=tuple(methods))


@given(byte_strings, byte_strings)
def test_username_password_round_trip(username: bytes, password: bytes) -> None:
    parsed, _ = parse_username_password(build_username_password(username, password))
    assert parsed == UsernamePassword(username=username, password=password)


@given(st.integers(0, 255), st.booleans())
def test_small_messages_round_trip(method: int, ok: bool) -> None:
    assert parse_method_selection(build_method_selection(method))[0].method == method
    assert parse_authentication_reply(build_authentication_reply(ok))[0] == (
        AuthenticationReply(status=0 if ok else 1)
    )


@given(st.integers(0, 255), st.one_of(ipv4, ipv6, names), ports)
def test_socks5_request_and_reply_round_trip(command: int, host: str, port: int) -> None:
    request, _ = parse_socks5_request(build_socks5_request(command, host, port))
    assert (request.command, request.host, request.port) == (command, host, port)
    reply, _ = parse_socks5_reply(build_socks5_reply(command, host, port))
    assert (reply.code, reply.host, reply.port) == (command, host, port)


@given(
    st.integers(0, 255),
    st.one_of(ipv4.filter(lambda a: not a.startswith("0.0.0.") or a == "0.0.0.0"), names),
    ports,
    st.binary(max_size=255).map(lambda b: b.replace(b"\0", b"")),
)
def test_socks4_request_round_trip(command: int, host: str, port: int, user_id: bytes) -> None:
    request, _ = parse_socks4_request(build_socks4_request(command, host, port, user_id))
    assert (request.command, request.host, request.port, request.user_id) == (
        command,
        host,
        port,
        user_id,
    )


@given(st.integers(0, 255), ipv4, ports)
def test_socks4_reply_round_trip(code: int, host: str, port: int) -> None:
    reply, _ = parse_socks4_reply(build_socks4_reply(code, host, port))
    assert (reply.code, reply.host, reply.port) == (code, host, port)


@given(st.one_of(ipv4, ipv6, names), ports, byte_strings, st.binary(max_size=64), st.data())
def test_any_split_of_a_full_exchange_reads_the_same(
    host: str, port: int, password: bytes, tunnel: bytes, data: st.DataObject
) -> None:
    stream = (
        build_greeting([0, 2])
        + build_username_password(b"user", password)
        + build_socks5_request(1, host, port)
        + tunnel
    )
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    server = SOCKSServerHandshake()
    events: list[Any] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        server.receive_data(stream[start:end])
        while (event := server.next_event()) is not None:
            events.append(event)
            if isinstance(event, Greeting):
                server.select_method(Method.USERNAME_PASSWORD)
            elif isinstance(event, UsernamePassword):
                server.authentication_result(True)
    assert [type(e) for e in events] == [Greeting, UsernamePassword, Request]
    assert events[1].password == password
    assert (events[2].host, events[2].port) == (host, port)
    assert server.take_rest() == tunnel
