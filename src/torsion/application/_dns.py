"""``torsion dns``: a DNS server for zone files, and a forwarder (``torsion.names``).

It answers over UDP and TCP on one port, for the zones given with
``--bindzone`` (BIND master files) and ``--pyzone`` (Python files defining
``zone``, see ``torsion.names._pyzone``), as many as wanted. SIGHUP reads
the zone files again; a file that has become unreadable or invalid is
logged and its zone keeps being served as it was.

``--secondary DOMAIN:MASTER_IP[:PORT]`` serves a zone transferred (AXFR)
from its primary server, kept fresh by the timers of its SOA (see
``torsion.names._secondary``); until the first transfer succeeds its names
get SERVFAIL. SIGHUP asks the primaries for changes at once.

With ``--recursive`` it resolves every other name itself, from the root
servers down (IANA's root hints, or a ``--root-hints`` file), caching what it
learns, and sets RA.

Without ``--forward``, ``--resolv-conf`` or ``--recursive`` it refuses names
outside its zones: it is not a resolver. With them it asks those upstream servers about every
other name and sets RA: it is a recursive server to its clients. The order
of the resolvers is the zones (authoritative, so they come first), then the
``--hosts-file``, then the ``--cache``, then the upstream servers: the cache
keeps what upstream answered, for its TTLs.

``--tls ENDPOINT`` serves DNS over TLS (RFC 7858) as well, on a ``tls:``
endpoint string; it shares the TCP port's connection limits.
``--doh ENDPOINT`` serves DNS over HTTPS (RFC 8484) at ``/dns-query`` on a
``tls:`` endpoint, and ``--forward-https URL`` forwards over it.
``--forward-tls IP[:PORT][#NAME]`` forwards over TLS only (port 853 and the
certificate checked against NAME by default), never falling back to clear
text.

It listens on 127.0.0.1 unless ``--interface`` says otherwise: a DNS server
open to the world answers anyone's forged-source queries, which makes it a
reflector for denial-of-service attacks, so exposing it is a decision the
operator makes (``--interface 0.0.0.0``, ``--interface ::``, or the address
of one interface). Zone transfers (AXFR) are refused to every client but
those of the ``--allow-axfr`` networks.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from torsion.application._app import Application
from torsion.application._endpoint_service import DatagramService, StreamServerEndpointService
from torsion.application._plugins import Option, Plugin
from torsion.application._service import BaseService
from torsion.defer import Deferred
from torsion.internet import Address, IPv4Address, IPv6Address, Reactor, TCPServerEndpoint

if TYPE_CHECKING:
    import dns.name

    from torsion.names._answer import DNSResolver
    from torsion.names._secondary import SecondaryAuthority
    from torsion.names._zone import Authority

__all__ = ["DNS", "ZoneFiles"]

_log = logging.getLogger("torsion.names")


def _network(option: str) -> Callable[[str], str]:
    def check(text: str) -> str:
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"{option}: {text!r} is not a network such as 192.0.2.0/24") from None
        return text

    return check


def _server_address(text: str, option: str = "--forward") -> tuple[str, int]:
    """``IP``, ``IP:PORT``, ``IPv6`` or ``[IPv6]:PORT`` as (address, port)."""
    host, port = text, "53"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{option}: {text!r} is not IP[:PORT]")
            port = rest[1:]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    try:
        address = ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        raise ValueError(f"{option}: {text!r} is not IP[:PORT] (an address, not a name)") from None
    if not 1 <= number <= 65535:
        raise ValueError(f"{option}: {text!r}: the port must be within 1 to 65535")
    return str(address), number


def _secondary(text: str) -> tuple[str, tuple[str, int]]:
    """``DOMAIN:MASTER_IP[:PORT]`` as (domain, (address, port))."""
    domain, _, master = text.partition(":")
    if not domain or not master:
        raise ValueError(f"--secondary: {text!r} is not DOMAIN:MASTER_IP[:PORT]")
    if not domain.endswith("."):
        domain += "."
    try:
        address = _server_address(master, "--secondary")
    except ValueError:
        raise ValueError(
            f"--secondary: {text!r} is not DOMAIN:MASTER_IP[:PORT] (an address, not a name)"
        ) from None
    return domain, address


def _port(number: int) -> int:
    # The same number on UDP and TCP: 0 would give each a different one.
    if not 1 <= number <= 65535:
        raise ValueError(f"--port: must be within 1 to 65535, not {number}")
    return number


class ZoneFiles(BaseService):
    """Reads the zone files again on reload (SIGHUP); runs the secondary zones.

    Args:
        authorities: The zones read from files.
        changed: Called once they have been read again (the server forgets
            the answers it rendered from the old zones).
        secondaries: The secondary zones: started and stopped with the
            service, and checked against their primaries on reload.
    """

    def __init__(
        self,
        authorities: list[Authority],
        changed: Callable[[], object] | None = None,
        secondaries: Sequence[SecondaryAuthority] = (),
    ) -> None:
        super().__init__()
        self.authorities = authorities
        self.changed = changed
        self.secondaries = tuple(secondaries)

    def start_service(self) -> None:
        """Begin the secondaries' first transfers."""
        super().start_service()
        for secondary in self.secondaries:
            secondary.start()

    def stop_service(self) -> None:
        """Stop the secondaries' timers and transfers."""
        for secondary in self.secondaries:
            secondary.stop()
        super().stop_service()

    def reload_service(self) -> None:
        """Read the zone files again (a bad one keeps its old zone); check the secondaries now."""
        from torsion.names._zone import ZoneError

        for authority in self.authorities:
            try:
                authority.reload()
            except ZoneError as exc:
                _log.error(
                    "zone %s not reloaded, still served as it was: %s", authority.origin, exc
                )
            else:
                _log.info("zone %s reloaded from %s", authority.origin, authority.path)
        if self.changed is not None:
            self.changed()
        for secondary in self.secondaries:
            _log.info("zone %s: asking %s:%d for changes", secondary.origin, *secondary.master)
            secondary.refresh_now()


def _build(reactor: Reactor, options: Mapping[str, Any]) -> Application:
    # torsion.names is imported here, not above: it needs dnspython (the
    # names extra), which the other plugins do not.
    try:
        import dns.exception

        from torsion.names._pyzone import PythonZoneAuthority
        from torsion.names._secondary import SecondaryAuthority
        from torsion.names._server import DNSServer
        from torsion.names._zone import Authority, ZoneError
    except ImportError as exc:
        raise ValueError(
            f"torsion dns needs the names extra (pip install 'torsion[names]'): {exc}"
        ) from exc
    authorities: list[Authority] = []
    for path in options["bindzone"]:
        try:
            authorities.append(Authority.from_file(path))
        except ZoneError as exc:
            raise ValueError(f"--bindzone: {exc}") from exc
    for path in options["pyzone"]:
        try:
            authorities.append(PythonZoneAuthority(path))
        except ZoneError as exc:
            raise ValueError(f"--pyzone: {exc}") from exc
    secondaries = []
    for domain, master in options["secondary"]:
        try:
            secondaries.append(SecondaryAuthority(reactor, domain, master))
        except (dns.exception.DNSException, ValueError) as exc:
            raise ValueError(f"--secondary: {domain!r} is not a domain name: {exc}") from exc
    port: int = options["port"]
    interface: str = options["interface"]
    others, recursive, closers = _others(reactor, options, interface, port)
    if not authorities and not secondaries and not others:
        raise ValueError(
            "give a zone to serve (--bindzone, --pyzone, --secondary), "
            "servers to forward to (--forward) or --recursive"
        )
    server = DNSServer(
        [*authorities, *secondaries, *others],
        recursive=recursive,
        allow_axfr=options["allow_axfr"],
        limits=_limits(options),
    )
    zones: list[dns.name.Name] = [authority.origin for authority in authorities]
    zones += [secondary.origin for secondary in secondaries]
    names = [str(zone) for zone in zones]
    if options["recursive"]:
        names.append("other names, resolved from the root")
    elif recursive:
        names.append("other names, forwarded")
    elif others:
        names.append("the hosts file")
    description = f"DNS server for {', '.join(names)}"
    example = f"{zones[0]} SOA" if zones else "localhost A"
    app = Application("dns service")
    app.add_service(ZoneFiles(authorities, server.zones_changed, secondaries))
    for close in closers:
        app.add_service(_ClosedOnStop(close))
    app.add_service(
        DatagramService(
            reactor,
            port,
            server.datagram_protocol(reactor),
            interface=interface,
            description=description,
        )
    )
    # One stream factory for TCP and TLS: they share its connection limits.
    streams = server.stream_factory(reactor)
    app.add_service(
        StreamServerEndpointService(
            TCPServerEndpoint(reactor, port, interface=interface),
            streams,
            description=description,
            hint=lambda address: f"dig @{interface} -p {port} {example}",
        )
    )
    if options["doh"]:
        from torsion.names._doh import doh_site

        site = doh_site(server, reactor=reactor)
        for endpoint in options["doh"]:
            app.add_service(
                StreamServerEndpointService(
                    _tls_endpoint(reactor, endpoint, "--doh"),
                    site,
                    description=f"{description} over HTTPS",
                    hint=_curl_hint,
                )
            )
    for endpoint in options["tls"]:
        app.add_service(
            StreamServerEndpointService(
                _tls_endpoint(reactor, endpoint, "--tls"),
                streams,
                description=f"{description} over TLS",
                hint=lambda address: _kdig_hint(address, example),
            )
        )
    return app


def _kdig_hint(address: Address, example: str) -> str:
    if isinstance(address, IPv4Address | IPv6Address):
        return f"kdig +tls @{address.host} -p {address.port} {example}"
    return f"kdig +tls {example}"


def _curl_hint(address: Address) -> str:
    if isinstance(address, IPv4Address | IPv6Address):
        host = f"[{address.host}]" if ":" in address.host else address.host
        return f"curl --doh-url https://{host}:{address.port}/dns-query http://NAME/"
    return "curl --doh-url https://HOST/dns-query http://NAME/"


def _tls_endpoint(reactor: Reactor, text: str, option: str) -> Any:
    """The server endpoint ``--tls`` or ``--doh`` names: a ``tls:`` endpoint string."""
    from torsion.errors import EndpointStringError
    from torsion.internet import server_from_string

    if not text.startswith("tls:"):
        example = "853" if option == "--tls" else "443"
        raise ValueError(
            f"{option}: {text!r} is not a TLS endpoint such as "
            f"tls:{example}:certKey=cert.pem:privateKey=key.pem"
        )
    try:
        return server_from_string(reactor, text)
    except EndpointStringError as exc:
        raise ValueError(f"{option}: {exc}") from exc


def _limits(options: Mapping[str, Any]) -> Any:
    """The server's ``QueryLimits`` from the limit options."""
    from torsion.names._limits import QueryLimits

    defaults = QueryLimits()
    rate: float = options["udp_rate"]
    per_client: int = options["max_connections_per_client"]
    return QueryLimits(
        udp_rate=rate or None,
        udp_burst=options["udp_burst"],
        max_connections=options["max_connections"],
        max_connections_per_client=per_client or None,
        exempt=(*defaults.exempt, *options["exempt"]),
    )


def _at_least(least: int, option: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value < least:
            raise ValueError(f"{option}: must be at least {least}, not {value}")
        return value

    return check


class _ClosedOnStop(BaseService):
    """Calls ``close`` when the service stops (a resolver's timers, a client's connections).

    Stopping waits for what ``close`` returns, if it is a Deferred.
    """

    def __init__(self, close: Callable[[], object]) -> None:
        super().__init__()
        self.close = close

    def stop_service(self) -> Deferred[None] | None:
        super().stop_service()
        closed = self.close()
        if isinstance(closed, Deferred):
            return closed.add_callback(lambda _: None)
        return None


def _others(
    reactor: Reactor, options: Mapping[str, Any], interface: str, port: int
) -> tuple[list[DNSResolver], bool, list[Callable[[], object]]]:
    """The resolvers after the zones (hosts file, cache, upstream).

    Returns:
        The resolvers, whether they recurse (RA), and what to call when
        the server stops.
    """
    from torsion.names._cache import CacheResolver
    from torsion.names._chain import ResolverChain
    from torsion.names._client import DNSClient
    from torsion.names._forward import ForwardingResolver
    from torsion.names._hosts import HostsResolver
    from torsion.names._resolvconf import read_resolv_conf

    servers: list[tuple[str, int]] = list(options["forward"])
    tls_servers: list[tuple[str, int, str | None]] = list(options["forward_tls"])
    timeout: float | None = None
    attempts: int | None = None
    rotate: bool | None = None
    use_tcp: bool | None = None
    resolv_conf: str | None = options["resolv_conf"]
    if resolv_conf is not None:
        try:
            with open(resolv_conf, "rb"):
                pass
        except OSError as exc:
            raise ValueError(
                f"--resolv-conf: cannot read {resolv_conf!r}: {exc.strerror}"
            ) from exc
        conf = read_resolv_conf(resolv_conf)
        servers.extend(conf.servers)
        timeout, attempts = conf.timeout, conf.attempts
        # A forwarder passes questions on exactly: the search list is not used.
        rotate, use_tcp = conf.rotate, conf.use_vc
    https_urls: list[str] = [options["forward_https"]] if options["forward_https"] else []
    if sum(map(bool, (servers, tls_servers, https_urls))) > 1:
        raise ValueError(
            "give one way to ask upstream servers: --forward/--resolv-conf, "
            "--forward-tls or --forward-https"
        )
    if options["forward_https_ca"] is not None and not https_urls:
        raise ValueError(
            "--forward-https-ca checks the --forward-https servers: give --forward-https"
        )
    if options["forward_tls_ca"] is not None and not tls_servers:
        raise ValueError("--forward-tls-ca checks the --forward-tls servers: give --forward-tls")
    if options["recursive"] and (servers or tls_servers or https_urls):
        raise ValueError(
            "--recursive resolves from the root servers: give it or --forward/--resolv-conf, "
            "not both"
        )
    if options["root_hints"] is not None and not options["recursive"]:
        raise ValueError("--root-hints names the root servers for --recursive: give --recursive")
    if options["qname_minimisation"] and not options["recursive"]:
        raise ValueError("--qname-minimisation is a way of --recursive: give --recursive")
    listening = _address_or_none(interface)
    for server in servers:
        # Asking ourselves would send every query round until the bounds drop it.
        upstream = ipaddress.ip_address(server[0])
        if server[1] == port and (
            upstream == listening
            or (listening is not None and listening.is_unspecified and upstream.is_loopback)
        ):
            raise ValueError(f"--forward: {server[0]}:{server[1]} is this server itself")
    chain: list[DNSResolver] = []
    hosts_file: str | None = options["hosts_file"]
    if hosts_file is not None:
        chain.append(HostsResolver(hosts_file))
    if options["recursive"]:
        from torsion.names._recursive import RecursiveResolver, load_root_hints
        from torsion.names._zone import ZoneError

        hints = None
        if options["root_hints"] is not None:
            try:
                hints = load_root_hints(options["root_hints"])
            except (OSError, ZoneError) as exc:
                raise ValueError(f"--root-hints: {exc}") from exc
        if options["cache"]:
            raise ValueError("--recursive keeps a cache of its own: --cache is for --forward")
        resolver = RecursiveResolver(
            reactor, hints=hints, qname_minimisation=options["qname_minimisation"]
        )
        chain.append(resolver)
        return [ResolverChain(chain)], True, [resolver.close]
    if servers:
        if options["cache"]:
            chain.append(CacheResolver(reactor))
        client = DNSClient(
            reactor, servers, timeout=timeout, attempts=attempts, rotate=rotate, use_tcp=use_tcp
        )
        chain.append(ForwardingResolver(client))
        return [ResolverChain(chain)], True, []
    if tls_servers:
        if options["cache"]:
            chain.append(CacheResolver(reactor))
        client = DNSClient(reactor, tls=_dot_servers(tls_servers, options["forward_tls_ca"]))
        chain.append(ForwardingResolver(client))
        return [ResolverChain(chain)], True, [client.close]
    if https_urls:
        if options["cache"]:
            chain.append(CacheResolver(reactor))
        http, resolver = _doh_resolver(reactor, https_urls[0], options["forward_https_ca"])
        chain.append(ForwardingResolver(resolver))
        return [ResolverChain(chain)], True, [http.close]
    if options["cache"]:
        raise ValueError("--cache keeps what upstream servers answer: give --forward too")
    return chain, False, []


def _doh_resolver(reactor: Reactor, url: str, ca_file: str | None) -> tuple[Any, Any]:
    """The HTTP client and the ``DoHResolver`` of ``--forward-https``."""
    import ssl

    from torsion.internet import client_context
    from torsion.names._doh import DoHResolver
    from torsion.web import HTTPClient

    context = None
    if ca_file is not None:
        try:
            context = client_context(ca_file=ca_file, alpn=("http/1.1",))
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"--forward-https-ca: cannot read {ca_file!r}: {exc}") from exc
    http = HTTPClient(reactor, tls_context=context)
    try:
        return http, DoHResolver(url, client=http)
    except ValueError as exc:
        raise ValueError(f"--forward-https: {exc}") from exc


def _dot_servers(servers: Sequence[tuple[str, int, str | None]], ca_file: str | None) -> list[Any]:
    """The ``DoTServer``s of ``--forward-tls``, checked against ``ca_file`` if given."""
    import ssl

    from torsion.names._dot import DoTServer

    context = None
    if ca_file is not None:
        try:
            context = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"--forward-tls-ca: cannot read {ca_file!r}: {exc}") from exc
    return [DoTServer(address, port, name, context) for address, port, name in servers]


def _tls_server(text: str) -> tuple[str, int, str | None]:
    """``IP[:PORT][#NAME]`` as (address, port, certificate name or None)."""
    address, _, name = text.partition("#")
    if "#" in text and not name:
        raise ValueError(f"--forward-tls: {text!r}: the name after # is empty")
    host, port = _server_address(address, "--forward-tls")
    if not (address.count(":") == 1 or "]:" in address):
        port = 853  # None given: RFC 7858's.
    return host, port, name or None


def _address_or_none(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


DNS = Plugin(
    name="dns",
    description="a DNS server for zones, secondary zones and forwarding (UDP, TCP)",
    options=(
        Option(
            "bindzone",
            "serve the zone in this BIND master file ($ORIGIN in the file names the zone)",
            repeatable=True,
            metavar="FILE",
        ),
        Option(
            "pyzone",
            "serve the zone this Python file defines as zone (a dns.zone.Zone or BIND text)",
            repeatable=True,
            metavar="FILE",
        ),
        Option(
            "secondary",
            "serve this zone as a secondary, transferred (AXFR) from its primary server",
            repeatable=True,
            check=_secondary,
            metavar="DOMAIN:MASTER_IP[:PORT]",
        ),
        Option(
            "forward",
            "ask this upstream server about names outside the zones (RA set)",
            repeatable=True,
            check=_server_address,
            metavar="IP[:PORT]",
        ),
        Option(
            "forward-tls",
            "ask this upstream server over TLS only (RFC 7858; port 853 and the "
            "certificate checked against NAME, else the address)",
            repeatable=True,
            check=_tls_server,
            metavar="IP[:PORT][#NAME]",
        ),
        Option(
            "forward-tls-ca",
            "check the --forward-tls servers' certificates against this CA file "
            "(the system's trust store by default)",
            metavar="FILE",
        ),
        Option(
            "forward-https",
            "ask this DNS over HTTPS server (RFC 8484), as https://HOST[:PORT]/dns-query",
            metavar="URL",
        ),
        Option(
            "forward-https-ca",
            "check the --forward-https servers' certificates against this CA file",
            metavar="FILE",
        ),
        Option(
            "resolv-conf",
            "ask the name servers this resolv.conf lists, as --forward does",
            metavar="FILE",
        ),
        Option(
            "recursive",
            "resolve names outside the zones from the root servers down (RA set)",
            type=bool,
        ),
        Option(
            "root-hints",
            "the root servers for --recursive, in a named.root file (IANA's by default)",
            metavar="FILE",
        ),
        Option(
            "qname-minimisation",
            "with --recursive, tell each server only the next label of the name (RFC 9156)",
            type=bool,
        ),
        Option(
            "cache", "keep upstream answers for their TTLs (RFC 2308 for negative ones)", type=bool
        ),
        Option(
            "hosts-file",
            "answer A, AAAA and PTR from this hosts file, before the cache and upstream",
            metavar="FILE",
        ),
        Option("port", "the UDP and TCP port", type=int, default=53, check=_port),
        Option(
            "interface",
            "the address to listen on (0.0.0.0 or :: for every interface: a DNS "
            "server open to the world is a reflector for attacks on others)",
            default="127.0.0.1",
            metavar="ADDRESS",
        ),
        Option(
            "tls",
            "serve DNS over TLS (RFC 7858) on this endpoint too, as "
            "tls:853:certKey=cert.pem:privateKey=key.pem",
            repeatable=True,
            metavar="ENDPOINT",
        ),
        Option(
            "doh",
            "serve DNS over HTTPS (RFC 8484) at /dns-query on this endpoint too, as "
            "tls:443:certKey=cert.pem:privateKey=key.pem",
            repeatable=True,
            metavar="ENDPOINT",
        ),
        Option(
            "udp-rate",
            "UDP queries a second each client network (IPv4 /24, IPv6 /56) may ask; "
            "more are dropped (0: no limit; loopback and --exempt are never limited)",
            type=float,
            default=1000.0,
            check=_at_least(0, "--udp-rate"),
        ),
        Option(
            "udp-burst",
            "UDP queries a client network may ask at once after a quiet spell",
            type=int,
            default=2000,
            check=_at_least(1, "--udp-burst"),
        ),
        Option(
            "max-connections",
            "TCP and TLS connections open at once, in all",
            type=int,
            default=100,
            check=_at_least(1, "--max-connections"),
        ),
        Option(
            "max-connections-per-client",
            "TCP and TLS connections open at once from one client (0: no limit)",
            type=int,
            default=16,
            check=_at_least(0, "--max-connections-per-client"),
        ),
        Option(
            "exempt",
            "never limit this network's clients (rate and connections per client)",
            repeatable=True,
            check=_network("--exempt"),
            metavar="NETWORK",
        ),
        Option(
            "allow-axfr",
            "let this network transfer the zones (AXFR over TCP); nobody may by default",
            repeatable=True,
            check=_network("--allow-axfr"),
            metavar="NETWORK",
        ),
    ),
    build=_build,
)
