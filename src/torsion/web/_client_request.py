"""What the HTTP client sends: URLs taken apart, header fields checked, bodies.

``parse_url`` refuses, before anything is sent, what may not go on the wire:
schemes other than http and https, credentials in the URL, spaces and
control characters anywhere (``urlsplit`` would silently drop tabs and
newlines, so they are refused first). Non-ASCII host names are IDNA-encoded
and non-ASCII paths percent-encoded. ``RequestBodySource`` sends bytes, a
binary file or an async iterable of bytes, waiting for the connection to
drain between pieces.
"""

from __future__ import annotations

import os
import stat
import string
from collections.abc import AsyncIterable, Iterable, Mapping
from dataclasses import dataclass
from typing import IO, TypeAlias
from urllib.parse import quote, urlsplit

from torsion.web._client_errors import InvalidRequestError
from torsion.web._client_http11 import CHUNKED, HTTP11ClientConnection, validate_field
from torsion.web._headers import Headers, InvalidHeaderError

__all__ = [
    "HeadersLike",
    "RequestBody",
    "RequestBodySource",
    "RequestURL",
    "declared_length",
    "headers_of",
    "parse_url",
]

RequestBody: TypeAlias = bytes | bytearray | memoryview | AsyncIterable[bytes] | IO[bytes] | None
"""What a request may carry: bytes, an async iterable of bytes, a binary file, or nothing."""

HeadersLike: TypeAlias = (
    Headers | Mapping[str, str] | Mapping[bytes, bytes] | Iterable[tuple[str | bytes, str | bytes]]
)

_FILE_PIECE = 64 * 1024

# RFC 3986 characters kept as they are when a URL's path and query are
# percent-encoded (everything printable but space, '"', '<', '>', '\', '^',
# '`', '{', '|', '}'; '%' stays so that encoded URLs are not encoded twice).
_URL_SAFE = "".join(c for c in string.printable if c not in ' "<>\\^`{|}\t\n\r\x0b\x0c')


@dataclass(frozen=True, slots=True)
class RequestURL:
    """A URL taken apart for sending."""

    url: str
    scheme: str
    host: str  # as connected to: IDNA-encoded, an IPv6 address without brackets
    port: int
    target: bytes  # origin-form: the path and the query
    authority: bytes  # the Host field

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)


def parse_url(url: str) -> RequestURL:
    """Take a URL apart, refusing what may not be sent.

    Raises:
        InvalidRequestError: Not an absolute http or https URL, or a URL
            holding a space or a control character.
    """
    # isprintable() is False for every control character, ASCII or not.
    if " " in url or not url.isprintable():
        # urlsplit drops tabs and newlines without a word: refuse them first.
        raise InvalidRequestError(f"a URL may not hold spaces or control characters: {url!r}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidRequestError(f"not a valid URL: {url!r} ({exc})") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidRequestError(f"not an http or https URL: {url!r}")
    if parts.username is not None or parts.password is not None:
        raise InvalidRequestError("credentials in a URL are not sent: use an Authorization header")
    host = parts.hostname
    if not host:
        raise InvalidRequestError(f"a URL without a host: {url!r}")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise InvalidRequestError(f"not a valid host name: {host!r}") from exc
    default = 443 if scheme == "https" else 80
    if port is None:
        port = default
    if port == 0:
        raise InvalidRequestError(f"port 0 in {url!r}")
    path = parts.path or "/"
    target = path + ("?" + parts.query if parts.query else "")
    if not target.isascii():
        target = quote(target, safe=_URL_SAFE)
    bracketed = f"[{host}]" if ":" in host else host
    authority = bracketed if port == default else f"{bracketed}:{port}"
    clean = f"{scheme}://{authority}{target}"
    return RequestURL(clean, scheme, host, port, target.encode("ascii"), authority.encode("ascii"))


def headers_of(headers: HeadersLike | None) -> Headers:
    """Copy the caller's headers, checking every field.

    Raises:
        InvalidRequestError: A name or value may not be sent.
    """
    try:
        if headers is None:
            return Headers()
        if isinstance(headers, Headers):
            copy = headers.copy()
            for name, value in copy.raw:
                validate_field(name, value)
            return copy
        return Headers(headers)
    except InvalidHeaderError as exc:
        raise InvalidRequestError(str(exc)) from exc


class RequestBodySource:
    """A request body, as the client sends it."""

    def __init__(self, body: RequestBody, declared_length: int | None) -> None:
        self.whole: bytes | None = None
        self.stream: AsyncIterable[bytes] | None = None
        self.file: IO[bytes] | None = None
        self.length: int | None = None
        if body is None:
            self.whole = b""
        elif isinstance(body, bytes | bytearray | memoryview):
            self.whole = bytes(body)
            self.length = len(self.whole)
        elif isinstance(body, AsyncIterable):
            self.stream = body
        elif hasattr(body, "read"):
            self.file = body
            self.length = _file_length(body)
        else:
            raise TypeError(f"a request body is bytes, an async iterable or a file, not {body!r}")
        if declared_length is not None:
            if self.length is not None and self.length != declared_length:
                raise InvalidRequestError(
                    f"Content-Length says {declared_length} but the body has {self.length} bytes"
                )
            self.length = declared_length
        self.empty = body is None

    @property
    def replayable(self) -> bool:
        """Whether the body can be sent again (for a retry or a 307/308)."""
        return self.whole is not None

    def wire_length(self, method: bytes) -> int | None:
        if self.empty:
            # RFC 9110 section 8.6: a POST, PUT or PATCH without a body
            # still says so, or some servers answer 411.
            return 0 if method in (b"POST", b"PUT", b"PATCH") else None
        return CHUNKED if self.length is None else self.length

    async def send(self, connection: HTTP11ClientConnection) -> None:
        """Write the body, waiting for the connection to drain between pieces."""
        sent = 0
        if self.file is not None:
            while True:
                # Regular files do not block for long; a pipe or socket here
                # would be better given as an async iterable.
                piece = self.file.read(_FILE_PIECE)
                if not piece:
                    break
                sent += len(piece)
                await connection.drained()
                connection.write_body(piece)
        elif self.stream is not None:
            async for piece in self.stream:
                if not isinstance(piece, bytes | bytearray | memoryview):
                    raise TypeError(f"a request body yields bytes, not {piece!r}")
                if not piece:
                    continue
                sent += len(piece)
                if self.length is not None and sent > self.length:
                    raise InvalidRequestError(f"the body is longer than its {self.length} bytes")
                await connection.drained()
                connection.write_body(bytes(piece))
        if self.length is not None and sent != self.length:
            raise InvalidRequestError(f"the body had {sent} bytes, not {self.length}")
        connection.end_body()


def _file_length(file: IO[bytes]) -> int | None:
    try:
        status = os.fstat(file.fileno())
        position = file.tell()
    except (OSError, AttributeError, ValueError):
        return None
    if not stat.S_ISREG(status.st_mode):
        return None
    return max(status.st_size - position, 0)


def declared_length(fields: Headers) -> int | None:
    values = fields.get_all(b"content-length")
    if not values:
        return None
    if len(set(values)) != 1 or not values[0].isdigit():
        raise InvalidRequestError(f"invalid Content-Length {values!r}")
    if b"transfer-encoding" in fields:
        raise InvalidRequestError("the client chooses the transfer coding itself")
    return int(values[0])
