"""The reactor and what it offers: time, threads, names, connections, endpoints.

``Reactor`` is a facade over an asyncio event loop (uvloop's when installed).
Code that needs one of its services asks for the small interface it uses:
``Clock`` for time, ``ThreadRunner`` for threads, ``Resolver`` for names,
``ReactorTCP``, ``ReactorTLS``, ``ReactorUDP`` and ``ReactorUNIX`` for
sockets, ``ReactorProcess`` and ``ReactorFDs`` for child processes and
descriptors, ``ReactorCore`` for start-up and shutdown. Endpoints
(``server_from_string``, ``client_from_string``, ``HostnameEndpoint``) say
where to listen or connect (``ProcessEndpoint`` connects to a new child
process); ``ClientService`` keeps a connection up.
``LoopingCall`` and ``defer_later`` work on any ``Clock``, including the fake
one in ``torsion.testing``. ``react`` runs a program's main function.
"""

from torsion.errors import CannotSpawnError, ProcessExitedError, ProcessFailedError
from torsion.internet._address import (
    Address,
    IPv4Address,
    IPv6Address,
    ProcessAddress,
    StandardIOAddress,
    UNIXAddress,
    to_address,
    to_sockaddr,
)
from torsion.internet._child import ChildFD
from torsion.internet._client_service import (
    ClientEndpoint,
    ClientService,
    ExponentialBackoff,
    RetryPolicy,
)
from torsion.internet._connector import Connector
from torsion.internet._delayed import Clock, DelayedCall, DelayedCallOwner
from torsion.internet._endpoint_strings import (
    EndpointKind,
    PrefixKind,
    client_from_string,
    parse_endpoint_string,
    server_from_string,
    split_prefix,
    tls_server_parts,
)
from torsion.internet._endpoints import (
    ServerEndpoint,
    SystemdEndpoint,
    TCPClientEndpoint,
    TCPServerEndpoint,
    TLSClientEndpoint,
    TLSServerEndpoint,
    UNIXClientEndpoint,
    UNIXServerEndpoint,
    listen_fds,
    wrap_client_tls,
)
from torsion.internet._fdesc import (
    FileDescriptor,
    FileDescriptorLike,
    ReactorFDs,
    wait_readable,
    wait_writable,
)
from torsion.internet._fdpass import (
    MAX_FDS,
    FDReceiver,
    UNIXFDListener,
    UNIXFDTransport,
    open_fd_transport,
)
from torsion.internet._flow import BinaryReader, Forwarder, send_file, send_stream, splice
from torsion.internet._happy_eyeballs import HostnameEndpoint
from torsion.internet._lifecycle import Phase, ReactorCore, SystemEvents, TriggerId
from torsion.internet._listener import Listener, ListeningPort
from torsion.internet._process import ChildProcess, ProcessProtocol, ProcessTransport
from torsion.internet._process_endpoint import ProcessEndpoint, ProcessStreamTransport
from torsion.internet._process_status import (
    ProcessExited,
    ProcessStatus,
    ProcessTerminated,
    signal_number,
    status_from_returncode,
)
from torsion.internet._protocol import Factory, Producer, Protocol, ProtocolFactory
from torsion.internet._react import react
from torsion.internet._reactor import Reactor, new_event_loop
from torsion.internet._resolve import Resolver, SystemResolver, is_ip_address
from torsion.internet._spawn import ReactorProcess, spawn_process
from torsion.internet._stdio import (
    StandardIO,
    StandardIOEndpoint,
    StandardIOPort,
    stdio,
)
from torsion.internet._tcp import ReactorTCP, TCPListeningPort
from torsion.internet._threads import ThreadPool, ThreadRunner, blocking_call_from_thread
from torsion.internet._time import LoopingCall, defer_later
from torsion.internet._tls import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    ReactorTLS,
    ServerTLS,
    TLSInfo,
    client_context,
    server_tls,
    tls_info,
)
from torsion.internet._udp import DatagramProtocol, ReactorUDP, UDPListeningPort, UDPPort
from torsion.internet._unix import (
    ReactorUNIX,
    UnixCredentials,
    UNIXDatagramListeningPort,
    UnixPath,
    peer_credentials,
)
from torsion.internet._unix_datagram import UNIXDatagramPort
from torsion.internet._wrapping import ProtocolWrapper, TransportWrapper

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "MAX_FDS",
    "Address",
    "BinaryReader",
    "CannotSpawnError",
    "ChildFD",
    "ChildProcess",
    "ClientEndpoint",
    "ClientService",
    "Clock",
    "Connector",
    "DatagramProtocol",
    "DelayedCall",
    "DelayedCallOwner",
    "EndpointKind",
    "ExponentialBackoff",
    "FDReceiver",
    "Factory",
    "FileDescriptor",
    "FileDescriptorLike",
    "Forwarder",
    "HostnameEndpoint",
    "IPv4Address",
    "IPv6Address",
    "Listener",
    "ListeningPort",
    "LoopingCall",
    "Phase",
    "PrefixKind",
    "ProcessAddress",
    "ProcessEndpoint",
    "ProcessExited",
    "ProcessExitedError",
    "ProcessFailedError",
    "ProcessProtocol",
    "ProcessStatus",
    "ProcessStreamTransport",
    "ProcessTerminated",
    "ProcessTransport",
    "Producer",
    "Protocol",
    "ProtocolFactory",
    "ProtocolWrapper",
    "Reactor",
    "ReactorCore",
    "ReactorFDs",
    "ReactorProcess",
    "ReactorTCP",
    "ReactorTLS",
    "ReactorUDP",
    "ReactorUNIX",
    "Resolver",
    "RetryPolicy",
    "ServerEndpoint",
    "ServerTLS",
    "StandardIO",
    "StandardIOAddress",
    "StandardIOEndpoint",
    "StandardIOPort",
    "SystemEvents",
    "SystemResolver",
    "SystemdEndpoint",
    "TCPClientEndpoint",
    "TCPListeningPort",
    "TCPServerEndpoint",
    "TLSClientEndpoint",
    "TLSInfo",
    "TLSServerEndpoint",
    "ThreadPool",
    "ThreadRunner",
    "TransportWrapper",
    "TriggerId",
    "UDPListeningPort",
    "UDPPort",
    "UNIXAddress",
    "UNIXClientEndpoint",
    "UNIXDatagramListeningPort",
    "UNIXDatagramPort",
    "UNIXFDListener",
    "UNIXFDTransport",
    "UNIXServerEndpoint",
    "UnixCredentials",
    "UnixPath",
    "blocking_call_from_thread",
    "client_context",
    "client_from_string",
    "defer_later",
    "is_ip_address",
    "listen_fds",
    "new_event_loop",
    "open_fd_transport",
    "parse_endpoint_string",
    "peer_credentials",
    "react",
    "send_file",
    "send_stream",
    "server_from_string",
    "server_tls",
    "signal_number",
    "spawn_process",
    "splice",
    "split_prefix",
    "status_from_returncode",
    "stdio",
    "tls_info",
    "tls_server_parts",
    "to_address",
    "to_sockaddr",
    "wait_readable",
    "wait_writable",
    "wrap_client_tls",
]
