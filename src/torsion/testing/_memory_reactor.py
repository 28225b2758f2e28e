r"""``MemoryReactor``: a reactor that records what it is asked and does nothing.

Code under test calls it as it would call the real reactor (the same
methods, keywords and defaults); nothing listens, connects, runs or waits.
The test finds each call in the reactor's lists and plays the other side by
hand. Everything happens at once, in the test's own thread: no loop runs.

Time is a fake ``Clock`` (``reactor.clock``), moved with ``advance``; names
resolve from ``reactor.hosts``.

TCP and TLS (``tcp_servers``, ``tcp_clients``, ``tls_servers``,
``tls_clients``): a server record builds protocols with the recorded factory
(``accept()``, on a ``StringTransport``); a client record fires the
caller's connector (``connect()`` or ``fail(exc)``). A TLS record also
keeps the context and host name; its ``connect()`` stands for a handshake
that succeeded::

    reactor = MemoryReactor()
    start_server(reactor)                  # calls reactor.listen_tcp(25, factory)
    protocol = reactor.tcp_servers[0].accept(peer=IPv4Address("192.0.2.9", 4000))
    assert protocol.transport.value() == b"220 ready\r\n"

    connector = fetch(reactor)             # calls reactor.connect_tls("example.org", 443, ...)
    [call] = reactor.tls_clients
    assert call.server_hostname == "example.org"
    call.fail(ssl.SSLCertVerificationError("unknown CA"))

Unix sockets (``unix_servers``, ``unix_clients``) work the same way with
``UNIXAddress`` peers; nothing touches the file system::

    connect_to_agent(reactor)              # calls reactor.connect_unix("/run/agent.sock", ...)
    protocol = reactor.unix_clients[0].connect()

UDP and Unix datagrams (``udp_ports``, ``unix_datagram_ports``): the port
is open at once (the protocol got ``connection_made``); the test delivers
datagrams and reads what the protocol sent::

    ask_time(reactor)                      # calls reactor.connect_udp("192.0.2.7", 123, protocol)
    [port] = reactor.udp_ports
    assert port.written == [(request, ("192.0.2.7", 123))]
    port.deliver(reply)                    # from the peer: datagram_received(reply, addr)

Processes (``processes``): ``spawn_process`` records a ``ProcessCall`` and
starts a ``MemoryProcessTransport`` at once (set ``start_processes=False``
to play ``start()`` or ``fail()`` by hand); the test plays the child::

    run_git(reactor)                       # calls reactor.spawn_process(protocol, "git", ...)
    child = reactor.processes[0].transport
    assert child.value(0) == b"input"      # what the code wrote to the child
    child.child_writes(1, b"output\n")     # child_data_received(1, ...)
    child.child_exits(0)                   # child_connection_lost(0, 1, 2), process_exited,
                                           # process_ended with ProcessExited(0)

File descriptors (``readers``, ``writers``): ``add_reader`` and kin record
the callback by descriptor number; ``fire_reader(fd)`` calls it::

    watch(reactor, sock)                   # calls reactor.add_reader(sock, on_readable)
    reactor.fire_reader(sock)

Port 0 is replaced by a made-up port from 49152 up (the IANA dynamic range),
a different one for each call. A connect attempt can be played once:
``connect()`` after the attempt ended (played, failed or cancelled) raises
``RuntimeError``, and ``fail()`` then does nothing. What the test must not
do with a datagram port or a child (deliver to a closed port, play a child
that ended) raises too; see ``MemoryUDPPort`` and ``MemoryProcessTransport``.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import os
import ssl
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from torsion.defer import Deferred, fail, succeed
from torsion.errors import DNSLookupError, TLSConfigError
from torsion.internet import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    Address,
    ChildFD,
    ChildProcess,
    Connector,
    DelayedCall,
    FileDescriptorLike,
    IPv4Address,
    IPv6Address,
    ProcessProtocol,
    ProtocolFactory,
    ServerTLS,
    UNIXAddress,
    UnixPath,
    is_ip_address,
)
from torsion.internet._address import ip_endpoint
from torsion.testing._clock import Clock
from torsion.testing._memory_datagrams import MemoryUDPPort, MemoryUNIXDatagramPort
from torsion.testing._memory_process import MemoryProcessTransport, ProcessCall, check_child_fds
from torsion.testing._memory_streams import (
    MemoryListener,
    MemoryUNIXListener,
    TCPClientCall,
    TCPServerCall,
    TLSClientCall,
    TLSServerCall,
    UNIXClientCall,
    UNIXServerCall,
    unix_address,
)

if TYPE_CHECKING:
    from torsion.internet import Clock as ClockInterface
    from torsion.internet import (
        ReactorFDs,
        ReactorProcess,
        ReactorTCP,
        ReactorTLS,
        ReactorUDP,
        ReactorUNIX,
        Resolver,
    )

__all__ = ["MemoryReactor"]

P = TypeVar("P", bound=asyncio.BaseProtocol)
D = TypeVar("D", bound=asyncio.DatagramProtocol)

StrPath: TypeAlias = str | bytes | os.PathLike[str] | os.PathLike[bytes]

# Ports handed out for port 0, from the IANA dynamic range.
_FIRST_EPHEMERAL_PORT = 49152

# Made-up process ids start here.
_FIRST_PID = 4000

# What the real reactor waits for a TLS handshake, by default.


@dataclass(eq=False)
class MemoryReactor:
    """A reactor for tests: records every call, keeps fake time, does nothing.

    Attributes:
        clock: The fake clock behind ``seconds`` and ``call_later``.
        tcp_servers: Every ``listen_tcp`` call, in order.
        tcp_clients: Every ``connect_tcp`` call, in order.
        tls_servers: Every ``listen_tls`` call, in order.
        tls_clients: Every ``connect_tls`` call, in order.
        unix_servers: Every ``listen_unix`` call, in order.
        unix_clients: Every ``connect_unix`` call, in order.
        udp_ports: The port of every ``listen_udp`` and ``connect_udp`` call,
            in order.
        unix_datagram_ports: The port of every ``listen_unix_datagram`` and
            ``connect_unix_datagram`` call, in order.
        processes: Every ``spawn_process`` call, in order.
        start_processes: Whether ``spawn_process`` starts the child at once
            (its Deferred has fired); if False, the test calls ``start()``
            or ``fail()`` on the record.
        readers: The callback watching each descriptor for reading, by
            number (bound to its arguments with ``functools.partial`` when
            it was given some).
        writers: The same for writing.
        hosts: Names ``resolve``/``resolve_all`` know, with their addresses;
            other names fail with ``DNSLookupError``, IP addresses resolve
            to themselves.
        lookups: Every name asked for, in order.
    """

    clock: Clock = field(default_factory=Clock)
    tcp_servers: list[TCPServerCall] = field(default_factory=list)
    tcp_clients: list[TCPClientCall] = field(default_factory=list)
    tls_servers: list[TLSServerCall] = field(default_factory=list)
    tls_clients: list[TLSClientCall] = field(default_factory=list)
    unix_servers: list[UNIXServerCall] = field(default_factory=list)
    unix_clients: list[UNIXClientCall] = field(default_factory=list)
    udp_ports: list[MemoryUDPPort] = field(default_factory=list)
    unix_datagram_ports: list[MemoryUNIXDatagramPort[Any]] = field(default_factory=list)
    processes: list[ProcessCall] = field(default_factory=list)
    start_processes: bool = True
    readers: dict[int, Callable[[], object]] = field(default_factory=dict)
    writers: dict[int, Callable[[], object]] = field(default_factory=dict)
    hosts: dict[str, list[str]] = field(default_factory=dict)
    lookups: list[str] = field(default_factory=list)
    _next_port: int = field(default=_FIRST_EPHEMERAL_PORT, repr=False)
    _next_pid: int = field(default=_FIRST_PID, repr=False)

    # Time, through the fake clock.

    def seconds(self) -> float:
        """Return the fake clock's time."""
        return self.clock.seconds()

    def call_later(self, delay: float, f: Callable[..., object], /, *args: Any) -> DelayedCall:
        """Schedule ``f(*args)`` on the fake clock."""
        return self.clock.call_later(delay, f, *args)

    def advance(self, amount: float) -> None:
        """Move the fake clock forward, running what falls due."""
        self.clock.advance(amount)

    def pump(self, timings: Iterable[float]) -> None:
        """Advance the fake clock by each amount in turn."""
        self.clock.pump(timings)

    def get_delayed_calls(self) -> list[DelayedCall]:
        """Return the calls pending on the fake clock, soonest first."""
        return self.clock.get_delayed_calls()

    # Names, from ``hosts``.

    def resolve_all(self, host: str) -> Deferred[list[str]]:
        """Return (already fired) every address ``hosts`` has for ``host``."""
        self.lookups.append(host)
        if is_ip_address(host):
            return succeed([host])
        addresses = self.hosts.get(host)
        if not addresses:
            return fail(DNSLookupError(host))
        return succeed(list(addresses))

    def resolve(self, host: str) -> Deferred[str]:
        """Return (already fired) the first address ``hosts`` has for ``host``."""
        return self.resolve_all(host).add_callback(lambda addresses: addresses[0])

    # TCP and TLS, recorded.

    def listen_tcp(
        self,
        port: int,
        factory: ProtocolFactory,
        *,
        interface: str = "",
        backlog: int = 100,
        reuse_port: bool = False,
        keepalive: bool = False,
    ) -> MemoryListener:
        """Record a request to listen; nothing listens.

        Returns:
            A listener; port 0 is replaced by a made-up port.
        """
        listener = MemoryListener(interface, self._port(port))
        self.tcp_servers.append(
            TCPServerCall(
                port=port,
                factory=factory,
                interface=interface,
                backlog=backlog,
                listener=listener,
                reuse_port=reuse_port,
                keepalive=keepalive,
            )
        )
        return listener

    def connect_tcp(
        self,
        host: str,
        port: int,
        factory: Callable[[Address], P],
        *,
        timeout: float | None = 30.0,
        bind_address: tuple[str, int] | None = None,
        keepalive: bool = False,
    ) -> Connector[P]:
        """Record a request to connect; nothing connects until the test says so.

        Returns:
            A connector that connects (or fails) when the test calls
            ``connect`` (or ``fail``) on the record appended to ``tcp_clients``.
        """
        attempt: Deferred[tuple[asyncio.BaseTransport, P]] = Deferred()
        connector = Connector(attempt, f"{host}:{port}")
        self.tcp_clients.append(
            TCPClientCall(
                host=host,
                port=port,
                factory=factory,
                timeout=timeout,
                connector=connector,
                attempt=attempt,
                bind_address=bind_address,
                keepalive=keepalive,
            )
        )
        return connector

    def listen_tls(
        self,
        port: int,
        factory: ProtocolFactory,
        context: ssl.SSLContext | ServerTLS,
        *,
        interface: str = "",
        backlog: int = 100,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        reuse_port: bool = False,
        keepalive: bool = False,
    ) -> MemoryListener:
        """Record a request to listen for TLS; nothing listens.

        Returns:
            A listener; port 0 is replaced by a made-up port.

        Raises:
            TLSConfigError: ``context`` is a client's (as the real reactor says).
        """
        ssl_context = context.context if isinstance(context, ServerTLS) else context
        if ssl_context.protocol == ssl.PROTOCOL_TLS_CLIENT:
            raise TLSConfigError("a client context cannot serve TLS: build one with server_tls()")
        listener = MemoryListener(interface, self._port(port))
        self.tls_servers.append(
            TLSServerCall(
                port=port,
                factory=factory,
                context=context,
                interface=interface,
                backlog=backlog,
                handshake_timeout=handshake_timeout,
                listener=listener,
                reuse_port=reuse_port,
                keepalive=keepalive,
            )
        )
        return listener

    def connect_tls(
        self,
        host: str,
        port: int,
        factory: Callable[[Address], P],
        *,
        context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        timeout: float | None = 30.0,
        bind_address: tuple[str, int] | None = None,
        keepalive: bool = False,
    ) -> Connector[P]:
        """Record a request to connect over TLS; nothing connects until the test says so.

        Returns:
            A connector that connects (or fails) when the test calls
            ``connect`` (or ``fail``) on the record appended to ``tls_clients``.
        """
        attempt: Deferred[tuple[asyncio.BaseTransport, P]] = Deferred()
        connector = Connector(attempt, f"{host}:{port}")
        self.tls_clients.append(
            TLSClientCall(
                host=host,
                port=port,
                factory=factory,
                context=context,
                server_hostname=server_hostname,
                timeout=timeout,
                connector=connector,
                attempt=attempt,
                bind_address=bind_address,
                keepalive=keepalive,
            )
        )
        return connector

    # UDP, in memory.

    def listen_udp(
        self,
        port: int,
        protocol: asyncio.DatagramProtocol,
        *,
        interface: str = "",
        reuse_port: bool = False,
    ) -> MemoryUDPPort:
        """Open a memory UDP port on ``interface:port`` (port 0: a made-up one).

        The protocol gets ``connection_made`` before this returns.

        Raises:
            ValueError: ``protocol`` already serves an open port.
        """
        self._check_serves_none(protocol)
        address = _udp_address(interface or "0.0.0.0", self._port(port))
        udp_port = MemoryUDPPort(protocol, address, interface=interface, reuse_port=reuse_port)
        self.udp_ports.append(udp_port)
        return udp_port

    def connect_udp(
        self,
        host: str,
        port: int,
        protocol: asyncio.DatagramProtocol,
        *,
        interface: str = "",
        local_port: int = 0,
    ) -> MemoryUDPPort:
        """Open a memory UDP port connected to ``host:port`` (an IP address).

        The protocol gets ``connection_made`` before this returns.

        Raises:
            ValueError: ``host`` is not an IP address, or ``protocol``
                already serves an open port.
        """
        try:
            ipv6 = ipaddress.ip_address(host).version == 6
        except ValueError:
            raise ValueError(f"connect_udp needs an IP address, not {host!r}") from None
        self._check_serves_none(protocol)
        local = interface or ("::" if ipv6 else "0.0.0.0")
        udp_port = MemoryUDPPort(
            protocol,
            _udp_address(local, self._port(local_port)),
            peer=_udp_address(host, port),
            interface=interface,
        )
        self.udp_ports.append(udp_port)
        return udp_port

    # Unix sockets, recorded (streams) and in memory (datagrams).

    def listen_unix(
        self,
        path: UnixPath,
        factory: ProtocolFactory,
        *,
        mode: int = 0o666,
        backlog: int = 100,
        pass_fds: bool = False,
    ) -> MemoryUNIXListener:
        """Record a request to listen on a Unix socket; no file is made."""
        name = os.fspath(path)
        listener = MemoryUNIXListener(name, mode)
        self.unix_servers.append(
            UNIXServerCall(
                path=name,
                factory=factory,
                mode=mode,
                backlog=backlog,
                pass_fds=pass_fds,
                listener=listener,
            )
        )
        return listener

    def connect_unix(
        self,
        path: UnixPath,
        factory: Callable[[Address], P],
        *,
        timeout: float | None = 30.0,
        pass_fds: bool = False,
    ) -> Connector[P]:
        """Record a request to connect to a Unix socket; nothing connects until the test says so.

        Returns:
            A connector that connects (or fails) when the test calls
            ``connect`` (or ``fail``) on the record appended to ``unix_clients``.
        """
        name = os.fspath(path)
        attempt: Deferred[tuple[asyncio.BaseTransport, P]] = Deferred()
        connector = Connector(attempt, UNIXAddress(name))  # as the real one names it
        self.unix_clients.append(
            UNIXClientCall(
                path=name,
                factory=factory,
                timeout=timeout,
                connector=connector,
                attempt=attempt,
                pass_fds=pass_fds,
            )
        )
        return connector

    def listen_unix_datagram(
        self, path: UnixPath, protocol: D, *, mode: int = 0o666
    ) -> MemoryUNIXDatagramPort[D]:
        """Open a memory Unix datagram port at ``path``; no file is made.

        Raises:
            ValueError: ``protocol`` already serves an open port.
        """
        self._check_serves_none(protocol)
        port = MemoryUNIXDatagramPort(protocol, unix_address(os.fspath(path)), mode=mode)
        self.unix_datagram_ports.append(port)
        return port

    def connect_unix_datagram(
        self,
        path: UnixPath,
        protocol: D,
        *,
        bind_path: UnixPath | None = None,
        mode: int = 0o666,
    ) -> MemoryUNIXDatagramPort[D]:
        """Open a memory Unix datagram port connected to ``path``.

        Its own address is ``bind_path`` (unnamed if None).

        Raises:
            ValueError: ``protocol`` already serves an open port.
        """
        self._check_serves_none(protocol)
        own = unix_address("" if bind_path is None else os.fspath(bind_path))
        port = MemoryUNIXDatagramPort(protocol, own, peer=unix_address(os.fspath(path)), mode=mode)
        self.unix_datagram_ports.append(port)
        return port

    # Processes, played by the test.

    def spawn_process(
        self,
        protocol: ProcessProtocol,
        executable: StrPath,
        args: Sequence[StrPath] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        path: StrPath | None = None,
        uid: int | str | None = None,
        gid: int | str | None = None,
        use_pty: bool = False,
        child_fds: Mapping[int, ChildFD] | None = None,
    ) -> Deferred[ChildProcess]:
        """Record a request to start a child; nothing runs.

        Returns:
            A Deferred that fires with the record's ``MemoryProcessTransport``
            (after ``protocol.connection_made``): at once, or when the test
            calls ``start()`` if ``start_processes`` is False.

        Raises:
            ValueError: ``args`` is empty or ``child_fds`` makes no sense
                (user and group names are not looked up).
        """
        argv = [executable] if args is None else list(args)
        if not argv:
            raise ValueError("args must hold at least argv[0]")
        wanted = check_child_fds(child_fds or {}, use_pty)
        transport = MemoryProcessTransport(
            protocol, pid=self._next_pid, use_pty=use_pty, child_fds=wanted
        )
        self._next_pid += 1
        call = ProcessCall(
            protocol=protocol,
            executable=executable,
            args=argv,
            env=env,
            path=path,
            uid=uid,
            gid=gid,
            use_pty=use_pty,
            child_fds=wanted,
            transport=transport,
            deferred=Deferred(),
        )
        self.processes.append(call)
        if self.start_processes:
            call.start()
        return call.deferred

    # Descriptors, recorded.

    def add_reader(
        self, fd: FileDescriptorLike, callback: Callable[..., object], *args: Any
    ) -> None:
        """Record ``callback(*args)`` as what watches ``fd`` for reading (replacing any)."""
        self.readers[_fileno(fd)] = _bound(callback, args)

    def remove_reader(self, fd: FileDescriptorLike) -> bool:
        """Stop watching ``fd`` for reading; return whether it was watched."""
        return self.readers.pop(_fileno(fd), None) is not None

    def add_writer(
        self, fd: FileDescriptorLike, callback: Callable[..., object], *args: Any
    ) -> None:
        """Record ``callback(*args)`` as what watches ``fd`` for writing (replacing any)."""
        self.writers[_fileno(fd)] = _bound(callback, args)

    def remove_writer(self, fd: FileDescriptorLike) -> bool:
        """Stop watching ``fd`` for writing; return whether it was watched."""
        return self.writers.pop(_fileno(fd), None) is not None

    def fire_reader(self, fd: FileDescriptorLike) -> None:
        """Play ``fd`` becoming readable: call the callback watching it.

        Raises:
            KeyError: Nothing watches ``fd`` for reading.
        """
        number = _fileno(fd)
        if number not in self.readers:
            raise KeyError(f"nothing watches descriptor {number} for reading")
        self.readers[number]()

    def fire_writer(self, fd: FileDescriptorLike) -> None:
        """Play ``fd`` becoming writable: call the callback watching it.

        Raises:
            KeyError: Nothing watches ``fd`` for writing.
        """
        number = _fileno(fd)
        if number not in self.writers:
            raise KeyError(f"nothing watches descriptor {number} for writing")
        self.writers[number]()

    # Internals.

    def _port(self, port: int) -> int:
        if port != 0:
            return port
        made_up = self._next_port
        self._next_port += 1
        return made_up

    def _check_serves_none(self, protocol: asyncio.DatagramProtocol) -> None:
        ports: list[MemoryUDPPort | MemoryUNIXDatagramPort[Any]] = [
            *self.udp_ports,
            *self.unix_datagram_ports,
        ]
        if any(port.protocol is protocol and port.listening for port in ports):
            raise ValueError(f"{protocol!r} already serves a port")


def _udp_address(host: str, port: int) -> IPv4Address | IPv6Address:
    address = ip_endpoint(host, port)
    if isinstance(address, IPv6Address):
        return IPv6Address(address.host, port, kind="udp")
    return IPv4Address(address.host, port, "udp")


def _fileno(fd: FileDescriptorLike) -> int:
    number = fd if isinstance(fd, int) else fd.fileno()
    if number < 0:
        # As the loop's selector says of a closed socket's -1.
        raise ValueError(f"Invalid file descriptor: {number}")
    return number


def _bound(callback: Callable[..., object], args: tuple[Any, ...]) -> Callable[[], object]:
    return functools.partial(callback, *args) if args else callback


if TYPE_CHECKING:
    # Checked by mypy: the fake stands in for the real reactor's interfaces.
    def _provides(
        reactor: MemoryReactor,
    ) -> tuple[
        ClockInterface,
        ReactorTCP,
        ReactorTLS,
        ReactorUDP,
        ReactorUNIX,
        ReactorProcess,
        ReactorFDs,
        Resolver,
    ]:
        return (reactor,) * 8
