"""The IMAP4rev1 client: ``connect_imap`` and the protocol whose methods are the commands.

``IMAP4Client`` is thin glue around ``IMAP4ClientConnection`` (the sans-IO
core): each method writes a tagged command and returns its typed result
once the tagged response arrives; commands may overlap. Untagged
responses are handed to every command in flight (each takes what it asked
for) and to an ``IdleSession`` while one runs. Every command has a reply
timeout, except IDLE, which waits as long as its caller does.
"""

from __future__ import annotations

import base64
import builtins
import re
import ssl
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Literal
from typing import Protocol as TypingProtocol

from torsion.defer import Deferred
from torsion.internet import Clock
from torsion.mail._client_glue import MailClientProtocol, MailClientReactor, connect_client
from torsion.mail._mutf7 import decode_modified_utf7, encode_modified_utf7
from torsion.mail.imap._client_core import (
    CommandResult,
    ContinuationRequest,
    FetchResult,
    IMAP4ClientConnection,
    IMAPProtocolError,
    IMAPReplyError,
    ListEntry,
    LiteralArgument,
    MailboxState,
    ResponseEvent,
    ResponseValue,
    TaggedResponse,
    UntaggedResponse,
    atoms,
    fetch_results,
    nstring_text,
    quote,
    replace_state,
    state_with_code,
)
from torsion.mail.imap._responses import ResponseCode, format_date_time
from torsion.mail.imap._search import SearchKey, format_search_key

__all__ = ["IMAP4Client", "IMAP4Reactor", "IdleSession", "connect_imap"]

_Argument = bytes | str | LiteralArgument
_LITERAL = re.compile(rb" ?\{([0-9]{1,10})\}\r\n")


class IMAP4Reactor(MailClientReactor, TypingProtocol):
    """What ``connect_imap`` needs from a reactor: time, TCP and TLS connections."""


def _mailbox(name: str) -> bytes | LiteralArgument:
    return quote(encode_modified_utf7(name))


def _mailbox_name(value: ResponseValue) -> str:
    raw = nstring_text(value) or ""
    try:
        return decode_modified_utf7(raw)
    except ValueError:
        return raw


def _sequence(uids: Iterable[int] | str) -> str:
    if isinstance(uids, str):
        return uids
    numbers = sorted(set(uids))
    if not numbers:
        raise ValueError("an empty set of UIDs")
    ranges: list[str] = []
    start = previous = numbers[0]
    for number in [*numbers[1:], None]:
        if number is not None and number == previous + 1:
            previous = number
            continue
        ranges.append(str(start) if start == previous else f"{start}:{previous}")
        if number is not None:
            start = previous = number
    return ",".join(ranges)


def _split_literals(data: bytes) -> list[_Argument]:
    """Cut ``format_search_key``'s output where its literals are."""
    parts: list[_Argument] = []
    position = 0
    for match in _LITERAL.finditer(data):
        if match.start() < position:
            continue
        if match.start() > position:
            parts.append(data[position : match.start()].strip(b" "))
        end = match.end() + int(match.group(1))
        parts.append(LiteralArgument(data[match.end() : end]))
        position = end
    rest = data[position:].strip(b" ")
    if rest:
        parts.append(rest)
    return parts


class _Pending:
    __slots__ = ("deferred", "on_continuation", "responses", "waits")

    def __init__(
        self, on_continuation: Callable[[ContinuationRequest], None] | None, *, waits: bool
    ) -> None:
        self.deferred: Deferred[CommandResult] = Deferred()
        self.responses: list[UntaggedResponse] = []
        self.on_continuation = on_continuation
        self.waits = waits


class IMAP4Client(MailClientProtocol[UntaggedResponse, ResponseEvent]):
    """One IMAP4rev1 client connection (RFC 3501, with IDLE, MOVE, LITERAL+, SASL-IR).

    Get one from ``connect_imap``. Each command fails with ``IMAPReplyError``
    on NO or BAD (carrying the server's code and text), with
    ``IMAPProtocolError`` when the server breaks the protocol (the
    connection is then closed), ``TimeoutError`` when it does not answer in
    time and ``ConnectionResetError`` when the connection is lost
    (``IMAPReplyError`` with status ``BYE`` when the server said why).

    Args:
        clock: Runs the reply timer (the reactor).
        timeout: Seconds to wait for each reply.

    Attributes:
        greeted: Fires with the greeting (an untagged OK or PREAUTH).
        closed: Fires once the connection is closed.
        mailbox: What the last SELECT or EXAMINE told, kept current by
            EXISTS, RECENT and EXPUNGE responses; None when none is selected.
    """

    protocol_name = "IMAP"
    protocol_error = IMAPProtocolError

    def __init__(self, clock: Clock, *, timeout: float = 60.0) -> None:
        super().__init__(clock, timeout=timeout)
        self.core = IMAP4ClientConnection()
        self.mailbox: MailboxState | None = None
        self._pending: dict[str, _Pending] = {}
        self._capabilities: tuple[str, ...] | None = None
        self._idle: IdleSession | None = None
        self._bye: UntaggedResponse | None = None

    # -- connection events -------------------------------------------------------------

    def _receive(self, data: bytes) -> list[ResponseEvent]:
        return self.core.receive_data(data)

    def _events_done(self) -> None:
        self._flush()

    def _lost_error(self) -> Exception:
        bye = self._bye
        if bye is not None:
            # The server said why it closed (RFC 3501 section 7.1.5): pass it on.
            return IMAPReplyError("BYE", bye.code, bye.text)
        return self._closed_error()

    def _after_lost(self) -> None:
        if self._idle is not None:
            self._idle._end()

    def _awaiting_reply(self) -> bool:
        # IDLE waits as long as its caller does: it is not under the timer.
        return any(p.waits for p in self._pending.values())

    def _flush(self) -> None:
        data = self.core.data_to_send()
        if data and not self._gone:
            self.transport.write(data)

    def _event(self, event: ResponseEvent) -> None:
        if isinstance(event, TaggedResponse):
            self._tagged(event)
        elif isinstance(event, ContinuationRequest):
            waiting = [p for p in self._pending.values() if p.on_continuation is not None]
            if waiting:
                assert waiting[0].on_continuation is not None
                waiting[0].on_continuation(event)
        elif not self.greeted.called:
            if event.name in ("OK", "PREAUTH"):
                self._note_code(event.code)
                self.greeted.callback(event)
            else:
                self.greeted.errback(IMAPReplyError(event.name, event.code, event.text))
                self.transport.close()
        else:
            self._untagged(event)

    def _untagged(self, event: UntaggedResponse) -> None:
        self._note_code(event.code)
        if event.name == "CAPABILITY":
            self._set_capabilities(atoms(event.values))
        elif event.name == "BYE":
            self._bye = event
        elif self.mailbox is not None:
            if event.name == "EXISTS" and event.number is not None:
                self.mailbox = replace_state(self.mailbox, exists=event.number)
            elif event.name == "RECENT" and event.number is not None:
                self.mailbox = replace_state(self.mailbox, recent=event.number)
            elif event.name == "EXPUNGE":
                self.mailbox = replace_state(self.mailbox, exists=max(0, self.mailbox.exists - 1))
        for pending in self._pending.values():
            pending.responses.append(event)
        if self._idle is not None:
            self._idle._push(event)

    def _note_code(self, code: ResponseCode | None) -> None:
        if code is not None and code.name == "CAPABILITY":
            self._set_capabilities(tuple(code.value.split()))

    def _set_capabilities(self, names: tuple[str, ...]) -> None:
        self._capabilities = names
        # RFC 7888: with LITERAL+ a literal needs no continuation request.
        self.core.literal_plus = "LITERAL+" in self._upper_capabilities()

    def _tagged(self, event: TaggedResponse) -> None:
        pending = self._pending.pop(event.tag, None)
        if pending is None:
            return  # not ours: a server's mistake, harmless to drop
        if event.status == "OK":
            self._note_code(event.code)
            pending.deferred.callback(
                CommandResult(responses=tuple(pending.responses), code=event.code, text=event.text)
            )
        else:
            pending.deferred.errback(IMAPReplyError(event.status, event.code, event.text))

    def _fail_pending(self, exc: Exception) -> None:
        pending, self._pending = self._pending, {}
        for item in pending.values():
            item.deferred.errback(exc)

    # -- sending ---------------------------------------------------------------------------

    def _send(
        self,
        *arguments: _Argument,
        on_continuation: Callable[[ContinuationRequest], None] | None = None,
        waits: bool = True,
    ) -> Deferred[CommandResult]:
        if self._gone:
            return self._failed_send()
        pending = _Pending(on_continuation, waits=waits)
        tag = self.core.command(*arguments)
        self._pending[tag] = pending
        self._flush()
        self._arm()
        return pending.deferred

    def _upper_capabilities(self) -> set[str]:
        return {c.upper() for c in self._capabilities or ()}

    # -- commands ----------------------------------------------------------------------------

    async def capabilities(self) -> tuple[str, ...]:
        """Return the server's capabilities, asking CAPABILITY unless already told."""
        if self._capabilities is None:
            await self._send("CAPABILITY")
        return self._capabilities or ()

    async def has_capability(self, name: str) -> bool:
        """Return whether the server offers ``name`` (case-insensitive)."""
        await self.capabilities()
        return name.upper() in self._upper_capabilities()

    async def noop(self) -> CommandResult:
        """Say NOOP (and collect what the server has to tell)."""
        return await self._send("NOOP")

    async def starttls(
        self, context: ssl.SSLContext | None = None, *, server_hostname: str | None = None
    ) -> None:
        """Upgrade to TLS with STARTTLS (RFC 3501 section 6.2.1); capabilities are asked again.

        Args:
            context: The TLS settings (``client_context()``, verifying, if None).
            server_hostname: The name the certificate must carry.
        """
        await self._send("STARTTLS")
        await self._upgrade(context, server_hostname)
        # RFC 3501 section 6.2.1: what was said before TLS is not to be trusted.
        self._capabilities = None
        self.core.literal_plus = False

    async def login(self, user: str, password: str) -> str:
        """Log in with LOGIN; return the server's text."""
        result = await self._send("LOGIN", quote(user), quote(password))
        if result.code is None or result.code.name != "CAPABILITY":
            self._capabilities = None
        return result.text

    async def authenticate_plain(self, user: str, password: str, *, authzid: str = "") -> str:
        """Log in with AUTHENTICATE PLAIN (RFC 4616), in one round trip with SASL-IR (RFC 4959).

        Returns:
            The server's text.
        """
        token = base64.b64encode(f"{authzid}\0{user}\0{password}".encode()).decode("ascii")
        sent = False

        def answer(request: ContinuationRequest) -> None:
            nonlocal sent
            # The first empty challenge asks for the initial response; any
            # other challenge PLAIN does not have: cancel (RFC 3501 6.2.2).
            self.core.send_line(b"*" if sent else token.encode("ascii"))
            sent = True

        if await self.has_capability("SASL-IR"):
            result = await self._send("AUTHENTICATE", "PLAIN", token, on_continuation=answer)
        else:
            result = await self._send("AUTHENTICATE", "PLAIN", on_continuation=answer)
        if result.code is None or result.code.name != "CAPABILITY":
            self._capabilities = None
        return result.text

    async def list(self, reference: str = "", pattern: str = "*") -> builtins.list[ListEntry]:
        """List mailboxes (LIST) whose names match ``pattern`` under ``reference``."""
        return await self._list("LIST", reference, pattern)

    async def lsub(self, reference: str = "", pattern: str = "*") -> builtins.list[ListEntry]:
        """List subscribed mailboxes (LSUB)."""
        return await self._list("LSUB", reference, pattern)

    async def _list(self, verb: str, reference: str, pattern: str) -> builtins.list[ListEntry]:
        result = await self._send(verb, _mailbox(reference), _mailbox(pattern))
        entries = []
        for response in result.responses:
            if response.name != verb or len(response.values) != 3:
                continue
            attributes, delimiter, name = response.values
            entries.append(
                ListEntry(
                    name=_mailbox_name(name),
                    delimiter=nstring_text(delimiter),
                    attributes=atoms(attributes),
                )
            )
        return entries

    async def enable(self, *capabilities: str) -> tuple[str, ...]:
        """Turn extensions on (ENABLE, RFC 5161); return those the server enabled."""
        result = await self._send("ENABLE", *capabilities)
        enabled: list[str] = []
        for response in result.responses:
            if response.name == "ENABLED":
                enabled.extend(atoms(response.values))
        return tuple(enabled)

    async def namespace(self) -> tuple[ResponseValue, ...]:
        """Ask NAMESPACE (RFC 2342): the personal, other users' and shared namespaces.

        Each is NIL (None) or a list of ``(prefix, delimiter)`` pairs.
        """
        result = await self._send("NAMESPACE")
        for response in result.responses:
            if response.name == "NAMESPACE" and len(response.values) == 3:
                return response.values
        raise IMAPProtocolError("NAMESPACE completed without a NAMESPACE response")

    async def create(self, mailbox: str) -> None:
        """Create a mailbox."""
        await self._send("CREATE", _mailbox(mailbox))

    async def delete(self, mailbox: str) -> None:
        """Delete a mailbox."""
        await self._send("DELETE", _mailbox(mailbox))

    async def select(self, mailbox: str = "INBOX", *, readonly: bool = False) -> MailboxState:
        """Open a mailbox with SELECT (EXAMINE when ``readonly``); return its state."""
        self.mailbox = None
        result = await self._send("EXAMINE" if readonly else "SELECT", _mailbox(mailbox))
        state = MailboxState(read_only=readonly)
        for response in result.responses:
            if response.name == "EXISTS" and response.number is not None:
                state = replace_state(state, exists=response.number)
            elif response.name == "RECENT" and response.number is not None:
                state = replace_state(state, recent=response.number)
            elif response.name == "FLAGS" and response.values:
                state = replace_state(state, flags=atoms(response.values[0]))
            elif response.name == "OK" and response.code is not None:
                state = state_with_code(state, response.code)
        if result.code is not None and result.code.name in ("READ-ONLY", "READ-WRITE"):
            state = replace_state(state, read_only=result.code.name == "READ-ONLY")
        self.mailbox = state
        return state

    async def status(
        self, mailbox: str, items: Sequence[str] = ("MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN")
    ) -> dict[str, int]:
        """Ask STATUS of a mailbox: each item (upper case) and its number."""
        result = await self._send("STATUS", _mailbox(mailbox), "(" + " ".join(items) + ")")
        found: dict[str, int] = {}
        for response in result.responses:
            if response.name == "STATUS" and len(response.values) == 2:
                pairs = response.values[1]
                if isinstance(pairs, tuple):
                    for name, value in zip(pairs[::2], pairs[1::2], strict=False):
                        if isinstance(name, str) and isinstance(value, int):
                            found[name.upper()] = value
        return found

    async def search(self, criteria: str | SearchKey = "ALL") -> builtins.list[int]:
        """Search the selected mailbox (UID SEARCH); return the matching UIDs.

        Args:
            criteria: The search program as IMAP writes it (``"UNSEEN FROM alice"``),
                or a ``SearchKey`` tree (strings sent as literals when need be).
        """
        if isinstance(criteria, str):
            arguments: builtins.list[_Argument] = [criteria]
        else:
            arguments = _split_literals(format_search_key(criteria))
        if any(isinstance(a, LiteralArgument) and not a.data.isascii() for a in arguments):
            arguments = ["CHARSET", "UTF-8", *arguments]
        result = await self._send("UID", "SEARCH", *arguments)
        uids: builtins.list[int] = []
        for response in result.responses:
            if response.name == "SEARCH":
                uids.extend(v for v in response.values if isinstance(v, int))
        return sorted(uids)

    async def fetch(
        self, uids: Iterable[int] | str, items: Sequence[str] | str = ("FLAGS",)
    ) -> dict[int, FetchResult]:
        """Fetch data of messages by UID (UID FETCH); return it by UID.

        Args:
            uids: The UIDs, or a sequence set as IMAP writes it (``"1:*"``).
            items: The data items (``"FLAGS"``, ``"BODY.PEEK[]"``,
                ``"ENVELOPE"``...) or a macro (``"ALL"``, ``"FAST"``).
                ``BODY.PEEK[...]`` comes back as ``BODY[...]``.
        """
        names = items if isinstance(items, str) else "(" + " ".join(items) + ")"
        result = await self._send("UID", "FETCH", _sequence(uids), names)
        return fetch_results(result)

    async def store(
        self,
        uids: Iterable[int] | str,
        flags: Iterable[str],
        *,
        action: Literal["set", "add", "remove"] = "add",
    ) -> dict[int, tuple[str, ...]]:
        """Change flags of messages by UID (UID STORE); return their flags after.

        Args:
            uids: The UIDs, or a sequence set.
            flags: The flags.
            action: Replace the flags (``set``, ``FLAGS``), add to them
                (``+FLAGS``) or remove from them (``-FLAGS``).
        """
        verb = {"set": "FLAGS", "add": "+FLAGS", "remove": "-FLAGS"}[action]
        result = await self._send(
            "UID", "STORE", _sequence(uids), verb, "(" + " ".join(flags) + ")"
        )
        return {
            uid: fetched.flags or ()
            for uid, fetched in fetch_results(result).items()
            if fetched.flags is not None
        }

    async def copy(self, uids: Iterable[int] | str, mailbox: str) -> ResponseCode | None:
        """Copy messages by UID to another mailbox (UID COPY); return COPYUID if told."""
        result = await self._send("UID", "COPY", _sequence(uids), _mailbox(mailbox))
        return result.code

    async def move(self, uids: Iterable[int] | str, mailbox: str) -> None:
        """Move messages by UID to another mailbox (UID MOVE, RFC 6851)."""
        await self._send("UID", "MOVE", _sequence(uids), _mailbox(mailbox))

    async def expunge(self) -> builtins.list[int]:
        r"""Remove the messages flagged ``\Deleted``; return the expunged sequence numbers."""
        result = await self._send("EXPUNGE")
        return [r.number for r in result.responses if r.name == "EXPUNGE" and r.number]

    async def close_mailbox(self) -> None:
        """Say CLOSE: expunge silently and leave the selected state."""
        await self._send("CLOSE")
        self.mailbox = None

    async def append(
        self,
        mailbox: str,
        message: bytes,
        flags: Iterable[str] = (),
        date: datetime | None = None,
    ) -> int | None:
        """Store a message in a mailbox (APPEND); return its UID if the server told (APPENDUID).

        The message goes as a literal: at once with LITERAL+, else after the
        server's continuation request.
        """
        arguments: builtins.list[_Argument] = ["APPEND", _mailbox(mailbox)]
        flag_list = tuple(flags)
        if flag_list:
            arguments.append("(" + " ".join(flag_list) + ")")
        if date is not None:
            arguments.append(format_date_time(date))
        arguments.append(LiteralArgument(message))
        result = await self._send(*arguments)
        if result.code is not None and result.code.name == "APPENDUID":
            words = result.code.value.split()
            if len(words) == 2 and words[1].isdigit():
                return int(words[1])
        return None

    def idle(self) -> IdleSession:
        """Wait for news with IDLE (RFC 2177): ``async with client.idle() as updates``.

        Iterating the session yields each untagged response (EXISTS,
        EXPUNGE, FETCH...) as it arrives; leaving the ``async with`` block
        (or ``IdleSession.done``) sends DONE and waits for the server's OK.
        """
        return IdleSession(self)

    async def logout(self) -> None:
        """Say LOGOUT and wait for the connection to close."""
        try:
            await self._send("LOGOUT")
        except (ConnectionResetError, IMAPReplyError):
            pass  # closed (with its BYE) before the tagged OK: logged out all the same
        finally:
            if not self._gone:
                self.transport.close()
            await self.closed


class IdleSession:
    """One IDLE command: an async iterator of untagged responses, ended by DONE."""

    def __init__(self, client: IMAP4Client) -> None:
        self._client = client
        self._queue: deque[UntaggedResponse] = deque()
        self._waiter: Deferred[None] | None = None
        self._started: Deferred[None] = Deferred()
        self._result: Deferred[CommandResult] | None = None
        self._ended = False
        self._done_sent = False

    async def __aenter__(self) -> IdleSession:
        """Send IDLE and wait for the server's continuation request."""
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Send DONE and wait for the tagged OK (unless the connection is gone)."""
        if self._result is None:
            return
        if self._client._gone:
            self._result.add_errback(_ignore)
            return
        await self.done()

    async def start(self) -> None:
        """Send IDLE and wait for the server's continuation request."""
        client = self._client
        if client._idle is not None:
            raise RuntimeError("an IDLE is already running")
        client._idle = self

        def started(request: ContinuationRequest) -> None:
            if not self._started.called:
                self._started.callback(None)

        self._result = client._send("IDLE", on_continuation=started, waits=False)

        def ended(outcome: object) -> object:
            self._end()
            if not self._started.called:
                # Refused (or cut off) before the server said it was idling.
                self._started.errback(
                    outcome
                    if isinstance(outcome, BaseException)
                    else IMAPProtocolError("IDLE completed before it began")
                )
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome

        self._result.add_both(ended)
        try:
            await self._started
        except BaseException:
            # start() raised it; the IDLE's own result holds nothing more.
            self._result.add_errback(_ignore)
            raise

    def __aiter__(self) -> IdleSession:
        """Return the session itself."""
        return self

    async def __anext__(self) -> UntaggedResponse:
        """Return the next untagged response; stop once the IDLE has ended."""
        while not self._queue:
            if self._ended:
                raise StopAsyncIteration
            self._waiter = Deferred()
            await self._waiter
        return self._queue.popleft()

    async def done(self) -> CommandResult:
        """Send DONE and return the IDLE's result."""
        assert self._result is not None, "IDLE not started"
        if not self._done_sent and not self._ended:
            self._done_sent = True
            client = self._client
            client.core.send_line(b"DONE")
            client._flush()
            # Now the server owes a tagged OK: the reply timer runs again.
            for pending in client._pending.values():
                if pending.deferred is self._result:
                    pending.waits = True
            client._arm()
        return await self._result

    def _push(self, event: UntaggedResponse) -> None:
        self._queue.append(event)
        self._wake()

    def _end(self) -> None:
        self._ended = True
        if self._client._idle is self:
            self._client._idle = None
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.called:
            waiter.callback(None)


def _ignore(exc: BaseException) -> None:
    return None


async def connect_imap(
    reactor: IMAP4Reactor,
    host: str,
    port: int = 143,
    *,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    reply_timeout: float = 60.0,
) -> IMAP4Client:
    """Connect to an IMAP server and wait for its greeting.

    Args:
        reactor: Makes the connection.
        host: The server's name or address.
        port: Its port (143; 993 for implicit TLS).
        tls: Implicit TLS (IMAPS) with these settings; for STARTTLS, connect
            in clear and call ``IMAP4Client.starttls``.
        server_hostname: The name the certificate must carry (``host`` if None).
        reply_timeout: Seconds for the connection and for each reply.

    Raises:
        IMAPReplyError: The greeting was BYE.
    """
    return await connect_client(
        reactor,
        host,
        port,
        lambda: IMAP4Client(reactor, timeout=reply_timeout),
        tls=tls,
        server_hostname=server_hostname,
        connect_timeout=reply_timeout,
    )
