"""Small reusable protocols that larger ones stand on.

- The classic services: echo, discard, chargen, daytime and time, over TCP
  and UDP (RFC 862-868).
- Policies that wrap any server's protocol factory, configured rather than
  subclassed: ``ConnectionLimit`` (total and per client), ``ConnectionRateLimit``
  (new connections per client), ``IdleTimeout`` and ``Throttle`` (bandwidth,
  read and write, per connection and in total). Each has a ``wrap(factory)``;
  wrapped factories compose.
- ``PortForward``: listen here, connect there (any client endpoint), with
  backpressure both ways and half-closes passed through.
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
from torsion.protocols._portforward import PortForward
from torsion.protocols._throttle import Throttle, TokenBucket

__all__ = [
    "Chargen",
    "ConnectionLimit",
    "ConnectionRateLimit",
    "Daytime",
    "Discard",
    "Echo",
    "IdleTimeout",
    "PortForward",
    "RefusalLog",
    "Throttle",
    "Time",
    "TokenBucket",
    "UDPChargen",
    "UDPDaytime",
    "UDPDiscard",
    "UDPEcho",
    "UDPTime",
    "chargen_lines",
    "client_key",
    "daytime_text",
    "rfc868_time",
]
