"""UDP: datagram ports, connected ones, and multicast, over asyncio's transports.

``listen_udp`` and ``connect_udp`` bind their socket at once, in the caller's
thread, so that the port (the real one, for port 0) is known and a port
already taken fails right there with ``CannotListenError``; asyncio then
serves that socket and talks to the protocol directly, so the datagram path
has no torsion code in it. A ``UDPPort`` is what they return: its address,
``stop_listening``, and the multicast options (group membership, TTL,
loopback, outgoing interface), which are socket options set at once.

The protocol's call order, for one port::

    connection_made [-> datagram_received* | error_received*] -> connection_lost
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
import struct
from collections.abc import Callable
from typing import Any, Protocol, cast

from torsion.errors import CannotListenError
from torsion.internet._address import (
    Address,
    IPv4Address,
    IPv6Address,
    to_address,
    to_sockaddr,
)
from torsion.internet._datagram import DatagramPort
from torsion.internet._listener import ListeningPort

__all__ = [
    "DatagramProtocol",
    "ReactorUDP",
    "UDPListeningPort",
    "UDPPort",
    "connect_udp",
    "listen_udp",
]

_log = logging.getLogger("torsion.internet")


class DatagramProtocol(asyncio.DatagramProtocol):
    """Base class for UDP protocols: override the events you care about.

    The contract is asyncio's, unchanged: ``datagram_received(data, addr)``
    gets the sender's address as the socket module reports it, a tuple
    (``(host, port)`` for IPv4, ``(host, port, flowinfo, scope_id)`` for
    IPv6). That is what every asyncio datagram transport passes, it costs
    nothing per datagram, and it goes straight back into
    ``transport.sendto(reply, addr)``. When a typed address is wanted, make
    it with ``to_address(addr, "udp")``; ``host``, ``peer`` and ``send``
    speak typed addresses.

    Errors the socket reports (``ConnectionRefusedError`` once a connected
    port's peer answered with ICMP port unreachable, ``OSError`` EMSGSIZE
    for a datagram too large to send) arrive at ``error_received``; the port
    stays open. The default logs them at debug level, without a traceback.

    When overriding ``connection_made``, ``pause_writing``,
    ``resume_writing`` or ``connection_lost``, call the base method too.

    Attributes:
        transport: The port's transport, set by ``connection_made``; send with
            ``self.transport.sendto(data, addr)`` or ``self.send(data, address)``.
    """

    transport: asyncio.DatagramTransport
    # Class-level defaults, so that subclasses need not call __init__.
    _writing_paused = False
    _lost = False

    @property
    def host(self) -> Address:
        """The address of this end (an ``IPv4Address`` or ``IPv6Address``, kind "udp")."""
        return to_address(self.transport.get_extra_info("sockname"), "udp")

    @property
    def peer(self) -> Address | None:
        """The address the port is connected to, or None if it is not connected."""
        peername = self.transport.get_extra_info("peername")
        return None if peername is None else to_address(peername, "udp")

    @property
    def writing_paused(self) -> bool:
        """Whether the transport's send buffer is above its high-water mark."""
        return self._writing_paused

    def send(self, data: bytes, address: IPv4Address | IPv6Address | None = None) -> bool:
        """Send one datagram, or drop it if the transport cannot take it now.

        UDP may lose datagrams anyway, so while the transport's send buffer is
        above its high-water mark (the kernel's buffer was full) or the port
        is closed, the datagram is dropped rather than buffered without bound.

        Args:
            data: The datagram.
            address: Where to send it (an IP address, never a name: no lookup
                is made); None on a connected port, which sends to its peer.

        Returns:
            True if the datagram was handed to the transport, False if dropped.
        """
        if self._writing_paused or self._lost or self.transport.is_closing():
            return False
        self.transport.sendto(data, None if address is None else to_sockaddr(address))
        return True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Called once, when the port is ready; keeps ``transport``."""
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        """Called with each datagram and its sender's address (a socket-module tuple)."""

    def error_received(self, exc: Exception) -> None:
        """Called when a send or receive failed; the port stays open.

        Args:
            exc: The error, an ``OSError`` (``ConnectionRefusedError`` when a
                connected port's peer has no one listening).
        """
        _log.debug("%r: %s", self, exc)

    def connection_lost(self, exc: Exception | None) -> None:
        """Called once, last, when the port is closed.

        Args:
            exc: None when it was closed on purpose, or the error that closed it.
        """
        self._lost = True

    def pause_writing(self) -> None:
        """The transport's send buffer went above its high-water mark."""
        self._writing_paused = True

    def resume_writing(self) -> None:
        """The transport's send buffer drained below its low-water mark."""
        self._writing_paused = False


class UDPListeningPort(ListeningPort, Protocol):
    """A UDP port: its address, and its multicast options."""

    @property
    def host(self) -> str:
        """The address bound to ("0.0.0.0" for every IPv4 interface)."""
        ...

    @property
    def port(self) -> int:
        """The port number (the one the system chose, if 0 was asked for)."""
        ...

    @property
    def peer(self) -> IPv4Address | IPv6Address | None:
        """The address the port is connected to, or None."""
        ...

    def join_group(self, group: str, interface: str = "") -> None:
        """Receive the datagrams sent to multicast ``group``."""
        ...

    def leave_group(self, group: str, interface: str = "") -> None:
        """Stop receiving ``group``'s datagrams."""
        ...

    @property
    def ttl(self) -> int:
        """How many routers multicast datagrams sent from this port may cross."""
        ...

    def set_ttl(self, ttl: int) -> None:
        """Set ``ttl``."""
        ...

    @property
    def loopback(self) -> bool:
        """Whether multicast datagrams sent from this host are delivered to it too."""
        ...

    def set_loopback(self, loopback: bool) -> None:
        """Set ``loopback``."""
        ...

    def set_outgoing_interface(self, interface: str) -> None:
        """Send multicast datagrams out of ``interface``."""
        ...


class ReactorUDP(Protocol):
    """What opens UDP ports."""

    def listen_udp(
        self,
        port: int,
        protocol: asyncio.DatagramProtocol,
        *,
        interface: str = "",
        reuse_port: bool = False,
    ) -> UDPListeningPort:
        """Bind a UDP port on ``interface:port``, served by ``protocol``."""
        ...

    def connect_udp(
        self,
        host: str,
        port: int,
        protocol: asyncio.DatagramProtocol,
        *,
        interface: str = "",
        local_port: int = 0,
    ) -> UDPListeningPort:
        """Bind a UDP port connected to ``host:port`` (an IP address)."""
        ...


def listen_udp(
    loop: asyncio.AbstractEventLoop,
    port: int,
    protocol: asyncio.DatagramProtocol,
    *,
    interface: str = "",
    reuse_port: bool = False,
    on_stopped: Callable[[UDPPort], object] | None = None,
) -> UDPPort:
    """Bind a UDP socket on ``interface:port`` now, and serve it on ``loop``.

    SO_REUSEADDR is not set: on Linux it would let any other socket, of
    any user, bind the same UDP port and take a share of its datagrams.
    ``reuse_port`` (SO_REUSEPORT) allows it for sockets of the same user
    only: several ports bound so each get a copy of every multicast datagram
    and a share of the unicast ones (socket(7)).

    Args:
        loop: The loop that serves the port.
        port: The port; 0 lets the system choose (see ``UDPPort.port``).
        protocol: Receives the port's events; one protocol serves one port.
        interface: The address to bind to: "" for every IPv4 interface, "::"
            for every IPv6 one, an IP address, or a name (resolved at once,
            blocking). A multicast receiver binds to every interface (or to
            the group's address) and then joins the group.
        reuse_port: Set SO_REUSEPORT before binding.
        on_stopped: Called with the port once it has closed.

    Raises:
        CannotListenError: The address could not be bound (taken, not ours,
            not resolvable).
        ValueError: ``protocol`` already serves another port, or
            ``reuse_port`` was asked for where the system has no SO_REUSEPORT.
    """
    sock = _bind(interface, port, socket.AF_UNSPEC, reuse_port=reuse_port)
    return _serve(loop, sock, protocol, on_stopped)


def connect_udp(
    loop: asyncio.AbstractEventLoop,
    host: str,
    port: int,
    protocol: asyncio.DatagramProtocol,
    *,
    interface: str = "",
    local_port: int = 0,
    on_stopped: Callable[[UDPPort], object] | None = None,
) -> UDPPort:
    """Bind a UDP socket and connect it to one peer, now; serve it on ``loop``.

    A connected port only receives datagrams from ``host:port`` (the kernel
    drops the rest, udp(7)), ``transport.sendto(data)`` needs no address,
    and when the peer answers with ICMP port unreachable the protocol's
    ``error_received`` gets a ``ConnectionRefusedError`` (the port stays
    open: UDP has no connection to lose).

    Args:
        loop: The loop that serves the port.
        host: The peer's IP address (resolve a name first, with
            ``reactor.resolve``).
        port: The peer's port.
        protocol: Receives the port's events; one protocol serves one port.
        interface: The local address to bind to ("" for every interface of
            the peer's address family).
        local_port: The local port; 0 lets the system choose.
        on_stopped: Called with the port once it has closed.

    Raises:
        ValueError: ``host`` is not an IP address, or ``protocol`` already
            serves another port.
        CannotListenError: The local address could not be bound.
        OSError: The socket could not be connected (no route to ``host``).
    """
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        raise ValueError(f"connect_udp needs an IP address, not {host!r}") from None
    sock = _bind(interface, local_port, family)
    try:
        # Blocking is fine: connecting a UDP socket only records the peer.
        infos = socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM, 0, socket.AI_NUMERICHOST)
        sock.connect(infos[0][4])
    except BaseException:
        sock.close()
        raise
    return _serve(loop, sock, protocol, on_stopped)


def _bind(interface: str, port: int, family: int, *, reuse_port: bool = False) -> socket.socket:
    if reuse_port and not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("this system has no SO_REUSEPORT")
    if not interface:
        interface = "::" if family == socket.AF_INET6 else "0.0.0.0"
    try:
        infos = socket.getaddrinfo(
            interface, port, family, socket.SOCK_DGRAM, 0, socket.AI_PASSIVE
        )
        family, kind, proto, _, sockaddr = infos[0]
    except (OSError, IndexError) as exc:
        reason = exc if isinstance(exc, OSError) else OSError(str(exc))
        raise CannotListenError(interface, port, reason) from exc
    sock = socket.socket(family, kind, proto)
    try:
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise CannotListenError(interface, port, exc) from exc
    return sock


def _serve(
    loop: asyncio.AbstractEventLoop,
    sock: socket.socket,
    protocol: asyncio.DatagramProtocol,
    on_stopped: Callable[[UDPPort], object] | None,
) -> UDPPort:
    try:
        return UDPPort(loop, sock, protocol, on_stopped=on_stopped)
    except BaseException:
        sock.close()
        raise


class UDPPort(DatagramPort[asyncio.DatagramProtocol]):
    """A bound UDP socket served by a protocol, as ``listen_udp`` returns it.

    Args:
        loop: The loop that serves the port.
        sock: A bound UDP socket (connected, for a connected port); the port
            owns it from now on.
        protocol: Receives the port's events.
        on_stopped: Called with the port once it has closed.

    Raises:
        ValueError: ``protocol`` already serves another port.
        RuntimeError: ``loop`` is closed.

    Attributes:
        address: The address bound to (an ``IPv4Address`` or ``IPv6Address``
            of kind "udp").
        peer: The address the port is connected to, or None.
        protocol: The protocol serving the port.
    """

    _kind = "UDP"

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        protocol: asyncio.DatagramProtocol,
        *,
        on_stopped: Callable[[UDPPort], object] | None = None,
    ) -> None:
        self.address = _ip_address(sock.getsockname())
        try:
            peer = sock.getpeername()
        except OSError:  # ENOTCONN: not a connected port.
            peer = None
        self.peer = None if peer is None else _ip_address(peer)
        super().__init__(loop, sock, protocol, on_stopped=on_stopped)

    # -- addresses -------------------------------------------------------------

    @property
    def host(self) -> str:
        """The IP address bound to ("0.0.0.0" for every IPv4 interface)."""
        return self.address.host

    @property
    def port(self) -> int:
        """The port bound to (the one the system chose, if 0 was asked for)."""
        return self.address.port

    # -- multicast -----------------------------------------------------------------

    def join_group(self, group: str, interface: str = "") -> None:
        """Receive the datagrams sent to multicast ``group`` (IP_ADD_MEMBERSHIP).

        The port must be bound to the group's port, on every interface (or
        on the group's address).

        Args:
            group: A multicast address of the port's family (224.0.0.0/4,
                ff00::/8).
            interface: Where to join. IPv4: the address of a local interface
                ("127.0.0.1"), or "" for the one the routing table picks.
                IPv6: an interface name ("lo") or index, or "" for the default.

        Raises:
            ValueError: ``group`` is not a multicast address of this family,
                or ``interface`` is not an address.
            OSError: The system refused (the interface cannot multicast, the
                group was joined already, the port is closed).
        """
        self._membership(group, interface, join=True)

    def leave_group(self, group: str, interface: str = "") -> None:
        """Stop receiving ``group``'s datagrams (IP_DROP_MEMBERSHIP).

        Args:
            group: A group joined with ``join_group``.
            interface: The interface it was joined on.

        Raises:
            ValueError: ``group`` is not a multicast address of this family.
            OSError: The group was not joined there, or the port is closed.
        """
        self._membership(group, interface, join=False)

    @property
    def ttl(self) -> int:
        """The hop limit of multicast datagrams sent from here (1, this network, by default)."""
        level, option = self._option(socket.IP_MULTICAST_TTL, socket.IPV6_MULTICAST_HOPS)
        return self._socket().getsockopt(level, option)

    def set_ttl(self, ttl: int) -> None:
        """Set how many routers multicast datagrams sent from here may cross.

        Args:
            ttl: 0 (this host only) to 255.

        Raises:
            ValueError: ``ttl`` is out of range.
        """
        if not 0 <= ttl <= 255:
            raise ValueError(f"a multicast TTL is 0 to 255, not {ttl}")
        level, option = self._option(socket.IP_MULTICAST_TTL, socket.IPV6_MULTICAST_HOPS)
        self._setsockopt(level, option, ttl)

    @property
    def loopback(self) -> bool:
        """Whether multicast datagrams sent from here reach this host's members too."""
        level, option = self._option(socket.IP_MULTICAST_LOOP, socket.IPV6_MULTICAST_LOOP)
        return bool(self._socket().getsockopt(level, option))

    def set_loopback(self, loopback: bool) -> None:
        """Set whether multicast datagrams sent from here reach this host's members."""
        level, option = self._option(socket.IP_MULTICAST_LOOP, socket.IPV6_MULTICAST_LOOP)
        self._setsockopt(level, option, int(loopback))

    def set_outgoing_interface(self, interface: str) -> None:
        """Send multicast datagrams out of ``interface`` (IP_MULTICAST_IF).

        Args:
            interface: IPv4: a local interface's address, or "" for the
                routing table's choice. IPv6: an interface name or index, or "".

        Raises:
            ValueError: ``interface`` is not an address of this family.
        """
        if isinstance(self.address, IPv6Address):
            index = _interface_index(interface)
            self._setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
        else:
            packed = _packed_ipv4(interface)
            self._setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, packed)

    def _membership(self, group: str, interface: str, *, join: bool) -> None:
        ipv6 = isinstance(self.address, IPv6Address)
        try:
            address = ipaddress.ip_address(group)
        except ValueError:
            raise ValueError(f"not a multicast address: {group!r}") from None
        if not address.is_multicast or (address.version == 6) != ipv6:
            family = "IPv6" if ipv6 else "IPv4"
            raise ValueError(f"not an {family} multicast address: {group!r}")
        if ipv6:
            # struct ipv6_mreq: the group, then the interface index (ipv6(7)).
            option = socket.IPV6_JOIN_GROUP if join else socket.IPV6_LEAVE_GROUP
            request = address.packed + struct.pack("@I", _interface_index(interface))
            level = socket.IPPROTO_IPV6
        else:
            # struct ip_mreq: the group, then the local interface's address (ip(7)).
            option = socket.IP_ADD_MEMBERSHIP if join else socket.IP_DROP_MEMBERSHIP
            request = address.packed + _packed_ipv4(interface)
            level = socket.IPPROTO_IP
        try:
            self._socket().setsockopt(level, option, request)
        except OSError as exc:
            verb = "join" if join else "leave"
            where = interface or "the default interface"
            raise OSError(
                exc.errno, f"cannot {verb} multicast group {group} on {where}: {exc.strerror}"
            ) from exc

    def _option(self, ipv4: int, ipv6: int) -> tuple[int, int]:
        if isinstance(self.address, IPv6Address):
            return socket.IPPROTO_IPV6, ipv6
        return socket.IPPROTO_IP, ipv4

    def _setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        self._socket().setsockopt(level, option, value)

    def _socket(self) -> socket.socket:
        # Both loops serve this very descriptor, and close it with the transport.
        if self._stopped or self._sock.fileno() < 0:
            raise OSError(errno.EBADF, f"{self!r} is closed")
        return self._sock

    def __repr__(self) -> str:
        state = "listening" if self.listening else "stopped"
        connected = f" connected to {self.peer}" if self.peer is not None else ""
        return f"<UDPPort {state} on {self.address}{connected}>"


def _ip_address(sockaddr: Any) -> IPv4Address | IPv6Address:
    address = to_address(sockaddr, "udp")
    if not isinstance(address, IPv4Address | IPv6Address):  # pragma: no cover
        raise TypeError(f"not an IP socket address: {sockaddr!r}")
    return address


def _packed_ipv4(interface: str) -> bytes:
    try:
        return socket.inet_pton(socket.AF_INET, interface or "0.0.0.0")
    except OSError:
        raise ValueError(f"not an IPv4 interface address: {interface!r}") from None


def _interface_index(interface: str) -> int:
    if not interface:
        return 0
    if interface.isdigit():
        return int(interface)
    try:
        return socket.if_nametoindex(interface)
    except OSError:
        raise ValueError(f"no network interface named {interface!r}") from None
