"""torsion.names: DNS, a client and a server framework, on dnspython's messages and zones.

Every part answers ``Question``s with ``Answer``s through the ``DNSResolver``
interface, so that resolvers chain: a hosts file, a cache, zones, the
network.

- Client: ``DNSClient`` (UDP with TCP on truncation, retries and timeouts
  per server, EDNS0, random IDs and ports, answers matched to the
  question; DNS over TLS to ``DoTServer``s; resolv.conf's options and
  ``SearchList``), ``AddressResolver`` (the reactor's name resolution through
  DNS), ``SRVClientEndpoint``; ``HostsResolver``, ``CacheResolver`` (TTLs
  and negative caching) and ``ResolverChain``.
- Server: ``Authority`` (a zone from a BIND file or from Python, answered
  with the AA flag, CNAME chains, referrals, wildcards and negative answers
  carrying the SOA) and ``DNSServer`` (UDP and TCP on one port, DNS over
  TLS, truncation, AXFR and IXFR to allowed networks, NOTIFY,
  FORMERR/NOTIMP/REFUSED, bounded work per packet, ``QueryLimits`` against
  floods); ``torsion dns --bindzone FILE`` serves zones.
- DNS over HTTPS (RFC 8484): ``DoHResource`` (a torsion.web resource
  answering with a ``DNSServer``; ``doh_site`` publishes it alone) and
  ``DoHResolver`` (a resolver asking a DoH server through an
  ``HTTPClient``). They need torsion.web (the ``web`` extra): they are
  imported on first use, so that the rest of torsion.names does not.
- More resolvers for the server: ``PythonZoneAuthority`` (a zone a Python
  file defines), ``SecondaryAuthority`` (a zone pulled by AXFR from its
  primary, kept fresh by the SOA timers), ``ForwardingResolver``
  (upstream servers' answers, for a forwarding server) and
  ``RecursiveResolver`` (from the root hints down, for a recursive server).

Needs the ``names`` extra (dnspython).
"""

from typing import TYPE_CHECKING, Any

from torsion.names._answer import Answer, DNSResolver, NotMineError, Question
from torsion.names._cache import CacheResolver
from torsion.names._chain import ResolverChain
from torsion.names._client import AddressResolver, DNSClient, lookup_addresses, to_name
from torsion.names._dot import DoTServer
from torsion.names._forward import ForwardingResolver
from torsion.names._hosts import HostsResolver, parse_hosts
from torsion.names._limits import QueryLimits, QueryRateLimiter
from torsion.names._pyzone import PythonZoneAuthority, load_python_zone
from torsion.names._recursive import RecursiveResolver, load_root_hints, parse_root_hints
from torsion.names._resolvconf import ResolvConf, parse_resolv_conf, read_resolv_conf
from torsion.names._search import SearchList
from torsion.names._secondary import (
    AXFRClient,
    NotifiedZone,
    SecondaryAuthority,
    TransferError,
    serial_gt,
)
from torsion.names._server import (
    DNSDatagramProtocol,
    DNSPorts,
    DNSServer,
    DNSStreamPort,
    DNSStreamProtocol,
)
from torsion.names._srv import SRVClientEndpoint, order_srv
from torsion.names._zone import Authority, ServedZone, ZoneError

if TYPE_CHECKING:
    from torsion.names._doh import DoHError, DoHResolver, DoHResource, doh_site

__all__ = [
    "AXFRClient",
    "AddressResolver",
    "Answer",
    "Authority",
    "CacheResolver",
    "DNSClient",
    "DNSDatagramProtocol",
    "DNSPorts",
    "DNSResolver",
    "DNSServer",
    "DNSStreamPort",
    "DNSStreamProtocol",
    "DoHError",
    "DoHResolver",
    "DoHResource",
    "DoTServer",
    "ForwardingResolver",
    "HostsResolver",
    "NotMineError",
    "NotifiedZone",
    "PythonZoneAuthority",
    "QueryLimits",
    "QueryRateLimiter",
    "Question",
    "RecursiveResolver",
    "ResolvConf",
    "ResolverChain",
    "SRVClientEndpoint",
    "SearchList",
    "SecondaryAuthority",
    "ServedZone",
    "TransferError",
    "ZoneError",
    "doh_site",
    "load_python_zone",
    "load_root_hints",
    "lookup_addresses",
    "order_srv",
    "parse_hosts",
    "parse_resolv_conf",
    "parse_root_hints",
    "read_resolv_conf",
    "serial_gt",
    "to_name",
]

# DNS over HTTPS stands on torsion.web (httptools): imported on first use.
_DOH = frozenset({"DoHError", "DoHResolver", "DoHResource", "doh_site"})


def __getattr__(name: str) -> Any:
    if name in _DOH:
        from torsion.names import _doh

        return getattr(_doh, name)
    raise AttributeError(f"module 'torsion.names' has no attribute {name!r}")
