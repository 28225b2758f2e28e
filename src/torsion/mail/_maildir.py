r"""Maildir mail stores (maildir(5), with Maildir++ folders): the mailbox interface on disk.

A store is a Maildir directory (``tmp/``, ``new/``, ``cur/``) holding the
INBOX; each other mailbox is a Maildir in a subdirectory named ``.`` plus
its name (``.Sent``, ``.Archive.2024``), holding an empty ``maildirfolder``
file, as Courier and Dovecot lay them out. Folder names are written in
IMAP's modified UTF-7 on disk (``.Entw&APw-rfe`` for ``Entwürfe``), as
Courier and Dovecot write them by default, so that their folders keep their
names here.

How it stays safe:

- A message is written under ``tmp/`` (and ``fsync``'d when the store is
  made with ``fsync=True``), then renamed into ``new/`` or ``cur/``: a reader
  sees it whole or not at all, and a file left in ``tmp/`` by a crash is
  never taken for a message. Files are stored with LF line endings, as
  other Maildir readers expect; ``read`` gives CRLF.
- UIDs are given under a ``flock(2)`` lock and kept in ``torsion-uidlist``,
  replaced atomically (see ``_maildir_files``): they survive restarts, and
  processes delivering at once neither lose nor share one. A lost UID list
  means a new, larger UIDVALIDITY.
- Messages put in ``new/`` or ``cur/`` by another program (an MDA, mutt,
  Dovecot) get UIDs at the next ``refresh``. A file that disappears (another
  client expunged it, or renamed it to change its flags) is looked for once
  more by its unique name, then counted as expunged: never an error out of
  ``refresh``.

Message bodies move in ``threads`` (the reactor, or any ``ThreadRunner``)
when one is given; without, they are read and written on the caller's
thread and the Deferreds have fired on return. The rest is synchronous and
bounded by the message count (a directory listing, a small file).

``\Recent`` is a process's view: messages found in ``new/`` and those this
process appended are recent until a session claims them, which moves the
files from ``new/`` to ``cur/`` (as Dovecot does), so that another process
does not count them recent again.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from torsion.defer import Deferred, ensure_deferred, fail
from torsion.mail._mailbox import (
    SYSTEM_FLAGS,
    FlagMode,
    FlagsChanged,
    Mailbox,
    MailboxError,
    MaildropLock,
    MaildropLockedError,
    MessageInfo,
    MessagesAdded,
    NoSuchMailboxError,
    NoSuchMessageError,
    apply_flags,
    aware,
    crlf_size,
    normalize_flags,
    os_errors,
    os_errors_failed,
    to_crlf,
    translate_os_error,
)
from torsion.mail._mailbox_base import HeldLock, MailboxBase, copy_messages
from torsion.mail._maildir_files import (
    KEYWORD_LETTERS,
    KEYWORDS_FILE,
    POP3_LOCK,
    UIDLIST_FILE,
    UIDLIST_LOCK,
    UidList,
    fields_of,
    flags_from_info,
    flock,
    info_from_flags,
    new_uidvalidity,
    read_keywords,
    read_uidlist,
    size_fields,
    split_name,
    try_flock,
    unique_base,
    wire_size_of,
    write_keywords,
    write_uidlist,
)
from torsion.mail._maildir_io import (
    copy_files,
    read_message,
    read_piece,
    wire_size_of_file,
    write_message,
)
from torsion.mail._memory import STREAM_PIECE

if TYPE_CHECKING:
    from torsion.mail._maildir_store import MaildirStore

__all__ = ["MaildirMailbox"]

_TMP_LIFETIME = 36 * 3600


@dataclass(slots=True)
class _Entry:
    sub: str  # "new" or "cur"
    filename: str
    base: str
    letters: str | None
    size: int
    date: datetime


class _FileLock(HeldLock[int]):
    __slots__ = ()

    def _let_go(self, held: int) -> None:
        os.close(held)


class MaildirMailbox(MailboxBase[_Entry]):
    """One Maildir folder as a mailbox; made by ``MaildirStore``."""

    def __init__(self, store: MaildirStore, name: str, path: str) -> None:
        """Open a folder and give its messages UIDs.

        Args:
            store: The store it belongs to.
            name: Its name.
            path: Its directory.
        """
        super().__init__(name, 0)
        self._store = store
        self._path = path
        self._by_base: dict[str, int] = {}
        self._recent_bases: set[str] = set()
        self._keywords: list[str] = []
        self._sync(notify=False)
        if not self.deleted:
            self._clean_tmp()

    def _clean_tmp(self) -> None:
        # maildir(5): a file in tmp/ untouched for 36 hours is a crashed
        # delivery's; remove it. A live delivery's file is seconds old.
        horizon = time.time() - _TMP_LIFETIME
        with (
            contextlib.suppress(FileNotFoundError),
            os.scandir(os.path.join(self._path, "tmp")) as entries,
        ):
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):
                    if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < horizon:
                        os.unlink(entry.path)

    @property
    def path(self) -> str:
        """The folder's directory."""
        return self._path

    # -- reading the folder ------------------------------------------------------------

    def _scan(self) -> dict[str, tuple[str, str]]:
        # new/ before cur/: a file another client moves from new/ to cur/
        # while we list is then seen in one or the other.
        found: dict[str, tuple[str, str]] = {}
        for sub in ("new", "cur"):
            with os.scandir(os.path.join(self._path, sub)) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue  # maildir(5): names starting with a dot are not messages
                    base = split_name(entry.name)[0]
                    found[base] = (sub, entry.name)
        return found

    def _sync(self, *, notify: bool = True) -> None:
        try:
            self._keywords = read_keywords(os.path.join(self._path, KEYWORDS_FILE))
            with flock(os.path.join(self._path, UIDLIST_LOCK)):
                listing = self._scan()
                uidlist = self._merge(listing)
        except FileNotFoundError:
            self._vanished(notify=notify)
            return
        self._apply(uidlist, listing, notify=notify)

    def _merge(self, listing: dict[str, tuple[str, str]]) -> UidList:
        # Called with the UID lock held: the file's UIDs, less the files that
        # are gone, plus new UIDs for files it does not know.
        path = os.path.join(self._path, UIDLIST_FILE)
        uidlist = read_uidlist(path)
        changed = False
        if uidlist is None:
            uidlist = UidList(new_uidvalidity(self._store.path), 1, {})
            changed = True
        missing = [base for base in uidlist.uids if base not in listing]
        if missing:
            # A second look before calling them gone: a rename may have
            # been under way during the first.
            listing.update(self._scan())
            for base in missing:
                if base not in listing:
                    del uidlist.uids[base]
                    changed = True
        for base in sorted(base for base in listing if base not in uidlist.uids):
            uidlist.uids[base] = uidlist.uidnext
            uidlist.uidnext += 1
            changed = True
        if changed:
            write_uidlist(path, uidlist)
        return uidlist

    def _vanished(self, *, notify: bool) -> None:
        # The folder itself is gone (deleted by another process).
        self.deleted = True
        self._forget(list(self._entries), notify=notify)

    def _apply(
        self, uidlist: UidList, listing: dict[str, tuple[str, str]], *, notify: bool
    ) -> None:
        changes: list[FlagsChanged] = []
        if uidlist.uidvalidity != self._uidvalidity:
            self._forget(list(self._entries), notify=notify)
            self._uidvalidity = uidlist.uidvalidity
        expunged = [
            uid for uid, entry in self._entries.items() if uidlist.uids.get(entry.base) != uid
        ]
        self._forget(expunged, notify=notify)
        added: list[int] = []
        highest = max(self._entries, default=0)
        for base, uid in uidlist.uids.items():
            sub, filename = listing[base]
            entry = self._entries.get(uid)
            if entry is None:
                new = self._discover(base, sub, filename)
                if new is None:
                    continue
                self._entries[uid] = new
                self._by_base[base] = uid
                if sub == "new" or base in self._recent_bases:
                    self._recent.add(uid)
                    self._recent_bases.discard(base)
                added.append(uid)
            elif entry.filename != filename or entry.sub != sub:
                old = self._entry_flags(entry)
                entry.sub = sub
                entry.filename = filename
                entry.letters = split_name(filename)[1]
                flags = self._entry_flags(entry)
                if flags != old:
                    changes.append(FlagsChanged(uid=uid, flags=flags))
        if added and min(added) < highest:
            # Only when a file was missed in one listing and found in a later
            # one: keep the messages in UID order all the same.
            self._entries = dict(sorted(self._entries.items()))
        self._uidnext = uidlist.uidnext
        if notify:
            for change in changes:
                self._listeners.notify(change)
            if added:
                self._listeners.notify(MessagesAdded(uids=tuple(sorted(added))))

    def _discover(self, base: str, sub: str, filename: str) -> _Entry | None:
        path = os.path.join(self._path, sub, filename)
        try:
            mtime = os.stat(path).st_mtime
            size = wire_size_of(base)
            if size is None:
                size = wire_size_of_file(path)
        except FileNotFoundError:
            return None  # gone since the listing: the next refresh drops it
        date = datetime.fromtimestamp(int(mtime), UTC)
        return _Entry(sub, filename, base, split_name(filename)[1], size, date)

    def _forgotten(self, entry: _Entry) -> None:
        self._by_base.pop(entry.base, None)

    def _entry_flags(self, entry: _Entry) -> frozenset[str]:
        return flags_from_info(entry.letters, self._keywords)

    def _entry_info(self, uid: int, entry: _Entry) -> MessageInfo:
        return MessageInfo(
            uid=uid, size=entry.size, flags=self._entry_flags(entry), internal_date=entry.date
        )

    def _entry_path(self, entry: _Entry) -> str:
        return os.path.join(self._path, entry.sub, entry.filename)

    def _relocate(self, entry: _Entry) -> bool:
        # Another client renamed the file (flags, or new/ to cur/): find it
        # again by its unique base, and tell listeners if its flags changed.
        try:
            listing = self._scan()
        except FileNotFoundError:
            return False
        found = listing.get(entry.base)
        if found is None:
            return False
        old = self._entry_flags(entry)
        entry.sub, entry.filename = found
        entry.letters = split_name(entry.filename)[1]
        uid = self._by_base.get(entry.base)
        if uid is not None:
            self._flags_changed(uid, old, self._entry_flags(entry))
        return True

    # -- the interface -----------------------------------------------------------------

    @os_errors
    def refresh(self) -> None:
        """Take in the folder's changes made by other processes; listeners are told."""
        if not self.deleted:
            self._sync()

    def read(self, uid: int) -> Deferred[bytes]:
        """Read a message, CRLF line endings; see ``Mailbox.read``."""
        entry = self._entries.get(uid)
        if entry is None:
            return fail(NoSuchMessageError(f"no message with UID {uid}"))
        limit = self._store.max_read_size

        def retry(exc: BaseException) -> Deferred[bytes]:
            if isinstance(exc, FileNotFoundError):
                if self._entries.get(uid) is entry and self._relocate(entry):
                    return self._store.run(read_message, self._entry_path(entry), limit)
                return fail(NoSuchMessageError(f"message {uid} is gone"))
            return fail(exc)

        def gone(exc: BaseException) -> Deferred[bytes]:
            if isinstance(exc, FileNotFoundError):
                return fail(NoSuchMessageError(f"message {uid} is gone"))
            return fail(exc)

        d = self._store.run(read_message, self._entry_path(entry), limit)
        return d.add_errback(retry).add_errback(gone).add_errback(os_errors_failed)

    async def read_stream(self, uid: int) -> AsyncGenerator[bytes, None]:
        """Yield a message in pieces, with CRLF line endings.

        For large messages (POP3 RETR, IMAP partial fetches): memory stays
        bounded by a piece (``STREAM_PIECE`` octets of the file), and no
        read limit applies. The file is opened for each piece, so that
        nothing is held open between them, and a file another client
        renamed (its flags changed) meanwhile is found again by its unique
        name.

        Raises:
            NoSuchMessageError: The message is gone (before the first
                piece, or part-way when another client expunged it).
        """
        entry = self._entries.get(uid)
        if entry is None:
            raise NoSuchMessageError(f"no message with UID {uid}")
        offset = 0
        after_cr = False
        while True:
            try:
                piece = await self._read_piece(uid, entry, offset)
            except OSError as exc:
                raise translate_os_error(exc) from exc
            if not piece:
                return
            offset += len(piece)
            if after_cr and piece.startswith(b"\n"):
                # The CR ended the last piece: this LF is its CRLF's.
                out = b"\n" + to_crlf(piece[1:])
            else:
                out = to_crlf(piece)
            after_cr = piece.endswith(b"\r")
            yield out

    async def _read_piece(self, uid: int, entry: _Entry, offset: int) -> bytes:
        try:
            return await self._store.run(read_piece, self._entry_path(entry), offset, STREAM_PIECE)
        except FileNotFoundError:
            if self._entries.get(uid) is not entry or not self._relocate(entry):
                raise NoSuchMessageError(f"message {uid} is gone") from None
        try:
            return await self._store.run(read_piece, self._entry_path(entry), offset, STREAM_PIECE)
        except FileNotFoundError:
            raise NoSuchMessageError(f"message {uid} is gone") from None

    def _letters(self, flags: frozenset[str], kept: str = "") -> str:
        keywords = flags - SYSTEM_FLAGS
        if not keywords.issubset(self._keywords):
            path = os.path.join(self._path, KEYWORDS_FILE)
            with flock(os.path.join(self._path, UIDLIST_LOCK)):
                known = read_keywords(path)
                for keyword in sorted(keywords - set(known)):
                    if "" in known:
                        known[known.index("")] = keyword
                    elif len(known) < len(KEYWORD_LETTERS):
                        known.append(keyword)
                    else:
                        raise MailboxError(
                            f"a Maildir folder holds {len(KEYWORD_LETTERS)} keywords at most"
                        )
                write_keywords(path, known)
            self._keywords = known
        return info_from_flags(flags, self._keywords, kept)

    def append(
        self,
        message: bytes,
        *,
        flags: Iterable[str] = (),
        internal_date: datetime | None = None,
    ) -> Deferred[int]:
        """Store a message; see ``Mailbox.append``."""
        try:
            self._check_not_deleted()
            self._store.check_size(message)
            canonical = normalize_flags(flags)
            letters = self._letters(canonical)
        except (MailboxError, ValueError) as exc:
            return fail(exc)
        data = message.replace(b"\r\n", b"\n")
        base = unique_base(size_fields(len(data), crlf_size(data)))
        sub, filename = ("cur", f"{base}:2,{letters}") if canonical else ("new", base)
        mtime = None if internal_date is None else aware(internal_date).timestamp()
        # Recent for this process even when written to cur/ with flags.
        self._recent_bases.add(base)

        def stored(_: None) -> int:
            self._sync()
            uid = self._by_base.get(base)
            if uid is None:
                raise NoSuchMessageError("the message was expunged by another client at once")
            return uid

        def failed(exc: BaseException) -> Deferred[int]:
            self._recent_bases.discard(base)
            return fail(exc)

        d = self._store.run(
            write_message, self._path, sub, filename, data, mtime, self._store.fsync
        )
        return d.add_callbacks(stored, failed).add_errback(os_errors_failed)

    @os_errors
    def set_flags(
        self, uids: Iterable[int], flags: Iterable[str], mode: FlagMode = FlagMode.REPLACE
    ) -> dict[int, frozenset[str]]:
        """Change messages' flags by renaming their files; see ``Mailbox.set_flags``."""
        canonical = normalize_flags(flags)
        self._letters(canonical)  # the folder learns any new keyword first
        result: dict[int, frozenset[str]] = {}
        for uid in sorted(set(uids)):
            entry = self._entries.get(uid)
            if entry is None:
                continue
            new = self._set_flags(uid, entry, canonical, mode)
            if new is not None:
                result[uid] = new
        return result

    def _set_flags(
        self, uid: int, entry: _Entry, flags: frozenset[str], mode: FlagMode
    ) -> frozenset[str] | None:
        # Two tries: when the file was renamed by another client, its flags
        # are read again from its new name before ours are applied to them.
        for _ in range(2):
            old = self._entry_flags(entry)
            new = apply_flags(old, flags, mode)
            letters = self._letters(new, entry.letters or "")
            if entry.sub == "cur" and letters == entry.letters:
                return new
            filename = f"{entry.base}:2,{letters}"
            try:
                os.rename(self._entry_path(entry), os.path.join(self._path, "cur", filename))
            except FileNotFoundError:
                if self._relocate(entry):
                    continue
                return None  # expunged by another client: the next refresh says so
            entry.sub = "cur"
            entry.filename = filename
            entry.letters = letters
            self._flags_changed(uid, old, new)
            return new
        return None

    @os_errors
    def _remove(self, uids: list[int]) -> None:
        for uid in uids:
            entry = self._entries[uid]
            try:
                os.unlink(self._entry_path(entry))
            except FileNotFoundError:
                if self._relocate(entry):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self._entry_path(entry))
        self._forget(uids, notify=True)

    def _transfer(
        self, uids: Iterable[int], destination: MaildirMailbox, *, move: bool
    ) -> Deferred[dict[int, int]]:
        if destination.deleted:
            return fail(NoSuchMailboxError(f"mailbox {destination.name!r} was deleted"))
        jobs: list[tuple[str, str, str]] = []
        plan: list[tuple[int, str]] = []
        try:
            for uid in sorted(set(uids)):
                entry = self._entries.get(uid)
                if entry is None:
                    continue
                letters = destination._letters(self._entry_flags(entry), entry.letters or "")
                base = unique_base(fields_of(entry.base) or size_fields(0, entry.size))
                jobs.append(
                    (
                        self._entry_path(entry),
                        os.path.join(destination.path, "tmp", base),
                        os.path.join(destination.path, "cur", f"{base}:2,{letters}"),
                    )
                )
                plan.append((uid, base))
        except MailboxError as exc:
            return fail(exc)
        # The copies are new to the destination: \Recent there (RFC 3501
        # section 6.4.7), though written to cur/ to keep their flags.
        destination._recent_bases.update(base for _, base in plan)

        def done(results: list[bool]) -> dict[int, int]:
            if move:
                moved = [uid for (uid, _), ok in zip(plan, results, strict=True) if ok]
                self._forget([uid for uid in moved if uid in self._entries], notify=True)
            destination._recent_bases.difference_update(
                base for (_, base), ok in zip(plan, results, strict=True) if not ok
            )
            destination._sync()
            mapping: dict[int, int] = {}
            for (uid, base), ok in zip(plan, results, strict=True):
                new = destination._by_base.get(base)
                if ok and new is not None:
                    mapping[uid] = new
            return mapping

        d = self._store.run(copy_files, jobs, move=move, sync=self._store.fsync)
        return d.add_callback(done).add_errback(os_errors_failed)

    def copy(self, uids: Iterable[int], destination: Mailbox) -> Deferred[dict[int, int]]:
        """Copy messages into another mailbox (hard links within a store)."""
        if isinstance(destination, MaildirMailbox):
            return self._transfer(uids, destination, move=False)
        return ensure_deferred(copy_messages(self, uids, destination))

    def move(self, uids: Iterable[int], destination: Mailbox) -> Deferred[dict[int, int]]:
        """Move messages into another mailbox (a rename within a store)."""
        if isinstance(destination, MaildirMailbox):
            return self._transfer(uids, destination, move=True)
        return self._move_by_copy(uids, destination)

    @os_errors
    def claim_recent(self) -> frozenset[int]:
        """Return the recent messages and move their files from ``new/`` to ``cur/``."""
        claimed = super().claim_recent()
        for uid in sorted(claimed):
            entry = self._entries.get(uid)
            if entry is None or entry.sub != "new":
                continue
            filename = f"{entry.base}:2,"
            try:
                os.rename(self._entry_path(entry), os.path.join(self._path, "cur", filename))
            except FileNotFoundError:
                continue  # moved or expunged by another client: the next refresh says
            entry.sub = "cur"
            entry.filename = filename
            entry.letters = ""
        return claimed

    @os_errors
    def lock_maildrop(self) -> MaildropLock:
        """Take the POP3 lock: an ``flock(2)`` that other processes and sessions respect."""
        fd = try_flock(os.path.join(self._path, POP3_LOCK))
        if fd is None:
            raise MaildropLockedError(f"mailbox {self._name!r} is locked by another session")
        return _FileLock(fd)

    @property
    def has_listeners(self) -> bool:
        """Whether any listener is added."""
        return bool(self._listeners._listeners)

    def __repr__(self) -> str:
        return f"<MaildirMailbox {self._name!r} at {self._path!r}>"
