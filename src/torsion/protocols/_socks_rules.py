"""Where a SOCKS server may connect: ordered allow/deny rules, and protected ranges.

A proxy connects wherever its clients ask, from inside the network it runs
in. Left open, it hands every client the services only that network was
meant to reach: the proxy host's own loopback services (databases, admin
ports), the private network behind it, a cloud's metadata service at
169.254.169.254 (server-side request forgery through the proxy). So
``DestinationRules`` decides in two steps:

1. The rules, in order: the first rule matching the destination decides;
   if none does, ``default`` decides ("allow" unless told otherwise). A rule
   matches when each of its criteria that is set matches: ``networks`` (the
   address is in one), ``hosts`` (the name the client asked for, exactly,
   or under a ".suffix"), ``ports`` (in one of the ranges).
2. Protected addresses: an address in ``PROTECTED_NETWORKS`` (loopback,
   private, shared and link-local, multicast, "this network" and reserved
   ranges) is refused even when allowed, unless the rule that allowed it
   names a network holding it. Naming a host does not open its address:
   ``allow_destinations(hosts=[".corp.example"])`` does not reach 10.0.0.0/8 (nor does a
   name whose DNS answer points there, the "rebinding" trick), while
   ``allow_destinations(networks=["127.0.0.1/32"])`` opens the loopback address on
   purpose (as tests do).

Names are checked against rules before they are resolved, so a denied name
costs no lookup; addresses (given, or resolved from a name) are checked
after, against every rule. IPv4-mapped IPv6 addresses (``::ffff:127.0.0.1``)
count as the IPv4 address they carry. Port 0 is never allowed.

What no list can know is the proxy host's own public addresses: services it
exposes on them are reachable through the proxy unless a rule denies them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, TypeAlias

__all__ = [
    "PROTECTED_NETWORKS",
    "Decision",
    "DestinationRules",
    "Rule",
    "allow_destinations",
    "deny_destinations",
]

IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
NetworkLike: TypeAlias = str | IPNetwork
PortRange: TypeAlias = int | tuple[int, int] | range

PROTECTED_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(network)
    for network in (
        # IPv4 (IANA special-purpose registry, RFC 6890 and its updates).
        "0.0.0.0/8",  # "this network": 0.0.0.0 reaches the local host on Linux
        "10.0.0.0/8",  # private (RFC 1918)
        "100.64.0.0/10",  # shared address space, carrier-grade NAT (RFC 6598)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, cloud metadata services (RFC 3927)
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking (RFC 2544)
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the limited broadcast address
        # IPv6 (IPv4-mapped addresses are checked as IPv4).
        "::/128",  # unspecified: the local host, as 0.0.0.0
        "::1/128",  # loopback
        "64:ff9b:1::/48",  # local-use NAT64 (RFC 8215)
        "fc00::/7",  # unique local (RFC 4193)
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated, still routed by some)
        "ff00::/8",  # multicast
    )
)
"""Destinations refused unless a rule naming their network allows them:
loopback, private, shared, link-local, multicast and reserved ranges."""


def _address(address: str | IPAddress) -> IPAddress:
    if isinstance(address, str):
        # A scope ("fe80::1%eth0") does not change which range it is in.
        address = ipaddress.ip_address(address.partition("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _name(name: str) -> str:
    return name.lower().rstrip(".")


def _port_range(value: PortRange) -> tuple[int, int]:
    if isinstance(value, range):
        if value.step != 1 or not value:
            raise ValueError(f"a port range must be contiguous and not empty: {value!r}")
        low, high = value.start, value.stop - 1
    elif isinstance(value, tuple):
        low, high = value
    else:
        low = high = value
    if not 0 <= low <= high <= 65535:
        raise ValueError(f"a port range must lie within 0 to 65535, low first: {value!r}")
    return low, high


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """One allow or deny rule; made by ``allow_destinations()`` and ``deny_destinations()``.

    A criterion left empty matches anything; the rule matches when every
    criterion that is set does.

    Attributes:
        allow: Whether a match allows (True) or denies (False).
        networks: The address must be in one of these.
        hosts: The name asked for must be one of these: an exact name
            ("example.com") or, starting with a dot, any name under it
            (".example.com": "www.example.com", not "example.com"). A
            destination given as an address has no name and matches no
            ``hosts`` rule. Lower case, without a trailing dot.
        ports: The port must be in one of these inclusive ranges.
    """

    allow: bool
    networks: tuple[IPNetwork, ...] = ()
    hosts: tuple[str, ...] = ()
    ports: tuple[tuple[int, int], ...] = ()

    def matches_name(self, name: str | None, port: int) -> bool:
        """Whether ``name`` and ``port`` meet the rule's host and port criteria."""
        if self.ports and not any(low <= port <= high for low, high in self.ports):
            return False
        if not self.hosts:
            return True
        if name is None:
            return False
        name = _name(name)
        return any(
            name.endswith(pattern) if pattern.startswith(".") else name == pattern
            for pattern in self.hosts
        )

    def names_network_of(self, address: IPAddress) -> bool:
        """Whether one of the rule's networks holds ``address``."""
        return any(address in network for network in self.networks)

    def matches(self, address: str | IPAddress, port: int, *, name: str | None = None) -> bool:
        """Whether the rule matches the destination ``address:port`` (asked for as ``name``)."""
        if not self.matches_name(name, port):
            return False
        return not self.networks or self.names_network_of(_address(address))


def _rule(
    allowing: bool,
    networks: Iterable[NetworkLike],
    hosts: Iterable[str],
    ports: Iterable[PortRange],
) -> Rule:
    if isinstance(hosts, str) or isinstance(networks, str):
        raise TypeError("networks and hosts take lists of strings, not one string")
    patterns = tuple(_name(host) for host in hosts)
    for pattern in patterns:
        if not pattern.strip(".") or any(c.isspace() for c in pattern):
            raise ValueError(f"not a host name or .suffix: {pattern!r}")
    return Rule(
        allow=allowing,
        networks=tuple(ipaddress.ip_network(n) if isinstance(n, str) else n for n in networks),
        hosts=patterns,
        ports=tuple(_port_range(p) for p in ports),
    )


def allow_destinations(
    *,
    networks: Iterable[NetworkLike] = (),
    hosts: Iterable[str] = (),
    ports: Iterable[PortRange] = (),
) -> Rule:
    """A rule that allows what it matches.

    Args:
        networks: Networks such as "192.0.2.0/24" or "127.0.0.1"; allowing a
            network also opens the protected addresses in it.
        hosts: Names ("example.com") or suffixes (".example.com").
        ports: Ports (443), inclusive ranges as (low, high) pairs, or ranges.

    Raises:
        ValueError: A network, name or port range is not valid (a network
            with host bits set, such as "10.0.0.1/8", is a mistake).
    """
    return _rule(True, networks, hosts, ports)


def deny_destinations(
    *,
    networks: Iterable[NetworkLike] = (),
    hosts: Iterable[str] = (),
    ports: Iterable[PortRange] = (),
) -> Rule:
    """A rule that denies what it matches (arguments as for ``allow_destinations``)."""
    return _rule(False, networks, hosts, ports)


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """Whether a destination may be reached, and why.

    Attributes:
        allowed: The verdict.
        reason: Why, in words, for the log.
        rule: The rule that decided (None: the default or the protected ranges).
    """

    allowed: bool
    reason: str
    rule: Rule | None = None


class DestinationRules:
    """Decides which destinations a SOCKS server connects to (see the module doc).

    Args:
        rules: Allow and deny rules, in order; the first match wins.
        default: What happens to a destination no rule matches.
        protected: Networks refused unless a rule naming their network
            allows them (``PROTECTED_NETWORKS``; empty to turn this off).

    Attributes:
        rules, default, protected: As given (networks parsed).
    """

    def __init__(
        self,
        rules: Iterable[Rule] = (),
        *,
        default: Literal["allow", "deny"] = "allow",
        protected: Iterable[NetworkLike] = PROTECTED_NETWORKS,
    ) -> None:
        if default not in ("allow", "deny"):
            raise ValueError(f'default must be "allow" or "deny", not {default!r}')
        self.rules = tuple(rules)
        self.default = default
        self.protected = tuple(
            ipaddress.ip_network(n) if isinstance(n, str) else n for n in protected
        )

    def check_name(self, name: str, port: int) -> Decision | None:
        """Decide on a name before resolving it, if its address cannot matter.

        Returns:
            The decision when the name and port settle it whatever the name
            resolves to (then a denied name is never looked up); None when
            it depends on the address (check each with ``check``). An
            allowed name still has its addresses checked.
        """
        if port == 0:
            return Decision(allowed=False, reason="port 0 cannot be connected to")
        for rule in self.rules:
            if not rule.matches_name(name, port):
                continue
            if rule.networks:
                return None
            if not rule.allow:
                return Decision(allowed=False, reason=f"{name} is denied by a rule", rule=rule)
            return None
        if self.default == "deny":
            return Decision(allowed=False, reason="no rule allows it")
        return None

    def check(self, address: str | IPAddress, port: int, *, name: str | None = None) -> Decision:
        """Decide on the destination ``address:port``, asked for as ``name`` if by name.

        Raises:
            ValueError: ``address`` is not an IP address.
        """
        ip = _address(address)
        if port == 0:
            return Decision(allowed=False, reason="port 0 cannot be connected to")
        deciding: Rule | None = None
        for rule in self.rules:
            if rule.matches_name(name, port) and (not rule.networks or rule.names_network_of(ip)):
                deciding = rule
                break
        if deciding is None:
            if self.default == "deny":
                return Decision(allowed=False, reason="no rule allows it")
        elif not deciding.allow:
            return Decision(allowed=False, reason="denied by a rule", rule=deciding)
        for network in self.protected:
            if ip in network and not (deciding is not None and deciding.names_network_of(ip)):
                return Decision(
                    allowed=False,
                    reason=f"{ip} is in the protected range {network}",
                    rule=deciding,
                )
        return Decision(allowed=True, reason="allowed", rule=deciding)

    def __repr__(self) -> str:
        return f"<DestinationRules {len(self.rules)} rules, default {self.default}>"
