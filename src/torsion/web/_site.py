"""``Site``: the HTTP server's protocol factory, and how a request is served.

A site holds the root of the resource tree, the server's limits and its
clock. For each request the connection hands it, it walks the tree by the
path's segments, calls the resource found, and turns what the handler gives
back (bytes, a Deferred, a coroutine, an exception) into the response.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import Callable, Coroutine
from typing import Any

from torsion.defer import Deferred, ensure_deferred
from torsion.internet import Address, Clock
from torsion.web._channel import HTTPChannel
from torsion.web._http11 import DateCache, HTTPProtocolError, ServerLimits, status_line
from torsion.web._request import Request
from torsion.web._resource import RenderResult, Resource, error_page, render_error

__all__ = ["Site", "combined_log_line"]

_log = logging.getLogger("torsion.web")

# Looked for as byte values in paths: ``bytes in bytes`` costs a raised
# and cleared TypeError each time.
_DOT = ord(".")
_PERCENT = ord("%")

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class Site:
    """An HTTP/1.1 and HTTP/2 server for a tree of resources: the protocol factory.

    Pass it where a protocol factory goes: ``reactor.listen_tcp(8080,
    site)``, ``listen_tls``, a server endpoint, or a ``MemoryReactor``.
    HTTP/2 is spoken on a TLS connection whose ALPN chose ``h2`` (offer
    it: ``ServerTLS(..., alpn=("h2", "http/1.1"))`` or ``alpn=h2,http/1.1``
    in a ``tls:`` endpoint string), and on a cleartext one that opens with
    the HTTP/2 preface (prior knowledge).

    Args:
        root: The resource at path ``/``.
        reactor: The clock for the timeouts (the reactor, or a test's
            ``Clock``).
        limits: The bounds and timeouts of each connection.
        server: The ``Server`` field sent with each response ("" for none).
        access_log: A logger told one line per request, in the combined log
            format, at INFO; or a function called with each finished request
            (for another format); None for no access log.
        wall_clock: The time of day, for ``Date`` and the access log.
        http2: Whether to speak HTTP/2 where the client asks for it.

    Attributes:
        root: The resource at path ``/``.
        reactor: The clock of the timeouts.
        limits: The bounds and timeouts of each connection.
        http2: Whether HTTP/2 is spoken where the client asks for it.
    """

    def __init__(
        self,
        root: Resource,
        *,
        reactor: Clock,
        limits: ServerLimits | None = None,
        server: str = "torsion",
        access_log: logging.Logger | Callable[[Request], object] | None = None,
        wall_clock: Callable[[], float] = time.time,
        http2: bool = True,
    ) -> None:
        """Make a site serving ``root``."""
        self.root = root
        self.http2 = http2
        self.reactor = reactor
        self.limits = limits if limits is not None else ServerLimits()
        self.access_log = access_log
        self._wall_clock = wall_clock
        self._dates = DateCache(server.encode("latin-1"), wall_clock)

    def __call__(self, address: Address) -> HTTPChannel:
        """Make the protocol for a new connection from ``address``."""
        return HTTPChannel(self)

    # -- serving -----------------------------------------------------------

    def resource_for(self, request: Request) -> Resource | None:
        """Walk the tree along ``request``'s path; None for a path refused.

        The path is split on ``/`` before its segments are percent-decoded
        (so ``%2F`` cannot make a segment), ``.`` and ``..`` segments are
        resolved first and never climb above the root (RFC 3986 section
        5.2.4), and a segment that decodes to ``.``, ``..``, or holds ``/``,
        NUL or bytes that are not UTF-8 makes the path refused (400).
        ``request.prepath`` and ``request.postpath`` are set along the way.

        Args:
            request: The request being served.

        Returns:
            The resource that renders the request, or None for 400.
        """
        path = request.path
        # (The root's own path needs no splitting.)
        segments = [""] if path == b"/" else _segments(path)
        if segments is None:
            return None
        resource = self.root
        prepath: list[str] = []
        request.prepath = prepath
        if resource.is_leaf:
            request.postpath = segments
            return resource
        count = len(segments)
        index = 0
        while index < count and not resource.is_leaf:
            segment = segments[index]
            index += 1
            prepath.append(segment)
            resource = resource.get_child(segment, request)
        # (The list is this walk's own: the whole of it needs no copy.)
        request.postpath = segments[index:] if index else segments
        return resource

    def _render(self, request: Request) -> None:
        # Called by the connection when it is the request's turn.
        result: RenderResult
        try:
            if request.path[:1] != b"/":
                request.prepath = []
                request.postpath = []
                result = self._render_server_wide(request)
            else:
                resource = self.resource_for(request)
                if resource is None:
                    result = render_error(request, 400, "The path cannot be served.")
                else:
                    result = resource.render(request)
        except Exception as exc:
            self._failed(request, exc)
            return
        if type(result) is bytes and not request._finished:
            request._finish_with(result)
        elif result is not None:
            self._result(request, result)

    def _render_server_wide(self, request: Request) -> bytes:
        # Targets that name no resource: "*" (RFC 9110 section 7.1, for
        # OPTIONS only) and CONNECT's authority (no tunnels are offered).
        if request.path == b"*" and request._method == b"OPTIONS":
            request.set_response_code(204)
            return b""
        if request._method == b"CONNECT":
            request.response_headers.set(b"Allow", self.root._allow)
            return render_error(request, 405, "This server opens no tunnels.")
        return render_error(request, 400, "The target names no resource.")

    def _finish(self, request: Request, body: bytes) -> None:
        if request._finished:
            if request._lost is None:
                self._failed(request, RuntimeError("the handler finished and returned a body"))
            return
        request._finish_with(body)

    def _result(self, request: Request, result: object) -> None:
        if type(result) is bytes:
            self._finish(request, result)
            return
        if result is None:
            return
        if isinstance(result, Deferred | Coroutine):
            d: Deferred[Any] = ensure_deferred(result)
            d.add_callbacks(
                lambda value: self._settled(request, value),
                lambda exc: self._failed(request, exc),
            )
            return
        kind = "str: encode it" if isinstance(result, str) else type(result).__name__
        self._failed(request, TypeError(f"a handler returned {kind}, not bytes or None"))

    def _settled(self, request: Request, value: object) -> None:
        if isinstance(value, Deferred | Coroutine):
            self._failed(request, TypeError("a handler's result gave another awaitable"))
        else:
            self._result(request, value)

    def _failed(self, request: Request, exc: BaseException) -> None:
        # One report per failure; the client is told nothing of it.
        if request._lost is not None:
            _log.debug("%s: stopped after the connection was lost: %r", request.request_line, exc)
            return
        if isinstance(exc, HTTPProtocolError) and not request._started:
            # A request the handler found malformed: its error page, no trace.
            request._response_headers = None
            request._finish_with(render_error(request, exc.status))
            return
        _log.error("Error rendering %s", request.request_line, exc_info=exc)
        if request._started:
            # Half a response is out: only closing tells the client.
            request.abort()
            return
        request._response_headers = None
        body = render_error(request, 500)
        if request._finished:
            return
        request._finish_with(body)

    def _log_access(self, request: Request) -> None:
        log = self.access_log
        if isinstance(log, logging.Logger):
            if log.isEnabledFor(logging.INFO):
                log.info("%s", combined_log_line(request, self._wall_clock()))
        elif log is not None:
            try:
                log(request)
            except Exception:
                _log.exception("The access log hook failed for %s", request.request_line)

    def _error_response(self, status: int, reason: str) -> bytes:
        # A whole response for a request the parser refused; it ends the
        # connection. The reason is logged, never sent.
        _log.debug("refused a request with %d: %s", status, reason)
        body = error_page(status)
        return b"".join(
            (
                status_line(status),
                self._dates.lines(),
                b"Content-Type: text/html; charset=utf-8\r\n",
                b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body),
                body,
            )
        )


def _segments(path: bytes) -> list[str] | None:
    # The decoded path segments of an origin-form path, or None if refused.
    if path == b"/":
        return [""]
    raw = path[1:].split(b"/")
    if _DOT in path:
        resolved: list[bytes] = []
        for segment in raw:
            if segment == b"..":
                if resolved:
                    resolved.pop()
            elif segment != b".":
                resolved.append(segment)
        if raw[-1] in (b".", b".."):
            # "/a/.." names the directory: keep the trailing slash.
            resolved.append(b"")
        raw = resolved or [b""]
    if _PERCENT not in path:
        try:
            return [segment.decode("utf-8") for segment in raw]
        except UnicodeDecodeError:
            return None
    segments = []
    for segment in raw:
        try:
            text = urllib.parse.unquote_to_bytes(segment).decode("utf-8")
        except UnicodeDecodeError:
            return None
        if text in (".", "..") or "/" in text or "\x00" in text:
            return None
        segments.append(text)
    return segments


def _log_field(text: str) -> str:
    # Quotes and control characters escaped, so one request is one line.
    escaped = text.encode("unicode_escape").decode("ascii")
    return escaped.replace('"', '\\"')


def combined_log_line(request: Request, when: float) -> str:
    """The access log line of a finished request, in the combined log format.

    ``client - - [date] "request line" status bytes "referer" "user agent"``,
    with what the client sent escaped so that it cannot forge lines.

    Args:
        request: The finished request.
        when: The time of day (seconds since the epoch).

    Returns:
        The line, without its end.
    """
    tm = time.gmtime(when)
    date = (
        f"{tm.tm_mday:02d}/{_MONTHS[tm.tm_mon - 1]}/{tm.tm_year}:"
        f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} +0000"
    )
    try:
        client = str(getattr(request.client, "host", "-"))
    except Exception:
        client = "-"
    referer = request.headers.get_str("referer", "-") or "-"
    agent = request.headers.get_str("user-agent", "-") or "-"
    sent = str(request._sent) if request._sent else "-"
    return (
        f'{client} - - [{date}] "{_log_field(request.request_line)}" {request.code} {sent} '
        f'"{_log_field(referer)}" "{_log_field(agent)}"'
    )
