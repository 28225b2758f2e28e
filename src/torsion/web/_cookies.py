"""HTTP cookies (RFC 6265): the server's side and a client's cookie jar.

Server side: :func:`parse_cookie_header` reads a request's ``Cookie`` field,
leniently about spacing and strictly about size and count, and never raises
on junk; :func:`format_set_cookie` writes a ``Set-Cookie`` value and refuses
anything that could inject an attribute or a header (``;``, ``,``, spaces,
CR, LF, NUL in names and values).

Client side: :class:`CookieJar` is what an HTTP client keeps between
requests. It follows RFC 6265 §5.3 to decide which ``Set-Cookie`` fields to
store (a ``Domain`` the host is not within is refused, and so is any domain
cookie for a host that is an IP address), and §5.4 to decide which cookies a
request carries. It also keeps two later rules browsers follow (RFC 6265bis):
an insecure origin cannot set a ``Secure`` cookie, and the ``__Secure-`` and
``__Host-`` name prefixes are enforced. There is no public suffix list, so a
site can set a cookie for a registrable parent domain (``Domain=example.com``
from ``www.example.com``) and also for a public suffix (``Domain=co.uk``);
a client that visits untrusted sites with one jar should know this. Time
comes from a clock callable (``reactor.seconds`` or a test's clock).

Cookie names and values are ``str`` decoded from ISO-8859-1, so every byte
round-trips to the wire unchanged.
"""

from __future__ import annotations

import email.utils
import ipaddress
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Final, Literal
from urllib.parse import urlsplit

from torsion.errors import TorsionError
from torsion.web._conditional import format_http_date, parse_http_date

__all__ = [
    "Cookie",
    "CookieError",
    "CookieJar",
    "format_set_cookie",
    "parse_cookie_header",
]

DEFAULT_MAX_COOKIES: Final = 64
DEFAULT_MAX_HEADER: Final = 8192

SameSite = Literal["Strict", "Lax", "None"]


class CookieError(TorsionError, ValueError):
    """A cookie that must not be sent: its name, value or an attribute is unsafe."""


def parse_cookie_header(
    value: bytes,
    *,
    max_cookies: int = DEFAULT_MAX_COOKIES,
    max_size: int = DEFAULT_MAX_HEADER,
) -> dict[str, str]:
    """Parse a request's ``Cookie`` field into names and values.

    Pairs are separated by ``;`` with any spacing; a value in double quotes
    loses its quotes; a pair without ``=`` or with an empty name is skipped.
    When a name repeats, the first value wins: user agents send the cookie
    with the longest path first (RFC 6265 §5.4).

    Args:
        value: The field value (several ``Cookie`` lines joined with ``; ``).
        max_cookies: Most pairs read; the rest are dropped.
        max_size: A field longer than this is ignored whole (an empty
            result) rather than cut in the middle of a value.

    Returns:
        Names to values, in the order they came.
    """
    cookies: dict[str, str] = {}
    if len(value) > max_size:
        return cookies
    seen = 0
    for pair in value.split(b";"):
        name, equals, raw = pair.partition(b"=")
        name = name.strip(b" \t")
        if not equals or not name:
            continue
        seen += 1
        if seen > max_cookies:
            break
        raw = raw.strip(b" \t")
        if len(raw) >= 2 and raw[:1] == b'"' and raw[-1:] == b'"':
            raw = raw[1:-1]
        cookies.setdefault(name.decode("latin-1"), raw.decode("latin-1"))
    return cookies


# RFC 6265 §4.1.1: cookie-octet excludes CTLs, whitespace, DQUOTE, comma,
# semicolon and backslash.
_COOKIE_OCTETS: Final = frozenset(
    chr(c) for c in range(0x21, 0x7F) if chr(c) not in "\",;\\"
)  # fmt: skip
# RFC 9110 §5.6.2 token characters, for names.
_TOKEN: Final = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
# Attribute values (Path, Domain): anything printable but ";" (RFC 6265 §4.1.1
# av-octet is any CHAR except CTLs or ";").
_AV_OCTETS: Final = frozenset(chr(c) for c in range(0x20, 0x7F) if chr(c) != ";")
_SAME_SITE: Final = ("Strict", "Lax", "None")
_CONTROLS: Final = {c: None for c in (*range(0x09), *range(0x0A, 0x20), 0x7F)}


def format_set_cookie(
    name: str,
    value: str,
    *,
    expires: float | None = None,
    max_age: int | None = None,
    domain: str | None = None,
    path: str | None = None,
    secure: bool = False,
    http_only: bool = False,
    same_site: SameSite | None = None,
) -> bytes:
    """Format a ``Set-Cookie`` field value (RFC 6265 §4.1).

    Args:
        name: The cookie's name, a token.
        value: Its value: printable ASCII without space, ``"``, ``,``, ``;`` or
            a backslash (encode anything else, e.g. base64url, before calling).
        expires: When it expires, in seconds since the epoch.
        max_age: Seconds until it expires (0 or less deletes it).
        domain: The domain it is sent to, the host and its subdomains.
        path: The path prefix it is sent for.
        secure: Only send it over secure connections.
        http_only: Hide it from scripts.
        same_site: ``"Strict"``, ``"Lax"`` or ``"None"`` (which needs
            ``secure``, or browsers drop the cookie).

    Returns:
        The field value, ready for a ``Set-Cookie`` header.

    Raises:
        CookieError: A name, value or attribute holds a character that could
            end it early or inject another attribute or header, SameSite is
            not one of the three, SameSite=None lacks Secure, or a
            ``__Secure-``/``__Host-`` name lacks what its prefix demands.
    """
    if not name or not _TOKEN.issuperset(name):
        raise CookieError(f"invalid cookie name {name!r}")
    if not _COOKIE_OCTETS.issuperset(value):
        raise CookieError(f"invalid cookie value {value!r}")
    parts = [f"{name}={value}"]
    if expires is not None:
        parts.append(f"Expires={format_http_date(expires)}")
    if max_age is not None:
        parts.append(f"Max-Age={int(max_age)}")
    if domain is not None:
        if not domain or not _AV_OCTETS.issuperset(domain) or " " in domain:
            raise CookieError(f"invalid cookie domain {domain!r}")
        parts.append(f"Domain={domain}")
    if path is not None:
        if not path.startswith("/") or not _AV_OCTETS.issuperset(path):
            raise CookieError(f"invalid cookie path {path!r}")
        parts.append(f"Path={path}")
    if secure:
        parts.append("Secure")
    if http_only:
        parts.append("HttpOnly")
    if same_site is not None:
        if same_site not in _SAME_SITE:
            raise CookieError(f"SameSite must be Strict, Lax or None, not {same_site!r}")
        if same_site == "None" and not secure:
            raise CookieError("SameSite=None needs Secure")
        parts.append(f"SameSite={same_site}")
    if name.startswith("__Secure-") and not secure:
        raise CookieError("a __Secure- cookie needs Secure")
    if name.startswith("__Host-") and (not secure or domain is not None or path != "/"):
        raise CookieError("a __Host- cookie needs Secure, Path=/ and no Domain")
    return "; ".join(parts).encode("ascii")


@dataclass(frozen=True, slots=True, kw_only=True)
class Cookie:
    """A cookie a :class:`CookieJar` holds (RFC 6265 §5.3's storage model).

    Attributes:
        name: The cookie's name.
        value: Its value.
        domain: The domain it belongs to (lower case, no leading dot).
        path: The path prefix it is sent for.
        host_only: Sent to ``domain`` alone, not to its subdomains (no
            ``Domain`` attribute was given).
        secure: Sent over secure connections only.
        http_only: Not for scripts (kept for completeness; an HTTP client
            sends it like any other).
        same_site: The SameSite attribute as given, or None.
        expires: When it expires (the jar's clock), or None for a session
            cookie, kept until the jar is cleared.
        created: When it was first stored; an update keeps this time.
    """

    name: str
    value: str
    domain: str
    path: str
    host_only: bool
    secure: bool = False
    http_only: bool = False
    same_site: str | None = None
    expires: float | None = None
    created: float = 0.0


def _is_ip(host: str) -> bool:
    """Whether ``host`` is an IPv4 or IPv6 address, not a name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _domain_matches(host: str, domain: str) -> bool:
    """RFC 6265 §5.1.3: the host is the domain or a name within it."""
    return host == domain or (
        host.endswith(domain) and host[-len(domain) - 1] == "." and not _is_ip(host)
    )


def _path_matches(request_path: str, cookie_path: str) -> bool:
    """RFC 6265 §5.1.4: the cookie's path is the request's or a directory above it."""
    if request_path == cookie_path:
        return True
    return request_path.startswith(cookie_path) and (
        cookie_path.endswith("/") or request_path[len(cookie_path)] == "/"
    )


def _default_path(request_path: str) -> str:
    """RFC 6265 §5.1.4: the directory of the request's path."""
    if not request_path.startswith("/"):
        return "/"
    slash = request_path.rfind("/")
    return "/" if slash == 0 else request_path[:slash]


def _parse_expires(text: str) -> float | None:
    """An Expires attribute's time: an HTTP date, or the looser forms servers send."""
    seconds = parse_http_date(text)
    if seconds is not None:
        return seconds
    try:
        parsed = email.utils.parsedate_tz(text)
        if parsed is None:
            return None
        return float(email.utils.mktime_tz(parsed))
    except (ValueError, OverflowError, TypeError):  # pragma: no cover - defensive
        return None


@dataclass(slots=True)
class _Attributes:
    """What §5.2 reads from a Set-Cookie field's attributes."""

    expires: float | None = None
    max_age: int | None = None
    domain: str | None = None
    path: str | None = None
    secure: bool = False
    http_only: bool = False
    same_site: str | None = None


def _parse_set_cookie(value: bytes) -> tuple[str, str, _Attributes] | None:
    """Parse a Set-Cookie field as a user agent does (RFC 6265 §5.2), or None."""
    text = value.decode("latin-1")
    pair, _, rest = text.partition(";")
    name, equals, cookie_value = pair.partition("=")
    name, cookie_value = name.strip(" \t"), cookie_value.strip(" \t")
    # RFC 6265bis §5.6 step 4: a control character (but tab) anywhere in the
    # name or value voids the cookie; CR, LF and NUL anywhere void the field.
    if not equals or not name or (name + cookie_value).translate(_CONTROLS) != name + cookie_value:
        return None
    if any(c in text for c in "\r\n\0"):
        return None
    attributes = _Attributes()
    for item in rest.split(";") if rest else ():
        key, _, raw = item.partition("=")
        key, raw = key.strip(" \t").lower(), raw.strip(" \t")
        if key == "expires":
            attributes.expires = _parse_expires(raw)
        elif key == "max-age":
            digits = raw[1:] if raw.startswith("-") else raw
            if digits.isdigit() and digits.isascii() and len(digits) <= 12:
                attributes.max_age = int(raw)
        elif key == "domain" and raw.removeprefix("."):
            attributes.domain = raw.removeprefix(".").lower()
        elif key == "path":
            attributes.path = raw if raw.startswith("/") else None
        elif key == "secure":
            attributes.secure = True
        elif key == "httponly":
            attributes.http_only = True
        elif key == "samesite":
            attributes.same_site = next((s for s in _SAME_SITE if s.lower() == raw.lower()), None)
    return name, cookie_value, attributes


class CookieJar:
    """Cookies an HTTP client stores from responses and sends with requests.

    Bounded: a cookie whose name and value exceed ``max_cookie_size`` is
    refused, and when a domain or the whole jar is full the cookies used
    least recently go first.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        *,
        max_cookies: int = 3000,
        max_per_domain: int = 50,
        max_cookie_size: int = 4096,
    ) -> None:
        """Make an empty jar.

        Args:
            clock: Returns the current time in seconds since the epoch
                (``reactor.seconds``; a fake clock in tests).
            max_cookies: Most cookies held in all.
            max_per_domain: Most cookies held for one domain.
            max_cookie_size: Longest name plus value accepted, in characters.
        """
        self._clock = clock
        self._max_cookies = max_cookies
        self._max_per_domain = max_per_domain
        self._max_cookie_size = max_cookie_size
        # (domain, path, name) -> cookie; a dict keeps least recently used
        # first, since an access moves a cookie to the end.
        self._cookies: dict[tuple[str, str, str], Cookie] = {}

    def __len__(self) -> int:
        return len(self._cookies)

    def __iter__(self) -> Iterator[Cookie]:
        return iter(list(self._cookies.values()))

    def clear(self, domain: str | None = None) -> None:
        """Forget every cookie, or those of one domain.

        Args:
            domain: The domain whose cookies to forget (all when None).
        """
        if domain is None:
            self._cookies.clear()
            return
        domain = domain.lower()
        for key in [k for k in self._cookies if k[0] == domain]:
            del self._cookies[key]

    def clear_session_cookies(self) -> None:
        """Forget the cookies that have no expiry time (the session ended)."""
        for key in [k for k, c in self._cookies.items() if c.expires is None]:
            del self._cookies[key]

    def receive(self, url: str, set_cookie: Iterable[bytes]) -> list[Cookie]:
        """Store what a response's ``Set-Cookie`` fields ask, if allowed.

        Args:
            url: The URL the response answered.
            set_cookie: The response's ``Set-Cookie`` field values, each apart.

        Returns:
            The cookies stored or updated (not those deleted or refused).
        """
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if not host:
            return []
        secure_origin = parts.scheme in ("https", "wss")
        request_path = parts.path or "/"
        now = self._clock()
        stored = []
        for value in set_cookie:
            cookie = self._admit(value, host, secure_origin, request_path, now)
            if cookie is not None:
                stored.append(cookie)
        return stored

    def _admit(
        self, value: bytes, host: str, secure_origin: bool, request_path: str, now: float
    ) -> Cookie | None:
        """Apply RFC 6265 §5.3 to one Set-Cookie field; store and return the cookie."""
        parsed = _parse_set_cookie(value)
        if parsed is None:
            return None
        name, cookie_value, attributes = parsed
        if len(name) + len(cookie_value) > self._max_cookie_size:
            return None
        if attributes.secure and not secure_origin:
            return None  # RFC 6265bis §5.7 step 8
        if attributes.domain is not None and attributes.domain != host:
            if _is_ip(host) or not _domain_matches(host, attributes.domain):
                return None
            domain, host_only = attributes.domain, False
        else:
            domain, host_only = host, True
        path = attributes.path or _default_path(request_path)
        if name.startswith("__Secure-") and not attributes.secure:
            return None
        if name.startswith("__Host-") and not (
            attributes.secure and attributes.domain is None and attributes.path == "/"
        ):
            return None
        # Max-Age wins over Expires (§5.3 step 3).
        if attributes.max_age is not None:
            expires: float | None = now + attributes.max_age
        else:
            expires = attributes.expires
        key = (domain, path, name)
        old = self._cookies.pop(key, None)
        if old is not None and old.secure and not secure_origin:
            self._cookies[key] = old  # an insecure origin cannot replace it
            return None
        if expires is not None and expires <= now:
            return None  # an expiry in the past deletes the cookie
        cookie = Cookie(
            name=name,
            value=cookie_value,
            domain=domain,
            path=path,
            host_only=host_only,
            secure=attributes.secure,
            http_only=attributes.http_only,
            same_site=attributes.same_site,
            expires=expires,
            created=old.created if old is not None else now,
        )
        self._cookies[key] = cookie
        self._evict(domain, now)
        return cookie if key in self._cookies else None

    def _evict(self, domain: str, now: float) -> None:
        """Keep within the limits: expired cookies first, then least recently used."""
        if len(self._cookies) > self._max_cookies:
            self._remove_expired(now)
        in_domain = [k for k in self._cookies if k[0] == domain]
        for key in in_domain[: max(len(in_domain) - self._max_per_domain, 0)]:
            del self._cookies[key]
        while len(self._cookies) > self._max_cookies:
            del self._cookies[next(iter(self._cookies))]

    def _remove_expired(self, now: float) -> None:
        """Drop every cookie whose time has come."""
        for key in [
            k for k, c in self._cookies.items() if c.expires is not None and c.expires <= now
        ]:
            del self._cookies[key]

    def cookies_for(self, url: str) -> list[Cookie]:
        """The cookies a request to ``url`` carries, in RFC 6265 §5.4's order.

        Longer paths first, then earlier created. Expired cookies are dropped
        from the jar on the way.

        Args:
            url: The request's URL (``http``, ``https``, ``ws`` or ``wss``).

        Returns:
            The cookies to send.
        """
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if not host:
            return []
        secure = parts.scheme in ("https", "wss")
        path = parts.path or "/"
        now = self._clock()
        self._remove_expired(now)
        chosen = [
            cookie
            for cookie in self._cookies.values()
            if (
                host == cookie.domain if cookie.host_only else _domain_matches(host, cookie.domain)
            )
            and _path_matches(path, cookie.path)
            and (secure or not cookie.secure)
        ]
        chosen.sort(key=lambda c: (-len(c.path), c.created))
        for cookie in chosen:
            # Mark as recently used: move to the end of the eviction order.
            key = (cookie.domain, cookie.path, cookie.name)
            self._cookies[key] = self._cookies.pop(key)
        return chosen

    def cookie_header(self, url: str) -> bytes | None:
        """The ``Cookie`` field value for a request to ``url``, or None if none apply.

        Args:
            url: The request's URL.
        """
        cookies = self.cookies_for(url)
        if not cookies:
            return None
        return "; ".join(f"{c.name}={c.value}" for c in cookies).encode("latin-1")

    def set(self, cookie: Cookie) -> None:
        """Put a cookie in the jar directly, replacing one of the same name, domain and path.

        Args:
            cookie: The cookie, e.g. one restored from storage.
        """
        key = (cookie.domain.lower(), cookie.path, cookie.name)
        self._cookies.pop(key, None)
        self._cookies[key] = replace(cookie, domain=key[0])
        self._evict(key[0], self._clock())
