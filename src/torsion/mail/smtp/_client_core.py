"""The SMTP client's sans-IO core: replies in, commands out, no sockets, no clock.

``ReplyParser`` turns the server's bytes into ``Reply`` objects (multi-line
replies joined, RFC 3463 enhanced status codes split off, every length and
count bounded). ``ClientSession`` drives one mail transaction from the
greeting to ``QUIT``: EHLO (HELO when EHLO is refused), STARTTLS, AUTH,
``MAIL``/``RCPT``/``DATA`` (pipelined when the server offers PIPELINING,
RFC 2920) and the dot-stuffed message. It asks its glue for the two things
it cannot do itself, through the events it returns: write bytes, and start
TLS. It also says how long the current wait may last (RFC 5321 section
4.5.3.2), for the glue to arm a timer; the core never reads a clock.

Call order, for the glue::

    receive_data* [-> tls_started -> receive_data*] -> (finished or failed)
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from torsion.mail.smtp._errors import SMTPError

__all__ = [
    "AuthMechanism",
    "Capabilities",
    "ClientEvent",
    "ClientSession",
    "ClientStartTLS",
    "ClientWrite",
    "DeliveryStatus",
    "RecipientOutcome",
    "Reply",
    "ReplyParser",
    "SMTPClientError",
    "STARTTLSError",
    "SendResult",
    "TLSMode",
    "domain_of",
    "dot_stuff",
]

# RFC 5321 section 4.5.3.1.5: a reply line is at most 512 octets with its
# CRLF. Servers exceed it in EHLO texts; allow some room, but bound it.
MAX_REPLY_LINE: Final = 2048
# No sane reply (EHLO's included) has more lines than this.
MAX_REPLY_LINES: Final = 128
# RFC 5321 section 4.5.3.2's minimum timeouts, in seconds.
TIMEOUT_GREETING: Final = 300.0
TIMEOUT_MAIL: Final = 300.0
TIMEOUT_RCPT: Final = 300.0
TIMEOUT_DATA_INIT: Final = 120.0
TIMEOUT_DATA_BLOCK: Final = 180.0
TIMEOUT_DATA_TERM: Final = 600.0
TIMEOUT_OTHER: Final = 300.0
TIMEOUT_QUIT: Final = 30.0

_ENHANCED: Final = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?: |$)")


class SMTPClientError(SMTPError):
    """A connection-level failure: no transaction could be completed.

    Per-recipient refusals are not raised: they are outcomes in the
    ``SendResult``. This is raised when the session itself failed: the
    greeting was a refusal, STARTTLS was required and not available, AUTH
    was refused, the server broke the protocol or went silent.

    Attributes:
        reply: The server's reply that ended the session, if one did.
    """

    def __init__(self, message: str, reply: Reply | None = None) -> None:
        super().__init__(message if reply is None else f"{message}: {reply}")
        self.reply = reply

    @property
    def permanent(self) -> bool:
        """Whether the server said it will never work (a 5xx reply)."""
        return self.reply is not None and self.reply.code >= 500


class STARTTLSError(SMTPClientError):
    """The TLS handshake after STARTTLS failed (an untrusted certificate, say).

    A relay doing opportunistic TLS may try the same server again in clear.
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """One SMTP reply, all of its lines.

    Attributes:
        code: The three-digit reply code.
        lines: The text of each line, without code or separator.
        enhanced: The RFC 3463 enhanced status code of the first line
            (``"5.1.1"``), or "" when the server gave none.
    """

    code: int
    lines: tuple[str, ...]
    enhanced: str = ""

    @property
    def text(self) -> str:
        """The lines joined with newlines, enhanced codes removed."""
        return "\n".join(self.lines)

    def __str__(self) -> str:
        enhanced = f" {self.enhanced}" if self.enhanced else ""
        return f"{self.code}{enhanced} {self.text}".rstrip()


class ReplyParser:
    """Splits the server's bytes into replies; no I/O.

    Args:
        max_line: The longest reply line accepted, without its CRLF.
        max_lines: The most lines one reply may have.
    """

    def __init__(
        self, *, max_line: int = MAX_REPLY_LINE, max_lines: int = MAX_REPLY_LINES
    ) -> None:
        self.max_line = max_line
        self.max_lines = max_lines
        self._buffer = bytearray()
        self._code = 0
        self._lines: list[str] = []

    def receive_data(self, data: bytes) -> list[Reply]:
        """Feed bytes; return the replies they complete, in order.

        Raises:
            SMTPClientError: The bytes are not SMTP replies, or too long.
        """
        self._buffer += data
        replies: list[Reply] = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > self.max_line + 1:
                    raise SMTPClientError("reply line too long")
                return replies
            raw = bytes(self._buffer[:end]).rstrip(b"\r")
            del self._buffer[: end + 1]
            if len(raw) > self.max_line:
                raise SMTPClientError("reply line too long")
            reply = self._line(raw)
            if reply is not None:
                replies.append(reply)

    def _line(self, raw: bytes) -> Reply | None:
        # RFC 5321 section 4.2: Reply-code [ SP / "-" textstring ] CRLF.
        if len(raw) < 3 or not raw[:3].isdigit() or (len(raw) > 3 and raw[3:4] not in b" -"):
            raise SMTPClientError(f"not an SMTP reply line: {raw[:80]!r}")
        code = int(raw[:3])
        if not 200 <= code <= 599:
            raise SMTPClientError(f"reply code out of range: {code}")
        if self._lines and code != self._code:
            raise SMTPClientError("the lines of a reply have different codes")
        self._code = code
        # Text is ASCII by RFC 5321; SMTPUTF8 servers may send UTF-8.
        self._lines.append(raw[4:].decode("utf-8", "replace"))
        if len(self._lines) > self.max_lines:
            raise SMTPClientError("reply has too many lines")
        if raw[3:4] == b"-":
            return None
        lines, self._lines = self._lines, []
        return _make_reply(code, lines)


def _make_reply(code: int, lines: list[str]) -> Reply:
    enhanced = ""
    match = _ENHANCED.match(lines[0])
    # RFC 3463 section 2: the class must agree with the reply code's.
    if match is not None and int(match.group(1)) == code // 100:
        enhanced = match.group(0).strip()
        stripped = []
        for line in lines:
            each = _ENHANCED.match(line)
            stripped.append(line[each.end() :] if each is not None else line)
        lines = stripped
    return Reply(code=code, lines=tuple(lines), enhanced=enhanced)


@dataclass(frozen=True, slots=True, kw_only=True)
class Capabilities:
    """What an EHLO reply says the server can do (RFC 5321 section 4.1.1.1).

    Attributes:
        keywords: Each extension's keyword, upper-cased, with its parameters.
    """

    keywords: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_reply(cls, reply: Reply) -> Capabilities:
        """Read the extensions from a 250 reply to EHLO (its first line is the greeting)."""
        keywords: dict[str, tuple[str, ...]] = {}
        for line in reply.lines[1:]:
            words = line.split()
            if words:
                keywords[words[0].upper()] = tuple(words[1:])
        return cls(keywords=keywords)

    def __contains__(self, keyword: str) -> bool:
        return keyword.upper() in self.keywords

    @property
    def size_limit(self) -> int | None:
        """The SIZE limit (RFC 1870), 0 for none declared, None without SIZE."""
        params = self.keywords.get("SIZE")
        if params is None:
            return None
        if params and params[0].isdigit():
            return int(params[0])
        return 0

    @property
    def auth_mechanisms(self) -> frozenset[str]:
        """The SASL mechanisms offered with AUTH (RFC 4954), upper-cased."""
        return frozenset(m.upper() for m in self.keywords.get("AUTH", ()))


class TLSMode(enum.Enum):
    """Whether to use STARTTLS (RFC 3207)."""

    REQUIRED = "required"
    OPPORTUNISTIC = "opportunistic"
    NONE = "none"


class AuthMechanism(enum.Enum):
    """The SASL mechanisms the client can use, best first."""

    CRAM_MD5 = "CRAM-MD5"
    PLAIN = "PLAIN"
    LOGIN = "LOGIN"


class DeliveryStatus(enum.Enum):
    """What became of one recipient."""

    ACCEPTED = "accepted"
    TEMPORARY = "temporary"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True, kw_only=True)
class RecipientOutcome:
    """The outcome for one recipient.

    Attributes:
        recipient: The address as given.
        status: Accepted, failed for now (retry later), or refused for good.
        reply: The server's reply that decided it (for a failure that the
            client decided itself, a reply it made up, as RFC 3464's
            ``Diagnostic-Code`` would say).
    """

    recipient: str
    status: DeliveryStatus
    reply: Reply


@dataclass(frozen=True, slots=True, kw_only=True)
class SendResult:
    """What one SMTP session did with a message.

    Attributes:
        outcomes: One per recipient, in the order given.
    """

    outcomes: tuple[RecipientOutcome, ...]

    def _with(self, status: DeliveryStatus) -> list[RecipientOutcome]:
        return [outcome for outcome in self.outcomes if outcome.status is status]

    @property
    def accepted(self) -> list[RecipientOutcome]:
        """The recipients the server took responsibility for."""
        return self._with(DeliveryStatus.ACCEPTED)

    @property
    def temporary(self) -> list[RecipientOutcome]:
        """The recipients to try again later (4xx)."""
        return self._with(DeliveryStatus.TEMPORARY)

    @property
    def refused(self) -> list[RecipientOutcome]:
        """The recipients refused for good (5xx)."""
        return self._with(DeliveryStatus.REFUSED)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientWrite:
    """Event: write these bytes to the server."""

    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientStartTLS:
    """Event: upgrade the connection to TLS now, then call ``tls_started``."""


ClientEvent = ClientWrite | ClientStartTLS


class _Phase(enum.Enum):
    GREETING = enum.auto()
    EHLO = enum.auto()
    HELO = enum.auto()
    STARTTLS = enum.auto()
    TLS = enum.auto()
    AUTH = enum.auto()
    ENVELOPE = enum.auto()
    DATA = enum.auto()
    QUIT = enum.auto()
    DONE = enum.auto()


def _header_of(message: bytes) -> bytes:
    end = message.find(b"\n\n")
    end_crlf = message.find(b"\r\n\r\n")
    ends = [e for e in (end, end_crlf) if e >= 0]
    return message[: min(ends)] if ends else message


def domain_of(address: str) -> str:
    """Return the domain of an address, lower-cased (what MX records are asked for)."""
    return address.rpartition("@")[2].lower()


def dot_stuff(message: bytes) -> bytes:
    """Make a message's bytes ready to follow DATA, with its end marker.

    Line ends become CRLF (bare LF and bare CR are not allowed in SMTP,
    RFC 5321 section 2.3.8), a line starting with "." gets a second one
    (section 4.5.2), and ``.`` on a line ends it.
    """
    lines = message.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    stuffed = [b"." + line if line.startswith(b".") else line for line in lines]
    stuffed.append(b".")
    stuffed.append(b"")
    return b"\r\n".join(stuffed)


def _made_up(code: int, enhanced: str, text: str) -> Reply:
    return Reply(code=code, lines=(text,), enhanced=enhanced)


class ClientSession:
    """One SMTP session that sends one message: the state machine.

    Args:
        helo: The name this client gives in EHLO/HELO.
        sender: The envelope sender ("" for the null sender ``<>``).
        recipients: The envelope recipients.
        message: The message, headers and body, with any line ends.
        tls: Whether STARTTLS is required, used when offered, or not used.
        tls_active: Whether the connection is already TLS (a TLS endpoint).
        auth: A user name and password to log in with, or None.
        allow_plaintext_auth: Whether PLAIN and LOGIN may be used without
            TLS (they send the password as it is).

    Raises:
        ValueError: An address cannot be written in an SMTP command.
    """

    def __init__(
        self,
        *,
        helo: str,
        sender: str,
        recipients: Sequence[str],
        message: bytes,
        tls: TLSMode = TLSMode.OPPORTUNISTIC,
        tls_active: bool = False,
        auth: tuple[str, str] | None = None,
        allow_plaintext_auth: bool = False,
    ) -> None:
        if not recipients:
            raise ValueError("a message needs at least one recipient")
        for address in (sender, *recipients):
            if any(c in address for c in "<>\r\n\0 ") or len(address) > 256:
                raise ValueError(f"not an address SMTP can carry: {address!r}")
        if any(not r for r in recipients):
            raise ValueError("a recipient cannot be empty")
        if not helo or any(c in helo for c in " \r\n\0"):
            raise ValueError(f"not a name for EHLO: {helo!r}")
        self.helo = helo
        self.sender = sender
        self.recipients = tuple(recipients)
        self.message = message
        self.tls = tls
        self.tls_active = tls_active
        self.auth = auth
        self.allow_plaintext_auth = allow_plaintext_auth
        self.capabilities = Capabilities()
        self.result: SendResult | None = None
        self.error: SMTPClientError | None = None
        self._parser = ReplyParser()
        self._phase = _Phase.GREETING
        self._esmtp = True
        self._auth_mechanism: AuthMechanism | None = None
        self._auth_step = 0
        self._expected: list[str] = []
        self._rcpt_replies: list[Reply] = []
        self._mail_reply: Reply | None = None
        self._data_sent = False
        self._timeout = TIMEOUT_GREETING

    # -- what the glue reads ----------------------------------------------------

    @property
    def done(self) -> bool:
        """Whether the session is over (``result`` or ``error`` is set)."""
        return self._phase is _Phase.DONE or self.error is not None

    @property
    def result_known(self) -> bool:
        """Whether the outcome is known (the rest is QUIT's courtesy)."""
        return self.result is not None or self.error is not None

    @property
    def timeout(self) -> float:
        """Seconds the server may take to answer what was last sent."""
        return self._timeout

    # -- what the glue calls ----------------------------------------------------

    def receive_data(self, data: bytes) -> list[ClientEvent]:
        """Feed the server's bytes; return what to do, in order.

        Raises nothing: a protocol violation sets ``error`` and ends the session.
        """
        events: list[ClientEvent] = []
        try:
            for reply in self._parser.receive_data(data):
                if self.done:
                    break
                events.extend(self._handle(reply))
        except SMTPClientError as exc:
            self._fail(exc)
        return events

    def tls_started(self) -> list[ClientEvent]:
        """The TLS handshake is done: say EHLO again (RFC 3207 section 4.2)."""
        self.tls_active = True
        self.capabilities = Capabilities()
        self._parser = ReplyParser()
        return self._send_ehlo()

    def connection_lost(self) -> None:
        """The connection closed: fail the session unless its outcome is known."""
        if not self.result_known:
            self._fail(SMTPClientError("connection closed by the server"))
        self._phase = _Phase.DONE

    def fail(self, error: SMTPClientError) -> None:
        """End the session with ``error`` (a failed TLS handshake, say)."""
        self._fail(error)

    def timed_out(self) -> None:
        """The server did not answer in time."""
        if not self.result_known:
            self._fail(SMTPClientError(f"no answer from the server in {self._timeout:g} s"))
        self._phase = _Phase.DONE

    # -- the machine --------------------------------------------------------------

    def _fail(self, error: SMTPClientError) -> None:
        if self.error is None and self.result is None:
            self.error = error
        self._phase = _Phase.DONE

    def _handle(self, reply: Reply) -> list[ClientEvent]:
        phase = self._phase
        if phase is _Phase.GREETING:
            if reply.code != 220:
                raise SMTPClientError("the server refused the connection", reply)
            return self._send_ehlo()
        if phase is _Phase.EHLO:
            if reply.code == 250:
                self.capabilities = Capabilities.from_reply(reply)
                return self._after_hello()
            if 500 <= reply.code <= 502 or reply.code == 504 or reply.code == 550:
                # RFC 5321 section 3.2: fall back to HELO.
                self._esmtp = False
                self._phase = _Phase.HELO
                return [ClientWrite(data=f"HELO {self.helo}\r\n".encode())]
            raise SMTPClientError("EHLO refused", reply)
        if phase is _Phase.HELO:
            if reply.code != 250:
                raise SMTPClientError("HELO refused", reply)
            return self._after_hello()
        if phase is _Phase.STARTTLS:
            if reply.code == 220:
                self._phase = _Phase.TLS
                return [ClientStartTLS()]
            if self.tls is TLSMode.REQUIRED:
                raise SMTPClientError("STARTTLS refused", reply)
            return self._after_tls()
        if phase is _Phase.AUTH:
            return self._auth_reply(reply)
        if phase is _Phase.ENVELOPE:
            return self._envelope_reply(reply)
        if phase is _Phase.DATA:
            return self._data_reply(reply)
        if phase is _Phase.QUIT:
            self._phase = _Phase.DONE
            return []
        raise SMTPClientError(f"unexpected reply: {reply}")

    def _send_ehlo(self) -> list[ClientEvent]:
        self._phase = _Phase.EHLO
        self._timeout = TIMEOUT_OTHER
        return [ClientWrite(data=f"EHLO {self.helo}\r\n".encode())]

    def _after_hello(self) -> list[ClientEvent]:
        if not self.tls_active and self.tls is not TLSMode.NONE:
            if "STARTTLS" in self.capabilities:
                self._phase = _Phase.STARTTLS
                return [ClientWrite(data=b"STARTTLS\r\n")]
            if self.tls is TLSMode.REQUIRED:
                raise SMTPClientError("the server does not offer STARTTLS")
        return self._after_tls()

    def _after_tls(self) -> list[ClientEvent]:
        if self.auth is not None:
            return self._start_auth()
        return self._start_envelope()

    # -- AUTH (RFC 4954) ----------------------------------------------------------

    def _start_auth(self) -> list[ClientEvent]:
        assert self.auth is not None
        offered = self.capabilities.auth_mechanisms
        secure = self.tls_active or self.allow_plaintext_auth
        for mechanism in AuthMechanism:
            if mechanism.value in offered and (mechanism is AuthMechanism.CRAM_MD5 or secure):
                break
        else:
            if not offered:
                raise SMTPClientError("the server does not offer AUTH")
            raise SMTPClientError(
                "no AUTH mechanism to use: "
                + ("none in common" if secure else "PLAIN and LOGIN need TLS")
            )
        self._auth_mechanism = mechanism
        self._auth_step = 0
        self._phase = _Phase.AUTH
        user, password = self.auth
        if mechanism is AuthMechanism.PLAIN:
            # RFC 4616: authzid NUL authcid NUL passwd, as the initial response.
            token = _b64(b"\0" + user.encode() + b"\0" + password.encode())
            return [ClientWrite(data=b"AUTH PLAIN " + token + b"\r\n")]
        return [ClientWrite(data=f"AUTH {mechanism.value}\r\n".encode())]

    def _auth_reply(self, reply: Reply) -> list[ClientEvent]:
        assert self.auth is not None
        if reply.code == 235:
            return self._start_envelope()
        if reply.code != 334:
            raise SMTPClientError("authentication failed", reply)
        user, password = self.auth
        self._auth_step += 1
        if self._auth_mechanism is AuthMechanism.CRAM_MD5 and self._auth_step == 1:
            # RFC 2195: user SP hex(HMAC-MD5(password, challenge)).
            challenge = _unb64(reply.lines[0])
            digest = hmac.new(password.encode(), challenge, hashlib.md5).hexdigest()
            return [ClientWrite(data=_b64(f"{user} {digest}".encode()) + b"\r\n")]
        if self._auth_mechanism is AuthMechanism.LOGIN and self._auth_step <= 2:
            answer = user if self._auth_step == 1 else password
            return [ClientWrite(data=_b64(answer.encode()) + b"\r\n")]
        # A challenge we have no answer for: cancel the exchange (RFC 4954 section 4).
        raise SMTPClientError("unexpected AUTH challenge", reply)

    # -- the transaction ----------------------------------------------------------

    def _refuse_all(self, reply: Reply, status: DeliveryStatus) -> list[ClientEvent]:
        self.result = SendResult(
            outcomes=tuple(
                RecipientOutcome(recipient=r, status=status, reply=reply) for r in self.recipients
            )
        )
        return self._quit()

    def _quit(self) -> list[ClientEvent]:
        self._phase = _Phase.QUIT
        # The outcome is known: QUIT's reply is a courtesy, not worth minutes.
        self._timeout = TIMEOUT_QUIT
        return [ClientWrite(data=b"QUIT\r\n")]

    def _start_envelope(self) -> list[ClientEvent]:
        caps = self.capabilities
        params: list[str] = []
        limit = caps.size_limit if self._esmtp else None
        if limit is not None:
            # RFC 1870 section 6: a fixed limit is known before sending.
            if limit and len(self.message) > limit:
                return self._refuse_all(
                    _made_up(552, "5.3.4", f"message size exceeds the server's limit of {limit}"),
                    DeliveryStatus.REFUSED,
                )
            params.append(f"SIZE={len(self.message)}")
        if any(byte > 0x7F for byte in self.message):
            if self._esmtp and "8BITMIME" in caps:
                params.append("BODY=8BITMIME")
            else:
                # RFC 6152 section 3: no 8-bit data to a server that did not
                # offer 8BITMIME; converting to 7 bits is not done here.
                return self._refuse_all(
                    _made_up(554, "5.6.3", "8-bit message and no 8BITMIME at the server"),
                    DeliveryStatus.REFUSED,
                )
        if not all(address.isascii() for address in (self.sender, *self.recipients)):
            if self._esmtp and "SMTPUTF8" in caps:
                params.append("SMTPUTF8")
            else:
                # RFC 6531 section 3.2: such a message cannot be sent there.
                return self._refuse_all(
                    _made_up(553, "5.6.7", "non-ASCII address and no SMTPUTF8 at the server"),
                    DeliveryStatus.REFUSED,
                )
        elif self._esmtp and "SMTPUTF8" in caps and not _header_of(self.message).isascii():
            # RFC 6532 header fields in UTF-8: said so where the server can
            # take it; elsewhere they go as 8-bit data (8BITMIME, above).
            params.append("SMTPUTF8")
        mail = " ".join([f"MAIL FROM:<{self.sender}>", *params]) + "\r\n"
        commands = [mail.encode()]
        self._expected = ["MAIL"]
        self._rcpt_replies = []
        self._mail_reply = None
        self._phase = _Phase.ENVELOPE
        self._timeout = TIMEOUT_MAIL
        if self._esmtp and "PIPELINING" in caps:
            # RFC 2920 section 3.1: MAIL, every RCPT and DATA in one group.
            for recipient in self.recipients:
                commands.append(f"RCPT TO:<{recipient}>\r\n".encode())
                self._expected.append("RCPT")
            commands.append(b"DATA\r\n")
            self._expected.append("DATA")
        return [ClientWrite(data=b"".join(commands))]

    def _envelope_reply(self, reply: Reply) -> list[ClientEvent]:
        expected = self._expected.pop(0)
        pipelined = bool(self._expected) or expected == "DATA"
        if expected == "MAIL":
            self._mail_reply = reply
            if reply.code != 250 and not pipelined:
                return self._mail_refused(reply)
            if not pipelined:
                self._timeout = TIMEOUT_RCPT
                self._expected = ["RCPT"]
                return [ClientWrite(data=f"RCPT TO:<{self.recipients[0]}>\r\n".encode())]
            return []
        if expected == "RCPT":
            self._rcpt_replies.append(reply)
            if pipelined:
                return []
            if len(self._rcpt_replies) < len(self.recipients):
                self._expected = ["RCPT"]
                recipient = self.recipients[len(self._rcpt_replies)]
                return [ClientWrite(data=f"RCPT TO:<{recipient}>\r\n".encode())]
            if not any(r.code in (250, 251) for r in self._rcpt_replies):
                return self._finish(None)
            self._expected = ["DATA"]
            self._timeout = TIMEOUT_DATA_INIT
            return [ClientWrite(data=b"DATA\r\n")]
        # The reply to DATA.
        mail_reply = self._mail_reply
        assert mail_reply is not None
        accepted = any(r.code in (250, 251) for r in self._rcpt_replies)
        if reply.code == 354:
            if mail_reply.code != 250 or not accepted:
                # RFC 2920 section 3.1: DATA accepted although nobody can
                # receive: end it at once with an empty message.
                self._phase = _Phase.DATA
                self._data_sent = False
                self._timeout = TIMEOUT_DATA_TERM
                return [ClientWrite(data=b".\r\n")]
            self._phase = _Phase.DATA
            self._data_sent = True
            self._timeout = TIMEOUT_DATA_TERM
            return [ClientWrite(data=dot_stuff(self.message))]
        if mail_reply.code != 250:
            return self._mail_refused(mail_reply)
        if not accepted:
            return self._finish(None)
        # DATA itself refused: every accepted recipient gets its reply.
        return self._finish(reply)

    def _mail_refused(self, reply: Reply) -> list[ClientEvent]:
        status = DeliveryStatus.REFUSED if reply.code >= 500 else DeliveryStatus.TEMPORARY
        return self._refuse_all(reply, status)

    def _data_reply(self, reply: Reply) -> list[ClientEvent]:
        mail_reply = self._mail_reply
        assert mail_reply is not None
        if not self._data_sent:
            if mail_reply.code != 250:
                return self._mail_refused(mail_reply)
            return self._finish(None)
        return self._finish(reply)

    def _finish(self, final: Reply | None) -> list[ClientEvent]:
        outcomes = []
        for recipient, rcpt in zip(self.recipients, self._rcpt_replies, strict=True):
            decided = rcpt
            if rcpt.code in (250, 251) and final is not None:
                decided = final
            if decided.code in (250, 251):
                status = DeliveryStatus.ACCEPTED
            elif decided.code >= 500:
                status = DeliveryStatus.REFUSED
            else:
                status = DeliveryStatus.TEMPORARY
            outcomes.append(RecipientOutcome(recipient=recipient, status=status, reply=decided))
        self.result = SendResult(outcomes=tuple(outcomes))
        return self._quit()


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except ValueError as exc:
        raise SMTPClientError(f"AUTH challenge is not base64: {text[:80]!r}") from exc
