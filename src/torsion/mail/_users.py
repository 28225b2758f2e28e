"""Users' mail stores by user name: what SMTP delivers through and what a cred realm hands out.

One ``MailStore`` object per user for the life of the directory, so that an
SMTP delivery, a POP3 session and IMAP sessions in one process share it and
its mailboxes' listeners (an IDLE-ing session learns of new mail at once).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Protocol

from torsion.defer import Deferred, fail
from torsion.internet import ThreadRunner
from torsion.mail._mailbox import DEFAULT_MAX_MESSAGE_SIZE, MailboxError, MailStore
from torsion.mail._maildir_store import MaildirStore
from torsion.mail._memory import MemoryMailStore

__all__ = ["MailUsers", "MaildirUsers", "MemoryUsers", "NoSuchUserError", "check_user_name"]

#: The longest user name taken (it is a directory name in ``MaildirUsers``).
MAX_USER_LENGTH = 128

_BAD_USER_CHARACTER = re.compile(r"[\x00-\x1f\x7f/\\]")


class NoSuchUserError(MailboxError, LookupError):
    """No mail store belongs to that user name."""


def check_user_name(user: str) -> str:
    r"""Check that a user name can name a store (and a directory), and return it.

    Refused: the empty name, names over ``MAX_USER_LENGTH``, a leading
    ``.`` (so neither ``.`` nor ``..``), ``/``, ``\`` and control characters.

    Raises:
        NoSuchUserError: The name cannot be a user's.
    """
    if (
        not user
        or len(user) > MAX_USER_LENGTH
        or user.startswith(".")
        or _BAD_USER_CHARACTER.search(user) is not None
    ):
        raise NoSuchUserError(f"not a user name: {user!r}")
    return user


class MailUsers(Protocol):
    """Users' mail stores by name."""

    def exists(self, user: str) -> bool:
        """Return whether ``user`` has a store (SMTP's RCPT check)."""
        ...

    def store(self, user: str) -> MailStore:
        """Return the user's store, the same object each time.

        Raises:
            NoSuchUserError: No such user.
        """
        ...

    def deliver(self, user: str, message: bytes) -> Deferred[None]:
        """Deliver a message into the user's INBOX.

        Fails with ``NoSuchUserError`` or ``MessageTooLargeError``.
        """
        ...


class MaildirUsers:
    """Each user's Maildir in a directory of its own: ``ROOT/USER``.

    Args:
        root: The directory holding the users' Maildirs.
        users: The users; if omitted, any user whose directory exists.
            A listed user's Maildir is made on first use.
        threads: Passed to each ``MaildirStore`` (the reactor).
        fsync: Passed to each ``MaildirStore``.
        max_message_size: Passed to each ``MaildirStore``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        users: Iterable[str] | None = None,
        threads: ThreadRunner | None = None,
        fsync: bool = False,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        """Serve the Maildirs under ``root``."""
        self._root = os.path.abspath(os.fspath(root))
        self._users = None if users is None else {check_user_name(user) for user in users}
        self._threads = threads
        self._fsync = fsync
        self._max_message_size = max_message_size
        self._stores: dict[str, MaildirStore] = {}

    def exists(self, user: str) -> bool:
        """Return whether ``user`` has a Maildir (or is listed)."""
        try:
            user = check_user_name(user)
        except NoSuchUserError:
            return False
        if self._users is not None:
            return user in self._users
        return os.path.isdir(os.path.join(self._root, user, "cur"))

    def store(self, user: str) -> MaildirStore:
        """Return the user's store; see ``MailUsers.store``."""
        store = self._stores.get(user)
        if store is not None:
            return store
        if not self.exists(user):
            raise NoSuchUserError(f"no mail store for {user!r}")
        store = MaildirStore(
            os.path.join(self._root, user),
            threads=self._threads,
            fsync=self._fsync,
            max_message_size=self._max_message_size,
        )
        self._stores[user] = store
        return store

    def deliver(self, user: str, message: bytes) -> Deferred[None]:
        """Deliver into the user's INBOX."""
        try:
            store = self.store(user)
        except MailboxError as exc:
            return fail(exc)
        return store.deliver(message)


class MemoryUsers:
    """Users' stores in memory, for tests and examples.

    Args:
        users: The users, each given an empty ``MemoryMailStore``.
        max_message_size: Passed to each store.
    """

    def __init__(
        self, users: Iterable[str], *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    ) -> None:
        """Make each user's store."""
        self._stores = {
            check_user_name(user): MemoryMailStore(max_message_size=max_message_size)
            for user in users
        }

    def exists(self, user: str) -> bool:
        """Return whether ``user`` is one of the users."""
        return user in self._stores

    def store(self, user: str) -> MemoryMailStore:
        """Return the user's store."""
        try:
            return self._stores[user]
        except KeyError:
            raise NoSuchUserError(f"no mail store for {user!r}") from None

    def deliver(self, user: str, message: bytes) -> Deferred[None]:
        """Deliver into the user's INBOX."""
        try:
            store = self.store(user)
        except MailboxError as exc:
            return fail(exc)
        return store.deliver(message)
