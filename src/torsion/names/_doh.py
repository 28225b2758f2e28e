"""DNS over HTTPS (RFC 8484): a torsion.web resource that serves it, and a resolver that asks it.

``DoHResource`` answers DNS queries sent as HTTP requests: GET with the
query in the ``dns`` parameter (base64url without padding, RFC 8484
section 4.1) or POST with the query as an ``application/dns-message`` body.
It hands each query to a ``DNSServer`` (``DNSServer.respond``, the entry
point its UDP and TCP ports use), so the same chain, fast path, limits and
checks answer every transport. Publish it on a ``Site`` served over TLS
(``doh_site`` makes one serving only it)::

    site = doh_site(server, reactor=reactor)  # at /dns-query
    endpoint = server_from_string(reactor, "tls:443:certKey=cert.pem:privateKey=key.pem")
    port = await endpoint.listen(site)

The response is ``application/dns-message`` with an HTTP freshness lifetime
(``Cache-Control: max-age``) no longer than the smallest TTL of the answer
section, or for a negative answer than the SOA's TTL and MINIMUM (RFC 8484
section 5.1, RFC 2308 section 5). A query is answered with the ID it
carries, 0 as the RFC asks clients to send (section 4.1), so that identical
GET queries are identical URLs a cache can share. What is not a DNS query
gets an HTTP error and never reaches the server: 400 for a missing or
undecodable ``dns`` parameter or a message too short for a header or that
is itself a response, 413 for a body longer than a DNS message can be
(65,535 bytes), 414 for a ``dns`` parameter longer than that once encoded,
415 for a POST of another media type. Zone transfers are refused (REFUSED):
one HTTP response carries one DNS message, and a transfer may take several
(RFC 5936 keeps them to TCP, where the server serves them).

The server's flood limits (``QueryLimits``) hold per client address here
too: the query rate per client network (its ``udp_rate`` and
``udp_burst``: over HTTP, where the source address cannot be forged, an
excess query is told 429 Too Many Requests, RFC 6585 section 4, rather than
dropped), queries in flight per client (``max_in_flight``, the bound of a
stream connection) and in all (``max_udp_in_flight``: 503 beyond). Networks
in ``exempt`` (loopback by default) are not held to the per-client bounds.
The HTTP connections themselves are the web server's (``ServerLimits``,
and torsion.protocols' ``ConnectionLimit`` around the ``Site``).

``DoHResolver`` is a ``DNSResolver`` asking one DoH server through an
``HTTPClient`` (HTTP/1.1 for now; certificates checked as the client's TLS
settings say): ID 0, the response matched to the question, TTLs aged by the
response's ``Age`` (section 5.1), a timeout over the whole exchange, and
any HTTP status but 200 (or a body that is not a DNS message) a ``DoHError``.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from torsion.defer import Deferred, ensure_deferred, fail, succeed
from torsion.defer import timeout as deadline
from torsion.errors import TorsionError
from torsion.internet import Clock
from torsion.names._answer import Answer, DNSResolver, Question
from torsion.names._limits import QueryRateLimiter, exempt_networks, is_exempt
from torsion.names._server import DNSServer
from torsion.protocols import client_key
from torsion.web import (
    HTTPClient,
    HTTPClientError,
    ReactorForHTTP,
    Request,
    Resource,
    Response,
    ServerLimits,
    Site,
    handles,
)

__all__ = [
    "DNS_MESSAGE",
    "DoHError",
    "DoHResolver",
    "DoHResource",
    "decode_dns_parameter",
    "doh_site",
    "encode_dns_parameter",
    "response_freshness",
]

#: The media type of a DNS message in wire format (RFC 8484 section 6).
DNS_MESSAGE = "application/dns-message"

# A DNS message is at most 65,535 bytes (the TCP length prefix is two bytes).
_MAX_MESSAGE = 0xFFFF
_HEADER_SIZE = 12
_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")
_QR = 0x8000
_TC = 0x0200
_RCODE_MASK = 0x000F
_TYPE_SOA = 6
# RFC 2181 section 8: a TTL is 31 bits; one with the top bit set means 0.
_MAX_TTL = 0x7FFFFFFF
# Transfers take several messages; one HTTP response carries one.
_TRANSFERS = frozenset({dns.rdatatype.AXFR, dns.rdatatype.IXFR})
# Base64url (RFC 4648 section 5), without the padding RFC 8484 leaves out.
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
# RFC 8467 section 4.1: queries padded to a multiple of 128 bytes.
_QUERY_PADDING = 128


class DoHError(TorsionError):
    """A DNS over HTTPS server did not answer with a DNS message.

    Attributes:
        status: The HTTP status of the response (None when the response was
            a 200 whose body is not a DNS response to the question).
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def encode_dns_parameter(wire: bytes) -> str:
    """A DNS message as a GET's ``dns`` parameter: base64url, unpadded (RFC 8484 section 4.1).

    Args:
        wire: The message.

    Returns:
        The parameter's value, safe in a URL as it is.
    """
    return base64.urlsafe_b64encode(wire).rstrip(b"=").decode("ascii")


def decode_dns_parameter(value: str) -> bytes | None:
    """The DNS message a GET's ``dns`` parameter carries, or None when it is not base64url.

    Padding is left out by clients (RFC 8484 section 4.1) but accepted.

    Args:
        value: The parameter, percent-decoded.

    Returns:
        The message's bytes (not yet checked to be a DNS message), or None.
    """
    text = value.rstrip("=")
    if len(text) % 4 == 1 or not _BASE64URL.fullmatch(text):
        return None
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


def _skip_name(wire: bytes, position: int) -> int:
    """Where the (possibly compressed) name at ``position`` ends."""
    while True:
        length = wire[position]
        if length == 0:
            return position + 1
        if length & 0xC0 == 0xC0:
            return position + 2  # a pointer ends the name
        if length & 0xC0:
            raise ValueError("a reserved label type")
        position += length + 1


def response_freshness(wire: bytes) -> int:
    """The HTTP freshness lifetime (seconds) a DNS response may have (RFC 8484 section 5.1).

    The smallest TTL in the answer section; with no answer, the smallest of
    each authority SOA's TTL and MINIMUM (the negative caching time, RFC
    2308 section 5); 0 when there is neither, for a truncated response, for
    a response code other than NOERROR and NXDOMAIN, and for bytes that do
    not parse.

    Args:
        wire: The response, as sent.
    """
    try:
        _, flags, questions, answers, authorities, _ = _HEADER.unpack_from(wire)
        if flags & _TC or flags & _RCODE_MASK not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            return 0
        position = _HEADER_SIZE
        for _ in range(questions):
            position = _skip_name(wire, position) + 4
        smallest: int | None = None
        in_answer = answers
        for _ in range(answers + authorities):
            position = _skip_name(wire, position)
            rdtype, _, ttl, length = _RR.unpack_from(wire, position)
            position += _RR.size
            end = position + length
            if end > len(wire):
                return 0
            if ttl > _MAX_TTL:
                ttl = 0
            if in_answer:
                in_answer -= 1
                smallest = ttl if smallest is None else min(smallest, ttl)
            elif answers:
                break  # the answer section decided
            elif rdtype == _TYPE_SOA and length >= 20:
                # MINIMUM is the SOA's last field (RFC 1035 section 3.3.13).
                (minimum,) = struct.unpack_from("!I", wire, end - 4)
                ttl = min(ttl, minimum if minimum <= _MAX_TTL else 0)
                smallest = ttl if smallest is None else min(smallest, ttl)
            position = end
    except (struct.error, IndexError, ValueError):
        return 0
    return 0 if smallest is None else smallest


def _question_type(wire: bytes) -> int | None:
    """The QTYPE of a message's first question, or None if it has none or does not parse."""
    try:
        if not _HEADER.unpack_from(wire)[2]:
            return None
        position = _skip_name(wire, _HEADER_SIZE)
        (rdtype,) = struct.unpack_from("!H", wire, position)
    except (struct.error, IndexError, ValueError):
        return None
    return int(rdtype)


class DoHResource(Resource):
    """Serves DNS over HTTPS (RFC 8484) with a ``DNSServer``'s answers.

    A leaf: publish it where the URL should be (``/dns-query`` is usual)
    with ``put_child``, on a ``Site`` behind TLS.

    Args:
        server: The ``DNSServer`` that answers (its chain, limits and fast
            path), or a resolver (a chain, an ``Authority``...) to answer
            with, in a ``DNSServer`` of default limits.
        clock: Times the per-client query rate (the reactor); None for
            ``time.monotonic``.

    Attributes:
        server: The ``DNSServer`` that answers.
        rate_limiter: The query rate per client network (None when the
            server's limits set no rate); its ``dropped`` counts the 429s.
        refused: How many queries were refused for a limit, in all.
    """

    is_leaf = True

    def __init__(self, server: DNSServer | DNSResolver, *, clock: Clock | None = None) -> None:
        """Serve ``server``'s answers."""
        super().__init__()
        self.server = server if isinstance(server, DNSServer) else DNSServer([server])
        limits = self.server.limits
        self.rate_limiter = QueryRateLimiter.from_limits(limits, clock)
        self._exempt = exempt_networks(limits.exempt)
        self._max_per_client = limits.max_in_flight
        self._max_in_flight = limits.max_udp_in_flight
        self._in_flight = 0
        # Client key -> its queries being answered (only clients with some).
        self._per_client: dict[str, int] = {}
        self.refused = 0

    @property
    def in_flight(self) -> int:
        """How many queries are being answered."""
        return self._in_flight

    @handles("GET")
    def get(self, request: Request) -> bytes | Deferred[bytes]:
        """Answer the query in the ``dns`` parameter (RFC 8484 section 4.1)."""
        if request.postpath not in ([], [""]):
            return _error(request, 404, "No such resource.")
        values = request.args.get("dns")
        if not values:
            return _error(request, 400, "The dns parameter is missing.")
        if len(values) > 1:
            return _error(request, 400, "More than one dns parameter.")
        [value] = values
        if len(value) > 4 * ((_MAX_MESSAGE + 2) // 3):
            return _error(request, 414, "The dns parameter is longer than a DNS message.")
        wire = decode_dns_parameter(value)
        if wire is None:
            return _error(request, 400, "The dns parameter is not base64url.")
        return self._answer(request, wire)

    @handles("POST")
    async def post(self, request: Request) -> bytes:
        """Answer the query in the ``application/dns-message`` body (RFC 8484 section 4.1)."""
        if request.postpath not in ([], [""]):
            return _error(request, 404, "No such resource.")
        media_type = (request.headers.get_str("content-type") or "").partition(";")[0]
        if media_type.strip().lower() != DNS_MESSAGE:
            return _error(request, 415, f"The body must be {DNS_MESSAGE}.")
        declared = request.headers.get(b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > _MAX_MESSAGE:
            return _error(request, 413, "The body is longer than a DNS message.")
        parts: list[bytes] = []
        size = 0
        while chunk := await request.read():
            size += len(chunk)
            if size > _MAX_MESSAGE:
                return _error(request, 413, "The body is longer than a DNS message.")
            parts.append(chunk)
        result = self._answer(request, b"".join(parts))
        if isinstance(result, Deferred):
            return await result
        return result

    def _answer(self, request: Request, wire: bytes) -> bytes | Deferred[bytes]:
        """The HTTP response to the DNS message ``wire`` (an error page, or the DNS response)."""
        if len(wire) < _HEADER_SIZE:
            return _error(request, 400, "The message is too short for a DNS header.")
        if wire[2] & 0x80:
            return _error(request, 400, "The message is a response, not a query.")
        client = request.client
        host = str(getattr(client, "host", ""))
        limiter = self.rate_limiter
        if limiter is not None and not limiter.allow(host):
            self.refused += 1
            request.response_headers.set(b"Retry-After", b"1")
            return _error(request, 429, "Too many queries: ask again later.")
        if self._in_flight >= self._max_in_flight:
            self.refused += 1
            request.response_headers.set(b"Retry-After", b"1")
            return _error(request, 503, "Too many queries are being answered.")
        key = None if is_exempt(host, self._exempt) else client_key(client)
        if key is not None and self._per_client.get(key, 0) >= self._max_per_client:
            self.refused += 1
            request.response_headers.set(b"Retry-After", b"1")
            return _error(request, 429, "Too many of your queries are being answered.")
        if _question_type(wire) in _TRANSFERS:
            return _reply(request, [_refused(wire)])
        # As over TCP: no size limit but a DNS message's own.
        cached = self.server.cached_response(wire, tcp=True)
        if cached is not None:
            return _reply(request, [cached])
        d = self.server.respond(wire, host, tcp=True)
        self._in_flight += 1
        if key is not None:
            self._per_client[key] = self._per_client.get(key, 0) + 1
        d.add_both(lambda result: self._release(key, result))
        if not d.called:
            # A client gone before its answer: stop working on it.
            request.notify_finish().add_errback(lambda _: d.cancel())
        return d.add_callback(lambda messages: _reply(request, messages))

    def _release(self, key: str | None, result: object) -> object:
        self._in_flight -= 1
        if key is not None:
            left = self._per_client[key] - 1
            if left:
                self._per_client[key] = left
            else:
                del self._per_client[key]
        return result


def doh_site(
    server: DNSServer | DNSResolver,
    *,
    reactor: Clock,
    path: str = "/dns-query",
    limits: ServerLimits | None = None,
) -> Site:
    """A ``Site`` serving DNS over HTTPS at ``path``, and nothing else.

    Give it to a TLS listener: ``server_from_string(reactor,
    "tls:443:certKey=cert.pem:privateKey=key.pem").listen(site)``.

    Args:
        server: What ``DoHResource`` answers with.
        reactor: The clock of the HTTP timeouts and of the query rate.
        path: Where the resource is (RFC 8484 leaves it to the server;
            ``/dns-query`` is the usual one).
        limits: The HTTP connections' bounds and timeouts.

    Returns:
        The site (a protocol factory).

    Raises:
        ValueError: ``path`` does not start with ``/`` or names no resource.
    """
    segments = path.split("/")[1:]
    if not path.startswith("/") or not segments or not all(segments):
        raise ValueError(f"a DNS over HTTPS path is like /dns-query, not {path!r}")
    root = Resource()
    parent = root
    for segment in segments[:-1]:
        child = Resource()
        parent.put_child(segment, child)
        parent = child
    parent.put_child(segments[-1], DoHResource(server, clock=reactor))
    return Site(root, reactor=reactor, limits=limits)


def _error(request: Request, code: int, detail: str) -> bytes:
    """An HTTP error: plain text (no DNS message, RFC 8484 section 4.2.1), never cached."""
    request.set_response_code(code)
    headers = request.response_headers
    headers.set(b"Content-Type", b"text/plain; charset=utf-8")
    headers.set(b"Cache-Control", b"no-store")
    return detail.encode("utf-8") + b"\n"


def _reply(request: Request, messages: list[bytes]) -> bytes:
    """The DNS response as the HTTP response's body, fresh as long as its TTLs say."""
    if not messages:
        # The server dropped the message without an answer.
        return _error(request, 400, "The message is not a DNS query.")
    [wire] = messages[:1]
    request.set_response_code(200)
    headers = request.response_headers
    headers.set(b"Content-Type", DNS_MESSAGE)
    headers.set(b"Cache-Control", b"max-age=%d" % response_freshness(wire))
    return wire


def _refused(wire: bytes) -> bytes:
    """REFUSED to a zone transfer: its ID, opcode, RD flag and question kept."""
    try:
        query = dns.message.from_wire(wire, keyring=False)
        response = dns.message.make_response(query)
        response.set_rcode(dns.rcode.REFUSED)
        response.use_edns(False)
        rendered: bytes = response.to_wire()
    except (dns.exception.DNSException, ValueError, struct.error, IndexError, UnicodeError):
        # Unparsable: FORMERR with the header alone, as the server would say.
        message_id, flags = struct.unpack_from("!HH", wire)
        flags = _QR | (flags & 0x7900) | dns.rcode.FORMERR
        return struct.pack("!HHHHHH", message_id, flags, 0, 0, 0, 0)
    return rendered


class DoHResolver:
    """Asks a DNS over HTTPS server (RFC 8484): a ``DNSResolver`` over HTTP/1.1.

    Args:
        url: The server's URL, ``https://dns.example/dns-query`` (an RFC 8484
            URI template's ``{?dns}`` is dropped).
        client: The HTTP client to send with: its TLS settings decide which
            certificates are trusted (``HTTPClient(reactor,
            tls_context=client_context(ca_file=...))``). None makes one on
            ``reactor``, which ``close()`` then closes.
        reactor: For the client made when ``client`` is None.
        method: ``"POST"`` (the query as the body) or ``"GET"`` (in the
            URL, which HTTP caches can share).
        timeout: Seconds a query may take, the whole HTTP exchange included.
        recursion_desired: Whether queries set RD.
        padding: Pad queries with EDNS0 to a multiple of this many bytes
            (RFC 8467 section 4.1); 0 sends no EDNS0 record.

    Raises:
        ValueError: The URL is not https, the method not GET or POST, or a
            number is out of range.
    """

    def __init__(
        self,
        url: str,
        *,
        client: HTTPClient | None = None,
        reactor: ReactorForHTTP | None = None,
        method: str = "POST",
        timeout: float = 5.0,
        recursion_desired: bool = True,
        padding: int = _QUERY_PADDING,
    ) -> None:
        url = url.replace("{?dns}", "")
        if not url.lower().startswith("https://"):
            # RFC 8484 section 3: DoH is over https; in clear it is as
            # easy to forge as UDP, with none of its speed.
            raise ValueError(f"a DNS over HTTPS URL is https, not {url!r}")
        if method not in ("GET", "POST"):
            raise ValueError(f"DNS over HTTPS asks with GET or POST, not {method!r}")
        if timeout <= 0:
            raise ValueError(f"the timeout must be positive, not {timeout}")
        if not 0 <= padding <= _MAX_MESSAGE:
            raise ValueError(f"not a padding block size: {padding}")
        if client is None:
            if reactor is None:
                raise ValueError("DoHResolver needs a client or a reactor")
            client = HTTPClient(reactor, timeout=timeout)
            self._owns_client = True
        else:
            self._owns_client = False
        self.url = url
        self.client = client
        self.method = method
        self.timeout = timeout
        self.recursion_desired = recursion_desired
        self.padding = padding

    def query(self, question: Question) -> Deferred[Answer]:
        """Ask the server ``question``.

        Returns:
            A Deferred firing with the answer (NXDOMAIN, NODATA and SERVFAIL
            are answers), or failing with ``TimeoutError`` when the exchange
            took longer than ``timeout``, or ``DoHError`` for anything else:
            an HTTP status other than 200, a body that is not the DNS
            response to the question, or the connection's failure (its
            ``__cause__``: ``ssl.SSLCertVerificationError`` for a
            certificate not trusted, ``ConnectionRefusedError``, an
            ``HTTPClientError``...).
        """
        try:
            wire = self._request(question)
        except (dns.exception.DNSException, ValueError) as exc:
            return fail(exc)
        d = ensure_deferred(self._ask(question, wire))
        return deadline(d, self.timeout, self.client.reactor)

    def _request(self, question: Question) -> bytes:
        edns = self.padding > 0
        message = dns.message.make_query(
            question.name,
            question.rdtype,
            question.rdclass,
            use_edns=0 if edns else False,
            flags=dns.flags.RD if self.recursion_desired else 0,
            pad=self.padding if edns else 0,
        )
        # RFC 8484 section 4.1: ID 0, so that a query is the same URL each time.
        message.id = 0
        wire: bytes = message.to_wire()
        return wire

    async def _ask(self, question: Question, wire: bytes) -> Answer:
        headers = {"Accept": DNS_MESSAGE}
        if self.method == "GET":
            separator = "&" if "?" in self.url else "?"
            url = f"{self.url}{separator}dns={encode_dns_parameter(wire)}"
            d = self.client.request("GET", url, headers=headers, follow_redirects=False)
        else:
            headers["Content-Type"] = DNS_MESSAGE
            d = self.client.request(
                "POST", self.url, headers=headers, body=wire, follow_redirects=False
            )
        try:
            response = await d
            try:
                return await self._read(question, response)
            finally:
                response.close()
        except (TimeoutError, DoHError):
            raise
        except (OSError, HTTPClientError) as exc:
            # Refused, unreachable, a certificate not trusted, a broken
            # response: one kind of failure for whoever asked (a server
            # answers SERVFAIL for it), the cause chained.
            raise DoHError(f"DNS over HTTPS to {self.url} failed: {exc}") from exc

    async def _read(self, question: Question, response: Response) -> Answer:
        if response.code != 200:
            raise DoHError(
                f"the DNS over HTTPS server answered {response.code} {response.phrase}",
                response.code,
            )
        media_type = (response.headers.get_str("content-type") or "").partition(";")[0]
        if media_type.strip().lower() != DNS_MESSAGE:
            raise DoHError(f"the DNS over HTTPS server answered with {media_type or 'no type'}")
        body = await response.read(_MAX_MESSAGE)
        message = _parse(body, question)
        age = _age(response)
        answer = Answer(
            rcode=message.rcode(),
            answer=[_aged(rrset, age) for rrset in message.answer],
            authority=[_aged(rrset, age) for rrset in message.authority],
            additional=[_aged(rrset, age) for rrset in message.additional],
            authoritative=bool(message.flags & dns.flags.AA),
        )
        return answer

    def close(self) -> Deferred[None]:
        """Close the HTTP client, if this resolver made it.

        Returns:
            A Deferred firing once its connections are closed.
        """
        if self._owns_client:
            return self.client.close()
        return succeed(None)

    def __repr__(self) -> str:
        return f"<DoHResolver {self.method} {self.url}>"


def _parse(body: bytes, question: Question) -> dns.message.Message:
    """The response in ``body``, checked to answer ``question`` with ID 0."""
    if len(body) < _HEADER_SIZE:
        raise DoHError("the DNS over HTTPS server's body is not a DNS message")
    message_id, flags = struct.unpack_from("!HH", body)
    if message_id != 0 or not flags & _QR:
        raise DoHError("the DNS over HTTPS server's body is not the response to ID 0")
    try:
        message = dns.message.from_wire(body, ignore_trailing=True)
    except (dns.exception.DNSException, ValueError, struct.error, IndexError, UnicodeError) as exc:
        raise DoHError(f"the DNS over HTTPS server's message does not parse: {exc}") from exc
    if not message.question:
        # RFC 1035 lets an error response leave the question out.
        if message.rcode() == dns.rcode.NOERROR:
            raise DoHError("the DNS over HTTPS server answered no question")
        return message
    if len(message.question) != 1:
        raise DoHError("the DNS over HTTPS server answered several questions")
    [asked] = message.question
    if (
        asked.name != question.name
        or asked.rdtype != question.rdtype
        or asked.rdclass != question.rdclass
    ):
        raise DoHError(f"the DNS over HTTPS server answered another question: {asked}")
    return message


def _age(response: Response) -> int:
    """The response's ``Age`` in seconds (RFC 9111 section 5.1), 0 without a valid one."""
    value = response.headers.get(b"age")
    if value is None or not value.strip().isdigit():
        return 0
    return min(int(value), _MAX_TTL)


def _aged(rrset: dns.rrset.RRset, age: int) -> dns.rrset.RRset:
    """``rrset`` with ``age`` seconds taken off its TTL (RFC 8484 section 5.1)."""
    if not age or rrset.rdtype == dns.rdatatype.OPT:
        return rrset
    aged = dns.rrset.from_rdata_list(rrset.name, max(rrset.ttl - age, 0), list(rrset))
    return aged
