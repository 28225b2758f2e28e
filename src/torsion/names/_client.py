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

``AddressResolver`` makes any ``DNSResolver`` (this client, or a chain with
a hosts file and a cache in front of it) the reactor's name resolver::

    client = DNSClient(reactor)
    reactor.install_resolver(AddressResolver(client))
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import secrets
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

from torsion.defer import Deferred, QueueOverflowError, fail, succeed
from torsion.errors import DNSLookupError
from torsion.internet import Address, Connector, DatagramProtocol, DelayedCall, is_ip_address
from torsion.internet import Protocol as StreamProtocol
from torsion.names._answer import Answer, DNSResolver, Question
from torsion.names._resolvconf import read_resolv_conf

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


NameLike = str | dns.name.Name

# RFC 1035, section 4.1.1: the header is 12 bytes: the ID, then the flags, QR on top.
_HEADER = struct.Struct("!HH")
_QR = 0x8000
# A TCP message's length prefix is two bytes, so no message exceeds this.
_MAX_MESSAGE = 65535
# RFC 6891, section 6.2.5: below 512 bytes the payload size means 512.
_MIN_PAYLOAD = 512


class ReactorForDNS(Protocol):
    """What the client needs of a reactor: time, UDP ports and TCP connections."""

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


def to_name(name: NameLike) -> dns.name.Name:
    """Return ``name`` as an absolute ``dns.name.Name`` (text names are from the root).

    Raises:
        ValueError: ``name`` is not a valid domain name (a label over 63
            bytes, a name over 255).
    """
    if isinstance(name, dns.name.Name):
        return name if name.is_absolute() else name.concatenate(dns.name.root)
    try:
        return dns.name.from_text(name, dns.name.root)
    except dns.exception.DNSException as exc:
        raise ValueError(f"not a domain name: {name!r} ({exc})") from exc


class DNSClient:
    """Asks DNS servers, over the network.

    Args:
        reactor: Gives time, UDP ports and TCP connections.
        servers: ``(ip_address, port)`` of the servers to ask, in order;
            by default those in /etc/resolv.conf (127.0.0.1 port 53 if it
            names none), with its timeout and attempts options.
        timeout: Seconds to wait for one server's answer, each time it is
            asked (by default resolv.conf's, else 5).
        attempts: Rounds of asking every server in turn (at least 1).
        edns_payload: The largest UDP response we accept, advertised in the
            EDNS0 OPT record (1232, the DNS flag day 2020 size, by default);
            0 sends no OPT record, and responses are then at most 512 bytes.
        max_outstanding: How many queries may be under way at once; one
            more fails at once with ``QueueOverflowError``.
        resolv_conf: The file read when ``servers`` is None.

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
        edns_payload: int = 1232,
        max_outstanding: int = 1000,
        resolv_conf: str = "/etc/resolv.conf",
    ) -> None:
        conf = read_resolv_conf(resolv_conf) if servers is None else None
        if servers is None and conf is not None:
            servers = conf.servers
        if not servers:
            raise ValueError("a DNS client needs at least one server")
        for host, port in servers:
            if not is_ip_address(host):
                raise ValueError(f"a DNS server is an IP address, not {host!r}")
            if not 0 < port < 65536:
                raise ValueError(f"not a port: {port}")
        if timeout is None:
            timeout = conf.timeout if conf is not None else 5.0
        if attempts is None:
            attempts = conf.attempts if conf is not None else 2
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
        self._outstanding: set[_Query] = set()

    @property
    def outstanding(self) -> int:
        """How many queries are under way."""
        return len(self._outstanding)

    def query(self, question: Question) -> Deferred[Answer]:
        """Ask the servers ``question``.

        Returns:
            A Deferred firing with the first acceptable answer (NXDOMAIN and
            NODATA included; SERVFAIL or REFUSED only when every server said
            so), or failing with ``TimeoutError`` when no server answered,
            or ``QueueOverflowError`` when too many queries are under way.
            Cancelling it stops the query and closes its port.
        """
        if len(self._outstanding) >= self.max_outstanding:
            return fail(QueueOverflowError(f"{self.max_outstanding} DNS queries are under way"))
        query = _Query(self, question)
        self._outstanding.add(query)
        query.start()
        return query.deferred

    def _finished(self, query: _Query) -> None:
        self._outstanding.discard(query)

    def lookup(
        self,
        name: NameLike,
        rdtype: dns.rdatatype.RdataType | str,
        rdclass: dns.rdataclass.RdataClass = dns.rdataclass.IN,
    ) -> Deferred[Answer]:
        """Ask for records of any type: ``query`` with the question made here.

        Args:
            name: The name (text names are absolute).
            rdtype: The type, as ``dns.rdatatype.MX`` or "MX".
            rdclass: The class.

        Raises:
            ValueError: ``name`` or ``rdtype`` is not valid.
        """
        return self.query(Question(to_name(name), dns.rdatatype.RdataType.make(rdtype), rdclass))

    def lookup_address(self, name: NameLike) -> Deferred[list[str]]:
        """Return every IPv4 (A) then IPv6 (AAAA) address of ``name``.

        Both are asked at once; CNAMEs the server followed are followed.

        Returns:
            A Deferred firing with the addresses, possibly none (NXDOMAIN,
            NODATA); it fails only if both queries failed.
        """
        return lookup_addresses(self, to_name(name))

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
        return f"<DNSClient asking {servers}>"


def lookup_addresses(resolver: DNSResolver, name: dns.name.Name) -> Deferred[list[str]]:
    """Ask ``resolver`` for the A and AAAA records of ``name``, at once.

    Returns:
        A Deferred firing with the IPv4 addresses then the IPv6 ones (possibly
        none), or failing with the first error if both queries failed.
    """
    kinds = (dns.rdatatype.A, dns.rdatatype.AAAA)
    queries = [resolver.query(Question(name, rdtype)) for rdtype in kinds]
    results: list[Answer | BaseException | None] = [None, None]

    def cancel(_: Deferred[list[str]]) -> None:
        for query in queries:
            query.cancel()

    done: Deferred[list[str]] = Deferred(cancel)
    remaining = [len(queries)]

    def settle(result: Answer | BaseException, index: int) -> None:
        results[index] = result
        remaining[0] -= 1
        if remaining[0] or done.called:
            return
        answers = [r for r in results if isinstance(r, Answer)]
        if not answers:
            first = results[0]
            assert isinstance(first, BaseException)
            done.errback(first)
            return
        addresses: list[str] = []
        for answer, rdtype in zip(results, kinds, strict=True):
            if isinstance(answer, Answer):
                addresses.extend(_addresses_of(answer, rdtype))
        done.callback(addresses)

    for index, query in enumerate(queries):
        query.add_both(functools.partial(settle, index=index))
    return done


def _addresses_of(answer: Answer, rdtype: dns.rdatatype.RdataType) -> list[str]:
    addresses: list[str] = []
    if answer.rcode != dns.rcode.NOERROR:
        return addresses
    for rrset in answer.answer:
        if rrset.rdtype != rdtype:
            continue
        for rdata in rrset:
            address = str(rdata.address)
            if address not in addresses:
                addresses.append(address)
    return addresses


class AddressResolver:
    """The reactor's ``Resolver`` interface, answered through a ``DNSResolver``.

    Install it with ``reactor.install_resolver(AddressResolver(client))``:
    from then on ``reactor.resolve`` (and every ``connect_tcp`` to a name)
    asks DNS instead of the system's ``getaddrinfo``.

    Args:
        resolver: Answers the A and AAAA questions (a ``DNSClient``, or a
            chain with a hosts file and a cache before it).
    """

    def __init__(self, resolver: DNSResolver) -> None:
        self.resolver = resolver

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
            name = to_name(host)
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

        return lookup_addresses(self.resolver, name).add_callbacks(check, translate)


class _Query:
    """One question being asked: which server, which try, which port."""

    def __init__(self, client: DNSClient, question: Question) -> None:
        self.client = client
        self.question = question
        self.deferred: Deferred[Answer] = Deferred(self._cancel)
        self._tries = [
            (index, server)
            for _ in range(client.attempts)
            for index, server in enumerate(client.servers)
        ]
        self._no_edns: set[int] = set()
        self._last_error_answer: Answer | None = None
        self._current: tuple[int, tuple[str, int]] | None = None
        self._id = 0
        self._edns = False
        self._udp: _UDPExchange | None = None
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
                self.deferred.errback(TimeoutError(f"no DNS server answered {self.question}"))
            return
        self._ask(*self._tries.pop(0))

    def _ask(self, index: int, server: tuple[str, int]) -> None:
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

    def _request(self) -> bytes:
        q = self.question
        message = dns.message.make_query(
            q.name,
            q.rdtype,
            q.rdclass,
            use_edns=0 if self._edns else False,
            payload=self.client.edns_payload or _MIN_PAYLOAD,
        )
        message.id = self._id
        wire: bytes = message.to_wire()
        return wire

    def _timed_out(self) -> None:
        self._timer = None
        self._next()

    def server_failed(self, generation: int) -> None:
        """Try ``generation`` will get no answer (ICMP unreachable, TCP refused or cut)."""
        if generation == self.generation and not self.deferred.called:
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
        self.server = (ipaddress.ip_address(server[0]), server[1])
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
            source = (ipaddress.ip_address(addr[0]), addr[1])
        except (ValueError, TypeError, IndexError):
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
