"""``Request``: one HTTP request as a resource sees it, and its response.

The request carries what the client sent (method, target, headers, body)
and is also where the resource writes its response. It is made by the
server connection once a request's head has been read; the body arrives
afterwards, while the resource may already be running.
"""

from __future__ import annotations

import asyncio
import html
import typing
import urllib.parse
from collections import deque
from collections.abc import AsyncIterator

from torsion.defer import Deferred, fail, succeed
from torsion.errors import TorsionError
from torsion.internet import Address, send_file
from torsion.web._conditional import ETag, Precondition, check_preconditions, format_http_date
from torsion.web._cookies import SameSite, format_set_cookie, parse_cookie_header
from torsion.web._forms import (
    FormError,
    FormTooLargeError,
    MultipartForm,
    MultipartParser,
    multipart_boundary,
    parse_urlencoded,
)
from torsion.web._headers import Headers, validate_header_value
from torsion.web._http11 import HTTPProtocolError, status_line

if typing.TYPE_CHECKING:
    from torsion.web._channel import HTTPChannel
    from torsion.web._sessions import Session, SessionStore

__all__ = ["Request", "ResponseStateError"]

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_LAST_CHUNK = b"0\r\n\r\n"
_OK = status_line(200)
_VERSIONS = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0"}
# The body chunks of a request without a body (never appended to).
_NO_CHUNKS: deque[bytes] = deque(maxlen=0)
# Responses to these carry no body, whatever the method (RFC 9110 6.4.1).
_NO_BODY_CODES = frozenset({204, 304})
_HEADERS_WE_FRAME = (b"content-length", b"transfer-encoding", b"connection")
# Characters a Location keeps as they are; everything else is
# percent-encoded, CR and LF included (header injection, CVE-2019-12387).
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~-._"
# Bytes per read when a file is sent without zero-copy.
_FILE_CHUNK = 64 * 1024
# Bounds on what ``cookies`` reads from the request (all Cookie lines
# together): more pairs are dropped, a longer field is ignored whole.
_MAX_COOKIES = 64
_MAX_COOKIE_HEADER = 8192
_FORM_TYPES = (b"application/x-www-form-urlencoded", b"multipart/form-data")
# Looked for as a byte value: ``bytes in bytes`` costs a raised and
# cleared TypeError each time.
_QUESTION_MARK = ord("?")


class ResponseStateError(TorsionError, RuntimeError):
    """The response was used out of turn.

    Written after ``finish()``, finished twice, or its status changed after it
    was sent.
    """


class Request:
    """One HTTP request and the response to it.

    Lifecycle: the connection makes the request once its head is read and,
    when the request's turn comes (responses go out in the order requests
    came), walks the resource tree and calls the resource's handler. The
    body, if any, may still be arriving: read it with ``await
    request.body()`` (whole, bounded by the server's ``max_body``) or chunk
    by chunk with ``read()`` / ``async for chunk in request.stream()``;
    reading from the client pauses while chunks are left unread. A client
    that sent ``Expect: 100-continue`` is told to go on only when the body
    is first read.

    The response is written through the same object: ``set_response_code``
    and ``response_headers`` first, then either the handler returns the
    whole body as ``bytes`` (sent with ``Content-Length``, in one write), or
    it calls ``write(data)`` any number of times (sent chunked on HTTP/1.1,
    or delimited by the close on HTTP/1.0, unless the handler set
    ``Content-Length`` itself) and then ``finish()``. ``await
    request.drained()`` waits while the connection's write buffer is full;
    ``await request.send_file(file, offset=..., count=...)`` sends part of a
    file, zero-copy where the connection allows it. ``abort()`` ends a
    response that cannot be completed.
    The status and headers go out with the first byte of the body, so they
    cannot change after that. For HEAD, the body is dropped and the headers
    are those of GET.

    ``notify_finish()`` fires when the response is finished, or fails when
    the connection is lost first (so a long render can stop); after a lost
    connection, writes are dropped.

    Helpers for what most handlers need: ``request.cookies`` (the
    ``Cookie`` fields, parsed once and bounded) and ``add_cookie(name,
    value, ...)`` (a ``Set-Cookie``, ``Secure`` by default on TLS); ``await
    request.form()`` (a urlencoded or ``multipart/form-data`` body, parsed
    as it streams in, files removed when the response ends; a bad form
    answers 400, a too large one 413); ``request.session(store)``,
    ``rotate_session(store)`` and ``expire_session(store)`` (a
    ``SessionStore`` session found by its cookie, the cookie sent when it
    is made, rotated or ended); and ``check_preconditions(etag=...,
    last_modified=...)``, which sets the validators and, for a matching
    ``If-None-Match`` or ``If-Modified-Since`` (or a failed ``If-Match``),
    the 304 or 412 status, so that any resource answers conditional
    requests cheaply.

    Attributes:
        uri: The request target exactly as sent (``/a%20b?x=1``).
        path: The target's path, still percent-encoded (``/a%20b``).
        query: The target's query, without the ``?`` (``x=1``).
        version: ``"HTTP/1.1"``, ``"HTTP/1.0"`` or ``"HTTP/2"`` (an
            ``H2Request``, which frames the same response for HTTP/2).
        prepath: Path segments (decoded) already walked through the tree.
        postpath: Path segments (decoded) left below the rendering resource.
        code: The response status code (200 until set).
        keep_alive: Whether the connection stays open after this response.
    """

    # Defaults at class level: a request sets only what differs, which keeps
    # making one (once per request) cheap.
    code = 200
    query = b""
    prepath: list[str]
    postpath: list[str]
    _phrase: bytes | None = None
    _response_headers: Headers | None = None
    _headers: Headers | None = None
    _args: dict[str, list[str]] | None = None
    _head_only = False
    _started = False
    _finished = False
    _chunked = False
    _declared_length = -1
    _sent = 0
    _lost: BaseException | None = None
    _finish_waiters: list[Deferred[None]] | None = None
    _expect_continue = False
    _continue_sent = False
    _body_complete = True
    _body_chunks: deque[bytes] = _NO_CHUNKS
    _body_buffered = 0
    _body_waiter: Deferred[bytes] | None = None
    _collecting: Deferred[bytes] | None = None
    _body_error: BaseException | None = None
    _discarding = False
    _upgrade = False
    # Whether the body goes straight onto the transport (not framed), so
    # that a file can be sent by the kernel.
    _zero_copy = True
    _cookies: dict[str, str] | None = None
    _form: MultipartForm | None = None
    _session: tuple[SessionStore, Session] | None = None

    def __init__(
        self,
        channel: HTTPChannel,
        method: bytes,
        uri: bytes,
        version: str,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
        expect_continue: bool = False,
        has_body: bool = False,
    ) -> None:
        """Made by the connection; resources never make requests."""
        self._channel = channel
        self._method = method
        self.uri = uri
        if _QUESTION_MARK in uri:
            path, _, query = uri.partition(b"?")
            self.query = query.partition(b"#")[0]
        else:
            path = uri
        if path[:1] != b"/" and path != b"*":
            # Absolute form (RFC 9112 section 3.2.2) keeps its path only;
            # authority form (CONNECT's) has none.
            path = (urllib.parse.urlsplit(uri).path or b"/") if b"://" in uri else b""
        self.path = path
        self.version = _VERSIONS.get(version) or "HTTP/" + version
        self._raw_headers = headers
        self.keep_alive = keep_alive
        # Read while every response is written: an instance's own
        # attributes are found faster than the class's defaults (whose
        # lookup the interpreter does not cache).
        self.code = 200
        self._started = self._finished = False
        self._response_headers = None
        self._finish_waiters = None
        self._head_only = method == b"HEAD"
        self._body_complete = not has_body
        if expect_continue:
            self._expect_continue = True
        if has_body:
            self._body_chunks = deque()

    @property
    def method(self) -> str:
        """The request method, e.g. ``"GET"``."""
        return self._method.decode("ascii")

    @property
    def headers(self) -> Headers:
        """The request's header fields."""
        headers = self._headers
        if headers is None:
            headers = self._headers = Headers.from_raw(self._raw_headers)
        return headers

    # -- what the client sent --------------------------------------------------

    @property
    def args(self) -> dict[str, list[str]]:
        """The query's arguments, decoded: each name maps to its values in order.

        Raises:
            HTTPProtocolError: The query holds more than 1000 fields (400).
        """
        if self._args is None:
            try:
                self._args = urllib.parse.parse_qs(
                    self.query.decode("utf-8", "replace"),
                    keep_blank_values=True,
                    max_num_fields=1000,
                )
            except ValueError:
                raise HTTPProtocolError(400, "too many query fields") from None
        return self._args

    @property
    def client(self) -> Address:
        """The address of the client (the other end of the connection)."""
        return self._channel.peer

    @property
    def host(self) -> Address:
        """The address of the server's end of the connection."""
        return self._channel.host

    @property
    def is_secure(self) -> bool:
        """Whether the request came over TLS."""
        return self._channel.transport.get_extra_info("ssl_object") is not None

    @property
    def request_line(self) -> str:
        """``METHOD target HTTP/x.y``, for logs (decoded, never for HTML unescaped)."""
        return f"{self.method} {self.uri.decode('latin-1')} {self.version}"

    # -- cookies, forms, sessions and preconditions -----------------------------

    @property
    def cookies(self) -> dict[str, str]:
        """The cookies the client sent: each name with its value.

        Read once from every ``Cookie`` field (joined with ``; ``): at most
        64 pairs, and nothing from fields longer than 8 KiB together; the
        first value of a repeated name wins (RFC 6265 section 5.4).
        """
        cookies = self._cookies
        if cookies is None:
            cookies = self._cookies = parse_cookie_header(
                self._cookie_field(), max_cookies=_MAX_COOKIES, max_size=_MAX_COOKIE_HEADER
            )
        return cookies

    def _cookie_field(self) -> bytes:
        # RFC 9113 section 8.2.3 lets HTTP/2 split Cookie into several fields.
        return b"; ".join(self.headers.get_all(b"cookie"))

    def add_cookie(
        self,
        name: str,
        value: str,
        *,
        expires: float | None = None,
        max_age: int | None = None,
        domain: str | None = None,
        path: str | None = "/",
        secure: bool | None = None,
        http_only: bool = True,
        same_site: SameSite | None = "Lax",
    ) -> None:
        """Add a ``Set-Cookie`` field to the response (RFC 6265 section 4.1).

        Args:
            name: The cookie's name, a token.
            value: Its value: printable ASCII without space, ``"``, ``,``,
                ``;`` or a backslash (encode anything else first).
            expires: When it expires, in seconds since the epoch.
            max_age: Seconds until it expires (0 deletes it).
            domain: The domain it is sent to (the host only when None).
            path: The path prefix it is sent for.
            secure: Only send it over TLS; None means so when this request
                came over TLS.
            http_only: Hide it from scripts.
            same_site: ``"Strict"``, ``"Lax"``, ``"None"`` or None.

        Raises:
            CookieError: The name, value or an attribute could inject
                another attribute or header.
            ResponseStateError: The response's headers were already sent.
        """
        if self._started:
            raise ResponseStateError("the response has started: its headers are sent")
        field = format_set_cookie(
            name,
            value,
            expires=expires,
            max_age=max_age,
            domain=domain,
            path=path,
            secure=self.is_secure if secure is None else secure,
            http_only=http_only,
            same_site=same_site,
        )
        self.response_headers.add(b"Set-Cookie", field)

    async def form(
        self,
        *,
        max_fields: int = 1000,
        max_urlencoded: int = 1024 * 1024,
        max_parts: int = 128,
        max_file_size: int | None = None,
        max_total_size: int = 64 * 1024 * 1024,
        spool_size: int = 1024 * 1024,
        spool_directory: str | None = None,
    ) -> MultipartForm:
        """Read the request body as an HTML form.

        ``application/x-www-form-urlencoded`` bodies fill ``fields`` only;
        ``multipart/form-data`` bodies (RFC 7578) are parsed as they arrive,
        a chunk at a time (reading from the client pauses while the parser
        is behind), with file parts spooled to temporary files. A request
        without a body gives an empty form. The files are removed when the
        response is finished (or the connection lost); the form is read
        once and the same object is returned on later calls.

        Args:
            max_fields: Most urlencoded fields.
            max_urlencoded: Most bytes of a urlencoded body.
            max_parts: Most multipart parts.
            max_file_size: Most bytes of one file (None: only the total cap).
            max_total_size: Most bytes of a multipart body.
            spool_size: File bytes kept in memory before going to disk.
            spool_directory: Where temporary files go (the system's default
                when None).

        Returns:
            The form's text fields and files.

        Raises:
            HTTPProtocolError: A malformed form (400), one over a limit
                (413), or a body that is not a form (415); the server
                answers with that status if the handler lets it through.
                The ``FormError`` is its ``__cause__``.
            ConnectionResetError: The connection was lost first.
        """
        if self._form is not None:
            return self._form
        content_type = self.headers.get(b"content-type")
        kind = (content_type or b"").partition(b";")[0].strip(b" \t").lower()
        if self._body_complete and not self._body_chunks and kind not in _FORM_TYPES:
            form = MultipartForm()
        elif kind == b"application/x-www-form-urlencoded":
            form = MultipartForm(await self._urlencoded(max_fields, max_urlencoded))
        elif kind == b"multipart/form-data":
            assert content_type is not None
            try:
                parser = MultipartParser(
                    multipart_boundary(content_type),
                    max_parts=max_parts,
                    max_file_size=max_file_size,
                    max_total_size=max_total_size,
                    spool_size=spool_size,
                    spool_directory=spool_directory,
                )
            except FormError as exc:
                raise HTTPProtocolError(exc.status, str(exc)) from exc
            form = await self._multipart(parser)
        else:
            raise HTTPProtocolError(415, "the request body is not a form")
        self._form = form
        # The files go when the response does, however it ends.
        self.notify_finish().add_both(lambda _: form.close())
        return form

    async def _urlencoded(self, max_fields: int, max_size: int) -> dict[str, list[str]]:
        # Read chunk by chunk so that an oversized body is refused as soon
        # as it passes the limit, not once it has all been held.
        chunks: list[bytes] = []
        size = 0
        async for chunk in self.stream():
            size += len(chunk)
            if size > max_size:
                raise HTTPProtocolError(413, "form body too large") from FormTooLargeError(
                    f"form body over {max_size} bytes"
                )
            chunks.append(chunk)
        try:
            return parse_urlencoded(b"".join(chunks), max_fields=max_fields, max_size=max_size)
        except FormError as exc:
            raise HTTPProtocolError(exc.status, str(exc)) from exc

    async def _multipart(self, parser: MultipartParser) -> MultipartForm:
        try:
            async for chunk in self.stream():
                parser.feed(chunk)
            return parser.close()
        except FormError as exc:
            raise HTTPProtocolError(exc.status, str(exc)) from exc
        except BaseException:
            # A lost connection or a cancelled handler: no files are left.
            parser.abort()
            raise

    def session(self, store: SessionStore, *, create: bool = True) -> Session | None:
        """The client's session in ``store``, made (and its cookie set) if need be.

        The session is looked up from the request's cookie; a new one sends
        its cookie (``HttpOnly``, ``SameSite=Lax``, ``Path=/``, ``Secure``
        on TLS) with this response. Later calls for the same store return
        the same session.

        Args:
            store: The sessions to look in.
            create: Make a session when the client has none.

        Returns:
            The session, or None when there is none and ``create`` is false.

        Raises:
            ResponseStateError: A session must be made but the response's
                headers were already sent.
        """
        held = self._session
        if held is not None and held[0] is store:
            return held[1]
        session = store.from_cookie_header(self._cookie_field())
        if session is None:
            if not create:
                return None
            if self._started:
                raise ResponseStateError("the response has started: no cookie can be set")
            session = store.create()
            self._set_session_cookie(store, store.cookie(session, secure=self.is_secure))
        self._session = (store, session)
        return session

    def rotate_session(self, store: SessionStore) -> Session:
        """Give the client's session a new id and send it the new cookie.

        Call it when the session's privileges change (a login), so that an
        id planted or seen before is worth nothing (session fixation).

        Args:
            store: The sessions to look in.

        Returns:
            The session (made if the client had none) under its new id.

        Raises:
            ResponseStateError: The response's headers were already sent.
        """
        if self._started:
            raise ResponseStateError("the response has started: no cookie can be set")
        session = self.session(store)
        assert session is not None
        store.rotate(session)
        self._set_session_cookie(store, store.cookie(session, secure=self.is_secure))
        return session

    def expire_session(self, store: SessionStore) -> None:
        """End the client's session in ``store`` (a logout) and clear its cookie.

        Raises:
            ResponseStateError: The response's headers were already sent.
        """
        if self._started:
            raise ResponseStateError("the response has started: no cookie can be set")
        session = self.session(store, create=False)
        if session is not None:
            store.expire(session.id)
        self._session = None
        self._set_session_cookie(store, store.expired_cookie(secure=self.is_secure))

    def _set_session_cookie(self, store: SessionStore, field: bytes) -> None:
        # One Set-Cookie for the session per response: a later one (a
        # rotation after a creation) replaces the earlier.
        headers = self.response_headers
        prefix = store.cookie_name.encode("ascii") + b"="
        kept = [v for v in headers.get_all(b"set-cookie") if not v.startswith(prefix)]
        headers.remove(b"set-cookie")
        for value in kept:
            headers.add(b"Set-Cookie", value)
        headers.add(b"Set-Cookie", field)

    def check_preconditions(
        self,
        *,
        etag: ETag | None = None,
        last_modified: float | None = None,
        exists: bool = True,
    ) -> Precondition:
        """Evaluate the request's conditional fields (RFC 9110 section 13.2.2).

        Sets the validators given as ``ETag`` and ``Last-Modified`` on the
        response, then, when the request's ``If-Match``,
        ``If-Unmodified-Since``, ``If-None-Match`` or ``If-Modified-Since``
        say so, the status to 304 or 412. The handler answers those with no
        body::

            if request.check_preconditions(etag=tag) is not Precondition.PROCEED:
                return b""

        Args:
            etag: The current representation's entity tag, if any.
            last_modified: Its modification time in seconds since the epoch.
            exists: Whether there is a current representation (for ``*``).

        Returns:
            ``PROCEED``, ``NOT_MODIFIED`` (status set to 304) or
            ``PRECONDITION_FAILED`` (status set to 412).

        Raises:
            ResponseStateError: The response has started.
        """
        if self._started:
            raise ResponseStateError("the response has started: its status is sent")
        headers = self.response_headers
        if etag is not None:
            headers.set(b"ETag", etag.format())
        if last_modified is not None:
            headers.set(b"Last-Modified", format_http_date(last_modified))
        outcome = check_preconditions(
            self._method,
            self.headers,
            etag=etag,
            last_modified=last_modified,
            exists=exists,
        )
        if outcome is not Precondition.PROCEED:
            self.code = outcome.value
            self._phrase = None
        return outcome

    # -- the request body ------------------------------------------------------

    def body(self) -> Deferred[bytes]:
        """The whole request body, once it has arrived.

        Returns:
            A Deferred (await it) of the body's bytes (``b""`` for none). It
            fails with ``HTTPProtocolError`` (413) for a body over the
            server's limit, and with ``ConnectionResetError`` if the
            connection is lost first.

        Raises:
            ResponseStateError: The body is already being read.
        """
        if self._collecting is not None or self._body_waiter is not None:
            raise ResponseStateError("the request body is already being read")
        if self._body_error is not None:
            return fail(self._body_error)
        self._maybe_continue()
        if self._body_complete:
            data = b"".join(self._body_chunks)
            self._body_chunks.clear()
            self._body_buffered = 0
            return succeed(data)
        d: Deferred[bytes] = Deferred()
        self._collecting = d
        # Collecting consumes as it goes: reading must not stay paused.
        self._channel._body_consumed(self)
        return d

    def read(self) -> Deferred[bytes]:
        """The next chunk of the request body, ``b""`` once it has ended.

        Returns:
            A Deferred (await it) of the next bytes received. It fails as
            ``body()`` does.

        Raises:
            ResponseStateError: Another read is pending.
        """
        if self._collecting is not None or self._body_waiter is not None:
            raise ResponseStateError("the request body is already being read")
        if self._body_error is not None:
            return fail(self._body_error)
        self._maybe_continue()
        chunks = self._body_chunks
        if chunks:
            data = chunks.popleft()
            self._body_buffered -= len(data)
            self._channel._body_consumed(self)
            return succeed(data)
        if self._body_complete:
            return succeed(b"")
        d: Deferred[bytes] = Deferred()
        self._body_waiter = d
        self._channel._body_consumed(self)
        return d

    async def stream(self) -> AsyncIterator[bytes]:
        """Iterate over the request body's chunks as they arrive.

        Yields:
            Each non-empty chunk of the body, in order.
        """
        while True:
            chunk = await self.read()
            if not chunk:
                return
            yield chunk

    def _maybe_continue(self) -> None:
        # RFC 9110 section 10.1.1: the 100 goes out only once the body is
        # wanted, and never after the final response has started.
        if self._expect_continue and not self._continue_sent and not self._started:
            self._continue_sent = True
            if not self._body_complete and self._lost is None:
                self._channel._write(_CONTINUE)

    def _feed_body(self, data: bytes) -> None:
        # Called by the connection with each piece of the body.
        if self._discarding:
            return
        waiter = self._body_waiter
        if waiter is not None:
            self._body_waiter = None
            waiter.callback(data)
            return
        self._body_chunks.append(data)
        self._body_buffered += len(data)

    def _end_body(self) -> None:
        self._body_complete = True
        waiter = self._body_waiter
        if waiter is not None:
            self._body_waiter = None
            waiter.callback(b"")
        collecting = self._collecting
        if collecting is not None:
            self._collecting = None
            data = b"".join(self._body_chunks)
            self._body_chunks.clear()
            self._body_buffered = 0
            collecting.callback(data)

    def _fail_body(self, exc: BaseException) -> None:
        if self._body_complete or self._body_error is not None:
            return
        self._body_error = exc
        self._body_chunks.clear()
        self._body_buffered = 0
        waiting = (self._body_waiter, self._collecting)
        self._body_waiter = self._collecting = None
        for d in waiting:
            if d is not None:
                d.errback(exc)

    # -- the response ----------------------------------------------------------

    @property
    def response_headers(self) -> Headers:
        """The response's header fields, to set before the body is written."""
        headers = self._response_headers
        if headers is None:
            headers = self._response_headers = Headers()
        return headers

    @property
    def started(self) -> bool:
        """Whether the response's status and headers have been sent."""
        return self._started

    @property
    def finished(self) -> bool:
        """Whether ``finish()`` was called (or the connection answered for us)."""
        return self._finished

    def set_response_code(self, code: int, phrase: str | None = None) -> None:
        """Set the response's status code (and, rarely, its reason phrase).

        Args:
            code: The status code, 200 to 599 (1xx are the server's own).
            phrase: A reason phrase other than the standard one.

        Raises:
            ResponseStateError: The status line was already sent.
            ValueError: The code is out of range, or the phrase holds a
                control character.
        """
        if self._started:
            raise ResponseStateError("the response has started: its status is sent")
        if not 200 <= code <= 599:
            raise ValueError(f"status code {code} is not between 200 and 599")
        self.code = code
        if phrase is None:
            self._phrase = None
            return
        encoded = phrase.encode("latin-1")
        validate_header_value(encoded)
        self._phrase = encoded

    def redirect(self, url: str, code: int = 302) -> None:
        """Answer with a redirect to ``url`` and finish the response.

        The URL is percent-encoded where it must be (so CR and LF cannot
        split the header) and escaped in the small HTML body
        (CVE-2024-41810).

        Args:
            url: Where to send the client.
            code: 301, 302, 303, 307 or 308.

        Raises:
            ValueError: ``code`` is not a redirect status.
        """
        if code not in (301, 302, 303, 307, 308):
            raise ValueError(f"{code} is not a redirect status")
        location = urllib.parse.quote(url, safe=_URL_SAFE, encoding="utf-8")
        self.set_response_code(code)
        headers = self.response_headers
        headers.set(b"Location", location)
        headers.set(b"Content-Type", b"text/html; charset=utf-8")
        escaped = html.escape(location, quote=True)
        body = (
            "<!DOCTYPE html>\n<html><head><title>Moved</title></head>"
            f'<body><a href="{escaped}">{escaped}</a></body></html>\n'
        )
        self._finish_with(body.encode("utf-8"))

    def write(self, data: bytes) -> None:
        """Send part of the response body (the status and headers first).

        Args:
            data: The next bytes of the body.

        Raises:
            ResponseStateError: The response was finished.
        """
        if self._finished:
            if self._lost is not None:
                return
            raise ResponseStateError("write() after finish()")
        if not data:
            return
        if not self._started:
            head = self._head(-1)
            if self._head_only or self.code in _NO_BODY_CODES:
                self._channel._write(head)
                return
            self._channel._write(head + self._frame(data))
            return
        if self._head_only or self.code in _NO_BODY_CODES or self._lost is not None:
            return
        self._channel._write(self._frame(data))

    def _frame(self, data: bytes) -> bytes:
        self._sent += len(data)
        if self._chunked:
            return b"%x\r\n%b\r\n" % (len(data), data)
        declared = self._declared_length
        if declared >= 0 and self._sent > declared:
            # More than the Content-Length set: the rest would be read as the
            # next response. Cut it, and end the connection after it.
            excess = self._sent - declared
            self._sent = declared
            self.keep_alive = False
            return data[: len(data) - excess]
        return data

    async def send_file(
        self, file: typing.BinaryIO, *, offset: int, count: int, chunk_size: int = _FILE_CHUNK
    ) -> int:
        """Send ``count`` bytes of ``file`` from ``offset`` as part of the body.

        The status and headers go first if they have not (with the
        ``Content-Length`` the handler set, if it did: set it for a
        response that is only the file). Where the connection allows it (a
        body that is neither chunked nor dropped for HEAD, plain TCP on the
        stdlib loop, a regular file), the kernel copies the file to the
        socket (``os.sendfile``) and no byte passes through Python;
        otherwise the file is read a chunk at a time, each chunk written
        once ``drained()`` says there is room. Nothing else may write to
        the response until this returns. Call ``finish()`` afterwards.

        Args:
            file: A file opened in binary mode (``io.BytesIO`` too).
            offset: Where in the file to start.
            count: How many bytes to send at most.
            chunk_size: Bytes per read when the file is read in chunks.

        Returns:
            How many bytes of the file were sent (fewer than ``count`` if
            the file ended first, or past a ``Content-Length`` set
            before, which then makes the connection close).

        Raises:
            ResponseStateError: The response was finished.
            ValueError: A negative ``offset`` or ``count``.
            ConnectionError: The connection was lost before the bytes went.
        """
        if offset < 0 or count < 0 or chunk_size < 1:
            raise ValueError("offset and count must be 0 or more, chunk_size 1 or more")
        if self._finished:
            if self._lost is not None:
                raise ConnectionResetError("connection closed")
            raise ResponseStateError("send_file() after finish()")
        if not self._started:
            self._send_head()
        if self._head_only or self.code in _NO_BODY_CODES:
            return 0
        if self._lost is not None:
            raise ConnectionResetError("connection closed")
        declared = self._declared_length
        if declared >= 0 and count > declared - self._sent:
            # Past the Content-Length: cut, and end the connection after.
            count = declared - self._sent
            self.keep_alive = False
        if count == 0:
            return 0
        if not self._chunked and self._zero_copy:
            # send_file itself falls back to chunks where zero-copy cannot
            # go (uvloop, TLS, in-memory transports).
            sent = await send_file(
                self._channel, file, offset=offset, count=count, chunk_size=chunk_size
            )
            self._sent += sent
            return sent
        sent = 0
        file.seek(offset)
        while sent < count:
            await self.drained()
            data = file.read(min(chunk_size, count - sent))
            if not data:
                break
            self.write(data)
            sent += len(data)
        return sent

    def _send_head(self) -> None:
        # The status and headers alone, for a body written afterwards.
        self._channel._write(self._head(-1))

    def finish(self) -> None:
        """End the response: the connection goes on to the next request.

        Raises:
            ResponseStateError: ``finish()`` was already called (unless the
                connection was lost, when it does nothing).
        """
        if self._finished:
            if self._lost is not None:
                return
            raise ResponseStateError("finish() called twice")
        if not self._started:
            headers = self._response_headers
            if self._head_only and headers is not None and b"content-length" in headers:
                # A HEAD handler that states the length GET would have.
                self._channel._write(self._head(-1))
                self._done()
                return
            self._finish_with(b"")
            return
        if self._chunked and not self._head_only and self._lost is None:
            self._channel._write(_LAST_CHUNK)
        elif 0 <= self._declared_length != self._sent and not self._head_only:
            # Fewer bytes than promised: only closing ends this response.
            self.keep_alive = False
        self._done()

    def _finish_with(self, body: bytes) -> None:
        # The whole body at once: one write, with its Content-Length.
        if self._finished:
            if self._lost is not None:
                return
            raise ResponseStateError("the response was already finished")
        if self._started:
            self.write(body)
            self.finish()
            return
        length = len(body)
        channel = self._channel
        if (
            self.code == 200
            and self._response_headers is None
            and self.keep_alive
            and self._body_complete
            and not channel._closing
            and self.version == "HTTP/1.1"
        ):
            # The common case, in one formatting and one write.
            self._started = True
            self._sent = length
            if not channel._lost:
                if self._head_only:
                    channel.transport.write(
                        b"%b%bContent-Length: %d\r\n\r\n" % (_OK, channel._date_lines(), length)
                    )
                else:
                    channel.transport.write(
                        b"%b%bContent-Length: %d\r\n\r\n%b"
                        % (_OK, channel._date_lines(), length, body)
                    )
            self._done()
            return
        head = self._head(length)
        self._sent = length
        if self._head_only or self.code in _NO_BODY_CODES or not body:
            self._channel._write(head)
        else:
            self._channel._write(head + body)
        self._done()

    def _done(self) -> None:
        self._finished = True
        if not self._body_complete:
            # The handler is done without the whole body: drop the rest.
            self._discarding = True
            self._body_chunks.clear()
            self._body_buffered = 0
        self._channel._request_done(self)
        waiters = self._finish_waiters
        if waiters:
            self._finish_waiters = None
            for d in waiters:
                d.callback(None)

    def _head(self, length: int) -> bytes:
        # The status line and header fields; ``length`` is the body's when
        # known (-1 for a body written in parts).
        self._started = True
        code = self.code
        channel = self._channel
        headers = self._response_headers
        parts = [status_line(code, self._phrase), channel._date_lines()]
        if headers is not None:
            for name, value in headers.raw:
                lowered = name.lower()
                if lowered in _HEADERS_WE_FRAME:
                    if lowered == b"content-length" and length < 0:
                        self._declared_length = _content_length(value)
                        if self._declared_length < 0:
                            continue
                    elif lowered == b"connection":
                        if b"close" in value.lower():
                            self.keep_alive = False
                        continue
                    else:
                        continue
                parts += (name, b": ", value, b"\r\n")
        if code in _NO_BODY_CODES:
            pass
        elif length >= 0:
            parts.append(b"Content-Length: %d\r\n" % length)
        elif self._declared_length >= 0:
            pass
        elif self.version == "HTTP/1.1":
            self._chunked = True
            parts.append(b"Transfer-Encoding: chunked\r\n")
        else:
            # HTTP/1.0 has no chunks: the close ends the body.
            self.keep_alive = False
        if self._expect_continue and not self._continue_sent and not self._body_complete:
            # The client waits for a 100 that will not come, and may send
            # the body anyway: only a close makes the stream unambiguous
            # (RFC 9110 section 10.1.1).
            self.keep_alive = False
        if not self.keep_alive or (
            channel._closing and len(channel._queue) <= 1 and channel._pending_error is None
        ):
            self.keep_alive = False
            parts.append(b"Connection: close\r\n\r\n")
        elif self.version == "HTTP/1.0":
            parts.append(b"Connection: keep-alive\r\n\r\n")
        else:
            parts.append(b"\r\n")
        return b"".join(parts)

    def switch_protocols(self, protocol: asyncio.Protocol, headers: Headers) -> None:
        """Answer ``101 Switching Protocols`` and give the connection to ``protocol``.

        For a request that asked to switch (``Connection: upgrade`` with
        ``Upgrade``, as a WebSocket handshake does; RFC 9110 section 7.8).
        The 101 goes out with ``headers``; the request is finished and the
        connection leaves HTTP/1.1: no more requests are read on it and its
        timers stop. Then ``protocol.connection_made(transport)``, and
        ``protocol.data_received`` with the bytes the client sent past this
        request's head, if any. From then on the connection's events
        (data, end of file, flow control, its loss) are passed on to
        ``protocol``; the HTTP channel stays the transport's protocol, so
        that whatever wraps it still sees the connection end.

        Args:
            protocol: The protocol that takes the connection over.
            headers: The fields of the 101 response (``Upgrade`` among them).

        Raises:
            ResponseStateError: The request did not ask to switch, or its
                response has started.
        """
        if not self._upgrade:
            raise ResponseStateError("the request did not ask to switch protocols")
        if self._started or self._finished:
            raise ResponseStateError("the response has started")
        self.code = 101
        self._started = True
        self._finished = True
        parts = [b"HTTP/1.1 101 Switching Protocols\r\n"]
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        parts.append(b"\r\n")
        channel = self._channel
        channel._write(b"".join(parts))
        channel._switch(self, protocol)
        waiters = self._finish_waiters
        if waiters:
            self._finish_waiters = None
            for d in waiters:
                d.callback(None)

    def abort(self) -> None:
        """Close the connection at once, without finishing the response.

        For a response that cannot be completed (a proxied or CGI body cut
        short, say): the client sees the connection end, never a short
        response it could take as whole. Queued requests on the connection
        are lost with it; ``notify_finish()`` fails. Does nothing once the
        connection is gone.
        """
        self._channel._abort()

    def drained(self) -> Deferred[None]:
        """Wait until the connection takes more writes (see ``Protocol.drained``)."""
        return self._channel.drained()

    def notify_finish(self) -> Deferred[None]:
        """A Deferred that fires when the response is finished.

        Returns:
            A Deferred firing with None once ``finish()`` was called, or
            failing with the connection's error if the connection is lost
            first.
        """
        if self._finished:
            return succeed(None) if self._lost is None else fail(self._lost)
        if self._lost is not None:
            return fail(self._lost)
        d: Deferred[None] = Deferred()
        if self._finish_waiters is None:
            self._finish_waiters = []
        self._finish_waiters.append(d)
        return d

    def _connection_lost(self, exc: BaseException) -> None:
        # The connection went before the response was done.
        self._lost = exc
        waiters = None
        if not self._finished:
            self._finished = True
            waiters = self._finish_waiters
            self._finish_waiters = None
        # Finished first: a handler woken by the failed read may answer at
        # once, and that answer must be dropped, not sent out of turn.
        self._fail_body(exc)
        for d in waiters or ():
            d.errback(exc)

    def __repr__(self) -> str:
        """The request line, for debugging."""
        return f"<Request {self.request_line!r}>"


def _content_length(value: bytes) -> int:
    # A Content-Length set by a handler: digits only, else ignored.
    value = value.strip()
    if not value.isdigit():
        return -1
    return int(value)
