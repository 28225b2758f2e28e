"""The public surface of torsion.internet, and the interfaces the Reactor provides."""

from __future__ import annotations

import torsion.internet
from torsion.internet import (
    Clock,
    LoopingCall,
    ReactorCore,
    ReactorTCP,
    Resolver,
    ThreadRunner,
    defer_later,
)
from torsion.internet import Reactor as ReactorClass
from torsion.testing import Clock as FakeClock

EXPECTED = {
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "ChildProcess",
    "UNIXDatagramListeningPort",
    "PrefixKind",
    "split_prefix",
    "tls_server_parts",
    "ProtocolWrapper",
    "TransportWrapper",
    "wrap_client_tls",
    "StandardIOAddress",
    "StandardIOEndpoint",
    "StandardIOPort",
    "ProcessAddress",
    "ProcessEndpoint",
    "ProcessFailedError",
    "ProcessStreamTransport",
    "status_from_returncode",
    "signal_number",
    "wait_writable",
    "wait_readable",
    "stdio",
    "spawn_process",
    "StandardIO",
    "ReactorProcess",
    "ReactorFDs",
    "ProcessTransport",
    "ProcessTerminated",
    "ProcessStatus",
    "ProcessProtocol",
    "ProcessExitedError",
    "ProcessExited",
    "FileDescriptorLike",
    "FileDescriptor",
    "ChildFD",
    "CannotSpawnError",
    "UNIXServerEndpoint",
    "UNIXClientEndpoint",
    "peer_credentials",
    "open_fd_transport",
    "UnixPath",
    "UnixCredentials",
    "UNIXFDTransport",
    "UNIXFDListener",
    "UNIXDatagramPort",
    "ReactorUNIX",
    "MAX_FDS",
    "FDReceiver",
    "splice",
    "send_stream",
    "send_file",
    "Producer",
    "Forwarder",
    "BinaryReader",
    "tls_info",
    "server_tls",
    "client_context",
    "TLSServerEndpoint",
    "TLSInfo",
    "ServerTLS",
    "ReactorTLS",
    "UDPPort",
    "UDPListeningPort",
    "ReactorUDP",
    "DatagramProtocol",
    "Address",
    "ClientEndpoint",
    "ClientService",
    "Clock",
    "Connector",
    "DelayedCall",
    "DelayedCallOwner",
    "EndpointKind",
    "ExponentialBackoff",
    "Factory",
    "HostnameEndpoint",
    "IPv4Address",
    "IPv6Address",
    "Listener",
    "ListeningPort",
    "LoopingCall",
    "Phase",
    "Protocol",
    "ProtocolFactory",
    "Reactor",
    "ReactorCore",
    "RetryPolicy",
    "ReactorTCP",
    "Resolver",
    "ServerEndpoint",
    "SystemEvents",
    "SystemdEndpoint",
    "SystemResolver",
    "TCPClientEndpoint",
    "TCPListeningPort",
    "TCPServerEndpoint",
    "TLSClientEndpoint",
    "ThreadPool",
    "ThreadRunner",
    "TriggerId",
    "UNIXAddress",
    "blocking_call_from_thread",
    "client_from_string",
    "defer_later",
    "is_ip_address",
    "listen_fds",
    "new_event_loop",
    "parse_endpoint_string",
    "react",
    "server_from_string",
    "to_address",
    "to_sockaddr",
}


def test_public_names() -> None:
    assert set(torsion.internet.__all__) == EXPECTED
    for name in torsion.internet.__all__:
        assert getattr(torsion.internet, name) is not None


def test_reactor_provides_the_small_interfaces() -> None:
    # mypy checks these assignments (the runtime part is trivial).
    reactor = ReactorClass(uvloop=False)
    try:
        clock: Clock = reactor
        threads: ThreadRunner = reactor
        resolver: Resolver = reactor
        tcp: ReactorTCP = reactor
        core: ReactorCore = reactor
        provided: tuple[object, ...] = (clock, threads, resolver, tcp, core)
        assert all(interface is reactor for interface in provided)
    finally:
        reactor.close()


def test_time_helpers_accept_any_clock() -> None:
    fake: Clock = FakeClock()
    call = LoopingCall(lambda: None, clock=fake)
    call.start(1.0)
    call.stop()
    defer_later(fake, 1.0).cancel()
