"""The two sides of a SOCKS handshake, as state machines over the wire codec.

``SOCKSServerHandshake`` reads what a client sends (a SOCKS 5 greeting,
RFC 1929 credentials and a request, or a single SOCKS 4/4a request), turns
it into events, and makes the server's answers; ``SOCKSClientHandshake``
makes a client's messages and reads the proxy's answers. Neither does any
I/O or keeps time: the server protocol and client endpoint drive them.

Both take bytes in chunks of any size, down to one byte at a time, and keep
what follows the last message of the handshake (the tunnel's first data, a
client may send it before the reply) for their caller, unchanged and in
order. While a handshake waits for its caller (a password being checked),
it keeps at most ``max_buffered`` bytes.
"""

from __future__ import annotations

import enum
import ipaddress
from typing import TypeAlias, TypeVar

from torsion.protocols._socks_wire import (
    DEFAULT_MAX_BUFFERED,
    MAX_USER_ID_LENGTH,
    Command,
    Greeting,
    Method,
    Reply,
    ReplyCode,
    Request,
    SOCKS4ReplyCode,
    SOCKSAuthenticationError,
    SOCKSError,
    SOCKSProtocolError,
    UsernamePassword,
    build_authentication_reply,
    build_greeting,
    build_method_selection,
    build_socks4_reply,
    build_socks4_request,
    build_socks5_reply,
    build_socks5_request,
    build_username_password,
    parse_authentication_reply,
    parse_greeting,
    parse_method_selection,
    parse_socks4_reply,
    parse_socks4_request,
    parse_socks5_reply,
    parse_socks5_request,
    parse_username_password,
    reply_meaning,
)

__all__ = ["Event", "SOCKSClientHandshake", "SOCKSServerHandshake", "ServerState"]

_M = TypeVar("_M")

_SOCKS4 = 4
_SOCKS5 = 5


def _take(buffer: bytearray, parsed: tuple[_M, int] | None) -> _M | None:
    """Return the parsed message (dropping its bytes from ``buffer``), or None."""
    if parsed is None:
        return None
    message, size = parsed
    del buffer[:size]
    return message


class ServerState(enum.Enum):
    """Where a server's handshake is."""

    GREETING = "greeting"
    """Waiting for the first message (a SOCKS 5 greeting or a SOCKS 4 request)."""
    METHOD = "method"
    """A greeting arrived; the server is to call ``select_method``."""
    AUTHENTICATION = "authentication"
    """Username/password was chosen: waiting for the client's credentials."""
    CHECKING = "checking"
    """Credentials arrived; the server is to call ``authentication_result``."""
    REQUEST = "request"
    """Waiting for the request."""
    REPLY = "reply"
    """The request arrived; the server is to call ``reply``."""
    DONE = "done"
    """Replied with success: the rest of the connection is the tunnel's data."""
    CLOSED = "closed"
    """Refused or failed: the server is to close the connection."""


Event: TypeAlias = Greeting | UsernamePassword | Request
"""What a server's handshake reads from a client."""


class SOCKSServerHandshake:
    """The server's side of one SOCKS 4/4a/5 handshake, as bytes in and events out.

    The first byte says the version. Feed bytes with ``receive_data`` and
    ask ``next_event`` for what they hold; answer each event with the
    method that makes its reply::

        Greeting         -> select_method(method)          (SOCKS 5)
        UsernamePassword -> authentication_result(ok)      (method 2)
        Request          -> reply(code, host, port)

    After the request, what the client sent beyond it is the tunnel's data:
    ``take_rest()`` hands it over. A ``SOCKSProtocolError`` from
    ``next_event`` means the connection is done for; ``error_reply(exc)``
    gives the bytes to send before closing, if the protocol has any.

    Args:
        max_buffered: The most bytes kept unread (``receive_data`` raises
            ``SOCKSProtocolError`` beyond it).
        max_user_id: The longest SOCKS 4 user id accepted.

    Attributes:
        version: 4 or 5 once the first byte arrived, else None.
        state: Where the handshake is.
        method: The method chosen (SOCKS 5), once chosen.
    """

    def __init__(
        self, *, max_buffered: int = DEFAULT_MAX_BUFFERED, max_user_id: int = MAX_USER_ID_LENGTH
    ) -> None:
        self.version: int | None = None
        self.state = ServerState.GREETING
        self.method: int | None = None
        self._offered: tuple[int, ...] = ()
        self._buffer = bytearray()
        self._max_buffered = max_buffered
        self._max_user_id = max_user_id

    def receive_data(self, data: bytes) -> None:
        """Take bytes from the client.

        Raises:
            SOCKSProtocolError: More than ``max_buffered`` bytes wait unread.
        """
        self._buffer += data
        if self.state is not ServerState.DONE and len(self._buffer) > self._max_buffered:
            self.state = ServerState.CLOSED
            raise SOCKSProtocolError(
                f"the client sent over {self._max_buffered} bytes before it was answered",
                version=self.version or _SOCKS5,
            )

    def next_event(self) -> Event | None:
        """Return the next message the client sent, or None until one is complete.

        Also None while the server owes an answer to the last event.

        Raises:
            SOCKSProtocolError: The bytes are not what the state expects; the
                handshake is then closed.
        """
        try:
            return self._next_event()
        except SOCKSProtocolError:
            self.state = ServerState.CLOSED
            raise

    def _next_event(self) -> Event | None:
        state, data = self.state, self._buffer
        if state is ServerState.GREETING:
            if not data:
                return None
            if self.version is None:
                if data[0] not in (_SOCKS4, _SOCKS5):
                    raise SOCKSProtocolError(f"not SOCKS: the first byte is {data[0]:#04x}")
                self.version = data[0]
            if self.version == _SOCKS4:
                parsed = parse_socks4_request(data, max_user_id=self._max_user_id)
                return self._then(_take(data, parsed), ServerState.REPLY)
            greeting = _take(data, parse_greeting(data))
            if greeting is not None:
                self._offered = greeting.methods
            return self._then(greeting, ServerState.METHOD)
        if state is ServerState.AUTHENTICATION:
            credentials = _take(data, parse_username_password(data))
            return self._then(credentials, ServerState.CHECKING)
        if state is ServerState.REQUEST:
            return self._then(_take(data, parse_socks5_request(data)), ServerState.REPLY)
        return None

    def _then(self, event: Event | None, state: ServerState) -> Event | None:
        if event is not None:
            self.state = state
        return event

    def select_method(self, method: int) -> bytes:
        """Answer the greeting; return the bytes to send.

        ``Method.NO_ACCEPTABLE`` refuses the client (close after sending).

        Raises:
            RuntimeError: No greeting is waiting for an answer, or ``method``
                is one the client did not offer.
        """
        self._expect(ServerState.METHOD)
        if method != Method.NO_ACCEPTABLE and method not in self._offered:
            raise RuntimeError(f"method {method} was not offered (only {self._offered})")
        self.method = method
        if method == Method.NO_ACCEPTABLE:
            self.state = ServerState.CLOSED
        elif method == Method.USERNAME_PASSWORD:
            self.state = ServerState.AUTHENTICATION
        else:
            self.state = ServerState.REQUEST
        return build_method_selection(method)

    def authentication_result(self, ok: bool) -> bytes:
        """Answer the credentials; return the bytes to send (close after a failure).

        RFC 1929 section 2: after a failure the server "MUST close the connection".

        Raises:
            RuntimeError: No credentials are waiting for an answer.
        """
        self._expect(ServerState.CHECKING)
        self.state = ServerState.REQUEST if ok else ServerState.CLOSED
        return build_authentication_reply(ok)

    def reply(self, code: ReplyCode, host: str = "0.0.0.0", port: int = 0) -> bytes:
        """Answer the request; return the bytes to send.

        The code is a SOCKS 5 one; a SOCKS 4 client gets "granted" for
        ``SUCCEEDED`` and "rejected or failed" for anything else (SOCKS 4
        has no finer codes), and the bound address only if it is IPv4.

        Raises:
            RuntimeError: No request is waiting for an answer.
        """
        self._expect(ServerState.REPLY)
        self.state = ServerState.DONE if code == ReplyCode.SUCCEEDED else ServerState.CLOSED
        if self.version == _SOCKS4:
            v4 = ipaddress.ip_address(host).version == 4
            return build_socks4_reply(
                SOCKS4ReplyCode.GRANTED
                if code == ReplyCode.SUCCEEDED
                else SOCKS4ReplyCode.REJECTED,
                host if v4 else "0.0.0.0",
                port if v4 else 0,
            )
        return build_socks5_reply(code, host, port)

    def error_reply(self, exc: SOCKSProtocolError) -> bytes:
        """The bytes to send the client before closing for ``exc`` (maybe none).

        A bad request gets a failure reply with the error's code; bad
        credentials a failure status; anything earlier, or a client that is
        not speaking SOCKS, nothing.
        """
        if exc.code is None:
            return b""
        if self.version == _SOCKS4:
            return build_socks4_reply(SOCKS4ReplyCode.REJECTED)
        return build_socks5_reply(exc.code)

    def take_rest(self) -> bytes:
        """Return (and forget) what the client sent after its request: tunnel data."""
        rest, self._buffer = bytes(self._buffer), bytearray()
        return rest

    def _expect(self, state: ServerState) -> None:
        if self.state is not state:
            raise RuntimeError(f"the handshake is in state {self.state.value}, not {state.value}")


# -- the client's side -----------------------------------------------------------------


class _ClientState(enum.Enum):
    NEW = "new"
    METHOD = "method"
    AUTHENTICATION = "authentication"
    REPLY = "reply"
    DONE = "done"
    FAILED = "failed"


class SOCKSClientHandshake:
    """The client's side of one SOCKS handshake: CONNECT to ``host:port``.

    ``start()`` gives the first bytes to send; each ``receive_data`` returns
    the bytes to send next (maybe none). Once ``done``, ``reply`` holds the
    server's reply and ``take_rest()`` what the server sent after it (the
    destination's first bytes).

    A name is sent as a name, for the proxy to resolve (SOCKS 5's domain
    name address, or SOCKS 4a); an IP address as an address.

    Args:
        host: The destination: an IP address or a host name.
        port: The destination's port.
        version: 5, or 4 (which sends a name with the 4a extension).
        username: For SOCKS 5: offer username/password authentication
            (RFC 1929) with these credentials, besides no authentication.
        password: The password (empty if None).
        user_id: For SOCKS 4: the user id.
        command: What to ask for; CONNECT.
        max_buffered: The most bytes kept unread before failing.

    Raises:
        ValueError: Something will not fit the protocol (a name over 255
            bytes, an IPv6 address over SOCKS 4, credentials over SOCKS 4...).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        version: int = _SOCKS5,
        username: str | bytes | None = None,
        password: str | bytes | None = None,
        user_id: str | bytes = b"",
        command: Command = Command.CONNECT,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
    ) -> None:
        self._credentials = b""
        if version == _SOCKS4:
            if username is not None or password is not None:
                raise ValueError("SOCKS 4 has no passwords (use SOCKS 5)")
            self._request = build_socks4_request(command, host, port, user_id)
        elif version == _SOCKS5:
            if password is not None and username is None:
                raise ValueError("a password needs a username")
            self._request = build_socks5_request(command, host, port)
            if username is not None:
                self._credentials = build_username_password(username, password or b"")
        else:
            raise ValueError(f"SOCKS version must be 4 or 5, not {version}")
        self.version = version
        self.reply: Reply | None = None
        self._methods = (
            (Method.NO_AUTHENTICATION, Method.USERNAME_PASSWORD)
            if username is not None
            else (Method.NO_AUTHENTICATION,)
        )
        self._state = _ClientState.NEW
        self._buffer = bytearray()
        self._max_buffered = max_buffered

    @property
    def done(self) -> bool:
        """Whether the proxy granted the request (the tunnel is open)."""
        return self._state is _ClientState.DONE

    def start(self) -> bytes:
        """Return the first bytes to send: the greeting (SOCKS 5) or request (SOCKS 4)."""
        if self._state is not _ClientState.NEW:
            raise RuntimeError("the handshake has started already")
        if self.version == _SOCKS4:
            self._state = _ClientState.REPLY
            return self._request
        self._state = _ClientState.METHOD
        return build_greeting(self._methods)

    def receive_data(self, data: bytes) -> bytes:
        """Take bytes from the proxy; return what to send in answer (maybe b"").

        Raises:
            SOCKSAuthenticationError: The proxy took none of the methods
                offered, or refused the credentials.
            SOCKSError: The proxy refused the request (``code`` says why).
            SOCKSProtocolError: The proxy's bytes are not a valid answer.
        """
        self._buffer += data
        if self._state is _ClientState.DONE:
            return b""
        try:
            return self._advance()
        except SOCKSError:
            self._state = _ClientState.FAILED
            raise

    def _advance(self) -> bytes:
        out = bytearray()
        while True:
            if self._state is _ClientState.METHOD:
                selection = _take(self._buffer, parse_method_selection(self._buffer))
                if selection is None:
                    break
                out += self._method_chosen(selection.method)
            elif self._state is _ClientState.AUTHENTICATION:
                status = _take(self._buffer, parse_authentication_reply(self._buffer))
                if status is None:
                    break
                if not status.ok:
                    raise SOCKSAuthenticationError(
                        f"the SOCKS proxy refused the credentials (status {status.status})"
                    )
                self._state = _ClientState.REPLY
                out += self._request
            elif self._state is _ClientState.REPLY:
                parse = parse_socks4_reply if self.version == _SOCKS4 else parse_socks5_reply
                reply = _take(self._buffer, parse(self._buffer))
                if reply is None:
                    break
                if not reply.succeeded:
                    meaning = reply_meaning(self.version, reply.code)
                    raise SOCKSError(
                        f"the SOCKS proxy refused the connection: {meaning}",
                        version=self.version,
                        code=reply.code,
                    )
                self.reply = reply
                self._state = _ClientState.DONE
                return bytes(out)
            else:
                raise RuntimeError(f"the handshake cannot take data in state {self._state.value}")
        if len(self._buffer) > self._max_buffered:
            raise SOCKSProtocolError(f"the proxy sent over {self._max_buffered} bytes unasked")
        return bytes(out)

    def _method_chosen(self, method: int) -> bytes:
        if method == Method.NO_ACCEPTABLE:
            raise SOCKSAuthenticationError(
                "the SOCKS proxy accepts none of the authentication methods offered"
                + ("" if len(self._methods) > 1 else " (it may want a username and password)")
            )
        if method not in self._methods:
            raise SOCKSProtocolError(
                f"the SOCKS proxy chose method {method}, which was not offered"
            )
        if method == Method.USERNAME_PASSWORD:
            self._state = _ClientState.AUTHENTICATION
            return self._credentials
        self._state = _ClientState.REPLY
        return self._request

    def take_rest(self) -> bytes:
        """Return (and forget) what the proxy sent after its reply."""
        rest, self._buffer = bytes(self._buffer), bytearray()
        return rest
