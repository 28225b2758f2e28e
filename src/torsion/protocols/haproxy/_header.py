"""The PROXY protocol header (versions 1 and 2), as bytes in and headers out.

A load balancer in TCP mode (HAProxy, nginx's stream module, a cloud's
network balancer) that opens the connection to a server on a client's behalf
can tell the server who the client is by sending one header first: a line of
text in version 1 (``PROXY TCP4 192.0.2.1 198.51.100.1 56324 443`` and CRLF), a
binary block in version 2, which adds IPv6 and Unix addresses without text
parsing and type-length-value extensions (TLVs) for the ALPN, the server name
and the client's TLS. The format is HAProxy's ``proxy-protocol.txt``
("The PROXY protocol, Versions 1 & 2"); section numbers below are its.

This module is the sans-IO core: ``ProxyHeaderParser`` takes the first bytes
of a connection, in chunks of any size, and returns the header and whatever
followed it; ``ProxyHeader.to_bytes`` (or ``build_v1``/``build_v2``) makes
the bytes a sender writes. Every malformation is a ``ProxyProtocolError``
raised as soon as the bytes show it, and no header is buffered past its
limit: 107 bytes for a version 1 line, 16 bytes plus ``max_length`` for
version 2.
"""

from __future__ import annotations

import enum
import ipaddress
import os
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from torsion.errors import ProxyProtocolError
from torsion.internet import IPv4Address, IPv6Address, UNIXAddress

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "V1_MAX_LENGTH",
    "V2_SIGNATURE",
    "ClientTLSInfo",
    "Command",
    "HeaderAddress",
    "ProxyHeader",
    "ProxyHeaderParser",
    "SSLSubtype",
    "TLVType",
    "build_v1",
    "build_v2",
    "crc32c",
    "parse_header",
]

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
"""The 12 bytes every version 2 header starts with (section 2.2)."""

V1_MAX_LENGTH = 107
"""The longest version 1 line, CRLF included (section 2.1: "PROXY UNKNOWN"
followed by two full IPv6 addresses and two ports)."""

DEFAULT_MAX_LENGTH = 4096
"""The default bound on a version 2 header's address and TLV block. The
length field allows 65,535; real senders stay far below (216 bytes of Unix
addresses plus a few TLVs)."""

_V1_PREFIX = b"PROXY "
_V2_FIXED = 16  # signature, version/command, family/protocol, length
_UNIX_PATH = 108  # sizeof(sun_path) on Linux, and the block's fixed size

TLVs: TypeAlias = tuple[tuple[int, bytes], ...]

HeaderAddress: TypeAlias = IPv4Address | IPv6Address | UNIXAddress
"""The addresses a header can carry: IP (TCP or UDP) and Unix sockets."""


class Command(enum.IntEnum):
    """What the connection is (the low four bits of a version 2 header's 13th byte)."""

    LOCAL = 0
    """Made by the proxy itself (a health check): the real addresses stand."""
    PROXY = 1
    """Relayed for a client: the header's addresses are the client's."""


class TLVType(enum.IntEnum):
    """The registered TLV types of version 2 (section 2.2)."""

    ALPN = 0x01
    AUTHORITY = 0x02
    CRC32C = 0x03
    NOOP = 0x04
    UNIQUE_ID = 0x05
    SSL = 0x20
    NETNS = 0x30


class SSLSubtype(enum.IntEnum):
    """The TLVs nested in a ``TLVType.SSL`` value (section 2.2.6)."""

    VERSION = 0x21
    CN = 0x22
    CIPHER = 0x23
    SIG_ALG = 0x24
    KEY_ALG = 0x25


# The <client> bit field of PP2_TYPE_SSL (section 2.2.6).
_CLIENT_SSL = 0x01
_CLIENT_CERT_CONN = 0x02
_CLIENT_CERT_SESS = 0x04


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientTLSInfo:
    """What a ``TLVType.SSL`` TLV says about the client's TLS to the proxy.

    Attributes:
        client: The bit field: 0x01 the client used TLS, 0x02 it sent a
            certificate on this connection, 0x04 on this TLS session.
        verify: Zero if the client's certificate was verified, else non-zero.
        tlvs: The nested TLVs (``SSLSubtype``), in order.
    """

    client: int
    verify: int
    tlvs: TLVs = ()

    @property
    def tls(self) -> bool:
        """Whether the client connected over TLS."""
        return bool(self.client & _CLIENT_SSL)

    @property
    def certificate_on_connection(self) -> bool:
        """Whether the client sent a certificate on this connection."""
        return bool(self.client & _CLIENT_CERT_CONN)

    @property
    def certificate_on_session(self) -> bool:
        """Whether the client sent a certificate at least once on this TLS session."""
        return bool(self.client & _CLIENT_CERT_SESS)

    @property
    def verified(self) -> bool:
        """Whether the client's certificate was verified (``verify`` is zero)."""
        return self.verify == 0

    @property
    def version(self) -> str | None:
        """The TLS version's name, e.g. "TLSv1.3" (US-ASCII)."""
        return _text(_first(self.tlvs, SSLSubtype.VERSION))

    @property
    def cn(self) -> str | None:
        """The client certificate's Common Name (UTF-8)."""
        return _text(_first(self.tlvs, SSLSubtype.CN))

    @property
    def cipher(self) -> str | None:
        """The cipher's name, e.g. "ECDHE-RSA-AES128-GCM-SHA256"."""
        return _text(_first(self.tlvs, SSLSubtype.CIPHER))

    @property
    def sig_alg(self) -> str | None:
        """The algorithm that signed the proxy's own certificate, e.g. "RSA-SHA256"."""
        return _text(_first(self.tlvs, SSLSubtype.SIG_ALG))

    @property
    def key_alg(self) -> str | None:
        """The algorithm of the proxy certificate's key, e.g. "RSA2048"."""
        return _text(_first(self.tlvs, SSLSubtype.KEY_ALG))

    def to_bytes(self) -> bytes:
        """Return the TLV value: client, verify, then the nested TLVs."""
        return struct.pack("!BI", self.client, self.verify) + _encode_tlvs(self.tlvs)

    @classmethod
    def from_bytes(cls, value: bytes) -> ClientTLSInfo:
        """Read a ``TLVType.SSL`` value.

        Raises:
            ProxyProtocolError: It is shorter than 5 bytes or a nested TLV
                is truncated.
        """
        if len(value) < 5:
            raise ProxyProtocolError(f"the SSL TLV holds {len(value)} bytes; it needs at least 5")
        client, verify = struct.unpack_from("!BI", value)
        return cls(client=client, verify=verify, tlvs=_decode_tlvs(value[5:], "SSL sub-TLV"))


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyHeader:
    """One PROXY protocol header.

    ``source`` and ``destination`` are both None when the header gives no
    addresses: a LOCAL command, version 1's ``UNKNOWN``, version 2's
    ``AF_UNSPEC``. A receiver then keeps the connection's real addresses.

    Attributes:
        command: ``Command.PROXY`` (relayed for a client) or
            ``Command.LOCAL`` (the proxy's own connection; version 2 only).
        source: The client's address (an ``IPv4Address`` or
            ``IPv6Address``, with ``kind`` "tcp" or "udp", or a
            ``UNIXAddress``).
        destination: The address the client connected to, of the same type.
        version: 1 (text) or 2 (binary).
        tlvs: Version 2's TLVs as ``(type, value)`` pairs, in order.

    Raises:
        ValueError: The fields do not make a header: one address without
            the other, addresses of different families, a port out of range,
            a host that is not an IP literal of its family, LOCAL, TLVs or a
            Unix or UDP address in version 1, LOCAL with addresses.
    """

    command: Command = Command.PROXY
    source: HeaderAddress | None = None
    destination: HeaderAddress | None = None
    version: Literal[1, 2] = 2
    tlvs: TLVs = field(default=())

    def __post_init__(self) -> None:
        if self.version not in (1, 2):
            raise ValueError(f"the PROXY protocol has versions 1 and 2, not {self.version!r}")
        # A plain int (from a caller, or the wire) becomes the enum.
        object.__setattr__(self, "command", Command(self.command))
        object.__setattr__(self, "tlvs", tuple((int(t), bytes(v)) for t, v in self.tlvs))
        _check_addresses(self.source, self.destination)
        if self.command is Command.LOCAL and self.source is not None:
            raise ValueError("a LOCAL header carries no addresses")
        for tlv_type, value in self.tlvs:
            if not 0 <= tlv_type <= 0xFF:
                raise ValueError(f"a TLV type is one byte, not {tlv_type}")
            if len(value) > 0xFFFF:
                raise ValueError(f"a TLV value holds at most 65535 bytes, not {len(value)}")
        if self.version == 1:
            if self.command is Command.LOCAL:
                raise ValueError("version 1 has no LOCAL command (send UNKNOWN instead)")
            if self.tlvs:
                raise ValueError("version 1 has no TLVs")
            if (
                isinstance(self.source, UNIXAddress)
                or getattr(self.source, "kind", "tcp") != "tcp"
            ):
                raise ValueError("version 1 carries TCP over IPv4 or IPv6 only")

    # -- well-known TLVs ---------------------------------------------------------------

    def tlv(self, tlv_type: int) -> bytes | None:
        """Return the value of the first TLV of ``tlv_type``, or None."""
        return _first(self.tlvs, tlv_type)

    @property
    def alpn(self) -> bytes | None:
        """The application protocol the client negotiated (``TLVType.ALPN``), e.g. b"h2"."""
        return self.tlv(TLVType.ALPN)

    @property
    def authority(self) -> str | None:
        """The host name the client asked for, its TLS SNI (``TLVType.AUTHORITY``)."""
        return _text(self.tlv(TLVType.AUTHORITY))

    @property
    def unique_id(self) -> bytes | None:
        """The proxy's identifier for the connection (``TLVType.UNIQUE_ID``)."""
        return self.tlv(TLVType.UNIQUE_ID)

    @property
    def netns(self) -> str | None:
        """The name of the network namespace the client came from (``TLVType.NETNS``)."""
        return _text(self.tlv(TLVType.NETNS))

    @property
    def ssl(self) -> ClientTLSInfo | None:
        """The client's TLS as the proxy saw it (``TLVType.SSL``), or None.

        Raises:
            ProxyProtocolError: The TLV is malformed (a header from
                ``ProxyHeaderParser`` never has such a TLV).
        """
        value = self.tlv(TLVType.SSL)
        return None if value is None else ClientTLSInfo.from_bytes(value)

    # -- encoding ----------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Return the header as a sender writes it.

        In version 2, a ``TLVType.CRC32C`` TLV (4 bytes; its value is
        ignored) is filled in with the header's checksum (section 2.2.3).

        Raises:
            ValueError: A TLV makes the header longer than 65,535 bytes, a
                CRC32C TLV is not 4 bytes long, or a Unix path is longer
                than 108 bytes.
        """
        if self.version == 1:
            return _encode_v1(self.source, self.destination)
        return _encode_v2(self)


# -- building ---------------------------------------------------------------------------


def build_v1(source: HeaderAddress | None, destination: HeaderAddress | None) -> bytes:
    """Return a version 1 header line.

    Args:
        source: The client's TCP address, or None (with ``destination``
            None) for ``PROXY UNKNOWN``.
        destination: The address the client connected to.

    Raises:
        ValueError: The addresses cannot be sent in version 1 (see
            ``ProxyHeader``).
    """
    return ProxyHeader(version=1, source=source, destination=destination).to_bytes()


def build_v2(
    source: HeaderAddress | None,
    destination: HeaderAddress | None,
    *,
    command: Command = Command.PROXY,
    tlvs: Iterable[tuple[int, bytes]] = (),
    checksum: bool = False,
) -> bytes:
    """Return a version 2 header.

    Args:
        source: The client's address, or None (with ``destination`` None)
            for ``AF_UNSPEC``, as a LOCAL command should send.
        destination: The address the client connected to.
        command: PROXY for a relayed connection, LOCAL for the proxy's own.
        tlvs: ``(type, value)`` pairs to append.
        checksum: Append a ``TLVType.CRC32C`` TLV holding the header's
            checksum (unless ``tlvs`` has one, which is filled in anyway).

    Raises:
        ValueError: The arguments do not make a header (see ``ProxyHeader``
            and ``ProxyHeader.to_bytes``).
    """
    pairs = tuple(tlvs)
    if checksum and _first(pairs, TLVType.CRC32C) is None:
        pairs += ((TLVType.CRC32C, bytes(4)),)
    header = ProxyHeader(
        version=2, command=command, source=source, destination=destination, tlvs=pairs
    )
    return header.to_bytes()


def _encode_v1(source: HeaderAddress | None, destination: HeaderAddress | None) -> bytes:
    if source is None or destination is None:
        return b"PROXY UNKNOWN\r\n"
    assert isinstance(source, IPv4Address | IPv6Address)
    assert isinstance(destination, IPv4Address | IPv6Address)
    family = "TCP4" if isinstance(source, IPv4Address) else "TCP6"
    line = (
        f"PROXY {family} {_v1_host(source)} {_v1_host(destination)} "
        f"{source.port} {destination.port}\r\n"
    )
    return line.encode("ascii")


def _v1_host(address: IPv4Address | IPv6Address) -> str:
    ip = ipaddress.ip_address(address.host)
    # Section 2.1 wants IPv6 as hexadecimal groups; a mapped IPv4 address is
    # written out in full, because newer Pythons compress it to a dotted quad.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.exploded
    return ip.compressed


# Family and transport (the 14th byte) of each address type (section 2.2).
_AF_UNSPEC = 0x00
_TCP4, _UDP4, _TCP6, _UDP6, _UNIX_STREAM, _UNIX_DGRAM = 0x11, 0x12, 0x21, 0x22, 0x31, 0x32
_ADDRESS_LENGTHS = {
    _AF_UNSPEC: 0,
    _TCP4: 12,
    _UDP4: 12,
    _TCP6: 36,
    _UDP6: 36,
    _UNIX_STREAM: 2 * _UNIX_PATH,
    _UNIX_DGRAM: 2 * _UNIX_PATH,
}


def _encode_v2(header: ProxyHeader) -> bytes:
    source, destination = header.source, header.destination
    if source is None or destination is None:
        family, block = _AF_UNSPEC, b""
    elif isinstance(source, IPv4Address) and isinstance(destination, IPv4Address):
        family = _TCP4 if source.kind == "tcp" else _UDP4
        block = (
            ipaddress.IPv4Address(source.host).packed
            + ipaddress.IPv4Address(destination.host).packed
            + struct.pack("!HH", source.port, destination.port)
        )
    elif isinstance(source, IPv6Address) and isinstance(destination, IPv6Address):
        family = _TCP6 if source.kind == "tcp" else _UDP6
        block = (
            ipaddress.IPv6Address(source.host).packed
            + ipaddress.IPv6Address(destination.host).packed
            + struct.pack("!HH", source.port, destination.port)
        )
    else:
        assert isinstance(source, UNIXAddress)
        assert isinstance(destination, UNIXAddress)
        family = _UNIX_STREAM
        block = _unix_path(source) + _unix_path(destination)
    tlv_block = bytearray(_encode_tlvs(header.tlvs))
    length = len(block) + len(tlv_block)
    if length > 0xFFFF:
        raise ValueError(f"the header's address and TLV block is {length} bytes; at most 65535")
    fixed = V2_SIGNATURE + struct.pack("!BBH", 0x20 | header.command, family, length)
    checksum_at = _crc32c_offsets(header.tlvs)
    if not checksum_at:
        return fixed + block + bytes(tlv_block)
    if len(checksum_at) > 1:
        raise ValueError("a header has at most one CRC32C TLV")
    offset = checksum_at[0]
    tlv_block[offset : offset + 4] = bytes(4)
    value = crc32c(fixed + block + tlv_block)
    tlv_block[offset : offset + 4] = value.to_bytes(4, "big")
    return fixed + block + bytes(tlv_block)


def _crc32c_offsets(tlvs: TLVs) -> list[int]:
    """Where each CRC32C TLV's value starts in the encoded TLV block."""
    offsets = []
    position = 0
    for tlv_type, value in tlvs:
        if tlv_type == TLVType.CRC32C:
            if len(value) != 4:
                raise ValueError(f"a CRC32C TLV holds 4 bytes, not {len(value)}")
            offsets.append(position + 3)
        position += 3 + len(value)
    return offsets


def _unix_path(address: UNIXAddress) -> bytes:
    path = address.path
    raw = b"" if path is None else os.fsencode(path) if isinstance(path, str) else path
    if len(raw) > _UNIX_PATH:
        raise ValueError(f"a Unix socket path holds at most {_UNIX_PATH} bytes, not {len(raw)}")
    return raw.ljust(_UNIX_PATH, b"\x00")


def _encode_tlvs(tlvs: TLVs) -> bytes:
    return b"".join(struct.pack("!BH", t, len(v)) + v for t, v in tlvs)


# -- checks shared by building and parsing ----------------------------------------------


def _check_addresses(source: object, destination: object) -> None:
    if source is None and destination is None:
        return
    if source is None or destination is None:
        raise ValueError("a header has both a source and a destination address, or neither")
    if not isinstance(source, IPv4Address | IPv6Address | UNIXAddress):
        raise ValueError(f"a header carries IP or Unix socket addresses, not {source!r}")
    if type(source) is not type(destination):
        raise ValueError(
            f"the source ({type(source).__name__}) and destination "
            f"({type(destination).__name__}) are of different families"
        )
    if isinstance(source, UNIXAddress):
        return
    assert isinstance(destination, IPv4Address | IPv6Address)
    if source.kind != destination.kind:
        raise ValueError("the source and destination are of different transports (tcp/udp)")
    family = ipaddress.IPv4Address if isinstance(source, IPv4Address) else ipaddress.IPv6Address
    for address in (source, destination):
        try:
            family(address.host)
        except ValueError:
            raise ValueError(f"{address.host!r} is not an {family.__name__[:4]} address") from None
        if not 0 <= address.port <= 0xFFFF:
            raise ValueError(f"port {address.port} is out of range (0-65535)")


def _first(tlvs: TLVs, tlv_type: int) -> bytes | None:
    for t, value in tlvs:
        if t == tlv_type:
            return value
    return None


def _text(value: bytes | None) -> str | None:
    # The spec says US-ASCII or UTF-8; a proxy sending neither still names
    # something, so undecodable bytes are replaced rather than refused.
    return None if value is None else value.decode("utf-8", "replace")


# -- parsing ----------------------------------------------------------------------------


class ProxyHeaderParser:
    """Reads the PROXY header at the start of a connection, in chunks of any size.

    The version is told by the first byte: "P" starts a version 1 line, CR
    the version 2 signature; anything else is refused at once. Each chunk is
    checked as it comes, so garbage is refused as soon as it shows::

        parser = ProxyHeaderParser()
        for chunk in chunks:
            result = parser.receive_data(chunk)
            if result is not None:
                header, rest = result   # rest: the bytes after the header
                break

    Args:
        max_length: The longest version 2 address and TLV block accepted
            (the header's length field); a longer one is an error as soon as
            the length is read. Version 1 lines are bounded by the spec's 107
            bytes.

    Raises:
        ValueError: ``max_length`` is not in 0-65535.
    """

    def __init__(self, *, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        if not 0 <= max_length <= 0xFFFF:
            raise ValueError(f"max_length must be in 0-65535, not {max_length}")
        self.max_length = max_length
        self._buffer = bytearray()
        self._done = False
        self._error: ProxyProtocolError | None = None

    def receive_data(self, data: bytes) -> tuple[ProxyHeader, bytes] | None:
        """Take the next bytes of the connection.

        Returns:
            None while the header is incomplete; once it is complete, the
            header and the bytes that followed it in what was received
            (possibly empty), which belong to the connection's protocol.

        Raises:
            ProxyProtocolError: The bytes are not a valid header (and every
                later call raises it again).
            RuntimeError: The header was already returned.
        """
        if self._error is not None:
            raise self._error
        if self._done:
            raise RuntimeError("the PROXY header is complete; the rest belongs to the protocol")
        self._buffer += data
        try:
            result = self._parse()
        except ProxyProtocolError as exc:
            self._error = exc
            self._buffer.clear()
            raise
        if result is not None:
            self._done = True
            self._buffer = bytearray()
        return result

    @property
    def buffered(self) -> int:
        """How many bytes of an incomplete header are held."""
        return len(self._buffer)

    def _parse(self) -> tuple[ProxyHeader, bytes] | None:
        buffer = self._buffer
        if not buffer:
            return None
        if buffer[0] == _V1_PREFIX[0]:
            return self._parse_v1()
        if buffer[0] == V2_SIGNATURE[0]:
            return self._parse_v2()
        raise ProxyProtocolError(
            f"not a PROXY protocol header (starts with {bytes(buffer[:8])!r})"
        )

    def _parse_v1(self) -> tuple[ProxyHeader, bytes] | None:
        buffer = self._buffer
        _expect_prefix(buffer, _V1_PREFIX, "version 1 line")
        end = buffer.find(b"\n", 0, V1_MAX_LENGTH)
        if end < 0:
            if len(buffer) >= V1_MAX_LENGTH:
                raise ProxyProtocolError(
                    f"no CRLF in the first {V1_MAX_LENGTH} bytes of the version 1 line"
                )
            return None
        # Section 2.1: a lone LF (or CR) must not end the line.
        if buffer[end - 1] != 0x0D:
            raise ProxyProtocolError("the version 1 line ends in LF without CR")
        header = _decode_v1(bytes(buffer[: end - 1]))
        return header, bytes(buffer[end + 1 :])

    def _parse_v2(self) -> tuple[ProxyHeader, bytes] | None:
        buffer = self._buffer
        _expect_prefix(buffer, V2_SIGNATURE, "version 2 signature")
        if len(buffer) > 12:
            version, command = buffer[12] >> 4, buffer[12] & 0x0F
            if version != 2:
                raise ProxyProtocolError(f"version {version} in a binary header; only 2 exists")
            if command not in (Command.LOCAL, Command.PROXY):
                raise ProxyProtocolError(f"unknown command {command:#x}")
        if len(buffer) > 13 and buffer[13] not in _ADDRESS_LENGTHS:
            raise ProxyProtocolError(f"unknown address family and transport {buffer[13]:#04x}")
        if len(buffer) < _V2_FIXED:
            return None
        (length,) = struct.unpack_from("!H", buffer, 14)
        if length > self.max_length:
            raise ProxyProtocolError(
                f"the header's block is {length} bytes; at most {self.max_length} are accepted"
            )
        end = _V2_FIXED + length
        if len(buffer) < end:
            return None
        header = _decode_v2(bytes(buffer[:end]))
        return header, bytes(buffer[end:])


def parse_header(
    data: bytes, *, max_length: int = DEFAULT_MAX_LENGTH
) -> tuple[ProxyHeader, bytes]:
    """Read a header from bytes known to hold all of it.

    Returns:
        The header and the bytes after it.

    Raises:
        ProxyProtocolError: ``data`` does not start with a whole valid header.
    """
    result = ProxyHeaderParser(max_length=max_length).receive_data(data)
    if result is None:
        raise ProxyProtocolError(f"the header is incomplete ({len(data)} bytes)")
    return result


def _expect_prefix(buffer: bytearray, prefix: bytes, what: str) -> None:
    seen = buffer[: len(prefix)]
    if seen != prefix[: len(seen)]:
        raise ProxyProtocolError(f"not a PROXY {what}: {bytes(seen)!r}")


_V1_IPV4 = re.compile(r"(?:0|[1-9][0-9]{0,2})(?:\.(?:0|[1-9][0-9]{0,2})){3}")
_V1_PORT = re.compile(r"0|[1-9][0-9]{0,4}")


def _decode_v1(line: bytes) -> ProxyHeader:
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise ProxyProtocolError("the version 1 line is not US-ASCII") from None
    fields = text.split(" ")
    # fields[0] is "PROXY": the prefix was checked.
    if len(fields) < 2:
        raise ProxyProtocolError("the version 1 line names no protocol")
    protocol = fields[1]
    if protocol == "UNKNOWN":
        # Section 2.1: whatever follows UNKNOWN on the line is ignored.
        return ProxyHeader(version=1)
    if protocol not in ("TCP4", "TCP6"):
        raise ProxyProtocolError(f"unknown protocol {protocol!r} in the version 1 line")
    if len(fields) != 6:
        raise ProxyProtocolError(
            f"the version 1 line has {len(fields)} space-separated fields, not 6: {text!r}"
        )
    source_port, destination_port = (_v1_port(p) for p in fields[4:6])
    if protocol == "TCP4":
        src4, dst4 = (_v1_ipv4(h) for h in fields[2:4])
        return ProxyHeader(
            version=1,
            source=IPv4Address(src4, source_port),
            destination=IPv4Address(dst4, destination_port),
        )
    src6, dst6 = (_v1_ipv6(h) for h in fields[2:4])
    return ProxyHeader(
        version=1,
        source=IPv6Address(src6, source_port),
        destination=IPv6Address(dst6, destination_port),
    )


def _v1_ipv4(text: str) -> str:
    # Section 2.1: four decimal numbers, no leading zeroes (octal confusion).
    if _V1_IPV4.fullmatch(text):
        try:
            return str(ipaddress.IPv4Address(text))
        except ValueError:
            pass
    raise ProxyProtocolError(f"{text!r} is not an IPv4 address as version 1 writes them")


def _v1_ipv6(text: str) -> str:
    # Senders write what inet_ntop(3) gives, which may end in a dotted quad;
    # a zone ("%eth0") belongs to no address on the wire.
    if "%" not in text:
        try:
            return str(ipaddress.IPv6Address(text))
        except ValueError:
            pass
    raise ProxyProtocolError(f"{text!r} is not an IPv6 address")


def _v1_port(text: str) -> int:
    if _V1_PORT.fullmatch(text) and int(text) <= 0xFFFF:
        return int(text)
    raise ProxyProtocolError(f"{text!r} is not a port (0-65535, no leading zeroes)")


def _decode_v2(data: bytes) -> ProxyHeader:
    command = Command(data[12] & 0x0F)
    family = data[13]
    block = data[_V2_FIXED:]
    address_length = _ADDRESS_LENGTHS[family]
    if len(block) < address_length:
        raise ProxyProtocolError(
            f"family {family:#04x} needs {address_length} bytes of addresses; "
            f"the header holds {len(block)}"
        )
    tlvs = _decode_tlvs(block[address_length:], "TLV")
    _check_tlvs(data, tlvs, _V2_FIXED + address_length)
    if command is Command.LOCAL or family == _AF_UNSPEC:
        # Section 2.2: LOCAL's addresses, and AF_UNSPEC's, are ignored.
        return ProxyHeader(version=2, command=command, tlvs=tlvs)
    source, destination = _decode_addresses(family, block[:address_length])
    return ProxyHeader(version=2, source=source, destination=destination, tlvs=tlvs)


def _decode_addresses(family: int, block: bytes) -> tuple[HeaderAddress, HeaderAddress]:
    if family in (_TCP4, _UDP4):
        kind: Literal["tcp", "udp"] = "tcp" if family == _TCP4 else "udp"
        src_port, dst_port = struct.unpack_from("!HH", block, 8)
        return (
            IPv4Address(str(ipaddress.IPv4Address(block[0:4])), src_port, kind),
            IPv4Address(str(ipaddress.IPv4Address(block[4:8])), dst_port, kind),
        )
    if family in (_TCP6, _UDP6):
        kind = "tcp" if family == _TCP6 else "udp"
        src_port, dst_port = struct.unpack_from("!HH", block, 32)
        return (
            IPv6Address(str(ipaddress.IPv6Address(block[0:16])), src_port, kind=kind),
            IPv6Address(str(ipaddress.IPv6Address(block[16:32])), dst_port, kind=kind),
        )
    return _decode_unix(block[:_UNIX_PATH]), _decode_unix(block[_UNIX_PATH:])


def _decode_unix(raw: bytes) -> UNIXAddress:
    if not raw.strip(b"\x00"):
        return UNIXAddress(None)
    if raw[0] == 0:
        # Linux's abstract namespace: bytes, as the socket module reports them.
        return UNIXAddress(raw.rstrip(b"\x00"))
    return UNIXAddress(os.fsdecode(raw.split(b"\x00", 1)[0]))


def _decode_tlvs(data: bytes, what: str) -> TLVs:
    tlvs = []
    position = 0
    while position < len(data):
        if len(data) - position < 3:
            raise ProxyProtocolError(f"a {what} is cut short: {len(data) - position} byte(s) left")
        tlv_type, length = struct.unpack_from("!BH", data, position)
        position += 3
        if position + length > len(data):
            raise ProxyProtocolError(
                f"a {what} of type {tlv_type:#04x} claims {length} bytes; "
                f"{len(data) - position} are left"
            )
        tlvs.append((tlv_type, data[position : position + length]))
        position += length
    return tuple(tlvs)


def _check_tlvs(data: bytes, tlvs: TLVs, tlv_start: int) -> None:
    """Check the TLVs whose format the spec fixes: CRC32C and SSL."""
    checksums = [value for tlv_type, value in tlvs if tlv_type == TLVType.CRC32C]
    if len(checksums) > 1:
        raise ProxyProtocolError("the header has more than one CRC32C TLV")
    if checksums:
        (value,) = checksums
        if len(value) != 4:
            raise ProxyProtocolError(f"the CRC32C TLV holds {len(value)} bytes, not 4")
        # Section 2.2.3: the checksum of the whole header, its own field zeroed.
        offset = tlv_start + _crc32c_offsets(tlvs)[0]
        zeroed = data[:offset] + bytes(4) + data[offset + 4 :]
        expected = crc32c(zeroed)
        if int.from_bytes(value, "big") != expected:
            raise ProxyProtocolError(
                f"the header's CRC32C is {value.hex()}; its bytes give {expected:08x}"
            )
    ssl_value = _first(tlvs, TLVType.SSL)
    if ssl_value is not None:
        ClientTLSInfo.from_bytes(ssl_value)


# -- CRC32C -----------------------------------------------------------------------------


def _crc32c_table() -> tuple[int, ...]:
    # The Castagnoli polynomial, bit-reversed (RFC 4960, appendix B).
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = ((crc >> 1) ^ 0x82F63B78) if crc & 1 else (crc >> 1)
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes | bytearray) -> int:
    """Return the CRC32C (Castagnoli) checksum of ``data``, as RFC 4960 appendix B computes it."""
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
