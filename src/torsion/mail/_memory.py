"""In-memory mail stores: the mailbox interface with nothing on disk, for tests and examples.

They behave as ``MaildirStore`` does (UIDs, flags, recent messages,
listeners, locking, limits), only every Deferred they return has fired
already, and nothing survives the process.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from torsion.defer import Deferred, ensure_deferred, fail, succeed
from torsion.mail._mailbox import (
    DEFAULT_MAX_MESSAGE_SIZE,
    DELIMITER,
    INBOX,
    FlagMode,
    Mailbox,
    MailboxError,
    MailboxExistsError,
    MaildropLock,
    MaildropLockedError,
    MessageInfo,
    MessagesAdded,
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
from torsion.mail._mailbox_base import HeldLock, MailboxBase, copy_messages

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


class _MemoryLock(HeldLock["MemoryMailbox"]):
    __slots__ = ()

    def _let_go(self, held: MemoryMailbox) -> None:
        held._locked = False


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class MemoryMailbox(MailboxBase[_Message]):
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
        super().__init__(name, uidvalidity)
        self._max_message_size = max_message_size
        self._locked = False

    def _entry_flags(self, entry: _Message) -> frozenset[str]:
        return entry.flags

    def _entry_info(self, uid: int, entry: _Message) -> MessageInfo:
        return entry.info(uid)

    def refresh(self) -> None:
        """Do nothing: every change is made through this object and told at once."""

    def read(self, uid: int) -> Deferred[bytes]:
        """Return the message's bytes, CRLF line endings."""
        try:
            return succeed(self._entries[uid].data)
        except KeyError:
            return fail(NoSuchMessageError(f"no message with UID {uid}"))

    async def read_stream(self, uid: int) -> AsyncGenerator[bytes, None]:
        """Yield the message's bytes (CRLF line endings) in pieces of ``STREAM_PIECE`` octets.

        Raises:
            NoSuchMessageError: No message has that UID.
        """
        message = self._entries.get(uid)
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
        self._check_not_deleted()
        if crlf_size(message) > self._max_message_size:
            raise MessageTooLargeError(
                f"message over the limit of {self._max_message_size} octets"
            )
        canonical = normalize_flags(flags)
        date = _now() if internal_date is None else aware(internal_date)
        uid = self._uidnext
        self._uidnext += 1
        self._entries[uid] = _Message(to_crlf(message), canonical, date)
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
            message = self._entries.get(uid)
            if message is None:
                continue
            old = message.flags
            message.flags = result[uid] = apply_flags(old, canonical, mode)
            self._flags_changed(uid, old, message.flags)
        return result

    def _remove(self, uids: list[int]) -> None:
        self._forget(uids)

    def copy(self, uids: Iterable[int], destination: Mailbox) -> Deferred[dict[int, int]]:
        """Copy messages into another mailbox; see ``Mailbox.copy``."""
        return ensure_deferred(copy_messages(self, uids, destination))

    def move(self, uids: Iterable[int], destination: Mailbox) -> Deferred[dict[int, int]]:
        """Move messages into another mailbox; see ``Mailbox.move``."""
        return self._move_by_copy(uids, destination)

    def lock_maildrop(self) -> MaildropLock:
        """Take the POP3 lock."""
        if self._locked:
            raise MaildropLockedError(f"mailbox {self._name!r} is locked by another session")
        self._locked = True
        return _MemoryLock(self, f"maildrop lock of {self._name!r}")

    def __repr__(self) -> str:
        return f"<MemoryMailbox {self._name!r}: {len(self._entries)} messages>"


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
