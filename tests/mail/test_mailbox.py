"""The mailbox interface's contract, run against every implementation.

Each test takes ``store``: a ``MemoryMailStore`` and a ``MaildirStore`` (on
a temporary directory, file work on the test's thread) in turn.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from torsion.mail import (
    ANSWERED,
    DELETED,
    DRAFT,
    FLAGGED,
    SEEN,
    FlagMode,
    FlagsChanged,
    InvalidMailboxNameError,
    MailboxChange,
    MailboxError,
    MailboxExistsError,
    MaildirMailbox,
    MaildirStore,
    MaildropLockedError,
    MailStore,
    MemoryMailbox,
    MemoryMailStore,
    MessagesAdded,
    MessagesExpunged,
    MessageTooLargeError,
    NoSuchMailboxError,
    NoSuchMessageError,
    check_mailbox_name,
)
from torsion.mail._mailbox import Mailbox
from torsion.mail._memory import STREAM_PIECE
from torsion.testing import failure_result_of, success_result_of

MESSAGE = b"From: a@example.test\r\nSubject: hi\r\n\r\nHello\r\n"


def _make(kind: str, path: Path, max_message_size: int = 1 << 20) -> MailStore:
    if kind == "memory":
        return MemoryMailStore(max_message_size=max_message_size)
    return MaildirStore(path / "Maildir", max_message_size=max_message_size)


@pytest.fixture(params=["memory", "maildir"])
def kind(request: pytest.FixtureRequest) -> str:
    """Each implementation's name."""
    return str(request.param)


@pytest.fixture
def store(kind: str, tmp_path: Path) -> MailStore:
    """A fresh store of each implementation."""
    return _make(kind, tmp_path)


@pytest.fixture
def inbox(store: MailStore) -> Mailbox:
    """The store's INBOX."""
    return store.mailbox("INBOX")


@pytest.fixture
def changes(inbox: Mailbox) -> Iterator[list[MailboxChange]]:
    """Every change the INBOX's listeners are told of."""
    seen: list[MailboxChange] = []
    inbox.add_listener(seen.append)
    yield seen
    inbox.remove_listener(seen.append)


def _append(box: Mailbox, data: bytes = MESSAGE, **kwargs: object) -> int:
    return success_result_of(box.append(data, **kwargs))  # type: ignore[arg-type]


# -- messages ----------------------------------------------------------------------------


def test_a_new_store_has_an_empty_inbox(store: MailStore, inbox: Mailbox) -> None:
    assert store.list_mailboxes() == ["INBOX"]
    assert store.delimiter == "."
    assert inbox.name == "INBOX"
    assert list(inbox.messages()) == []
    assert inbox.uidnext == 1
    assert inbox.uidvalidity > 0
    assert store.mailbox("inbox") is inbox
    assert store.mailbox("InBoX") is inbox


def test_append_gives_ascending_uids_and_keeps_flags_and_dates(inbox: Mailbox) -> None:
    date = datetime(2024, 3, 1, 12, 30, 5, tzinfo=timezone(timedelta(hours=2)))
    first = _append(inbox)
    second = _append(inbox, flags=[SEEN, "$Label1"], internal_date=date)
    assert second > first >= 1
    assert inbox.uidnext > second
    infos = inbox.messages()
    assert [info.uid for info in infos] == [first, second]
    assert infos[0].flags == frozenset()
    assert infos[1].flags == {SEEN, "$Label1"}
    assert infos[1].internal_date == date
    assert infos[0].internal_date.tzinfo is not None
    assert abs(infos[0].internal_date - datetime.now(UTC)) < timedelta(minutes=1)
    assert inbox.message(second) == infos[1]


def test_a_naive_internal_date_is_utc_and_dates_keep_whole_seconds(inbox: Mailbox) -> None:
    uid = _append(inbox, internal_date=datetime(2020, 2, 3, 4, 5, 6, 789))
    assert inbox.message(uid).internal_date == datetime(2020, 2, 3, 4, 5, 6, tzinfo=UTC)


def test_sizes_and_reads_use_crlf_whatever_was_given(inbox: Mailbox) -> None:
    lf = b"Subject: x\n\nline one\nline two\n"
    uid = _append(inbox, lf)
    expected = lf.replace(b"\n", b"\r\n")
    assert success_result_of(inbox.read(uid)) == expected
    assert inbox.message(uid).size == len(expected)
    crlf = _append(inbox, MESSAGE)
    assert success_result_of(inbox.read(crlf)) == MESSAGE
    assert inbox.message(crlf).size == len(MESSAGE)


async def _stream(box: Mailbox, uid: int) -> list[bytes]:
    assert isinstance(box, MemoryMailbox | MaildirMailbox)
    return [piece async for piece in box.read_stream(uid)]


async def test_streaming_gives_what_read_gives_in_bounded_pieces(inbox: Mailbox) -> None:
    big = b"Subject: big\n\n" + b"0123456789abcde\n" * 20000  # 320 KB, LF endings
    uid = _append(inbox, big)
    small = _append(inbox, MESSAGE)
    pieces = await _stream(inbox, uid)
    assert len(pieces) > 1
    assert max(len(piece) for piece in pieces) <= 2 * STREAM_PIECE
    assert b"".join(pieces) == success_result_of(inbox.read(uid))
    assert sum(map(len, pieces)) == inbox.message(uid).size
    assert b"".join(await _stream(inbox, small)) == MESSAGE
    with pytest.raises(NoSuchMessageError):
        await _stream(inbox, 999)


def test_reading_an_unknown_uid_fails(inbox: Mailbox) -> None:
    failure_result_of(inbox.read(42), NoSuchMessageError)
    with pytest.raises(NoSuchMessageError):
        inbox.message(42)


def test_set_flags_replace_add_remove(inbox: Mailbox, changes: list[MailboxChange]) -> None:
    uid = _append(inbox)
    changes.clear()
    assert inbox.set_flags([uid], [SEEN, FLAGGED]) == {uid: {SEEN, FLAGGED}}
    assert inbox.set_flags([uid], [ANSWERED, "Work"], FlagMode.ADD) == {
        uid: {SEEN, FLAGGED, ANSWERED, "Work"}
    }
    assert inbox.set_flags([uid], [FLAGGED, "Work"], FlagMode.REMOVE) == {uid: {SEEN, ANSWERED}}
    assert inbox.message(uid).flags == {SEEN, ANSWERED}
    assert changes == [
        FlagsChanged(uid=uid, flags=frozenset({SEEN, FLAGGED})),
        FlagsChanged(uid=uid, flags=frozenset({SEEN, FLAGGED, ANSWERED, "Work"})),
        FlagsChanged(uid=uid, flags=frozenset({SEEN, ANSWERED})),
    ]
    # Setting what is already there is no change.
    inbox.set_flags([uid], [SEEN], FlagMode.ADD)
    assert len(changes) == 3


def test_system_flags_are_matched_without_case_and_unknown_uids_skipped(inbox: Mailbox) -> None:
    uid = _append(inbox)
    assert inbox.set_flags([uid, 999], ["\\seen", "\\DRAFT"]) == {uid: {SEEN, DRAFT}}


@pytest.mark.parametrize("flag", ["\\Recent", "\\Bogus", "two words", "a(b", "", "x*"])
def test_bad_flags_are_refused(inbox: Mailbox, flag: str) -> None:
    uid = _append(inbox)
    with pytest.raises(ValueError, match=r"flag|keyword"):
        inbox.set_flags([uid], [flag])
    failure_result_of(inbox.append(MESSAGE, flags=[flag]), ValueError)
    assert [info.uid for info in inbox.messages()] == [uid]


def test_expunge_removes_only_deleted_messages(
    inbox: Mailbox, changes: list[MailboxChange]
) -> None:
    uids = [_append(inbox) for _ in range(4)]
    inbox.set_flags(uids[1:], [DELETED])
    changes.clear()
    assert inbox.expunge([uids[0], uids[1]]) == [uids[1]]
    assert inbox.expunge() == [uids[2], uids[3]]
    assert [info.uid for info in inbox.messages()] == [uids[0]]
    assert changes == [
        MessagesExpunged(uids=(uids[1],)),
        MessagesExpunged(uids=(uids[2], uids[3])),
    ]
    assert inbox.expunge() == []
    failure_result_of(inbox.read(uids[3]), NoSuchMessageError)


def test_uids_are_never_reused(inbox: Mailbox) -> None:
    first = _append(inbox)
    second = _append(inbox)
    inbox.set_flags([second], [DELETED])
    inbox.expunge()
    third = _append(inbox)
    assert third > second > first


def test_listeners_are_told_of_appends_and_can_be_removed(
    inbox: Mailbox, changes: list[MailboxChange]
) -> None:
    uid = _append(inbox)
    assert changes == [MessagesAdded(uids=(uid,))]
    other: list[MailboxChange] = []
    inbox.add_listener(other.append)
    inbox.remove_listener(other.append)
    inbox.remove_listener(other.append)  # not there: nothing happens
    _append(inbox)
    assert other == []
    assert len(changes) == 2


def test_a_failing_listener_is_logged_and_others_still_told(
    inbox: Mailbox, changes: list[MailboxChange], caplog: pytest.LogCaptureFixture
) -> None:
    def broken(change: MailboxChange) -> None:
        raise RuntimeError("listener bug")

    inbox.add_listener(broken)
    with caplog.at_level(logging.ERROR, logger="torsion.mail"):
        uid = _append(inbox)
    inbox.remove_listener(broken)
    inbox.add_listener(changes.append)
    inbox.remove_listener(changes.append)
    assert changes == [MessagesAdded(uids=(uid,))]
    assert "listener failed" in caplog.text


def test_copy_keeps_flags_and_dates_and_leaves_the_source(store: MailStore) -> None:
    inbox = store.mailbox("INBOX")
    archive = store.create("Archive")
    date = datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC)
    first = _append(inbox, flags=[SEEN, "Work"], internal_date=date)
    second = _append(inbox, b"Subject: two\r\n\r\n2\r\n")
    added: list[MailboxChange] = []
    archive.add_listener(added.append)
    mapping = success_result_of(inbox.copy([second, first, 999], archive))
    assert sorted(mapping) == [first, second]
    assert mapping[first] < mapping[second]
    # One change or one per message, as the store finds them.
    assert all(isinstance(change, MessagesAdded) for change in added)
    told = [uid for change in added if isinstance(change, MessagesAdded) for uid in change.uids]
    assert told == [mapping[first], mapping[second]]
    copied = archive.message(mapping[first])
    assert copied.flags == {SEEN, "Work"}
    assert copied.internal_date == date
    assert success_result_of(archive.read(mapping[second])) == b"Subject: two\r\n\r\n2\r\n"
    assert len(inbox.messages()) == 2
    # The copies are independent of the originals.
    archive.set_flags([mapping[first]], [DELETED])
    assert inbox.message(first).flags == {SEEN, "Work"}


def test_move_expunges_from_the_source(store: MailStore, changes: list[MailboxChange]) -> None:
    inbox = store.mailbox("INBOX")
    sent = store.create("Sent")
    uid = _append(inbox, flags=[ANSWERED])
    keep = _append(inbox)
    changes.clear()
    mapping = success_result_of(inbox.move([uid], sent))
    assert list(mapping) == [uid]
    assert [info.uid for info in inbox.messages()] == [keep]
    assert changes == [MessagesExpunged(uids=(uid,))]
    assert sent.message(mapping[uid]).flags == {ANSWERED}
    assert success_result_of(sent.read(mapping[uid])) == MESSAGE


def test_copy_between_unlike_stores(tmp_path: Path) -> None:
    memory = MemoryMailStore().mailbox("INBOX")
    maildir = MaildirStore(tmp_path / "m").mailbox("INBOX")
    date = datetime(2022, 5, 6, 7, 8, 9, tzinfo=UTC)
    uid = _append(memory, flags=[FLAGGED], internal_date=date)
    there = success_result_of(memory.copy([uid], maildir))[uid]
    assert maildir.message(there).flags == {FLAGGED}
    assert maildir.message(there).internal_date == date
    back = success_result_of(maildir.move([there], memory))[there]
    assert maildir.messages() == []
    assert success_result_of(memory.read(back)) == MESSAGE


def test_recent_is_claimed_once(inbox: Mailbox) -> None:
    first = _append(inbox)
    second = _append(inbox, flags=[SEEN])
    assert inbox.status().recent == 2
    assert inbox.claim_recent() == {first, second}
    assert inbox.claim_recent() == frozenset()
    assert inbox.status().recent == 0
    third = _append(inbox)
    assert inbox.claim_recent() == {third}


def test_status_counts(inbox: Mailbox) -> None:
    _append(inbox)
    _append(inbox, flags=[SEEN])
    status = inbox.status()
    assert (status.messages, status.unseen, status.recent) == (2, 1, 2)
    assert status.uidnext == inbox.uidnext
    assert status.uidvalidity == inbox.uidvalidity


def test_the_maildrop_lock_is_taken_once(inbox: Mailbox) -> None:
    lock = inbox.lock_maildrop()
    with pytest.raises(MaildropLockedError):
        inbox.lock_maildrop()
    lock.release()
    lock.release()  # twice: nothing
    again = inbox.lock_maildrop()
    again.release()


def test_a_lock_never_released_is_a_resource_warning_and_freed(inbox: Mailbox) -> None:
    lock = inbox.lock_maildrop()
    with pytest.warns(ResourceWarning, match="never released"):
        del lock  # the last reference: collected at once
    inbox.lock_maildrop().release()


def test_oversized_messages_are_refused_whole(kind: str, tmp_path: Path) -> None:
    store = _make(kind, tmp_path, max_message_size=100)
    inbox = store.mailbox("INBOX")
    # 60 bare LFs make 120 octets once counted as CRLF.
    failure_result_of(inbox.append(b"\n" * 60), MessageTooLargeError)
    failure_result_of(store.deliver(b"x" * 101), MessageTooLargeError)
    success_result_of(store.deliver(b"x" * 100))
    inbox.refresh()
    assert [info.size for info in inbox.messages()] == [100]


# -- delivery ------------------------------------------------------------------------------


def test_delivery_reaches_the_inbox(store: MailStore) -> None:
    assert success_result_of(store.deliver(b"Subject: d\n\nbody\n")) is None
    inbox = store.mailbox("INBOX")
    inbox.refresh()
    (info,) = inbox.messages()
    assert success_result_of(inbox.read(info.uid)) == b"Subject: d\r\n\r\nbody\r\n"
    assert info.flags == frozenset()
    assert inbox.claim_recent() == {info.uid}


def test_delivery_is_told_to_listening_sessions_at_once(
    store: MailStore, changes: list[MailboxChange]
) -> None:
    success_result_of(store.deliver(MESSAGE))
    (info,) = store.mailbox("INBOX").messages()
    assert changes == [MessagesAdded(uids=(info.uid,))]


# -- mailboxes -----------------------------------------------------------------------------


def test_create_makes_parents_and_lists_sorted(store: MailStore) -> None:
    box = store.create("Archive.2024")
    assert box.name == "Archive.2024"
    assert store.list_mailboxes() == ["Archive", "Archive.2024", "INBOX"]
    assert store.mailbox("Archive.2024") is box
    with pytest.raises(MailboxExistsError):
        store.create("Archive")
    with pytest.raises(MailboxExistsError):
        store.create("inbox")
    with pytest.raises(NoSuchMailboxError):
        store.mailbox("Nope")


@pytest.mark.parametrize(
    "name",
    [
        "",
        "..",
        "a..b",
        ".a",
        "a.",
        "a/b",
        "../etc",
        "a\x00b",
        "a\nb",
        "a\\b",
        "*",
        "a%",
        "x" * 201,
    ],
)
def test_bad_mailbox_names_are_refused(store: MailStore, name: str) -> None:
    with pytest.raises(InvalidMailboxNameError):
        store.create(name)
    with pytest.raises(InvalidMailboxNameError):
        store.mailbox(name)
    with pytest.raises(InvalidMailboxNameError):
        store.subscribe(name)
    assert store.list_mailboxes() == ["INBOX"]


def test_mailbox_names_are_unicode() -> None:
    assert check_mailbox_name("Entwürfe.Ünter") == "Entwürfe.Ünter"
    assert check_mailbox_name("inbox.Sub") == "INBOX.Sub"


def test_delete(store: MailStore) -> None:
    old = store.create("Trash")
    _append(old)
    validity = old.uidvalidity
    store.delete("Trash")
    assert store.list_mailboxes() == ["INBOX"]
    with pytest.raises(NoSuchMailboxError):
        store.mailbox("Trash")
    failure_result_of(old.append(MESSAGE), NoSuchMailboxError)
    again = store.create("Trash")
    assert again.messages() == []
    assert again.uidvalidity != validity  # RFC 3501 section 2.3.1.1
    with pytest.raises(NoSuchMailboxError):
        store.delete("Nope")
    with pytest.raises(MailboxError):
        store.delete("INBOX")
    store.create("Trash.Sub")
    with pytest.raises(MailboxError, match="child"):
        store.delete("Trash")


def test_rename_takes_children_and_messages(store: MailStore) -> None:
    box = store.create("Work.Old")
    uid = _append(box, flags=[SEEN])
    store.create("Work.Old.Deep")
    store.rename("Work", "Done.Work")
    assert store.list_mailboxes() == [
        "Done",
        "Done.Work",
        "Done.Work.Old",
        "Done.Work.Old.Deep",
        "INBOX",
    ]
    moved = store.mailbox("Done.Work.Old")
    assert moved.message(uid).flags == {SEEN}
    assert success_result_of(moved.read(uid)) == MESSAGE
    with pytest.raises(NoSuchMailboxError):
        store.rename("Work", "Elsewhere")
    with pytest.raises(MailboxExistsError):
        store.rename("Done.Work", "Done")
    with pytest.raises(MailboxError):
        store.rename("INBOX", "Old")
    with pytest.raises(MailboxError):
        store.rename("Done", "Done.Inner")


def test_subscriptions(store: MailStore) -> None:
    assert store.subscriptions() == []
    store.subscribe("Sent")
    store.subscribe("Nowhere.Yet")  # need not exist (RFC 3501 section 6.3.6)
    store.subscribe("Sent")
    store.subscribe("inbox")
    assert store.subscriptions() == ["INBOX", "Nowhere.Yet", "Sent"]
    store.unsubscribe("Sent")
    store.unsubscribe("Sent")
    assert store.subscriptions() == ["INBOX", "Nowhere.Yet"]
