"""The server side's incremental, bounded parser of IMAP client commands.

``CommandParser.receive_data`` takes octets as they arrive and returns
events: a parsed ``Command``, a ``ContinuationNeeded`` (the client waits for
``+`` before it sends a synchronising literal, RFC 3501 section 7.5), the
pieces of an APPEND's message (``AppendStart``, ``AppendData``...,
``AppendEnd``: the message literal is handed over in chunks, never held
whole), a ``ContinuationLine`` (a SASL response or IDLE's DONE) and
``BadCommand`` for anything the grammar refuses, carrying the tag when it
could be read (the reply is then a tagged BAD, else an untagged one).

The parser stops after any event the server must answer before the client
may go on — a synchronising literal, AUTHENTICATE, IDLE and STARTTLS — and
holds later octets until the glue calls ``resume`` (or
``expect_continuation_line``, or ``refuse_literal``). So octets a client
pipelined after STARTTLS can be dropped (``discard_buffered``) rather than
read as if they came over TLS (RFC 3501 section 6.2.1).

Every buffer is bounded: a line, a literal held in a command, a whole
command, the APPEND message, the nesting of lists and the number of
arguments; octets held while stopped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from torsion.mail.imap._commands import (
    COMMANDS,
    NO_ARGUMENTS,
    UID_COMMANDS,
    Command,
    parse_command,
    read_tag,
)
from torsion.mail.imap._reader import IMAPParseError, Reader

__all__ = [
    "AppendData",
    "AppendEnd",
    "AppendStart",
    "BadCommand",
    "CommandParser",
    "ContinuationLine",
    "ContinuationNeeded",
    "ParserEvent",
    "ParserLimits",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ContinuationNeeded:
    """The client waits for ``+`` before it sends a literal; the parser stopped.

    Send ``+ `` and call ``resume``, or refuse the command with a tagged
    reply and call ``refuse_literal``.
    """

    tag: str
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendStart:
    """APPEND's message literal begins (RFC 3501 section 6.3.11).

    Attributes:
        tag: The command's tag.
        mailbox: The target mailbox.
        flags: The flags to set on the message.
        internal_date: The date-time to give it, if the client set one.
        size: The message's octets, as announced.
        synchronizing: True when a ``ContinuationNeeded`` follows (the
            server may still refuse, with TRYCREATE for instance, and call
            ``refuse_literal``). A non-synchronising (LITERAL+) message
            comes whatever the server thinks: drop its ``AppendData`` and
            answer after ``AppendEnd``.
    """

    tag: str
    mailbox: str
    flags: tuple[str, ...]
    internal_date: datetime | None
    size: int
    synchronizing: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendData:
    """Octets of the APPEND message, in order."""

    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendEnd:
    """The APPEND message is complete and the command well-formed."""

    tag: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ContinuationLine:
    """A line read after ``expect_continuation_line`` (SASL data, DONE).

    Attributes:
        line: The line without its CRLF.
    """

    line: bytes

    @property
    def is_done(self) -> bool:
        """Whether the line is IDLE's ``DONE`` (RFC 2177, any case)."""
        return self.line.upper() == b"DONE"


@dataclass(frozen=True, slots=True, kw_only=True)
class BadCommand:
    """Bytes the grammar or a limit refused.

    Attributes:
        tag: The tag, when it could be read (reply ``tag BAD text``); None
            otherwise (reply ``* BAD text``).
        text: What was wrong, for the reply.
        fatal: The connection cannot go on: send ``* BYE`` and close. An
            APPEND in progress (after ``AppendStart``) is abandoned by any
            ``BadCommand``.
    """

    tag: str | None
    text: str
    fatal: bool = False


ParserEvent = (
    Command
    | ContinuationNeeded
    | AppendStart
    | AppendData
    | AppendEnd
    | ContinuationLine
    | BadCommand
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ParserLimits:
    """The parser's bounds.

    Attributes:
        max_line: Octets in one line with its CRLF (RFC 7162 section 4
            recommends servers take at least 8192).
        max_command: Octets in a whole command, literals included (APPEND's
            message aside).
        max_literal: Octets in one literal inside a command.
        max_nonsync_literal: Octets in a non-synchronising literal: None for
            LITERAL+ (up to ``max_literal``), 4096 for LITERAL- (RFC 7888
            section 4).
        max_append: Octets in an APPEND message.
        max_depth: Nesting of parenthesised lists.
        max_arguments: Arguments and list items in one command.
        max_buffered: Octets held while the parser is stopped.
    """

    max_line: int = 8192
    max_command: int = 65536
    max_literal: int = 65536
    max_nonsync_literal: int | None = None
    max_append: int = 64 * 1024 * 1024
    max_depth: int = 16
    max_arguments: int = 1000
    max_buffered: int = 65536

    def __post_init__(self) -> None:
        """Refuse bounds that leave no room."""
        for name in (
            "max_line",
            "max_command",
            "max_literal",
            "max_append",
            "max_depth",
            "max_arguments",
            "max_buffered",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_nonsync_literal is not None and self.max_nonsync_literal < 0:
            raise ValueError("max_nonsync_literal must not be negative")


class _Mode(Enum):
    COMMAND = "command"
    LITERAL = "literal"
    APPEND = "append"
    APPEND_TAIL = "append tail"
    DISCARD_LINE = "discard line"
    CONTINUATION = "continuation"


_LITERAL_AT_END = re.compile(rb"\{([0-9]{1,20})(\+?)\}$")
_QUOTED_ANY = re.compile(rb'"(?:[^"\\]|\\.)*"')
# Commands after which the client waits for the server before it sends more.
_TURN_COMMANDS = frozenset({"AUTHENTICATE", "IDLE", "STARTTLS"})


class CommandParser:
    """Turns a client's octets into command events, within limits.

    Args:
        limits: The bounds; the defaults suit a public server.

    Attributes:
        utf8: Set it after ``ENABLE UTF8=ACCEPT`` (RFC 6855): quoted strings
            and mailbox names may then hold UTF-8.

    Call order: ``receive_data`` any number of times; after an event that
    stops the parser (``stopped`` is True), one of ``resume``,
    ``expect_continuation_line``, ``refuse_literal`` or
    ``discard_buffered`` then ``resume``. Each returns the events found.
    """

    def __init__(self, limits: ParserLimits | None = None) -> None:
        self.limits = limits if limits is not None else ParserLimits()
        self.utf8 = False
        self._buffer = bytearray()
        self._mode = _Mode.COMMAND
        self._stopped = False
        self._after_stop = _Mode.COMMAND
        self._command = bytearray()
        self._literal_left = 0
        self._append: _PendingAppend | None = None
        self._discard_tag: str | None = None
        self._closed = False

    @property
    def stopped(self) -> bool:
        """Whether the parser waits for the glue before reading on."""
        return self._stopped

    def receive_data(self, data: bytes) -> list[ParserEvent]:
        """Take octets from the client; return the events they complete."""
        if self._closed:
            return []
        if self._stopped and len(self._buffer) + len(data) > self.limits.max_buffered:
            self._closed = True
            self._buffer.clear()
            return [BadCommand(tag=None, text="too much data sent out of turn", fatal=True)]
        self._buffer += data
        return self._run()

    def resume(self) -> list[ParserEvent]:
        """Go on reading after a stop (``+`` was sent, or the command answered)."""
        if not self._stopped:
            return []
        self._stopped = False
        self._mode = self._after_stop
        self._after_stop = _Mode.COMMAND
        return self._run()

    def expect_continuation_line(self) -> list[ParserEvent]:
        """Read the next line as a ``ContinuationLine`` (SASL data, DONE), then go on."""
        self._stopped = False
        self._after_stop = _Mode.COMMAND
        self._mode = _Mode.CONTINUATION
        return self._run()

    def refuse_literal(self) -> list[ParserEvent]:
        """Drop the command whose literal was announced; the client will not send it.

        RFC 3501 section 7.5: a tagged NO or BAD instead of ``+`` means the
        client ends the command there.
        """
        self._stopped = False
        self._command.clear()
        self._append = None
        self._after_stop = _Mode.COMMAND
        self._mode = _Mode.COMMAND
        return self._run()

    def discard_buffered(self) -> None:
        """Forget octets received but not yet read (pipelined past STARTTLS)."""
        self._buffer.clear()

    def _run(self) -> list[ParserEvent]:
        events: list[ParserEvent] = []
        while not self._stopped and not self._closed:
            progressed = self._step(events)
            if not progressed:
                break
        return events

    def _step(self, events: list[ParserEvent]) -> bool:
        mode = self._mode
        if mode is _Mode.LITERAL:
            return self._read_literal()
        if mode is _Mode.APPEND:
            return self._read_append(events)
        if mode is _Mode.DISCARD_LINE:
            return self._discard_line(events)
        end = self._buffer.find(b"\r\n", 0, self.limits.max_line)
        if end < 0:
            if len(self._buffer) >= self.limits.max_line:
                self._line_too_long(events)
                return True
            return False
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        if mode is _Mode.CONTINUATION:
            self._mode = _Mode.COMMAND
            events.append(ContinuationLine(line=line))
            return True
        if mode is _Mode.APPEND_TAIL:
            self._finish_append(line, events)
            return True
        self._take_line(line, events)
        return True

    def _discard_line(self, events: list[ParserEvent]) -> bool:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            keep_cr = self._buffer.endswith(b"\r")
            self._buffer.clear()
            if keep_cr:
                self._buffer += b"\r"
            return False
        del self._buffer[: end + 2]
        self._mode = _Mode.COMMAND
        events.append(BadCommand(tag=self._discard_tag, text="line too long"))
        return True

    def _line_too_long(self, events: list[ParserEvent]) -> None:
        if self._mode is _Mode.CONTINUATION:
            tag = None
        elif self._mode is _Mode.APPEND_TAIL and self._append is not None:
            tag = self._append.tag
            self._append = None
        else:
            tag = _read_tag(bytes(self._command) or bytes(self._buffer))
        self._command.clear()
        # Drop what is held and the rest of the line as it comes, unbuffered.
        self._discard_tag = tag
        self._mode = _Mode.DISCARD_LINE

    def _take_line(self, line: bytes, events: list[ParserEvent]) -> None:
        self._command += line
        if len(self._command) > self.limits.max_command:
            tag = _read_tag(bytes(self._command))
            self._command.clear()
            events.append(BadCommand(tag=tag, text="command too long"))
            self._expect_no_literal(line, events, tag)
            return
        literal = _trailing_literal(line)
        if literal is None:
            command = bytes(self._command)
            self._command.clear()
            events.append(self._parse(command))
            return
        size, synchronizing = literal
        tag = _read_tag(bytes(self._command))
        refusal = _check_start(bytes(self._command))
        if refusal is not None:
            # RFC 3501 section 7.5: BAD instead of "+" for a command that
            # cannot succeed, whatever its literal holds.
            self._command.clear()
            events.append(refusal)
            self._expect_no_literal(line, events, refusal.tag)
            return
        append = self._append_start(size, synchronizing)
        if isinstance(append, BadCommand):
            self._command.clear()
            events.append(append)
            self._expect_no_literal(line, events, tag)
            return
        if append is not None:
            self._command.clear()
            self._append = _PendingAppend(tag=append.tag, left=size)
            events.append(append)
            self._after_stop = _Mode.APPEND
            self._mode = _Mode.APPEND
        else:
            problem = self._literal_problem(size, synchronizing)
            if problem is not None:
                self._command.clear()
                events.append(BadCommand(tag=tag, text=problem))
                self._expect_no_literal(line, events, tag)
                return
            self._command += b"\r\n"
            self._literal_left = size
            self._after_stop = _Mode.LITERAL
            self._mode = _Mode.LITERAL
        if synchronizing:
            self._stopped = True
            events.append(ContinuationNeeded(tag=tag or "*", size=size))

    def _expect_no_literal(self, line: bytes, events: list[ParserEvent], tag: str | None) -> None:
        """After refusing a command whose line announced a literal.

        A synchronising literal is never sent once refused. A
        non-synchronising one is on its way and would be read as commands:
        the connection cannot go on (RFC 7888 section 4).
        """
        literal = _trailing_literal(line)
        if literal is not None and not literal[1]:
            self._closed = True
            self._buffer.clear()
            refused = events.pop()
            assert isinstance(refused, BadCommand)
            events.append(BadCommand(tag=refused.tag, text=refused.text, fatal=True))

    def _literal_problem(self, size: int, synchronizing: bool) -> str | None:
        limits = self.limits
        if size > limits.max_literal:
            return "literal too large"
        if (
            not synchronizing
            and limits.max_nonsync_literal is not None
            and size > limits.max_nonsync_literal
        ):
            return "non-synchronizing literal too large"
        if len(self._command) + size > limits.max_command:
            return "command too long"
        return None

    def _append_start(self, size: int, synchronizing: bool) -> AppendStart | BadCommand | None:
        """Return the start of APPEND's message if this literal is it."""
        reader = Reader(
            bytes(self._command[: self._command.rfind(b"{")]),
            max_depth=self.limits.max_depth,
            max_items=self.limits.max_arguments,
            utf8=self.utf8,
        )
        try:
            tag = read_tag(reader)
            reader.space()
            if reader.astring_atom().upper() != "APPEND":
                return None
            reader.space()
            if reader.at_end():
                return None  # The mailbox name itself is this literal.
            mailbox = reader.mailbox()
            reader.space()
            flags: tuple[str, ...] = ()
            if reader.peek() == b"(":
                flags = reader.flag_list()
                reader.space()
            when: datetime | None = None
            if reader.peek() == b'"':
                when = reader.date_time()
                reader.space()
            reader.end()
        except IMAPParseError as exc:
            return BadCommand(tag=exc.tag, text=str(exc))
        limit = self.limits.max_append
        if not synchronizing and self.limits.max_nonsync_literal is not None:
            limit = min(limit, self.limits.max_nonsync_literal)
        if size > limit:
            # RFC 7888 section 4 for LITERAL-; RFC 4469 TOOBIG-like refusal.
            return BadCommand(tag=tag, text="message too large")
        return AppendStart(
            tag=tag,
            mailbox=mailbox,
            flags=flags,
            internal_date=when,
            size=size,
            synchronizing=synchronizing,
        )

    def _read_literal(self) -> bool:
        if not self._buffer:
            return False
        taken = self._buffer[: self._literal_left]
        del self._buffer[: len(taken)]
        self._command += taken
        self._literal_left -= len(taken)
        if self._literal_left == 0:
            self._mode = _Mode.COMMAND
        return True

    def _read_append(self, events: list[ParserEvent]) -> bool:
        append = self._append
        assert append is not None
        if append.left and not self._buffer:
            return False
        taken = bytes(self._buffer[: append.left])
        del self._buffer[: len(taken)]
        append.left -= len(taken)
        if taken:
            events.append(AppendData(data=taken))
        if append.left == 0:
            self._mode = _Mode.APPEND_TAIL
        return True

    def _finish_append(self, line: bytes, events: list[ParserEvent]) -> None:
        append = self._append
        assert append is not None
        self._append = None
        self._mode = _Mode.COMMAND
        if line:
            # MULTIAPPEND (RFC 3502) is not offered: only CRLF may follow.
            events.append(BadCommand(tag=append.tag, text="unexpected text after message"))
            self._expect_no_literal(line, events, append.tag)
            return
        events.append(AppendEnd(tag=append.tag))

    def _parse(self, command: bytes) -> Command | BadCommand:
        reader = Reader(
            command,
            max_depth=self.limits.max_depth,
            max_items=self.limits.max_arguments,
            utf8=self.utf8,
        )
        try:
            parsed = parse_command(reader)
        except IMAPParseError as exc:
            return BadCommand(tag=exc.tag, text=str(exc))
        except (RecursionError, MemoryError):  # pragma: no cover - bounded by max_depth
            return BadCommand(tag=reader.tag, text="command too complex")
        if parsed.name in _TURN_COMMANDS:
            self._stopped = True
            self._after_stop = _Mode.COMMAND
        return parsed


@dataclass(slots=True, kw_only=True)
class _PendingAppend:
    tag: str
    left: int = field(default=0)


def _trailing_literal(line: bytes) -> tuple[int, bool] | None:
    """Return (size, synchronising) if ``line`` ends by announcing a literal."""
    if not line.endswith(b"}"):
        return None
    # A ``{5}`` inside a quoted string announces nothing.
    outside = _QUOTED_ANY.sub(b"", line)
    if b'"' in outside:
        return None
    match = _LITERAL_AT_END.search(outside)
    if match is None:
        return None
    return int(match.group(1)), match.group(2) != b"+"


def _check_start(command: bytes) -> BadCommand | None:
    """Refuse a command whose tag or name is wrong before its literal comes."""
    reader = Reader(command)
    try:
        tag = read_tag(reader)
        reader.space()
        name = reader.atom().upper()
        if name == "UID":
            reader.space()
            name = reader.atom().upper()
            if name not in UID_COMMANDS:
                raise reader.error(f"UID {name} is not a command")
        elif name not in COMMANDS:
            raise reader.error(f"unknown command {name}")
    except IMAPParseError as exc:
        return BadCommand(tag=exc.tag, text=str(exc))
    if name in NO_ARGUMENTS:
        return BadCommand(tag=tag, text=f"{name} takes no arguments")
    return None


def _read_tag(command: bytes) -> str | None:
    try:
        return read_tag(Reader(command))
    except IMAPParseError:
        return None
