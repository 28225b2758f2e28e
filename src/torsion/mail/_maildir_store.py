"""The Maildir store: a user's Maildir++ folders by name, subscriptions, delivery.

See ``_maildir`` for the layout and how messages are kept safe.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from typing import Any, TypeVar

from torsion.defer import Deferred, fail, succeed
from torsion.internet import ThreadRunner
from torsion.mail._mailbox import (
    DEFAULT_MAX_MESSAGE_SIZE,
    DELIMITER,
    INBOX,
    InvalidMailboxNameError,
    MailboxError,
    MailboxExistsError,
    MessageTooLargeError,
    NoSuchMailboxError,
    check_mailbox_name,
    crlf_size,
    os_errors,
    os_errors_failed,
    translate_os_error,
)
from torsion.mail._maildir import MaildirMailbox
from torsion.mail._maildir_files import size_fields, unique_base, write_atomically
from torsion.mail._maildir_io import make_maildir, write_message
from torsion.mail._mutf7 import decode_modified_utf7, encode_modified_utf7

__all__ = ["MaildirStore"]

T = TypeVar("T")

_SUBSCRIPTIONS = "subscriptions"
_MAX_FILE_NAME = 255  # NAME_MAX on Linux and the BSDs

#: The largest delivery (octets on disk) written on the caller's thread even
#: when the store has threads, if it is not to be fsynced: creating,
#: writing and renaming a small file in the page cache takes a few
#: microseconds, less than handing it to a worker thread and back.
INLINE_WRITE_LIMIT = 64 * 1024


class MaildirStore:
    """A user's Maildir: the INBOX at its top, Maildir++ folders beside.

    Args:
        path: The Maildir's directory.
        create: Make the directory (and its ``tmp``, ``new``, ``cur``) if
            missing; otherwise a missing one is ``NoSuchMailboxError``.
        threads: Where file reads and writes of message bodies run (the
            reactor); on the caller's thread if omitted. A delivery of at
            most ``INLINE_WRITE_LIMIT`` octets without ``fsync`` is written
            on the caller's thread even so.
        fsync: ``fsync`` each message and its directory before a delivery
            or an append is reported done, so that an acknowledged message
            survives a power loss; slower.
        max_message_size: The largest message ``deliver`` and ``append``
            take (octets with CRLF line endings).
        max_read_size: The largest message file ``read`` reads (whole, into
            memory); files other programs put here may be larger.
    """

    @os_errors
    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        threads: ThreadRunner | None = None,
        fsync: bool = False,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_read_size: int | None = None,
    ) -> None:
        """Open (or make) a Maildir."""
        self._path = os.path.abspath(os.fspath(path))
        if create:
            make_maildir(self._path, folder=False)
        elif not os.path.isdir(os.path.join(self._path, "cur")):
            raise NoSuchMailboxError(f"no Maildir at {self._path!r}")
        self._threads = threads
        self.fsync = fsync
        self.max_message_size = max_message_size
        self.max_read_size = 4 * max_message_size if max_read_size is None else max_read_size
        self._boxes: dict[str, MaildirMailbox] = {}

    @property
    def path(self) -> str:
        """The Maildir's directory."""
        return self._path

    @property
    def delimiter(self) -> str:
        """The hierarchy delimiter: ``.``."""
        return DELIMITER

    def run(self, f: Callable[..., T], /, *args: Any, **kwargs: Any) -> Deferred[T]:
        """Run file work in the store's threads, or here when it has none."""
        if self._threads is not None:
            return self._threads.defer_to_thread(lambda: f(*args, **kwargs))
        try:
            return succeed(f(*args, **kwargs))
        except Exception as exc:
            return fail(exc)

    def check_size(self, message: bytes) -> None:
        """Refuse a message over the size limit.

        Raises:
            MessageTooLargeError: It is over.
        """
        if crlf_size(message) > self.max_message_size:
            raise MessageTooLargeError(f"message over the limit of {self.max_message_size} octets")

    def _folder(self, name: str) -> str:
        if name == INBOX:
            return self._path
        directory = "." + encode_modified_utf7(name)
        if len(directory.encode()) > _MAX_FILE_NAME:
            raise InvalidMailboxNameError(f"mailbox name too long on disk: {name!r}")
        return os.path.join(self._path, directory)

    def _exists(self, name: str) -> bool:
        return os.path.isdir(os.path.join(self._folder(name), "cur"))

    @os_errors
    def list_mailboxes(self) -> list[str]:
        """Return every mailbox's name, sorted; folders with invalid names are left out."""
        names = [INBOX]
        with os.scandir(self._path) as entries:
            for entry in entries:
                if not entry.name.startswith(".") or entry.name in (".", ".."):
                    continue
                try:
                    name = check_mailbox_name(decode_modified_utf7(entry.name[1:]))
                except (MailboxError, ValueError):
                    continue  # not a folder of ours, nor one another server named
                if name != INBOX and os.path.isdir(os.path.join(entry.path, "cur")):
                    names.append(name)
        return sorted(names)

    @os_errors
    def mailbox(self, name: str) -> MaildirMailbox:
        """Return a mailbox (the same object each time); see ``MailStore.mailbox``."""
        name = check_mailbox_name(name)
        box = self._boxes.get(name)
        if box is not None and not box.deleted:
            return box
        if not self._exists(name):
            raise NoSuchMailboxError(f"no mailbox {name!r}")
        box = self._boxes[name] = MaildirMailbox(self, name, self._folder(name))
        return box

    @os_errors
    def create(self, name: str) -> MaildirMailbox:
        """Create a mailbox and its missing parents."""
        name = check_mailbox_name(name)
        if self._exists(name):
            raise MailboxExistsError(f"mailbox {name!r} exists")
        parts = name.split(DELIMITER)
        for end in range(1, len(parts) + 1):
            make_maildir(self._folder(DELIMITER.join(parts[:end])), folder=True)
        return self.mailbox(name)

    def _children(self, name: str) -> list[str]:
        prefix = name + DELIMITER
        return [other for other in self.list_mailboxes() if other.startswith(prefix)]

    @os_errors
    def delete(self, name: str) -> None:
        """Delete a mailbox and its messages; see ``MailStore.delete``."""
        name = check_mailbox_name(name)
        if name == INBOX:
            raise MailboxError("the INBOX cannot be deleted")
        if not self._exists(name):
            raise NoSuchMailboxError(f"no mailbox {name!r}")
        if self._children(name):
            raise MailboxError(f"mailbox {name!r} has child mailboxes")
        # Out of sight first (a name without the leading dot is no folder),
        # then removed: a crash half-way leaves no half a mailbox.
        trash = os.path.join(self._path, f"torsion-deleted-{os.urandom(8).hex()}")
        os.rename(self._folder(name), trash)
        shutil.rmtree(trash, ignore_errors=True)
        box = self._boxes.pop(name, None)
        if box is not None:
            box._vanished(notify=True)

    @os_errors
    def rename(self, old: str, new: str) -> None:
        """Rename a mailbox and its children; see ``MailStore.rename``."""
        old = check_mailbox_name(old)
        new = check_mailbox_name(new)
        if old == INBOX:
            raise MailboxError("the INBOX cannot be renamed")
        if not self._exists(old):
            raise NoSuchMailboxError(f"no mailbox {old!r}")
        if new == INBOX or self._exists(new):
            raise MailboxExistsError(f"mailbox {new!r} exists")
        if new.startswith(old + DELIMITER):
            raise MailboxError(f"cannot rename {old!r} into itself")
        parts = new.split(DELIMITER)
        for end in range(1, len(parts)):
            make_maildir(self._folder(DELIMITER.join(parts[:end])), folder=True)
        for name in [old, *self._children(old)]:
            renamed = new + name[len(old) :]
            os.rename(self._folder(name), self._folder(renamed))
            box = self._boxes.pop(name, None)
            if box is not None:
                box._name = renamed
                box._path = self._folder(renamed)
                self._boxes[renamed] = box

    def _subscriptions_path(self) -> str:
        return os.path.join(self._path, _SUBSCRIPTIONS)

    @os_errors
    def subscriptions(self) -> list[str]:
        """Return the subscribed names, sorted (the ``subscriptions`` file, a name a line)."""
        try:
            with open(self._subscriptions_path(), "rb") as file:
                lines = file.read().decode("utf-8", "replace").splitlines()
        except FileNotFoundError:
            return []
        names: set[str] = set()
        for line in lines:
            with contextlib.suppress(MailboxError):
                names.add(check_mailbox_name(line))
        return sorted(names)

    def _write_subscriptions(self, names: set[str]) -> None:
        text = "".join(f"{name}\n" for name in sorted(names))
        write_atomically(self._subscriptions_path(), text.encode("utf-8"))

    @os_errors
    def subscribe(self, name: str) -> None:
        """Subscribe to a name."""
        name = check_mailbox_name(name)
        names = set(self.subscriptions())
        if name not in names:
            self._write_subscriptions(names | {name})

    @os_errors
    def unsubscribe(self, name: str) -> None:
        """Unsubscribe from a name."""
        name = check_mailbox_name(name)
        names = set(self.subscriptions())
        if name in names:
            self._write_subscriptions(names - {name})

    def deliver(self, message: bytes) -> Deferred[None]:
        """Deliver a message into ``new/``, as any MDA would.

        Sessions listening on this store's INBOX are told at once; others
        see it at their next ``refresh``. No UID is given here, so that a
        delivery costs one file, not a listing of the INBOX.
        """
        try:
            self.check_size(message)
        except MailboxError as exc:
            return fail(exc)
        data = message.replace(b"\r\n", b"\n")
        base = unique_base(size_fields(len(data), crlf_size(data)))
        if self._threads is not None and (self.fsync or len(data) > INLINE_WRITE_LIMIT):
            d = self.run(write_message, self._path, "new", base, data, None, self.fsync)
            return d.add_callback(self._delivered).add_errback(os_errors_failed)
        try:
            write_message(self._path, "new", base, data, None, self.fsync)
        except OSError as exc:
            return fail(translate_os_error(exc))
        self._delivered(None)
        return succeed(None)

    def _delivered(self, _: object) -> None:
        inbox = self._boxes.get(INBOX)
        if inbox is not None and inbox.has_listeners:
            inbox.refresh()

    def __repr__(self) -> str:
        return f"<MaildirStore at {self._path!r}>"
