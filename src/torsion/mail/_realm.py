"""The mail realm: what SMTP, POP3 and IMAP get for a user, over one set of mail stores.

``LocalDelivery`` is the SMTP server's ``Delivery`` for a mail server of
local domains: a recipient at a local domain is a user of a ``MailUsers``
(``alice@example.test`` is the user ``alice``) and the message goes into
that user's INBOX, through the same store object that POP3 and IMAP
sessions read, so that it is there for them at once. A recipient anywhere
else is relayed only for a client that logged in (AUTH) and only when a
``MailQueue`` is given; others are refused with ``550 5.7.1`` (RFC 5321
section 3.6.2: an open relay is not to be run).

``MailRealm`` is the cred realm: it hands a logged-in user's ``MailStore``
to POP3 and IMAP, and the delivery to SMTP's AUTH (the session knows who
logged in, which is what lets the delivery relay for them).

``local_first`` is the queue's deliverer for such a server: what the queue
sends to a local domain (a bounce to a local sender) goes into the user's
INBOX, the rest through the relay.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn

from torsion.cred import Login
from torsion.defer import Deferred, ensure_deferred, fail
from torsion.errors import UnauthorizedLogin
from torsion.mail._mailbox import MailboxError, MailStore, MessageTooLargeError
from torsion.mail._queue import Deliverer, MailQueue, QueueError
from torsion.mail._users import MailUsers, NoSuchUserError
from torsion.mail.smtp._address import EmailAddress
from torsion.mail.smtp._client_core import DeliveryStatus, RecipientOutcome, Reply, domain_of
from torsion.mail.smtp._delivery import Delivery, Session
from torsion.mail.smtp._errors import SMTPReplyError
from torsion.mail.smtp._events import Envelope

__all__ = ["LocalDelivery", "MailRealm", "local_first"]

log = logging.getLogger("torsion.mail")


# RFC 3463 codes: 5.1.1 bad destination mailbox, 5.7.1 delivery not
# authorized (relaying denied), 5.3.4 message too big for system, 4.3.0
# other mail system problem.
# A new exception each time: a raised one carries its traceback along.
def _no_such_user() -> SMTPReplyError:
    return SMTPReplyError(550, "5.1.1", "No such user here")


def _relay_denied() -> SMTPReplyError:
    return SMTPReplyError(550, "5.7.1", "Relaying denied")


def _too_big() -> SMTPReplyError:
    return SMTPReplyError(552, "5.3.4", "Message too big for system")


def _try_later() -> SMTPReplyError:
    return SMTPReplyError(451, "4.3.0", "Local error in processing; try again later")


def _nothing() -> None:
    # The avatars hold nothing per session: stores are shared by every
    # session, and each protocol releases its own locks.
    return None


class LocalDelivery:
    """Delivers mail for local domains into users' INBOXes, and queues the rest.

    Args:
        users: The users and their stores (``MaildirUsers``...).
        domains: The local domains (letter case does not matter).
        queue: Where mail to other domains goes when a logged-in client
            sends it; None: nothing is relayed.
        postmaster: The user who gets the mail for ``postmaster`` at every
            local domain, and for the bare ``<Postmaster>`` recipient (RFC
            5321 section 4.5.1 requires every SMTP server to take it); None:
            only a user named ``postmaster`` gets it.

    A local recipient's local part names the user exactly, or else in
    lower case (``Alice@example.test`` reaches ``alice`` when there is no
    user ``Alice``); ``postmaster`` in any letter case is the postmaster.
    A message for several recipients is stored once per user.

    When a message has several destinations and some are stored before
    another fails, the reply is still the failure's (SMTP has one reply
    per message): ``451`` when it may pass on a retry, which can then
    store a second copy for those already served — a duplicate, rather
    than a message lost after a ``250``.
    """

    def __init__(
        self,
        users: MailUsers,
        domains: Iterable[str],
        *,
        queue: MailQueue | None = None,
        postmaster: str | None = None,
    ) -> None:
        """Deliver for ``users`` at ``domains``."""
        self.users = users
        self.domains = frozenset(domain.lower().rstrip(".") for domain in domains)
        if not self.domains:
            raise ValueError("a local delivery needs at least one domain")
        self.queue = queue
        self.postmaster = postmaster

    def local_user(self, recipient: EmailAddress) -> str | None:
        """Return the user a local recipient names, or None if the domain is not local.

        Raises:
            SMTPReplyError: The domain is local but has no such user (550 5.1.1).
        """
        domain = recipient.domain
        # An empty domain is the bare <Postmaster>, which is always ours.
        if domain and domain.lower().rstrip(".") not in self.domains:
            return None
        local = recipient.local_part
        if self.postmaster is not None and local.lower() == "postmaster":
            if self.users.exists(self.postmaster):
                return self.postmaster
            raise _no_such_user()
        for name in (local, local.lower()):
            if self.users.exists(name):
                return name
        raise _no_such_user()

    def validate_sender(self, session: Session, sender: EmailAddress | None, /) -> None:
        """Accept any sender (a mail exchanger takes mail from anyone)."""
        return None

    def validate_recipient(self, session: Session, recipient: EmailAddress, /) -> None:
        """Accept a local user, or a remote recipient from a logged-in client when relaying.

        Raises:
            SMTPReplyError: ``550 5.1.1`` for an unknown local user, ``550
                5.7.1`` for a remote recipient that is not to be relayed.
        """
        if self.local_user(recipient) is not None:
            return None
        if self.queue is None or session.authenticated_as is None:
            raise _relay_denied()
        return None

    def deliver(self, session: Session, envelope: Envelope, message: bytes, /) -> Deferred[None]:
        """Store the message for each local user and queue it for the others.

        Returns:
            A Deferred that fires once every copy is stored (so the server
            may say 250), or fails with the ``SMTPReplyError`` to send.
        """
        local: dict[str, None] = {}
        remote: list[str] = []
        try:
            for recipient in envelope.recipients:
                user = self.local_user(recipient)
                if user is None:
                    remote.append(str(recipient))
                else:
                    local[user] = None
        except SMTPReplyError as exc:
            return fail(exc)
        if len(local) == 1 and not remote:
            # The usual case, one local user: the store's Deferred as it
            # is (already fired when the store writes at once), with no
            # coroutine in between.
            (user,) = local
            return self.users.deliver(user, message).add_errback(_delivery_failed(user))
        return ensure_deferred(self._deliver(local, remote, envelope, message))

    async def _deliver(
        self, local: dict[str, None], remote: list[str], envelope: Envelope, message: bytes
    ) -> None:
        failure: SMTPReplyError | None = None
        for user in local:
            try:
                await self.users.deliver(user, message)
            except MailboxError as exc:
                reply = _reply_for(user, exc)
                # A failure that may pass on a retry wins (451): the client
                # then tries again rather than give up on every copy.
                if failure is None or not isinstance(exc, MessageTooLargeError | NoSuchUserError):
                    failure = reply
        if remote:
            if self.queue is None:
                # Not reached through validate_recipient; kept for safety.
                raise _relay_denied()
            sender = "" if envelope.sender is None else str(envelope.sender)
            try:
                self.queue.enqueue(sender, remote, message)
            except (QueueError, OSError) as exc:
                log.error("Cannot queue a message for %s: %s", ", ".join(remote), exc)
                failure = _try_later()
        if failure is not None:
            raise failure


def _reply_for(user: str, exc: MailboxError) -> SMTPReplyError:
    # What a store's failure to take a user's copy is answered.
    if isinstance(exc, MessageTooLargeError):
        return _too_big()
    if isinstance(exc, NoSuchUserError):
        # Removed since RCPT.
        return _no_such_user()
    log.error("Cannot deliver to %s: %s", user, exc)
    return _try_later()


def _delivery_failed(user: str) -> Callable[[BaseException], NoReturn]:
    def failed(exc: BaseException) -> NoReturn:
        if isinstance(exc, MailboxError):
            raise _reply_for(user, exc)
        raise exc

    return failed


class MailRealm:
    """The cred realm of a mail server: a user's ``MailStore``, or SMTP's ``Delivery``.

    Args:
        users: Gives each user's store (POP3 and IMAP sessions).
        delivery: What SMTP clients that logged in deliver through.
    """

    def __init__(self, users: MailUsers, delivery: Delivery) -> None:
        """Hand out ``users``' stores and ``delivery``."""
        self.users = users
        self.delivery = delivery

    def request_avatar(self, avatar_id: str, mind: Any, /, *interfaces: type) -> Login:
        """Return the first of ``interfaces`` this realm has for ``avatar_id``.

        Raises:
            UnauthorizedLogin: A ``MailStore`` was asked for and the user has
                none (a checker knows more users than the mail stores do).
            NotImplementedError: None of the interfaces is ``MailStore`` or
                ``Delivery``.
        """
        for interface in interfaces:
            if interface is MailStore:
                try:
                    store = self.users.store(avatar_id)
                except NoSuchUserError as exc:
                    raise UnauthorizedLogin("no mail store for this user") from exc
                return Login(MailStore, store, _nothing)
            if interface is Delivery:
                return Login(Delivery, self.delivery, _nothing)
        raise NotImplementedError(f"no avatar for {interfaces!r}")


def local_first(users: MailUsers, domains: Iterable[str], remote: Deliverer) -> Deliverer:
    """Wrap a queue's deliverer so that mail to ``domains`` goes into ``users``' INBOXes.

    Args:
        users: The local users.
        domains: The local domains (letter case does not matter).
        remote: Delivers to every other domain (``Relay.deliver``).

    Returns:
        A deliverer for ``MailQueue``: local recipients get ``250``, ``550
        5.1.1`` (no such user), ``552 5.3.4`` (too large) or ``451 4.3.0``
        (a storage failure, retried by the queue).
    """
    local_domains = frozenset(domain.lower().rstrip(".") for domain in domains)

    async def deliver(
        sender: str, recipients: Sequence[str], message: bytes
    ) -> Sequence[RecipientOutcome]:
        if domain_of(recipients[0]).lower().rstrip(".") not in local_domains:
            return await remote(sender, recipients, message)
        outcomes = []
        for recipient in recipients:
            outcomes.append(await _store(users, recipient, message))
        return outcomes

    return deliver


async def _store(users: MailUsers, recipient: str, message: bytes) -> RecipientOutcome:
    local_part = recipient.rpartition("@")[0]
    user = next((name for name in (local_part, local_part.lower()) if users.exists(name)), None)
    try:
        if user is None:
            raise NoSuchUserError(recipient)
        await users.deliver(user, message)
    except NoSuchUserError:
        failure = _no_such_user()
    except MessageTooLargeError:
        failure = _too_big()
    except MailboxError as exc:
        log.error("Cannot deliver to %s: %s", recipient, exc)
        failure = _try_later()
    else:
        return RecipientOutcome(
            recipient=recipient,
            status=DeliveryStatus.ACCEPTED,
            reply=Reply(code=250, lines=("OK",), enhanced="2.0.0"),
        )
    status = DeliveryStatus.TEMPORARY if failure.code < 500 else DeliveryStatus.REFUSED
    reply = Reply(code=failure.code, lines=(failure.text,), enhanced=failure.enhanced)
    return RecipientOutcome(recipient=recipient, status=status, reply=reply)
