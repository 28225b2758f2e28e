"""The DNS server's fast path: a strict question parser and a cache of rendered answers.

Most queries an authoritative server receives are alike: one question, no
records but perhaps an EDNS0 OPT record, and the answer is the same as it
was a moment ago. Parsing such a query into a dnspython message, looking the
name up and rendering the response costs a hundred microseconds; this module
answers it from the bytes of a response the full path rendered before, with
the query's ID, RD flag and question (its letters' case as sent) put in.

``parse_query`` reads only queries of one plain shape and gives up (None) on
everything else, which then takes the full path: that path, not this one,
decides what is an error. What it accepts (RFC 1035 section 4.1, RFC 6891):

* a header with QR clear, opcode QUERY, AA, TC, RA, Z and RCODE clear (RD,
  AD and CD may be set: the full path ignores AD and CD, and the cached
  answer takes RD from the query), QDCOUNT 1, ANCOUNT and NSCOUNT 0, and
  ARCOUNT 0 or 1;
* one question whose name has labels of 1 to 63 bytes and no compression
  pointer (a query has no earlier name to point to), at most 255 bytes in
  all, then QTYPE and QCLASS;
* then nothing, or one OPT record: owner the root, extended RCODE 0,
  version 0, no flag but DO, and no option but a well-formed COOKIE (RFC
  7873 section 4: a client cookie of 8 bytes, a server cookie of 8 to 32),
  which the responses do not echo; any other option (PADDING changes the
  response) takes the full path;
* and not one byte more.

``AnswerCache`` keeps the responses the full path made to such queries, keyed
by everything the response depends on besides the ID, the RD flag and the
case of the question: the name in lower case, QTYPE, QCLASS, whether EDNS0
was used and the DO flag, and the size the response had to fit in. The
server stores only answers that cannot change until the zones do (those of
an ``Authority``), and calls ``clear`` when they may have; a generation
number keeps an answer computed before a reload from being stored after it.
"""

from __future__ import annotations

import struct

__all__ = ["MAX_UDP", "MIN_UDP", "AnswerCache", "QueryKey", "parse_query"]

MIN_UDP = 512  # RFC 1035 section 4.2.1; also the least RFC 6891 lets EDNS0 announce.
MAX_UDP = 0xFFFF

_HEADER = struct.Struct("!HHHHHH")
_TYPE_CLASS = struct.Struct("!HH")
# An OPT record after its owner name (one zero byte): TYPE, CLASS (the
# payload size), TTL (extended RCODE, version, DO and the Z flags), RDLENGTH.
_OPT = struct.Struct("!HHIH")
_OPTION = struct.Struct("!HH")

# Header flags a query on the fast path may have: RD, AD and CD. QR, the
# opcode (QUERY is 0), AA, TC, RA, Z and the RCODE must all be clear.
_NOT_IN_FAST_QUERIES = 0xFFFF & ~(0x0100 | 0x0020 | 0x0010)
_TYPE_OPT = 41
_OPTION_COOKIE = 10
_DO = 0x8000
_MAX_NAME = 255
_MAX_LABEL = 63
_QUESTION_START = 12

# (name in lower case, QTYPE, QCLASS, EDNS0 payload size or -1 without
# EDNS0, DO flag, the offset just past the question's name)
QueryKey = tuple[bytes, int, int, int, bool, int]
# (name in lower case, QTYPE, QCLASS, the size the response had to fit in,
# EDNS0 or not, DO flag)
_CacheKey = tuple[bytes, int, int, int, bool, bool]


def parse_query(wire: bytes) -> QueryKey | None:
    """Read a query of the plain shape the fast path answers (see the module's docstring).

    Args:
        wire: A datagram or TCP message, as received.

    Returns:
        The name (ASCII letters in lower case, as DNS compares names), QTYPE,
        QCLASS, EDNS0 payload size (-1 without EDNS0), DO flag, and the
        offset where the question's name ends; None for any other message,
        valid or not.
    """
    size = len(wire)
    # The header, a one-byte name (the root), QTYPE and QCLASS.
    if size < _QUESTION_START + 5:
        return None
    _, flags, questions, answers, authorities, additionals = _HEADER.unpack_from(wire)
    if flags & _NOT_IN_FAST_QUERIES or questions != 1 or answers or authorities or additionals > 1:
        return None
    position = _QUESTION_START
    limit = min(size, _QUESTION_START + _MAX_NAME)
    while True:
        if position >= limit:
            return None  # past the datagram, or a name longer than 255 bytes
        length = wire[position]
        if length == 0:
            break
        if length > _MAX_LABEL:
            return None  # a compression pointer, or a reserved label type
        position += length + 1
    name_end = position + 1
    if name_end + 4 > size:
        return None
    rdtype, rdclass = _TYPE_CLASS.unpack_from(wire, name_end)
    position = name_end + 4
    name = wire[_QUESTION_START:name_end].lower()
    if not additionals:
        if position != size:
            return None
        return name, rdtype, rdclass, -1, False, name_end
    if position + 1 + _OPT.size > size or wire[position] != 0:
        return None
    opt_type, payload, ttl, rdlength = _OPT.unpack_from(wire, position + 1)
    if opt_type != _TYPE_OPT or ttl & ~_DO:
        return None
    options = position + 1 + _OPT.size
    if options + rdlength != size:
        return None
    if rdlength:
        if rdlength < _OPTION.size:
            return None
        code, length = _OPTION.unpack_from(wire, options)
        if code != _OPTION_COOKIE or length + _OPTION.size != rdlength:
            return None
        if length != 8 and not 16 <= length <= 40:
            return None
    return name, rdtype, rdclass, payload, bool(ttl & _DO), name_end


class AnswerCache:
    """Responses rendered once by the full path, served again with a new ID.

    It is bounded: when ``max_entries`` responses are kept, or ``max_bytes``
    bytes of them, the next one stored empties it first (a cache that clears
    when full needs no bookkeeping on the fast path, unlike an LRU, and
    refills at once from the queries that keep coming).

    Args:
        max_entries: How many responses to keep; 0 keeps none.
        udp_payload: The most bytes the server puts in a UDP response.
        max_bytes: The most bytes of responses to keep (TCP responses may
            have up to 65,535 each).

    Attributes:
        generation: Bumped by ``clear``: a response made from an older
            generation is not stored.
    """

    def __init__(self, max_entries: int, udp_payload: int, *, max_bytes: int = 16 << 20) -> None:
        if max_entries < 0:
            raise ValueError(f"max_entries must not be negative, not {max_entries}")
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0
        self._udp_payload = udp_payload
        # key -> (bytes 2 to 11 of the header with RD clear, the same with RD
        # set, the response after the question's name)
        self._entries: dict[
            tuple[bytes, int, int, int, bool, int], tuple[bytes, bytes, bytes]
        ] = {}
        self.generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Forget every response (the zones changed)."""
        self._entries.clear()
        self._bytes = 0
        self.generation += 1

    def _key(self, query: QueryKey, tcp: bool) -> tuple[bytes, int, int, int, bool, int]:
        name, rdtype, rdclass, payload, do, _ = query
        # The size the response had to fit in, computed as the full path does.
        if tcp:
            limit = MAX_UDP
        elif payload >= 0:
            limit = min(max(payload, MIN_UDP), self._udp_payload)
        else:
            limit = MIN_UDP
        return name, rdtype, rdclass, limit, payload >= 0, do

    def lookup(self, wire: bytes, *, tcp: bool) -> bytes | None:
        """The response to ``wire`` from the cache, or None to take the full path.

        Args:
            wire: The query, as received.
            tcp: Whether it came over TCP (no size limit but 65,535 bytes).
        """
        if not self._entries:
            return None
        query = parse_query(wire)
        if query is None:
            return None
        entry = self._entries.get(self._key(query, tcp))
        if entry is None:
            return None
        name_end = query[5]
        # The query's ID, its RD flag, and its question as sent: the
        # response's names point back into the question, so they take its
        # case too, as they would had the full path rendered it.
        return b"".join((wire[:2], entry[wire[2] & 1], wire[_QUESTION_START:name_end], entry[2]))

    def store(self, wire: bytes, response: bytes, *, tcp: bool, generation: int) -> None:
        """Keep the full path's ``response`` to the query ``wire``.

        Nothing is kept when the query is not of the fast path's shape, when
        the zones changed since ``generation`` (the response may be stale), or
        when the response does not open with the query's question.

        Args:
            wire: The query, as received.
            response: Its response, as rendered by the full path.
            tcp: Whether it came over TCP.
            generation: ``generation`` when the response began to be made.
        """
        if not self._max_entries or generation != self.generation:
            return
        query = parse_query(wire)
        if query is None:
            return
        name_end = query[5]
        if response[_QUESTION_START:name_end].lower() != query[0]:
            return
        size = len(response) - name_end
        if size > self._max_bytes:
            return
        if len(self._entries) >= self._max_entries or self._bytes + size > self._max_bytes:
            self._entries.clear()
            self._bytes = 0
        key = self._key(query, tcp)
        if key in self._entries:
            return  # the same answer (made again while a query for it was in flight)
        self._bytes += size
        head = bytearray(response[2:_QUESTION_START])
        head[0] &= 0xFE
        without_rd = bytes(head)
        head[0] |= 0x01
        self._entries[key] = (without_rd, bytes(head), response[name_end:])
