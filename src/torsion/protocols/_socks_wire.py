"""SOCKS 4, 4a and 5 on the wire: bytes in, messages out, and back (sans-IO).

The messages are those of RFC 1928 (SOCKS version 5), RFC 1929 (its
username/password sub-negotiation), and the SOCKS 4 protocol with its 4a
extension (Ying-Da Lee's "SOCKS: A protocol for TCP proxy across firewalls"
and "SOCKS 4A: A Simple Extension to SOCKS 4 Protocol"). A SOCKS 5 exchange::

    client: greeting (methods)            -> server: method selection
    client: username/password (method 2)  -> server: status       (RFC 1929)
    client: request (command, address)    -> server: reply (code, bound address)
    then the connection is the tunnel: every byte after the request is data

SOCKS 4 has a single request (an IPv4 address, or with 4a a host name for the
server to resolve) and a single reply. There is no negotiation, hence no
password.

``parse_*`` read one message from the start of a buffer: they return the
message and how many bytes it took, None while the bytes so far are a valid
beginning, and raise ``SOCKSProtocolError`` as soon as the bytes cannot be
one. ``build_*`` make the bytes. Every message has a bound: a name or a user
id is at most 255 bytes, so no message is longer than 520. The two sides'
state machines are in ``_socks_handshake``.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from torsion.errors import TorsionError

__all__ = [
    "DEFAULT_MAX_BUFFERED",
    "MAX_NAME_LENGTH",
    "MAX_USER_ID_LENGTH",
    "AddressType",
    "AuthenticationReply",
    "Command",
    "Greeting",
    "Method",
    "MethodSelection",
    "Reply",
    "ReplyCode",
    "Request",
    "SOCKS4ReplyCode",
    "SOCKSAuthenticationError",
    "SOCKSError",
    "SOCKSProtocolError",
    "UsernamePassword",
    "build_authentication_reply",
    "build_greeting",
    "build_method_selection",
    "build_socks4_reply",
    "build_socks4_request",
    "build_socks5_reply",
    "build_socks5_request",
    "build_username_password",
    "parse_authentication_reply",
    "parse_greeting",
    "parse_method_selection",
    "parse_socks4_reply",
    "parse_socks4_request",
    "parse_socks5_reply",
    "parse_socks5_request",
    "parse_username_password",
    "reply_meaning",
]

MAX_NAME_LENGTH = 255
"""The longest host name: SOCKS 5 gives its length in one byte, and SOCKS 4a
is held to the same."""

MAX_USER_ID_LENGTH = 255
"""The longest SOCKS 4 user id (the protocol sets none; this is ours)."""

DEFAULT_MAX_BUFFERED = 64 * 1024
"""What a handshake keeps at most while its caller decides (a password is
being checked, say). The messages themselves are under 600 bytes; the rest
would be tunnel data sent ahead, which clients keep small."""

_M = TypeVar("_M")

_SOCKS4 = 4
_SOCKS5 = 5
_AUTH_VERSION = 1  # RFC 1929 section 2: "the current version of the subnegotiation"
_SOCKS4_REPLY_VERSION = 0  # the reply's VN is 0, not 4


class SOCKSError(TorsionError, ConnectionError):
    """A SOCKS negotiation failed: the proxy refused, or spoke nonsense.

    Attributes:
        version: The SOCKS version spoken (4 or 5).
        code: The reply code the proxy refused the request with (a SOCKS 5
            ``ReplyCode``, a SOCKS 4 ``SOCKS4ReplyCode``), or None when the
            failure came before a reply. For a ``SOCKSProtocolError`` raised
            while reading a request, the code a server should answer with.
    """

    def __init__(self, message: str, *, version: int = _SOCKS5, code: int | None = None) -> None:
        super().__init__(message)
        self.version = version
        self.code = code

    @property
    def meaning(self) -> str | None:
        """What ``code`` means, in words (None without a code)."""
        return None if self.code is None else reply_meaning(self.version, self.code)


class SOCKSAuthenticationError(SOCKSError):
    """The proxy accepted none of the methods offered, or refused the credentials."""


class SOCKSProtocolError(SOCKSError, ValueError):
    """The bytes are not valid SOCKS: a wrong version, a name too long, a bad field."""


class Method(enum.IntEnum):
    """SOCKS 5 authentication methods (RFC 1928 section 3)."""

    NO_AUTHENTICATION = 0x00
    GSSAPI = 0x01
    USERNAME_PASSWORD = 0x02
    NO_ACCEPTABLE = 0xFF


class Command(enum.IntEnum):
    """What a request asks for (RFC 1928 section 4; SOCKS 4 has the first two)."""

    CONNECT = 0x01
    BIND = 0x02
    UDP_ASSOCIATE = 0x03


class AddressType(enum.IntEnum):
    """How an address is written (RFC 1928 section 5)."""

    IPV4 = 0x01
    DOMAIN_NAME = 0x03
    IPV6 = 0x04


class ReplyCode(enum.IntEnum):
    """A SOCKS 5 reply's REP field (RFC 1928 section 6)."""

    SUCCEEDED = 0x00
    GENERAL_FAILURE = 0x01
    NOT_ALLOWED = 0x02
    NETWORK_UNREACHABLE = 0x03
    HOST_UNREACHABLE = 0x04
    CONNECTION_REFUSED = 0x05
    TTL_EXPIRED = 0x06
    COMMAND_NOT_SUPPORTED = 0x07
    ADDRESS_TYPE_NOT_SUPPORTED = 0x08


class SOCKS4ReplyCode(enum.IntEnum):
    """A SOCKS 4 reply's CD field."""

    GRANTED = 90
    REJECTED = 91
    NO_IDENTD = 92
    IDENTD_MISMATCH = 93


_MEANINGS_5: dict[int, str] = {
    ReplyCode.SUCCEEDED: "succeeded",
    ReplyCode.GENERAL_FAILURE: "general SOCKS server failure",
    ReplyCode.NOT_ALLOWED: "connection not allowed by ruleset",
    ReplyCode.NETWORK_UNREACHABLE: "network unreachable",
    ReplyCode.HOST_UNREACHABLE: "host unreachable",
    ReplyCode.CONNECTION_REFUSED: "connection refused",
    ReplyCode.TTL_EXPIRED: "TTL expired",
    ReplyCode.COMMAND_NOT_SUPPORTED: "command not supported",
    ReplyCode.ADDRESS_TYPE_NOT_SUPPORTED: "address type not supported",
}

_MEANINGS_4: dict[int, str] = {
    SOCKS4ReplyCode.GRANTED: "request granted",
    SOCKS4ReplyCode.REJECTED: "request rejected or failed",
    SOCKS4ReplyCode.NO_IDENTD: "rejected: the server cannot reach the client's identd",
    SOCKS4ReplyCode.IDENTD_MISMATCH: "rejected: identd reports a different user id",
}


def reply_meaning(version: int, code: int) -> str:
    """Say what a reply code means, as its RFC words it.

    Args:
        version: 4 or 5.
        code: The reply's code.
    """
    meanings = _MEANINGS_4 if version == _SOCKS4 else _MEANINGS_5
    return meanings.get(code, f"unknown reply code {code:#04x}")


# -- messages --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Greeting:
    """A SOCKS 5 client's first message: the authentication methods it offers.

    Attributes:
        methods: The method numbers, in the client's order (``Method`` values
            and any others).
    """

    methods: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class MethodSelection:
    """The SOCKS 5 server's answer to a greeting.

    Attributes:
        method: The method chosen, or ``Method.NO_ACCEPTABLE``.
    """

    method: int


@dataclass(frozen=True, slots=True, kw_only=True)
class UsernamePassword:
    """An RFC 1929 authentication request.

    Attributes:
        username: The name, as sent (at most 255 bytes).
        password: The password, as sent (at most 255 bytes).
    """

    username: bytes
    password: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthenticationReply:
    """An RFC 1929 status: 0 lets the client in, anything else does not.

    Attributes:
        status: The status byte.
    """

    status: int

    @property
    def ok(self) -> bool:
        """Whether the credentials were accepted."""
        return self.status == 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """A client's request: connect (or bind, or associate) to an address.

    Attributes:
        version: 4 (SOCKS 4 or 4a) or 5.
        command: A ``Command`` value, or another number a client sent (the
            server answers "command not supported").
        address_type: ``IPV4`` or ``IPV6`` for an address, ``DOMAIN_NAME``
            for a name the server is to resolve (SOCKS 5, or SOCKS 4a).
        host: The address (in its usual text form) or the name (ASCII).
        port: The port.
        user_id: The SOCKS 4 user id (empty for SOCKS 5).
    """

    version: int
    command: int
    address_type: AddressType
    host: str
    port: int
    user_id: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """A server's reply to a request.

    Attributes:
        version: 4 or 5 (the version of the request it answers; a SOCKS 4
            reply carries 0 on the wire).
        code: A ``ReplyCode`` (SOCKS 5) or ``SOCKS4ReplyCode`` value.
        address_type: How the bound address is written.
        host: The bound address: for CONNECT, the proxy's own address for the
            outgoing connection (RFC 1928 section 6). SOCKS 4 clients ignore it.
        port: The bound port.
    """

    version: int
    code: int
    address_type: AddressType
    host: str
    port: int

    @property
    def succeeded(self) -> bool:
        """Whether the request was granted."""
        if self.version == _SOCKS4:
            return self.code == SOCKS4ReplyCode.GRANTED
        return self.code == ReplyCode.SUCCEEDED


# -- reading ---------------------------------------------------------------------------

Buffer = bytes | bytearray | memoryview


def _check_version(data: Buffer, expected: int, what: str) -> None:
    if data and data[0] != expected:
        raise SOCKSProtocolError(f"{what}: version {data[0]}, expected {expected}")


def parse_greeting(data: Buffer) -> tuple[Greeting, int] | None:
    """Read a SOCKS 5 greeting: VER (5), NMETHODS, METHODS.

    An empty method list is read as such (RFC 1928 asks for at least one;
    the server answers it with "no acceptable methods").

    Returns:
        The greeting and its length, or None if more bytes are needed.

    Raises:
        SOCKSProtocolError: The version is not 5.
    """
    _check_version(data, _SOCKS5, "SOCKS 5 greeting")
    if len(data) < 2:
        return None
    end = 2 + data[1]
    if len(data) < end:
        return None
    return Greeting(methods=tuple(data[2:end])), end


def parse_method_selection(data: Buffer) -> tuple[MethodSelection, int] | None:
    """Read a SOCKS 5 method selection: VER (5), METHOD.

    Raises:
        SOCKSProtocolError: The version is not 5.
    """
    _check_version(data, _SOCKS5, "SOCKS 5 method selection")
    if len(data) < 2:
        return None
    return MethodSelection(method=data[1]), 2


def parse_username_password(data: Buffer) -> tuple[UsernamePassword, int] | None:
    """Read an RFC 1929 request: VER (1), ULEN, UNAME, PLEN, PASSWD.

    Empty names and passwords are read as such (some clients send an empty
    password); whether they are any good is the server's to decide.

    Raises:
        SOCKSProtocolError: The version is not 1.
    """
    _check_version(data, _AUTH_VERSION, "username/password authentication")
    if len(data) < 2:
        return None
    name_end = 2 + data[1]
    if len(data) < name_end + 1:
        return None
    end = name_end + 1 + data[name_end]
    if len(data) < end:
        return None
    username = bytes(data[2:name_end])
    return UsernamePassword(username=username, password=bytes(data[name_end + 1 : end])), end


def parse_authentication_reply(data: Buffer) -> tuple[AuthenticationReply, int] | None:
    """Read an RFC 1929 status: VER (1), STATUS.

    Raises:
        SOCKSProtocolError: The version is not 1.
    """
    _check_version(data, _AUTH_VERSION, "username/password status")
    if len(data) < 2:
        return None
    return AuthenticationReply(status=data[1]), 2


def _check_name(raw: Buffer, what: str, code: int | None, version: int) -> str:
    if not raw:
        raise SOCKSProtocolError(f"{what}: an empty host name", version=version, code=code)
    # A host name in DNS's ASCII form (IDNA names arrive as "xn--" labels):
    # no controls, spaces or bytes above 0x7E, which no resolver should see.
    if any(byte <= 0x20 or byte >= 0x7F for byte in raw):
        raise SOCKSProtocolError(
            f"{what}: the host name {bytes(raw)!r} is not printable ASCII",
            version=version,
            code=code,
        )
    return bytes(raw).decode("ascii")


def _read_address(
    data: Buffer, start: int, what: str, *, version: int, code_on_error: int | None
) -> tuple[AddressType, str, int] | None:
    """Read ATYP, ADDR, PORT from ``data[start:]``; return the type, host and end."""
    if len(data) <= start:
        return None
    kind = data[start]
    if kind == AddressType.IPV4:
        size = 4
    elif kind == AddressType.IPV6:
        size = 16
    elif kind == AddressType.DOMAIN_NAME:
        if len(data) <= start + 1:
            return None
        length = data[start + 1]
        end = start + 2 + length
        if len(data) < end:
            return None
        host = _check_name(data[start + 2 : end], what, code_on_error, version)
        return AddressType.DOMAIN_NAME, host, end
    else:
        code = None if code_on_error is None else ReplyCode.ADDRESS_TYPE_NOT_SUPPORTED
        raise SOCKSProtocolError(
            f"{what}: unknown address type {kind:#04x}", version=version, code=code
        )
    end = start + 1 + size
    if len(data) < end:
        return None
    packed = bytes(data[start + 1 : end])
    address = ipaddress.IPv4Address(packed) if size == 4 else ipaddress.IPv6Address(packed)
    return AddressType(kind), str(address), end


def _socks5_message(
    data: Buffer, what: str, *, code_on_error: int | None
) -> tuple[int, AddressType, str, int, int] | None:
    """Read VER, a byte, RSV, then an address and port: (byte, type, host, port, end)."""
    _check_version(data, _SOCKS5, what)
    # RSV (the third byte) is to be 0; it is not checked, as other servers
    # do not, so that a sloppy client still gets through.
    if len(data) < 3:
        return None
    address = _read_address(data, 3, what, version=_SOCKS5, code_on_error=code_on_error)
    if address is None:
        return None
    kind, host, end = address
    if len(data) < end + 2:
        return None
    (port,) = struct.unpack_from("!H", data, end)
    return data[1], kind, host, port, end + 2


def parse_socks5_request(data: Buffer) -> tuple[Request, int] | None:
    """Read a SOCKS 5 request: VER (5), CMD, RSV, ATYP, DST.ADDR, DST.PORT.

    Raises:
        SOCKSProtocolError: The version is not 5, the address type is
            unknown (``code`` is ``ADDRESS_TYPE_NOT_SUPPORTED``), or a name
            is empty or not printable ASCII (``code`` is ``HOST_UNREACHABLE``).
    """
    message = _socks5_message(data, "SOCKS 5 request", code_on_error=ReplyCode.HOST_UNREACHABLE)
    if message is None:
        return None
    command, kind, host, port, end = message
    request = Request(version=_SOCKS5, command=command, address_type=kind, host=host, port=port)
    return request, end


def parse_socks5_reply(data: Buffer) -> tuple[Reply, int] | None:
    """Read a SOCKS 5 reply: VER (5), REP, RSV, ATYP, BND.ADDR, BND.PORT.

    Raises:
        SOCKSProtocolError: The version is not 5, or the address is not valid.
    """
    message = _socks5_message(data, "SOCKS 5 reply", code_on_error=None)
    if message is None:
        return None
    code, kind, host, port, end = message
    return Reply(version=_SOCKS5, code=code, address_type=kind, host=host, port=port), end


def _read_null_terminated(
    data: Buffer, start: int, limit: int, what: str
) -> tuple[bytes, int] | None:
    """Read bytes up to a NUL within ``limit`` bytes; return them and the end."""
    window = bytes(data[start : start + limit + 1])
    at = window.find(b"\0")
    if at < 0:
        if len(window) > limit:
            raise SOCKSProtocolError(
                f"SOCKS 4 request: {what} longer than {limit} bytes",
                version=_SOCKS4,
                code=SOCKS4ReplyCode.REJECTED,
            )
        return None
    return window[:at], start + at + 1


def parse_socks4_request(
    data: Buffer,
    *,
    max_user_id: int = MAX_USER_ID_LENGTH,
    max_name: int = MAX_NAME_LENGTH,
) -> tuple[Request, int] | None:
    """Read a SOCKS 4 or 4a request: VN (4), CD, DSTPORT, DSTIP, USERID, NUL[, name, NUL].

    An address of 0.0.0.x with x not 0 means a 4a request: a host name
    follows the user id.

    Args:
        data: The bytes received so far.
        max_user_id: The longest user id accepted.
        max_name: The longest host name accepted.

    Raises:
        SOCKSProtocolError: The version is not 4, or the user id or name is
            too long, empty (a name) or not printable ASCII (a name).
    """
    _check_version(data, _SOCKS4, "SOCKS 4 request")
    if len(data) < 8:
        return None
    command, port = struct.unpack_from("!BH", data, 1)
    packed = bytes(data[4:8])
    found = _read_null_terminated(data, 8, max_user_id, "the user id")
    if found is None:
        return None
    user_id, end = found
    if packed[:3] == b"\0\0\0" and packed[3] != 0:
        named = _read_null_terminated(data, end, max_name, "the host name")
        if named is None:
            return None
        raw, end = named
        host = _check_name(raw, "SOCKS 4a request", SOCKS4ReplyCode.REJECTED, _SOCKS4)
        kind = AddressType.DOMAIN_NAME
    else:
        host = str(ipaddress.IPv4Address(packed))
        kind = AddressType.IPV4
    request = Request(
        version=_SOCKS4, command=command, address_type=kind, host=host, port=port, user_id=user_id
    )
    return request, end


def parse_socks4_reply(data: Buffer) -> tuple[Reply, int] | None:
    """Read a SOCKS 4 reply: VN (0), CD, DSTPORT, DSTIP.

    Raises:
        SOCKSProtocolError: VN is not 0.
    """
    if data and data[0] != _SOCKS4_REPLY_VERSION:
        raise SOCKSProtocolError(f"SOCKS 4 reply: version {data[0]}, expected 0", version=_SOCKS4)
    if len(data) < 8:
        return None
    code, port = struct.unpack_from("!BH", data, 1)
    host = str(ipaddress.IPv4Address(bytes(data[4:8])))
    reply = Reply(version=_SOCKS4, code=code, address_type=AddressType.IPV4, host=host, port=port)
    return reply, 8


# -- writing ---------------------------------------------------------------------------


def _byte(value: int, what: str) -> int:
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{what} must be 0 to 255, not {value}")
    return value


def _port(port: int) -> bytes:
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port must be 0 to 65535, not {port}")
    return struct.pack("!H", port)


def _as_bytes(value: str | bytes, what: str, limit: int) -> bytes:
    raw = value.encode() if isinstance(value, str) else bytes(value)
    if len(raw) > limit:
        raise ValueError(f"{what} is {len(raw)} bytes; at most {limit} fit")
    return raw


def _name_bytes(host: str) -> bytes:
    try:
        raw = host.encode("ascii")
    except UnicodeEncodeError:
        # A name in another script goes in its DNS form ("xn--" labels).
        raw = host.encode("idna")
    if not 1 <= len(raw) <= MAX_NAME_LENGTH:
        raise ValueError(f"a host name must be 1 to {MAX_NAME_LENGTH} bytes, not {len(raw)}")
    if any(byte <= 0x20 or byte >= 0x7F for byte in raw):
        raise ValueError(f"the host name {host!r} has spaces or control characters")
    return raw


def build_greeting(methods: Iterable[int]) -> bytes:
    """Make a SOCKS 5 greeting offering ``methods`` (1 to 255 of them)."""
    offered = bytes(_byte(m, "a method") for m in methods)
    if not 1 <= len(offered) <= 255:
        raise ValueError(f"a greeting offers 1 to 255 methods, not {len(offered)}")
    return bytes((_SOCKS5, len(offered))) + offered


def build_method_selection(method: int) -> bytes:
    """Make a SOCKS 5 method selection (``Method.NO_ACCEPTABLE`` refuses)."""
    return bytes((_SOCKS5, _byte(method, "the method")))


def build_username_password(username: str | bytes, password: str | bytes) -> bytes:
    """Make an RFC 1929 request; text is sent as UTF-8.

    Raises:
        ValueError: Either is over 255 bytes.
    """
    name = _as_bytes(username, "the username", 255)
    secret = _as_bytes(password, "the password", 255)
    return bytes((_AUTH_VERSION, len(name))) + name + bytes((len(secret),)) + secret


def build_authentication_reply(ok: bool) -> bytes:
    """Make an RFC 1929 status: success (0) or failure (1)."""
    return bytes((_AUTH_VERSION, 0 if ok else 1))


def _address_bytes(host: str) -> bytes:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raw = _name_bytes(host)
        return bytes((AddressType.DOMAIN_NAME, len(raw))) + raw
    kind = AddressType.IPV4 if address.version == 4 else AddressType.IPV6
    return bytes((kind,)) + address.packed


def build_socks5_request(command: int, host: str, port: int) -> bytes:
    """Make a SOCKS 5 request; an IP address goes as one, anything else as a name.

    Sending the name (rather than resolving it here) lets the proxy resolve
    it: the "remote DNS" of ``curl --socks5-hostname``.

    Raises:
        ValueError: The name is empty, over 255 bytes or has control
            characters; the port or command is out of range.
    """
    return bytes((_SOCKS5, _byte(command, "the command"), 0)) + _address_bytes(host) + _port(port)


def build_socks5_reply(code: int, host: str = "0.0.0.0", port: int = 0) -> bytes:
    """Make a SOCKS 5 reply with the bound address ``host:port``."""
    return bytes((_SOCKS5, _byte(code, "the reply code"), 0)) + _address_bytes(host) + _port(port)


def build_socks4_request(command: int, host: str, port: int, user_id: str | bytes = b"") -> bytes:
    """Make a SOCKS 4 request, or a 4a one (the name sent along) if ``host`` is a name.

    Raises:
        ValueError: ``host`` is an IPv6 address (SOCKS 4 has none), or 0.0.0.x
            (which reads as 4a); the user id or name is too long or has a
            NUL; the port or command is out of range.
    """
    ident = _as_bytes(user_id, "the user id", MAX_USER_ID_LENGTH)
    if b"\0" in ident:
        raise ValueError("a SOCKS 4 user id cannot hold a NUL byte")
    head = bytes((_SOCKS4, _byte(command, "the command"))) + _port(port)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        # 4a: an address 0.0.0.x (x not 0) says "the name follows".
        return head + b"\0\0\0\x01" + ident + b"\0" + _name_bytes(host) + b"\0"
    if address.version != 4:
        raise ValueError(f"SOCKS 4 cannot carry the IPv6 address {host}")
    if address.packed[:3] == b"\0\0\0" and address.packed[3] != 0:
        raise ValueError(f"{host} cannot be sent: SOCKS 4a reads it as 'a name follows'")
    return head + address.packed + ident + b"\0"


def build_socks4_reply(code: int, host: str = "0.0.0.0", port: int = 0) -> bytes:
    """Make a SOCKS 4 reply (VN 0); clients ignore the address, which must be IPv4."""
    packed = ipaddress.IPv4Address(host).packed
    return bytes((_SOCKS4_REPLY_VERSION, _byte(code, "the reply code"))) + _port(port) + packed
