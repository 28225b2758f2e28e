"""The sans-IO core of the HTTP/1.1 server: bytes in, request heads and bodies out.

``RequestParser`` drives httptools' ``HttpRequestParser`` (llhttp) and adds
what llhttp leaves to its user, so that every request reaching the server
is framed one way only (RFC 9112; the request smuggling tricks of Twisted's
advisories CVE-2022-24801, CVE-2020-10108 and CVE-2020-10109):

* llhttp, strict by default, refuses bare CR or LF line ends, obs-fold,
  control characters in names and values, spaces before the colon, a
  ``Content-Length`` repeated, signed, hexadecimal or listed, one with
  ``Transfer-Encoding``, chunk sizes with prefixes or whitespace, and
  transfer codings after ``chunked``.
* This module refuses, on top: a ``Transfer-Encoding`` that is not exactly
  ``chunked`` (``gzip, chunked`` included: no other coding is supported), a
  ``Transfer-Encoding`` in an HTTP/1.0 request (RFC 9112 section 6.1), HTTP
  versions other than 1.0 and 1.1 (0.9 is 400; 2.0 and later 505), an
  HTTP/1.1 request with no ``Host`` or with two (RFC 9112 section 3.2),
  extra spaces between the method and the target, and any ``Expect`` but
  ``100-continue`` (417).
* Limits: the target's length (414), the number of header fields and the
  bytes of the head (431), the body's size (413), each checked as the bytes
  arrive so that nothing is buffered past its bound.

The parser does no I/O and keeps no time; it calls its owner (the
connection, or a test) as each part of a request is read. Those calls are
plain methods rather than event objects: one request per few microseconds
is the budget, and an object per event would spend a good part of it.

The module also writes what responses need on the wire: status lines, and
the ``Date`` field cached per second.
"""

from __future__ import annotations

import email.utils
import http
import typing
from dataclasses import dataclass

import httptools

from torsion.errors import TorsionError

__all__ = [
    "DateCache",
    "HTTPProtocolError",
    "ParserOwner",
    "RequestParser",
    "ServerLimits",
    "reason_phrase",
    "status_line",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerLimits:
    """The bounds and timeouts of an HTTP server connection, on by default.

    Attributes:
        max_target: Longest request target in bytes; longer gets 414.
        max_headers: Most header fields in one request; more gets 431.
        max_head_bytes: Most bytes in a request's head (request line and
            header fields); more gets 431.
        max_body: Largest request body in bytes; larger gets 413.
        body_buffer: Request body bytes held for a handler that is not
            reading; past it, reading from the connection pauses.
        max_pipelined: Requests parsed ahead of their responses; past it,
            reading pauses and the rest of a read is kept unparsed.
        max_streams: HTTP/2 requests served at once on one connection
            (``SETTINGS_MAX_CONCURRENT_STREAMS``, RFC 9113 section 6.5.2).
        header_timeout: Seconds a request's head may take to arrive; then
            408 and close (slowloris).
        body_timeout: Seconds a request body may go without a byte while
            the server reads it (not while reading is paused for the
            handler); then 408 and close.
        idle_timeout: Seconds a kept-alive connection may wait for its next
            request; then it is closed.
        write_timeout: Seconds output may wait for a client that does not
            take it: the transport's write buffer full (the client not
            reading), or on HTTP/2 a stream's data waiting for flow-control
            window; then the connection is closed (HTTP/2: the stream is
            reset).

    Raises:
        ValueError: A bound is below 1 (``max_body`` below 0) or a timeout is
            not positive.
    """

    max_target: int = 8192
    max_headers: int = 100
    max_head_bytes: int = 65536
    max_body: int = 16 * 1024 * 1024
    body_buffer: int = 65536
    max_pipelined: int = 16
    max_streams: int = 100
    header_timeout: float = 20.0
    body_timeout: float = 60.0
    idle_timeout: float = 60.0
    write_timeout: float = 60.0

    def __post_init__(self) -> None:
        """Refuse bounds that would let nothing through, or everything."""
        for name in (
            "max_target",
            "max_headers",
            "max_head_bytes",
            "body_buffer",
            "max_pipelined",
            "max_streams",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_body < 0:
            raise ValueError("max_body cannot be negative")
        for name in ("header_timeout", "body_timeout", "idle_timeout", "write_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be more than 0 seconds")


class HTTPProtocolError(TorsionError):
    """A request broke HTTP/1.1: the connection answers ``status`` and closes.

    Attributes:
        status: The status code of the reply (400, 413, 414, 417, 431, 505).
        reason: What was wrong, for the log (never echoed unescaped).
    """

    def __init__(self, status: int, reason: str) -> None:
        """Record the reply's status and the reason."""
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


class ParserOwner(typing.Protocol):
    """What ``RequestParser`` tells as it reads requests.

    Call order, per request::

        message_begun -> head_received [-> body_received*] -> message_complete
    """

    def message_begun(self) -> None:
        """The first byte of a request arrived."""
        ...

    def head_received(
        self,
        method: bytes,
        target: bytes,
        version: str,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
        expect_continue: bool,
        has_body: bool,
    ) -> None:
        """The request line and header fields were read and checked."""
        ...

    def body_received(self, data: bytes) -> None:
        """Some of the request body arrived (chunked framing removed)."""
        ...

    def message_complete(self) -> None:
        """The request ended (its body, if any, was all received)."""
        ...


# Phases of the message being read.
_IDLE = 0
_HEAD = 1
_BODY = 2

_TE_CHUNKED = b"chunked"
_LOOKED_AT = frozenset(b"cehtu")
# Bytes of earlier reads kept to check a request line split across reads:
# enough for the longest method and two spaces.
_TAIL = 24
# Bytes of chunk framing (sizes, extensions, trailers) a body may always
# have; past it, framing may not exceed eight times the body.
_MIN_FRAMING_ALLOWANCE = 65536
# _next_start when the next request starts where the one read ends.
_AFTER_THIS_REQUEST = -2
# _this_start when the request's head began in an earlier read.
_BEGAN_EARLIER = -3


class _StopParsingError(Exception):
    """Raised inside a parser callback to stop llhttp; the reason is kept."""


class RequestParser:
    """Reads HTTP/1.1 requests from bytes, strictly, within limits.

    Args:
        owner: Told of each request's parts as they are read.
        limits: The bounds to enforce.

    Feed it with ``receive_data``; it raises ``HTTPProtocolError`` for a
    request that must be refused, after which it must not be fed again.
    """

    def __init__(self, owner: ParserOwner, limits: ServerLimits) -> None:
        """Make a parser at the start of a connection."""
        self._owner = owner
        self._limits = limits
        # The limits read for every request, kept at hand.
        self._max_target = limits.max_target
        self._max_headers = limits.max_headers
        self._parser = httptools.HttpRequestParser(self)
        self._phase = _IDLE
        #: Whether a request has begun and its head is not complete yet.
        self.reading_head = False
        self._error: HTTPProtocolError | None = None
        self._stopped = False
        self._reset()
        self._data = b""
        self._data_start = 0
        self._tail = b""
        # Exact offsets in the bytes being parsed: where the request being
        # read starts, and where the next one will (-1: not known).
        self._this_start = -1
        self._next_start = -1
        #: Set by the owner while its pipeline is full: the next request is
        #: then not parsed but kept, with what follows it, in ``held``.
        self.hold_next = False
        #: The bytes kept by ``hold_next`` (None when nothing is held).
        self.held: bytes | None = None
        #: Set when an Upgrade or CONNECT request ended the HTTP/1.1 stream.
        self.upgraded = False
        #: The bytes read past that request's head.
        self.upgrade_data = b""

    def _reset(self) -> None:
        # The state of one request (also set, inline, by on_message_begin).
        self._target = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._body_bytes = 0
        self._body_wire_bytes = 0
        self._trailers = 0
        self._hosts = 0
        self._chunked = False
        self._content_length = -1
        self._expect_continue = False
        self._upgrade_field = False
        self._http11 = False
        # Whether a field above but the target, the head's fields and
        # size, the Host count and the version changed since the request
        # began: most requests change none, and skip resetting them.
        self._dirty = False
        #: Whether the request whose head was just read asks to switch
        #: protocols (Upgrade with Connection: upgrade, or CONNECT).
        self.upgrading = False

    def restart(self) -> None:
        """Parse again from a request's start, after bytes were held.

        Feed it the ``held`` bytes next (the caller takes them first).
        """
        self._parser = httptools.HttpRequestParser(self)
        self._phase = _IDLE
        self.reading_head = False
        self._stopped = False
        self.hold_next = False
        self.held = None
        self._reset()

    def stop(self) -> None:
        """Read nothing more: every byte fed from now on is dropped.

        Called while a request is being delivered, the rest of the bytes of
        that ``receive_data`` call are dropped too.
        """
        self._stopped = True

    def receive_data(self, data: bytes) -> None:
        """Parse ``data``, calling the owner for each part of each request.

        Args:
            data: The next bytes from the client.

        Raises:
            HTTPProtocolError: The request must be answered with the error's
                status and the connection closed.
        """
        if self._stopped:
            return
        phase = self._phase
        self._data = data
        self._data_start = 0
        # Where the request being read starts in these bytes, and where the
        # next one will, if known: here between requests, or after the rest
        # of a Content-Length body.
        if phase == _IDLE:
            self._this_start = -1
            self._next_start = 0
        elif phase == _HEAD:
            # The head is still arriving: count it whole, before llhttp
            # buffers a field of any size. It began in an earlier read.
            self._head_bytes += len(data)
            self._this_start = _BEGAN_EARLIER
            self._next_start = -1
        else:
            self._dirty = True
            self._body_wire_bytes += len(data)
            self._this_start = -1
            if not self._chunked and self._content_length >= 0:
                self._next_start = self._content_length - self._body_bytes
            else:
                self._next_start = -1
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            # The request asked to switch protocols (Upgrade, or CONNECT):
            # what follows its head is not HTTP/1.1, and is kept for the
            # protocol that takes over, if one does (RFC 9110 section 7.8).
            offset = upgrade.args[0] if upgrade.args else len(data)
            self.upgrade_data = data[offset:]
            self.upgraded = True
            self._stopped = True
        except httptools.HttpParserError as exc:
            error, self._error = self._error, None
            if error is not None:
                raise error from None
            cause = exc.__context__
            if isinstance(cause, _StopParsingError):
                return
            if cause is not None:
                # The owner failed: that is a bug to report, not the client's.
                raise cause from None
            raise HTTPProtocolError(400, str(exc) or type(exc).__name__) from None
        finally:
            # Kept by reference (as _data is, until the next read); only a
            # run of tiny reads is copied.
            self._tail = data if len(data) >= _TAIL else (self._tail + data)[-_TAIL:]
        phase = self._phase
        if phase == _IDLE:
            return
        if phase == _HEAD:
            if not self._stopped and self._head_bytes > self._limits.max_head_bytes:
                if len(self._target) >= self._limits.max_target or not self._headers:
                    raise HTTPProtocolError(414, "request target too long")
                raise HTTPProtocolError(431, "request head too large")
        elif phase == _BODY and not self._stopped:
            # Chunk framing, extensions and trailers are bytes that are not
            # body: a client sending mostly those (a megabyte of extension
            # per byte of body) is refused, as it would otherwise hold the
            # connection past every body limit.
            overhead = self._body_wire_bytes - self._body_bytes
            if overhead > _MIN_FRAMING_ALLOWANCE and overhead > 8 * self._body_bytes:
                raise HTTPProtocolError(400, "chunk framing out of proportion to the body")

    def _request_end(self) -> int:
        # Where the request just read (its start known) ends in these bytes:
        # after its head (the first empty line: no field holds one) and its
        # Content-Length body; -1 for a chunked body. Known exactly, the
        # next request's start lets a full pipeline keep the rest as bytes,
        # and the next target be looked for from there.
        if self._chunked:
            return -1
        data = self._data
        start = self._this_start
        if start == _BEGAN_EARLIER:
            # The head's end may straddle the reads: look with the last
            # bytes of the earlier one (no CR or LF of the bytes before a
            # head can join its end: a head starts with its method).
            before = self._tail[-3:]
            end = (before + data[: self._limits.max_head_bytes]).find(b"\r\n\r\n")
            if end < 0:
                return -1
            end -= len(before)
        else:
            if data[start] < 14:
                # Empty lines before a request are ignored (RFC 9112 2.2).
                start = len(data) - len(data[start:].lstrip(b"\r\n"))
            end = data.find(b"\r\n\r\n", start)
            if end < 0:
                return -1
        return end + 4 + max(self._content_length, 0)

    def _fail(self, status: int, reason: str) -> typing.NoReturn:
        self._error = HTTPProtocolError(status, reason)
        raise _StopParsingError

    # -- httptools callbacks -------------------------------------------------

    def on_message_begin(self) -> None:
        """httptools: a request starts."""
        start = self._next_start
        if start == _AFTER_THIS_REQUEST:
            start = self._request_end()
        if self.hold_next and start >= 0:
            # The pipeline is full: keep this request and what follows as
            # bytes, for a new parser once there is room (restart()).
            self.held = self._data[start:]
            self._stopped = True
            raise _StopParsingError
        self._this_start = start
        self._next_start = -1
        self._target = b""
        self._headers = []
        self._head_bytes = self._hosts = 0
        self._http11 = False
        if self._dirty:
            self._dirty = False
            self._body_bytes = self._body_wire_bytes = self._trailers = 0
            self._chunked = self._expect_continue = self._upgrade_field = self.upgrading = False
            self._content_length = -1
        self._phase = _HEAD
        self.reading_head = True
        self._owner.message_begun()
        if self._stopped:
            raise _StopParsingError

    def on_url(self, url: bytes) -> None:
        """httptools: (part of) the request target."""
        if self._target:
            target = self._target + url
            if len(target) > self._max_target:
                self._fail(414, "request target too long")
            self._target = target
            return
        if len(url) > self._max_target:
            self._fail(414, "request target too long")
        # llhttp skips any number of spaces after the method; a front end
        # that splits on single spaces would read another target. The
        # target is found in the bytes being parsed, after the previous
        # request's target (a pipelined request is checked too, unless a
        # field of the request before it holds the same target).
        data = self._data
        start = self._this_start
        at = data.find(url, start if start >= 0 else self._data_start)
        if at >= 0:
            end = self._data_start = at + len(url)
            if start != -1:
                # Searched from the request's own start, the first match
                # followed by the version is the target (a request line
                # has one space after its target and no CR before its
                # end): the version is read here, not formatted by
                # httptools for each request.
                self._http11 = data.startswith(b" HTTP/1.1\r", end)
            if at < 2:
                # The request line began in an earlier read.
                data = self._tail[-_TAIL:] + data[:at]
                at = len(data)
            if at >= 2 and data[at - 2] == 32:
                method = self._parser.get_method()
                if data[at - 2 - len(method) : at] == method + b"  ":
                    self._fail(400, "more than one space before the request target")
        self._target = url

    def on_header(self, name: bytes, value: bytes) -> None:
        """httptools: one header field, name and value complete."""
        if self._phase == _BODY:
            # A trailer field (RFC 9112 section 7.1.2): never merged into the
            # header section a handler may already have checked; dropped.
            self._dirty = True
            self._trailers += 1
            if self._trailers > self._limits.max_headers:
                self._fail(431, "too many trailer fields")
            return
        headers = self._headers
        headers.append((name, value))
        if len(headers) > self._max_headers:
            self._fail(431, "too many header fields")
        # Only names starting with c, e, h, t or u need a look
        # (Content-Length, Expect, Host, Transfer-Encoding, Upgrade): most
        # fields skip the lowering.
        if name[0] | 0x20 not in _LOOKED_AT:
            return
        # Host, in every HTTP/1.1 request, is nearly always spelled so.
        if name == b"Host":
            self._hosts += 1
            return
        lowered = name.lower()
        if lowered == b"host":
            self._hosts += 1
            return
        self._dirty = True
        if lowered == b"content-length":
            # llhttp has checked the digits and refused a second one.
            self._content_length = int(value)
            if self._content_length > self._limits.max_body:
                self._fail(413, "request body too large")
        elif lowered == b"transfer-encoding":
            # RFC 9112 section 6.1: chunked must be the final coding, and no
            # other coding is supported here, so anything else is refused
            # rather than passed on as a body of another framing.
            if value.strip(b" \t").lower() != _TE_CHUNKED:
                self._fail(400, "unsupported Transfer-Encoding")
            self._chunked = True
        elif lowered == b"upgrade":
            self._upgrade_field = True
        elif lowered == b"expect":
            if value.strip(b" \t").lower() != b"100-continue":
                self._fail(417, "unsupported expectation")
            self._expect_continue = True

    def on_headers_complete(self) -> None:
        """httptools: the head is complete; check it as a whole."""
        parser = self._parser
        version = "1.1" if self._http11 else parser.get_http_version()
        if version == "1.1":
            if self._hosts != 1:
                # RFC 9112 section 3.2.
                if self._hosts == 0:
                    self._fail(400, "an HTTP/1.1 request needs a Host")
                self._fail(400, "more than one Host")
        else:
            if version != "1.0":
                if version.startswith("0."):
                    self._fail(400, "HTTP/0.9 is not supported")
                self._fail(505, "HTTP version not supported")
            if self._chunked:
                # RFC 9112 section 6.1: an HTTP/1.0 message with
                # Transfer-Encoding has faulty framing.
                self._fail(400, "Transfer-Encoding in an HTTP/1.0 request")
            if self._hosts > 1:
                self._fail(400, "more than one Host")
        if not self._target:
            self._fail(400, "empty request target")
        self._phase = _BODY
        self.reading_head = False
        if self._this_start != -1:
            # The next request starts where this one ends: found only when
            # needed (see _request_end).
            self._next_start = _AFTER_THIS_REQUEST
        method = parser.get_method()
        if self._upgrade_field or method == b"CONNECT":
            # llhttp's own verdict: it is what stops the parser at the switch.
            self._dirty = True
            self.upgrading = bool(parser.should_upgrade())
        self._owner.head_received(
            method,
            self._target,
            version,
            self._headers,
            parser.should_keep_alive(),
            self._expect_continue,
            self._chunked or self._content_length > 0,
        )
        if self._stopped:
            raise _StopParsingError

    def on_body(self, body: bytes) -> None:
        """httptools: some body bytes (chunk framing removed)."""
        self._dirty = True
        self._body_bytes += len(body)
        if self._body_bytes > self._limits.max_body:
            self._fail(413, "request body too large")
        self._owner.body_received(body)
        if self._stopped:
            raise _StopParsingError

    def on_message_complete(self) -> None:
        """httptools: the request ended."""
        self._phase = _IDLE
        self._owner.message_complete()
        if self._stopped:
            raise _StopParsingError


# -- writing -------------------------------------------------------------------

_PHRASES: dict[int, str] = {status.value: status.phrase for status in http.HTTPStatus}


def reason_phrase(code: int) -> str:
    """The standard reason phrase of a status code ("" if unknown)."""
    return _PHRASES.get(code, "")


_STATUS_LINES: dict[int, bytes] = {
    code: f"HTTP/1.1 {code} {phrase}\r\n".encode("ascii") for code, phrase in _PHRASES.items()
}


def status_line(code: int, phrase: bytes | None = None) -> bytes:
    r"""The status line of a response, CRLF included.

    Args:
        code: The status code (100 to 999).
        phrase: A reason phrase other than the standard one (already checked
            for CR, LF and NUL by the caller).

    Returns:
        ``HTTP/1.1 <code> <phrase>\r\n``.
    """
    if phrase is None:
        line = _STATUS_LINES.get(code)
        if line is not None:
            return line
        phrase = _PHRASES.get(code, "").encode("ascii")
    return b"HTTP/1.1 %d %s\r\n" % (code, phrase)


class DateCache:
    """The ``Date`` and ``Server`` header lines, the date made once a second.

    Args:
        server: The ``Server`` field value (empty for none).
        wall_clock: The time of day, in seconds since the epoch (``time.time``).
    """

    __slots__ = (
        "_fields",
        "_fields_second",
        "_lines",
        "_second",
        "_server",
        "_until",
        "_wall_clock",
    )

    def __init__(self, server: bytes, wall_clock: typing.Callable[[], float]) -> None:
        """Make a cache that formats on first use."""
        self._server = b"Server: " + server + b"\r\n" if server else b""
        self._wall_clock = wall_clock
        # The second the lines were made for, and when it ends.
        self._second = -1.0
        self._until = -1.0
        self._lines = b""
        self._fields_second = -1
        self._fields: list[tuple[bytes, bytes]] = []

    def lines(self) -> bytes:
        r"""``Server: ...\r\nDate: ...\r\n`` for the current second (RFC 9110 6.6.1)."""
        now = self._wall_clock()
        if not self._second <= now < self._until:
            # (Compared as floats: no int() per response. A clock set back
            # is seen too.)
            second = int(now)
            self._second = float(second)
            self._until = second + 1.0
            date = email.utils.formatdate(second, usegmt=True).encode("ascii")
            self._lines = self._server + b"Date: " + date + b"\r\n"
        return self._lines

    def fields(self) -> list[tuple[bytes, bytes]]:
        """``server`` and ``date`` as HTTP/2 header fields (lower-case names).

        Returns:
            A new list each call (the caller may extend it).
        """
        second = int(self._wall_clock())
        if second != self._fields_second:
            self._fields_second = second
            date = email.utils.formatdate(second, usegmt=True).encode("ascii")
            server = self._server[8:-2]
            self._fields = [(b"server", server), (b"date", date)] if server else [(b"date", date)]
        return list(self._fields)
