"""The ESMTP server as a sans-IO state machine: bytes in, replies and events out.

``SMTPServerConnection`` reads what the client sends (``receive_data``),
writes the replies it can give by itself into ``data_to_send()``, and hands
the decisions it cannot make to its glue as events (``next_event()``): a
sender, a recipient, a finished message, credentials, a TLS upgrade. It
knows no sockets, clocks or storage. Every reply carries an RFC 3463
enhanced status code (RFC 2034), except the greeting, EHLO/HELO answers
and 354, for which RFC 2034 section 3 and RFC 3463 have none.

Framing follows RFC 5321 strictly: commands and message lines end with CRLF
only; the data ends only at CRLF.CRLF (section 4.1.1.4), never at LF.LF or
CR.CR, so that a message cannot be split into two by a server that reads it
otherwise ("SMTP smuggling", CVE-2023-51766). Lines are dot-unstuffed
(section 4.5.2). Nothing is buffered without bound: a command line is at
most ``max_command_line``, a message at most ``max_message_size`` (past it
the rest is counted and dropped, and the message refused with 552).
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import re
from collections import deque
from typing import Final

from torsion.cred import CramMD5, UsernamePassword, cram_md5_challenge
from torsion.mail.smtp._address import EmailAddress, parse_parameters, parse_path
from torsion.mail.smtp._errors import AddressError, SMTPReplyError
from torsion.mail.smtp._events import (
    AuthReceived,
    Envelope,
    Event,
    MessageReceived,
    RecipientReceived,
    SenderReceived,
    SMTPLimits,
    StartTLSRequested,
)

__all__ = ["AUTH_MECHANISMS", "SMTPServerConnection", "State"]

AUTH_MECHANISMS: Final = ("PLAIN", "LOGIN", "CRAM-MD5")
"""The SASL mechanisms the server knows (RFC 4954, RFC 4616, RFC 2195)."""

_END_OF_DATA: Final = b"\r\n.\r\n"
_LOGIN_USERNAME: Final = base64.b64encode(b"Username:").decode()
_LOGIN_PASSWORD: Final = base64.b64encode(b"Password:").decode()
# C0 controls and DEL; in valid UTF-8 these octets stand only for themselves.
_CONTROL: Final = re.compile(rb"[\x00-\x1f\x7f]")
_HELO_NAME: Final = re.compile(r"[A-Za-z0-9._\[\]:-]+")
# The replies every message gets, encoded once.
_SENDER_OK: Final = b"250 2.1.0 Sender OK\r\n"
_RECIPIENT_OK: Final = b"250 2.1.5 Recipient OK\r\n"
_MESSAGE_OK: Final = b"250 2.0.0 OK: message accepted\r\n"
_START_DATA: Final = b"354 End data with <CR><LF>.<CR><LF>\r\n"


class State(enum.Enum):
    """Where a session is; the core's ``state``."""

    #: Greeted; waiting for EHLO or HELO.
    CONNECTED = "connected"
    #: Introduced; no mail transaction.
    READY = "ready"
    #: MAIL accepted: RCPT and DATA may follow.
    TRANSACTION = "transaction"
    #: Reading the message after 354.
    DATA = "data"
    #: In an AUTH exchange (334 challenges).
    AUTH = "auth"
    #: STARTTLS answered; waiting for the handshake.
    TLS = "tls"
    #: QUIT answered or the session ended: nothing more is read.
    CLOSED = "closed"


class _Pending(enum.Enum):
    NONE = 0
    SENDER = 1
    RECIPIENT = 2
    MESSAGE = 3
    AUTH = 4


# Module-level names for the members: an enum member looked up on its
# class costs an attribute lookup through the enum's metaclass, in every
# pass of the loops below.
_CONNECTED: Final = State.CONNECTED
_READY: Final = State.READY
_TRANSACTION: Final = State.TRANSACTION
_DATA: Final = State.DATA
_AUTH: Final = State.AUTH
_TLS: Final = State.TLS
_CLOSED: Final = State.CLOSED
_P_NONE: Final = _Pending.NONE
_P_SENDER: Final = _Pending.SENDER
_P_RECIPIENT: Final = _Pending.RECIPIENT
_P_MESSAGE: Final = _Pending.MESSAGE
_P_AUTH: Final = _Pending.AUTH


class SMTPServerConnection:
    """One ESMTP server session as a state machine.

    Call order, for the glue::

        data_to_send() (the greeting)
        [receive_data(bytes) -> next_event()* -> accept()/refuse() ...
         -> data_to_send()]*  [tls_started()] [timed_out()]

    While an event waits for ``accept``/``refuse`` the core reads no more
    commands; ``waiting`` says so (the glue should pause reading meanwhile).
    When ``closing`` is True the glue writes what is left and closes.

    Args:
        hostname: The server's name, for the greeting and replies.
        limits: Bounds and timeouts.
        tls_available: Whether STARTTLS can be offered (a certificate is set).
        tls_active: Whether the connection is already TLS (a TLS port).
        auth_mechanisms: The AUTH mechanisms to offer (none: no AUTH).
        auth_without_tls: Offer AUTH in clear text too (RFC 4954 section 4
            otherwise answers 538 before TLS).
        require_auth: Refuse ``MAIL`` (530 5.7.0) until the client logged in
            (a submission server, RFC 6409).
        greeting: The text after ``220 hostname`` in the greeting.
    """

    def __init__(
        self,
        *,
        hostname: str,
        limits: SMTPLimits | None = None,
        tls_available: bool = False,
        tls_active: bool = False,
        auth_mechanisms: tuple[str, ...] = (),
        auth_without_tls: bool = False,
        require_auth: bool = False,
        greeting: str = "ESMTP torsion",
    ) -> None:
        if auth_mechanisms:
            unknown = set(auth_mechanisms) - set(AUTH_MECHANISMS)
            if unknown:
                raise ValueError(f"unknown AUTH mechanisms: {sorted(unknown)}")
        elif require_auth:
            raise ValueError("require_auth needs auth_mechanisms")
        self.hostname = hostname
        self.limits = limits if limits is not None else SMTPLimits()
        self.tls_available = tls_available
        self.tls_active = tls_active
        self.auth_mechanisms = auth_mechanisms
        self.auth_without_tls = auth_without_tls
        self.require_auth = require_auth
        self.state = _CONNECTED
        #: The name the client gave in EHLO/HELO (None before).
        self.helo: str | None = None
        #: Whether the client said EHLO (not HELO).
        self.esmtp = False
        #: The user name the client logged in as (None before AUTH).
        self.authenticated_as: str | None = None
        #: Replies refused so far (for ``max_errors``).
        self.errors = 0
        #: Commands read so far (for ``max_commands``).
        self.commands = 0
        self.closing = False
        self._out: list[bytes] = [f"220 {hostname} {greeting}\r\n".encode()]
        self._buffer = b""
        self._discarding = False  # inside an over-long command line
        self._events: deque[Event] = deque()
        self._pending = _P_NONE
        self._envelope: Envelope | None = None
        self._recipients: list[EmailAddress] = []
        self._pending_recipient: EmailAddress | None = None
        # DATA
        self._parts: list[bytes] = []
        self._size = 0
        self._line_start = True
        self._too_big = False
        self._too_long = False
        self._bad_newline = False
        # AUTH
        self._auth_mechanism = ""
        self._auth_step: list[str] = []
        self._challenge = b""

    # -- what the glue reads ----------------------------------------------------

    @property
    def waiting(self) -> bool:
        """Whether an event waits for ``accept``/``refuse`` (or for TLS)."""
        return self._pending is not _P_NONE or self.state is _TLS

    @property
    def timeout(self) -> float | None:
        """Seconds the client has to send its next bytes (None: no timeout now).

        None while the server itself is busy (an event awaits its answer):
        the client is not the one keeping the session waiting.
        """
        if self.closing or self._pending is not _P_NONE or self.state is _TLS:
            return None
        if self.state is _DATA:
            return self.limits.data_timeout
        return self.limits.command_timeout

    def data_to_send(self) -> bytes:
        """Return the bytes to write to the client now (and forget them)."""
        out, self._out = self._out, []
        return b"".join(out)

    def next_event(self) -> Event | None:
        """Return the next event for the glue, or None."""
        return self._events.popleft() if self._events else None

    # -- what the glue tells ----------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Take bytes from the client (any split) and handle what they complete.

        After ``StartTLSRequested``, pass only bytes that came through TLS:
        they are held until ``tls_started``. (Bytes that arrived with the
        STARTTLS command, in clear text, were already dropped.)
        """
        if self.state is _CLOSED or self.closing:
            return
        self._buffer += data
        self._process()

    def accept(self) -> None:
        """Accept what the pending event asked about; its success reply is sent.

        Raises:
            RuntimeError: No event waits for an answer.
        """
        if self.closing:
            return  # shut down meanwhile: nothing more is said
        pending, self._pending = self._pending, _P_NONE
        if pending is _P_RECIPIENT:
            assert self._pending_recipient is not None
            self._recipients.append(self._pending_recipient)
            self._pending_recipient = None
            self._out.append(_RECIPIENT_OK)
        elif pending is _P_SENDER:
            self.state = _TRANSACTION
            self._out.append(_SENDER_OK)
        elif pending is _P_MESSAGE:
            self._reset_transaction()
            self._out.append(_MESSAGE_OK)
        elif pending is _P_AUTH:
            self.state = _READY
            self._reply(235, "2.7.0", "Authentication successful")
        else:
            raise RuntimeError("no event is waiting for an answer")
        self._process()

    def accept_auth(self, username: str) -> None:
        """Accept the pending AUTH as ``username`` (235).

        Raises:
            RuntimeError: No AUTH event waits for an answer.
        """
        if self.closing:
            return
        if self._pending is not _P_AUTH:
            raise RuntimeError("no AUTH is waiting for an answer")
        self.authenticated_as = username
        self.accept()

    def refuse(self, error: SMTPReplyError) -> None:
        """Refuse what the pending event asked about with ``error``'s reply.

        A refused message ends its transaction; a refused recipient only
        itself; a refused sender leaves no transaction.

        Raises:
            RuntimeError: No event waits for an answer.
        """
        if self.closing:
            return
        pending, self._pending = self._pending, _P_NONE
        if pending is _P_NONE:
            raise RuntimeError("no event is waiting for an answer")
        if pending is _P_SENDER:
            self._reset_transaction()
        elif pending is _P_RECIPIENT:
            self._pending_recipient = None
        elif pending is _P_MESSAGE:
            self._reset_transaction()
        elif pending is _P_AUTH:
            self.state = _READY
        self._error(error.code, error.enhanced, error.text)
        self._process()

    def tls_started(self) -> None:
        """The TLS handshake after STARTTLS succeeded: start afresh.

        RFC 3207 section 4.2: the server forgets everything the client said
        before (EHLO name, transaction, AUTH) and waits for a new EHLO.
        """
        if self.state is not _TLS:
            raise RuntimeError("STARTTLS was not answered")
        self.tls_active = True
        self.state = _CONNECTED
        self.helo = None
        self.esmtp = False
        self.authenticated_as = None
        self._reset_transaction()
        self._process()

    def timed_out(self) -> None:
        """The client took longer than ``timeout``: say 421 and close."""
        self._close(421, "4.4.2", f"{self.hostname} Timeout exceeded, closing connection")

    def shut_down(self) -> None:
        """The server is stopping: say 421 (RFC 5321 section 3.8) and close."""
        self._close(421, "4.3.2", f"{self.hostname} Service shutting down, closing connection")

    def connection_lost(self) -> None:
        """The connection is gone: whatever was under way is dropped."""
        self.state = _CLOSED
        self._events.clear()
        self._parts = []
        self._buffer = b""

    # -- reading ----------------------------------------------------------------

    def _process(self) -> None:
        # Runs until an event waits for its answer (``waiting``), the
        # session closes, or the buffer holds nothing whole.
        while self._pending is _P_NONE and not self.closing:
            state = self.state
            if state is _DATA:
                if not self._read_data():
                    return
                continue
            if state is _CLOSED or state is _TLS or not self._buffer:
                return
            line = self._read_line()
            if line is None:
                return
            if self.state is _AUTH:
                self._auth_line(line)
            else:
                self._command(line)

    def _read_line(self) -> bytes | None:
        # The next whole command line, without its CRLF; None when none is
        # complete yet. Refused lines are answered here and skipped.
        while not self.closing:
            limit = (
                self.limits.max_auth_line if self.state is _AUTH else self.limits.max_command_line
            )
            buf = self._buffer
            end = buf.find(b"\n")
            if end < 0:
                if len(buf) >= limit:
                    # Drop an over-long line as it comes; answer at its end.
                    self._discarding = True
                    self._buffer = b""
                return None
            self._buffer = buf[end + 1 :]
            if self._discarding or end + 1 > limit:
                self._discarding = False
                self._error(500, "5.5.2", "Line too long")
            elif end == 0 or buf[end - 1] != 0x0D:
                # RFC 5321 section 2.3.8: lines end with CRLF, nothing else.
                self._error(500, "5.5.2", "Bare LF received; lines must end with CRLF")
            else:
                return buf[: end - 1]
        return None

    def _read_data(self) -> bool:
        """Consume message data; return whether progress was made."""
        buf = self._buffer
        if not buf:
            return False
        if self._line_start and buf[:1] == b".":
            if buf[:3] == b".\r\n":
                self._buffer = buf[3:]
                self._end_of_data()
                return True
            if len(buf) < 3 and b".\r\n".startswith(buf):
                return False
        end = buf.find(_END_OF_DATA)
        if end >= 0:
            self._take(buf[: end + 2])
            self._buffer = buf[end + 5 :]
            self._end_of_data()
            return True
        last = buf.rfind(b"\r\n")
        if last >= 0:
            self._take(buf[: last + 2])
            self._buffer = buf[last + 2 :]
            return True
        if len(buf) > self.limits.max_text_line:
            # A line too long, still going: count it and drop all but its
            # last octet (a CR whose LF may come next).
            self._too_long = True
            self._take(buf[:-1])
            self._buffer = buf[-1:]
            return True
        return False

    def _take(self, region: bytes) -> None:
        # ``region`` is whole lines (ending CRLF) or, for an over-long line,
        # a piece of one; dot-unstuff it, check it, count it, keep it.
        limits = self.limits
        if len(region) > limits.max_text_line and region.endswith(b"\r\n"):
            lines = region.split(b"\r\n")
            crlf = len(lines) - 1  # the split found each CRLF: no count needed
            if max(map(len, lines)) + 2 > limits.max_text_line:
                self._too_long = True
        else:
            crlf = region.count(b"\r\n")
        if region.count(b"\n") != crlf or region.count(b"\r") != crlf:
            self._bad_newline = True
        if self._line_start and region[:1] == b".":
            region = region[1:]
        region = region.replace(b"\r\n.", b"\r\n")
        self._line_start = region.endswith(b"\r\n")
        self._size += len(region)
        if self._size > limits.max_message_size:
            self._too_big = True
            self._parts = []
        if not self._too_big:
            self._parts.append(region)

    def _end_of_data(self) -> None:
        data = b"".join(self._parts)
        self._parts = []
        assert self._envelope is not None
        envelope = self._envelope
        if self._too_big:
            self._reset_transaction()
            self._error(552, "5.3.4", "Message size exceeds fixed maximum message size")
        elif self._too_long:
            self._reset_transaction()
            self._error(
                554, "5.6.0", f"Message has a line over {self.limits.max_text_line} octets"
            )
        elif self._bad_newline and self.limits.bare_newlines == "reject":
            self._reset_transaction()
            self._error(554, "5.6.0", "Message has a bare CR or LF; lines must end with CRLF")
        else:
            envelope = Envelope(
                sender=envelope.sender,
                recipients=tuple(self._recipients),
                body=envelope.body,
                smtputf8=envelope.smtputf8,
                declared_size=envelope.declared_size,
                auth=envelope.auth,
            )
            self.state = _TRANSACTION
            self._pending = _P_MESSAGE
            self._events.append(MessageReceived(envelope=envelope, data=data))

    # -- commands ---------------------------------------------------------------

    def _command(self, raw: bytes) -> None:
        self.commands += 1
        if self.commands > self.limits.max_commands:
            self._close(421, "4.7.0", f"{self.hostname} Too many commands, closing connection")
            return
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            self._error(500, "5.5.2", "Command is not valid UTF-8")
            return
        if _CONTROL.search(raw) is not None:
            self._error(500, "5.5.2", "Control characters in command")
            return
        verb, _, argument = line.partition(" ")
        handler = _HANDLERS.get(verb.upper())
        if handler is None:
            self._error(500, "5.5.2", "Command unrecognized")
            return
        handler(self, argument)

    def _helo(self, argument: str, *, esmtp: bool) -> None:
        name = argument.strip(" ")
        if not name or not _is_helo_name(name):
            self._error(
                501, "5.5.4", "Syntax: EHLO hostname" if esmtp else "Syntax: HELO hostname"
            )
            return
        self._reset_transaction()
        self.helo = name
        self.esmtp = esmtp
        self.state = _READY
        if not esmtp:
            self._reply(250, None, self.hostname)
            return
        self._out.append(
            _ehlo_reply(
                self.hostname,
                self.limits.max_message_size,
                self.tls_available and not self.tls_active,
                self.auth_mechanisms if self._auth_offered() else (),
            )
        )

    def _auth_offered(self) -> bool:
        return bool(self.auth_mechanisms) and (self.tls_active or self.auth_without_tls)

    def _cmd_ehlo(self, argument: str) -> None:
        self._helo(argument, esmtp=True)

    def _cmd_helo(self, argument: str) -> None:
        self._helo(argument, esmtp=False)

    def _cmd_mail(self, argument: str) -> None:
        if self.state is _CONNECTED:
            self._error(503, "5.5.1", "Send EHLO or HELO first")
            return
        if self.state is _TRANSACTION:
            self._error(503, "5.5.1", "Nested MAIL command")
            return
        if self.require_auth and self.authenticated_as is None:
            self._error(530, "5.7.0", "Authentication required")
            return
        if argument[:5].upper() != "FROM:":
            self._error(501, "5.5.4", "Syntax: MAIL FROM:<address>")
            return
        try:
            # Some clients put a space after the colon; RFC 5321 does not,
            # but nothing is ambiguous about taking it.
            sender, rest = parse_path(argument[5:].lstrip(" "), utf8=True, null=True)
            params = parse_parameters(rest)
        except AddressError as exc:
            self._error(501, "5.1.7", f"Bad sender address syntax: {exc}")
            return
        if params and not self.esmtp:
            self._error(555, "5.5.4", "MAIL parameters need EHLO")
            return
        body: str | None = None
        size: int | None = None
        smtputf8 = False
        auth: str | None = None
        for key, value in params.items():
            if key == "SIZE":
                if value is None or not value.isdigit() or len(value) > 20:
                    self._error(501, "5.5.4", "Syntax: SIZE=<octets>")
                    return
                size = int(value)
                if size > self.limits.max_message_size:
                    self._error(552, "5.3.4", "Message size exceeds fixed maximum message size")
                    return
            elif key == "BODY":
                body = (value or "").upper()
                if body not in ("7BIT", "8BITMIME"):
                    self._error(501, "5.5.4", "BODY is 7BIT or 8BITMIME")
                    return
            elif key == "SMTPUTF8" and value is None:
                smtputf8 = True
            elif key == "AUTH" and value is not None:
                # RFC 4954 section 5: trusted only from an authenticated
                # client; from others it is dropped (treated as <>).
                if self.authenticated_as is not None:
                    auth = _xtext_decode(value)
            else:
                self._error(555, "5.5.4", f"MAIL parameter {key} not recognized")
                return
        if sender is not None and not smtputf8 and not sender.is_ascii:
            self._error(553, "5.6.7", "Non-ASCII address needs SMTPUTF8")
            return
        self._envelope = Envelope(
            sender=sender,
            body=body,  # type: ignore[arg-type]  # checked above
            smtputf8=smtputf8,
            declared_size=size,
            auth=auth,
        )
        self._recipients = []
        self._pending = _P_SENDER
        self._events.append(SenderReceived(envelope=self._envelope))

    def _cmd_rcpt(self, argument: str) -> None:
        if self.state is not _TRANSACTION or self._envelope is None:
            self._error(503, "5.5.1", "Need MAIL before RCPT")
            return
        if argument[:3].upper() != "TO:":
            self._error(501, "5.5.4", "Syntax: RCPT TO:<address>")
            return
        try:
            recipient, rest = parse_path(argument[3:].lstrip(" "), utf8=True)
            params = parse_parameters(rest)
        except AddressError as exc:
            self._error(501, "5.1.3", f"Bad recipient address syntax: {exc}")
            return
        if params:
            self._error(555, "5.5.4", "RCPT parameters not recognized")
            return
        assert recipient is not None
        if not self._envelope.smtputf8 and not recipient.is_ascii:
            self._error(553, "5.6.7", "Non-ASCII address needs SMTPUTF8")
            return
        if len(self._recipients) >= self.limits.max_recipients:
            self._error(452, "4.5.3", "Too many recipients")
            return
        self._pending_recipient = recipient
        self._pending = _P_RECIPIENT
        envelope = Envelope(
            sender=self._envelope.sender,
            recipients=tuple(self._recipients),
            body=self._envelope.body,
            smtputf8=self._envelope.smtputf8,
            declared_size=self._envelope.declared_size,
            auth=self._envelope.auth,
        )
        self._events.append(RecipientReceived(recipient=recipient, envelope=envelope))

    def _cmd_data(self, argument: str) -> None:
        if argument:
            self._error(501, "5.5.4", "Syntax: DATA")
            return
        if self.state is not _TRANSACTION:
            self._error(503, "5.5.1", "Need MAIL before DATA")
            return
        if not self._recipients:
            self._error(554, "5.5.1", "No valid recipients")
            return
        self.state = _DATA
        self._parts = []
        self._size = 0
        self._line_start = True
        self._too_big = self._too_long = self._bad_newline = False
        self._out.append(_START_DATA)

    def _cmd_rset(self, argument: str) -> None:
        if argument:
            self._error(501, "5.5.4", "Syntax: RSET")
            return
        self._reset_transaction()
        self._reply(250, "2.0.0", "OK")

    def _cmd_noop(self, argument: str) -> None:
        self._reply(250, "2.0.0", "OK")

    def _cmd_quit(self, argument: str) -> None:
        if argument:
            self._error(501, "5.5.4", "Syntax: QUIT")
            return
        self._reply(221, "2.0.0", f"{self.hostname} Bye")
        self.closing = True
        self.state = _CLOSED

    def _cmd_vrfy(self, argument: str) -> None:
        # RFC 5321 section 3.5.3: 252 neither confirms nor denies (address
        # harvesting is why VRFY stays off).
        if not argument.strip(" "):
            self._error(501, "5.5.4", "Syntax: VRFY <address>")
            return
        self._reply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery")

    def _cmd_expn(self, argument: str) -> None:
        self._error(502, "5.5.1", "EXPN not available")

    def _cmd_bdat(self, argument: str) -> None:
        self._error(502, "5.5.1", "BDAT not implemented; use DATA")

    def _cmd_help(self, argument: str) -> None:
        self._reply(
            214,
            "2.0.0",
            "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP STARTTLS AUTH",
        )

    def _cmd_starttls(self, argument: str) -> None:
        if argument:
            self._error(501, "5.5.4", "Syntax: STARTTLS")
            return
        if self.tls_active:
            self._error(503, "5.5.1", "TLS already active")
            return
        if not self.tls_available:
            self._error(502, "5.5.1", "STARTTLS not available")
            return
        self._reply(220, "2.0.0", "Ready to start TLS")
        # Whatever came after the command in clear text is dropped: it was
        # sent before the TLS session and must not act inside it (RFC 3207
        # section 4.2, CVE-2011-0411).
        self._buffer = b""
        self.state = _TLS
        self._events.append(StartTLSRequested())

    def _cmd_auth(self, argument: str) -> None:
        mechanism, _, initial = argument.partition(" ")
        mechanism = mechanism.upper()
        if not self.auth_mechanisms:
            self._error(502, "5.5.1", "AUTH not available")
            return
        if not self.esmtp:
            self._error(503, "5.5.1", "Send EHLO first")
            return
        if self.authenticated_as is not None:
            self._error(503, "5.5.1", "Already authenticated")
            return
        if self.state is _TRANSACTION:
            self._error(503, "5.5.1", "AUTH not allowed during a mail transaction")
            return
        if not self._auth_offered():
            self._error(
                538, "5.7.11", "Encryption required for requested authentication mechanism"
            )
            return
        if mechanism not in self.auth_mechanisms:
            self._error(504, "5.5.4", "Unrecognized authentication type")
            return
        self._auth_mechanism = mechanism
        self._auth_step = []
        self.state = _AUTH
        if mechanism == "CRAM-MD5":
            if initial:
                self._auth_failed(501, "5.5.2", "CRAM-MD5 takes no initial response")
                return
            self._challenge = cram_md5_challenge(self.hostname)
            self._reply(334, None, base64.b64encode(self._challenge).decode())
        elif initial:
            self._auth_line(initial.encode())
        elif mechanism == "PLAIN":
            self._reply(334, None, "")
        else:
            self._reply(334, None, _LOGIN_USERNAME)

    def _auth_line(self, line: bytes) -> None:
        if line == b"*":
            # RFC 4954 section 4: the client cancelled the exchange.
            self._auth_failed(501, "5.0.0", "Authentication cancelled")
            return
        try:
            decoded = base64.b64decode(line, validate=True) if line != b"=" else b""
            text = decoded.decode("utf-8")
        except (binascii.Error, ValueError):
            self._auth_failed(501, "5.5.2", "Cannot decode response")
            return
        mechanism = self._auth_mechanism
        credentials: UsernamePassword | CramMD5
        if mechanism == "PLAIN":
            # RFC 4616: [authzid] NUL authcid NUL passwd.
            fields = text.split("\0")
            if len(fields) != 3 or not fields[1] or fields[0] not in ("", fields[1]):
                self._auth_failed(501, "5.5.2", "Malformed PLAIN response")
                return
            credentials = UsernamePassword(fields[1], fields[2])
        elif mechanism == "LOGIN":
            self._auth_step.append(text)
            if len(self._auth_step) == 1:
                self._reply(334, None, _LOGIN_PASSWORD)
                return
            credentials = UsernamePassword(self._auth_step[0], self._auth_step[1])
        else:
            # RFC 2195: "user hexdigest".
            user, _, digest = text.rpartition(" ")
            if not user or len(digest) != 32:
                self._auth_failed(501, "5.5.2", "Malformed CRAM-MD5 response")
                return
            credentials = CramMD5(user, self._challenge, digest)
        self._auth_step = []
        self._pending = _P_AUTH
        self._events.append(AuthReceived(mechanism=mechanism, credentials=credentials))

    def _auth_failed(self, code: int, enhanced: str, text: str) -> None:
        self.state = _READY
        self._auth_step = []
        self._error(code, enhanced, text)

    # -- replies ----------------------------------------------------------------

    def _reset_transaction(self) -> None:
        self._envelope = None
        self._recipients = []
        self._pending_recipient = None
        self._parts = []
        if self.state in (_TRANSACTION, _DATA):
            self.state = _READY

    def _reply(self, code: int, enhanced: str | None, text: str) -> None:
        if enhanced is None:
            self._out.append(f"{code} {text}\r\n".encode())
        else:
            self._out.append(f"{code} {enhanced} {text}\r\n".encode())

    def _error(self, code: int, enhanced: str, text: str) -> None:
        self._reply(code, enhanced, text)
        self.errors += 1
        if self.errors >= self.limits.max_errors:
            self._close(421, "4.7.0", f"{self.hostname} Too many errors, closing connection")

    def _close(self, code: int, enhanced: str, text: str) -> None:
        if self.closing:
            return
        self._reply(code, enhanced, text)
        self.closing = True
        self.state = _CLOSED
        self._pending = _P_NONE
        self._events.clear()
        self._parts = []
        self._buffer = b""


@functools.lru_cache(maxsize=64)
def _ehlo_reply(
    hostname: str, max_size: int, starttls: bool, auth_mechanisms: tuple[str, ...]
) -> bytes:
    # The same few answers for every session of a server: built once.
    lines = [hostname, "PIPELINING", f"SIZE {max_size}", "8BITMIME", "SMTPUTF8"]
    lines.append("ENHANCEDSTATUSCODES")
    if starttls:
        lines.append("STARTTLS")
    if auth_mechanisms:
        lines.append("AUTH " + " ".join(auth_mechanisms))
    lines.append("HELP")
    last = len(lines) - 1
    return "".join(
        f"250{' ' if i == last else '-'}{line}\r\n" for i, line in enumerate(lines)
    ).encode()


def _is_helo_name(name: str) -> bool:
    # A domain or an address literal (RFC 5321 section 4.1.1.1), taken
    # leniently (underscores, no dots) but never with characters that
    # could break the Received: header it is written into.
    return len(name) <= 255 and _HELO_NAME.fullmatch(name) is not None


def _xtext_decode(value: str) -> str:
    # RFC 3461 section 4: "+XX" is the octet XX in hex.
    out: list[str] = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "+" and i + 2 < len(value) + 0 and _is_hex(value[i + 1 : i + 3]):
            out.append(chr(int(value[i + 1 : i + 3], 16)))
            i += 3
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _is_hex(text: str) -> bool:
    return len(text) == 2 and all(c in "0123456789ABCDEFabcdef" for c in text)


_HANDLERS: Final = {
    "EHLO": SMTPServerConnection._cmd_ehlo,
    "HELO": SMTPServerConnection._cmd_helo,
    "MAIL": SMTPServerConnection._cmd_mail,
    "RCPT": SMTPServerConnection._cmd_rcpt,
    "DATA": SMTPServerConnection._cmd_data,
    "RSET": SMTPServerConnection._cmd_rset,
    "NOOP": SMTPServerConnection._cmd_noop,
    "QUIT": SMTPServerConnection._cmd_quit,
    "VRFY": SMTPServerConnection._cmd_vrfy,
    "EXPN": SMTPServerConnection._cmd_expn,
    "BDAT": SMTPServerConnection._cmd_bdat,
    "HELP": SMTPServerConnection._cmd_help,
    "STARTTLS": SMTPServerConnection._cmd_starttls,
    "AUTH": SMTPServerConnection._cmd_auth,
}
