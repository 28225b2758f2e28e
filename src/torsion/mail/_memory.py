"""In-memory mail stores: the mailbox interface with nothing on disk, for tests and examples.

They behave as ``MaildirStore`` does (UIDs, flags, recent messages,
listeners, locking, limits), only every Deferred they return has fired
already, and nothing survives the process.
"""

from __future__ import annotations

import itertools
import time
import warnings
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from torsion.defer import Deferred, ensure_deferred, fail, succeed
from torsion.mail._mailbox import (
    DEFAULT_MAX_MESSAGE_SIZE,
    DELETED,
    DELIMITER,
    INBOX,
    SEEN,
    FlagMode,
    FlagsChanged,
    Listeners,
    Mailbox,
    MailboxError,
    MailboxExistsError,
    MailboxListener,
    MailboxStatus,
    MaildropLock,
    MaildropLockedError,
    MessageInfo,
    MessagesAdded,
    MessagesExpunged,
    MessageTooLargeError,
    NoSuchMailboxError,
    NoSuchMessageError,
    apply_flags,
    aware,
    check_mailbox_name,
    crlf_size,
    normalize_flags,
    to_crlf,
)

__all__ = ["STREAM_PIECE", "MemoryMailStore", "MemoryMailbox"]

#: The size of the pieces ``read_stream`` yields.
STREAM_PIECE = 64 * 1024


@dataclass(slots=True)
class _Message:
    data: bytes
    flags: frozenset[str]
    internal_date: datetime

    def info(self, uid: int) -> MessageInfo:
        return MessageInfo(
            uid=uid, size=len(self.data), flags=self.flags, internal_date=self.internal_date
        )


class _MemoryLock:
    __slots__ = ("_mailbox",)

    def __init__(self, mailbox: MemoryMailbox) -> None:
        self._mailbox: MemoryMailbox | None = mailbox

    def release(self) -> None:
        if self._mailbox is not None:
            self._mailbox._locked = False
            self._mailbox = None

    def __del__(self) -> None:
        # A session that forgot its lock would keep the maildrop locked.
        if self._mailbox is not None:
            warnings.warn(
                f"maildrop lock of {self._mailbox.name!r} never released",
                ResourceWarning,
                stacklevel=1,
            )
            self.release()


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def copy_messages(
    source: Mailbox, uids: Iterable[int], destination: Mailbox
) -> dict[int, int]:
    """Copy messages one by one through the interface; the way between unlike stores."""
    mapping: dict[int, int] = {}
    for uid in sorted(set(uids)):
        try:
            info = source.message(uid)
            data = await source.read(uid)
        except NoSuchMessageError:
            continue
        mapping[uid] = await destination.append(
            data, flags=info.flags, internal_date=info.internal_date
        )
    return mapping


class MemoryMailbox:
    """A mailbox kept in memory; made by ``MemoryMailStore``."""

    def __init__(
        self, name: str, *, uidvalidity: int, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    ) -> None:
        """Make an empty mailbox.

        Args:
            name: Its name.
            uidvalidity: Its UIDVALIDITY.
            max_message_size: The largest message ``append`` takes (CRLF octets).
        """
        self._name = name
        self._uidvalidity = uidvalidity
        self._uidnext = 1
        self._max_message_size = max_message_size
        self._messages: dict[int, _Message] = {}
        self._recent: set[int] = set()
        self._listeners = Listeners()
        self._locked = False
        self.deleted = False

    @property
    def name(self) -> str:
        """The mailbox's name."""
        return self._name

    @property
    def uidvalidity(self) -> int:
        """The UIDVALIDITY."""
        return self._uidvalidity

    @property
    def uidnext(self) -> int:
        """The UID the next message gets."""
        return self._uidnext

    def messages(self) -> Sequence[MessageInfo]:
        """Return every message by ascending UID."""
        return [message.info(uid) for uid, message in self._messages.items()]

    def message(self, uid: int) -> MessageInfo:
        """Return one message's information."""
        try:
            return self._messages[uid].info(uid)
        except KeyError:
            raise NoSuchMessageError(f"no message with UID {uid}") from None

    def status(self) -> MailboxStatus:
        """Return the mailbox's counts."""
        unseen = sum(1 for m in self._messages.values() if SEEN not in m.flags)
        return MailboxStatus(
            messages=len(self._messages),
            recent=len(self._recent),
            unseen=unseen,
            uidnext=self._uidnext,
            uidvalidity=self._uidvalidity,
        )

    def refresh(self) -> None:
        """Do nothing: every change is made through this object and told at once."""

    def read(self, uid: int) -> Deferred[bytes]:
        """Return the message's bytes, CRLF line endings."""
        try:
            return succeed(self._messages[uid].data)
        except KeyError:
            return fail(NoSuchMessageError(f"no message with UID {uid}"))

    async def read_stream(self, uid: int) -> AsyncGenerator[bytes, None]:
        """Yield the message's bytes (CRLF line endings) in pieces of ``STREAM_PIECE`` octets.

        Raises:
            NoSuchMessageError: No message has that UID.
        """
        message = self._messages.get(uid)
        if message is None:
            raise NoSuchMessageError(f"no message with UID {uid}")
        data = message.data
        for start in range(0, len(data), STREAM_PIECE):
            yield data[start : start + STREAM_PIECE]

    def append(
        self,
        message: bytes,
        *,
        flags: Iterable[str] = (),
        internal_date: datetime | None = None,
    ) -> Deferred[int]:
        """Store a message; see ``Mailbox.append``."""
        try:
            uid = self._append(message, flags, internal_date, recent=True)
        except (MailboxError, ValueError) as exc:
            return fail(exc)
        self._listeners.notify(MessagesAdded(uids=(uid,)))
        return succeed(uid)

    def _append(
        self,
        message: bytes,
        flags: Iterable[str],
        internal_date: datetime | None,
        *,
        recent: bool,
    ) -> int:
        if self.deleted:
            raise NoSuchMailboxError(f"mailbox {self._name!r} was deleted")
        if crlf_size(message) > self._max_message_size:
            raise MessageTooLargeError(
                f"message over the limit of {self._max_message_size} octets"
            )
        canonical = normalize_flags(flags)
        date = _now() if internal_date is None else aware(internal_date)
        uid = self._uidnext
        self._uidnext += 1
        self._messages[uid] = _Message(to_crlf(message), canonical, date)
        if recent:
            self._recent.add(uid)
        return uid

    def set_flags(
        self, uids: Iterable[int], flags: Iterable[str], mode: FlagMode = FlagMode.REPLACE
    ) -> dict[int, frozenset[str]]:
        """Change messages' flags; see ``Mailbox.set_flags``."""
        canonical = normalize_flags(flags)
        result: dict[int, frozenset[str]] = {}
        for uid in sorted(set(uids)):
            message = self._messages.get(uid)
            if message is None:
                continue
            new = apply_flags(message.flags, canonical, mode)
            result[uid] = new
            if new != message.flags:
                message.flags = new
                self._listeners.notify(FlagsChanged(uid=uid, flags=new))
        return result

    def expunge(self, uids: Iterable[int] | None = None) -> list[int]:
        r"""Remove the messages flagged ``\Deleted`` (among ``uids`` if given)."""
        candidates = self._messages if uids is None else set(uids)
        doomed = sorted(
            uid
            for uid in candidates
            if uid in self._messages and DELETED in self._messages[uid].flags
        )
        self._remove(doomed)
        return doomed

    def _remove(self, uids: list[int]) -> None:
        for uid in uids:
            del self._messages[uid]
            self._recent.discard(uid)
        if uids:
            self._listeners.notify(MessagesExpunged(uids=tuple(uids)))

    def copy(self, uids: Iterable[int], destination: Mailbox) -> Deferred[dict[int, int]]:
        """Copy messages into another mailbox; see ``Mailbox.copy``."""
        return ensure_deferred(copy_messages(self, uids, destination))

    def move(self, uids: Iterable[int], destination: Mailbox) -> Deferred[dict[int, int]]:
        """Move messages into another mailbox; see ``Mailbox.move``."""

        def moved(mapping: dict[int, int]) -> dict[int, int]:
            self._remove(sorted(uid for uid in mapping if uid in self._messages))
            return mapping

        return self.copy(uids, destination).add_callback(moved)

    def claim_recent(self) -> frozenset[int]:
        """Return the messages not yet claimed, and mark them claimed."""
        claimed = frozenset(self._recent)
        self._recent.clear()
        return claimed

    def lock_maildrop(self) -> MaildropLock:
        """Take the POP3 lock."""
        if self._locked:
            raise MaildropLockedError(f"mailbox {self._name!r} is locked by another session")
        self._locked = True
        return _MemoryLock(self)

    def add_listener(self, listener: MailboxListener) -> None:
        """Call ``listener`` after each change."""
        self._listeners.add(listener)

    def remove_listener(self, listener: MailboxListener) -> None:
        """Stop calling ``listener``."""
        self._listeners.remove(listener)

    def __repr__(self) -> str:
        return f"<MemoryMailbox {self._name!r}: {len(self._messages)} messages>"


class MemoryMailStore:
    """A user's mailboxes in memory: ``INBOX`` exists from the start.

    Args:
        max_message_size: The largest message taken by ``deliver`` and
            ``append`` (octets, CRLF line endings).
    """

    def __init__(self, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        """Make a store holding an empty INBOX."""
        self._max_message_size = max_message_size
        # A UIDVALIDITY never given twice by this store, so a mailbox deleted
        # and created again gets a new one (RFC 3501 section 2.3.1.1).
        self._validity = itertools.count(int(time.time()))
        self._boxes: dict[str, MemoryMailbox] = {}
        self._subscriptions: set[str] = set()
        self._boxes[INBOX] = self._new(INBOX)

    def _new(self, name: str) -> MemoryMailbox:
        return MemoryMailbox(
            name, uidvalidity=next(self._validity), max_message_size=self._max_message_size
        )

    @property
    def delimiter(self) -> str:
        """The hierarchy delimiter: ``.``."""
        return DELIMITER

    def list_mailboxes(self) -> list[str]:
        """Return every mailbox's name, sorted."""
        return sorted(self._boxes)

    def mailbox(self, name: str) -> MemoryMailbox:
        """Return a mailbox; see ``MailStore.mailbox``."""
        try:
            return self._boxes[check_mailbox_name(name)]
        except KeyError:
            raise NoSuchMailboxError(f"no mailbox {name!r}") from None

    def create(self, name: str) -> MemoryMailbox:
        """Create a mailbox and its missing parents."""
        name = check_mailbox_name(name)
        if name in self._boxes:
            raise MailboxExistsError(f"mailbox {name!r} exists")
        parts = name.split(DELIMITER)
        for end in range(1, len(parts)):
            parent = DELIMITER.join(parts[:end])
            if parent not in self._boxes:
                self._boxes[parent] = self._new(parent)
        box = self._boxes[name] = self._new(name)
        return box

    def _children(self, name: str) -> list[str]:
        prefix = name + DELIMITER
        return [other for other in self._boxes if other.startswith(prefix)]

    def delete(self, name: str) -> None:
        """Delete a mailbox; see ``MailStore.delete``."""
        box = self.mailbox(name)
        if box.name == INBOX:
            raise MailboxError("the INBOX cannot be deleted")
        if self._children(box.name):
            raise MailboxError(f"mailbox {box.name!r} has child mailboxes")
        del self._boxes[box.name]
        box.deleted = True

    def rename(self, old: str, new: str) -> None:
        """Rename a mailbox and its children; see ``MailStore.rename``."""
        box = self.mailbox(old)
        new = check_mailbox_name(new)
        if box.name == INBOX:
            raise MailboxError("the INBOX cannot be renamed")
        if new in self._boxes:
            raise MailboxExistsError(f"mailbox {new!r} exists")
        if new.startswith(box.name + DELIMITER):
            raise MailboxError(f"cannot rename {box.name!r} into itself")
        old = box.name
        for name in [old, *self._children(old)]:
            moved = self._boxes.pop(name)
            moved._name = new + name[len(old) :]
            self._boxes[moved.name] = moved
        parts = new.split(DELIMITER)
        for end in range(1, len(parts)):
            parent = DELIMITER.join(parts[:end])
            if parent not in self._boxes:
                self._boxes[parent] = self._new(parent)

    def subscriptions(self) -> list[str]:
        """Return the subscribed names, sorted."""
        return sorted(self._subscriptions)

    def subscribe(self, name: str) -> None:
        """Subscribe to a name."""
        self._subscriptions.add(check_mailbox_name(name))

    def unsubscribe(self, name: str) -> None:
        """Unsubscribe from a name."""
        self._subscriptions.discard(check_mailbox_name(name))

    def deliver(self, message: bytes) -> Deferred[None]:
        """Store a message in the INBOX, unflagged and recent."""
        return self._boxes[INBOX].append(message).add_callback(lambda _uid: None)

    def __repr__(self) -> str:
        return f"<MemoryMailStore: {len(self._boxes)} mailboxes>"
