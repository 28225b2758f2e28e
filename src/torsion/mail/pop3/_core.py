"""The POP3 server session as a sans-IO state machine: command bytes in, replies out.

RFC 1939 (the protocol), RFC 2449 (CAPA, response codes), RFC 2595 (STLS)
and RFC 5034 (SASL AUTH). The core answers every command it can from its
own state (the maildrop's message list taken at login, the numbers deleted
so far) and asks the glue, through events, for what it cannot: a login, a
message body, the deletions at QUIT, a TLS handshake. While an event waits
for its answer no further command is read, so a pipelining client's
commands (RFC 2449 PIPELINING) are answered strictly in order.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections import deque
from collections.abc import Sequence

from torsion.cred import APOP, CramMD5, UsernamePassword, cram_md5_challenge
from torsion.mail._mailbox import MessageInfo
from torsion.mail.pop3._events import (
    LoginRequested,
    POP3Event,
    POP3Limits,
    RetrieveRequested,
    STLSRequested,
    UpdateRequested,
)

__all__ = ["AUTH_MECHANISMS", "POP3ServerConnection", "State"]

#: The SASL mechanisms the server knows, in the order it offers them.
AUTH_MECHANISMS = ("CRAM-MD5", "PLAIN", "LOGIN")

# Mechanisms that send the password itself (refused in clear unless allowed).
_PLAINTEXT_MECHANISMS = frozenset({"PLAIN", "LOGIN"})

# The longest message number taken: more digits cannot name a message.
_MAX_NUMBER_DIGITS = 9

# Bytes held while the session waits for the glue: the glue pauses reading
# then, so only what was already read can come; a client that pipelines
# more than this is cut off rather than buffered.
_MAX_PENDING = 256 * 1024


class State(enum.Enum):
    """Where the session is (RFC 1939 section 3)."""

    AUTHORIZATION = "authorization"
    TRANSACTION = "transaction"
    UPDATE = "update"
    CLOSED = "closed"


class _Wait(enum.Enum):
    NONE = "none"
    LOGIN = "login"
    TLS = "tls"
    MESSAGE = "message"
    SENDING = "sending"
    UPDATE = "update"


class POP3ServerConnection:
    """One POP3 server session, with no I/O.

    Call ``receive_data`` with what the client sent, then take the replies
    from ``data_to_send`` and the requests from ``next_event`` until it
    returns None; answer each request with the method it names. When
    ``closing`` is true, write what is left and close.

    Args:
        hostname: The server's name, in the greeting and challenges.
        limits: Bounds and timeouts.
        tls_available: STLS may be offered (a certificate is configured).
        tls_active: The connection is already TLS (implicit TLS, port 995).
        apop_timestamp: The greeting's APOP time stamp (RFC 1939 section
            7), brackets included; None: APOP is not offered.
        auth_mechanisms: The SASL mechanisms a portal can check.
        plaintext_without_tls: Take USER/PASS and AUTH PLAIN/LOGIN before
            TLS (RFC 2595 section 2.1 asks servers to refuse them).
        implementation: The IMPLEMENTATION capability's text, or None.
        login_delay: Seconds between one user's logins, advertised as
            LOGIN-DELAY (RFC 2449 section 6.8; the glue enforces it), or None.
        expire: The EXPIRE capability's argument (``NEVER`` or a number
            of days, RFC 2449 section 6.7): a promise the deployment
            keeps, so only advertised when given.
    """

    def __init__(
        self,
        *,
        hostname: str,
        limits: POP3Limits | None = None,
        tls_available: bool = False,
        tls_active: bool = False,
        apop_timestamp: bytes | None = None,
        auth_mechanisms: Sequence[str] = (),
        plaintext_without_tls: bool = False,
        implementation: str | None = "torsion",
        login_delay: int | None = None,
        expire: str | None = None,
    ) -> None:
        self.hostname = hostname
        self.limits = limits if limits is not None else POP3Limits()
        self.tls_available = tls_available
        self.tls_active = tls_active
        self.apop_timestamp = apop_timestamp
        self.auth_mechanisms = tuple(m for m in AUTH_MECHANISMS if m in auth_mechanisms)
        self.plaintext_without_tls = plaintext_without_tls
        self.implementation = implementation
        self.login_delay = login_delay
        self.expire = expire
        self.state = State.AUTHORIZATION
        #: The user logged in, once in the TRANSACTION state.
        self.user: str | None = None
        self._out: list[bytes] = []
        self._events: deque[POP3Event] = deque()
        self._buffer = bytearray()
        self._discarding = False
        self._wait = _Wait.NONE
        self._closing = False
        self._user_given: str | None = None
        self._sasl: _SASL | None = None
        self._commands = 0
        self._errors = 0
        self._login_failures = 0
        self._messages: list[MessageInfo] = []
        self._uidvalidity = 0
        self._deleted: set[int] = set()
        greeting = "POP3 server ready"
        if apop_timestamp is not None:
            greeting += " " + apop_timestamp.decode("ascii")
        self._ok(greeting)

    # -- what the glue reads -------------------------------------------------------

    @property
    def closing(self) -> bool:
        """Whether the session is over: write what is left, then close."""
        return self._closing

    @property
    def waiting(self) -> bool:
        """Whether the session waits for the glue (read nothing meanwhile)."""
        return self._wait is not _Wait.NONE

    @property
    def timeout(self) -> float | None:
        """Seconds the client may stay silent now (None: no timer)."""
        if self._closing:
            return None
        return self.limits.idle_timeout

    def data_to_send(self) -> bytes:
        """Return the replies written since the last call."""
        out, self._out = self._out, []
        return b"".join(out)

    def next_event(self) -> POP3Event | None:
        """Return the next request for the glue, or None."""
        if self._events:
            return self._events.popleft()
        return None

    # -- input ---------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Take bytes from the client and handle the complete lines among them."""
        if self._closing:
            return
        self._buffer += data
        if self._wait is not _Wait.NONE and len(self._buffer) > _MAX_PENDING:
            self._close("-ERR [SYS/TEMP] too much pipelined input")
            return
        self._process()

    def connection_lost(self) -> None:
        """The connection is gone: nothing more is done (and nothing deleted)."""
        self._closing = True
        self.state = State.CLOSED
        self._buffer.clear()
        self._events.clear()

    def timed_out(self) -> None:
        """The client was silent too long: end the session without UPDATE."""
        if self._closing:
            return
        # RFC 1939 section 3: an autologout timer ends the session without
        # entering the UPDATE state, so nothing is deleted.
        self._close("-ERR [SYS/TEMP] autologout: idle for too long")

    def _process(self) -> None:
        while not self._closing and self._wait is _Wait.NONE:
            limit = self.limits.max_auth_line if self._sasl else self.limits.max_command_line
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) >= limit:
                    # The rest of an over-long line is dropped as it comes.
                    self._buffer.clear()
                    if not self._discarding:
                        self._discarding = True
                        self._refuse("line too long")
                return
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if self._discarding:
                self._discarding = False
                continue
            if len(line) + 1 > limit:
                self._refuse("line too long")
                continue
            if line.endswith(b"\r"):
                line = line[:-1]
            if self._sasl is not None:
                self._sasl_line(line)
            else:
                self._command(line)

    # -- replies -------------------------------------------------------------------

    def _ok(self, text: str = "") -> None:
        self._out.append(b"+OK " + text.encode() + b"\r\n" if text else b"+OK\r\n")

    def _err(self, text: str) -> None:
        self._out.append(b"-ERR " + text.encode() + b"\r\n")

    def _refuse(self, text: str) -> None:
        self._errors += 1
        if self._errors >= self.limits.max_errors:
            self._close(f"-ERR {text}; too many errors")
            return
        self._err(text)

    def _close(self, reply: str) -> None:
        self._out.append(reply.encode() + b"\r\n")
        self._closing = True
        self.state = State.CLOSED
        self._buffer.clear()

    def _multiline(self, first: str, lines: Sequence[str]) -> None:
        self._ok(first)
        self._out.extend(line.encode() + b"\r\n" for line in lines)
        self._out.append(b".\r\n")

    # -- commands ------------------------------------------------------------------

    def _command(self, line: bytes) -> None:
        self._commands += 1
        if self._commands > self.limits.max_commands:
            self._close("-ERR [SYS/TEMP] too many commands in one session")
            return
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            self._refuse("command is not UTF-8")
            return
        verb, _, argument = text.partition(" ")
        verb = verb.upper()
        if self.state is State.AUTHORIZATION:
            handler = _AUTHORIZATION.get(verb)
        else:
            handler = _TRANSACTION.get(verb)
        if handler is None:
            # Echoed only when it is a plain word: no controls back to the client.
            shown = verb[:20] if verb.isascii() and verb.isalnum() else "?"
            self._refuse(f"unknown command or not valid now: {shown}")
            return
        handler(self, argument)

    def _capa(self, argument: str) -> None:
        capabilities = ["TOP", "UIDL", "RESP-CODES", "PIPELINING"]
        if self.state is State.AUTHORIZATION:
            if self._plaintext_allowed():
                capabilities.append("USER")
            mechanisms = [m for m in self.auth_mechanisms if self._mechanism_allowed(m)]
            if mechanisms:
                capabilities.append("SASL " + " ".join(mechanisms))
            if self.tls_available and not self.tls_active:
                capabilities.append("STLS")
        capabilities.append("AUTH-RESP-CODE")
        if self.login_delay is not None:
            capabilities.append(f"LOGIN-DELAY {self.login_delay}")
        if self.expire is not None:
            capabilities.append(f"EXPIRE {self.expire}")
        if self.implementation:
            capabilities.append("IMPLEMENTATION " + self.implementation)
        self._multiline("Capability list follows", capabilities)

    def _noop(self, argument: str) -> None:
        self._ok()

    def _quit(self, argument: str) -> None:
        if self.state is State.TRANSACTION:
            # RFC 1939 section 6: only now are the deletions carried out.
            self.state = State.UPDATE
            self._wait = _Wait.UPDATE
            uids = tuple(sorted(self._messages[n - 1].uid for n in self._deleted))
            self._events.append(UpdateRequested(uids=uids))
            return
        self._close("+OK bye")

    # -- authorization -------------------------------------------------------------

    def _plaintext_allowed(self) -> bool:
        return self.tls_active or self.plaintext_without_tls

    def _mechanism_allowed(self, mechanism: str) -> bool:
        return mechanism not in _PLAINTEXT_MECHANISMS or self._plaintext_allowed()

    def _stls(self, argument: str) -> None:
        if not self.tls_available or self.tls_active:
            self._refuse("STLS not available" if not self.tls_active else "TLS already active")
            return
        self._ok("Begin TLS negotiation")
        # RFC 2595 section 4 (and CVE-2011-0411's lesson): what came after
        # STLS in clear is dropped; what arrives from now on is decrypted.
        self._buffer.clear()
        self._user_given = None
        self._wait = _Wait.TLS
        self._events.append(STLSRequested())

    def _user(self, argument: str) -> None:
        if not self._plaintext_allowed():
            self._refuse("[AUTH] plaintext login needs TLS first (STLS)")
            return
        if not argument or len(argument) > 255:
            self._refuse("USER needs a name")
            return
        self._user_given = argument
        self._ok("send PASS")

    def _pass(self, argument: str) -> None:
        user, self._user_given = self._user_given, None
        if user is None:
            self._refuse("USER first")
            return
        self._login(UsernamePassword(user, argument))

    def _apop(self, argument: str) -> None:
        if self.apop_timestamp is None:
            self._refuse("APOP not available")
            return
        name, _, digest = argument.rpartition(" ")
        if not name or len(digest) != 32:
            self._refuse("APOP needs a name and an MD5 digest")
            return
        self._login(APOP(name, self.apop_timestamp, digest))

    def _auth(self, argument: str) -> None:
        if not argument:
            # The listing form of RFC 1734, still sent by some clients.
            mechanisms = [m for m in self.auth_mechanisms if self._mechanism_allowed(m)]
            self._multiline("SASL mechanisms follow", mechanisms)
            return
        mechanism, _, initial = argument.partition(" ")
        mechanism = mechanism.upper()
        if mechanism not in self.auth_mechanisms:
            self._refuse("unknown SASL mechanism")
            return
        if not self._mechanism_allowed(mechanism):
            self._refuse("[AUTH] plaintext mechanism needs TLS first (STLS)")
            return
        sasl = _SASL(mechanism, cram_md5_challenge(self.hostname))
        self._sasl = sasl
        if initial:
            if mechanism == "CRAM-MD5":
                self._sasl = None
                self._refuse("CRAM-MD5 takes no initial response")
                return
            self._sasl_line(initial.encode())
            return
        self._challenge(sasl.first_challenge())

    def _challenge(self, challenge: bytes) -> None:
        self._out.append(b"+ " + base64.b64encode(challenge) + b"\r\n")

    def _sasl_line(self, line: bytes) -> None:
        sasl = self._sasl
        assert sasl is not None
        if line == b"*":
            # RFC 5034 section 4: the client cancels the exchange.
            self._sasl = None
            self._refuse("AUTH cancelled")
            return
        try:
            # "=" is an empty initial response (RFC 5034 section 4).
            data = b"" if line == b"=" else base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            self._sasl = None
            self._refuse("AUTH response is not base64")
            return
        try:
            result = sasl.step(data)
        except ValueError as exc:
            self._sasl = None
            self._refuse(f"AUTH failed: {exc}")
            return
        if isinstance(result, bytes):
            self._challenge(result)
            return
        self._sasl = None
        self._login(result)

    def _login(self, credentials: UsernamePassword | APOP | CramMD5) -> None:
        self._wait = _Wait.LOGIN
        self._events.append(LoginRequested(credentials=credentials))

    # -- answers from the glue -------------------------------------------------------

    def login_accepted(
        self, user: str, messages: Sequence[MessageInfo], *, uidvalidity: int
    ) -> None:
        """The login succeeded and the maildrop is locked: enter TRANSACTION.

        Args:
            user: Who logged in.
            messages: The maildrop's messages, numbered from 1 in this order.
            uidvalidity: The mailbox's UIDVALIDITY, part of each UIDL id.
        """
        if not self._expect(_Wait.LOGIN):
            return
        self.state = State.TRANSACTION
        self.user = user
        self._messages = list(messages)
        self._uidvalidity = uidvalidity
        count = len(self._messages)
        size = sum(m.size for m in self._messages)
        self._ok(f"maildrop has {count} message{'s' if count != 1 else ''} ({size} octets)")
        self._resume()

    def login_refused(self, reply: str = "[AUTH] authentication failed") -> None:
        """The login failed; ``reply`` follows ``-ERR`` (with its response code).

        After ``max_login_failures`` the session ends.
        """
        if not self._expect(_Wait.LOGIN):
            return
        self._login_failures += 1
        if self._login_failures >= self.limits.max_login_failures:
            self._close(f"-ERR {reply}; too many failures")
            return
        self._err(reply)
        self._resume()

    def tls_started(self) -> None:
        """The TLS handshake is done: go on with what the client sent over TLS."""
        if not self._expect(_Wait.TLS):
            return
        self.tls_active = True
        self._resume()

    def message_found(self) -> None:
        """The message can be sent: ``+OK`` is written; stream its body, then ``message_sent``."""
        if not self._expect(_Wait.MESSAGE):
            return
        self._ok("message follows")
        self._wait = _Wait.SENDING

    def message_failed(self, reply: str = "[SYS/TEMP] message cannot be read") -> None:
        """The message could not be read: answer ``-ERR`` with ``reply``."""
        if not self._expect(_Wait.MESSAGE):
            return
        self._err(reply)
        self._resume()

    def message_sent(self) -> None:
        """The body and its closing ``.`` line are written: go on with the commands."""
        if not self._expect(_Wait.SENDING):
            return
        self._resume()

    def update_done(self, ok: bool = True) -> None:
        """The deletions at QUIT are done (or failed): say so and close."""
        if not self._expect(_Wait.UPDATE):
            return
        self._wait = _Wait.NONE
        if ok:
            self._close("+OK bye")
        else:
            # RFC 2449 section 8.1.2: a temporary failure of the system.
            self._close("-ERR [SYS/TEMP] some deleted messages were not removed")

    def _expect(self, wait: _Wait) -> bool:
        # False when the session ended meanwhile: the answer is of no use.
        if self._closing:
            self._wait = _Wait.NONE
            return False
        if self._wait is not wait:
            raise RuntimeError(f"the session waits for {self._wait.value}, not {wait.value}")
        return True

    def _resume(self) -> None:
        self._wait = _Wait.NONE
        self._process()

    # -- transaction -----------------------------------------------------------------

    def _number(self, text: str) -> int | None:
        # A message number that names a message not deleted, or None with a reply.
        if not text.isascii() or not text.isdigit() or len(text) > _MAX_NUMBER_DIGITS:
            self._refuse("not a message number")
            return None
        number = int(text)
        if not 1 <= number <= len(self._messages):
            self._refuse("no such message")
            return None
        if number in self._deleted:
            self._refuse("message already deleted")
            return None
        return number

    def _live(self) -> list[tuple[int, MessageInfo]]:
        return [(n, m) for n, m in enumerate(self._messages, start=1) if n not in self._deleted]

    def _stat(self, argument: str) -> None:
        live = self._live()
        self._ok(f"{len(live)} {sum(m.size for _, m in live)}")

    def _list(self, argument: str) -> None:
        if argument:
            number = self._number(argument)
            if number is not None:
                self._ok(f"{number} {self._messages[number - 1].size}")
            return
        live = self._live()
        self._multiline(f"{len(live)} messages", [f"{n} {m.size}" for n, m in live])

    def _unique_id(self, message: MessageInfo) -> str:
        # RFC 1939 section 7: the same id for the message across sessions;
        # the UIDVALIDITY keeps it unique when UIDs start again.
        return f"{self._uidvalidity}.{message.uid}"

    def _uidl(self, argument: str) -> None:
        if argument:
            number = self._number(argument)
            if number is not None:
                self._ok(f"{number} {self._unique_id(self._messages[number - 1])}")
            return
        lines = [f"{n} {self._unique_id(m)}" for n, m in self._live()]
        self._multiline("unique-id listing follows", lines)

    def _dele(self, argument: str) -> None:
        number = self._number(argument)
        if number is not None:
            self._deleted.add(number)
            self._ok(f"message {number} deleted")

    def _rset(self, argument: str) -> None:
        self._deleted.clear()
        self._stat(argument)

    def _retr(self, argument: str) -> None:
        number = self._number(argument)
        if number is not None:
            self._retrieve(number, None)

    def _top(self, argument: str) -> None:
        parts = argument.split(" ")
        if len(parts) != 2 or not parts[1].isascii() or not parts[1].isdigit():
            self._refuse("TOP needs a message number and a line count")
            return
        number = self._number(parts[0])
        if number is not None:
            self._retrieve(number, int(parts[1]))

    def _retrieve(self, number: int, body_lines: int | None) -> None:
        message = self._messages[number - 1]
        self._wait = _Wait.MESSAGE
        self._events.append(
            RetrieveRequested(
                number=number, uid=message.uid, size=message.size, body_lines=body_lines
            )
        )


class _SASL:
    """One AUTH exchange: challenges out, credentials at the end."""

    def __init__(self, mechanism: str, cram_challenge: bytes) -> None:
        self.mechanism = mechanism
        self._cram_challenge = cram_challenge
        self._username: str | None = None

    def first_challenge(self) -> bytes:
        if self.mechanism == "CRAM-MD5":
            return self._cram_challenge
        if self.mechanism == "LOGIN":
            return b"Username:"
        return b""

    def step(self, data: bytes) -> bytes | UsernamePassword | CramMD5:
        text = data.decode("utf-8")
        if self.mechanism == "PLAIN":
            # RFC 4616: authzid NUL authcid NUL passwd.
            parts = text.split("\0")
            if len(parts) != 3 or not parts[1]:
                raise ValueError("malformed PLAIN response")
            authzid, authcid, password = parts
            if authzid and authzid != authcid:
                raise ValueError("acting as another user is not allowed")
            return UsernamePassword(authcid, password)
        if self.mechanism == "LOGIN":
            if self._username is None:
                if not text:
                    raise ValueError("empty user name")
                self._username = text
                return b"Password:"
            return UsernamePassword(self._username, text)
        name, _, digest = text.rpartition(" ")
        if not name or not digest:
            raise ValueError("malformed CRAM-MD5 response")
        return CramMD5(name, self._cram_challenge, digest)


_AUTHORIZATION = {
    "CAPA": POP3ServerConnection._capa,
    "USER": POP3ServerConnection._user,
    "PASS": POP3ServerConnection._pass,
    "APOP": POP3ServerConnection._apop,
    "AUTH": POP3ServerConnection._auth,
    "STLS": POP3ServerConnection._stls,
    "QUIT": POP3ServerConnection._quit,
}

_TRANSACTION = {
    "CAPA": POP3ServerConnection._capa,
    "STAT": POP3ServerConnection._stat,
    "LIST": POP3ServerConnection._list,
    "UIDL": POP3ServerConnection._uidl,
    "RETR": POP3ServerConnection._retr,
    "TOP": POP3ServerConnection._top,
    "DELE": POP3ServerConnection._dele,
    "RSET": POP3ServerConnection._rset,
    "NOOP": POP3ServerConnection._noop,
    "QUIT": POP3ServerConnection._quit,
}
