"""torsion.mail: SMTP, POP3 and IMAP4 on one mailbox interface.

- Storage: ``MailStore`` (a user's mailboxes by name, ``.`` the hierarchy
  delimiter, subscriptions, ``deliver`` into the INBOX) and ``Mailbox``
  (messages by UID with sizes, flags and internal dates; read, append,
  set flags, expunge, copy, move; UIDVALIDITY and UIDNEXT; listeners told
  of every change; the POP3 maildrop lock), with two implementations:
  ``MaildirStore`` (maildir(5) with Maildir++ folders, UIDs persisted,
  safe against crashes and concurrent processes) and ``MemoryMailStore``.
  ``MessageSink`` is what SMTP delivers to; ``MailUsers`` (``MaildirUsers``,
  ``MemoryUsers``) finds a user's store by name, one object per user so
  that every session in a process shares it.
- ``encode_modified_utf7``/``decode_modified_utf7``: IMAP's spelling of
  mailbox names (RFC 3501 section 5.1.3); names are ``str`` everywhere else.
- Outbound mail: ``MailQueue`` (messages on disk until delivered, retried
  with backoff, bounced as RFC 3464 reports) delivering through a
  ``Relay`` (MX lookups with torsion.names, then SMTP to the exchangers;
  it needs the ``names`` extra and is imported on first use).
"""

from typing import TYPE_CHECKING, Any

from torsion.mail._mailbox import (
    ANSWERED,
    DEFAULT_MAX_MESSAGE_SIZE,
    DELETED,
    DRAFT,
    FLAGGED,
    SEEN,
    SYSTEM_FLAGS,
    FlagMode,
    FlagsChanged,
    InvalidMailboxNameError,
    Mailbox,
    MailboxChange,
    MailboxError,
    MailboxExistsError,
    MailboxIOError,
    MailboxListener,
    MailboxStatus,
    MaildropLock,
    MaildropLockedError,
    MailStore,
    MessageInfo,
    MessagesAdded,
    MessagesExpunged,
    MessageSink,
    MessageTooLargeError,
    NoSuchMailboxError,
    NoSuchMessageError,
    check_mailbox_name,
)
from torsion.mail._maildir import MaildirMailbox
from torsion.mail._maildir_store import MaildirStore
from torsion.mail._memory import MemoryMailbox, MemoryMailStore
from torsion.mail._mutf7 import decode_modified_utf7, encode_modified_utf7
from torsion.mail._queue import Deliverer, MailQueue, QueuedMessage, QueueError, build_dsn
from torsion.mail._realm import LocalDelivery, MailRealm, local_first
from torsion.mail._users import MaildirUsers, MailUsers, MemoryUsers, NoSuchUserError

if TYPE_CHECKING:
    from torsion.mail._relay import MessageSender, Relay, RelayError

__all__ = [
    "ANSWERED",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DELETED",
    "DRAFT",
    "FLAGGED",
    "SEEN",
    "SYSTEM_FLAGS",
    "Deliverer",
    "FlagMode",
    "FlagsChanged",
    "InvalidMailboxNameError",
    "LocalDelivery",
    "MailQueue",
    "MailRealm",
    "MailStore",
    "MailUsers",
    "Mailbox",
    "MailboxChange",
    "MailboxError",
    "MailboxExistsError",
    "MailboxIOError",
    "MailboxListener",
    "MailboxStatus",
    "MaildirMailbox",
    "MaildirStore",
    "MaildirUsers",
    "MaildropLock",
    "MaildropLockedError",
    "MemoryMailStore",
    "MemoryMailbox",
    "MemoryUsers",
    "MessageInfo",
    "MessageSender",
    "MessageSink",
    "MessageTooLargeError",
    "MessagesAdded",
    "MessagesExpunged",
    "NoSuchMailboxError",
    "NoSuchMessageError",
    "NoSuchUserError",
    "QueueError",
    "QueuedMessage",
    "Relay",
    "RelayError",
    "build_dsn",
    "check_mailbox_name",
    "decode_modified_utf7",
    "encode_modified_utf7",
    "local_first",
]

# The relay asks DNS through torsion.names (dnspython): imported on first use.
_RELAY = frozenset({"MessageSender", "Relay", "RelayError"})


def __getattr__(name: str) -> Any:
    if name in _RELAY:
        from torsion.mail import _relay

        return getattr(_relay, name)
    raise AttributeError(f"module 'torsion.mail' has no attribute {name!r}")
