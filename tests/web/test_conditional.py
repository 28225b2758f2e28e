"""Tests for torsion.web._conditional: HTTP dates, entity tags, preconditions."""

from __future__ import annotations

import calendar
import email.utils

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torsion.web._conditional import (
    ETag,
    Precondition,
    check_preconditions,
    evaluate_preconditions,
    format_http_date,
    if_range_allows,
    make_etag,
    parse_etags,
    parse_http_date,
)
from torsion.web._headers import Headers

# RFC 9110 §5.6.7's example instant, in its three forms.
_T = 784111777.0
_NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    "value",
    [
        b"Sun, 06 Nov 1994 08:49:37 GMT",
        b"Sunday, 06-Nov-94 08:49:37 GMT",
        b"Sun Nov  6 08:49:37 1994",
        "Sun, 06 Nov 1994 08:49:37 GMT",
        b"  Sun, 06 Nov 1994 08:49:37 GMT ",
    ],
)
def test_parse_the_three_forms(value: bytes | str) -> None:
    assert parse_http_date(value, now=_NOW) == _T


def test_format_is_imf_fixdate() -> None:
    assert format_http_date(_T) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert format_http_date(_T + 0.9) == "Sun, 06 Nov 1994 08:49:37 GMT"


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"garbage",
        b"Sun, 06 Nov 1994 08:49:37 +0000",
        b"Sun, 06 Nov 1994 08:49:37 PST",
        b"Sun 06 Nov 1994 08:49:37 GMT",
        b"Sun, 31 Feb 1994 08:49:37 GMT",
        b"Sun, 06 Nov 1994 24:00:00 GMT",
        b"Sun, 06 Nov 1994 08:60:00 GMT",
        b"Sun, 06 Foo 1994 08:49:37 GMT",
        b"Sun, 6 Nov 1994 08:49:37 GMT",
        b"Sun, 06 Nov 94 08:49:37 GMT",
        b"Sun, 06 Nov 1994 8:49:37 GMT",
        b"Sun, 06 Nov 1994 08-49-37 GMT",
        b"Sun, 06 Nov 0000 08:49:37 GMT",
        b"Sunday 06-Nov-94 08:49:37 GMT",
        b"Sunday, 06-Nov-1994 08:49:37 GMT",
        b"Sunday, 06/Nov/94 08:49:37 GMT",
        b"Sunday, 06-Nov-94-1 08:49:37 GMT",
        b"Sunday, 06-Nov-94 08:49:37 UTC",
        b"Sun Nov 666 08:49:37 1994",
        b"Sun Nov  6 08:49:37 94",
        b"Xyz Nov  6 08:49:37 1994",
        b"Sun, \xd9\xa1\xd9\xa1 Nov 1994 08:49:37 GMT",
    ],
)
def test_invalid_dates_are_none(value: bytes) -> None:
    assert parse_http_date(value, now=_NOW) is None


def test_leap_second_is_accepted() -> None:
    assert parse_http_date(b"Sat, 31 Dec 2016 23:59:60 GMT") == calendar.timegm(
        (2016, 12, 31, 23, 59, 59)
    )


def test_rfc850_two_digit_year_is_the_recent_past() -> None:
    # RFC 9110 §5.6.7: more than 50 years in the future means the past century.
    now_2023 = _NOW
    assert parse_http_date(b"Monday, 01-Jan-73 00:00:00 GMT", now=now_2023) == calendar.timegm(
        (2073, 1, 1, 0, 0, 0)
    )
    assert parse_http_date(b"Monday, 01-Jan-74 00:00:00 GMT", now=now_2023) == calendar.timegm(
        (1974, 1, 1, 0, 0, 0)
    )
    assert parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT") == _T


_times = st.integers(min_value=0, max_value=253402300799)  # up to year 9999


@given(_times)
def test_format_parse_round_trip_and_agree_with_email_utils(seconds: int) -> None:
    text = format_http_date(seconds)
    assert parse_http_date(text) == seconds
    assert email.utils.parsedate_to_datetime(text).timestamp() == seconds
    assert text == email.utils.formatdate(seconds, usegmt=True)


@given(_times)
def test_asctime_form_agrees_with_email_utils(seconds: int) -> None:
    parts = format_http_date(seconds).replace(",", "").split()
    asctime = f"{parts[0]} {parts[2]} {int(parts[1]):2d} {parts[4]} {parts[3]}"
    assert parse_http_date(asctime) == seconds
    assert email.utils.parsedate_to_datetime(asctime).timestamp() == seconds


@given(st.binary(max_size=60))
def test_parse_never_raises(value: bytes) -> None:
    result = parse_http_date(value)
    assert result is None or isinstance(result, float)


def test_etag_formatting_and_comparison() -> None:
    strong, weak = ETag("abc"), ETag("abc", weak=True)
    assert strong.format() == '"abc"'
    assert weak.format() == 'W/"abc"'
    # RFC 9110 §8.8.3.2's table.
    assert not weak.strong_equals(ETag("abc", weak=True))
    assert weak.weak_equals(ETag("abc", weak=True))
    assert not weak.strong_equals(ETag("abc"))
    assert weak.weak_equals(strong)
    assert strong.strong_equals(ETag("abc"))
    assert not strong.weak_equals(ETag("abd"))


@pytest.mark.parametrize("tag", ['a"b', "a b", "a\r\nb", "é"])
def test_etag_refuses_characters_that_break_quoting(tag: str) -> None:
    with pytest.raises(ValueError, match="entity-tag"):
        ETag(tag)


def test_make_etag_changes_with_size_and_time() -> None:
    base = make_etag(10, 1.5)
    assert base == make_etag(10, 1.5)
    assert base != make_etag(11, 1.5)
    assert base != make_etag(10, 1.500001)
    assert make_etag(10, 1.5, weak=True).weak


def test_parse_etags() -> None:
    assert parse_etags(b"*") is None
    assert parse_etags(b' "a" ,W/"b",,  "c"') == [ETag("a"), ETag("b", weak=True), ETag("c")]
    assert parse_etags(b"") == []
    assert parse_etags(b'"a", junk, "b"') == [ETag("a")]
    assert parse_etags(b'"a"x') == [ETag("a")]
    assert parse_etags(b'"unterminated') == []
    assert parse_etags(b'W/x"') == []
    assert parse_etags(b'"a\x01"') == []


@given(st.lists(st.tuples(st.text(st.characters(min_codepoint=0x23, max_codepoint=0x7E)),
                          st.booleans()), max_size=5))  # fmt: skip
def test_etag_list_round_trip(tags: list[tuple[str, bool]]) -> None:
    etags = [ETag(tag, weak=weak) for tag, weak in tags]
    value = ", ".join(etag.format() for etag in etags).encode()
    assert parse_etags(value) == etags


@given(st.binary(max_size=40))
def test_parse_etags_never_raises(value: bytes) -> None:
    result = parse_etags(value)
    assert result is None or all(isinstance(tag, ETag) for tag in result)


_ETAG = ETag("v1")
_MTIME = _T + 0.25
_BEFORE = b"Sun, 06 Nov 1994 08:49:36 GMT"
_AT = b"Sun, 06 Nov 1994 08:49:37 GMT"
_AFTER = b"Sun, 06 Nov 1994 08:49:38 GMT"


def _evaluate(method: bytes = b"GET", **fields: bytes) -> Precondition:
    return evaluate_preconditions(method, etag=_ETAG, last_modified=_MTIME, **fields)


def test_no_conditions_proceed() -> None:
    assert _evaluate() is Precondition.PROCEED


@pytest.mark.parametrize(
    ("if_match", "expected"),
    [
        (b'"v1"', Precondition.PROCEED),
        (b'"v0", "v1"', Precondition.PROCEED),
        (b"*", Precondition.PROCEED),
        (b'"v2"', Precondition.PRECONDITION_FAILED),
        (b'W/"v1"', Precondition.PRECONDITION_FAILED),  # strong comparison
    ],
)
def test_if_match(if_match: bytes, expected: Precondition) -> None:
    assert _evaluate(b"PUT", if_match=if_match) is expected


def test_if_match_star_without_representation_fails() -> None:
    result = evaluate_preconditions(b"PUT", exists=False, if_match=b"*")
    assert result is Precondition.PRECONDITION_FAILED
    assert evaluate_preconditions(b"PUT", if_match=b'"x"') is Precondition.PRECONDITION_FAILED


def test_weak_current_tag_never_matches_if_match() -> None:
    weak = ETag("v1", weak=True)
    result = evaluate_preconditions(b"GET", etag=weak, if_match=b'"v1"')
    assert result is Precondition.PRECONDITION_FAILED


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        (_AT, Precondition.PROCEED),
        (_AFTER, Precondition.PROCEED),
        (_BEFORE, Precondition.PRECONDITION_FAILED),
        (b"not a date", Precondition.PROCEED),
    ],
)
def test_if_unmodified_since(date: bytes, expected: Precondition) -> None:
    assert _evaluate(b"DELETE", if_unmodified_since=date) is expected


def test_if_match_takes_precedence_over_if_unmodified_since() -> None:
    assert _evaluate(if_match=b'"v1"', if_unmodified_since=_BEFORE) is Precondition.PROCEED


def test_date_conditions_are_ignored_without_a_modification_time() -> None:
    assert (
        evaluate_preconditions(b"GET", if_unmodified_since=_BEFORE, if_modified_since=_AFTER)
        is Precondition.PROCEED
    )


@pytest.mark.parametrize(
    ("method", "value", "expected"),
    [
        (b"GET", b'"v1"', Precondition.NOT_MODIFIED),
        (b"HEAD", b'W/"v1"', Precondition.NOT_MODIFIED),  # weak comparison
        (b"GET", b"*", Precondition.NOT_MODIFIED),
        (b"GET", b'"v2"', Precondition.PROCEED),
        (b"POST", b'"v1"', Precondition.PRECONDITION_FAILED),
        (b"PUT", b"*", Precondition.PRECONDITION_FAILED),
        (b"POST", b'"v2"', Precondition.PROCEED),
    ],
)
def test_if_none_match(method: bytes, value: bytes, expected: Precondition) -> None:
    assert _evaluate(method, if_none_match=value) is expected


def test_if_none_match_star_without_representation_proceeds() -> None:
    result = evaluate_preconditions(b"PUT", exists=False, if_none_match=b"*")
    assert result is Precondition.PROCEED


@pytest.mark.parametrize(
    ("method", "date", "expected"),
    [
        (b"GET", _AT, Precondition.NOT_MODIFIED),
        (b"GET", _AFTER, Precondition.NOT_MODIFIED),
        (b"GET", _BEFORE, Precondition.PROCEED),
        (b"GET", b"junk", Precondition.PROCEED),
        (b"POST", _AT, Precondition.PROCEED),
    ],
)
def test_if_modified_since(method: bytes, date: bytes, expected: Precondition) -> None:
    assert _evaluate(method, if_modified_since=date) is expected


def test_if_none_match_takes_precedence_over_if_modified_since() -> None:
    # A changed tag means a full response even if the date says unchanged.
    assert _evaluate(if_none_match=b'"v2"', if_modified_since=_AFTER) is Precondition.PROCEED


def test_412_comes_before_304() -> None:
    result = _evaluate(if_match=b'"v2"', if_none_match=b'"v1"')
    assert result is Precondition.PRECONDITION_FAILED


def test_if_range() -> None:
    assert if_range_allows(None)
    assert if_range_allows(b'"v1"', etag=_ETAG, last_modified=_MTIME)
    assert not if_range_allows(b'"v2"', etag=_ETAG)
    assert not if_range_allows(b'W/"v1"', etag=_ETAG)
    assert not if_range_allows(b'"v1"', etag=ETag("v1", weak=True))
    assert not if_range_allows(b'"v1"')
    assert not if_range_allows(b'"v1", "v2"', etag=_ETAG)
    assert if_range_allows(_AT, etag=_ETAG, last_modified=_MTIME)
    assert not if_range_allows(_AFTER, last_modified=_MTIME)
    assert not if_range_allows(_AT)
    assert not if_range_allows(b"junk", last_modified=_MTIME)


def test_check_preconditions_reads_headers() -> None:
    def check(method: bytes, *fields: tuple[str, str]) -> Precondition:
        return check_preconditions(method, Headers(fields), etag=_ETAG, last_modified=_MTIME)

    assert check(b"GET") is Precondition.PROCEED
    # A list split over two lines is one list (RFC 9110 §5.3).
    assert check(b"GET", ("If-None-Match", '"a"'), ("if-none-match", '"v1"')) is (
        Precondition.NOT_MODIFIED
    )
    assert check(b"PUT", ("If-Match", '"a"'), ("If-Match", '"v1"')) is Precondition.PROCEED
    assert check(b"PUT", ("If-Match", '"a"')) is Precondition.PRECONDITION_FAILED
    assert check(b"GET", ("If-Modified-Since", _AT.decode())) is Precondition.NOT_MODIFIED
    assert check(b"PUT", ("If-Unmodified-Since", _BEFORE.decode())) is (
        Precondition.PRECONDITION_FAILED
    )
