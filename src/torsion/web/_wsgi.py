"""``WSGIResource``: a PEP 3333 application published in the resource tree.

A WSGI application is synchronous: it blocks while it reads the request
body and while it produces the response. It therefore runs in a worker
thread (the reactor's pool, or one of its own), never on the loop. Every
contact with the connection goes back to the loop's thread: reading a
chunk of the body, writing a chunk of the response. A write waits there
until the connection's write buffer has room, so an application producing
faster than the client reads is held (its thread blocks), and memory stays
bounded by the transport's high-water mark.

Also here: ``load_app``, which finds an application (WSGI or ASGI) from a
``package.module:attribute`` string, as the ``torsion web --wsgi`` and
``--asgi`` options name them.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, TypeVar
from wsgiref.types import WSGIApplication, WSGIEnvironment

from torsion.defer import Deferred
from torsion.errors import TorsionError
from torsion.internet import IPv4Address, IPv6Address, ThreadPool, ThreadRunner
from torsion.internet import blocking_call_from_thread as _blocking_call
from torsion.web._headers import validate_header_name, validate_header_value
from torsion.web._request import Request, ResponseStateError
from torsion.web._resource import RenderResult, Resource

__all__ = ["AppLoadError", "WSGIResource", "load_app"]

T = TypeVar("T")

_errors_log = logging.getLogger("torsion.web.wsgi")

_ExcInfo = tuple[type[BaseException], BaseException, TracebackType]
_OptExcInfo = _ExcInfo | tuple[None, None, None]

# Fields that reach the application as CONTENT_TYPE and CONTENT_LENGTH, not
# with the HTTP_ prefix (PEP 3333, "environ Variables").
_UNPREFIXED = frozenset({"CONTENT_TYPE", "CONTENT_LENGTH"})


class AppLoadError(TorsionError, ValueError):
    """An application named by ``module:attribute`` could not be loaded.

    The message says which part failed: the spec's form, the import (the
    cause is chained), or the attribute.
    """


def load_app(spec: str, *, app_dir: str | None = None) -> Any:
    """Import the object that ``spec`` names, as ``package.module:attribute``.

    The attribute may be dotted (``app:factory.wsgi``). Nothing is called:
    the object is returned as it is found.

    Args:
        spec: ``package.module:attribute``.
        app_dir: A directory to import from first (put at the front of
            ``sys.path`` if it is not there), such as the directory the
            command was run in; None to use ``sys.path`` as it is.

    Returns:
        The object found.

    Raises:
        AppLoadError: ``spec`` is not of that form, the module cannot be
            imported (or raised while it was), or it has no such attribute.
    """
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise AppLoadError(f"{spec!r} is not of the form package.module:attribute")
    if app_dir is not None and app_dir not in sys.path:
        sys.path.insert(0, app_dir)
        # Finders remember what directories held: let them look again.
        importlib.invalidate_caches()
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppLoadError(f"cannot import {module_name!r} (for {spec!r}): {exc}") from exc
    except Exception as exc:
        # The module itself failed: its error is the cause, traceback and all.
        raise AppLoadError(f"importing {module_name!r} (for {spec!r}) raised {exc!r}") from exc
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise AppLoadError(
                f"{spec!r}: {module_name!r} has no attribute {attribute!r}"
            ) from None
    return found


class WSGIResource(Resource):
    """A leaf resource that serves every request below it with a WSGI app.

    ``SCRIPT_NAME`` is where the resource sits in the tree (the path walked
    to reach it) and ``PATH_INFO`` the rest of the path, both decoded as PEP
    3333 asks (the path's bytes, percent-decoded, as latin-1 text).
    Request header fields become ``HTTP_*`` variables, except those whose
    name holds an underscore: the variable would be the same as for the
    field spelled with a hyphen, and a client could pass one off as the
    other (a proxy in front may have vetted only the hyphenated one).

    The application runs in a worker thread. ``wsgi.input`` is a blocking
    file-like object reading the request body as it arrives (reading from
    the client pauses while chunks wait, so the body is never held whole
    unless the application reads it whole; the server's ``max_body``
    bounds it). Response chunks are handed to the loop's thread one by one,
    and the application's thread waits while the connection's write buffer
    is full. The status and headers go out with the first non-empty chunk;
    a response returned as a list or tuple is sent in one write with its
    ``Content-Length``. The iterable's ``close()`` is always called.

    An exception before anything was sent becomes a 500 page (the error is
    logged, not shown); after, the connection is aborted, the only way to
    tell the client the response is cut. A client that goes away makes the
    application's next write raise ``ConnectionResetError``, which ends the
    iteration (and calls ``close()``).

    Args:
        app: The WSGI application.
        reactor: The reactor, for its threads (``call_from_thread``; and
            its pool, unless ``thread_pool`` is given).
        thread_pool: A pool of its own for the application (so that it
            cannot take every worker of the reactor's), or None for the
            reactor's. Whoever made it stops it.
    """

    is_leaf = True

    def __init__(
        self,
        app: WSGIApplication,
        *,
        reactor: ThreadRunner,
        thread_pool: ThreadPool | None = None,
    ) -> None:
        """Publish ``app``."""
        super().__init__()
        self.app = app
        self._reactor = reactor
        self._pool = thread_pool

    def render(self, request: Request) -> RenderResult:
        """Serve ``request`` with the application, whatever its method."""
        return self._serve(request)

    async def _serve(self, request: Request) -> bytes | None:
        response = _Response(self.app, request, self._reactor)
        request.notify_finish().add_errback(response.connection_lost)
        environ = self._environ(request, response)
        body = await self._in_thread(response.run, environ)
        # Back on the loop's thread.
        if response.lost is not None:
            return None
        if not request.started:
            response.send_head()
            if body:
                # The whole body at once: the site sends it with its length.
                return body
        request.finish()
        return None

    def _in_thread(self, f: Callable[..., T], /, *args: Any) -> Deferred[T]:
        pool = self._pool
        if pool is None:
            return self._reactor.defer_to_thread(f, *args)
        d: Deferred[T] = Deferred()
        reactor = self._reactor

        def deliver(succeeded: bool, result: Any) -> None:
            if succeeded:
                d.callback(result)
            else:
                d.errback(result)

        def on_result(succeeded: bool, result: Any) -> None:
            reactor.call_from_thread(deliver, succeeded, result)

        pool.call_in_thread_with_callback(on_result, f, *args)
        return d

    def _environ(self, request: Request, response: _Response) -> WSGIEnvironment:
        # The PEP 3333 environ of a request whose tree walk is done.
        server_name, server_port = _host_and_port(request.host, request.is_secure)
        client = request.client
        if isinstance(client, IPv4Address | IPv6Address):
            remote_addr, remote_port = client.host, str(client.port)
        else:
            # A Unix socket's client has no address to give.
            remote_addr = remote_port = ""
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.method,
            "SCRIPT_NAME": "".join("/" + _wsgi_str(s) for s in request.prepath),
            "PATH_INFO": "".join("/" + _wsgi_str(s) for s in request.postpath),
            "QUERY_STRING": request.query.decode("latin-1"),
            "SERVER_NAME": server_name,
            "SERVER_PORT": server_port,
            "SERVER_PROTOCOL": request.version,
            "REMOTE_ADDR": remote_addr,
            "REMOTE_PORT": remote_port,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https" if request.is_secure else "http",
            "wsgi.input": _InputStream(response),
            "wsgi.errors": _ErrorStream(),
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            # Reading wsgi.input gives b"" at the end of the body, whatever
            # its framing (chunked included): applications may read to it.
            "wsgi.input_terminated": True,
        }
        for raw_name, raw_value in request.headers.raw:
            name = raw_name.decode("latin-1")
            if "_" in name:
                continue
            key = name.upper().replace("-", "_")
            value = raw_value.decode("latin-1")
            if key not in _UNPREFIXED:
                key = "HTTP_" + key
            previous = environ.get(key)
            if previous is None:
                environ[key] = value
            else:
                # RFC 9110 section 5.3 combines with commas; Cookie, with
                # semicolons (RFC 6265 section 5.4).
                separator = "; " if key == "HTTP_COOKIE" else ", "
                environ[key] = previous + separator + value
        return environ


class _Response:
    """One request's response as the application's thread builds it.

    ``run``, ``start_response`` and ``write`` run in the worker thread;
    ``deliver``, ``send_head`` and ``connection_lost`` on the loop's.
    """

    def __init__(self, app: WSGIApplication, request: Request, reactor: ThreadRunner) -> None:
        self._app = app
        self._request = request
        self._reactor = reactor
        self._code = 0
        self._phrase = ""
        self._headers: list[tuple[str, str]] | None = None
        self._sent = False
        self.lost: BaseException | None = None

    # -- the worker thread ---------------------------------------------------

    def run(self, environ: WSGIEnvironment) -> bytes:
        # Call the application and send what it gives; the bytes returned
        # are a whole body still to send (headers not sent yet), or b"".
        result = self._app(environ, self.start_response)
        try:
            if not self._sent and type(result) in (list, tuple):
                chunks = list(result)
                for chunk in chunks:
                    _check_bytes(chunk)
                self._check_started()
                return b"".join(chunks)
            for chunk in result:
                self.write(chunk)
            self._check_started()
            return b""
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    def start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: _OptExcInfo | None = None,
        /,
    ) -> Callable[[bytes], object]:
        if exc_info is not None and exc_info[1] is not None:
            try:
                if self._sent:
                    # PEP 3333: too late to change the response: re-raise.
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                # Break the frame -> traceback -> frame cycle.
                exc_info = None
        elif self._headers is not None:
            raise ResponseStateError("start_response() called again without exc_info")
        self._code, self._phrase = _parse_status(status)
        self._headers = _check_headers(headers)
        return self.write

    def write(self, data: bytes) -> None:
        _check_bytes(data)
        self._check_started()
        if not data:
            return
        self._sent = True
        _blocking_call(self._reactor, self.deliver, data)

    def _check_started(self) -> None:
        if self._headers is None:
            raise ResponseStateError("the application sent a body before start_response()")

    # -- the loop's thread ---------------------------------------------------

    def deliver(self, data: bytes) -> Deferred[None]:
        if self.lost is not None:
            raise ConnectionResetError("the client has gone")
        request = self._request
        if not request.started:
            self.send_head()
        request.write(data)
        return request.drained()

    def send_head(self) -> None:
        request = self._request
        request.set_response_code(self._code, self._phrase or None)
        response_headers = request.response_headers
        for name, value in self._headers or ():
            response_headers.add(name, value)

    def connection_lost(self, exc: BaseException) -> None:
        self.lost = exc


class _InputStream:
    """``wsgi.input``: the request body, read from the application's thread.

    Each chunk is fetched on the loop's thread (``Request.read``); what the
    application has not asked for yet stays in the request, where it pauses
    reading from the client past the server's body buffer.
    """

    def __init__(self, response: _Response) -> None:
        self._response = response
        self._buffer = bytearray()
        self._ended = False

    def _fill(self) -> bool:
        # One more chunk into the buffer; False at the end of the body.
        response = self._response
        if self._ended:
            return False
        chunk: bytes = _blocking_call(response._reactor, response._request.read)
        if not chunk:
            self._ended = True
            return False
        self._buffer += chunk
        return True

    def _take(self, size: int) -> bytes:
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def read(self, size: int | None = -1, /) -> bytes:
        """Read ``size`` bytes (fewer only at the end), or to the end if negative."""
        if size is None or size < 0:
            while self._fill():
                pass
            return self._take(len(self._buffer))
        while len(self._buffer) < size and self._fill():
            pass
        return self._take(size)

    def readline(self, size: int | None = -1, /) -> bytes:
        """Read one line (with its end of line), at most ``size`` bytes if not negative."""
        limit = -1 if size is None else size
        scanned = 0
        while True:
            index = self._buffer.find(b"\n", scanned)
            if index >= 0:
                end = index + 1
                break
            scanned = len(self._buffer)
            if 0 <= limit <= scanned or not self._fill():
                end = scanned
                break
        if limit >= 0:
            end = min(end, limit)
        return self._take(end)

    def readlines(self, hint: int = -1, /) -> list[bytes]:
        """Read lines to the end, or until they total at least ``hint`` bytes."""
        lines = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        """Iterate over the remaining lines."""
        while line := self.readline():
            yield line


class _ErrorStream:
    """``wsgi.errors``: text the application reports, logged line by line."""

    def __init__(self) -> None:
        self._partial = ""

    def write(self, text: str, /) -> None:
        """Log each complete line of ``text`` at ERROR."""
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            _errors_log.error("%s", line)

    def writelines(self, lines: Iterable[str], /) -> None:
        """Write each of ``lines``."""
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Log a line still incomplete."""
        if self._partial:
            _errors_log.error("%s", self._partial)
            self._partial = ""


def _wsgi_str(segment: str) -> str:
    # PEP 3333's "bytes as text": the segment's bytes, one character each.
    return segment.encode("utf-8").decode("latin-1") if not segment.isascii() else segment


def _host_and_port(address: object, secure: bool) -> tuple[str, str]:
    if isinstance(address, IPv4Address | IPv6Address):
        return address.host, str(address.port)
    # A Unix socket (or another transport) has no host or port, and PEP 3333
    # requires both: the scheme's defaults.
    return "localhost", "443" if secure else "80"


def _check_bytes(chunk: object) -> None:
    if type(chunk) is not bytes:
        raise TypeError(f"a WSGI application gave {type(chunk).__name__}, not bytes")


def _parse_status(status: str) -> tuple[int, str]:
    # "200 OK": three digits, a space, a reason phrase (PEP 3333).
    if type(status) is not str:
        raise TypeError(f"the WSGI status must be str, not {type(status).__name__}")
    code, _, phrase = status.partition(" ")
    if len(code) != 3 or not code.isdigit():
        raise ValueError(f"the WSGI status {status!r} does not start with a 3-digit code")
    return int(code), phrase


def _check_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    # Refused here, in the application's thread, where the error belongs:
    # a name or value with CR or LF would split the response.
    if type(headers) is not list:
        raise TypeError(f"WSGI response headers must be a list, not {type(headers).__name__}")
    for pair in headers:
        if type(pair) is not tuple or len(pair) != 2:
            raise TypeError(f"a WSGI response header must be a (name, value) tuple: {pair!r}")
        name, value = pair
        if type(name) is not str or type(value) is not str:
            raise TypeError(f"WSGI response header names and values are str: {pair!r}")
        validate_header_name(name.encode("latin-1"))
        validate_header_value(value.encode("latin-1"))
    return headers
