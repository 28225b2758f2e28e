"""``ReverseProxyResource``: forward the requests below a path to another server.

The resource is a leaf: whatever path is left below it is appended to the
upstream URL's path, the query is kept, and the request goes upstream through
an ``HTTPClient`` (its pool keeps connections to the upstream alive). The
request body is streamed upstream as it arrives, and the response body is
streamed back as the client reads it: the upstream is read only as fast as
the client takes the bytes, so neither side's buffers grow past their bounds.

Fields that concern one connection only are never passed on, in either
direction (RFC 9110 section 7.6.1): ``Connection``, every field the
``Connection`` field names, ``Keep-Alive``, ``Proxy-Connection``, ``TE``,
``Transfer-Encoding``, ``Upgrade`` and ``Trailer``, and the proxy
credentials. The proxy says who asked (``X-Forwarded-For``,
``X-Forwarded-Proto``, ``X-Forwarded-Host``, or RFC 7239 ``Forwarded``) and
that it passed the message on (``Via``, RFC 9110 section 7.6.3).

An upstream that cannot be reached or answers nonsense gives the client 502;
one that does not answer in time, 504 (RFC 9110 sections 15.6.3 and
15.6.5). If the upstream fails once the response has begun, the client's
connection is cut, since only that tells the client the body is incomplete.
A client that goes away cancels the upstream request.
"""

from __future__ import annotations

import logging
import typing
import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Literal

from torsion.defer import CancelledError, Deferred, ensure_deferred
from torsion.internet import IPv4Address, IPv6Address
from torsion.web._client import HTTPClient, ReactorForHTTP
from torsion.web._client_errors import HTTPClientError, InvalidRequestError
from torsion.web._client_response import Response
from torsion.web._headers import Headers
from torsion.web._request import Request
from torsion.web._resource import RenderResult, Resource, render_error

__all__ = ["ReverseProxyResource", "hop_by_hop_fields"]

_log = logging.getLogger("torsion.web.proxy")

# RFC 9110 section 7.6.1 (and the de facto Keep-Alive and Proxy-Connection);
# Proxy-Authenticate and Proxy-Authorization are meant for this proxy alone
# (RFC 9110 section 11.7), and Expect was answered here, while the body is
# streamed on (RFC 9110 section 10.1.1).
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)
_REQUEST_ONLY = frozenset({b"expect", b"host"})
# The characters a path segment keeps as they are (RFC 3986 section 3.3,
# pchar); anything else, "/" included, is percent-encoded again.
_SEGMENT_SAFE = "!$&'()*+,;=:@-._~"

ForwardedStyle = Literal["x-forwarded", "forwarded", "none"]


def hop_by_hop_fields(headers: Headers) -> frozenset[bytes]:
    """The lower-cased names of the fields that end at this hop.

    Args:
        headers: A message's fields.

    Returns:
        The fixed hop-by-hop names (RFC 9110 section 7.6.1) and every name
        listed in the message's ``Connection`` fields.
    """
    named = set(_HOP_BY_HOP)
    for value in headers.get_all(b"connection"):
        for token in value.split(b","):
            token = token.strip().lower()
            if token:
                named.add(token)
    return frozenset(named)


class ReverseProxyResource(Resource):
    """A leaf that forwards every request below it to an upstream server.

    A request for ``/prefix/a/b?x=1``, with the resource published at
    ``/prefix`` and an upstream URL ``http://10.0.0.2:8080/app``, goes to
    ``http://10.0.0.2:8080/app/a/b?x=1``.

    Args:
        upstream: The upstream server's URL (``http`` or ``https``), with
            the path the forwarded paths are appended to.
        reactor: Time and connections for the client this resource makes
            (give this or ``client``).
        client: The client to send through. A client given here should be
            made with ``decode_content=False``, ``max_body_size=None`` and no
            cookie jar, so the bytes pass through as they are; it is not
            closed by ``close()``.
        timeout: Seconds until the upstream's answer starts (counted from
            the start of the request, the upload included), and seconds its
            body may go without data (for the client this resource makes).
        forwarded: How the client is told upstream: ``"x-forwarded"``
            (``X-Forwarded-For``/``-Proto``/``-Host``), ``"forwarded"``
            (RFC 7239), or ``"none"``.
        preserve_host: Send the client's ``Host`` upstream instead of the
            upstream's own authority.
        via: The pseudonym in the ``Via`` field added both ways (None adds
            none).

    Raises:
        ValueError: Neither ``reactor`` nor ``client`` was given, or the URL
            is not an http or https URL.
    """

    is_leaf = True

    def __init__(
        self,
        upstream: str,
        *,
        reactor: ReactorForHTTP | None = None,
        client: HTTPClient | None = None,
        timeout: float | None = 60.0,
        forwarded: ForwardedStyle = "x-forwarded",
        preserve_host: bool = False,
        via: str | None = "torsion",
    ) -> None:
        """Make the resource (and its client, unless one is given)."""
        super().__init__()
        parts = urllib.parse.urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"the upstream must be an http or https URL, not {upstream!r}")
        if forwarded not in ("x-forwarded", "forwarded", "none"):
            raise ValueError(f"unknown forwarded style {forwarded!r}")
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._base_path = parts.path.rstrip("/")
        self._forwarded = forwarded
        self._preserve_host = preserve_host
        self._via = via.encode("ascii") if via is not None else None
        self._own_client = client is None
        if client is None:
            if reactor is None:
                raise ValueError("give the reactor, or a client")
            client = HTTPClient(
                reactor,
                timeout=timeout,
                decode_content=False,
                max_body_size=None,
                max_redirects=0,
            )
        self.client = client

    def close(self) -> Deferred[None]:
        """Close the connections of the client this resource made.

        Returns:
            A Deferred that fires once they are closed.
        """
        if self._own_client:
            return self.client.close()
        done: Deferred[None] = Deferred()
        done.callback(None)
        return done

    def upstream_url(self, request: Request) -> str:
        """The URL ``request`` is forwarded to.

        Args:
            request: A request that walked down to this resource.

        Returns:
            The upstream URL: its path, the request's path below this
            resource (each segment percent-encoded again), and the query.
        """
        remainder = "/".join(
            urllib.parse.quote(segment, safe=_SEGMENT_SAFE) for segment in request.postpath
        )
        path = f"{self._base_path}/{remainder}"
        query = request.query.decode("latin-1")
        if query:
            path = f"{path}?{query}"
        return self._origin + path

    def render(self, request: Request) -> RenderResult:
        """Forward ``request``, whatever its method, and stream the answer back."""
        forwarding = ensure_deferred(self._forward(request))

        def client_gone(exc: BaseException) -> None:
            # The client hung up: stop waiting for (and reading) the upstream.
            forwarding.cancel()

        request.notify_finish().add_errback(client_gone)
        return forwarding

    def request_headers(self, request: Request) -> Headers:
        """The fields sent upstream for ``request``.

        Args:
            request: The client's request.

        Returns:
            Its end-to-end fields, with ``Via`` and the forwarding fields
            added.
        """
        incoming = request.headers
        dropped = hop_by_hop_fields(incoming) | _REQUEST_ONLY
        pairs = [(name, value) for name, value in incoming.raw if name.lower() not in dropped]
        if self._preserve_host:
            host = incoming.get(b"host")
            if host is not None:
                pairs.insert(0, (b"Host", host))
        headers = Headers.from_raw(pairs)
        if self._via is not None:
            version = request.version.removeprefix("HTTP/").encode("ascii")
            headers.add(b"Via", b"%b %b" % (version, self._via))
        client = _client_host(request)
        proto = b"https" if request.is_secure else b"http"
        asked_host = incoming.get(b"host")
        if self._forwarded == "x-forwarded":
            previous = b", ".join(headers.get_all(b"x-forwarded-for"))
            headers.set(b"X-Forwarded-For", previous + b", " + client if previous else client)
            headers.set(b"X-Forwarded-Proto", proto)
            if asked_host is not None:
                headers.set(b"X-Forwarded-Host", asked_host)
            else:
                headers.remove(b"x-forwarded-host")
        elif self._forwarded == "forwarded":
            # RFC 7239 section 4: IPv6 addresses are quoted and bracketed.
            node = b'"[%b]"' % client if b":" in client else client
            element = b"for=" + node + b";proto=" + proto
            if asked_host is not None and _is_token(asked_host):
                element += b";host=" + asked_host
            elif asked_host is not None:
                element += b';host="' + asked_host.replace(b'"', b"") + b'"'
            previous = b", ".join(headers.get_all(b"forwarded"))
            headers.set(b"Forwarded", previous + b", " + element if previous else element)
        return headers

    async def _forward(self, request: Request) -> bytes | None:
        url = self.upstream_url(request)
        headers = self.request_headers(request)
        body: AsyncIterator[bytes] | None = None
        if b"content-length" in request.headers or b"transfer-encoding" in request.headers:
            body = request.stream()
            length = request.headers.get(b"content-length")
            if length is not None:
                headers.set(b"Content-Length", length)
        try:
            response = await self.client.request(
                request.method, url, headers=headers, body=body, follow_redirects=False
            )
        except CancelledError:
            raise
        except TimeoutError:
            _log.info("%s: the upstream %s did not answer in time", request.request_line, url)
            return self._error(request, 504, "The upstream server did not answer in time.")
        except (HTTPClientError, OSError, ValueError) as exc:
            if isinstance(exc, InvalidRequestError):
                reason = "The request cannot be forwarded."
            else:
                reason = "The upstream server could not be reached."
            _log.info("%s: forwarding to %s failed: %r", request.request_line, url, exc)
            return self._error(request, 502, reason)
        try:
            return await self._relay(request, response)
        finally:
            response.close()

    async def _relay(self, request: Request, response: Response) -> bytes | None:
        if request.finished:
            return None
        if not 200 <= response.code <= 599:
            return self._error(
                request, 502, "The upstream server answered with an unusable status."
            )
        try:
            request.set_response_code(response.code, response.phrase or None)
        except ValueError:
            request.set_response_code(response.code)
        dropped = hop_by_hop_fields(response.headers)
        out = request.response_headers
        for name, value in response.headers.raw:
            # Date and Server are this server's own (it writes them).
            if name.lower() not in dropped and name.lower() not in (b"date", b"server"):
                out.add(name, value)
        if self._via is not None:
            version = response.version.removeprefix("HTTP/").encode("ascii")
            out.add(b"Via", b"%b %b" % (version, self._via))
        if request.method == "HEAD":
            request.finish()
            return None
        pieces = typing.cast(AsyncGenerator[bytes, None], response.iter_bytes())
        try:
            async for piece in pieces:
                request.write(piece)
                # Read the upstream only as fast as the client takes it.
                await request.drained()
        except CancelledError:
            raise
        except (HTTPClientError, OSError) as exc:
            if _gone(request):
                return None
            # Part of the body went out: only cutting the connection tells
            # the client the response is incomplete.
            _log.info("%s: the upstream body broke off: %r", request.request_line, exc)
            request.abort()
            return None
        finally:
            await pieces.aclose()
        if not _gone(request):
            request.finish()
        return None

    @staticmethod
    def _error(request: Request, code: int, detail: str) -> bytes | None:
        # The error page, for the server to send (None once it is too late).
        if request.finished or request.started:
            return None
        return render_error(request, code, detail)


def _gone(request: Request) -> bool:
    # Whether the response is over (finished, or the client went away); a
    # function, so the check is made again after each wait.
    return request.finished


def _client_host(request: Request) -> bytes:
    # The client's address as the forwarding fields write it.
    address = request.client
    if isinstance(address, IPv4Address | IPv6Address):
        return address.host.encode("ascii")
    # RFC 7239 section 6.3: an unknown node.
    return b"unknown"


_TOKEN = frozenset(
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)


def _is_token(value: bytes) -> bool:
    # RFC 9110 section 5.6.2.
    return bool(value) and all(c in _TOKEN for c in value)
