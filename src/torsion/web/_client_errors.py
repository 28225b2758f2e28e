"""The errors of torsion's HTTP client.

Every one is a ``torsion.web.HTTPClientError`` (a ``TorsionError``)::

    HTTPClientError
    ├── InvalidRequestError (+ValueError)   refused before anything was sent: a
    │                                       method, URL or header with CR, LF,
    │                                       NUL or a space, a scheme not HTTP
    ├── BadResponseError                    the server's bytes break HTTP/1.1:
    │   │                                   malformed, over a limit, cut short
    │   ├── ResponseNeverReceivedError (+ConnectionError)
    │   │                                   the connection ended before any byte
    │   │                                   of the response (a stale keep-alive
    │   │                                   connection, usually)
    │   └── ResponseTooLargeError           a body (raw or decoded) over its bound
    ├── RedirectError                       a redirect that is not followed:
    │   ├── TooManyRedirectsError           more than the maximum in a row
    │   └── RedirectRefusedError            to another scheme, or https to http
    ├── ProxyConnectError                   an HTTP proxy refused CONNECT
    └── ClientClosedError                   the client was closed

Timeouts are the builtin ``TimeoutError``, cancellation is
``asyncio.CancelledError``; connection failures keep their ``OSError``
(``ConnectionRefusedError``, ``DNSLookupError``) and TLS failures their
``ssl.SSLError``, as torsion.internet reports them.
"""

from __future__ import annotations

from torsion.errors import TorsionError

__all__ = [
    "BadResponseError",
    "ClientClosedError",
    "HTTPClientError",
    "InvalidRequestError",
    "ProxyConnectError",
    "RedirectError",
    "RedirectRefusedError",
    "ResponseNeverReceivedError",
    "ResponseTooLargeError",
    "TooManyRedirectsError",
]


class HTTPClientError(TorsionError):
    """The root of the HTTP client's own errors."""


class InvalidRequestError(HTTPClientError, ValueError):
    """A request that must not be sent; nothing of it reached the wire."""


class BadResponseError(HTTPClientError):
    """The server's response breaks HTTP/1.1 or a limit; the connection is closed."""


class ResponseNeverReceivedError(BadResponseError, ConnectionError):
    """The connection ended before any byte of the response arrived.

    On a keep-alive connection taken from the pool this usually means the
    server had closed it meanwhile; idempotent requests are then retried
    once on a new connection.
    """


class ResponseTooLargeError(BadResponseError):
    """A response body, as received or once decoded, exceeded its bound.

    Attributes:
        limit: The bound, in bytes.
    """

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class RedirectError(HTTPClientError):
    """A redirect was not followed."""


class TooManyRedirectsError(RedirectError):
    """More redirects in a row than the client follows.

    Attributes:
        urls: Every URL asked for, in order, the first one included.
    """

    def __init__(self, urls: list[str]) -> None:
        super().__init__(f"more than {len(urls) - 1} redirects, the last to {urls[-1]}")
        self.urls = urls


class RedirectRefusedError(RedirectError):
    """A redirect to where the client will not go (another scheme, https to http).

    Attributes:
        location: The URL the server redirected to.
    """

    def __init__(self, message: str, location: str) -> None:
        super().__init__(message)
        self.location = location


class ProxyConnectError(HTTPClientError):
    """An HTTP proxy answered CONNECT with something other than 2xx.

    Attributes:
        code: The proxy's status code.
    """

    def __init__(self, code: int, phrase: str) -> None:
        super().__init__(f"the proxy refused to connect: {code} {phrase}")
        self.code = code


class ClientClosedError(HTTPClientError):
    """The HTTP client was closed: it makes no more requests."""
