r"""The bookkeeping the mailbox implementations share, whatever holds the messages.

``MailboxBase`` keeps a mailbox's name, UIDVALIDITY and UIDNEXT, its
messages by ascending UID (each implementation's own record of one), the
UIDs still ``\Recent`` for this process and the listeners, and answers
from them what needs no storage: the message list, one message, the
counts, which messages an expunge removes, forgetting messages (and
telling listeners), claiming the recent ones. The memory and Maildir
mailboxes subclass it and say how a record gives its flags and
``MessageInfo``; the storage itself (reading, writing, renaming files)
stays theirs.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import Generic, TypeVar, cast

from torsion.defer import Deferred, ensure_deferred
from torsion.mail._mailbox import (
    DELETED,
    SEEN,
    FlagsChanged,
    Listeners,
    Mailbox,
    MailboxListener,
    MailboxStatus,
    MessageInfo,
    MessagesExpunged,
    NoSuchMailboxError,
    NoSuchMessageError,
)

__all__ = ["HeldLock", "MailboxBase", "copy_messages"]

EntryT = TypeVar("EntryT")
HeldT = TypeVar("HeldT")


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


class MailboxBase(Generic[EntryT]):
    """A mailbox's in-memory bookkeeping; subclasses store the messages.

    Subclasses fill in ``_entry_flags``, ``_entry_info`` and ``_remove``
    (delete the messages from storage, then ``_forget`` them), and may
    extend ``_forgotten`` and ``claim_recent``.

    Args:
        name: The mailbox's name.
        uidvalidity: Its UIDVALIDITY (0 until a subclass reads it).

    Attributes:
        deleted: True once the mailbox was deleted: it takes no more messages.
    """

    def __init__(self, name: str, uidvalidity: int) -> None:
        self._name = name
        self._uidvalidity = uidvalidity
        self._uidnext = 1
        # Ascending UIDs: insert in UID order (or sort after).
        self._entries: dict[int, EntryT] = {}
        self._recent: set[int] = set()
        self._listeners = Listeners()
        self.deleted = False

    # -- what each implementation says ---------------------------------------------------

    def _entry_flags(self, entry: EntryT) -> frozenset[str]:
        """Return a message's flags."""
        raise NotImplementedError

    def _entry_info(self, uid: int, entry: EntryT) -> MessageInfo:
        """Return a message's ``MessageInfo``."""
        raise NotImplementedError

    def _remove(self, uids: list[int]) -> None:
        """Remove the messages ``uids`` (ascending, all present) and forget them."""
        raise NotImplementedError

    def _forgotten(self, entry: EntryT) -> None:
        """Called for each message ``_forget`` drops (to drop what else points at it)."""

    # -- the interface ---------------------------------------------------------------------

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
        """The UID the next message gets (at least)."""
        return self._uidnext

    def messages(self) -> Sequence[MessageInfo]:
        """Return every message by ascending UID."""
        return [self._entry_info(uid, entry) for uid, entry in self._entries.items()]

    def message(self, uid: int) -> MessageInfo:
        """Return one message's information.

        Raises:
            NoSuchMessageError: No message has that UID.
        """
        entry = self._entries.get(uid)
        if entry is None:
            raise NoSuchMessageError(f"no message with UID {uid}")
        return self._entry_info(uid, entry)

    def status(self) -> MailboxStatus:
        """Return the mailbox's counts."""
        unseen = sum(1 for entry in self._entries.values() if SEEN not in self._entry_flags(entry))
        return MailboxStatus(
            messages=len(self._entries),
            recent=len(self._recent),
            unseen=unseen,
            uidnext=self._uidnext,
            uidvalidity=self._uidvalidity,
        )

    def expunge(self, uids: Iterable[int] | None = None) -> list[int]:
        r"""Remove the messages flagged ``\Deleted`` (among ``uids`` if given)."""
        candidates = list(self._entries) if uids is None else sorted(set(uids))
        doomed = [
            uid
            for uid in candidates
            if uid in self._entries and DELETED in self._entry_flags(self._entries[uid])
        ]
        self._remove(doomed)
        return doomed

    def claim_recent(self) -> frozenset[int]:
        """Return the messages not yet claimed, and mark them claimed."""
        claimed = frozenset(self._recent)
        self._recent.clear()
        return claimed

    def add_listener(self, listener: MailboxListener) -> None:
        """Call ``listener`` after each change."""
        self._listeners.add(listener)

    def remove_listener(self, listener: MailboxListener) -> None:
        """Stop calling ``listener``."""
        self._listeners.remove(listener)

    # -- for the implementations -----------------------------------------------------------

    def _check_not_deleted(self) -> None:
        """Refuse to store into a deleted mailbox."""
        if self.deleted:
            raise NoSuchMailboxError(f"mailbox {self._name!r} was deleted")

    def _flags_changed(self, uid: int, old: frozenset[str], new: frozenset[str]) -> None:
        """Tell listeners of a message's new flags, if they changed."""
        if new != old:
            self._listeners.notify(FlagsChanged(uid=uid, flags=new))

    def _forget(self, uids: list[int], *, notify: bool = True) -> None:
        """Drop messages from the bookkeeping; tell listeners they were expunged."""
        for uid in uids:
            self._forgotten(self._entries.pop(uid))
            self._recent.discard(uid)
        if uids and notify:
            self._listeners.notify(MessagesExpunged(uids=tuple(sorted(uids))))

    def _move_by_copy(self, uids: Iterable[int], destination: Mailbox) -> Deferred[dict[int, int]]:
        """Move by copying through the interface, then removing the copied messages here."""

        def moved(mapping: dict[int, int]) -> dict[int, int]:
            self._remove(sorted(uid for uid in mapping if uid in self._entries))
            return mapping

        # Only subclasses that are whole mailboxes call this.
        source = cast("Mailbox", self)
        return ensure_deferred(copy_messages(source, uids, destination)).add_callback(moved)


class HeldLock(Generic[HeldT]):
    """A maildrop lock released once, explicitly or (with a warning) when forgotten.

    Args:
        held: What the lock holds (a descriptor, a mailbox); ``_let_go``
            gives it back.
        what: The lock, as the warning names it.
    """

    __slots__ = ("_held", "_what")

    def __init__(self, held: HeldT, what: str = "maildrop lock") -> None:
        self._held: HeldT | None = held
        self._what = what

    def _let_go(self, held: HeldT) -> None:
        """Give back what the lock holds."""
        raise NotImplementedError

    def release(self) -> None:
        """Release the lock; later calls do nothing."""
        held, self._held = self._held, None
        if held is not None:
            self._let_go(held)

    def __del__(self) -> None:
        # A session that forgot its lock would keep the maildrop locked
        # (and, for a file lock, leak a descriptor) for the life of the process.
        if self._held is not None:
            warnings.warn(f"{self._what} never released", ResourceWarning, stacklevel=1)
            self.release()
