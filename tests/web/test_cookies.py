"""Tests for torsion.web._cookies: Cookie parsing, Set-Cookie, the client's jar."""

from __future__ import annotations

import http.cookies

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torsion.testing import Clock
from torsion.web import validate_header_value
from torsion.web._cookies import (
    Cookie,
    CookieError,
    CookieJar,
    format_set_cookie,
    parse_cookie_header,
)

# ---- Cookie request header ---------------------------------------------------


def test_parse_simple_and_spaced() -> None:
    assert parse_cookie_header(b"a=1; b=2;c=3 ;  d = 4\t") == {
        "a": "1",
        "b": "2",
        "c": "3",
        "d": "4",
    }


def test_parse_is_lenient_about_junk() -> None:
    header = b';;; junk; =novalue; e=; f="quoted"; g="half; h=a=b; i=\xe9\xff'
    assert parse_cookie_header(header) == {
        "e": "",
        "f": "quoted",
        "g": '"half',
        "h": "a=b",
        "i": "\xe9\xff",
    }


def test_first_value_of_a_repeated_name_wins() -> None:
    assert parse_cookie_header(b"sid=specific; sid=general") == {"sid": "specific"}


def test_count_and_size_limits() -> None:
    many = b"; ".join(b"c%d=%d" % (i, i) for i in range(100))
    parsed = parse_cookie_header(many, max_cookies=10)
    assert list(parsed) == [f"c{i}" for i in range(10)]
    assert parse_cookie_header(b"a=" + b"x" * 100, max_size=50) == {}
    assert parse_cookie_header(b"a=" + b"x" * 48, max_size=50) == {"a": "x" * 48}


@given(st.binary(max_size=300))
def test_parse_never_raises(value: bytes) -> None:
    parsed = parse_cookie_header(value)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in parsed.items())
    assert len(parsed) <= 64


_names = st.text(
    st.sampled_from(
        "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    ),
    min_size=1,
    max_size=20,
)
_values = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters='",;\\'),
    max_size=40,
)


@given(st.dictionaries(_names, _values, max_size=10))
def test_round_trip_with_the_stdlib_writer(cookies: dict[str, str]) -> None:
    header = "; ".join(f"{k}={v}" for k, v in cookies.items()).encode()
    expected = {
        k: (v[1:-1] if len(v) >= 2 and v[0] == v[-1] == '"' else v) for k, v in cookies.items()
    }
    assert parse_cookie_header(header) == expected


def test_agrees_with_the_stdlib_on_a_browser_header() -> None:
    header = "_ga=GA1.2.3.4; session_id=abc123; theme=dark; cart=%7B%22a%22%3A1%7D"
    stdlib = http.cookies.SimpleCookie()
    stdlib.load(header)
    assert parse_cookie_header(header.encode()) == {k: m.value for k, m in stdlib.items()}


# ---- Set-Cookie --------------------------------------------------------------


def test_format_all_attributes() -> None:
    value = format_set_cookie(
        "sid",
        "abc",
        expires=784111777,
        max_age=3600,
        domain="example.com",
        path="/app",
        secure=True,
        http_only=True,
        same_site="Lax",
    )
    assert value == (
        b"sid=abc; Expires=Sun, 06 Nov 1994 08:49:37 GMT; Max-Age=3600; Domain=example.com; "
        b"Path=/app; Secure; HttpOnly; SameSite=Lax"
    )


def test_format_minimal_and_parsed_by_the_stdlib() -> None:
    value = format_set_cookie("a", "b", path="/", http_only=True)
    assert value == b"a=b; Path=/; HttpOnly"
    stdlib = http.cookies.SimpleCookie()
    stdlib.load(value.decode())
    assert stdlib["a"].value == "b"
    assert stdlib["a"]["path"] == "/"
    assert stdlib["a"]["httponly"] is True


@pytest.mark.parametrize(
    ("name", "value", "attributes"),
    [
        ("", "v", {}),
        ("a b", "v", {}),
        ("a;b", "v", {}),
        ("a\r\nSet-Cookie: x", "v", {}),
        ("a=", "v", {}),
        ("a", "v; Domain=evil.test", {}),
        ("a", "v\r\nLocation: x", {}),
        ("a", "v,w", {}),
        ("a", "v w", {}),
        ("a", 'v"', {}),
        ("a", "v\\", {}),
        ("a", "\x00", {}),
        ("a", "é", {}),
        ("a", "v", {"domain": "x; Secure"}),
        ("a", "v", {"domain": ""}),
        ("a", "v", {"domain": "a b"}),
        ("a", "v", {"path": "/x;HttpOnly"}),
        ("a", "v", {"path": "/x\r\n"}),
        ("a", "v", {"path": "relative"}),
        ("a", "v", {"same_site": "Sometimes"}),
        ("a", "v", {"same_site": "None"}),
        ("__Secure-a", "v", {}),
        ("__Host-a", "v", {"secure": True}),
        ("__Host-a", "v", {"secure": True, "path": "/", "domain": "x.test"}),
    ],
)
def test_format_refuses_injection_and_broken_rules(
    name: str, value: str, attributes: dict[str, object]
) -> None:
    with pytest.raises(CookieError):
        format_set_cookie(name, value, **attributes)  # type: ignore[arg-type]


def test_format_prefixes_when_satisfied() -> None:
    assert format_set_cookie("__Secure-a", "v", secure=True) == b"__Secure-a=v; Secure"
    assert format_set_cookie("__Host-a", "v", secure=True, path="/", same_site="None") == (
        b"__Host-a=v; Path=/; Secure; SameSite=None"
    )


def test_cookie_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="invalid cookie name"):
        format_set_cookie("a b", "v")


@given(_names, _values)
def test_formatted_cookies_round_trip_through_the_jar(name: str, value: str) -> None:
    if name.startswith(("__Secure-", "__Host-")):
        return
    jar = CookieJar(Clock(1000).seconds)
    jar.receive("http://h.test/", [format_set_cookie(name, value, path="/")])
    assert jar.cookie_header("http://h.test/x") == f"{name}={value}".encode()
    assert parse_cookie_header(f"{name}={value}".encode()) == {
        name: value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    }


# ---- CookieJar ---------------------------------------------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock(1_000_000)


@pytest.fixture
def jar(clock: Clock) -> CookieJar:
    return CookieJar(clock.seconds)


def test_host_only_cookie(jar: CookieJar) -> None:
    [cookie] = jar.receive("http://www.example.test/a/b", [b"a=1"])
    assert cookie.host_only
    assert cookie.domain == "www.example.test"
    assert cookie.path == "/a"  # the default path: the request's directory
    assert jar.cookie_header("http://www.example.test/a") == b"a=1"
    assert jar.cookie_header("http://www.example.test/a/c/d") == b"a=1"
    assert jar.cookie_header("http://WWW.EXAMPLE.TEST/a") == b"a=1"
    assert jar.cookie_header("http://www.example.test/") is None
    assert jar.cookie_header("http://www.example.test/ab") is None
    assert jar.cookie_header("http://sub.www.example.test/a") is None
    assert jar.cookie_header("http://example.test/a") is None


def test_domain_cookie(jar: CookieJar) -> None:
    [cookie] = jar.receive("http://www.example.test/", [b"a=1; Domain=.Example.Test; Path=/"])
    assert not cookie.host_only
    assert cookie.domain == "example.test"
    assert jar.cookie_header("http://example.test/") == b"a=1"
    assert jar.cookie_header("http://deep.sub.example.test/x") == b"a=1"
    assert jar.cookie_header("http://badexample.test/") is None
    assert jar.cookie_header("http://example.test.evil/") is None


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("http://www.example.test/", b"a=1; Domain=other.test"),
        ("http://www.example.test/", b"a=1; Domain=sub.www.example.test"),
        ("http://www.example.test/", b"a=1; Domain=ample.test"),
        ("http://127.0.0.1/", b"a=1; Domain=0.0.1"),
        ("http://10.1.2.3/", b"a=1; Domain=1.2.3"),
        ("http://[::1]/", b"a=1; Domain=1"),
        ("http://h.test/", b"a=1; Secure"),
        ("http://h.test/", b"__Secure-a=1"),
        ("https://h.test/", b"__Secure-a=1"),
        ("https://h.test/", b"__Host-a=1; Secure"),
        ("https://h.test/", b"__Host-a=1; Secure; Path=/; Domain=h.test"),
        ("http://h.test/", b"noequals"),
        ("http://h.test/", b"=value"),
        ("http://h.test/", b"a=1\r\nX: y"),
        ("http://h.test/", b"a=1\x01"),
        ("http://h.test/", b"a\x7f=1"),
        ("http://h.test/", b"a=" + b"x" * 5000),
        ("file:///etc/passwd", b"a=1"),
    ],
)
def test_refused_cookies(jar: CookieJar, url: str, field: bytes) -> None:
    assert jar.receive(url, [field]) == []
    assert len(jar) == 0


def test_ip_host_gets_host_only_cookies(jar: CookieJar) -> None:
    [cookie] = jar.receive("http://127.0.0.1:8080/", [b"a=1; Domain=127.0.0.1"])
    assert cookie.host_only
    jar.receive("http://127.0.0.1:8080/", [b"b=2"])
    assert jar.cookie_header("http://127.0.0.1/") == b"a=1; b=2"


def test_prefixed_cookies_accepted_when_valid(jar: CookieJar) -> None:
    stored = jar.receive(
        "https://h.test/x", [b"__Secure-a=1; Secure", b"__Host-b=2; Secure; Path=/"]
    )
    assert [c.name for c in stored] == ["__Secure-a", "__Host-b"]


def test_secure_cookies_only_over_https(jar: CookieJar) -> None:
    jar.receive("https://h.test/", [b"s=1; Secure; Path=/", b"p=2; Path=/"])
    assert jar.cookie_header("https://h.test/") == b"s=1; p=2"
    assert jar.cookie_header("wss://h.test/") == b"s=1; p=2"
    assert jar.cookie_header("http://h.test/") == b"p=2"


def test_insecure_origin_cannot_replace_a_secure_cookie(jar: CookieJar) -> None:
    jar.receive("https://h.test/", [b"s=1; Secure; Path=/"])
    assert jar.receive("http://h.test/", [b"s=evil; Path=/"]) == []
    assert jar.cookie_header("https://h.test/") == b"s=1"


def test_expiry_by_max_age_and_expires(jar: CookieJar, clock: Clock) -> None:
    jar.receive(
        "http://h.test/",
        [
            b"short=1; Max-Age=10; Path=/",
            b"dated=2; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=100; Path=/",
            b"old=3; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/",
            b"loose=4; Expires=Tue, 13-Jan-1970 00:00:00 GMT; Path=/",
            b"session=5; Max-Age=junk; Path=/",
        ],
    )
    assert jar.cookie_header("http://h.test/") == b"short=1; dated=2; loose=4; session=5"
    clock.advance(10)
    assert jar.cookie_header("http://h.test/") == b"dated=2; loose=4; session=5"
    clock.advance(90)
    assert jar.cookie_header("http://h.test/") == b"loose=4; session=5"
    clock.advance(100_000)
    assert jar.cookie_header("http://h.test/") == b"session=5"
    assert len(jar) == 1
    jar.clear_session_cookies()
    assert len(jar) == 0


def test_deleting_with_max_age_zero_or_a_past_date(jar: CookieJar) -> None:
    jar.receive("http://h.test/", [b"a=1; Path=/", b"b=2; Path=/"])
    assert jar.receive("http://h.test/", [b"a=; Max-Age=0; Path=/"]) == []
    jar.receive("http://h.test/", [b"b=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/"])
    assert len(jar) == 0


def test_update_keeps_creation_time_and_order(jar: CookieJar, clock: Clock) -> None:
    jar.receive("http://h.test/", [b"a=1; Path=/"])
    clock.advance(1)
    jar.receive("http://h.test/", [b"b=2; Path=/"])
    clock.advance(1)
    [updated] = jar.receive("http://h.test/", [b"a=3; Path=/"])
    assert updated.created == 1_000_000
    assert jar.cookie_header("http://h.test/") == b"a=3; b=2"


def test_longer_paths_first(jar: CookieJar) -> None:
    jar.receive("http://h.test/", [b"root=1; Path=/", b"deep=2; Path=/a/b", b"mid=3; Path=/a/"])
    assert jar.cookie_header("http://h.test/a/b/c") == b"deep=2; mid=3; root=1"
    assert jar.cookie_header("http://h.test/a/") == b"mid=3; root=1"
    assert jar.cookie_header("http://h.test/a") == b"root=1"


def test_path_attribute_not_absolute_uses_default(jar: CookieJar) -> None:
    [cookie] = jar.receive("http://h.test/x/y", [b"a=1; Path=relative"])
    assert cookie.path == "/x"


def test_attributes_are_read(jar: CookieJar) -> None:
    [cookie] = jar.receive(
        "https://h.test/", [b"a=1; HttpOnly; SameSite=strict; Secure; Unknown=x; Domain=."]
    )
    assert cookie.http_only
    assert cookie.secure
    assert cookie.same_site == "Strict"
    assert cookie.host_only


def test_limits_evict_least_recently_used(clock: Clock) -> None:
    jar = CookieJar(clock.seconds, max_cookies=5, max_per_domain=3)
    jar.receive("http://a.test/", [b"a%d=1; Path=/" % i for i in range(4)])
    assert [c.name for c in jar] == ["a1", "a2", "a3"]
    jar.cookies_for("http://a.test/")  # used: now most recent
    jar.receive("http://b.test/", [b"b0=1; Path=/", b"b1=1; Path=/"])
    jar.receive("http://c.test/", [b"c0=1; Path=/"])
    assert len(jar) == 5
    assert [c.name for c in jar] == ["a2", "a3", "b0", "b1", "c0"]


def test_clear_one_domain_and_set(jar: CookieJar) -> None:
    jar.receive("http://a.test/", [b"a=1"])
    jar.set(Cookie(name="b", value="2", domain="B.TEST", path="/", host_only=True))
    assert jar.cookie_header("http://b.test/") == b"b=2"
    jar.clear("b.test")
    assert [c.name for c in jar] == ["a"]
    jar.clear()
    assert len(jar) == 0


def test_url_without_host(jar: CookieJar) -> None:
    assert jar.cookies_for("/relative") == []
    assert jar.cookie_header("http:///") is None


@given(st.lists(st.binary(max_size=120), max_size=5), st.sampled_from(["http", "https"]))
def test_jar_never_raises_on_junk(fields: list[bytes], scheme: str) -> None:
    jar = CookieJar(Clock(0).seconds)
    jar.receive(f"{scheme}://h.example.test/p/q", fields)
    header = jar.cookie_header(f"{scheme}://h.example.test/p/q")
    if header is not None:
        validate_header_value(header)
