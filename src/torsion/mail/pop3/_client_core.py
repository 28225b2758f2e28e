"""The POP3 client as a sans-IO core: commands out, the server's replies in as events.

Each command says what reply it expects: one status line, a multi-line
listing (CAPA, LIST, UIDL) collected whole within a bound, a message (RETR,
TOP) handed on line by line as it arrives, or a SASL exchange whose ``+``
lines are challenges (RFC 5034). Replies are matched to commands in order,
so commands may be pipelined (RFC 2449 PIPELINING).
"""

from __future__ import annotations

import enum
import re
from collections import deque
from dataclasses import dataclass

from torsion.errors import TorsionError
from torsion.mail.pop3._wire import MessageUnstuffer

__all__ = [
    "Challenge",
    "ClientEvent",
    "Greeting",
    "MessageChunk",
    "MessageEnd",
    "POP3ClientConnection",
    "POP3Error",
    "POP3ProtocolError",
    "POP3ReplyError",
    "Reply",
    "ReplyKind",
]

# RFC 2449 section 8: a response code in brackets right after the status.
_CODE = re.compile(r"\[([^\]\s]{1,40})\]")
# RFC 1939 section 7: the APOP time stamp in the greeting.
_TIMESTAMP = re.compile(rb"<[^<>\s]{1,200}>")


class POP3Error(TorsionError):
    """Something went wrong in a POP3 exchange."""


class POP3ReplyError(POP3Error):
    """The server answered ``-ERR``.

    Attributes:
        text: The reply's text after ``-ERR``.
        code: Its response code (``AUTH``, ``IN-USE``, ``SYS/TEMP``...), or None.
    """

    def __init__(self, text: str) -> None:
        super().__init__(f"-ERR {text}")
        self.text = text
        match = _CODE.match(text)
        self.code = match.group(1) if match else None


class POP3ProtocolError(POP3Error):
    """The server's bytes are not POP3 (or are beyond the client's bounds)."""


class ReplyKind(enum.Enum):
    """What a command's reply looks like."""

    SINGLE = "single"
    LISTING = "listing"
    MESSAGE = "message"
    SASL = "sasl"


@dataclass(frozen=True, slots=True, kw_only=True)
class Greeting:
    """The server's greeting.

    Attributes:
        ok: Whether it was ``+OK``.
        text: Its text.
        timestamp: The APOP time stamp in it, or None.
    """

    ok: bool
    text: str
    timestamp: bytes | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """A command's status line, and for a listing its lines.

    Attributes:
        ok: ``+OK`` or ``-ERR``.
        text: The text after the status.
        lines: A listing's lines (unstuffed, without CRLF); None otherwise.
    """

    ok: bool
    text: str
    lines: tuple[bytes, ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Challenge:
    """A SASL challenge (the server's ``+`` line), base64 decoded by the caller."""

    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageChunk:
    """Some of a message: whole lines, unstuffed, with CRLF."""

    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageEnd:
    """The message that was being received is complete."""


#: Everything the client core reports.
ClientEvent = Greeting | Reply | Challenge | MessageChunk | MessageEnd


class POP3ClientConnection:
    """One POP3 client session, with no I/O.

    Write what ``command`` returns, feed what the server sends to
    ``receive_data`` and act on the events it returns, in order.

    Args:
        max_line: The longest line taken from the server, CRLF included.
        max_listing: The most lines a listing (CAPA, LIST, UIDL) may have.
    """

    def __init__(self, *, max_line: int = 1024 * 1024, max_listing: int = 1_000_000) -> None:
        self.max_line = max_line
        self.max_listing = max_listing
        self._buffer = bytearray()
        self._greeted = False
        self._expected: deque[ReplyKind] = deque()
        # The reply under way: its kind, and a listing's lines so far.
        self._body: ReplyKind | None = None
        self._status = ""
        self._lines: list[bytes] = []
        self._unstuffer = MessageUnstuffer()

    @property
    def pending(self) -> int:
        """How many commands await their replies."""
        return len(self._expected) + (self._body is not None)

    def command(self, line: str, kind: ReplyKind = ReplyKind.SINGLE) -> bytes:
        """Return the bytes of a command and expect its reply.

        Raises:
            ValueError: The line holds a CR or LF.
        """
        if "\r" in line or "\n" in line:
            raise ValueError("a POP3 command is one line")
        self._expected.append(kind)
        return line.encode("utf-8") + b"\r\n"

    def sasl_response(self, data: bytes) -> bytes:
        """Return a line answering a SASL challenge (already base64, or ``*``)."""
        self._expected.appendleft(ReplyKind.SASL)
        return data + b"\r\n"

    def receive_data(self, data: bytes) -> list[ClientEvent]:
        """Take the server's bytes; return the events they complete.

        Raises:
            POP3ProtocolError: The bytes are not a POP3 reply, or a line is
                over ``max_line``, or a listing over ``max_listing``.
        """
        self._buffer += data
        events: list[ClientEvent] = []
        chunk: list[bytes] = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > self.max_line:
                    raise POP3ProtocolError(f"a line over {self.max_line} octets")
                break
            if end + 1 > self.max_line:
                raise POP3ProtocolError(f"a line over {self.max_line} octets")
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if line.endswith(b"\r"):
                line = line[:-1]
            if self._body is ReplyKind.MESSAGE:
                piece = self._unstuffer.line(line)
                if piece is not None:
                    chunk.append(piece)
                    continue
                if chunk:
                    events.append(MessageChunk(data=b"".join(chunk)))
                    chunk = []
                self._body = None
                events.append(MessageEnd())
                continue
            if self._body is ReplyKind.LISTING:
                piece = self._unstuffer.line(line)
                if piece is not None:
                    if len(self._lines) >= self.max_listing:
                        raise POP3ProtocolError(f"a listing over {self.max_listing} lines")
                    self._lines.append(piece[:-2])
                    continue
                self._body = None
                events.append(Reply(ok=True, text=self._status, lines=tuple(self._lines)))
                self._lines = []
                continue
            event = self._status_line(line)
            if event is not None:
                events.append(event)
        if chunk:
            events.append(MessageChunk(data=b"".join(chunk)))
        return events

    def _status_line(self, line: bytes) -> ClientEvent | None:
        # None when a listing starts: its Reply comes at its end, with its lines.
        text = line.decode("utf-8", "replace")
        if not self._greeted:
            self._greeted = True
            ok, rest = _status(text)
            match = _TIMESTAMP.search(line)
            return Greeting(ok=ok, text=rest, timestamp=match.group(0) if match else None)
        if not self._expected:
            raise POP3ProtocolError(f"a reply to no command: {text[:80]!r}")
        kind = self._expected.popleft()
        if kind is ReplyKind.SASL and (text == "+" or text.startswith("+ ")):
            return Challenge(data=line[2:])
        ok, rest = _status(text)
        if ok and kind in (ReplyKind.LISTING, ReplyKind.MESSAGE):
            self._body = kind
            self._status = rest
            self._unstuffer = MessageUnstuffer()
            if kind is ReplyKind.LISTING:
                return None
        return Reply(ok=ok, text=rest)


def _status(text: str) -> tuple[bool, str]:
    if text == "+OK" or text.startswith("+OK "):
        return True, text[4:]
    if text == "-ERR" or text.startswith("-ERR "):
        return False, text[5:]
    raise POP3ProtocolError(f"not a POP3 status line: {text[:80]!r}")
