"""What the HTTP client sends: URLs taken apart, fields checked, bodies measured."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torsion.web import Headers, InvalidRequestError
from torsion.web._client_http11 import CHUNKED, check_target
from torsion.web._client_request import (
    RequestBodySource,
    declared_length,
    headers_of,
    parse_url,
)


@pytest.mark.parametrize(
    ("url", "origin", "target", "authority"),
    [
        ("http://example.test", ("http", "example.test", 80), b"/", b"example.test"),
        ("HTTP://Example.TEST:80/a?b", ("http", "example.test", 80), b"/a?b", b"example.test"),
        (
            "https://example.test:8443/",
            ("https", "example.test", 8443),
            b"/",
            b"example.test:8443",
        ),
        ("http://[::1]:8080/x", ("http", "::1", 8080), b"/x", b"[::1]:8080"),
        ("http://192.0.2.1/#frag", ("http", "192.0.2.1", 80), b"/", b"192.0.2.1"),
        (
            "http://example.test/%41%20b",
            ("http", "example.test", 80),
            b"/%41%20b",
            b"example.test",
        ),
    ],
)
def test_urls_are_taken_apart(
    url: str, origin: tuple[str, str, int], target: bytes, authority: bytes
) -> None:
    parsed = parse_url(url)
    assert parsed.origin == origin
    assert parsed.target == target
    assert parsed.authority == authority


@given(st.text(max_size=60))
def test_any_path_gives_a_sendable_target_or_a_refusal(path: str) -> None:
    try:
        parsed = parse_url("http://example.test/" + path)
    except InvalidRequestError:
        return
    check_target(parsed.target)  # raises if a space or control character got through
    assert parsed.url.startswith("http://example.test/")


def test_headers_are_copied_and_checked() -> None:
    given = Headers([("X-A", "1")])
    copy = headers_of(given)
    copy.add("X-B", "2")
    assert "X-B" not in given
    with pytest.raises(InvalidRequestError):
        headers_of(Headers.from_raw([(b"X-A", b"1\r\n2")]))
    with pytest.raises(InvalidRequestError):
        headers_of({"X-A": "\x00"})
    assert len(headers_of(None)) == 0


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ([], None),
        ([("Content-Length", "12")], 12),
        ([("Content-Length", "12"), ("content-length", "12")], 12),
    ],
)
def test_a_declared_length(fields: list[tuple[str, str]], expected: int | None) -> None:
    assert declared_length(Headers(fields)) == expected


@pytest.mark.parametrize(
    "fields",
    [
        [("Content-Length", "12"), ("Content-Length", "13")],
        [("Content-Length", "-1")],
        [("Content-Length", "1"), ("Transfer-Encoding", "chunked")],
    ],
)
def test_a_bad_declared_length_is_refused(fields: list[tuple[str, str]]) -> None:
    with pytest.raises(InvalidRequestError):
        declared_length(Headers(fields))


def test_bodies_and_their_framing() -> None:
    assert RequestBodySource(None, None).wire_length(b"GET") is None
    assert RequestBodySource(None, None).wire_length(b"POST") == 0
    assert RequestBodySource(b"abc", None).wire_length(b"POST") == 3
    assert RequestBodySource(bytearray(b"ab"), None).whole == b"ab"
    with pytest.raises(InvalidRequestError):
        RequestBodySource(b"abc", 4)
    # A file that is not a regular file on disk goes chunked.
    assert RequestBodySource(io.BytesIO(b"abc"), None).wire_length(b"PUT") == CHUNKED
    assert not RequestBodySource(io.BytesIO(b"abc"), None).replayable
    with pytest.raises(TypeError):
        RequestBodySource(42, None)  # type: ignore[arg-type]
