"""Small reusable protocols that larger ones stand on.

- Framings, each a sans-IO decoder and a ``Protocol``: ``LineReceiver``
  (delimiter, maximum length, line and raw modes switched mid-stream,
  pausing), ``LineOnlyReceiver``, ``NetstringReceiver`` and
  ``Int8StringReceiver``/``Int16StringReceiver``/``Int32StringReceiver``.
- The classic services: echo, discard, chargen, daytime and time, over TCP
  and UDP (RFC 862-868).
- Policies that wrap any server's protocol factory, configured rather than
  subclassed: ``ConnectionLimit`` (total and per client), ``ConnectionRateLimit``
  (new connections per client), ``IdleTimeout`` and ``Throttle`` (bandwidth,
  read and write, per connection and in total). Each has a ``wrap(factory)``;
  wrapped factories compose.
- ``PortForward``: listen here, connect there (any client endpoint), with
  backpressure both ways and half-closes passed through.
- SOCKS 4, 4a and 5: ``SOCKSServer`` (CONNECT, username/password,
  ``DestinationRules`` that keep private and loopback ranges out unless
  allowed by network) and the client endpoints ``SOCKS5ClientEndpoint`` and
  ``SOCKS4ClientEndpoint`` (also as ``socks5:`` and ``socks4a:`` endpoint
  strings).
- The PROXY protocol, for servers behind HAProxy or nginx and for clients
  that talk to them: ``ProxyProtocolFactory`` (the client's real address
  becomes the protocol's ``peer``), ``ProxyProtocolServerEndpoint`` (also
  as the ``haproxy:`` endpoint-string prefix), ``ProxyProtocolClientEndpoint``;
  the codec is in ``torsion.protocols.haproxy``.
- AMP, the Asynchronous Messaging Protocol, is the ``torsion.protocols.amp``
  subpackage: typed commands, calls both ways over one connection,
  wire-compatible with Twisted's.
"""

from torsion.protocols._classic import (
    Chargen,
    Daytime,
    Discard,
    Echo,
    Time,
    UDPChargen,
    UDPDaytime,
    UDPDiscard,
    UDPEcho,
    UDPTime,
    chargen_lines,
    daytime_text,
    rfc868_time,
)
from torsion.protocols._idle import IdleTimeout
from torsion.protocols._limits import ConnectionLimit, ConnectionRateLimit, RefusalLog, client_key
from torsion.protocols._lines import LineDecoder, LineOnlyReceiver, LineReceiver
from torsion.protocols._netstrings import NetstringDecoder, NetstringReceiver, encode_netstring
from torsion.protocols._portforward import PortForward
from torsion.protocols._prefixed import (
    Int8StringReceiver,
    Int16StringReceiver,
    Int32StringReceiver,
    LengthPrefixedDecoder,
    encode_length_prefixed,
)
from torsion.protocols._socks_client import SOCKS4ClientEndpoint, SOCKS5ClientEndpoint
from torsion.protocols._socks_rules import (
    PROTECTED_NETWORKS,
    DestinationRules,
    allow_destinations,
    deny_destinations,
)
from torsion.protocols._socks_server import SOCKSAuthenticator, SOCKSServer
from torsion.protocols._socks_wire import (
    SOCKSAuthenticationError,
    SOCKSError,
    SOCKSProtocolError,
)
from torsion.protocols._throttle import Throttle, TokenBucket
from torsion.protocols.haproxy._header import ProxyHeader
from torsion.protocols.haproxy._protocol import (
    ProxiedTransport,
    ProxyProtocolClientEndpoint,
    ProxyProtocolFactory,
    ProxyProtocolServerEndpoint,
)

__all__ = [
    "PROTECTED_NETWORKS",
    "Chargen",
    "ConnectionLimit",
    "ConnectionRateLimit",
    "Daytime",
    "DestinationRules",
    "Discard",
    "Echo",
    "IdleTimeout",
    "Int8StringReceiver",
    "Int16StringReceiver",
    "Int32StringReceiver",
    "LengthPrefixedDecoder",
    "LineDecoder",
    "LineOnlyReceiver",
    "LineReceiver",
    "NetstringDecoder",
    "NetstringReceiver",
    "PortForward",
    "ProxiedTransport",
    "ProxyHeader",
    "ProxyProtocolClientEndpoint",
    "ProxyProtocolFactory",
    "ProxyProtocolServerEndpoint",
    "RefusalLog",
    "SOCKS4ClientEndpoint",
    "SOCKS5ClientEndpoint",
    "SOCKSAuthenticationError",
    "SOCKSAuthenticator",
    "SOCKSError",
    "SOCKSProtocolError",
    "SOCKSServer",
    "Throttle",
    "Time",
    "TokenBucket",
    "UDPChargen",
    "UDPDaytime",
    "UDPDiscard",
    "UDPEcho",
    "UDPTime",
    "allow_destinations",
    "chargen_lines",
    "client_key",
    "daytime_text",
    "deny_destinations",
    "encode_length_prefixed",
    "encode_netstring",
    "rfc868_time",
]
