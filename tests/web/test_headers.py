"""Tests for torsion.web.Headers and the header validators."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torsion.web import Headers, InvalidHeaderError, validate_header_name, validate_header_value


def test_lookup_ignores_case_and_keeps_order() -> None:
    headers = Headers([("Content-Type", "text/plain"), (b"X-A", b"1"), ("x-a", "2")])
    assert headers.get("content-type") == b"text/plain"
    assert headers.get(b"CONTENT-TYPE") == b"text/plain"
    assert headers.get_all("X-a") == [b"1", b"2"]
    assert headers.get("x-a") == b"1"
    assert list(headers) == [(b"Content-Type", b"text/plain"), (b"X-A", b"1"), (b"x-a", b"2")]
    assert len(headers) == 3
    assert "x-A" in headers
    assert b"missing" not in headers
    assert 3 not in headers


def test_absent_field_gives_default() -> None:
    headers = Headers()
    assert headers.get("nope") is None
    assert headers.get("nope", b"d") == b"d"
    assert headers.get_all("nope") == []
    assert headers.get_str("nope") is None
    assert headers.get_str("nope", "x") == "x"


def test_str_accessors_use_latin_1() -> None:
    headers = Headers({"X-Name": "caf\xe9"})
    assert headers.get("x-name") == b"caf\xe9"
    assert headers.get_str("x-name") == "caf\xe9"
    with pytest.raises(InvalidHeaderError):
        headers.add("X-Other", "\u20ac")
    with pytest.raises(InvalidHeaderError):
        headers.add("N\xe4me", "v")


def test_set_replaces_every_field_in_place() -> None:
    headers = Headers([("A", "1"), ("B", "2"), ("a", "3"), ("C", "4")])
    headers.set("A", "9")
    assert list(headers) == [(b"A", b"9"), (b"B", b"2"), (b"C", b"4")]
    headers.set("D", "5")
    assert list(headers)[-1] == (b"D", b"5")


def test_set_default_adds_only_when_absent() -> None:
    headers = Headers([("A", "1")])
    headers.set_default("a", "2")
    headers.set_default("b", "3")
    assert list(headers) == [(b"A", b"1"), (b"b", b"3")]


def test_remove_drops_every_field() -> None:
    headers = Headers([("A", "1"), ("B", "2"), ("a", "3")])
    headers.remove("A")
    assert list(headers) == [(b"B", b"2")]
    headers.remove("missing")
    assert len(headers) == 1


def test_from_raw_shares_the_list() -> None:
    pairs = [(b"Host", b"example.test")]
    headers = Headers.from_raw(pairs)
    assert headers.raw is pairs
    assert headers.get("host") == b"example.test"


def test_copy_is_independent_and_equal() -> None:
    headers = Headers([("A", "1")])
    other = headers.copy()
    assert other == headers
    assert Headers([("a", "1")]) == headers
    other.add("B", "2")
    assert other != headers
    assert headers != Headers([("A", "2")])
    assert headers.__eq__(object()) is NotImplemented
    assert "A" in repr(headers)


@pytest.mark.parametrize(
    "value",
    [b"a\r\nSet-Cookie: x=1", b"a\nb", b"a\rb", b"a\x00b", b"\x7f", b"a\x0bb"],
)
def test_values_with_control_characters_are_refused(value: bytes) -> None:
    # CVE-2019-12387: CR/LF in a value would inject another header.
    with pytest.raises(InvalidHeaderError):
        validate_header_value(value)
    with pytest.raises(InvalidHeaderError):
        Headers([("X", value)])
    headers = Headers()
    with pytest.raises(InvalidHeaderError):
        headers.add("X", value)
    with pytest.raises(InvalidHeaderError):
        headers.set("X", value)
    assert len(headers) == 0


@pytest.mark.parametrize("name", [b"", b"A B", b"A:", b"A\r\n", b"A\x00", b"(x)", b"a/b", b"\xe9"])
def test_names_that_are_not_tokens_are_refused(name: bytes) -> None:
    with pytest.raises(InvalidHeaderError):
        validate_header_name(name)
    with pytest.raises(InvalidHeaderError):
        Headers().add(name, b"v")


def test_valid_names_and_values_pass() -> None:
    validate_header_name(b"X-Custom_Header!#$%&'*+.^`|~9")
    validate_header_value(b'text/html; charset="utf-8"\tq=\x80\xff')
    validate_header_value(b"")
    assert isinstance(InvalidHeaderError("x"), ValueError)


@given(st.binary(max_size=40))
def test_validated_values_never_hold_cr_lf_nul(value: bytes) -> None:
    try:
        validate_header_value(value)
    except InvalidHeaderError:
        assert any((b < 0x20 and b != 9) or b == 0x7F for b in value)
    else:
        assert not set(value) & {0, 10, 13}
