"""The IMAP4rev1 server on a connection: the parser's glue to transport, clock, cred and store.

``IMAP4Factory`` builds one ``IMAP4Server`` per connection. The protocol
feeds what it reads to ``CommandParser`` and carries out the commands it
returns, one at a time and in order, against the user's ``MailStore`` (the
avatar a cred ``Portal`` hands out for the login). While a command waits
(a message read, an append, a login), reading is paused, so a pipelining
client's commands wait in the socket, not in memory.

A selected mailbox is seen through the session's own list of UIDs, the
message sequence numbers of RFC 3501 section 2.3.1.2. Changes to the
mailbox (this session's or another's) reach the session through the
mailbox's listener and are told to the client as untagged EXISTS, RECENT,
EXPUNGE and FETCH responses when the protocol allows: EXPUNGE never during
FETCH, STORE or SEARCH (RFC 3501 section 7.4.1), at once during IDLE
(RFC 2177).
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import enum
import logging
import re
import ssl
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from torsion.cred import (
    CramMD5,
    Portal,
    UnauthorizedLogin,
    UnhandledCredentials,
    UsernamePassword,
    cram_md5_challenge,
)
from torsion.cred import Login as CredLogin
from torsion.defer import Deferred, ensure_deferred
from torsion.internet import Address, Clock, DelayedCall, ServerTLS
from torsion.mail._mailbox import (
    SEEN,
    SYSTEM_FLAGS,
    FlagMode,
    InvalidMailboxNameError,
    Mailbox,
    MailboxChange,
    MailboxError,
    MailboxExistsError,
    MailStore,
    MessageInfo,
    MessagesAdded,
    MessagesExpunged,
    MessageTooLargeError,
    NoSuchMailboxError,
    NoSuchMessageError,
)
from torsion.mail._server_glue import (
    PLAINTEXT_MECHANISMS,
    MailServerFactory,
    MailServerProtocol,
)
from torsion.mail._session_timer import SessionTimer
from torsion.mail.imap._commands import Command, StoreAction
from torsion.mail.imap._fetch import (
    FetchItem,
    FetchMessage,
    needs_content,
    render_fetch,
    sets_seen,
)
from torsion.mail.imap._parser import (
    AppendData,
    AppendEnd,
    AppendStart,
    BadCommand,
    CommandParser,
    ContinuationLine,
    ContinuationNeeded,
    ParserEvent,
    ParserLimits,
)
from torsion.mail.imap._reader import SequenceSet
from torsion.mail.imap._responses import (
    Condition,
    ResponseCode,
    bye,
    capability,
    continuation,
    enabled,
    exists,
    expunge,
    fetch_response,
    flags,
    list_response,
    namespace,
    recent,
    search_response,
    status_response,
    tagged,
    untagged,
)
from torsion.mail.imap._search import (
    AndKey,
    DateKey,
    NotKey,
    OrKey,
    SearchKey,
    SearchMessage,
    TextKey,
    matches,
)

__all__ = ["IMAP4Factory", "IMAP4Limits", "IMAP4Server"]

log = logging.getLogger("torsion.mail.imap")

#: Capabilities offered in every state (RFC 3501 section 7.2.1 and extensions).
BASE_CAPABILITIES = (
    "IMAP4rev1",
    "LITERAL+",
    "SASL-IR",
    "IDLE",
    "UIDPLUS",
    "MOVE",
    "NAMESPACE",
    "ENABLE",
    "UNSELECT",
)

# Commands during which no EXPUNGE may be sent (RFC 3501 section 7.4.1): the
# client's sequence numbers must stay as they were.
_NO_EXPUNGE = frozenset({"FETCH", "STORE", "SEARCH"})

_STORE_MODES = {"replace": FlagMode.REPLACE, "add": FlagMode.ADD, "remove": FlagMode.REMOVE}


@dataclass(frozen=True, slots=True, kw_only=True)
class IMAP4Limits:
    """Bounds and timeouts of an IMAP server connection.

    Attributes:
        parser: The command parser's bounds (line, literal, APPEND sizes).
        login_timeout: Seconds of silence before a login closes the
            connection.
        idle_timeout: Seconds of silence after a login (RFC 3501 section
            5.4: at least 30 minutes); IDLE counts as silence too, so a
            client re-issues it before then (RFC 2177).
        max_errors: Refused commands (BAD) before the connection is closed.
        max_failed_logins: Failed logins before the connection is closed.
        max_commands: Commands in one session, or None for no bound.
        idle_refresh: Seconds between looks at the selected mailbox during
            IDLE, for changes made by other processes (a Maildir delivery);
            changes made in this process are told at once.
    """

    parser: ParserLimits = field(default_factory=ParserLimits)
    login_timeout: float = 60.0
    idle_timeout: float = 30 * 60.0
    max_errors: int = 20
    max_failed_logins: int = 3
    max_commands: int | None = None
    idle_refresh: float = 30.0

    def __post_init__(self) -> None:
        """Refuse bounds that leave no room."""
        if self.login_timeout <= 0 or self.idle_timeout <= 0 or self.idle_refresh <= 0:
            raise ValueError("timeouts must be positive")
        if self.max_errors < 1 or self.max_failed_logins < 1:
            raise ValueError("max_errors and max_failed_logins must be at least 1")
        if self.max_commands is not None and self.max_commands < 1:
            raise ValueError("max_commands must be at least 1")


class IMAP4Factory(MailServerFactory):
    """Builds the IMAP server protocol for each connection.

    Pass it as the factory of any stream listener (``listen_tcp``, or
    ``listen_tls`` for implicit TLS on port 993).

    Args:
        portal: Logs credentials in; the avatar is asked for as a
            ``MailStore``.
        clock: Tells the time (the reactor), for the idle timeouts.
        hostname: The server's name in the greeting and CRAM-MD5 challenges
            (the machine's FQDN if None).
        tls: Certificates for STARTTLS (RFC 3501 section 6.2.1); None: no
            STARTTLS.
        limits: Bounds and timeouts.
        plaintext_without_tls: Take LOGIN and AUTHENTICATE PLAIN/LOGIN
            before TLS (otherwise refused, with LOGINDISABLED advertised, as
            RFC 3501 section 6.2.3 and RFC 2595 section 3.2 ask).

    Attributes:
        auth_mechanisms: The SASL mechanisms the portal's checkers can
            verify (CRAM-MD5 for ``CramMD5``, PLAIN and LOGIN for
            ``UsernamePassword``), offered as ``AUTH=`` capabilities.
    """

    def __init__(
        self,
        portal: Portal,
        *,
        clock: Clock,
        hostname: str | None = None,
        tls: ssl.SSLContext | ServerTLS | None = None,
        limits: IMAP4Limits | None = None,
        plaintext_without_tls: bool = False,
    ) -> None:
        super().__init__(
            portal,
            clock=clock,
            hostname=hostname,
            tls=tls,
            plaintext_without_tls=plaintext_without_tls,
        )
        self.limits = limits if limits is not None else IMAP4Limits()

    def __call__(self, address: Address) -> IMAP4Server:
        """Return a new server protocol for a connection from ``address``."""
        return IMAP4Server(self)


class _State(enum.Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


class _RefusedError(Exception):
    """A command's NO or BAD, raised from its handler."""

    def __init__(self, condition: Condition, text: str, code: ResponseCode | None = None) -> None:
        super().__init__(text)
        self.condition: Condition = condition
        self.text = text
        self.code = code


def _no(text: str, code: ResponseCode | None = None) -> _RefusedError:
    return _RefusedError("NO", text, code)


def _bad(text: str) -> _RefusedError:
    return _RefusedError("BAD", text)


@dataclass(slots=True)
class _Append:
    tag: str
    mailbox: Mailbox | None
    flags: tuple[str, ...]
    internal_date: datetime | None
    refusal: _RefusedError | None = None
    data: bytearray = field(default_factory=bytearray)


@dataclass(slots=True)
class _Selected:
    """The session's view of its selected mailbox."""

    mailbox: Mailbox
    read_only: bool
    uids: list[int]
    recent: set[int]
    added: bool = False
    expunged: set[int] = field(default_factory=set)
    changed: dict[int, frozenset[str]] = field(default_factory=dict)

    def sequence(self, uid: int) -> int | None:
        """Return the message's number in this session, or None."""
        index = bisect.bisect_left(self.uids, uid)
        if index < len(self.uids) and self.uids[index] == uid:
            return index + 1
        return None


Reply = tuple[Condition, str, ResponseCode | None]
Handler = Callable[["IMAP4Server", Command], Coroutine[Any, Any, Reply]]


class IMAP4Server(MailServerProtocol):
    """One IMAP4rev1 server connection (RFC 3501 with IDLE, UIDPLUS, MOVE...).

    Build it through ``IMAP4Factory``. Commands are carried out one at a
    time, in the order they came; their replies go out in that order.

    Attributes:
        factory: The factory that built it (portal, clock, limits).
        parser: The connection's command parser.
    """

    def __init__(self, factory: IMAP4Factory) -> None:
        self.factory = factory
        self.parser = CommandParser(factory.limits.parser)
        self._state = _State.NOT_AUTHENTICATED
        self._events: deque[ParserEvent] = deque()
        self._busy = False
        self._current: Deferred[None] | None = None
        self._line_waiter: Deferred[bytes] | None = None
        self._append: _Append | None = None
        self._store: MailStore | None = None
        self._selected: _Selected | None = None
        self._idling = False
        self._tls_active = False
        self._closing = False
        self._errors = 0
        self._failed_logins = 0
        self._commands = 0
        self._timer = SessionTimer(factory.clock, self._timeout, self._timed_out)
        self._login_waiting: Deferred[Any] | None = None

    # -- connection events -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Greet the client and start the idle timer."""
        super().connection_made(transport)
        self._tls_active = transport.get_extra_info("ssl_object") is not None
        code = ResponseCode.capability(self.capabilities())
        self.transport.write(untagged("OK", "IMAP4rev1 server ready", code))
        self._timer.touch()

    def data_received(self, data: bytes) -> None:
        """Hand the bytes to the parser and carry out what it found."""
        self._timer.touch()
        self._feed(self.parser.receive_data(data))

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop what was under way, forget the mailbox and log out."""
        self._gone = True
        self._timer.stop()
        self._events.clear()
        for waiting in (self._line_waiter, self._current, self._login_waiting):
            if waiting is not None and not waiting.called:
                waiting.cancel()
        self._line_waiter = self._current = self._login_waiting = None
        self._deselect()
        self._log_out()
        self._store = None
        super().connection_lost(exc)

    # -- capabilities ----------------------------------------------------------------

    def _plaintext_allowed(self) -> bool:
        return self._tls_active or self.factory.plaintext_without_tls

    def capabilities(self) -> list[str]:
        """Return the capabilities this connection offers now."""
        names = list(BASE_CAPABILITIES)
        if self._state is _State.NOT_AUTHENTICATED:
            if self.factory.tls_context is not None and not self._tls_active:
                names.append("STARTTLS")
            if not self._plaintext_allowed():
                names.append("LOGINDISABLED")
            for mechanism in self.factory.auth_mechanisms:
                if mechanism not in PLAINTEXT_MECHANISMS or self._plaintext_allowed():
                    names.append(f"AUTH={mechanism}")
        return names

    # -- driving the commands ---------------------------------------------------------

    def _feed(self, events: list[ParserEvent]) -> None:
        self._events.extend(events)
        self._run()

    def _run(self) -> None:
        while self._events and not self._gone and not self._closing:
            event = self._events[0]
            if isinstance(event, ContinuationLine) and self._line_waiter is not None:
                self._events.popleft()
                waiter, self._line_waiter = self._line_waiter, None
                waiter.callback(event.line)
                continue
            if self._busy:
                break
            self._events.popleft()
            self._dispatch(event)
        self._update_reading()

    def _update_reading(self) -> None:
        if self._gone or self._handshaking:
            return
        self._set_reading_paused(bool(self._events) or (self._busy and self._line_waiter is None))

    def _dispatch(self, event: ParserEvent) -> None:
        if isinstance(event, Command):
            self._start(self._execute(event))
        elif isinstance(event, BadCommand):
            self._bad_command(event)
        elif isinstance(event, ContinuationNeeded):
            # A literal inside a command (LOGIN's password, a mailbox name).
            self.transport.write(continuation())
            self._events.extend(self.parser.resume())
        elif isinstance(event, AppendStart):
            self._append_start(event)
        elif isinstance(event, AppendData):
            if self._append is not None and self._append.refusal is None:
                self._append.data += event.data
        elif isinstance(event, AppendEnd):
            append, self._append = self._append, None
            if append is not None:
                self._start(self._execute_append(append))
        else:
            # A line no one waits for: the parser reads one only when asked.
            self._bad_command(BadCommand(tag=None, text="unexpected continuation"))

    def _start(self, coroutine: Coroutine[Any, Any, None]) -> None:
        self._busy = True
        d = ensure_deferred(coroutine)
        if self._busy:
            self._current = d

        def done(_: object) -> None:
            was_current = self._current is d
            self._busy = False
            self._current = None
            if was_current and not self._gone:
                self._run()

        def crashed(exc: BaseException) -> None:
            self._busy = False
            self._current = None
            if self._gone or isinstance(exc, asyncio.CancelledError | ConnectionError):
                return
            log.error("IMAP command failed", exc_info=exc)
            self._close_with(bye("internal server error"))

        d.add_callbacks(done, crashed)

    def _close_with(self, data: bytes) -> None:
        if self._gone or self._closing:
            return
        self._closing = True
        self._state = _State.LOGOUT
        self.transport.write(data)
        self.transport.close()

    def _bad_command(self, event: BadCommand) -> None:
        # Any BadCommand abandons an APPEND in progress (see BadCommand).
        self._append = None
        if event.fatal:
            self._close_with(bye(_printable(event.text)))
            return
        if event.tag is None:
            self.transport.write(untagged("BAD", _printable(event.text)))
        else:
            self.transport.write(tagged(event.tag, "BAD", _printable(event.text)))
        self._count_error()

    def _count_error(self) -> None:
        self._errors += 1
        if self._errors >= self.factory.limits.max_errors:
            self._close_with(bye("too many errors"))

    async def _execute(self, command: Command) -> None:
        self._commands += 1
        limit = self.factory.limits.max_commands
        if limit is not None and self._commands > limit:
            self._close_with(bye("too many commands in one session"))
            return
        handler = _HANDLERS.get(command.name)
        allowed = _STATES.get(command.name, frozenset())
        try:
            if handler is None:
                raise _bad(f"{command.name} is not supported")
            if self._state not in allowed:
                raise _bad(f"{command.name} not allowed {self._state.value}")
            condition, text, code = await handler(self, command)
        except _SilentError:
            return
        except _RefusedError as refused:
            condition, text, code = refused.condition, refused.text, refused.code
        except MailboxError as exc:
            # The store failed under a command (a full disk, a vanished file).
            log.error("IMAP %s failed in the store", command.name, exc_info=exc)
            condition, text, code = "NO", "mailbox unavailable", ResponseCode("UNAVAILABLE")
        if self._gone:
            return
        self._flush(allow_expunge=command.name not in _NO_EXPUNGE)
        self.transport.write(tagged(command.tag, condition, _printable(text), code))
        if condition == "BAD":
            self._count_error()
        if self._state is _State.LOGOUT and not self._closing:
            self._closing = True
            self.transport.close()

    # -- mailbox changes ---------------------------------------------------------------

    def _changed(self, change: MailboxChange) -> None:
        selected = self._selected
        if selected is None:
            return
        if isinstance(change, MessagesAdded):
            selected.added = True
        elif isinstance(change, MessagesExpunged):
            selected.expunged.update(change.uids)
        else:
            selected.changed[change.uid] = change.flags
        if self._idling:
            self._flush(allow_expunge=True)

    def _flush(self, *, allow_expunge: bool) -> None:
        """Tell the client what changed in the selected mailbox since it last heard."""
        selected = self._selected
        if selected is None or self._gone:
            return
        out: list[bytes] = []
        if allow_expunge and selected.expunged:
            for uid in sorted(selected.expunged):
                number = selected.sequence(uid)
                if number is not None:
                    out.append(expunge(number))
                    del selected.uids[number - 1]
                    selected.recent.discard(uid)
                    selected.changed.pop(uid, None)
            selected.expunged.clear()
        if selected.added:
            selected.added = False
            last = selected.uids[-1] if selected.uids else 0
            new = [info.uid for info in selected.mailbox.messages() if info.uid > last]
            if new:
                selected.uids.extend(new)
                if not selected.read_only:
                    selected.recent.update(selected.mailbox.claim_recent())
                out.append(exists(len(selected.uids)))
                out.append(recent(len(selected.recent)))
        if selected.changed:
            for uid, names in sorted(selected.changed.items()):
                number = selected.sequence(uid)
                if number is not None and uid not in selected.expunged:
                    value = self._flag_list(selected, uid, names)
                    out.append(fetch_response(number, [(b"FLAGS", value)]))
            selected.changed.clear()
        if out:
            self.transport.write(b"".join(out))

    @staticmethod
    def _flag_list(selected: _Selected, uid: int, names: frozenset[str]) -> bytes:
        if uid in selected.recent:
            names = names | {"\\Recent"}
        return ("(" + " ".join(sorted(names)) + ")").encode("ascii")

    def _deselect(self) -> None:
        selected, self._selected = self._selected, None
        if selected is not None:
            selected.mailbox.remove_listener(self._changed)

    # -- the idle timer ------------------------------------------------------------------

    def _timeout(self) -> float:
        limits = self.factory.limits
        if self._state is _State.NOT_AUTHENTICATED:
            return limits.login_timeout
        return limits.idle_timeout

    def _timed_out(self) -> None:
        if not self._closing:
            self._close_with(bye("autologout; idle for too long"))

    # -- logging in ----------------------------------------------------------------------

    async def _login(self, credentials: UsernamePassword | CramMD5) -> Reply:
        d = self.factory.portal.login(credentials, None, MailStore, client=self.peer)
        self._login_waiting = d
        try:
            login: CredLogin = await d
        except (UnauthorizedLogin, UnhandledCredentials):
            return self._login_failed()
        except Exception as exc:
            log.error("IMAP login failed in the realm", exc_info=exc)
            return "NO", "authentication unavailable", ResponseCode("UNAVAILABLE")
        finally:
            self._login_waiting = None
        if self._gone:
            login.logout()
            return "NO", "gone", None
        self._store = login.avatar
        self._logout = login.logout
        self._state = _State.AUTHENTICATED
        return "OK", "logged in", ResponseCode.capability(self.capabilities())

    def _login_failed(self) -> Reply:
        self._failed_logins += 1
        if self._failed_logins >= self.factory.limits.max_failed_logins:
            self._state = _State.LOGOUT
            self.transport.write(bye("too many failed logins"))
        return "NO", "authentication failed", ResponseCode("AUTHENTICATIONFAILED")

    async def _cmd_login(self, command: Command) -> Reply:
        if not self._plaintext_allowed():
            raise _no("LOGIN refused before STARTTLS", ResponseCode("PRIVACYREQUIRED"))
        if "PLAIN" not in self.factory.auth_mechanisms:
            raise _no("passwords are not taken here")
        user, password = command.arguments
        assert isinstance(user, str)
        assert isinstance(password, str)
        return await self._login(UsernamePassword(user, password))

    async def _cmd_authenticate(self, command: Command) -> Reply:
        mechanism, initial = command.arguments
        assert isinstance(mechanism, str)
        assert initial is None or isinstance(initial, bytes)
        try:
            if mechanism not in self.factory.auth_mechanisms:
                raise _no(f"mechanism {mechanism} not supported")
            if mechanism in PLAINTEXT_MECHANISMS and not self._plaintext_allowed():
                raise _no(
                    "plaintext mechanisms refused before STARTTLS", ResponseCode("PRIVACYREQUIRED")
                )
            credentials = await self._sasl(mechanism, initial)
        finally:
            if not self._gone:
                # The parser stopped after AUTHENTICATE (and reads on by
                # itself after a SASL line); it may go on now.
                self._events.extend(self.parser.resume())
        if credentials is None:
            raise _bad("authentication cancelled")
        return await self._login(credentials)

    async def _read_line(self, prompt: bytes) -> bytes:
        """Send a continuation and read the client's next line (SASL data, IDLE's DONE)."""
        self.transport.write(b"+ " + prompt + b"\r\n")
        waiter: Deferred[bytes] = Deferred()
        self._line_waiter = waiter
        self._events.extend(self.parser.expect_continuation_line())
        self._run()
        return await waiter

    async def _sasl_data(self, challenge: bytes) -> bytes | None:
        line = await self._read_line(base64.b64encode(challenge))
        if line == b"*":
            return None  # RFC 3501 section 6.2.2: the client cancels.
        try:
            return base64.b64decode(line, validate=True)
        except ValueError:
            raise _bad("malformed base64") from None

    async def _sasl(
        self, mechanism: str, initial: bytes | None
    ) -> UsernamePassword | CramMD5 | None:
        if mechanism == "CRAM-MD5":
            challenge = cram_md5_challenge(self.factory.hostname)
            data = await self._sasl_data(challenge)
            if data is None:
                return None
            name, _, digest = data.decode("utf-8", "replace").rpartition(" ")
            if not name or not digest:
                raise _bad("malformed CRAM-MD5 response")
            return CramMD5(name, challenge, digest)
        first: bytes | None
        if initial is not None:
            first = b"" if initial == b"=" else _b64(initial)
        else:
            first = await self._sasl_data(b"" if mechanism == "PLAIN" else b"Username:")
        if first is None:
            return None
        text = first.decode("utf-8", "replace")
        if mechanism == "PLAIN":
            # RFC 4616: authzid NUL authcid NUL passwd.
            parts = text.split("\0")
            if len(parts) != 3 or not parts[1]:
                raise _bad("malformed PLAIN response")
            if parts[0] and parts[0] != parts[1]:
                raise _no("acting as another user is not allowed")
            return UsernamePassword(parts[1], parts[2])
        if not text:
            raise _bad("empty user name")
        password = await self._sasl_data(b"Password:")
        if password is None:
            return None
        return UsernamePassword(text, password.decode("utf-8", "replace"))

    async def _cmd_starttls(self, command: Command) -> Reply:
        context = self.factory.tls_context
        if context is None or self._tls_active:
            self._events.extend(self.parser.resume())
            raise _bad("STARTTLS not available")
        # RFC 3501 section 6.2.1: the OK goes in the clear, then the
        # handshake; anything the client pipelined after STARTTLS is dropped.
        self.transport.write(tagged(command.tag, "OK", "begin TLS negotiation now"))
        self.parser.discard_buffered()
        self._events.clear()
        if not await self._server_handshake(context, log, "IMAP STARTTLS"):
            raise _SilentError  # the connection is closed
        self._tls_active = True
        self._events.extend(self.parser.resume())
        raise _SilentError

    # -- any state ---------------------------------------------------------------------------

    async def _cmd_capability(self, command: Command) -> Reply:
        self.transport.write(capability(self.capabilities()))
        return "OK", "CAPABILITY completed", None

    async def _cmd_noop(self, command: Command) -> Reply:
        if self._selected is not None:
            self._selected.mailbox.refresh()
        return "OK", f"{command.name} completed", None

    async def _cmd_logout(self, command: Command) -> Reply:
        self.transport.write(bye("logging out"))
        self._state = _State.LOGOUT
        return "OK", "LOGOUT completed", None

    # -- authenticated -----------------------------------------------------------------------

    def _user_store(self) -> MailStore:
        assert self._store is not None  # these commands come after a login
        return self._store

    def _mailbox(self, name: str) -> Mailbox:
        try:
            return self._user_store().mailbox(name)
        except (NoSuchMailboxError, InvalidMailboxNameError):
            raise _no(f"no mailbox {name!r}", ResponseCode("TRYCREATE")) from None
        except MailboxError as exc:
            raise _no(f"mailbox unavailable: {exc}") from exc

    async def _cmd_select(self, command: Command) -> Reply:
        (name,) = command.arguments
        assert isinstance(name, str)
        read_only = command.name == "EXAMINE"
        # RFC 3501 section 6.3.1: a failed SELECT leaves no mailbox selected.
        self._deselect()
        self._state = _State.AUTHENTICATED
        try:
            mailbox = self._user_store().mailbox(name)
        except (NoSuchMailboxError, InvalidMailboxNameError):
            raise _no(f"no mailbox {name!r}", ResponseCode("NONEXISTENT")) from None
        except MailboxError as exc:
            raise _no(f"mailbox unavailable: {exc}") from exc
        mailbox.refresh()
        messages = mailbox.messages()
        claimed = set() if read_only else set(mailbox.claim_recent())
        selected = _Selected(
            mailbox=mailbox,
            read_only=read_only,
            uids=[info.uid for info in messages],
            recent=claimed,
        )
        keywords = sorted({flag for info in messages for flag in info.flags} - SYSTEM_FLAGS)
        defined = sorted(SYSTEM_FLAGS) + keywords
        out = [
            flags(defined),
            untagged(
                "OK",
                "flags permitted",
                ResponseCode.permanent_flags([] if read_only else [*defined, "\\*"]),
            ),
            exists(len(messages)),
            recent(len(claimed)),
        ]
        first_unseen = next(
            (number for number, info in enumerate(messages, 1) if SEEN not in info.flags), None
        )
        if first_unseen is not None:
            out.append(untagged("OK", "first unseen", ResponseCode("UNSEEN", str(first_unseen))))
        out.append(
            untagged("OK", "UIDs valid", ResponseCode("UIDVALIDITY", str(mailbox.uidvalidity)))
        )
        out.append(
            untagged("OK", "predicted next UID", ResponseCode("UIDNEXT", str(mailbox.uidnext)))
        )
        self.transport.write(b"".join(out))
        self._selected = selected
        mailbox.add_listener(self._changed)
        self._state = _State.SELECTED
        code = ResponseCode("READ-ONLY" if read_only else "READ-WRITE")
        return "OK", f"{command.name} completed", code

    async def _cmd_create(self, command: Command) -> Reply:
        (name,) = command.arguments
        assert isinstance(name, str)
        store = self._user_store()
        # RFC 3501 section 6.3.3: a trailing delimiter says children will follow.
        name = name.removesuffix(store.delimiter)
        try:
            store.create(name)
        except MailboxExistsError:
            raise _no("mailbox exists", ResponseCode("ALREADYEXISTS")) from None
        except MailboxError as exc:
            raise _no(f"cannot create: {exc}") from exc
        return "OK", "CREATE completed", None

    async def _cmd_delete(self, command: Command) -> Reply:
        (name,) = command.arguments
        assert isinstance(name, str)
        if self._selected is not None and self._selected.mailbox.name == name:
            raise _no("mailbox is selected", ResponseCode("INUSE"))
        try:
            self._user_store().delete(name)
        except NoSuchMailboxError:
            raise _no("no such mailbox", ResponseCode("NONEXISTENT")) from None
        except MailboxError as exc:
            raise _no(f"cannot delete: {exc}") from exc
        return "OK", "DELETE completed", None

    async def _cmd_rename(self, command: Command) -> Reply:
        old, new = command.arguments
        assert isinstance(old, str)
        assert isinstance(new, str)
        if old.upper() == "INBOX":
            return await self._rename_inbox(new)
        try:
            self._user_store().rename(old, new)
        except NoSuchMailboxError:
            raise _no("no such mailbox", ResponseCode("NONEXISTENT")) from None
        except MailboxExistsError:
            raise _no("target exists", ResponseCode("ALREADYEXISTS")) from None
        except MailboxError as exc:
            raise _no(f"cannot rename: {exc}") from exc
        return "OK", "RENAME completed", None

    async def _rename_inbox(self, new: str) -> Reply:
        # RFC 3501 section 6.3.5: renaming INBOX moves its messages into a
        # new mailbox of that name and leaves INBOX there, empty. Mail that
        # arrives meanwhile stays in INBOX.
        store = self._user_store()
        try:
            destination = store.create(new)
        except MailboxExistsError:
            raise _no("target exists", ResponseCode("ALREADYEXISTS")) from None
        except MailboxError as exc:
            raise _no(f"cannot rename: {exc}") from exc
        inbox = store.mailbox("INBOX")
        inbox.refresh()
        uids = [info.uid for info in inbox.messages()]
        if uids:
            try:
                await inbox.move(uids, destination)
            except MailboxError as exc:
                raise _no(f"cannot rename: {exc}") from exc
        return "OK", "RENAME completed", None

    async def _cmd_subscribe(self, command: Command) -> Reply:
        (name,) = command.arguments
        assert isinstance(name, str)
        store = self._user_store()
        try:
            if command.name == "SUBSCRIBE":
                store.subscribe(name)
            else:
                store.unsubscribe(name)
        except MailboxError as exc:
            raise _no(f"cannot {command.name.lower()}: {exc}") from exc
        return "OK", f"{command.name} completed", None

    async def _cmd_list(self, command: Command) -> Reply:
        reference, pattern = command.arguments
        assert isinstance(reference, str)
        assert isinstance(pattern, str)
        store = self._user_store()
        delimiter = store.delimiter
        if not pattern and command.name == "LIST":
            # RFC 3501 section 6.3.8: the hierarchy delimiter and root.
            self.transport.write(list_response(["\\Noselect"], delimiter, ""))
            return "OK", "LIST completed", None
        matcher = _pattern(reference + pattern, delimiter)
        existing = sorted(store.list_mailboxes())
        names = existing if command.name == "LIST" else store.subscriptions()
        out = []
        for name in names:
            if not matcher.fullmatch(name):
                continue
            # A child sorts right after its prefix: one bisection per name.
            prefix = name + delimiter
            index = bisect.bisect_left(existing, prefix)
            children = index < len(existing) and existing[index].startswith(prefix)
            attributes = ["\\HasChildren" if children else "\\HasNoChildren"]
            out.append(list_response(attributes, delimiter, name, command=command.name))
        self.transport.write(b"".join(out))
        return "OK", f"{command.name} completed", None

    async def _cmd_status(self, command: Command) -> Reply:
        name, items = command.arguments
        assert isinstance(name, str)
        assert isinstance(items, tuple)
        mailbox = self._mailbox(name)
        mailbox.refresh()
        status = mailbox.status()
        values = {
            "MESSAGES": status.messages,
            "RECENT": status.recent,
            "UIDNEXT": status.uidnext,
            "UIDVALIDITY": status.uidvalidity,
            "UNSEEN": status.unseen,
        }
        pairs: list[tuple[str, int]] = []
        for item in items:
            assert isinstance(item, str)
            if item == "SIZE":
                pairs.append((item, sum(info.size for info in mailbox.messages())))
            else:
                pairs.append((item, values[item]))
        self.transport.write(status_response(mailbox.name, pairs))
        return "OK", "STATUS completed", None

    async def _cmd_namespace(self, command: Command) -> Reply:
        self.transport.write(namespace([("", self._user_store().delimiter)]))
        return "OK", "NAMESPACE completed", None

    async def _cmd_enable(self, command: Command) -> Reply:
        # No extension that ENABLE turns on is offered (RFC 5161 section 3.1:
        # unknown names are ignored).
        self.transport.write(enabled([]))
        return "OK", "ENABLE completed", None

    async def _cmd_idle(self, command: Command) -> Reply:
        self._idling = True
        poll: DelayedCall | None = None
        clock = self.factory.clock

        def refresh() -> None:
            nonlocal poll
            poll = clock.call_later(self.factory.limits.idle_refresh, refresh)
            if self._selected is not None:
                # The listener tells the client of what it finds.
                self._selected.mailbox.refresh()

        try:
            self._flush(allow_expunge=True)
            if self._selected is not None:
                poll = clock.call_later(self.factory.limits.idle_refresh, refresh)
            line = await self._read_line(b"idling")
        finally:
            self._idling = False
            if poll is not None and poll.active():
                poll.cancel()
        if line.upper() != b"DONE":
            raise _bad("expected DONE")
        return "OK", "IDLE terminated", None

    # -- APPEND -------------------------------------------------------------------------------

    def _append_start(self, event: AppendStart) -> None:
        append = _Append(
            tag=event.tag,
            mailbox=None,
            flags=event.flags,
            internal_date=event.internal_date,
        )
        if self._state not in (_State.AUTHENTICATED, _State.SELECTED):
            append.refusal = _bad(f"APPEND not allowed {self._state.value}")
        else:
            try:
                append.mailbox = self._mailbox(event.mailbox)
            except _RefusedError as refused:
                append.refusal = refused
        if event.synchronizing and append.refusal is not None:
            # RFC 3501 section 7.5: the refusal instead of "+"; the client
            # sends no message. The parser's ContinuationNeeded is answered here.
            refusal = append.refusal
            text = _printable(refusal.text)
            self.transport.write(tagged(event.tag, refusal.condition, text, refusal.code))
            if self._events and isinstance(self._events[0], ContinuationNeeded):
                self._events.popleft()
            self._events.extend(self.parser.refuse_literal())
            if refusal.condition == "BAD":
                self._count_error()
            return
        # A LITERAL+ message comes whatever we say; it is dropped if refused.
        # A synchronising one comes after the "+" the ContinuationNeeded sends.
        self._append = append

    async def _execute_append(self, append: _Append) -> None:
        condition: Condition = "OK"
        text = "APPEND completed"
        code: ResponseCode | None = None
        try:
            if append.refusal is not None:
                raise append.refusal
            mailbox = append.mailbox
            assert mailbox is not None
            try:
                uid = await mailbox.append(
                    bytes(append.data), flags=append.flags, internal_date=append.internal_date
                )
            except ValueError as exc:
                raise _bad(str(exc)) from None
            except MessageTooLargeError:
                raise _no("message too large", ResponseCode("TOOBIG")) from None
            except MailboxError as exc:
                raise _no(f"cannot append: {exc}") from exc
            code = ResponseCode.append_uid(mailbox.uidvalidity, uid)
        except _RefusedError as refused:
            condition, text, code = refused.condition, refused.text, refused.code
        if self._gone:
            return
        self._flush(allow_expunge=True)
        self.transport.write(tagged(append.tag, condition, _printable(text), code))
        if condition == "BAD":
            self._count_error()

    # -- selected -----------------------------------------------------------------------------

    def _view(self) -> _Selected:
        assert self._selected is not None  # these commands come in the selected state
        return self._selected

    def _writable(self) -> _Selected:
        selected = self._view()
        if selected.read_only:
            raise _no("mailbox is read-only", ResponseCode("READ-ONLY"))
        return selected

    def _targets(self, selected: _Selected, numbers: SequenceSet, uid: bool) -> list[int]:
        """Return the UIDs a sequence set names in this session, ascending."""
        if numbers.saved:
            raise _bad("no saved search result")
        if uid:
            largest = selected.uids[-1] if selected.uids else 0
            return [u for u in selected.uids if numbers.contains(u, largest)]
        count = len(selected.uids)
        # RFC 3501 section 9 (seq-number): a number past the messages this
        # session knows of, or "*" in an empty mailbox, is BAD (UIDs are not:
        # a UID set may name messages that are gone).
        for ends in numbers.ranges:
            for end in ends:
                if (end is None and count == 0) or (end is not None and end > count):
                    shown = "*" if end is None else str(end)
                    raise _bad(f"no message {shown}: the mailbox has {count}")
        return [selected.uids[n - 1] for n in numbers.resolve(count)]

    async def _cmd_check(self, command: Command) -> Reply:
        self._view().mailbox.refresh()
        return "OK", "CHECK completed", None

    async def _cmd_close(self, command: Command) -> Reply:
        selected = self._view()
        self._deselect()
        self._state = _State.AUTHENTICATED
        if not selected.read_only:
            # RFC 3501 section 6.4.2: expunged silently.
            try:
                selected.mailbox.expunge()
            except MailboxError as exc:
                log.error("IMAP CLOSE could not expunge", exc_info=exc)
        return "OK", f"{command.name} completed", None

    async def _cmd_unselect(self, command: Command) -> Reply:
        self._deselect()
        self._state = _State.AUTHENTICATED
        return "OK", "UNSELECT completed", None

    async def _cmd_expunge(self, command: Command) -> Reply:
        selected = self._writable()
        uids: list[int] | None = None
        if command.arguments:
            (numbers,) = command.arguments
            assert isinstance(numbers, SequenceSet)
            uids = self._targets(selected, numbers, True)
        try:
            selected.mailbox.expunge(uids)
        except MailboxError as exc:
            raise _no(f"cannot expunge: {exc}") from exc
        return "OK", f"{command.name} completed", None

    async def _cmd_search(self, command: Command) -> Reply:
        selected = self._view()
        charset, key = command.arguments
        if charset is not None and charset not in ("US-ASCII", "UTF-8"):
            raise _no("charset not supported", ResponseCode("BADCHARSET", "(US-ASCII UTF-8)"))
        uid = command.name.startswith("UID")
        assert isinstance(key, SearchKey)
        content = _needs_content(key)
        largest_uid = selected.uids[-1] if selected.uids else 0
        found: list[int] = []
        for number, message_uid in enumerate(list(selected.uids), 1):
            try:
                info = selected.mailbox.message(message_uid)
                data = await selected.mailbox.read(message_uid) if content else None
            except NoSuchMessageError:
                continue
            message = SearchMessage(
                sequence=number,
                uid=message_uid,
                flags=self._flags(selected, info),
                internal_date=info.internal_date,
                size=info.size,
                content=data,
                largest_sequence=len(selected.uids),
                largest_uid=largest_uid,
            )
            if matches(key, message):
                found.append(message_uid if uid else number)
        if self._gone:
            return "OK", "gone", None
        self.transport.write(search_response(found))
        return "OK", f"{command.name} completed", None

    @staticmethod
    def _flags(selected: _Selected, info: MessageInfo) -> frozenset[str]:
        if info.uid in selected.recent:
            return info.flags | {"\\Recent"}
        return info.flags

    async def _cmd_fetch(self, command: Command) -> Reply:
        selected = self._view()
        numbers, items_argument = command.arguments
        assert isinstance(numbers, SequenceSet)
        assert isinstance(items_argument, tuple)
        items: list[FetchItem] = [item for item in items_argument if isinstance(item, FetchItem)]
        uid = command.name.startswith("UID")
        if uid and not any(item.name == "UID" for item in items):
            items.insert(0, FetchItem(name="UID"))
        content = needs_content(items)
        seen = sets_seen(items) and not selected.read_only
        if seen and not any(item.name == "FLAGS" for item in items):
            flag_item: FetchItem | None = FetchItem(name="FLAGS")
        else:
            flag_item = None
        missing = False
        for message_uid in self._targets(selected, numbers, uid):
            number = selected.sequence(message_uid)
            if number is None:
                continue
            try:
                info = selected.mailbox.message(message_uid)
                data = await selected.mailbox.read(message_uid) if content else None
            except NoSuchMessageError:
                # Expunged by another session, not yet told (RFC 5530).
                missing = True
                continue
            if self._gone:
                return "OK", "gone", None
            wanted = items
            message_flags = info.flags
            if seen and SEEN not in message_flags:
                new = selected.mailbox.set_flags([message_uid], [SEEN], FlagMode.ADD)
                message_flags = new.get(message_uid, message_flags | {SEEN})
                # Told here, with the FETCH; not again.
                selected.changed.pop(message_uid, None)
                if flag_item is not None:
                    wanted = [*items, flag_item]
            message = FetchMessage(
                uid=message_uid,
                flags=self._flags(selected, _with_flags(info, message_flags)),
                internal_date=info.internal_date,
                size=info.size,
                content=data,
            )
            self.transport.write(fetch_response(number, render_fetch(wanted, message)))
            await self.drained()
        if missing:
            expunged = ResponseCode("EXPUNGEISSUED")
            return "NO", "some messages were expunged", expunged
        return "OK", f"{command.name} completed", None

    async def _cmd_store(self, command: Command) -> Reply:
        selected = self._writable()
        numbers, action = command.arguments
        assert isinstance(numbers, SequenceSet)
        assert isinstance(action, StoreAction)
        uid = command.name.startswith("UID")
        targets = self._targets(selected, numbers, uid)
        try:
            changed = selected.mailbox.set_flags(targets, action.flags, _STORE_MODES[action.mode])
        except ValueError as exc:
            raise _bad(str(exc)) from None
        except MailboxError as exc:
            raise _no(f"cannot store: {exc}") from exc
        out: list[bytes] = []
        for message_uid, names in sorted(changed.items()):
            selected.changed.pop(message_uid, None)
            number = selected.sequence(message_uid)
            if action.silent or number is None:
                continue
            pairs = [(b"FLAGS", self._flag_list(selected, message_uid, names))]
            if uid:
                pairs.append((b"UID", b"%d" % message_uid))
            out.append(fetch_response(number, pairs))
        self.transport.write(b"".join(out))
        return "OK", f"{command.name} completed", None

    async def _cmd_copy(self, command: Command) -> Reply:
        move = command.name.endswith("MOVE")
        selected = self._writable() if move else self._view()
        numbers, name = command.arguments
        assert isinstance(numbers, SequenceSet)
        assert isinstance(name, str)
        uid = command.name.startswith("UID")
        targets = self._targets(selected, numbers, uid)
        destination = self._mailbox(name)
        try:
            if move:
                mapping = await selected.mailbox.move(targets, destination)
            else:
                mapping = await selected.mailbox.copy(targets, destination)
        except MessageTooLargeError:
            raise _no("message too large for the target", ResponseCode("TOOBIG")) from None
        except MailboxError as exc:
            raise _no(f"cannot {command.name.lower()}: {exc}") from exc
        code: ResponseCode | None = None
        if mapping:
            sources = sorted(mapping)
            code = ResponseCode.copy_uid(
                destination.uidvalidity, sources, [mapping[s] for s in sources]
            )
        if move:
            # RFC 6851 section 4.3: COPYUID in an untagged OK, before the EXPUNGEs.
            if code is not None and not self._gone:
                self.transport.write(untagged("OK", "moved", code))
            return "OK", f"{command.name} completed", None
        return "OK", f"{command.name} completed", code


class _SilentError(_RefusedError):
    """STARTTLS: its reply was sent before the handshake."""

    def __init__(self) -> None:
        super().__init__("OK", "")


_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


def _printable(text: str) -> str:
    """Return ``text`` fit for resp-text: printable ASCII (a name may hold anything)."""
    return _UNPRINTABLE.sub("?", text)


def _with_flags(info: MessageInfo, names: frozenset[str]) -> MessageInfo:
    if names == info.flags:
        return info
    return MessageInfo(uid=info.uid, size=info.size, flags=names, internal_date=info.internal_date)


def _b64(data: bytes) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except ValueError:
        raise _bad("malformed base64") from None


def _needs_content(key: SearchKey) -> bool:
    """Whether matching ``key`` reads the message (its text or its Date: field)."""
    if isinstance(key, TextKey):
        return True
    if isinstance(key, DateKey):
        return key.sent
    if isinstance(key, NotKey):
        return _needs_content(key.key)
    if isinstance(key, OrKey):
        return _needs_content(key.left) or _needs_content(key.right)
    if isinstance(key, AndKey):
        return any(_needs_content(inner) for inner in key.keys)
    return False


def _pattern(pattern: str, delimiter: str) -> re.Pattern[str]:
    """LIST's pattern as a regular expression: ``*`` any, ``%`` any but the delimiter."""
    parts = []
    for char in pattern:
        if char == "*":
            parts.append(".*")
        elif char == "%":
            parts.append(f"[^{re.escape(delimiter)}]*")
        else:
            parts.append(re.escape(char))
    text = "".join(parts)
    # RFC 3501 section 5.1: INBOX is case-insensitive.
    if pattern[:5].upper() == "INBOX" and (
        len(pattern) == 5 or pattern[5] in (delimiter, "*", "%")
    ):
        text = "INBOX" + "".join(parts[5:])
    return re.compile(text, re.DOTALL)


_ANY = frozenset({_State.NOT_AUTHENTICATED, _State.AUTHENTICATED, _State.SELECTED})
_NOT_AUTHENTICATED = frozenset({_State.NOT_AUTHENTICATED})
_AUTHENTICATED = frozenset({_State.AUTHENTICATED, _State.SELECTED})
_SELECTED = frozenset({_State.SELECTED})

_HANDLERS: dict[str, Handler] = {
    "CAPABILITY": IMAP4Server._cmd_capability,
    "NOOP": IMAP4Server._cmd_noop,
    "LOGOUT": IMAP4Server._cmd_logout,
    "STARTTLS": IMAP4Server._cmd_starttls,
    "AUTHENTICATE": IMAP4Server._cmd_authenticate,
    "LOGIN": IMAP4Server._cmd_login,
    "SELECT": IMAP4Server._cmd_select,
    "EXAMINE": IMAP4Server._cmd_select,
    "CREATE": IMAP4Server._cmd_create,
    "DELETE": IMAP4Server._cmd_delete,
    "RENAME": IMAP4Server._cmd_rename,
    "SUBSCRIBE": IMAP4Server._cmd_subscribe,
    "UNSUBSCRIBE": IMAP4Server._cmd_subscribe,
    "LIST": IMAP4Server._cmd_list,
    "LSUB": IMAP4Server._cmd_list,
    "STATUS": IMAP4Server._cmd_status,
    "NAMESPACE": IMAP4Server._cmd_namespace,
    "ENABLE": IMAP4Server._cmd_enable,
    "IDLE": IMAP4Server._cmd_idle,
    "CHECK": IMAP4Server._cmd_check,
    "CLOSE": IMAP4Server._cmd_close,
    "UNSELECT": IMAP4Server._cmd_unselect,
    "EXPUNGE": IMAP4Server._cmd_expunge,
    "UID EXPUNGE": IMAP4Server._cmd_expunge,
    "SEARCH": IMAP4Server._cmd_search,
    "UID SEARCH": IMAP4Server._cmd_search,
    "FETCH": IMAP4Server._cmd_fetch,
    "UID FETCH": IMAP4Server._cmd_fetch,
    "STORE": IMAP4Server._cmd_store,
    "UID STORE": IMAP4Server._cmd_store,
    "COPY": IMAP4Server._cmd_copy,
    "UID COPY": IMAP4Server._cmd_copy,
    "MOVE": IMAP4Server._cmd_copy,
    "UID MOVE": IMAP4Server._cmd_copy,
}

_STATES: dict[str, frozenset[_State]] = {
    "CAPABILITY": _ANY,
    "NOOP": _ANY,
    "LOGOUT": _ANY,
    "STARTTLS": _NOT_AUTHENTICATED,
    "AUTHENTICATE": _NOT_AUTHENTICATED,
    "LOGIN": _NOT_AUTHENTICATED,
    **dict.fromkeys(
        (
            "SELECT",
            "EXAMINE",
            "CREATE",
            "DELETE",
            "RENAME",
            "SUBSCRIBE",
            "UNSUBSCRIBE",
            "LIST",
            "LSUB",
            "STATUS",
            "NAMESPACE",
            "ENABLE",
            "IDLE",
        ),
        _AUTHENTICATED,
    ),
    **dict.fromkeys(
        (
            "CHECK",
            "CLOSE",
            "UNSELECT",
            "EXPUNGE",
            "UID EXPUNGE",
            "SEARCH",
            "UID SEARCH",
            "FETCH",
            "UID FETCH",
            "STORE",
            "UID STORE",
            "COPY",
            "UID COPY",
            "MOVE",
            "UID MOVE",
        ),
        _SELECTED,
    ),
}
