"""The mailbox interface every mail protocol uses: stores, mailboxes, messages, changes.

Three users shape it:

- POP3 (RFC 1939) reads one maildrop: a locked snapshot of messages with
  stable numbers, sizes and unique ids, deletions applied only at QUIT.
  ``Mailbox.lock_maildrop`` takes the lock (released at QUIT or when the
  connection is lost); ``Mailbox.messages`` taken once is the snapshot,
  its sizes are LIST's, its UIDs (with the UIDVALIDITY, for uniqueness
  across a lost UID list) make UIDL; DELE is the session's own business
  until QUIT, where ``set_flags(uids, [DELETED], FlagMode.ADD)`` then
  ``expunge(uids)`` remove exactly the messages deleted.
- IMAP4rev1 (RFC 3501, with UIDPLUS RFC 4315 and MOVE RFC 6851) works on
  named mailboxes in a hierarchy (``MailStore``), each with a
  UIDVALIDITY, strictly ascending UIDs and a UIDNEXT, flags and an internal
  date per message. Several sessions on one mailbox see each other's
  changes through ``Mailbox.add_listener``; changes made by other processes
  are found by ``Mailbox.refresh``.
- SMTP delivers a message into a user's INBOX (``MessageSink.deliver``).

Which calls wait: the metadata (the message list, flags, counts, mailbox
names) is kept in memory and answered synchronously. Calls that move message
bodies (``read``, ``append``, ``copy``, ``move``, ``deliver``) return
Deferreds, so that a store may do that file I/O in the reactor's thread pool
(``MaildirStore(..., threads=reactor)``). The synchronous calls that touch
the disk in a Maildir (a flag change is one ``rename``, an expunge one
``unlink`` per message, a refresh one directory listing and a small UID
file) are bounded by the mailbox's message count, not by message sizes.

Mailbox names are ``str`` here; IMAP's modified UTF-7 (RFC 3501 section
5.1.3) is the IMAP server's business, on the wire only. Names use ``.`` as
the hierarchy delimiter (``Archive.2024``), as Maildir++ folders do, and
``INBOX`` is matched case-insensitively (RFC 3501 section 5.1).
"""

from __future__ import annotations

import contextlib
import enum
import functools
import logging
import re
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ParamSpec, Protocol, TypeVar

from torsion.defer import Deferred, fail
from torsion.errors import TorsionError

__all__ = [
    "ANSWERED",
    "DELETED",
    "DRAFT",
    "FLAGGED",
    "SEEN",
    "SYSTEM_FLAGS",
    "FlagMode",
    "FlagsChanged",
    "InvalidMailboxNameError",
    "MailStore",
    "Mailbox",
    "MailboxChange",
    "MailboxError",
    "MailboxExistsError",
    "MailboxIOError",
    "MailboxListener",
    "MailboxStatus",
    "MaildropLock",
    "MaildropLockedError",
    "MessageInfo",
    "MessageSink",
    "MessageTooLargeError",
    "MessagesAdded",
    "MessagesExpunged",
    "NoSuchMailboxError",
    "NoSuchMessageError",
    "apply_flags",
    "check_mailbox_name",
    "normalize_flags",
]

SEEN = "\\Seen"
ANSWERED = "\\Answered"
FLAGGED = "\\Flagged"
DELETED = "\\Deleted"
DRAFT = "\\Draft"

#: The system flags a message may carry (RFC 3501 section 2.3.2). ``\Recent``
#: is not among them: it is a session's view (``Mailbox.claim_recent``), and
#: nobody sets it.
SYSTEM_FLAGS = frozenset({SEEN, ANSWERED, FLAGGED, DELETED, DRAFT})

_SYSTEM_BY_LOWER = {flag.lower(): flag for flag in SYSTEM_FLAGS}

#: The INBOX, whatever case a client writes it in (RFC 3501 section 5.1).
INBOX = "INBOX"

#: The hierarchy delimiter of mailbox names.
DELIMITER = "."

#: The largest message a store takes unless told otherwise (CRLF octets).
DEFAULT_MAX_MESSAGE_SIZE = 50 * 1024 * 1024

#: The longest mailbox name taken, in characters: a file name's 255-byte
#: limit minus the Maildir++ leading dot, with room for multi-byte UTF-8.
MAX_NAME_LENGTH = 200

# An IMAP atom (RFC 3501 section 9): no specials, no spaces, no controls.
_KEYWORD = re.compile(r"[^\x00-\x20\x7f(){%*\"\\\]]+")

# A line feed that is not part of a CRLF.
_BARE_LF = re.compile(rb"(?<!\r)\n")

_log = logging.getLogger("torsion.mail")


class MailboxError(TorsionError):
    """A mail store refused an operation; the root of the storage errors."""


class NoSuchMailboxError(MailboxError):
    """No mailbox has that name."""


class MailboxExistsError(MailboxError):
    """A mailbox with that name exists already."""


class InvalidMailboxNameError(MailboxError, ValueError):
    """A mailbox name is empty, too long, or has a forbidden character or part."""


class NoSuchMessageError(MailboxError, LookupError):
    """No message has that UID (any more: it may have been expunged by another session)."""


class MessageTooLargeError(MailboxError):
    """A message is over the store's size limit and was not stored."""


class MaildropLockedError(MailboxError):
    """Another session (in this process or another) holds the maildrop's lock."""


class MailboxIOError(MailboxError, OSError):
    """The file system refused (no space, no permission...); the ``OSError`` is the cause."""


P = ParamSpec("P")
R = TypeVar("R")


def translate_os_error(exc: OSError) -> MailboxIOError:
    """Return ``exc`` as a ``MailboxIOError`` caused by it."""
    error = MailboxIOError(exc.errno, exc.strerror or str(exc), exc.filename)
    error.__cause__ = exc
    return error


def os_errors(method: Callable[P, R]) -> Callable[P, R]:
    """Make a store's method raise ``MailboxIOError`` for the ``OSError``s under it."""

    @functools.wraps(method)
    def translating(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except MailboxError:
            raise
        except OSError as exc:
            raise translate_os_error(exc) from exc

    return translating


def os_errors_failed(exc: BaseException) -> Deferred[Any]:
    """An errback failing with ``MailboxIOError`` for an ``OSError``, else with ``exc``."""
    if isinstance(exc, OSError) and not isinstance(exc, MailboxError):
        return fail(translate_os_error(exc))
    return fail(exc)


class FlagMode(enum.Enum):
    """How ``Mailbox.set_flags`` combines the given flags with a message's (RFC 3501 STORE)."""

    REPLACE = "replace"
    ADD = "add"
    REMOVE = "remove"


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageInfo:
    r"""What a mailbox knows of one message without reading it.

    Attributes:
        uid: The message's UID, unique in its mailbox for one UIDVALIDITY.
        size: The message's size in octets with CRLF line endings, as POP3's
            LIST and IMAP's RFC822.SIZE report it (RFC 1939 section 11).
        flags: Its system flags and keywords (never ``\Recent``).
        internal_date: When the store received it (IMAP's INTERNALDATE),
            timezone-aware, to the second.
    """

    uid: int
    size: int
    flags: frozenset[str]
    internal_date: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class MailboxStatus:
    """The counts IMAP's STATUS and SELECT report (RFC 3501 section 6.3.10)."""

    messages: int
    recent: int
    unseen: int
    uidnext: int
    uidvalidity: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MessagesAdded:
    """Messages arrived in a mailbox; their UIDs, ascending."""

    uids: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class FlagsChanged:
    """A message's flags changed; ``flags`` are the new set."""

    uid: int
    flags: frozenset[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class MessagesExpunged:
    """Messages left a mailbox; their UIDs, ascending."""

    uids: tuple[int, ...]


#: What a listener is told.
MailboxChange = MessagesAdded | FlagsChanged | MessagesExpunged

#: Called, synchronously, after each change to a mailbox, whoever made it.
MailboxListener = Callable[[MailboxChange], object]


class MaildropLock(Protocol):
    """A held maildrop lock (POP3, RFC 1939 section 8): release it at QUIT or on disconnect."""

    def release(self) -> None:
        """Let another session lock the maildrop; calling it again does nothing."""
        ...


class Mailbox(Protocol):
    """One mailbox: messages by UID, their flags and bodies, and who is watching.

    Messages are listed in ascending UID order. A UID is never reused while
    ``uidvalidity`` stays the same; ``uidnext`` is greater than every UID
    given so far (RFC 3501 section 2.3.1.1). Listeners are called after
    every change, including the caller's own, in the order they were added.
    """

    @property
    def name(self) -> str:
        """The mailbox's name (``INBOX`` or a ``.``-separated path)."""
        ...

    @property
    def uidvalidity(self) -> int:
        """The UIDVALIDITY: a new value means earlier UIDs mean nothing now."""
        ...

    @property
    def uidnext(self) -> int:
        """The UID the next message will get at least."""
        ...

    def messages(self) -> Sequence[MessageInfo]:
        """Return every message, by ascending UID, as this process last saw them."""
        ...

    def message(self, uid: int) -> MessageInfo:
        """Return one message's information.

        Raises:
            NoSuchMessageError: No message has that UID.
        """
        ...

    def status(self) -> MailboxStatus:
        """Return the mailbox's counts."""
        ...

    def refresh(self) -> None:
        """Take in changes made by others (other processes' deliveries, flags, deletions).

        Listeners are told of each change found.
        """
        ...

    def read(self, uid: int) -> Deferred[bytes]:
        """Read a whole message, with CRLF line endings.

        Returns:
            A Deferred firing with the bytes, or failing with
            ``NoSuchMessageError`` when the message is gone.
        """
        ...

    def read_stream(self, uid: int) -> AsyncGenerator[bytes, None]:
        """Yield a message's bytes in bounded pieces, with CRLF line endings.

        For messages too large to hold whole (POP3's RETR, IMAP's FETCH of
        a big body): the pieces are read as they are taken.

        Raises:
            NoSuchMessageError: The message is gone (before the first piece).
        """
        ...

    def append(
        self,
        message: bytes,
        *,
        flags: Iterable[str] = (),
        internal_date: datetime | None = None,
    ) -> Deferred[int]:
        """Store a message (IMAP APPEND); it is stored whole or not at all.

        Args:
            message: The message; LF or CRLF line endings.
            flags: Its flags (system flags and keywords).
            internal_date: Its INTERNALDATE, to the second; now if
                omitted; a naive one is taken as UTC.

        Returns:
            A Deferred firing with the new message's UID, or failing with
            ``MessageTooLargeError``.
        """
        ...

    def set_flags(
        self, uids: Iterable[int], flags: Iterable[str], mode: FlagMode = FlagMode.REPLACE
    ) -> dict[int, frozenset[str]]:
        """Change messages' flags (IMAP STORE).

        UIDs not in the mailbox (any more) are skipped.

        Returns:
            The new flags of each message that is still there.

        Raises:
            ValueError: A flag is not a system flag nor a valid keyword.
        """
        ...

    def expunge(self, uids: Iterable[int] | None = None) -> list[int]:
        r"""Remove the messages flagged ``\Deleted`` (or only those among ``uids``).

        Returns:
            The UIDs removed, ascending.
        """
        ...

    def copy(self, uids: Iterable[int], destination: Mailbox) -> Deferred[dict[int, int]]:
        """Copy messages, with their flags and internal dates, into another mailbox.

        Returns:
            A Deferred firing with each copied UID's new UID there (UIDPLUS's
            COPYUID, RFC 4315); UIDs that are not here are skipped.
        """
        ...

    def move(self, uids: Iterable[int], destination: Mailbox) -> Deferred[dict[int, int]]:
        """Move messages into another mailbox (RFC 6851): copied there, expunged here.

        Returns:
            A Deferred firing with each moved UID's new UID there.
        """
        ...

    def claim_recent(self) -> frozenset[int]:
        r"""Return the messages no session has been told of yet, and mark them told.

        The first session to claim a message sees it with ``\Recent``
        (RFC 3501 section 2.3.2); a read-only session (EXAMINE) does not claim.
        """
        ...

    def lock_maildrop(self) -> MaildropLock:
        """Take the maildrop lock for a POP3 session.

        Raises:
            MaildropLockedError: Another session holds it.
        """
        ...

    def add_listener(self, listener: MailboxListener) -> None:
        """Call ``listener`` after each change to this mailbox."""
        ...

    def remove_listener(self, listener: MailboxListener) -> None:
        """Stop calling ``listener``; does nothing if it is not added."""
        ...


class MessageSink(Protocol):
    """Where SMTP puts a message for one local user: that user's INBOX."""

    def deliver(self, message: bytes) -> Deferred[None]:
        """Store a message in the INBOX; it is there whole once the Deferred fires.

        Fails with ``MessageTooLargeError`` over the store's limit.
        """
        ...


class MailStore(MessageSink, Protocol):
    """One user's mailboxes: names in a hierarchy, subscriptions, delivery.

    The same ``Mailbox`` object is returned for a name for as long as the
    store lives, so that sessions sharing a store see each other's changes
    through its listeners.
    """

    @property
    def delimiter(self) -> str:
        """The hierarchy delimiter of mailbox names: ``.``."""
        ...

    def list_mailboxes(self) -> list[str]:
        """Return every mailbox's name, sorted, ``INBOX`` included."""
        ...

    def mailbox(self, name: str) -> Mailbox:
        """Return a mailbox.

        Raises:
            NoSuchMailboxError: It does not exist.
            InvalidMailboxNameError: The name is not valid.
        """
        ...

    def create(self, name: str) -> Mailbox:
        """Create a mailbox (and any missing parents, RFC 3501 section 6.3.3).

        Raises:
            MailboxExistsError: It exists.
            InvalidMailboxNameError: The name is not valid.
        """
        ...

    def delete(self, name: str) -> None:
        """Delete a mailbox and its messages.

        Raises:
            NoSuchMailboxError: It does not exist.
            MailboxError: It is the INBOX, or has child mailboxes.
        """
        ...

    def rename(self, old: str, new: str) -> None:
        """Rename a mailbox and its children.

        Raises:
            NoSuchMailboxError: ``old`` does not exist.
            MailboxExistsError: ``new`` exists.
            MailboxError: ``old`` is the INBOX.
        """
        ...

    def subscriptions(self) -> list[str]:
        """Return the subscribed names, sorted (they need not exist, RFC 3501 6.3.6)."""
        ...

    def subscribe(self, name: str) -> None:
        """Add a name to the subscriptions."""
        ...

    def unsubscribe(self, name: str) -> None:
        """Remove a name from the subscriptions; does nothing if it is not there."""
        ...


def check_mailbox_name(name: str) -> str:
    r"""Check a mailbox name and return it in its canonical form.

    ``INBOX`` in any case becomes ``INBOX``. Refused: the empty name, names
    over ``MAX_NAME_LENGTH``, control characters (NUL included), ``/`` and
    ``\`` (path separators), IMAP's LIST wildcards ``%`` and ``*``, and
    empty parts (a leading, trailing or doubled ``.``), so that no name
    climbs out of its store (``..`` is a doubled ``.``).

    Raises:
        InvalidMailboxNameError: The name is not valid.
    """
    if not name or len(name) > MAX_NAME_LENGTH:
        raise InvalidMailboxNameError(f"mailbox name of {len(name)} characters")
    for char in name:
        if char < " " or char in "\x7f/\\%*":
            raise InvalidMailboxNameError(f"mailbox name with {char!r}: {name!r}")
    parts = name.split(DELIMITER)
    if any(not part for part in parts):
        raise InvalidMailboxNameError(f"mailbox name with an empty part: {name!r}")
    if parts[0].upper() == INBOX:
        parts[0] = INBOX
    return DELIMITER.join(parts)


def normalize_flags(flags: Iterable[str]) -> frozenset[str]:
    r"""Return flags with the system flags in their canonical case.

    Raises:
        ValueError: A flag is ``\Recent``, an unknown ``\`` flag, or a
            keyword that is not an IMAP atom.
    """
    result: set[str] = set()
    for flag in flags:
        if flag.startswith("\\"):
            canonical = _SYSTEM_BY_LOWER.get(flag.lower())
            if canonical is None:
                raise ValueError(f"not a settable system flag: {flag!r}")
            result.add(canonical)
        elif _KEYWORD.fullmatch(flag):
            result.add(flag)
        else:
            raise ValueError(f"not a valid keyword: {flag!r}")
    return frozenset(result)


def apply_flags(current: frozenset[str], flags: frozenset[str], mode: FlagMode) -> frozenset[str]:
    """Return ``current`` changed by ``flags`` as ``mode`` says."""
    if mode is FlagMode.ADD:
        return current | flags
    if mode is FlagMode.REMOVE:
        return current - flags
    return flags


def to_crlf(data: bytes) -> bytes:
    """Return ``data`` with each bare LF made a CRLF (the wire form of POP3 and IMAP)."""
    return _BARE_LF.sub(b"\r\n", data)


def crlf_size(data: bytes) -> int:
    """Return the size ``data`` has once ``to_crlf`` has made its line endings CRLF."""
    return len(data) + data.count(b"\n") - data.count(b"\r\n")


class Listeners:
    """The listeners of one mailbox, called in order; one that raises is logged and skipped."""

    __slots__ = ("_listeners",)

    def __init__(self) -> None:
        """Start with none."""
        self._listeners: list[MailboxListener] = []

    def add(self, listener: MailboxListener) -> None:
        """Add a listener."""
        self._listeners.append(listener)

    def remove(self, listener: MailboxListener) -> None:
        """Remove a listener; does nothing if it is not there."""
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def notify(self, change: MailboxChange) -> None:
        """Tell every listener of a change."""
        # A copy: a listener may remove itself (a session closing on EXPUNGE).
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:
                # One session's bug must not undo another's delivery.
                _log.exception("A mailbox listener failed on %r", change)


def aware(date: datetime) -> datetime:
    """Return ``date`` to the second, in UTC if it was naive."""
    if date.tzinfo is None:
        date = date.replace(tzinfo=UTC)
    return date.replace(microsecond=0)
