"""The DNS client: asks name servers over UDP (TCP when truncated), with retries.

Each query goes out from a fresh connected UDP port (so a fresh random source
port, chosen by the system) with a random 16-bit ID and an EDNS0 OPT record
(RFC 6891) advertising the payload size we accept. A response is accepted
only if it comes from the server asked, carries the same ID, has the QR bit
and repeats the question (RFC 5452, section 9.1); anything else is dropped
and the query keeps waiting, so a spoofer must guess the port and the ID.

A truncated response (TC) is asked again over TCP, with the two-byte length
prefix of RFC 1035, section 4.2.2 (RFC 7766). A server that times out, or
answers SERVFAIL or REFUSED, is passed over for the next one, for
``attempts`` rounds; one that answers FORMERR to a query with EDNS is asked
again without it (RFC 6891, section 7). NXDOMAIN is an answer, not an error.

Without servers given, the client takes resolv.conf's servers, options and
search list, as the C library does (see ``torsion.names._resolvconf``):
``rotate`` starts each query with the next server, ``use-vc`` asks over TCP
only, and EDNS0 is sent only under ``options edns0``. The ``lookup``
helpers try relative names through the search list
(``torsion.names._search``); ``query`` asks exactly the question given.

Given ``DoTServer``s instead, it asks them over TLS only, on one pipelined
connection each (``torsion.names._dot``, RFC 7858 and RFC 8310)::

    client = DNSClient(reactor, tls=[DoTServer("192.0.2.53", server_name="dns.example")])

``AddressResolver`` makes any ``DNSResolver`` (this client, or a chain with
a hosts file and a cache in front of it) the reactor's name resolver::

    client = DNSClient(reactor)
    reactor.install_resolver(AddressResolver(client))
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import ssl
import struct
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename

from torsion.defer import Deferred, QueueOverflowError, fail, gather, succeed
from torsion.errors import DNSLookupError
from torsion.internet import Address, Connector, DatagramProtocol, DelayedCall, is_ip_address
from torsion.internet import Protocol as StreamProtocol
from torsion.names._answer import Answer, DNSResolver, Question
from torsion.names._dot import DoTChannel, DoTServer
from torsion.names._resolvconf import ResolvConf, read_resolv_conf
from torsion.names._search import NameLike, SearchList, lookup_addresses, to_name

__all__ = [
    "AddressResolver",
    "DNSClient",
    "NameLike",
    "ReactorForDNS",
    "lookup_addresses",
    "to_name",
]

P = TypeVar("P", bound=asyncio.BaseProtocol)


class _Port(Protocol):
    def stop_listening(self) -> Deferred[None]: ...


# RFC 1035, section 4.1.1: the header is 12 bytes: the ID, then the flags, QR on top.
_HEADER = struct.Struct("!HH")
_QR = 0x8000
# A TCP message's length prefix is two bytes, so no message exceeds this.
_MAX_MESSAGE = 65535
# RFC 6891, section 6.2.5: below 512 bytes the payload size means 512.
_MIN_PAYLOAD = 512
# The DNS flag day 2020 size: no IP fragmentation on any common path.
_DEFAULT_PAYLOAD = 1232
_QUERY_PADDING = 128


class ReactorForDNS(Protocol):
    """What the client needs of a reactor: time, UDP ports, TCP and TLS connections."""

    def call_later(self, delay: float, f: Callable[..., object], /, *args: Any) -> DelayedCall:
        """Call ``f(*args)`` in ``delay`` seconds."""
        ...

    def connect_udp(self, host: str, port: int, protocol: asyncio.DatagramProtocol) -> _Port:
        """Open a UDP port connected to ``host:port``, served by ``protocol``."""
        ...

    def connect_tcp(
        self,
        host: str,
        port: int,
        factory: Callable[[Address], P],
        *,
        timeout: float | None = 30.0,
    ) -> Connector[P]:
        """Connect to ``host:port`` over TCP."""
        ...

    def connect_tls(
        self,
        host: str,
        port: int,
        factory: Callable[[Address], P],
        *,
        context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        timeout: float | None = 30.0,
    ) -> Connector[P]:
        """Connect to ``host:port`` over TLS (for DNS over TLS servers)."""
        ...


class DNSClient:
    """Asks DNS servers, over the network.

    Args:
        reactor: Gives time, UDP ports and TCP connections.
        servers: ``(ip_address, port)`` of the servers to ask, in order;
            by default those in /etc/resolv.conf (127.0.0.1 port 53 if it
            names none), with its options and search list.
        timeout: Seconds to wait for one server's answer, each time it is
            asked (by default resolv.conf's, else 5).
        attempts: Rounds of asking every server in turn (at least 1).
        edns_payload: The largest UDP response we accept, advertised in the
            EDNS0 OPT record (1232, the DNS flag day 2020 size, by default;
            0, no OPT record, when the servers come from a resolv.conf
            without ``options edns0``, as the C library does). Without
            EDNS, responses are at most 512 bytes.
        max_outstanding: How many queries may be under way at once; one
            more fails at once with ``QueueOverflowError``.
        resolv_conf: The file read when ``servers`` is None.
        search: The search list the ``lookup`` helpers try relative names
            in (resolv.conf's when it is read, else none).
        ndots: Names with at least this many dots are tried as they are
            first (resolv.conf's when read, else 1).
        rotate: Whether each query starts with the next server in turn
            rather than the first (resolv.conf's ``rotate`` when read).
        use_tcp: Whether to ask over TCP from the start (resolv.conf's
            ``use-vc`` when read).
        tls: DNS over TLS servers to ask instead of ``servers``, in order,
            and only over TLS (RFC 8310's strict profile): one connection
            each, kept open and shared by the queries (resolv.conf is then
            not read).
        tls_idle_timeout: Seconds a TLS connection stays open with no query
            waiting.
        recursion_desired: Whether queries set RD (asking the server to
            recurse); an iterative resolver asking authoritative servers
            clears it.

    Raises:
        ValueError: A server is not an IP address, or a number is out of range.
    """

    def __init__(
        self,
        reactor: ReactorForDNS,
        servers: Sequence[tuple[str, int]] | None = None,
        *,
        timeout: float | None = None,
        attempts: int | None = None,
        edns_payload: int | None = None,
        max_outstanding: int = 1000,
        resolv_conf: str = "/etc/resolv.conf",
        search: Sequence[NameLike] | None = None,
        ndots: int | None = None,
        rotate: bool | None = None,
        use_tcp: bool | None = None,
        tls: Sequence[DoTServer] = (),
        tls_idle_timeout: float = 10.0,
        recursion_desired: bool = True,
    ) -> None:
        if tls:
            if servers is not None:
                raise ValueError("a DNS client asks either servers or tls servers, not both")
            servers = [(server.address, server.port) for server in tls]
        if servers is None:
            conf = read_resolv_conf(resolv_conf)
            servers = conf.servers
        else:
            # Given servers: nothing comes from a file, EDNS0 is on unless turned off.
            conf = ResolvConf(edns0=True)
        if not servers:
            raise ValueError("a DNS client needs at least one server")
        for host, port in servers:
            if not is_ip_address(host):
                raise ValueError(f"a DNS server is an IP address, not {host!r}")
            if not 0 < port < 65536:
                raise ValueError(f"not a port: {port}")
        timeout = conf.timeout if timeout is None else timeout
        attempts = conf.attempts if attempts is None else attempts
        if edns_payload is None:
            edns_payload = _DEFAULT_PAYLOAD if conf.edns0 else 0
        if timeout <= 0:
            raise ValueError(f"the timeout must be positive, not {timeout}")
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {attempts}")
        if edns_payload and not _MIN_PAYLOAD <= edns_payload <= _MAX_MESSAGE:
            raise ValueError(f"an EDNS payload size is 512 to 65535, not {edns_payload}")
        self.reactor = reactor
        self.servers: tuple[tuple[str, int], ...] = tuple(servers)
        self.timeout = timeout
        self.attempts = attempts
        self.edns_payload = edns_payload
        self.max_outstanding = max_outstanding
        self.recursion_desired = recursion_desired
        self.search_list = SearchList.of(
            conf.search if search is None else search,
            ndots=conf.ndots if ndots is None else ndots,
            tld_query=conf.tld_query,
        )
        self.rotate = conf.rotate if rotate is None else rotate
        self.use_tcp = conf.use_vc if use_tcp is None else use_tcp
        if tls_idle_timeout <= 0:
            raise ValueError(f"the idle timeout must be positive, not {tls_idle_timeout}")
        self.tls_servers: tuple[DoTServer, ...] = tuple(tls)
        self.channels: tuple[DoTChannel, ...] = tuple(
            DoTChannel(reactor, server, connect_timeout=timeout, idle_timeout=tls_idle_timeout)
            for server in tls
        )
        self._outstanding: set[_Query] = set()
        self._rotation = 0

    @property
    def outstanding(self) -> int:
        """How many queries are under way."""
        return len(self._outstanding)

    def query(self, question: Question) -> Deferred[Answer]:
        """Ask the servers ``question``, exactly (the search list is not used).

        Returns:
            A Deferred firing with the first acceptable answer (NXDOMAIN and
            NODATA included; SERVFAIL or REFUSED only when every server said
            so), or failing with ``TimeoutError`` when no server answered,
            or ``QueueOverflowError`` when too many queries are under way.
            Cancelling it stops the query and closes its port.
        """
        if len(self._outstanding) >= self.max_outstanding:
            return fail(QueueOverflowError(f"{self.max_outstanding} DNS queries are under way"))
        query = _Query(self, question, self._first_server())
        self._outstanding.add(query)
        query.start()
        return query.deferred

    def _first_server(self) -> int:
        if not self.rotate:
            return 0
        # resolv.conf(5), rotate: round-robin among the servers, query by query.
        first = self._rotation
        self._rotation = (first + 1) % len(self.servers)
        return first

    def _finished(self, query: _Query) -> None:
        self._outstanding.discard(query)

    def close(self) -> Deferred[None]:
        """Cancel every query under way and close the DNS over TLS connections.

        The client may be used again afterwards (connections are opened anew).

        Returns:
            A Deferred firing once the connections are closed.
        """
        for query in list(self._outstanding):
            query.deferred.cancel()
        return gather([channel.close() for channel in self.channels]).add_callback(lambda _: None)

    def lookup(
        self,
        name: NameLike,
        rdtype: dns.rdatatype.RdataType | str,
        rdclass: dns.rdataclass.RdataClass = dns.rdataclass.IN,
    ) -> Deferred[Answer]:
        """Ask for records of any type, trying ``name`` through the search list.

        Args:
            name: The name: text ending with a dot, or an absolute
                ``dns.name.Name``, is asked as it is; other names go through
                the search list (``search_list.names(name)``).
            rdtype: The type, as ``dns.rdatatype.MX`` or "MX".
            rdclass: The class.

        Returns:
            A Deferred of the first answer with records, else the best
            negative one (see ``SearchList.query``).

        Raises:
            ValueError: ``name`` or ``rdtype`` is not valid.
        """
        return self.search_list.query(self, name, dns.rdatatype.RdataType.make(rdtype), rdclass)

    def lookup_address(self, name: NameLike) -> Deferred[list[str]]:
        """Return every IPv4 (A) then IPv6 (AAAA) address of ``name``.

        Both are asked at once, for each name of the search list in turn
        until one has an address; CNAMEs the server followed are followed.

        Returns:
            A Deferred firing with the addresses, possibly none (NXDOMAIN,
            NODATA); it fails only if every query failed.
        """
        return self.search_list.addresses(self, name)

    def lookup_mail_exchange(self, name: NameLike) -> Deferred[Answer]:
        """Ask for ``name``'s MX records."""
        return self.lookup(name, dns.rdatatype.MX)

    def lookup_service(self, name: NameLike) -> Deferred[Answer]:
        """Ask for SRV records (``name`` is like "_xmpp-client._tcp.example.org")."""
        return self.lookup(name, dns.rdatatype.SRV)

    def lookup_text(self, name: NameLike) -> Deferred[Answer]:
        """Ask for ``name``'s TXT records."""
        return self.lookup(name, dns.rdatatype.TXT)

    def lookup_name_server(self, name: NameLike) -> Deferred[Answer]:
        """Ask for ``name``'s NS records."""
        return self.lookup(name, dns.rdatatype.NS)

    def lookup_pointer(self, name: NameLike) -> Deferred[Answer]:
        """Ask for PTR records; an IP address is turned into its reverse name first."""
        if isinstance(name, str) and is_ip_address(name):
            name = dns.reversename.from_address(name)
        return self.lookup(name, dns.rdatatype.PTR)

    def __repr__(self) -> str:
        servers = ", ".join(f"{host}:{port}" for host, port in self.servers)
        over = " over TLS" if self.channels else ""
        return f"<DNSClient asking {servers}{over}>"


class AddressResolver:
    """The reactor's ``Resolver`` interface, answered through a ``DNSResolver``.

    Install it with ``reactor.install_resolver(AddressResolver(client))``:
    from then on ``reactor.resolve`` (and every ``connect_tcp`` to a name)
    asks DNS instead of the system's ``getaddrinfo``, trying host names
    through the search list as the C library does.

    Args:
        resolver: Answers the A and AAAA questions (a ``DNSClient``, or a
            chain with a hosts file and a cache before it).
        search_list: The search list; by default the client's own when
            ``resolver`` is a ``DNSClient``, else none (names are absolute).
    """

    def __init__(self, resolver: DNSResolver, search_list: SearchList | None = None) -> None:
        self.resolver = resolver
        if search_list is None:
            search_list = resolver.search_list if isinstance(resolver, DNSClient) else SearchList()
        self.search_list = search_list

    def resolve(self, host: str) -> Deferred[str]:
        """Return a Deferred of the first address of ``host`` (IPv4 first)."""
        return self.resolve_all(host).add_callback(lambda addresses: addresses[0])

    def resolve_all(self, host: str) -> Deferred[list[str]]:
        """Return a Deferred of every address of ``host``: IPv4, then IPv6.

        An IP literal is its own answer. Failures (no address, no server
        answered, not a valid name) are ``DNSLookupError``s.
        """
        if is_ip_address(host):
            return succeed([host])
        try:
            looked_up = self.search_list.addresses(self.resolver, host)
        except ValueError as exc:
            return fail(DNSLookupError(host, str(exc)))

        def check(addresses: list[str]) -> list[str]:
            if not addresses:
                raise DNSLookupError(host)
            return addresses

        def translate(exc: BaseException) -> list[str]:
            if isinstance(exc, DNSLookupError | asyncio.CancelledError):
                raise exc
            raise DNSLookupError(host, str(exc) or type(exc).__name__) from exc

        return looked_up.add_callbacks(check, translate)


class _Query:
    """One question being asked: which server, which try, which port."""

    def __init__(self, client: DNSClient, question: Question, first: int = 0) -> None:
        self.client = client
        self.question = question
        self.deferred: Deferred[Answer] = Deferred(self._cancel)
        servers = list(enumerate(client.servers))
        servers = servers[first:] + servers[:first]
        self._tries = [try_ for _ in range(client.attempts) for try_ in servers]
        self._no_edns: set[int] = set()
        self._last_error_answer: Answer | None = None
        self._last_error: BaseException | None = None
        self._current: tuple[int, tuple[str, int]] | None = None
        self._id = 0
        self._edns = False
        self._udp: _UDPExchange | None = None
        self._dot: tuple[DoTChannel, int] | None = None
        self._tcp: Connector[_TCPExchange] | None = None
        # The connection itself, once made: the connector may learn of it
        # only after the response has come (its Deferred fires later).
        self.tcp_exchange: _TCPExchange | None = None
        self._timer: DelayedCall | None = None
        # Which try is under way: what an earlier try's port or connection
        # reports afterwards is ignored.
        self.generation = 0

    def start(self) -> None:
        """Ask the first server."""
        self._next()

    # Trying servers in turn.

    def _next(self) -> None:
        self._stop_exchange()
        if self.deferred.called:
            return
        if not self._tries:
            self.client._finished(self)
            if self._last_error_answer is not None:
                self.deferred.callback(self._last_error_answer)
            else:
                error = TimeoutError(f"no DNS server answered {self.question}")
                if self._last_error is not None:
                    error = TimeoutError(
                        f"no DNS server answered {self.question} (last: {self._last_error})"
                    )
                    error.__cause__ = self._last_error
                self.deferred.errback(error)
            return
        self._ask(*self._tries.pop(0))

    def _ask(self, index: int, server: tuple[str, int]) -> None:
        if self.client.channels:
            self._ask_over_tls(index, server)
            return
        if self.client.use_tcp:
            self._ask_over_tcp(index, server)
            return
        self._stop_exchange()
        self._current = (index, server)
        self._edns = bool(self.client.edns_payload) and index not in self._no_edns
        self._id = secrets.randbelow(65536)
        exchange = _UDPExchange(self, server, self._request(), self.generation)
        try:
            exchange.port = self.client.reactor.connect_udp(server[0], server[1], exchange)
        except OSError:
            # No route to this server, no local address: the next one may do.
            self._next()
            return
        self._udp = exchange
        self._timer = self.client.reactor.call_later(self.client.timeout, self._timed_out)

    def _ask_over_tcp(self, index: int, server: tuple[str, int]) -> None:
        self._stop_exchange()
        self._current = (index, server)
        generation = self.generation
        request = self._request()
        connector = self.client.reactor.connect_tcp(
            server[0],
            server[1],
            lambda _: _TCPExchange(self, request, generation),
            timeout=self.client.timeout,
        )
        self._tcp = connector
        connector.deferred.add_errback(lambda _: self.server_failed(generation))
        self._timer = self.client.reactor.call_later(self.client.timeout, self._timed_out)

    def _ask_over_tls(self, index: int, server: tuple[str, int]) -> None:
        self._stop_exchange()
        self._current = (index, server)
        self._edns = bool(self.client.edns_payload) and index not in self._no_edns
        channel = self.client.channels[index]
        self._id = channel.free_id()
        self._dot = (channel, self._id)
        # RFC 8467, section 4.1: pad queries to a multiple of 128 bytes, so
        # that their length says less about the name asked for.
        # The timer first: a connection failing at once moves on, and stops it.
        self._timer = self.client.reactor.call_later(self.client.timeout, self._timed_out)
        channel.send(self, self._id, self._request(pad=_QUERY_PADDING), self.generation)

    def _request(self, *, pad: int = 0) -> bytes:
        q = self.question
        message = dns.message.make_query(
            q.name,
            q.rdtype,
            q.rdclass,
            use_edns=0 if self._edns else False,
            payload=self.client.edns_payload or _MIN_PAYLOAD,
            flags=dns.flags.RD if self.client.recursion_desired else 0,
            pad=pad if self._edns else 0,
        )
        message.id = self._id
        wire: bytes = message.to_wire()
        return wire

    def _timed_out(self) -> None:
        self._timer = None
        self._next()

    def server_failed(self, generation: int, error: BaseException | None = None) -> None:
        """Try ``generation`` will get no answer (ICMP unreachable, TCP refused or cut).

        Args:
            generation: The try.
            error: Why, if known (a TLS handshake's failure, say): the
                ``TimeoutError`` the query fails with, if it does, is
                chained to the last such error.
        """
        if generation == self.generation and not self.deferred.called:
            if error is not None:
                self._last_error = error
            self._next()

    # Responses.

    def response(self, data: bytes, generation: int, *, over_tcp: bool) -> bool:
        """Consider a response to try ``generation``; drop it unless it fits.

        Returns:
            Whether it was taken (not dropped as a mismatch or a latecomer).
        """
        if self.deferred.called or self._current is None or generation != self.generation:
            return False
        message = self._parse(data)
        if message is None:
            return False
        index, server = self._current
        rcode = message.rcode()
        if message.flags & dns.flags.TC and not over_tcp:
            self._ask_over_tcp(index, server)
        elif rcode == dns.rcode.FORMERR and self._edns:
            # The server may not know EDNS (RFC 6891, section 7): once more without.
            self._no_edns.add(index)
            self._ask(index, server)
        else:
            answer = Answer(
                rcode=rcode,
                answer=list(message.answer),
                authority=list(message.authority),
                additional=list(message.additional),
                authoritative=bool(message.flags & dns.flags.AA),
            )
            if rcode in _NEXT_SERVER_RCODES:
                self._last_error_answer = answer
                self._next()
            else:
                self._stop_exchange()
                self.client._finished(self)
                self.deferred.callback(answer)
        return True

    def _parse(self, data: bytes) -> dns.message.Message | None:
        # Cheap checks first, so that a flood of spoofed datagrams costs no parsing.
        if len(data) < 12 or len(data) > _MAX_MESSAGE:
            return None
        ident, flags = _HEADER.unpack_from(data)
        if ident != self._id or not flags & _QR:
            return None
        try:
            message = dns.message.from_wire(data, ignore_trailing=True)
        except Exception:  # dnspython raises several kinds on bad input
            return None
        if not message.question:
            # RFC 1035 lets an error response leave the question out.
            return message if message.rcode() in _NEXT_SERVER_RCODES else None
        q = self.question
        if len(message.question) != 1:
            return None
        [asked] = message.question
        if asked.name != q.name or asked.rdtype != q.rdtype or asked.rdclass != q.rdclass:
            return None
        return message

    # Cleaning up.

    def _stop_exchange(self) -> None:
        # First, so that what closing reports (a cancelled connection) is ignored.
        self.generation += 1
        self._current = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        udp, self._udp = self._udp, None
        if udp is not None:
            udp.close()
        dot, self._dot = self._dot, None
        if dot is not None:
            dot[0].forget(dot[1])
        tcp, self._tcp = self._tcp, None
        if tcp is not None:
            tcp.disconnect()
        exchange, self.tcp_exchange = self.tcp_exchange, None
        if exchange is not None:
            exchange.transport.close()

    def _cancel(self, _: Deferred[Answer]) -> None:
        self._tries.clear()
        self._stop_exchange()
        self.client._finished(self)


# Answers that send the query on to the next server (RFC 1035, section 7.2).
_NEXT_SERVER_RCODES = frozenset(
    {dns.rcode.SERVFAIL, dns.rcode.REFUSED, dns.rcode.NOTIMP, dns.rcode.FORMERR}
)


class _UDPExchange(DatagramProtocol):
    """The connected UDP port of one try: sends the query, passes on responses."""

    port: _Port | None = None

    def __init__(
        self, query: _Query, server: tuple[str, int], request: bytes, generation: int
    ) -> None:
        self.query = query
        self.server = (_unscoped(server[0]), server[1])
        self.request = request
        self.generation = generation
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the query as soon as the port is ready."""
        super().connection_made(transport)
        if not self.closed:
            self.send(self.request)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        """Pass on a response from the server asked (the kernel drops the rest)."""
        if self.closed:
            return
        # A connected socket only hears from its peer; check anyway, cheaply.
        try:
            source = (_unscoped(addr[0]), addr[1])
        except (ValueError, TypeError, IndexError, AttributeError):
            return
        if source != self.server:
            return
        self.query.response(data, self.generation, over_tcp=False)

    def error_received(self, exc: Exception) -> None:
        """ICMP port unreachable (or another error): this server will not answer."""
        if not self.closed and isinstance(exc, ConnectionRefusedError):
            self.query.server_failed(self.generation)

    def close(self) -> None:
        """Close the port (once)."""
        if not self.closed:
            self.closed = True
            if self.port is not None:
                self.port.stop_listening()


def _unscoped(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    # A link-local server's scope (fe80::1%eth0) picks the interface; the
    # address a datagram comes from may or may not carry it.
    return ipaddress.ip_address(host.partition("%")[0])


class _TCPExchange(StreamProtocol):
    """One query over TCP: the length-prefixed request, then one response."""

    def __init__(self, query: _Query, request: bytes, generation: int) -> None:
        super().__init__()
        self.query = query
        self.request = request
        self.generation = generation
        self.buffer = bytearray()
        self.done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the request, with its two-byte length (RFC 1035, section 4.2.2)."""
        super().connection_made(transport)
        if self.generation != self.query.generation:
            # The query moved on (timed out, cancelled) while connecting.
            self.done = True
            self.transport.close()
            return
        self.query.tcp_exchange = self
        self.transport.write(struct.pack("!H", len(self.request)) + self.request)

    def data_received(self, data: bytes) -> None:
        """Collect one length-prefixed response (at most 2 + 65535 bytes)."""
        if self.done:
            return
        self.buffer += data[: 2 + _MAX_MESSAGE - len(self.buffer)]
        if len(self.buffer) < 2:
            return
        (length,) = struct.unpack_from("!H", self.buffer)
        if len(self.buffer) < 2 + length:
            return
        self.done = True
        response = bytes(self.buffer[2 : 2 + length])
        self.buffer.clear()
        if not self.query.response(response, self.generation, over_tcp=True):
            # One query, one response: a mismatch means this server is done with.
            self.query.server_failed(self.generation)

    def connection_lost(self, exc: Exception | None) -> None:
        """The server closed before answering: try the next one."""
        super().connection_lost(exc)
        if not self.done:
            self.done = True
            self.query.server_failed(self.generation)
