"""The IMAP4rev1 client as a sans-IO core: commands out, the server's responses in as events.

``IMAP4ClientConnection`` frames the server's bytes into responses (lines
with their ``{n}`` literals inline, RFC 3501 section 4.3), parses each
into an event (``UntaggedResponse``, ``TaggedResponse``,
``ContinuationRequest``) and writes commands with tags, sending a
synchronising literal only after the server's continuation request (or at
once with LITERAL+, RFC 7888). Every buffer is
bounded by ``ClientLimits``; bytes that are not IMAP raise
``IMAPProtocolError`` and nothing else.

The typed results the client hands back (``MailboxState``, ``ListEntry``,
``FetchResult`` with its ``MessageEnvelope``) are read from those events
here too, so that other I/O worlds can use them.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

from torsion.mail.imap._reader import Cursor, IMAPError
from torsion.mail.imap._responses import ResponseCode

__all__ = [
    "ClientLimits",
    "CommandResult",
    "ContinuationRequest",
    "EnvelopeAddress",
    "FetchResult",
    "IMAP4ClientConnection",
    "IMAPProtocolError",
    "IMAPReplyError",
    "ListEntry",
    "LiteralArgument",
    "MailboxState",
    "MessageEnvelope",
    "ResponseEvent",
    "ResponseValue",
    "TaggedResponse",
    "UntaggedResponse",
    "atoms",
    "fetch_results",
    "nstring_text",
    "quote",
    "replace_state",
    "state_with_code",
]

#: A parsed response value: NIL, a number, an atom, a string's octets, or a list.
ResponseValue = None | int | str | bytes | tuple["ResponseValue", ...]

# RFC 3501 section 9 (and RFC 7888): a line that ends in a literal's size.
_LITERAL_END = re.compile(rb"\{([0-9]{1,20})(\+?)\}\Z")
_QUOTED = re.compile(rb'"((?:[^"\\\r\n]|\\["\\])*)"')
_ATOM = re.compile(rb'[^(){ \x00-\x1f\x7f"\]\[]+')
_NUMBER = re.compile(rb"[0-9]{1,20}\Z")
_FETCH_NAME = re.compile(rb"[A-Za-z0-9.\-]+")
_ORIGIN = re.compile(rb"<[0-9]{1,10}>")
_TAG = re.compile(rb"[^(){ \x00-\x1f\x7f-\xff%*\"\\+]+")
_UNTAGGED_NUMBER = re.compile(rb"([0-9]{1,10}) ")
_STATUSES = frozenset({"OK", "NO", "BAD", "BYE", "PREAUTH"})
_SAFE_QUOTED = re.compile(rb"[\x20-\x7e]*\Z")


class IMAPProtocolError(IMAPError):
    """The server's bytes are not IMAP (or are beyond the client's bounds)."""


class IMAPReplyError(IMAPError):
    """The server answered a command with NO or BAD (or the greeting was BYE).

    Attributes:
        status: ``"NO"``, ``"BAD"`` or ``"BYE"``.
        code: The response code (``AUTHENTICATIONFAILED``, ``TRYCREATE``...), or None.
        text: The human-readable text.
    """

    def __init__(self, status: str, code: ResponseCode | None, text: str) -> None:
        shown = f"[{code.name}] " if code is not None else ""
        super().__init__(f"{status} {shown}{text}")
        self.status = status
        self.code = code
        self.text = text


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientLimits:
    """Bounds on what the client buffers from the server.

    Attributes:
        max_line: Octets of one line (between literals).
        max_literal: Octets of one literal (a message fetched whole).
        max_response: Octets of one response, lines and literals together.
        max_depth: How deeply parenthesised lists may nest (BODYSTRUCTURE).
    """

    max_line: int = 1 << 20
    max_literal: int = 256 << 20
    max_response: int = 512 << 20
    max_depth: int = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class UntaggedResponse:
    """An untagged response (``* ...``).

    Attributes:
        name: Upper case: ``EXISTS``, ``FETCH``, ``CAPABILITY``, ``LIST``,
            ``OK``, ``BYE``...
        number: The message number or count before the name (EXISTS,
            RECENT, EXPUNGE, FETCH), else None.
        values: What follows the name, parsed (for FETCH one list of names
            and values; for status responses empty).
        code: A status response's code, else None.
        text: A status response's text, else empty.
    """

    name: str
    number: int | None = None
    values: tuple[ResponseValue, ...] = ()
    code: ResponseCode | None = None
    text: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaggedResponse:
    """The response that completes a command.

    Attributes:
        tag: The command's tag.
        status: ``"OK"``, ``"NO"`` or ``"BAD"``.
        code: Its response code, or None.
        text: Its text.
    """

    tag: str
    status: str
    code: ResponseCode | None = None
    text: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ContinuationRequest:
    """The server's ``+`` line: it waits for a literal, a SASL answer or DONE.

    Attributes:
        text: What followed the ``+`` (base64 for a SASL challenge).
    """

    text: str = ""


ResponseEvent = UntaggedResponse | TaggedResponse | ContinuationRequest


@dataclass(frozen=True, slots=True)
class LiteralArgument:
    """A command argument sent as a literal (``{n}`` then its octets).

    Attributes:
        data: The octets.
    """

    data: bytes


def quote(value: str | bytes) -> bytes | LiteralArgument:
    """Return ``value`` as an IMAP string: quoted when it can be, else a literal."""
    raw = value.encode("utf-8") if isinstance(value, str) else value
    if _SAFE_QUOTED.match(raw) and len(raw) <= 1000:
        return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return LiteralArgument(raw)


@dataclass(slots=True)
class _Parts:
    chunks: deque[bytes] = field(default_factory=deque)


class IMAP4ClientConnection:
    """The client's side of one IMAP connection, without I/O.

    Feed the server's bytes to ``receive_data``; write what ``data_to_send``
    returns after each call to ``receive_data`` or ``command``.

    Args:
        limits: Bounds on what the server may make the client buffer.
        tag_prefix: Tags are this prefix and a counter.
    """

    def __init__(self, *, limits: ClientLimits | None = None, tag_prefix: str = "T") -> None:
        self.limits = limits or ClientLimits()
        self.literal_plus = False
        self._prefix = tag_prefix
        self._counter = 0
        self._buffer = bytearray()
        self._response = bytearray()
        self._literal_left = 0
        self._scanned = 0
        self._outgoing = bytearray()
        # Commands whose synchronising literals wait for a continuation, in order.
        self._waiting: deque[_Parts] = deque()
        self._broken = False

    # -- commands ------------------------------------------------------------------------

    def command(self, *arguments: bytes | str | LiteralArgument) -> str:
        """Queue a command; return its tag.

        Args:
            arguments: The verb and its arguments, already in IMAP syntax
                (``str`` is ASCII; ``quote`` makes strings), joined by spaces.
        """
        self._counter += 1
        tag = f"{self._prefix}{self._counter:04d}"
        chunks: deque[bytes] = deque()
        current = bytearray(tag.encode("ascii"))
        for argument in arguments:
            current += b" "
            if isinstance(argument, LiteralArgument):
                size = len(argument.data)
                if self.literal_plus:
                    current += b"{%d+}\r\n" % size + argument.data
                else:
                    current += b"{%d}\r\n" % size
                    chunks.append(bytes(current))
                    current = bytearray(argument.data)
            else:
                current += argument.encode("ascii") if isinstance(argument, str) else argument
        current += b"\r\n"
        chunks.append(bytes(current))
        if self._waiting:
            # An earlier command still waits for a continuation: keep order.
            self._waiting.append(_Parts(chunks))
        else:
            self._outgoing += chunks.popleft()
            if chunks:
                self._waiting.append(_Parts(chunks))
        return tag

    def send_line(self, line: bytes) -> None:
        """Queue a bare line (a SASL answer, ``DONE`` to end IDLE)."""
        self._outgoing += line + b"\r\n"

    def data_to_send(self) -> bytes:
        """Return (and forget) the bytes to write to the server."""
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    # -- responses -------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[ResponseEvent]:
        """Take the server's bytes; return the responses they complete.

        Raises:
            IMAPProtocolError: The bytes are not IMAP or break a limit; the
                connection cannot go on.
        """
        if self._broken:
            raise IMAPProtocolError("the connection already failed")
        self._buffer += data
        events: list[ResponseEvent] = []
        try:
            while True:
                response = self._next_response()
                if response is None:
                    break
                event = self._parse(response)
                if isinstance(event, ContinuationRequest) and self._waiting:
                    self._continue()
                else:
                    events.append(event)
        except IMAPProtocolError:
            self._broken = True
            raise
        return events

    def _continue(self) -> None:
        head = self._waiting[0]
        self._outgoing += head.chunks.popleft()
        if head.chunks:
            return
        self._waiting.popleft()
        # Commands queued behind it go out now, up to the next that must wait.
        while self._waiting:
            held = self._waiting[0]
            self._outgoing += held.chunks.popleft()
            if held.chunks:
                return
            self._waiting.popleft()

    def _next_response(self) -> bytes | None:
        limits = self.limits
        while True:
            if self._literal_left:
                take = min(self._literal_left, len(self._buffer))
                self._response += self._buffer[:take]
                del self._buffer[:take]
                self._literal_left -= take
                if self._literal_left:
                    return None
            # Search only what came since the last look (a CR may end it).
            end = self._buffer.find(b"\r\n", self._scanned)
            if end < 0:
                if len(self._buffer) > limits.max_line:
                    raise IMAPProtocolError(f"a response line over {limits.max_line} octets")
                self._scanned = max(0, len(self._buffer) - 1)
                return None
            self._scanned = 0
            if end > limits.max_line:
                raise IMAPProtocolError(f"a response line over {limits.max_line} octets")
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 2]
            self._response += line
            if len(self._response) > limits.max_response:
                raise IMAPProtocolError(f"a response over {limits.max_response} octets")
            match = _LITERAL_END.search(line)
            if match is None:
                response = bytes(self._response)
                self._response.clear()
                return response
            size = int(match.group(1))
            if size > limits.max_literal or len(self._response) + size > limits.max_response:
                raise IMAPProtocolError(f"a literal of {size} octets is over the limit")
            self._response += b"\r\n"
            self._literal_left = size

    def _parse(self, response: bytes) -> ResponseEvent:
        if response[:1] == b"+":
            return ContinuationRequest(text=_text(response[2:] if response[1:2] == b" " else b""))
        parser = _Parser(response, self.limits.max_depth)
        if parser.accept(b"* "):
            return parser.untagged()
        match = _TAG.match(response)
        if match is None:
            raise IMAPProtocolError(f"a response without a tag: {response[:80]!r}")
        parser.position = match.end()
        tag = match.group(0).decode("ascii")
        parser.expect(b" ")
        status = parser.atom().upper()
        if status not in ("OK", "NO", "BAD"):
            raise IMAPProtocolError(f"a tagged response that is not OK, NO or BAD: {status!r}")
        code, text = parser.status_rest()
        return TaggedResponse(tag=tag, status=status, code=code, text=text)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


class _Parser(Cursor):
    r"""A cursor over one response (literals inline) reading the response grammar.

    The server's atoms may hold octets a client's may not (8-bit text, ``%``,
    ``*``, ``\``) and its quoted strings any octet but CR and LF: the client
    takes what servers send and fails only on what cannot be framed.
    """

    def __init__(self, data: bytes, max_depth: int) -> None:
        super().__init__(data)
        self.max_depth = max_depth

    def error(self, message: str) -> IMAPProtocolError:
        """Return the protocol error for ``message``, showing where it went wrong."""
        shown = self.data[:80]
        return IMAPProtocolError(f"{message} at octet {self.position} of {shown!r}")

    def quoted_pattern(self) -> re.Pattern[bytes]:
        """Return the lenient quoted-string pattern responses are read with."""
        return _QUOTED

    def atom(self) -> str:
        """Read an atom as the server writes them (``]`` and ``[`` end it)."""
        return _text(self.token(_ATOM, "an atom"))

    def status_rest(self) -> tuple[ResponseCode | None, str]:
        """Read ``[SP "[" code "]"] [SP text]`` after a status word."""
        if self.at_end():
            return None, ""
        self.expect(b" ")
        code = None
        if self.accept(b"["):
            close = self.data.find(b"]", self.position)
            if close < 0:
                raise self.error("a response code without ']'")
            inner = _text(self.data[self.position : close])
            self.position = close + 1
            name, _, value = inner.partition(" ")
            code = ResponseCode(name.upper(), value)
            self.accept(b" ")
        return code, _text(self.data[self.position :])

    def untagged(self) -> UntaggedResponse:
        number = None
        match = _UNTAGGED_NUMBER.match(self.data, self.position)
        if match is not None:
            number = int(match.group(1))
            self.position = match.end()
        name = self.atom().upper()
        if number is None and name in _STATUSES:
            code, text = self.status_rest()
            return UntaggedResponse(name=name, code=code, text=text)
        if number is not None:
            if name == "FETCH":
                self.expect(b" ")
                items = self.fetch_items()
                self.end()
                return UntaggedResponse(name=name, number=number, values=items)
            self.end()
            return UntaggedResponse(name=name, number=number)
        values: list[ResponseValue] = []
        while not self.at_end():
            self.expect(b" ")
            if self.at_end():
                break  # a trailing space (seen after SEARCH with no hits)
            values.append(self.value(0))
        return UntaggedResponse(name=name, values=tuple(values))

    def end(self) -> None:
        if not self.at_end():
            raise self.error("unexpected text after the response")

    def value(self, depth: int) -> ResponseValue:
        char = self.peek()
        if char == b"(":
            if depth >= self.max_depth:
                raise self.error("lists nested too deeply")
            self.position += 1
            items: list[ResponseValue] = []
            while not self.accept(b")"):
                # Lists of lists (addresses, multipart bodies) have no space
                # between their members: ``((...)(...))``.
                if items and not (self.peek() == b"(" and self.data[self.position - 1] == 41):
                    self.expect(b" ")
                if self.at_end():
                    raise self.error("a list without ')'")
                items.append(self.value(depth + 1))
            return tuple(items)
        if self.is_string():
            return self.string()
        atom = self.atom()
        if atom.upper() == "NIL":
            return None
        if _NUMBER.match(atom.encode("ascii", "replace")):
            return int(atom)
        return atom

    def fetch_items(self) -> tuple[ResponseValue, ...]:
        """Read FETCH's list: names (``BODY[HEADER]<0>`` whole) and their values, flat."""
        self.expect(b"(")
        items: list[ResponseValue] = []
        while not self.accept(b")"):
            if items:
                self.expect(b" ")
            match = _FETCH_NAME.match(self.data, self.position)
            if match is None:
                raise self.error("expected a FETCH item name")
            self.position = match.end()
            if self.peek() == b"[":
                close = self._section_end()
                self.position = close + 1
                origin = _ORIGIN.match(self.data, self.position)
                if origin is not None:
                    self.position = origin.end()
            name = _text(self.data[match.start() : self.position]).upper()
            self.expect(b" ")
            items.extend((name, self.value(0)))
        return tuple(items)

    def _section_end(self) -> int:
        # A section may hold a list of header names, quoted or not.
        position = self.position + 1
        while position < len(self.data):
            char = self.data[position : position + 1]
            if char == b"]":
                return position
            if char == b'"':
                match = _QUOTED.match(self.data, position)
                if match is None:
                    break
                position = match.end()
                continue
            position += 1
        raise self.error("a section without ']'")


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandResult:
    """A command's outcome: the untagged responses seen while it ran and its tagged OK.

    Attributes:
        responses: The untagged responses, in order.
        code: The tagged OK's response code, or None.
        text: Its text.
    """

    responses: tuple[UntaggedResponse, ...]
    code: ResponseCode | None
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MailboxState:
    r"""What SELECT or EXAMINE told of a mailbox (RFC 3501 section 6.3.1).

    Attributes:
        exists: The number of messages.
        recent: The number with ``\Recent``.
        uidvalidity: The UIDVALIDITY, or None if the server did not say.
        uidnext: The next UID, or None.
        unseen: The number of the first unseen message, or None.
        flags: The flags defined in the mailbox.
        permanent_flags: The flags that can be stored for good.
        read_only: Whether the mailbox was opened read-only.
    """

    exists: int = 0
    recent: int = 0
    uidvalidity: int | None = None
    uidnext: int | None = None
    unseen: int | None = None
    flags: tuple[str, ...] = ()
    permanent_flags: tuple[str, ...] = ()
    read_only: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ListEntry:
    r"""One mailbox from LIST or LSUB.

    Attributes:
        name: Its name, decoded from modified UTF-7.
        delimiter: The hierarchy delimiter, or None for a flat name.
        attributes: Its attributes (``\HasNoChildren``, ``\Noselect``, ``\Sent``...).
    """

    name: str
    delimiter: str | None
    attributes: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvelopeAddress:
    """An address in an ENVELOPE (RFC 3501 section 7.4.2).

    Attributes:
        name: The display name, or None.
        mailbox: The local part (or a group's name), or None.
        host: The domain, or None (a group's start or end).
    """

    name: str | None
    mailbox: str | None
    host: str | None

    @property
    def address(self) -> str:
        """The address as ``mailbox@host`` (or whichever part there is)."""
        if self.mailbox is None or self.host is None:
            return self.mailbox or ""
        return f"{self.mailbox}@{self.host}"


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageEnvelope:
    """A message's ENVELOPE: its main header fields, parsed by the server.

    Attributes:
        date: The Date field's text, or None.
        subject: The Subject (as sent, possibly RFC 2047 encoded), or None.
        from_: From's addresses.
        sender: Sender's addresses.
        reply_to: Reply-To's addresses.
        to: To's addresses.
        cc: Cc's addresses.
        bcc: Bcc's addresses.
        in_reply_to: In-Reply-To, or None.
        message_id: Message-ID, or None.
    """

    date: str | None
    subject: str | None
    from_: tuple[EnvelopeAddress, ...]
    sender: tuple[EnvelopeAddress, ...]
    reply_to: tuple[EnvelopeAddress, ...]
    to: tuple[EnvelopeAddress, ...]
    cc: tuple[EnvelopeAddress, ...]
    bcc: tuple[EnvelopeAddress, ...]
    in_reply_to: str | None
    message_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchResult:
    """One message's FETCH data.

    Attributes:
        number: Its message sequence number.
        items: Each item by its upper-case name as the server wrote it
            (``UID``, ``FLAGS``, ``BODY[]``, ``BODY[HEADER.FIELDS (SUBJECT)]``,
            ``ENVELOPE``, ``BODYSTRUCTURE`` as nested tuples...).
    """

    number: int
    items: dict[str, ResponseValue] = field(default_factory=dict)

    @property
    def uid(self) -> int | None:
        """The UID, if fetched."""
        value = self.items.get("UID")
        return value if isinstance(value, int) else None

    @property
    def flags(self) -> tuple[str, ...] | None:
        """The flags, if fetched."""
        value = self.items.get("FLAGS")
        return atoms(value) if isinstance(value, tuple) else None

    def body(self, section: str = "") -> bytes | None:
        """Return ``BODY[section]`` (``BODY[]`` is the whole message), if fetched."""
        value = self.items.get(f"BODY[{section.upper()}]")
        return value if isinstance(value, bytes) else None

    @property
    def envelope(self) -> MessageEnvelope | None:
        """The ENVELOPE, parsed, if fetched."""
        value = self.items.get("ENVELOPE")
        if not isinstance(value, tuple) or len(value) != 10:
            return None
        text = [nstring_text(v) for v in value]
        lists = [_addresses(v) for v in value]
        return MessageEnvelope(
            date=text[0],
            subject=text[1],
            from_=lists[2],
            sender=lists[3],
            reply_to=lists[4],
            to=lists[5],
            cc=lists[6],
            bcc=lists[7],
            in_reply_to=text[8],
            message_id=text[9],
        )


def nstring_text(value: ResponseValue) -> str | None:
    """Return a string (or number) as text, NIL as None."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str | int):
        return str(value)
    return None


def _addresses(value: ResponseValue) -> tuple[EnvelopeAddress, ...]:
    if not isinstance(value, tuple):
        return ()
    out = []
    for item in value:
        if isinstance(item, tuple) and len(item) == 4:
            out.append(
                EnvelopeAddress(
                    name=nstring_text(item[0]),
                    mailbox=nstring_text(item[2]),
                    host=nstring_text(item[3]),
                )
            )
    return tuple(out)


def atoms(value: ResponseValue) -> tuple[str, ...]:
    """Return a list's members as text (flags, capabilities, attributes)."""
    if not isinstance(value, tuple):
        return ()
    return tuple(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in value)


def fetch_results(result: CommandResult) -> dict[int, FetchResult]:
    """Return the FETCH data among a command's untagged responses, by UID."""
    by_uid: dict[int, FetchResult] = {}
    for response in result.responses:
        if response.name != "FETCH" or response.number is None:
            continue
        values = response.values
        items = {str(name): value for name, value in zip(values[::2], values[1::2], strict=False)}
        # The server answers BODY.PEEK[...] as BODY[...] (RFC 3501 section 7.4.2).
        fetched = FetchResult(number=response.number, items=items)
        uid = fetched.uid
        if uid is not None:
            previous = by_uid.get(uid)
            if previous is not None:
                merged = {**previous.items, **items}
                fetched = FetchResult(number=response.number, items=merged)
            by_uid[uid] = fetched
    return by_uid


def replace_state(state: MailboxState, **changes: object) -> MailboxState:
    """Return ``state`` with some fields changed."""
    values = {name: getattr(state, name) for name in MailboxState.__dataclass_fields__}
    values.update(changes)
    return MailboxState(**values)


def state_with_code(state: MailboxState, code: ResponseCode) -> MailboxState:
    """Return ``state`` updated by a response code of SELECT (UIDVALIDITY, UIDNEXT...)."""
    value = code.value.strip()
    if code.name in ("UIDVALIDITY", "UIDNEXT", "UNSEEN") and value.isdigit():
        return replace_state(state, **{code.name.lower(): int(value)})
    if code.name == "PERMANENTFLAGS":
        return replace_state(state, permanent_flags=tuple(value.strip("()").split()))
    return state
