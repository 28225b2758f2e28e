"""The mail realm and the local delivery, on in-memory users and a queue on a test clock."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest

from torsion.cred import InMemoryChecker, Portal, UnauthorizedLogin, UsernamePassword
from torsion.defer import Deferred, fail, maybe_deferred
from torsion.internet import IPv4Address
from torsion.mail import (
    LocalDelivery,
    MailboxIOError,
    MailQueue,
    MailRealm,
    MailStore,
    MemoryUsers,
    MessageTooLargeError,
    NoSuchUserError,
    local_first,
)
from torsion.mail.smtp import (
    Delivery,
    DeliveryStatus,
    EmailAddress,
    Envelope,
    RecipientOutcome,
    Session,
    SMTPReplyError,
)
from torsion.testing import Clock, failure_result_of, success_result_of

MESSAGE = b"Subject: hi\r\n\r\nhello\r\n"
ANONYMOUS = Session(hostname="mx.example.test", helo="client", peer=IPv4Address("127.0.0.1", 1))
LOGGED_IN = Session(
    hostname="mx.example.test",
    helo="client",
    peer=IPv4Address("127.0.0.1", 1),
    authenticated_as="alice",
)


async def _never(sender: str, recipients: Sequence[str], message: bytes) -> list[RecipientOutcome]:
    raise AssertionError("the queue is not run in these tests")


@pytest.fixture
def users() -> MemoryUsers:
    return MemoryUsers(["alice", "bob"], max_message_size=1000)


@pytest.fixture
def queue(tmp_path: Path) -> MailQueue:
    # Never started: enqueue writes to disk and schedules nothing.
    (tmp_path / "queue").mkdir()
    return MailQueue(Clock(), tmp_path / "queue", _never, fsync=False)


def address(text: str) -> EmailAddress:
    local, _, domain = text.rpartition("@")
    return EmailAddress(local, domain)


def refusal(delivery: LocalDelivery, session: Session, recipient: str) -> tuple[int, str]:
    with pytest.raises(SMTPReplyError) as caught:
        delivery.validate_recipient(session, address(recipient))
    return caught.value.code, caught.value.enhanced


def inbox(users: MemoryUsers, user: str) -> list[bytes]:
    box = users.store(user).mailbox("INBOX")
    return [success_result_of(box.read(info.uid)) for info in box.messages()]


def test_local_users_are_accepted_and_others_refused(users: MemoryUsers) -> None:
    delivery = LocalDelivery(users, ["Example.TEST", "other.test."])
    for session in (ANONYMOUS, LOGGED_IN):
        delivery.validate_recipient(session, address("alice@example.test"))
        delivery.validate_recipient(session, address("bob@OTHER.test"))
        delivery.validate_recipient(session, address("Alice@example.test"))
        assert refusal(delivery, session, "carol@example.test") == (550, "5.1.1")
    delivery.validate_sender(ANONYMOUS, None)
    with pytest.raises(ValueError, match="domain"):
        LocalDelivery(users, [])


def test_relaying_only_for_logged_in_clients_with_a_queue(
    users: MemoryUsers, queue: MailQueue
) -> None:
    without_queue = LocalDelivery(users, ["example.test"])
    assert refusal(without_queue, ANONYMOUS, "x@elsewhere.test") == (550, "5.7.1")
    assert refusal(without_queue, LOGGED_IN, "x@elsewhere.test") == (550, "5.7.1")
    relaying = LocalDelivery(users, ["example.test"], queue=queue)
    assert refusal(relaying, ANONYMOUS, "x@elsewhere.test") == (550, "5.7.1")
    relaying.validate_recipient(LOGGED_IN, address("x@elsewhere.test"))


def test_postmaster_reaches_its_user_at_every_local_domain(
    users: MemoryUsers, queue: MailQueue
) -> None:
    # RFC 5321 section 4.5.1: "postmaster", in any case, and the bare
    # <Postmaster> of section 4.1.1.3 (parsed with an empty domain).
    delivery = LocalDelivery(users, ["example.test", "other.test"], postmaster="bob", queue=queue)
    for recipient in ("postmaster@example.test", "PostMaster@other.test"):
        assert delivery.local_user(address(recipient)) == "bob"
    assert delivery.local_user(EmailAddress("Postmaster", "")) == "bob"
    # Relaying is not touched: another domain's postmaster is remote.
    assert delivery.local_user(address("postmaster@elsewhere.test")) is None
    assert refusal(delivery, ANONYMOUS, "postmaster@elsewhere.test") == (550, "5.7.1")
    envelope = Envelope(
        sender=None,
        recipients=(EmailAddress("Postmaster", ""), address("postmaster@example.test")),
    )
    success_result_of(delivery.deliver(ANONYMOUS, envelope, MESSAGE))
    assert inbox(users, "bob") == [MESSAGE]  # one copy for the one user


def test_without_a_postmaster_only_a_user_of_that_name_gets_its_mail(
    users: MemoryUsers,
) -> None:
    delivery = LocalDelivery(users, ["example.test"])
    assert refusal(delivery, ANONYMOUS, "postmaster@example.test") == (550, "5.1.1")
    with pytest.raises(SMTPReplyError) as caught:
        delivery.validate_recipient(ANONYMOUS, EmailAddress("Postmaster", ""))
    assert caught.value.code == 550
    with_user = LocalDelivery(MemoryUsers(["postmaster"]), ["example.test"])
    assert with_user.local_user(EmailAddress("Postmaster", "")) == "postmaster"
    # A postmaster who is not a user refuses like any unknown user.
    gone = LocalDelivery(users, ["example.test"], postmaster="carol")
    assert refusal(gone, ANONYMOUS, "postmaster@example.test") == (550, "5.1.1")


def test_local_mail_lands_in_each_inbox_once(users: MemoryUsers) -> None:
    delivery = LocalDelivery(users, ["example.test", "other.test"])
    envelope = Envelope(
        sender=address("someone@far.test"),
        recipients=(
            address("alice@example.test"),
            address("ALICE@other.test"),
            address("bob@example.test"),
        ),
    )
    success_result_of(delivery.deliver(ANONYMOUS, envelope, MESSAGE))
    assert inbox(users, "alice") == [MESSAGE]
    assert inbox(users, "bob") == [MESSAGE]


def test_remote_recipients_are_queued(users: MemoryUsers, queue: MailQueue) -> None:
    delivery = LocalDelivery(users, ["example.test"], queue=queue)
    envelope = Envelope(
        sender=None,
        recipients=(address("x@elsewhere.test"), address("bob@example.test")),
    )
    success_result_of(delivery.deliver(LOGGED_IN, envelope, MESSAGE))
    assert inbox(users, "bob") == [MESSAGE]
    [queued] = queue.messages.values()
    assert queued.sender == ""
    assert queued.pending() == ["x@elsewhere.test"]
    assert queue.message_bytes(queued.id) == MESSAGE
    on_disk = json.loads((queue.directory / f"{queued.id}.json").read_text())
    assert on_disk["recipients"][0]["address"] == "x@elsewhere.test"


def test_failures_become_replies(users: MemoryUsers, tmp_path: Path) -> None:
    delivery = LocalDelivery(users, ["example.test"])
    envelope = Envelope(sender=None, recipients=(address("alice@example.test"),))
    too_big = failure_result_of(delivery.deliver(ANONYMOUS, envelope, b"x" * 2000))
    assert isinstance(too_big, SMTPReplyError)
    assert (too_big.code, too_big.enhanced) == (552, "5.3.4")
    assert inbox(users, "alice") == []
    # A queue whose directory is gone: try again later.
    broken = MailQueue(Clock(), tmp_path / "missing", _never, fsync=False)
    relaying = LocalDelivery(users, ["example.test"], queue=broken)
    remote = Envelope(sender=None, recipients=(address("x@elsewhere.test"),))
    later = failure_result_of(relaying.deliver(LOGGED_IN, remote, MESSAGE))
    assert isinstance(later, SMTPReplyError)
    assert (later.code, later.enhanced) == (451, "4.3.0")


def test_the_realm_hands_out_stores_and_the_delivery(users: MemoryUsers) -> None:
    delivery = LocalDelivery(users, ["example.test"])
    realm = MailRealm(users, delivery)
    login = realm.request_avatar("alice", None, MailStore)
    assert login.interface is MailStore
    assert login.avatar is users.store("alice")
    login.logout()
    login = realm.request_avatar("bob", None, Delivery, MailStore)
    assert login.interface is Delivery
    assert login.avatar is delivery
    with pytest.raises(UnauthorizedLogin):
        realm.request_avatar("carol", None, MailStore)
    with pytest.raises(NotImplementedError):
        realm.request_avatar("alice", None, str)


def test_a_user_the_checker_knows_but_the_stores_do_not_fails_to_log_in(
    users: MemoryUsers,
) -> None:
    clock = Clock()
    realm = MailRealm(users, LocalDelivery(users, ["example.test"]))
    checker = InMemoryChecker({"alice": "secret", "carol": "secret"})
    portal = Portal(realm, [checker], clock=clock)
    login = success_result_of(portal.login(UsernamePassword("alice", "secret"), None, MailStore))
    assert login.avatar is users.store("alice")
    failed = failure_result_of(portal.login(UsernamePassword("carol", "secret"), None, MailStore))
    assert isinstance(failed, UnauthorizedLogin)


def test_the_queue_delivers_local_mail_itself(users: MemoryUsers) -> None:
    relayed: list[tuple[str, list[str]]] = []

    async def remote(
        sender: str, recipients: Sequence[str], message: bytes
    ) -> list[RecipientOutcome]:
        relayed.append((sender, list(recipients)))
        return []

    deliver = local_first(users, ["Example.test"], remote)
    outcomes = success_result_of(
        maybe_deferred(deliver, "", ["alice@EXAMPLE.test", "carol@example.test"], MESSAGE)
    )
    assert [(o.recipient, o.status, o.reply.code) for o in outcomes] == [
        ("alice@EXAMPLE.test", DeliveryStatus.ACCEPTED, 250),
        ("carol@example.test", DeliveryStatus.REFUSED, 550),
    ]
    assert inbox(users, "alice") == [MESSAGE]
    [too_big] = success_result_of(maybe_deferred(deliver, "", ["bob@example.test"], b"x" * 2000))
    assert (too_big.status, too_big.reply.enhanced) == (DeliveryStatus.REFUSED, "5.3.4")
    assert relayed == []
    success_result_of(maybe_deferred(deliver, "a@b.test", ["x@elsewhere.test"], MESSAGE))
    assert relayed == [("a@b.test", ["x@elsewhere.test"])]


class FailingUsers(MemoryUsers):
    """Users whose deliveries fail as ``failures`` says, each user its own way."""

    def __init__(self, failures: dict[str, Exception]) -> None:
        super().__init__(["alice", "bob", "carol"], max_message_size=1000)
        self.failures = failures

    def deliver(self, user: str, message: bytes) -> Deferred[None]:
        failure = self.failures.get(user)
        if failure is not None:
            return fail(failure)
        return super().deliver(user, message)


@pytest.mark.parametrize(
    ("failure", "reply"),
    [
        (NoSuchUserError("gone"), (550, "5.1.1")),
        (MessageTooLargeError("big"), (552, "5.3.4")),
        (MailboxIOError("disk"), (451, "4.3.0")),
    ],
)
def test_a_single_users_failure_becomes_its_reply(
    failure: Exception, reply: tuple[int, str], caplog: pytest.LogCaptureFixture
) -> None:
    delivery = LocalDelivery(FailingUsers({"alice": failure}), ["example.test"])
    envelope = Envelope(sender=None, recipients=(address("alice@example.test"),))
    with caplog.at_level(logging.ERROR, "torsion.mail"):
        refused = failure_result_of(delivery.deliver(ANONYMOUS, envelope, MESSAGE))
    assert isinstance(refused, SMTPReplyError)
    assert (refused.code, refused.enhanced) == reply
    assert ("Cannot deliver to alice" in caplog.text) == (reply[0] == 451)


def test_a_storage_failure_wins_over_a_refusal_among_several_users() -> None:
    users = FailingUsers({"alice": MessageTooLargeError("big"), "bob": MailboxIOError("disk")})
    delivery = LocalDelivery(users, ["example.test"])
    recipients = tuple(address(f"{u}@example.test") for u in ("alice", "bob", "carol"))
    envelope = Envelope(sender=None, recipients=recipients)
    refused = failure_result_of(delivery.deliver(ANONYMOUS, envelope, MESSAGE))
    assert isinstance(refused, SMTPReplyError)
    assert refused.code == 451  # a retry may pass; carol got her copy meanwhile
    assert inbox(users, "carol") == [MESSAGE]


def test_an_unexpected_failure_is_not_turned_into_a_reply() -> None:
    delivery = LocalDelivery(FailingUsers({"alice": RuntimeError("bug")}), ["example.test"])
    envelope = Envelope(sender=None, recipients=(address("alice@example.test"),))
    failure = failure_result_of(delivery.deliver(ANONYMOUS, envelope, MESSAGE))
    assert isinstance(failure, RuntimeError)  # the server answers 451 and logs it
