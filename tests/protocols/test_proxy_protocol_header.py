"""The PROXY header codec: the spec's examples, every malformation, limits, round trips."""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import struct
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torsion.errors import ProxyProtocolError, TorsionError
from torsion.internet import IPv4Address, IPv6Address, ProcessAddress, UNIXAddress
from torsion.protocols.haproxy._header import (
    DEFAULT_MAX_LENGTH,
    V1_MAX_LENGTH,
    V2_SIGNATURE,
    ClientTLSInfo,
    Command,
    HeaderAddress,
    ProxyHeader,
    ProxyHeaderParser,
    SSLSubtype,
    TLVType,
    build_v1,
    build_v2,
    crc32c,
    parse_header,
)

V4 = (IPv4Address("192.168.0.1", 56324), IPv4Address("192.168.0.11", 443))
V6 = (IPv6Address("2001:db8::1", 40000), IPv6Address("2001:db8::2", 8443))


def v2(ver_cmd: int, family: int, block: bytes, length: int | None = None) -> bytes:
    """A version 2 header laid out by hand, as section 2.2 draws it."""
    size = len(block) if length is None else length
    return V2_SIGNATURE + bytes([ver_cmd, family]) + struct.pack("!H", size) + block


def feed_bytewise(data: bytes, parser: ProxyHeaderParser | None = None) -> tuple[ProxyHeader, int]:
    """Feed one byte at a time; return the header and how many bytes it took."""
    parser = parser or ProxyHeaderParser()
    for i in range(len(data)):
        result = parser.receive_data(data[i : i + 1])
        if result is not None:
            header, rest = result
            assert rest == b""
            return header, i + 1
    raise AssertionError("the header never completed")


# -- the spec's examples ------------------------------------------------------------------


def test_the_v1_example_before_an_http_request() -> None:
    # Section 2.1's example, with the request that follows it.
    data = (
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
        b"GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n"
    )
    header, rest = parse_header(data)
    assert header == ProxyHeader(version=1, source=V4[0], destination=V4[1])
    assert header.command is Command.PROXY
    assert rest == b"GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n"


@pytest.mark.parametrize(
    ("line", "source", "destination"),
    [
        # Section 2.1's longest lines per protocol: 56, 104, 15 and 107 bytes.
        (
            b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
            IPv4Address("255.255.255.255", 65535),
            IPv4Address("255.255.255.255", 65535),
        ),
        (
            b"PROXY TCP6 " + b"ffff:" * 7 + b"ffff " + b"ffff:" * 7 + b"ffff 65535 65535\r\n",
            IPv6Address("ffff:" * 7 + "ffff", 65535),
            IPv6Address("ffff:" * 7 + "ffff", 65535),
        ),
        (b"PROXY UNKNOWN\r\n", None, None),
        (
            b"PROXY UNKNOWN " + b"ffff:" * 7 + b"ffff " + b"ffff:" * 7 + b"ffff 65535 65535\r\n",
            None,
            None,
        ),
    ],
    ids=["tcp4-56", "tcp6-104", "unknown-15", "unknown-107"],
)
def test_the_longest_v1_lines_of_each_kind(
    line: bytes, source: HeaderAddress | None, destination: HeaderAddress | None
) -> None:
    assert len(line) in (56, 104, 15, 107)
    header, rest = parse_header(line + b"payload")
    assert (header.source, header.destination, header.version) == (source, destination, 1)
    assert rest == b"payload"
    assert feed_bytewise(line) == (header, len(line))


def test_v1_ipv6_forms_senders_write() -> None:
    header, _ = parse_header(b"PROXY TCP6 ::1 ::FFFF:10.0.0.1 0 1\r\n")
    assert header.source == IPv6Address("::1", 0)
    # Normalised to one spelling.
    assert header.destination == IPv6Address(str(ipaddress.IPv6Address("::ffff:10.0.0.1")), 1)


def test_v1_unknown_ignores_the_rest_of_its_line() -> None:
    header, rest = parse_header(b"PROXY UNKNOWN whatever \x01 here\r\nX")
    assert header == ProxyHeader(version=1)
    assert rest == b"X"


@pytest.mark.parametrize(
    ("family", "block", "source", "destination"),
    [
        (
            0x11,
            bytes([172, 19, 0, 1, 172, 19, 0, 3]) + struct.pack("!HH", 42578, 80),
            IPv4Address("172.19.0.1", 42578),
            IPv4Address("172.19.0.3", 80),
        ),
        (
            0x12,
            bytes([10, 0, 0, 1, 10, 0, 0, 2]) + struct.pack("!HH", 53, 5353),
            IPv4Address("10.0.0.1", 53, "udp"),
            IPv4Address("10.0.0.2", 5353, "udp"),
        ),
        (
            0x21,
            ipaddress.IPv6Address("2001:db8::1").packed
            + ipaddress.IPv6Address("2001:db8::2").packed
            + struct.pack("!HH", 40000, 8443),
            V6[0],
            V6[1],
        ),
        (
            0x22,
            bytes(15) + b"\x01" + bytes(15) + b"\x01" + struct.pack("!HH", 1, 2),
            IPv6Address("::1", 1, kind="udp"),
            IPv6Address("::1", 2, kind="udp"),
        ),
        (
            0x31,
            b"/run/client.sock".ljust(108, b"\x00") + b"/run/server.sock".ljust(108, b"\x00"),
            UNIXAddress("/run/client.sock"),
            UNIXAddress("/run/server.sock"),
        ),
        (
            0x32,
            b"\x00abstract".ljust(108, b"\x00") + bytes(108),
            UNIXAddress(b"\x00abstract"),
            UNIXAddress(None),
        ),
    ],
    ids=["tcp4", "udp4", "tcp6", "udp6", "unix-stream", "unix-dgram"],
)
def test_each_v2_address_family(
    family: int, block: bytes, source: HeaderAddress, destination: HeaderAddress
) -> None:
    data = v2(0x21, family, block)
    header, rest = parse_header(data + b"after")
    assert header == ProxyHeader(version=2, source=source, destination=destination)
    assert rest == b"after"
    assert feed_bytewise(data) == (header, len(data))


def test_v2_local_ignores_its_family_and_addresses() -> None:
    # Section 2.2: the receiver discards LOCAL's block, and must not assume
    # its length is zero.
    block = bytes([1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2])
    header, rest = parse_header(v2(0x20, 0x11, block) + b"x")
    assert header == ProxyHeader(version=2, command=Command.LOCAL)
    assert rest == b"x"


def test_v2_local_unspec_as_health_checks_send_it() -> None:
    header, rest = parse_header(v2(0x20, 0x00, b""))
    assert header.command is Command.LOCAL
    assert header.source is None
    assert rest == b""


def test_v2_proxy_with_af_unspec_has_no_addresses_but_may_have_tlvs() -> None:
    header, _ = parse_header(v2(0x21, 0x00, b"\x05\x00\x02id"))
    assert (header.command, header.source, header.destination) == (Command.PROXY, None, None)
    assert header.unique_id == b"id"


def test_v2_tlvs_after_the_addresses() -> None:
    tlvs = (
        struct.pack("!BH", 0x01, 2)
        + b"h2"
        + struct.pack("!BH", 0x02, 11)
        + b"example.com"
        + struct.pack("!BH", 0x04, 0)
        + struct.pack("!BH", 0x05, 3)
        + b"id1"
        + struct.pack("!BH", 0xE0, 1)
        + b"\xff"
        + struct.pack("!BH", 0x30, 3)
        + b"ns1"
    )
    addresses = bytes([192, 0, 2, 1, 198, 51, 100, 1]) + struct.pack("!HH", 1234, 443)
    header, _ = parse_header(v2(0x21, 0x11, addresses + tlvs))
    assert header.tlvs == (
        (0x01, b"h2"),
        (0x02, b"example.com"),
        (0x04, b""),
        (0x05, b"id1"),
        (0xE0, b"\xff"),
        (0x30, b"ns1"),
    )
    assert header.alpn == b"h2"
    assert header.authority == "example.com"
    assert header.unique_id == b"id1"
    assert header.netns == "ns1"
    assert header.tlv(0xE0) == b"\xff"
    assert header.tlv(0xE1) is None
    assert header.ssl is None


def test_the_ssl_tlv() -> None:
    subs = (
        (SSLSubtype.VERSION, b"TLSv1.3"),
        (SSLSubtype.CN, "caf\u00e9.example".encode()),
        (SSLSubtype.CIPHER, b"TLS_AES_128_GCM_SHA256"),
        (SSLSubtype.SIG_ALG, b"RSA-SHA256"),
        (SSLSubtype.KEY_ALG, b"RSA2048"),
    )
    info = ClientTLSInfo(client=0x07, verify=0, tlvs=subs)
    data = build_v2(*V4, tlvs=[(TLVType.SSL, info.to_bytes())])
    header, _ = parse_header(data)
    ssl = header.ssl
    assert ssl == info
    assert ssl is not None
    assert (ssl.tls, ssl.certificate_on_connection, ssl.certificate_on_session) == (
        True,
        True,
        True,
    )
    assert ssl.verified
    assert ssl.version == "TLSv1.3"
    assert ssl.cn == "caf\u00e9.example"
    assert ssl.cipher == "TLS_AES_128_GCM_SHA256"
    assert ssl.sig_alg == "RSA-SHA256"
    assert ssl.key_alg == "RSA2048"
    plain = ClientTLSInfo(client=0x01, verify=1)
    assert plain.tls
    assert not plain.certificate_on_connection
    assert not plain.verified
    assert plain.cn is None


def test_crc32c_known_answers() -> None:
    # The check value of CRC-32C, and RFC 3720 appendix B.4's vectors.
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E


def test_a_checksummed_header_verifies_and_a_corrupted_one_does_not() -> None:
    data = build_v2(*V4, tlvs=[(TLVType.UNIQUE_ID, b"abc")], checksum=True)
    header, _ = parse_header(data)
    assert [t for t, _ in header.tlvs] == [TLVType.UNIQUE_ID, TLVType.CRC32C]
    # Its value is the checksum of the header with the value zeroed.
    value = header.tlv(TLVType.CRC32C)
    assert value is not None
    assert int.from_bytes(value, "big") == crc32c(data[:-4] + bytes(4))
    # Rebuilding recomputes it to the same bytes.
    assert header.to_bytes() == data
    # A changed port no longer matches.
    corrupted = bytearray(data)
    corrupted[24] ^= 0x01
    with pytest.raises(ProxyProtocolError, match="CRC32C"):
        parse_header(bytes(corrupted))


# -- building -----------------------------------------------------------------------------


def test_build_v1() -> None:
    assert build_v1(*V4) == b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
    assert build_v1(*V6) == b"PROXY TCP6 2001:db8::1 2001:db8::2 40000 8443\r\n"
    assert build_v1(None, None) == b"PROXY UNKNOWN\r\n"
    # Mapped addresses stay hexadecimal, whatever the Python version prints.
    mapped = IPv6Address("::ffff:10.0.0.1", 1)
    line = build_v1(mapped, mapped)
    assert b"." not in line
    assert parse_header(line)[0].source == IPv6Address(str(ipaddress.ip_address(mapped.host)), 1)


def test_build_v2_layout() -> None:
    data = build_v2(IPv4Address("172.19.0.1", 42578), IPv4Address("172.19.0.3", 80))
    assert data == bytes.fromhex("0d0a0d0a000d0a515549540a2111000cac130001ac130003a6520050")
    assert build_v2(None, None, command=Command.LOCAL) == V2_SIGNATURE + b"\x20\x00\x00\x00"
    unix = build_v2(UNIXAddress("/a"), UNIXAddress(None))
    assert unix[13] == 0x31
    assert len(unix) == 16 + 216


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"source": V4[0]}, "both"),
        (
            {"source": ProcessAddress("sh", 1), "destination": ProcessAddress("sh", 2)},
            "IP or Unix socket addresses",
        ),
        ({"source": V4[0], "destination": V6[1]}, "different families"),
        (
            {"source": V4[0], "destination": IPv4Address("10.0.0.1", 1, "udp")},
            "different transports",
        ),
        ({"source": IPv4Address("::1", 1), "destination": V4[1]}, "not an IPv4"),
        ({"source": IPv6Address("10.0.0.1", 1), "destination": V6[1]}, "not an IPv6"),
        ({"source": IPv4Address("example.com", 1), "destination": V4[1]}, "not an IPv4"),
        ({"source": IPv4Address("10.0.0.1", 65536), "destination": V4[1]}, "out of range"),
        ({"source": IPv4Address("10.0.0.1", -1), "destination": V4[1]}, "out of range"),
        ({"command": Command.LOCAL, "source": V4[0], "destination": V4[1]}, "LOCAL"),
        ({"version": 1, "command": Command.LOCAL}, "LOCAL"),
        ({"version": 1, "tlvs": ((1, b"h2"),)}, "no TLVs"),
        ({"version": 1, "source": UNIXAddress("/a"), "destination": UNIXAddress("/b")}, "TCP"),
        (
            {
                "version": 1,
                "source": IPv4Address("10.0.0.1", 1, "udp"),
                "destination": IPv4Address("10.0.0.2", 1, "udp"),
            },
            "TCP",
        ),
        ({"version": 3}, "versions 1 and 2"),
        ({"tlvs": ((256, b""),)}, "one byte"),
        ({"tlvs": ((1, bytes(65536)),)}, "65535"),
    ],
)
def test_headers_that_cannot_exist(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ProxyHeader(**kwargs)  # type: ignore[arg-type]


def test_encoding_limits() -> None:
    with pytest.raises(ValueError, match="108"):
        build_v2(UNIXAddress("/" + "x" * 108), UNIXAddress(None))
    with pytest.raises(ValueError, match="65535"):
        build_v2(*V4, tlvs=[(0xE0, bytes(65000)), (0xE1, bytes(1000))])
    with pytest.raises(ValueError, match="4 bytes"):
        build_v2(*V4, tlvs=[(TLVType.CRC32C, b"abc")])
    with pytest.raises(ValueError, match="at most one"):
        build_v2(*V4, tlvs=[(TLVType.CRC32C, bytes(4)), (TLVType.CRC32C, bytes(4))])


def test_the_error_is_a_torsion_error_and_a_value_error() -> None:
    with pytest.raises(ProxyProtocolError) as caught:
        parse_header(b"GET / HTTP/1.1\r\n")
    assert isinstance(caught.value, TorsionError)
    assert isinstance(caught.value, ValueError)


# -- malformations --------------------------------------------------------------------------


def feed_until_error(data: bytes) -> None:
    """Byte by byte: nothing until the error, which must come by the last byte."""
    parser = ProxyHeaderParser()
    for i in range(len(data)):
        assert parser.receive_data(data[i : i + 1]) is None
    raise AssertionError(f"no error after all {len(data)} bytes")


V1_ERRORS = [
    (b"GET / HTTP/1.1\r\n", "not a PROXY protocol header"),
    (b"\x16\x03\x01\x02\x00", "not a PROXY protocol header"),
    (b"PROXX TCP4", "not a PROXY version 1 line"),
    (b"PROXY\r\n", "not a PROXY version 1 line"),
    (b"proxy TCP4", "not a PROXY protocol header"),
    (b"PROXY UNKNOWN\n", "LF without CR"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "LF without CR"),
    (b"PROXY UNKNOWNX\r\n", "unknown protocol"),
    (b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "unknown protocol"),
    (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "unknown protocol"),
    (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "unknown protocol"),
    (b"PROXY \r\n", "unknown protocol"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "fields, not 6"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "fields, not 6"),
    (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "fields, not 6"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "fields, not 6"),
    (b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "unknown protocol"),
    (b"PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n", "not an IPv4 address"),
    (b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", "not an IPv4 address"),
    (b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "not an IPv4 address"),
    (b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n", "not an IPv4 address"),
    (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "not an IPv6 address"),
    (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "not an IPv6 address"),
    (b"PROXY TCP6 ::1::2 ::1 1 2\r\n", "not an IPv6 address"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 0443 2\r\n", "not a port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "not a port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "not a port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", "not a port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 x\r\n", "not a port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \xd9\xa1\r\n", "not US-ASCII"),
    (b"PROXY UNKNOWN " + b"x" * 100, "no CRLF in the first 107"),
    (b"PROXY UNKNOWN " + b"x" * 92 + b"\r\n", "no CRLF in the first 107"),
]


@pytest.mark.parametrize(("data", "message"), V1_ERRORS)
def test_malformed_v1(data: bytes, message: str) -> None:
    with pytest.raises(ProxyProtocolError, match=message):
        parse_header(data)
    with pytest.raises(ProxyProtocolError, match=message):
        feed_until_error(data)


ADDR4 = bytes(8) + bytes(4)
V2_ERRORS = [
    (V2_SIGNATURE[:4] + b"\x01", "not a PROXY version 2 signature"),
    (V2_SIGNATURE[:11] + b"\x00", "not a PROXY version 2 signature"),
    (v2(0x11, 0x11, ADDR4), "version 1 in a binary header"),
    (v2(0x31, 0x11, ADDR4), "version 3"),
    (v2(0x22, 0x11, ADDR4), "unknown command 0x2"),
    (v2(0x2F, 0x11, ADDR4), "unknown command 0xf"),
    (v2(0x21, 0x41, ADDR4), "unknown address family and transport 0x41"),
    (v2(0x21, 0x13, ADDR4), "unknown address family and transport 0x13"),
    (v2(0x21, 0x10, ADDR4), "unknown address family and transport 0x10"),
    (v2(0x21, 0x01, ADDR4), "unknown address family and transport 0x01"),
    (v2(0x21, 0x11, bytes(8)), "needs 12 bytes of addresses"),
    (v2(0x21, 0x21, bytes(12)), "needs 36 bytes of addresses"),
    (v2(0x21, 0x31, bytes(108)), "needs 216 bytes of addresses"),
    (v2(0x20, 0x11, bytes(8)), "needs 12 bytes of addresses"),
    (v2(0x21, 0x11, ADDR4 + b"\x01\x00"), "cut short: 2 byte"),
    (v2(0x21, 0x11, ADDR4 + b"\x01\x00\x05ab"), "claims 5 bytes; 2 are left"),
    (v2(0x21, 0x11, ADDR4, length=DEFAULT_MAX_LENGTH + 1), "at most 4096"),
    (v2(0x21, 0x11, ADDR4 + b"\x03\x00\x03abc"), "CRC32C TLV holds 3 bytes"),
    (v2(0x21, 0x11, ADDR4 + b"\x03\x00\x04" + bytes(4)), "CRC32C is 00000000"),
    (
        v2(0x21, 0x11, ADDR4 + (b"\x03\x00\x04" + bytes(4)) * 2),
        "more than one CRC32C",
    ),
    (v2(0x21, 0x11, ADDR4 + b"\x20\x00\x04" + bytes(4)), "SSL TLV holds 4 bytes"),
    (
        v2(0x21, 0x11, ADDR4 + b"\x20\x00\x08" + bytes(5) + b"\x21\x00\x09"),
        "SSL sub-TLV of type 0x21 claims 9",
    ),
]


@pytest.mark.parametrize(("data", "message"), V2_ERRORS)
def test_malformed_v2(data: bytes, message: str) -> None:
    with pytest.raises(ProxyProtocolError, match=message):
        parse_header(data)
    with pytest.raises(ProxyProtocolError, match=message):
        feed_until_error(data)


@pytest.mark.parametrize(
    ("data", "fails_at"),
    [
        (b"GET /", 1),
        (b"PROXX", 5),
        (b"PROXY\r\n", 6),
        (V2_SIGNATURE[:6] + b"X", 7),
        (v2(0x11, 0x11, ADDR4), 13),
        (v2(0x21, 0x99, ADDR4), 14),
        (v2(0x21, 0x11, ADDR4, length=5000), 16),
        (b"PROXY UNKNOWN\n", 14),
    ],
)
def test_errors_come_as_soon_as_the_bytes_show_them(data: bytes, fails_at: int) -> None:
    # Section 2.1 asks to abort as soon as possible, so the sender notices.
    parser = ProxyHeaderParser()
    for i in range(fails_at - 1):
        assert parser.receive_data(data[i : i + 1]) is None
    with pytest.raises(ProxyProtocolError):
        parser.receive_data(data[fails_at - 1 : fails_at])


# -- limits and the parser's states -----------------------------------------------------


def test_v1_limit_is_107_bytes_including_crlf() -> None:
    longest = b"PROXY UNKNOWN " + b"x" * 91 + b"\r\n"
    assert len(longest) == V1_MAX_LENGTH
    assert parse_header(longest + b"rest")[1] == b"rest"
    parser = ProxyHeaderParser()
    assert parser.receive_data(longest[:-1]) is None
    assert parser.buffered == V1_MAX_LENGTH - 1
    one_more = b"PROXY UNKNOWN " + b"x" * 92 + b"\r\n"
    with pytest.raises(ProxyProtocolError, match="107"):
        parse_header(one_more)


def test_v2_limit_is_the_configured_block_length() -> None:
    exactly = v2(0x21, 0x11, ADDR4 + b"\xe0\x00\x11" + bytes(17))
    assert len(exactly) == 16 + 32
    assert parse_header(exactly, max_length=32)[0].tlvs == ((0xE0, bytes(17)),)
    # One more is refused as soon as the length field is read.
    parser = ProxyHeaderParser(max_length=31)
    assert parser.receive_data(exactly[:15]) is None
    with pytest.raises(ProxyProtocolError, match="at most 31"):
        parser.receive_data(exactly[15:16])
    # The spec's whole range can be allowed.
    biggest = build_v2(*V4, tlvs=[(0xE0, bytes(65535 - 12 - 3))])
    assert parse_header(biggest, max_length=65535)[0].tlvs[0][1] == bytes(65520)


@pytest.mark.parametrize("max_length", [-1, 65536])
def test_max_length_is_checked(max_length: int) -> None:
    with pytest.raises(ValueError, match="max_length"):
        ProxyHeaderParser(max_length=max_length)


def test_the_parser_keeps_its_error_and_refuses_to_go_on_after_the_header() -> None:
    parser = ProxyHeaderParser()
    with pytest.raises(ProxyProtocolError) as first:
        parser.receive_data(b"nope")
    with pytest.raises(ProxyProtocolError) as second:
        parser.receive_data(b"PROXY UNKNOWN\r\n")
    assert second.value is first.value
    done = ProxyHeaderParser()
    assert done.receive_data(b"PROXY UNKNOWN\r\n") == (ProxyHeader(version=1), b"")
    with pytest.raises(RuntimeError, match="complete"):
        done.receive_data(b"more")


def test_empty_chunks_and_incomplete_headers() -> None:
    parser = ProxyHeaderParser()
    assert parser.receive_data(b"") is None
    assert parser.receive_data(b"PROXY TCP4 1.2.3.4") is None
    assert parser.buffered == 18
    with pytest.raises(ProxyProtocolError, match="incomplete"):
        parse_header(b"PROXY TCP4 1.2.3.4")
    with pytest.raises(ProxyProtocolError, match="incomplete"):
        parse_header(b"")


def test_everything_after_the_header_comes_back_untouched() -> None:
    data = build_v2(*V4)
    tail = bytes(range(256)) * 1000
    header, rest = ProxyHeaderParser().receive_data(data + tail) or (None, b"")
    assert header is not None
    assert rest == tail


# -- properties ---------------------------------------------------------------------------

PORTS = st.integers(0, 65535)
IPV4_HOSTS = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
IPV6_HOSTS = st.one_of(
    st.integers(0, 2**128 - 1),
    # Mapped IPv4 addresses print differently from the rest.
    st.integers(0, 2**32 - 1).map(lambda n: n | 0xFFFF_0000_0000),
).map(lambda n: str(ipaddress.IPv6Address(n)))
KINDS: st.SearchStrategy[Literal["tcp", "udp"]] = st.sampled_from(["tcp", "udp"])
PATH_CHARACTERS = st.characters(min_codepoint=1, max_codepoint=0x2FFF, exclude_categories=["Cs"])
UNIX_PATHS = st.one_of(
    st.none(),
    st.text(PATH_CHARACTERS, min_size=1, max_size=30)
    .map(lambda p: "/" + p)
    .filter(lambda p: len(p.encode()) <= 108),
    st.binary(min_size=1, max_size=107)
    .filter(lambda b: not b.endswith(b"\x00"))
    .map(lambda b: b"\x00" + b),
)


@st.composite
def address_pairs(
    draw: st.DrawFn, *, v1: bool = False
) -> tuple[HeaderAddress, HeaderAddress] | None:
    choice = draw(st.sampled_from(["none", "v4", "v6"] if v1 else ["none", "v4", "v6", "unix"]))
    if choice == "none":
        return None
    if choice == "unix":
        return UNIXAddress(draw(UNIX_PATHS)), UNIXAddress(draw(UNIX_PATHS))
    kind: Literal["tcp", "udp"] = "tcp" if v1 else draw(KINDS)
    if choice == "v4":
        return (
            IPv4Address(draw(IPV4_HOSTS), draw(PORTS), kind),
            IPv4Address(draw(IPV4_HOSTS), draw(PORTS), kind),
        )
    return (
        IPv6Address(draw(IPV6_HOSTS), draw(PORTS), kind=kind),
        IPv6Address(draw(IPV6_HOSTS), draw(PORTS), kind=kind),
    )


TLV_LISTS = st.lists(
    st.tuples(
        st.integers(0, 255).filter(lambda t: t not in (TLVType.CRC32C, TLVType.SSL)),
        st.binary(max_size=300),
    ),
    max_size=6,
).map(tuple)


@st.composite
def headers(draw: st.DrawFn) -> ProxyHeader:
    if draw(st.booleans()):
        pair = draw(address_pairs(v1=True))
        source, destination = pair if pair is not None else (None, None)
        return ProxyHeader(version=1, source=source, destination=destination)
    if draw(st.booleans()):
        return ProxyHeader(version=2, command=Command.LOCAL, tlvs=draw(TLV_LISTS))
    pair = draw(address_pairs())
    source, destination = pair if pair is not None else (None, None)
    return ProxyHeader(version=2, source=source, destination=destination, tlvs=draw(TLV_LISTS))


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@given(header=headers(), trailing=st.binary(max_size=64), cuts=st.lists(st.integers(0, 10**6)))
def test_round_trip_in_any_chunking(header: ProxyHeader, trailing: bytes, cuts: list[int]) -> None:
    data = header.to_bytes()
    assert len(data) <= (V1_MAX_LENGTH if header.version == 1 else 65535 + 16)
    parser = ProxyHeaderParser(max_length=65535)
    result = None
    chunks = split(data + trailing, cuts)
    for i, chunk in enumerate(chunks):
        result = parser.receive_data(chunk)
        if result is not None:
            parsed, rest = result
            assert parsed == header
            assert rest + b"".join(chunks[i + 1 :]) == trailing
            return
    raise AssertionError("the header never completed")


@given(
    pair=address_pairs(),
    tlvs=TLV_LISTS,
    ssl=st.builds(
        ClientTLSInfo,
        client=st.integers(0, 255),
        verify=st.integers(0, 2**32 - 1),
        tlvs=st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=40)), max_size=4).map(
            tuple
        ),
    ),
)
def test_round_trip_with_ssl_and_checksum(
    pair: tuple[HeaderAddress, HeaderAddress] | None,
    tlvs: tuple[tuple[int, bytes], ...],
    ssl: ClientTLSInfo,
) -> None:
    source, destination = pair if pair is not None else (None, None)
    data = build_v2(
        source, destination, tlvs=(*tlvs, (TLVType.SSL, ssl.to_bytes())), checksum=True
    )
    header, rest = parse_header(data, max_length=65535)
    assert rest == b""
    assert header.ssl == ssl
    assert (header.source, header.destination) == (source, destination)
    assert header.to_bytes() == data


@given(data=st.binary(max_size=300))
def test_any_bytes_give_a_header_more_to_read_or_a_proxy_protocol_error(data: bytes) -> None:
    parser = ProxyHeaderParser()
    with contextlib.suppress(ProxyProtocolError):
        result = parser.receive_data(data)
        assert result is None or isinstance(result[0], ProxyHeader)


@given(header=headers(), position=st.integers(0, 10**6), value=st.integers(0, 255))
def test_a_corrupted_header_never_breaks_the_parser(
    header: ProxyHeader, position: int, value: int
) -> None:
    data = bytearray(header.to_bytes())
    data[position % len(data)] = value
    parser = ProxyHeaderParser(max_length=65535)
    try:
        result = parser.receive_data(bytes(data))
    except ProxyProtocolError:
        return
    if result is not None:
        assert isinstance(result[0], ProxyHeader)
