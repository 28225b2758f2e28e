"""The fast path's strict query parser and its cache of rendered answers, on bytes alone."""

from __future__ import annotations

import struct

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rdatatype
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torsion.names._wire import AnswerCache, parse_query


def wire_of(
    name: str = "WwW.Example.TEST.",
    rdtype: str = "A",
    *,
    use_edns: int | bool = False,
    payload: int = 1232,
    want_dnssec: bool = False,
    options: list[dns.edns.Option] | None = None,
) -> bytes:
    message = dns.message.make_query(
        name,
        rdtype,
        use_edns=use_edns,
        payload=payload,
        want_dnssec=want_dnssec,
        options=options,
    )
    return message.to_wire()


def test_a_plain_query_gives_its_lowercased_name_type_and_class() -> None:
    wire = wire_of()
    name_end = 12 + len(b"\x03WwW\x07Example\x04TEST\x00")
    assert parse_query(wire) == (b"\x03www\x07example\x04test\x00", 1, 1, -1, False, name_end)
    assert wire[12:name_end] == b"\x03WwW\x07Example\x04TEST\x00"


def test_edns_gives_the_payload_and_the_do_flag() -> None:
    key = parse_query(wire_of(rdtype="MX", use_edns=0, payload=4096, want_dnssec=True))
    assert key is not None
    assert key[1:5] == (dns.rdatatype.MX, 1, 4096, True)
    key = parse_query(wire_of(use_edns=0, payload=700))
    assert key is not None
    assert key[3:5] == (700, False)


def test_the_root_name_is_a_name() -> None:
    key = parse_query(wire_of(".", "NS"))
    assert key is not None
    assert key[0] == b"\x00"
    assert key[5] == 13


@pytest.mark.parametrize("server_cookie", [b"", bytes(8), bytes(32)])
def test_a_well_formed_cookie_stays_on_the_fast_path(server_cookie: bytes) -> None:
    cookie = dns.edns.CookieOption(b"12345678", server_cookie)
    assert parse_query(wire_of(use_edns=0, options=[cookie])) is not None


def raw_option(code: int, data: bytes) -> dns.edns.GenericOption:
    return dns.edns.GenericOption(code, data)


@pytest.mark.parametrize(
    "options",
    [
        [raw_option(12, bytes(16))],  # PADDING: the response is padded too
        [raw_option(8, b"\x00\x01\x18\x00\xc0\x00\x02")],  # client subnet
        [raw_option(10, bytes(7))],  # a client cookie of 7 bytes
        [raw_option(10, bytes(12))],  # a server cookie of 4 bytes
        [raw_option(10, bytes(41))],  # a server cookie of 33 bytes
        [raw_option(10, bytes(8)), raw_option(10, bytes(8))],  # two
    ],
)
def test_other_options_take_the_full_path(options: list[dns.edns.Option]) -> None:
    assert parse_query(wire_of(use_edns=0, options=options)) is None


def with_flags(wire: bytes, flags: int) -> bytes:
    return wire[:2] + struct.pack("!H", flags) + wire[4:]


def with_counts(wire: bytes, *counts: int) -> bytes:
    return wire[:4] + struct.pack("!HHHH", *counts) + wire[12:]


@pytest.mark.parametrize("flags", [dns.flags.RD, dns.flags.AD, dns.flags.CD, 0])
def test_rd_ad_and_cd_may_be_set(flags: int) -> None:
    assert parse_query(with_flags(wire_of(), flags)) is not None


@pytest.mark.parametrize(
    "flags",
    [
        dns.flags.QR,
        dns.flags.AA,
        dns.flags.TC,
        dns.flags.RA,
        0x0040,  # Z
        dns.opcode.to_flags(dns.opcode.NOTIFY),
        dns.opcode.to_flags(dns.opcode.UPDATE),
        0x0001,  # an RCODE in a query
    ],
)
def test_other_flags_take_the_full_path(flags: int) -> None:
    assert parse_query(with_flags(wire_of(), flags | dns.flags.RD)) is None


def test_other_section_counts_take_the_full_path() -> None:
    wire = wire_of()
    assert parse_query(wire) is not None
    for counts in [(0, 0, 0, 0), (2, 0, 0, 0), (1, 1, 0, 0), (1, 0, 1, 0), (1, 0, 0, 1)]:
        assert parse_query(with_counts(wire, *counts)) is None
    edns = wire_of(use_edns=0)
    assert parse_query(with_counts(edns, 1, 0, 0, 2)) is None


def test_trailing_or_missing_bytes_take_the_full_path() -> None:
    for wire in (wire_of(), wire_of(use_edns=0)):
        assert parse_query(wire + b"\x00") is None
        for size in range(len(wire)):
            assert parse_query(wire[:size]) is None


def question(name_wire: bytes, *, additionals: int = 0) -> bytes:
    header = struct.pack("!HHHHHH", 0x1234, 0, 1, 0, 0, additionals)
    return header + name_wire + struct.pack("!HH", 1, 1)


def test_names_of_the_strict_shape_only() -> None:
    assert parse_query(question(b"\x01a\x00")) is not None
    assert parse_query(question(b"\x3f" + b"a" * 63 + b"\x00")) is not None
    assert parse_query(question(b"\x40" + b"a" * 64 + b"\x00")) is None  # a label of 64 bytes
    assert parse_query(question(b"\xc0\x0c")) is None  # a pointer
    assert parse_query(question(b"\x01a\xc0\x0c")) is None
    assert parse_query(question(b"\x81a\x00")) is None  # a reserved label type
    assert parse_query(question(b"\x00\x00")) is None  # an empty label is the end
    # 255 bytes in all is the most (RFC 1035 section 3.1).
    longest = (b"\x3f" + b"a" * 63) * 3 + b"\x3d" + b"a" * 61 + b"\x00"
    assert len(longest) == 255
    assert parse_query(question(longest)) is not None
    too_long = (b"\x3f" + b"a" * 63) * 3 + b"\x3e" + b"a" * 62 + b"\x00"
    assert parse_query(question(too_long)) is None


def opt(owner: bytes, rdtype: int, payload: int, ttl: int, rdata: bytes = b"") -> bytes:
    return owner + struct.pack("!HHIH", rdtype, payload, ttl, len(rdata)) + rdata


def test_the_additional_record_must_be_a_plain_opt() -> None:
    plain = question(b"\x01a\x00", additionals=1)
    assert parse_query(plain + opt(b"\x00", 41, 1232, 0)) is not None
    assert parse_query(plain + opt(b"\x00", 41, 1232, 0x8000)) is not None
    assert parse_query(plain + opt(b"\x01a\x00", 41, 1232, 0)) is None  # owner not the root
    assert parse_query(plain + opt(b"\x00", 1, 1232, 0)) is None  # an A record
    assert parse_query(plain + opt(b"\x00", 41, 1232, 0x00010000)) is None  # version 1
    assert parse_query(plain + opt(b"\x00", 41, 1232, 0x01000000)) is None  # extended RCODE
    assert parse_query(plain + opt(b"\x00", 41, 1232, 0x4000)) is None  # a Z flag
    assert parse_query(plain + opt(b"\x00", 41, 1232, 0, b"\x00")) is None  # a broken option


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data: bytes) -> None:
    key = parse_query(data)
    assert key is None or 0 < key[5] <= len(data)


def parsed_by_dnspython(wire: bytes) -> dns.message.Message:
    return dns.message.from_wire(wire)


labels = st.binary(min_size=1, max_size=63)
names = st.lists(labels, max_size=4).filter(lambda ls: sum(len(x) + 1 for x in ls) < 255)


@st.composite
def queries(draw: st.DrawFn) -> bytes:
    """Queries of the fast path's shape, and (by mutation) some that are not."""
    name = b"".join(bytes((len(label),)) + label for label in draw(names)) + b"\x00"
    flags = draw(st.sampled_from([0, 0x0100, 0x0130, 0x0200, 0x8000, 0x2800, 0x0040]))
    rdtype = draw(st.sampled_from([1, 28, 15, 16, 255, 41, 252, 0, 65535]))
    rdclass = draw(st.sampled_from([1, 3, 254, 255]))
    wire = struct.pack("!HHHHHH", draw(st.integers(0, 0xFFFF)), flags, 1, 0, 0, 0)
    wire += name + struct.pack("!HH", rdtype, rdclass)
    if draw(st.booleans()):
        ttl = draw(st.sampled_from([0, 0x8000, 0x00010000]))
        payload = draw(st.integers(0, 0xFFFF))
        rdata = draw(st.sampled_from([b"", b"\x00\x0a\x00\x08" + bytes(8)]))
        wire = wire[:11] + b"\x01" + wire[12:] + opt(b"\x00", 41, payload, ttl, rdata)
    if draw(st.booleans()):
        # Some damage: a byte changed, or the end cut off or added to.
        position = draw(st.integers(0, len(wire) - 1))
        wire = draw(
            st.sampled_from(
                [
                    wire[:position] + bytes((draw(st.integers(0, 255)),)) + wire[position + 1 :],
                    wire[:position],
                    wire + b"\x00",
                ]
            )
        )
    return wire


@settings(max_examples=1000, deadline=None)
@given(queries())
def test_what_the_parser_accepts_dnspython_reads_alike(wire: bytes) -> None:
    key = parse_query(wire)
    if key is None:
        return
    message = parsed_by_dnspython(wire)  # it must not raise either
    assert len(message.question) == 1
    asked = message.question[0]
    assert asked.name.to_wire().lower() == key[0]
    assert (asked.rdtype, asked.rdclass) == key[1:3]
    assert message.edns == (0 if key[3] >= 0 else -1)
    if key[3] >= 0:
        assert message.payload == key[3]
        assert bool(message.ednsflags & dns.flags.DO) == key[4]
    assert message.opcode() == dns.opcode.QUERY
    assert not message.flags & (dns.flags.QR | dns.flags.TC)


# -- the cache ------------------------------------------------------------------------------


def response_to(wire: bytes, body: bytes = b"\x00\x01\x02") -> bytes:
    """A stand-in response: the query's header with QR set, its question, then ``body``."""
    key = parse_query(wire)
    assert key is not None
    return wire[:2] + bytes((wire[2] | 0x80,)) + wire[3:12] + wire[12 : key[5] + 4] + body


def test_a_stored_response_comes_back_with_the_new_id_rd_and_case() -> None:
    cache = AnswerCache(10, 1232)
    first = with_flags(wire_of("www.example.test."), dns.flags.RD)
    cache.store(first, response_to(first), tcp=False, generation=cache.generation)
    assert len(cache) == 1
    second = b"\xab\xcd" + with_flags(wire_of("WWW.EXAMPLE.test."), 0)[2:]
    assert cache.lookup(second, tcp=False) == response_to(second)
    assert cache.lookup(with_flags(second, dns.flags.RD), tcp=False) == response_to(
        with_flags(second, dns.flags.RD)
    )


def test_the_key_holds_type_edns_do_and_the_size_limit() -> None:
    cache = AnswerCache(10, 1232)
    base = wire_of(use_edns=0, payload=4096)
    cache.store(base, response_to(base), tcp=False, generation=0)
    assert cache.lookup(wire_of(use_edns=0, payload=1232), tcp=False) is not None  # both 1232
    assert cache.lookup(wire_of(use_edns=0, payload=1000), tcp=False) is None
    assert cache.lookup(wire_of(use_edns=0, payload=4096, want_dnssec=True), tcp=False) is None
    assert cache.lookup(wire_of(use_edns=0, payload=4096), tcp=True) is None
    assert cache.lookup(wire_of(), tcp=False) is None
    assert cache.lookup(wire_of(rdtype="AAAA", use_edns=0, payload=4096), tcp=False) is None
    small = wire_of(use_edns=0, payload=100)  # below 512 counts as 512
    cache.store(small, response_to(small), tcp=False, generation=0)
    assert cache.lookup(wire_of(use_edns=0, payload=512), tcp=False) is not None


def test_clear_forgets_and_stale_responses_are_not_stored() -> None:
    cache = AnswerCache(10, 1232)
    wire = wire_of()
    before = cache.generation
    cache.store(wire, response_to(wire), tcp=False, generation=before)
    cache.clear()
    assert cache.lookup(wire, tcp=False) is None
    cache.store(wire, response_to(wire), tcp=False, generation=before)
    assert cache.lookup(wire, tcp=False) is None
    cache.store(wire, response_to(wire), tcp=False, generation=cache.generation)
    assert cache.lookup(wire, tcp=False) is not None


def test_the_cache_is_bounded() -> None:
    cache = AnswerCache(3, 1232)
    wires = [wire_of(f"n{n}.example.test.") for n in range(7)]
    for wire in wires:
        cache.store(wire, response_to(wire), tcp=False, generation=0)
        assert 1 <= len(cache) <= 3
    assert cache.lookup(wires[-1], tcp=False) is not None
    assert cache.lookup(wires[0], tcp=False) is None


def test_the_cache_is_bounded_in_bytes_too() -> None:
    cache = AnswerCache(100, 1232, max_bytes=1000)
    wires = [wire_of(f"n{n}.example.test.") for n in range(20)]
    for wire in wires:
        cache.store(wire, response_to(wire, bytes(300)), tcp=False, generation=0)
        assert 1 <= len(cache) <= 3  # 3 x (300 + 4) bytes fit in 1000, 4 do not
    assert cache.lookup(wires[-1], tcp=False) is not None
    huge = wire_of("huge.example.test.")
    cache.store(huge, response_to(huge, bytes(2000)), tcp=False, generation=0)
    assert cache.lookup(huge, tcp=False) is None  # bigger than the whole budget
    assert cache.lookup(wires[-1], tcp=False) is not None  # and the rest stays


def test_what_is_not_stored() -> None:
    cache = AnswerCache(0, 1232)
    wire = wire_of()
    cache.store(wire, response_to(wire), tcp=False, generation=0)
    assert len(cache) == 0
    cache = AnswerCache(10, 1232)
    odd = with_flags(wire, dns.flags.TC)
    cache.store(odd, response_to(wire), tcp=False, generation=0)
    other = wire_of("other.example.test.")
    cache.store(wire, response_to(other), tcp=False, generation=0)  # not its question
    assert len(cache) == 0
    with pytest.raises(ValueError, match="max_entries"):
        AnswerCache(-1, 1232)
