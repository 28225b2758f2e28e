"""The DNS server: queries over UDP, TCP and TLS, answered by a chain of resolvers.

``DNSServer`` turns one query message into its response messages
(``respond``); ``DNSDatagramProtocol`` serves it over UDP and
``DNSStreamProtocol`` over TCP (``torsion.names._server_io``), where each
message goes after its length in two bytes (RFC 1035 section 4.2.2,
RFC 7766). ``DNSServer.listen`` opens both
on one port; ``DNSServer.listen_stream`` serves the stream protocol on any
server endpoint, which for ``tls:853:certKey=...:privateKey=...`` is DNS over
TLS (RFC 7858: the same framing inside TLS, queries pipelined and answered
as they are ready, out of order, and idle connections closed).

What a peer sends is never trusted: a message too short for a header, or
one that is itself a response, is dropped (answering responses is how
reflection loops between servers start); a header with an opcode other
than QUERY or NOTIFY gets NOTIMP; a message dnspython cannot parse, or one
without exactly one question, gets FORMERR. This server has no TSIG keys:
a signed message gets NOTAUTH with an unsigned TSIG record saying BADKEY
(RFC 8945 section 5.2.1), whatever it asks. Each UDP datagram is at most 65,535
bytes and each TCP message too (the length prefix says so), and dnspython
bounds names (255 octets), labels (63) and compression pointers (they must
point backwards), so the work per message is bounded by its size.

UDP responses fit the client's EDNS0 payload size (RFC 6891), or 512 bytes
without EDNS0 (RFC 1035 section 4.2.1): what does not fit is cut whole
RRsets at a time, the additional section first (which needs no TC flag,
RFC 2181 section 9), then the authority and answer sections, with TC set so
that the client asks again over TCP.

The common query (one question, perhaps EDNS0, nothing else) whose answer
came from a zone served here is answered the second time from the bytes the
full path rendered the first time, with the query's ID, RD flag and
question put in (``torsion.names._wire``): no dnspython parse, lookup or
rendering. Those answers change only when the zones do: before each
lookup the server checks that its chain, its RA flag and each
``ServedZone``'s zone object are the ones the answers were made from (a
reload or a transfer makes a new zone object), and
``DNSServer.zones_changed`` forgets them outright.

Zone transfers (AXFR, RFC 5936) of the chain's ``ServedZone``s, primary or
secondary, go to the allowed networks over TCP. IXFR (RFC 1995) is answered
the way section 4 allows a server without incremental transfers: a single
SOA when the client's serial is current, the whole zone AXFR-style when it
is not; over UDP, the single SOA that tells the client to ask over TCP
(section 2). A NOTIFY (RFC 1996) for a secondary zone from its primary
starts a refresh and is answered with AA set; any other NOTIFY is REFUSED.

The limits of ``QueryLimits`` are on by default: a query rate per client
network on UDP, excess dropped (``torsion.names._limits``), and on streams
connections in total and per client, an idle timeout, and queries in
flight per connection.
"""

from __future__ import annotations

import io
import ipaddress
import logging
import struct
from collections.abc import Iterable, Sequence

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.rdtypes.ANY.TSIG
import dns.rrset
import dns.zone

from torsion.defer import CancelledError, Deferred, ensure_deferred, succeed
from torsion.errors import CannotListenError, TorsionError
from torsion.internet import (
    Clock,
    Listener,
    ListeningPort,
    Reactor,
    ServerEndpoint,
    UDPPort,
    server_from_string,
)
from torsion.names._answer import Answer, DNSResolver, NotMineError, Question
from torsion.names._limits import QueryLimits, QueryRateLimiter, exempt_networks, is_exempt
from torsion.names._secondary import NotifiedZone, serial_gt
from torsion.names._server_io import DNSDatagramProtocol, DNSStreamFactory, DNSStreamProtocol
from torsion.names._wire import MIN_UDP, AnswerCache
from torsion.names._zone import ServedZone, ZoneError

__all__ = [
    "DNSDatagramProtocol",
    "DNSPorts",
    "DNSServer",
    "DNSStreamPort",
    "DNSStreamProtocol",
]

_log = logging.getLogger("torsion.names")

_HEADER = struct.Struct("!HH")
_HEADER_SIZE = 12
_QR = 0x8000
_RD = 0x0100
_OPCODE_MASK = 0x7800
_QUERY = dns.opcode.to_flags(dns.opcode.QUERY)
_NOTIFY = dns.opcode.to_flags(dns.opcode.NOTIFY)
# The TSIG record's fixed fields after its owner (RFC 8945 section 4.2),
# and its error for a key the server does not know (section 5.2.1).
_RR_HEADER = struct.Struct("!HHIH")
_BADKEY = 17

# The payload size announced in our EDNS0 records, and the most a UDP
# response is made of whatever the client announces: 1,232 bytes fit the
# IPv6 minimum MTU without fragmentation (DNS flag day 2020).
DEFAULT_UDP_PAYLOAD = 1232
_MIN_UDP = MIN_UDP
_MAX_TCP = 0xFFFF
# An AXFR message carries RRsets up to this many bytes, uncompressed: the
# header, the question and the OPT record fit in what is left of 65,535.
_AXFR_BUDGET = 60_000

# Types that only make sense in a transfer, or not in a question at all.
_NOT_IN_QUESTIONS = frozenset(
    {dns.rdatatype.OPT, dns.rdatatype.TSIG, dns.rdatatype.TKEY, dns.rdatatype.NONE}
)

# What dnspython raises on a malformed message (DNSException covers its own
# FormError, ShortHeader, TrailingJunk, BadLabelType, NameTooLong...; the
# others come from rdata parsers meeting impossible values).
_PARSE_ERRORS = (dns.exception.DNSException, ValueError, struct.error, IndexError, UnicodeError)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class DNSServer:
    """Answers DNS queries from a chain of resolvers.

    Each question goes to the resolvers in order; the first that does not
    raise ``NotMineError`` answers. When none claims it, the response is
    REFUSED, or SERVFAIL for a recursive server (it should have found out).

    Args:
        resolvers: The chain: authorities first, typically.
        recursive: Whether recursion is offered (the RA flag): set it only
            when the chain has a resolver that asks other servers.
        allow_axfr: The networks (``"192.0.2.0/24"``, ``"::1"``) that may
            transfer the zones of the chain's ``ServedZone``s (``Authority``,
            ``SecondaryAuthority``) over TCP; every other client is REFUSED.
        udp_payload: The most bytes a UDP response may have, and the size
            announced in EDNS0 responses.
        answer_cache: How many rendered responses to keep for the fast
            path (answers from ``ServedZone``s only, 16 MiB of them at most);
            0 turns it off. The fast path sends the records of an RRset in
            the order of that one rendering (dnspython shuffles them each
            time it renders).
        limits: The flood limits (see ``QueryLimits`` for the defaults):
            the query rate per client on UDP, and connections, idle time and
            queries in flight on streams.

    Attributes:
        resolvers: The chain (a list: it may be changed while serving).
        recursive: As given.
        limits: As given.
    """

    def __init__(
        self,
        resolvers: Sequence[DNSResolver],
        *,
        recursive: bool = False,
        allow_axfr: Iterable[str | Network] = (),
        udp_payload: int = DEFAULT_UDP_PAYLOAD,
        answer_cache: int = 10_000,
        limits: QueryLimits | None = None,
    ) -> None:
        if not _MIN_UDP <= udp_payload <= 0xFFFF:
            raise ValueError(f"udp_payload must be within 512 to 65535, not {udp_payload}")
        self.resolvers = list(resolvers)
        self.recursive = recursive
        self._allow_axfr = [ipaddress.ip_network(network, strict=False) for network in allow_axfr]
        self._udp_payload = udp_payload
        self._cache = AnswerCache(answer_cache, udp_payload)
        self.limits = QueryLimits() if limits is None else limits
        self._udp_limiter: QueryRateLimiter | None = None
        self._udp_limiter_made = False
        # What the cached answers were made from (see _cache_is_current).
        self._seen_resolvers: list[DNSResolver] = []
        self._seen_recursive = recursive
        self._seen_zones: list[tuple[ServedZone, dns.zone.Zone | None]] = []
        self._lasting: list[object] = []
        self.zones_changed()

    def zones_changed(self) -> None:
        """Forget the rendered answers: a zone was reloaded, or the chain changed.

        The server notices by itself when ``resolvers`` or ``recursive``
        change, or a ``ServedZone`` in the chain has a new zone object (a
        reload, a transfer); call this when a zone changed otherwise (a
        resolver in the chain that is a subclass of ``Authority`` changing
        its answers, say).
        """
        self._cache.clear()
        self._seen_resolvers = list(self.resolvers)
        self._seen_recursive = self.recursive
        self._seen_zones = [
            (resolver, resolver.zone)
            for resolver in self._seen_resolvers
            if isinstance(resolver, ServedZone)
        ]
        # The resolvers whose answers last until the zones change.
        self._lasting = [served for served, _ in self._seen_zones]

    def _cache_is_current(self) -> bool:
        """Whether the cached answers were made from the chain and zones served now."""
        if self.resolvers != self._seen_resolvers or self.recursive != self._seen_recursive:
            return False
        for authority, zone in self._seen_zones:  # noqa: SIM110 (all() costs more per query)
            if authority.zone is not zone:
                return False
        return True

    def cached_response(self, wire: bytes, *, tcp: bool) -> bytes | None:
        """The response to ``wire`` from the answers rendered before, if it has one.

        This is the fast path: only a query of the plainest shape can hit
        it, and only answers from ``Authority``s are kept. ``respond`` tries
        it first.

        Args:
            wire: The query, as received.
            tcp: Whether it came over TCP.

        Returns:
            The response, or None when ``respond`` must make it.
        """
        if not self._cache_is_current():
            self.zones_changed()
            return None
        return self._cache.lookup(wire, tcp=tcp)

    def respond(self, wire: bytes, client: str, *, tcp: bool) -> Deferred[list[bytes]]:
        """Make the response messages to one query message.

        Args:
            wire: The query, as received (without TCP's length prefix).
            client: The client's IP address (for the AXFR rules).
            tcp: Whether it came over TCP (no size limit but 65,535 bytes;
                zone transfers allowed).

        Returns:
            A Deferred firing with the messages to send back: none when the
            query is to be dropped, several for a zone transfer. It does not
            fail.
        """
        cached = self.cached_response(wire, tcp=tcp)
        if cached is not None:
            return succeed([cached])
        return ensure_deferred(self._respond(wire, client, tcp))

    async def _respond(self, wire: bytes, client: str, tcp: bool) -> list[bytes]:
        generation = self._cache.generation
        if len(wire) < _HEADER_SIZE:
            return []
        message_id, flags = _HEADER.unpack_from(wire)
        if flags & _QR:
            return []
        opcode = flags & _OPCODE_MASK
        if opcode != _QUERY and opcode != _NOTIFY:
            return [_header_only(message_id, flags, dns.rcode.NOTIMP)]
        try:
            # keyring=False: a TSIG record is read, not checked (no keys here).
            query = dns.message.from_wire(wire, keyring=False)
        except _PARSE_ERRORS as exc:
            _log.debug("FORMERR to %s: %s", client, exc)
            return [_header_only(message_id, flags, dns.rcode.FORMERR)]
        if query.had_tsig:
            return [self._bad_key(query, client, tcp)]
        if len(query.question) != 1 or query.question[0].rdtype in _NOT_IN_QUESTIONS:
            return [_header_only(message_id, flags, dns.rcode.FORMERR)]
        if opcode == _NOTIFY:
            return [self._notify(query, client, tcp)]
        response = dns.message.make_response(
            query, recursion_available=self.recursive, our_payload=self._udp_payload
        )
        if query.edns > 0:
            # RFC 6891 section 6.1.3: only version 0 exists.
            response.set_rcode(dns.rcode.BADVERS)
            return [self._render(response, query, tcp)]
        asked = query.question[0]
        question = Question(
            asked.name,
            dns.rdatatype.RdataType.make(asked.rdtype),
            dns.rdataclass.RdataClass.make(asked.rdclass),
        )
        if question.rdtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
            return self._transfer(query, question, client, tcp)
        if dns.rdatatype.is_metatype(question.rdtype) and question.rdtype != dns.rdatatype.ANY:
            # MAILA, MAILB and the unassigned meta types: not served.
            response.set_rcode(dns.rcode.NOTIMP)
            return [self._render(response, query, tcp)]
        answer, lasting = await self._resolve(question)
        response.set_rcode(answer.rcode)
        if answer.authoritative:
            response.flags |= dns.flags.AA
        response.answer = list(answer.answer)
        response.authority = list(answer.authority)
        response.additional = list(answer.additional)
        rendered = self._render(response, query, tcp)
        if lasting:
            self._cache.store(wire, rendered, tcp=tcp, generation=generation)
        return [rendered]

    async def _resolve(self, question: Question) -> tuple[Answer, bool]:
        """The chain's answer, and whether it lasts until the zones change.

        Only a zone's answers last: a cache's or a forwarder's TTLs decay.
        """
        for resolver in list(self.resolvers):
            try:
                answer = await resolver.query(question)
                return answer, any(resolver is served for served in self._lasting)
            except NotMineError:
                continue
            except (TorsionError, TimeoutError) as exc:
                _log.info("SERVFAIL for %s: %s", question, exc)
                return Answer(dns.rcode.SERVFAIL), False
            except CancelledError:
                raise
            except Exception:
                _log.exception("SERVFAIL for %s: %r failed", question, resolver)
                return Answer(dns.rcode.SERVFAIL), False
        return Answer(dns.rcode.SERVFAIL if self.recursive else dns.rcode.REFUSED), False

    def _render(
        self, response: dns.message.Message, query: dns.message.Message, tcp: bool
    ) -> bytes:
        """``response`` in wire format, cut to what the transport allows."""
        if tcp:
            limit = _MAX_TCP
        elif query.edns >= 0:
            limit = min(max(query.payload, _MIN_UDP), self._udp_payload)
        else:
            limit = _MIN_UDP
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            pass
        # The additional section is a courtesy: without it the answer is
        # still whole, and needs no TC flag (RFC 2181 section 9).
        response.additional = []
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            pass
        response.flags |= dns.flags.TC
        response.authority = []
        while True:
            try:
                return response.to_wire(max_size=limit)
            except dns.exception.TooBig:
                if not response.answer:
                    raise
                response.answer.pop()

    def _transfer(
        self, query: dns.message.Message, question: Question, client: str, tcp: bool
    ) -> list[bytes]:
        """The messages of a zone transfer (AXFR, or IXFR answered AXFR-style), or the refusal."""
        response = dns.message.make_response(query, our_payload=self._udp_payload)
        ixfr = question.rdtype == dns.rdatatype.IXFR
        if not tcp and not ixfr:
            # RFC 5936 section 4.2: AXFR is a TCP affair.
            response.set_rcode(dns.rcode.FORMERR)
            return [self._render(response, query, tcp)]
        zone = self._zone_for(question)
        if zone is None or not self._may_transfer(client):
            _log.info("zone transfer of %s refused to %s", question.name, client)
            response.set_rcode(dns.rcode.REFUSED)
            return [self._render(response, query, tcp)]
        try:
            records = zone.transfer()
        except ZoneError as exc:
            _log.info("zone transfer of %s to %s: %s", question.name, client, exc)
            response.set_rcode(dns.rcode.SERVFAIL)
            return [self._render(response, query, tcp)]
        soa = records[0]
        if ixfr and (not tcp or _is_current(query, soa)):
            # RFC 1995 section 2: over UDP, the SOA alone tells the client to
            # ask over TCP; section 4: a client already current gets the SOA.
            response.flags |= dns.flags.AA
            response.answer = [soa]
            return [self._render(response, query, tcp)]
        _log.info("zone transfer of %s to %s", question.name, client)
        messages: list[bytes] = []
        chunk: list[dns.rrset.RRset] = []
        size = 0
        for rrset in records:
            buffer = io.BytesIO()
            rrset.to_wire(buffer)
            length = len(buffer.getvalue())
            if chunk and size + length > _AXFR_BUDGET:
                messages.append(self._transfer_message(query, chunk))
                chunk, size = [], 0
            chunk.append(rrset)
            size += length
        messages.append(self._transfer_message(query, chunk))
        return messages

    def _transfer_message(
        self, query: dns.message.Message, rrsets: list[dns.rrset.RRset]
    ) -> bytes:
        message = dns.message.make_response(query, our_payload=self._udp_payload)
        message.flags |= dns.flags.AA
        message.answer = rrsets
        # An IXFR query's authority section (the client's SOA) is not echoed.
        message.authority = []
        return message.to_wire(max_size=_MAX_TCP)

    def _zone_for(self, question: Question) -> ServedZone | None:
        """The zone of the chain whose apex and class ``question`` names."""
        for resolver in self.resolvers:
            if (
                isinstance(resolver, ServedZone)
                and resolver.origin == question.name
                and resolver.rdclass == question.rdclass
            ):
                return resolver
        return None

    def _may_transfer(self, client: str) -> bool:
        return is_exempt(client, self._allow_axfr)

    def _notify(self, query: dns.message.Message, client: str, tcp: bool) -> bytes:
        """The answer to a NOTIFY (RFC 1996 section 3.7): AA if it is heard, else REFUSED."""
        response = dns.message.make_response(query, our_payload=self._udp_payload)
        asked = query.question[0]
        if asked.rdtype != dns.rdatatype.SOA:
            # Section 3.7: the only QTYPE defined for NOTIFY is SOA.
            response.set_rcode(dns.rcode.NOTIMP)
            return self._render(response, query, tcp)
        for resolver in self.resolvers:
            if (
                isinstance(resolver, NotifiedZone)
                and resolver.origin == asked.name
                and resolver.rdclass == asked.rdclass
            ):
                if resolver.notified(client):
                    _log.info("zone %s: NOTIFY from %s, asking for changes", asked.name, client)
                    response.flags |= dns.flags.AA
                    return self._render(response, query, tcp)
                break
        # Section 3.10: only the zone's primary is heard. Logged at DEBUG:
        # anyone may send these, as often as the rate limit lets them.
        _log.debug("NOTIFY for %s from %s refused", asked.name, client)
        response.set_rcode(dns.rcode.REFUSED)
        return self._render(response, query, tcp)

    def _bad_key(self, query: dns.message.Message, client: str, tcp: bool) -> bytes:
        """NOTAUTH with an unsigned TSIG record, error BADKEY (RFC 8945 sections 5.2.1, 5.3.2)."""
        _log.debug("TSIG key %s unknown, from %s", query.keyname, client)
        response = dns.message.make_response(query, our_payload=self._udp_payload)
        response.set_rcode(dns.rcode.NOTAUTH)
        wire = self._render(response, query, tcp)
        tsig = query.tsig
        assert tsig is not None
        signed = tsig[0]
        assert isinstance(signed, dns.rdtypes.ANY.TSIG.TSIG)
        rdata = dns.rdtypes.ANY.TSIG.TSIG(  # type: ignore[no-untyped-call]
            dns.rdataclass.ANY,
            dns.rdatatype.TSIG,
            signed.algorithm,
            signed.time_signed,
            signed.fudge,
            b"",  # section 5.3.2: no MAC on an error about the key
            query.id,
            _BADKEY,
            b"",
        )
        rdata_wire = rdata.to_wire()
        assert rdata_wire is not None
        owner = tsig.name.to_wire()
        assert owner is not None
        record = (
            owner
            + _RR_HEADER.pack(dns.rdatatype.TSIG, dns.rdataclass.ANY, 0, len(rdata_wire))
            + rdata_wire
        )
        additional = int.from_bytes(wire[10:12], "big") + 1
        # The TSIG record is the last one (section 4.1): after the OPT record.
        return wire[:10] + additional.to_bytes(2, "big") + wire[12:] + record

    def _udp_limiter_for(self, clock: Clock | None) -> QueryRateLimiter | None:
        """The UDP rate limiter all this server's UDP ports share (made once)."""
        if not self._udp_limiter_made:
            self._udp_limiter = QueryRateLimiter.from_limits(self.limits, clock)
            self._udp_limiter_made = True
        return self._udp_limiter

    @property
    def udp_limiter(self) -> QueryRateLimiter | None:
        """The UDP rate limiter, once a UDP protocol was made (its ``dropped`` count)."""
        return self._udp_limiter

    def datagram_protocol(
        self, clock: Clock | None = None, *, max_in_flight: int | None = None
    ) -> DNSDatagramProtocol:
        """A protocol serving this server over UDP (one per UDP port).

        Args:
            clock: Times the per-client rate limit (the reactor); None for
                ``time.monotonic``.
            max_in_flight: Drop queries while this many are being answered;
                None for ``limits.max_udp_in_flight``.
        """
        if max_in_flight is None:
            max_in_flight = self.limits.max_udp_in_flight
        return DNSDatagramProtocol(
            self, max_in_flight=max_in_flight, limiter=self._udp_limiter_for(clock)
        )

    def stream_factory(
        self,
        clock: Clock,
        *,
        idle_timeout: float | None = None,
        max_connections: int | None = None,
        max_in_flight: int | None = None,
        max_per_client: int | None = None,
    ) -> DNSStreamFactory:
        """A protocol factory serving this server over TCP or TLS.

        One factory may serve several ports (TCP and TLS): they then share
        its connection limits. Each limit left None is the one of ``limits``.

        Args:
            clock: Runs the idle timers (the reactor).
            idle_timeout: Close a connection with no query for this long
                (RFC 7766 section 6.2.3 asks for a timeout of seconds).
            max_connections: Refuse connections beyond this many open.
            max_in_flight: Stop reading a connection while this many of its
                queries are being answered (RFC 7766 section 6.2.1.1 lets
                clients pipeline them).
            max_per_client: Refuse connections beyond this many open from
                one client (an IPv4 address, an IPv6 /64), except from the
                networks ``limits.exempt`` names.
        """
        limits = self.limits
        return DNSStreamFactory(
            self,
            clock,
            limits.idle_timeout if idle_timeout is None else idle_timeout,
            limits.max_connections if max_connections is None else max_connections,
            limits.max_in_flight if max_in_flight is None else max_in_flight,
            limits.max_connections_per_client if max_per_client is None else max_per_client,
            exempt_networks(limits.exempt),
        )

    def listen(
        self, reactor: Reactor, port: int = 53, *, interface: str = "127.0.0.1"
    ) -> DNSPorts:
        """Serve on UDP and TCP ``interface:port`` (the same port number for both).

        Args:
            reactor: Binds the ports and runs the TCP idle timers.
            port: The port; 0 lets the system choose one free for both.
            interface: The address to bind.

        Raises:
            CannotListenError: The port is taken on either protocol.
        """
        factory = self.stream_factory(reactor)
        attempts = 10 if port == 0 else 1
        for attempt in range(attempts):
            tcp = reactor.listen_tcp(port, factory, interface=interface)
            try:
                udp = reactor.listen_udp(
                    tcp.port, self.datagram_protocol(reactor), interface=interface
                )
            except CannotListenError:
                tcp.stop_listening()
                if attempt == attempts - 1:
                    raise
                continue
            return DNSPorts(udp, tcp, factory)
        raise AssertionError("unreachable")

    def listen_stream(
        self,
        reactor: Reactor,
        endpoint: ServerEndpoint | str,
        *,
        factory: DNSStreamFactory | None = None,
    ) -> Deferred[DNSStreamPort]:
        """Serve the stream protocol on ``endpoint``: DNS over TLS with a ``tls:`` one.

        RFC 7858 asks for port 853: ``tls:853:certKey=cert.pem:privateKey=key.pem``
        (an endpoint string, see ``torsion.internet.server_from_string``, or
        a ``TLSServerEndpoint``). The limits are those of TCP.

        Args:
            reactor: Listens, and runs the idle timers.
            endpoint: Where to listen.
            factory: The stream factory to serve with (``stream_factory``):
                give the one of ``listen``'s TCP port to share its
                connection limits; a new one by default.

        Returns:
            A Deferred firing with the port, or failing with
            ``CannotListenError`` (or ``EndpointStringError`` for a bad
            string, at once).
        """
        if isinstance(endpoint, str):
            endpoint = server_from_string(reactor, endpoint)
        stream = self.stream_factory(reactor) if factory is None else factory
        return endpoint.listen(stream).add_callback(lambda port: DNSStreamPort(port, stream))


class DNSPorts:
    """The UDP and TCP ports a ``DNSServer`` listens on.

    Attributes:
        udp: The UDP port.
        tcp: The TCP listener.
        stream_factory: The TCP port's protocol factory: give it to
            ``DNSServer.listen_stream`` for a TLS port sharing its
            connection limits.
    """

    def __init__(self, udp: UDPPort, tcp: Listener, factory: DNSStreamFactory) -> None:
        self.udp = udp
        self.tcp = tcp
        self.stream_factory = factory
        self._factory = factory

    @property
    def port(self) -> int:
        """The port number both listen on."""
        return self.tcp.port

    async def stop_listening(self) -> None:
        """Close both ports, and the TCP connections still open."""
        await self.udp.stop_listening()
        await self.tcp.stop_listening()
        self._factory.close_all()


class DNSStreamPort:
    """A stream port (TLS, TCP) a ``DNSServer`` listens on with ``listen_stream``.

    Attributes:
        listening: The listening port.
    """

    def __init__(self, listening: ListeningPort, factory: DNSStreamFactory) -> None:
        self.listening = listening
        self._factory = factory

    @property
    def port(self) -> int:
        """The port number."""
        port: int = getattr(self.listening.address, "port", 0)
        return port

    async def stop_listening(self) -> None:
        """Close the port, and the connections still open."""
        await self.listening.stop_listening()
        self._factory.close_all()


def _is_current(query: dns.message.Message, soa: dns.rrset.RRset) -> bool:
    """Whether an IXFR query's SOA (its authority section) has our serial or a later one."""
    ours = soa[0]
    assert isinstance(ours, dns.rdtypes.ANY.SOA.SOA)
    for rrset in query.authority:
        if rrset.rdtype == dns.rdatatype.SOA and rrset.name == soa.name and len(rrset):
            theirs = rrset[0]
            assert isinstance(theirs, dns.rdtypes.ANY.SOA.SOA)
            return not serial_gt(ours.serial, theirs.serial)
    return False  # no SOA: RFC 1995 wants one; the whole zone is the safe answer


def _header_only(message_id: int, flags: int, rcode: dns.rcode.Rcode) -> bytes:
    """A response with no sections: the query's ID, opcode and RD flag, and ``rcode``."""
    response_flags = _QR | (flags & (_OPCODE_MASK | _RD)) | int(rcode)
    return _HEADER.pack(message_id, response_flags) + bytes(8)
