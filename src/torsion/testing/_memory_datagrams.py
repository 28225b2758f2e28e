"""Datagram ports that ``MemoryReactor`` hands out: UDP and Unix datagrams.

A port is made already "open": its protocol got ``connection_made`` with an
in-memory ``DatagramTransport`` before ``listen_udp`` (or its kin) returned.
The test plays the network through the port:

* ``port.deliver(data, addr)`` hands the protocol a datagram, as if one
  arrived from ``addr``;
* ``port.deliver_error(exc)`` reports an error (``ConnectionRefusedError``
  for ICMP port unreachable) to ``error_received``;
* ``port.written`` lists what the protocol sent, as ``(data, addr)`` pairs
  in the socket module's address form (the peer's, on a connected port).

Closing the port (``stop_listening``, or the protocol closing its
transport) calls ``connection_lost(None)`` at once. A closed port refuses
to deliver: ``deliver`` raises ``RuntimeError``, since a test that hands a
datagram to a closed port is mistaken about what it plays (the network
would drop it, and the protocol would never know). Likewise a connected
port only receives from its peer (the kernel drops the rest, udp(7)), so
delivering from elsewhere raises ``ValueError``. Datagrams the protocol
sends after the port closed are dropped, as asyncio drops them.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
from typing import Any, ClassVar, Generic, TypeVar

from torsion.defer import Deferred, succeed
from torsion.internet import (
    Address,
    IPv4Address,
    IPv6Address,
    UNIXAddress,
    to_sockaddr,
)

__all__ = ["MemoryUDPPort", "MemoryUNIXDatagramPort"]

D = TypeVar("D", bound=asyncio.DatagramProtocol)

_Buffer = bytes | bytearray | memoryview

# Where datagrams delivered to an unconnected IP port come from by default
# (TEST-NET-1 and the documentation prefix, RFC 5737 and RFC 3849).
_DEFAULT_SENDER_V4 = ("192.0.2.2", 54321)
_DEFAULT_SENDER_V6 = ("2001:db8::2", 54321, 0, 0)


class _MemoryDatagramTransport(asyncio.DatagramTransport):
    """The transport a memory port gives its protocol: ``sendto`` records."""

    def __init__(self, port: _MemoryDatagramPort[Any]) -> None:
        super().__init__()
        self._port = port

    def sendto(self, data: _Buffer, addr: Any = None) -> None:
        """Record a datagram in the port's ``written`` (dropped once closed).

        Raises:
            TypeError: ``data`` is not bytes-like.
            ValueError: The port is connected and ``addr`` is not its peer.
        """
        self._port._sent(data, addr)

    def abort(self) -> None:
        """Close the port at once (nothing is buffered to drop)."""
        self._port._close()

    def close(self) -> None:
        """Close the port; the protocol's ``connection_lost(None)`` is called."""
        self._port._close()

    def is_closing(self) -> bool:
        """Return whether the port was closed."""
        return not self._port.listening

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """Answer "sockname" and "peername" (None when not connected)."""
        if name == "sockname":
            return to_sockaddr(self._port._own_address())
        if name == "peername":
            peer = self._port._peer_address()
            return None if peer is None else to_sockaddr(peer)
        return default

    def get_protocol(self) -> asyncio.BaseProtocol:
        """Return the port's protocol."""
        protocol: asyncio.BaseProtocol = self._port.protocol
        return protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Refuse: a memory port keeps the protocol it was opened with.

        Raises:
            NotImplementedError: Always.
        """
        raise NotImplementedError("a memory datagram port keeps its protocol")

    def get_write_buffer_size(self) -> int:
        """Return 0: a memory port sends everything at once."""
        return 0

    def __repr__(self) -> str:
        return f"<transport of {self._port!r}>"


class _MemoryDatagramPort(Generic[D]):
    """What UDP and Unix datagram memory ports share: delivering and recording."""

    _kind: ClassVar[str] = "datagram"

    def _open(self, protocol: D) -> None:
        self.protocol = protocol
        self.written: list[tuple[bytes, Any]] = []
        self._closed = False
        self._memory_transport = _MemoryDatagramTransport(self)
        protocol.connection_made(self._memory_transport)

    @property
    def transport(self) -> asyncio.DatagramTransport:
        """The transport the protocol was given."""
        return self._memory_transport

    @property
    def listening(self) -> bool:
        """Whether the port is open (not stopped, its transport not closed)."""
        return not self._closed

    def stop_listening(self) -> Deferred[None]:
        """Close the port: ``connection_lost(None)`` is called; the Deferred has fired."""
        self._close()
        return succeed(None)

    def close_now(self) -> None:
        """Close the port (the same as ``stop_listening``)."""
        self._close()

    def deliver(self, data: bytes, addr: Any = None) -> None:
        """Hand the protocol a datagram, as if it arrived from ``addr``.

        Args:
            data: The datagram.
            addr: The sender, typed (``IPv4Address``, ``UNIXAddress``...) or
                in the socket module's form; the protocol gets the latter.
                By default the peer on a connected port, else a made-up
                sender (see the subclass).

        Raises:
            RuntimeError: The port is closed.
            ValueError: The port is connected and ``addr`` is not its peer.
        """
        if self._closed:
            raise RuntimeError(f"{self!r} is closed: nothing receives datagrams there")
        if isinstance(addr, IPv4Address | IPv6Address | UNIXAddress):
            addr = to_sockaddr(addr)
        peer_address = self._peer_address()
        if peer_address is not None:
            peer = to_sockaddr(peer_address)
            if addr is None:
                addr = peer
            elif addr != peer:
                raise ValueError(f"{self!r} only receives from its peer, not from {addr!r}")
        elif addr is None:
            addr = self._default_sender()
        self.protocol.datagram_received(bytes(data), addr)

    def deliver_error(self, exc: Exception) -> None:
        """Report an error to the protocol's ``error_received`` (the port stays open).

        Raises:
            RuntimeError: The port is closed.
        """
        if self._closed:
            raise RuntimeError(f"{self!r} is closed: it reports no errors")
        self.protocol.error_received(exc)

    def _own_address(self) -> Address:
        raise NotImplementedError

    def _peer_address(self) -> Address | None:
        raise NotImplementedError

    def _default_sender(self) -> Any:
        raise NotImplementedError

    def _sent(self, data: _Buffer, addr: Any) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"data must be bytes-like, not {type(data).__name__}")
        if self._closed:
            return  # asyncio drops what is sent after close
        if isinstance(addr, IPv4Address | IPv6Address | UNIXAddress):
            addr = to_sockaddr(addr)
        peer_address = self._peer_address()
        if peer_address is not None:
            peer = to_sockaddr(peer_address)
            if addr not in (None, peer):
                raise ValueError(f"Invalid address: must be None or {peer!r}")
            addr = peer
        elif addr is None:
            # send(2) on an unconnected socket: the kernel wants an address.
            error = OSError(errno.EDESTADDRREQ, "Destination address required")
            self.protocol.error_received(error)
            return
        self.written.append((bytes(data), addr))

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.protocol.connection_lost(None)

    def _describe(self) -> str:
        state = "listening" if self.listening else "stopped"
        peer = self._peer_address()
        connected = f" connected to {peer}" if peer is not None else ""
        return f"{state} on {self._own_address()}{connected}"


class MemoryUDPPort(_MemoryDatagramPort[asyncio.DatagramProtocol]):
    """What ``listen_udp`` and ``connect_udp`` return: a UDP port in memory.

    Multicast settings are kept as state and checked as the system checks
    them (a multicast address of the port's family; joining twice or
    leaving a group not joined fails with ``OSError``).

    Attributes:
        address: The address "bound" to (kind "udp"; a made-up port if 0
            was asked for).
        peer: The address ``connect_udp`` connected to, or None.
        interface: The interface asked for.
        reuse_port: Whether SO_REUSEPORT was asked for.
        protocol: The protocol serving the port.
        written: What the protocol sent, as ``(data, addr)`` pairs.
        groups: The multicast groups joined, as ``(group, interface)`` pairs.
        outgoing_interface: What ``set_outgoing_interface`` set ("" for the
            system's choice).
    """

    _kind = "UDP"

    def __init__(
        self,
        protocol: asyncio.DatagramProtocol,
        address: IPv4Address | IPv6Address,
        *,
        peer: IPv4Address | IPv6Address | None = None,
        interface: str = "",
        reuse_port: bool = False,
    ) -> None:
        self.address: IPv4Address | IPv6Address = address
        self.peer: IPv4Address | IPv6Address | None = peer
        self.interface = interface
        self.reuse_port = reuse_port
        self.groups: set[tuple[str, str]] = set()
        self.outgoing_interface = ""
        # The system's defaults: one hop, and looped back to this host (ip(7)).
        self._ttl = 1
        self._loopback = True
        self._open(protocol)

    @property
    def host(self) -> str:
        """The IP address "bound" to."""
        return self.address.host

    @property
    def port(self) -> int:
        """The port "bound" to."""
        return self.address.port

    def join_group(self, group: str, interface: str = "") -> None:
        """Record joining multicast ``group`` on ``interface``.

        Raises:
            ValueError: ``group`` is not a multicast address of this family.
            OSError: The group was joined there already (EADDRINUSE), or the
                port is closed (EBADF).
        """
        key = (self._check_group(group), interface)
        if key in self.groups:
            raise OSError(errno.EADDRINUSE, f"multicast group {group} already joined")
        self.groups.add(key)

    def leave_group(self, group: str, interface: str = "") -> None:
        """Record leaving multicast ``group`` on ``interface``.

        Raises:
            ValueError: ``group`` is not a multicast address of this family.
            OSError: The group was not joined there (EADDRNOTAVAIL), or the
                port is closed (EBADF).
        """
        key = (self._check_group(group), interface)
        if key not in self.groups:
            raise OSError(errno.EADDRNOTAVAIL, f"multicast group {group} was not joined")
        self.groups.discard(key)

    @property
    def ttl(self) -> int:
        """The multicast hop limit (1 until set)."""
        return self._ttl

    def set_ttl(self, ttl: int) -> None:
        """Set ``ttl``.

        Raises:
            ValueError: ``ttl`` is not 0 to 255.
        """
        if not 0 <= ttl <= 255:
            raise ValueError(f"a multicast TTL is 0 to 255, not {ttl}")
        self._check_open()
        self._ttl = ttl

    @property
    def loopback(self) -> bool:
        """Whether multicast sent from here loops back to this host (True until set)."""
        return self._loopback

    def set_loopback(self, loopback: bool) -> None:
        """Set ``loopback``."""
        self._check_open()
        self._loopback = bool(loopback)

    def set_outgoing_interface(self, interface: str) -> None:
        """Record the interface multicast datagrams leave by."""
        self._check_open()
        self.outgoing_interface = interface

    def _check_group(self, group: str) -> str:
        ipv6 = isinstance(self.address, IPv6Address)
        try:
            address = ipaddress.ip_address(group)
        except ValueError:
            raise ValueError(f"not a multicast address: {group!r}") from None
        if not address.is_multicast or (address.version == 6) != ipv6:
            family = "IPv6" if ipv6 else "IPv4"
            raise ValueError(f"not an {family} multicast address: {group!r}")
        self._check_open()
        return str(address)

    def _check_open(self) -> None:
        if not self.listening:
            raise OSError(errno.EBADF, f"{self!r} is closed")

    def _own_address(self) -> Address:
        return self.address

    def _peer_address(self) -> Address | None:
        return self.peer

    def _default_sender(self) -> Any:
        if isinstance(self.address, IPv6Address):
            return _DEFAULT_SENDER_V6
        return _DEFAULT_SENDER_V4

    def __repr__(self) -> str:
        return f"<MemoryUDPPort {self._describe()}>"


class MemoryUNIXDatagramPort(_MemoryDatagramPort[D]):
    r"""What ``listen_unix_datagram`` and ``connect_unix_datagram`` return, in memory.

    No socket file is made or removed. Datagrams delivered to an unconnected
    port come from an unnamed sender (``addr`` None) unless the test says
    otherwise.

    Attributes:
        address: This socket's address (``UNIXAddress(None)`` if unnamed).
        peer: The address ``connect_unix_datagram`` connected to, or None.
        mode: The file mode asked for.
        protocol: The protocol serving the port.
        written: What the protocol sent, as ``(data, addr)`` pairs (addr a
            path as the socket module gives it).
    """

    _kind = "Unix datagrams"

    def __init__(
        self,
        protocol: D,
        address: UNIXAddress,
        *,
        peer: UNIXAddress | None = None,
        mode: int = 0o666,
    ) -> None:
        self.address = address
        self.peer = peer
        self.mode = mode
        self._open(protocol)

    def _own_address(self) -> Address:
        return self.address

    def _peer_address(self) -> Address | None:
        return self.peer

    def _default_sender(self) -> Any:
        return None  # an unnamed sender, as the socket module reports it

    def __repr__(self) -> str:
        return f"<MemoryUNIXDatagramPort {self._describe()}>"
