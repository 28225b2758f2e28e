"""MaildirStore on disk: the layout, crash safety, other programs' files, UIDs that persist.

The interface's contract is in test_mailbox.py; these are what only a
Maildir has. No sockets: files in a temporary directory, and real processes
for the locking tests.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from torsion.defer import Deferred, fail, succeed
from torsion.internet import Reactor
from torsion.mail import (
    ANSWERED,
    DELETED,
    DRAFT,
    FLAGGED,
    SEEN,
    FlagMode,
    FlagsChanged,
    MailboxChange,
    MailboxError,
    MailboxIOError,
    MaildirStore,
    MaildropLockedError,
    MessagesAdded,
    MessagesExpunged,
    MessageTooLargeError,
    NoSuchMailboxError,
    NoSuchMessageError,
)
from torsion.mail import _maildir as maildir_module
from torsion.mail import _maildir_io as maildir_io
from torsion.mail._mailbox import to_crlf
from torsion.mail._maildir_files import read_uidlist, unique_base
from torsion.mail._maildir_store import INLINE_WRITE_LIMIT
from torsion.testing import failure_result_of, success_result_of

MESSAGE = b"Subject: hi\r\n\r\nHello\r\n"


def _files(path: Path, sub: str) -> list[str]:
    return sorted(os.listdir(path / sub))


def _drop(path: Path, sub: str, name: str, data: bytes, mtime: int | None = None) -> Path:
    """Put a message file where another program would."""
    target = path / sub / name
    target.write_bytes(data)
    if mtime is not None:
        os.utime(target, (mtime, mtime))
    return target


def test_the_layout_is_maildir_plus_plus(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    store = MaildirStore(root)
    store.create("Archive.2024")
    for folder in (root, root / ".Archive", root / ".Archive.2024"):
        assert {"tmp", "new", "cur"} <= set(os.listdir(folder))
    assert (root / ".Archive.2024" / "maildirfolder").exists()
    assert not (root / "maildirfolder").exists()
    with pytest.raises(NoSuchMailboxError):
        MaildirStore(tmp_path / "absent", create=False)
    assert MaildirStore(root, create=False).list_mailboxes() == [
        "Archive",
        "Archive.2024",
        "INBOX",
    ]


def test_a_delivery_is_one_file_in_new_with_its_sizes_in_its_name(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    store = MaildirStore(root)
    success_result_of(store.deliver(b"Subject: x\r\n\r\nbody\r\n"))
    assert _files(root, "tmp") == []
    (name,) = _files(root, "new")
    # Stored with LF endings (17 octets), reported with CRLF (20).
    assert name.endswith(",S=17,W=20")
    assert (root / "new" / name).read_bytes() == b"Subject: x\n\nbody\n"
    assert ":" not in name
    assert "/" not in name


def test_a_file_left_in_tmp_is_never_a_message(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    store = MaildirStore(root)
    _drop(root, "tmp", "1700000000.M1P1.crashed", b"Subject: half\n\nwritten")
    _drop(root, "new", ".hidden", b"Subject: dot file\n\n")
    inbox = store.mailbox("INBOX")
    inbox.refresh()
    assert inbox.messages() == []


def test_crashed_deliveries_in_tmp_are_removed_after_36_hours(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    MaildirStore(root)
    _drop(root, "tmp", "old", b"x", int(time.time()) - 37 * 3600)
    _drop(root, "tmp", "recent", b"x", int(time.time()) - 35 * 3600)
    MaildirStore(root).mailbox("INBOX")
    assert _files(root, "tmp") == ["recent"]


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    store = MaildirStore(root)
    inbox = store.mailbox("INBOX")
    os.rmdir(root / "new")  # the rename into new/ will fail
    error = failure_result_of(store.deliver(MESSAGE), MailboxIOError)
    assert isinstance(error.__cause__, FileNotFoundError)
    assert _files(root, "tmp") == []
    os.mkdir(root / "new")
    inbox.refresh()
    assert inbox.messages() == []


def test_messages_dropped_by_another_program_get_uids(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    inbox = MaildirStore(root).mailbox("INBOX")
    first = success_result_of(inbox.append(MESSAGE))
    seen: list[MailboxChange] = []
    inbox.add_listener(seen.append)
    _drop(root, "new", "1700000001.12345_1.otherhost", b"Subject: mda\n\nfrom procmail\n")
    _drop(root, "cur", "1700000002.12345_2.otherhost:2,RS", b"Subject: old\n\nread\n", 1700000002)
    inbox.refresh()
    infos = inbox.messages()
    assert [info.uid for info in infos] == [first, first + 1, first + 2]
    assert seen == [MessagesAdded(uids=(first + 1, first + 2))]
    assert infos[1].flags == frozenset()
    assert infos[1].size == len(b"Subject: mda\r\n\r\nfrom procmail\r\n")
    assert infos[2].flags == {ANSWERED, SEEN}
    assert infos[2].internal_date == datetime.fromtimestamp(1700000002, UTC)
    assert success_result_of(inbox.read(first + 2)) == b"Subject: old\r\n\r\nread\r\n"
    assert inbox.claim_recent() == {first, first + 1}
    inbox.refresh()
    assert seen == [MessagesAdded(uids=(first + 1, first + 2))]  # nothing new


def test_uids_and_uidvalidity_survive_reopening(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    store = MaildirStore(root)
    box = store.create("Sent")
    uids = [success_result_of(box.append(MESSAGE)) for _ in range(3)]
    box.set_flags([uids[2]], [DELETED])
    box.expunge()
    validity = box.uidvalidity
    again = MaildirStore(root).mailbox("Sent")
    assert again is not box
    assert again.uidvalidity == validity
    assert [info.uid for info in again.messages()] == uids[:2]
    assert again.uidnext == uids[2] + 1  # the expunged UID is not given again
    assert success_result_of(again.append(MESSAGE)) == uids[2] + 1


def test_a_lost_uid_list_means_a_new_larger_uidvalidity(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    inbox = MaildirStore(root).mailbox("INBOX")
    success_result_of(inbox.append(MESSAGE))
    validity = inbox.uidvalidity
    os.unlink(root / "torsion-uidlist")
    reopened = MaildirStore(root).mailbox("INBOX")
    assert reopened.uidvalidity > validity
    assert [info.uid for info in reopened.messages()] == [1]
    # The open session learns of it at its next refresh: every old UID goes.
    seen: list[MailboxChange] = []
    inbox.add_listener(seen.append)
    inbox.refresh()
    assert inbox.uidvalidity == reopened.uidvalidity
    assert seen == [MessagesExpunged(uids=(1,)), MessagesAdded(uids=(1,))]


def test_a_damaged_uid_list_is_a_lost_one(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    inbox = MaildirStore(root).mailbox("INBOX")
    success_result_of(inbox.append(MESSAGE))
    validity = inbox.uidvalidity
    (root / "torsion-uidlist").write_bytes(b"torsion-uidlist 1 garbage\n\xff")
    assert MaildirStore(root).mailbox("INBOX").uidvalidity > validity


def _deliver_many(path: str, count: int, start: object, results: object) -> None:
    # Runs in another process: append ``count`` messages and report their UIDs.
    start.wait()  # type: ignore[attr-defined]
    inbox = MaildirStore(path).mailbox("INBOX")
    uids = [success_result_of(inbox.append(b"Subject: %d\n\nx\n" % n)) for n in range(count)]
    results.put(uids)  # type: ignore[attr-defined]


def test_concurrent_deliveries_from_two_processes_lose_and_share_no_uid(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    MaildirStore(root)
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    results = context.Queue()
    count = 40
    workers = [
        context.Process(target=_deliver_many, args=(str(root), count, start, results))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    start.set()
    got = [results.get(timeout=60), results.get(timeout=60)]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    results.close()
    results.join_thread()
    every = got[0] + got[1]
    assert len(set(every)) == 2 * count
    assert got[0] == sorted(got[0])
    assert got[1] == sorted(got[1])
    inbox = MaildirStore(root).mailbox("INBOX")
    assert [info.uid for info in inbox.messages()] == sorted(every)
    assert sorted(every) == list(range(1, 2 * count + 1))


def _deliver_and_refresh(path: str, tag: int, count: int, start: object, results: object) -> None:
    # Runs in another process: deliver as an MDA would, and give UIDs by
    # refreshing after each, racing the other process doing the same.
    start.wait()  # type: ignore[attr-defined]
    store = MaildirStore(path)
    inbox = store.mailbox("INBOX")
    for n in range(count):
        success_result_of(store.deliver(b"Subject: %d-%d\n\n" % (tag, n)))
        inbox.refresh()
    view = {info.uid: success_result_of(inbox.read(info.uid)) for info in inbox.messages()}
    results.put(view)  # type: ignore[attr-defined]


def test_two_processes_giving_uids_at_once_agree(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    MaildirStore(root)
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    results = context.Queue()
    count = 40
    workers = [
        context.Process(target=_deliver_and_refresh, args=(str(root), tag, count, start, results))
        for tag in range(2)
    ]
    for worker in workers:
        worker.start()
    start.set()
    views = [results.get(timeout=60), results.get(timeout=60)]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    results.close()
    results.join_thread()
    inbox = MaildirStore(root).mailbox("INBOX")
    final = {info.uid: success_result_of(inbox.read(info.uid)) for info in inbox.messages()}
    assert sorted(final) == list(range(1, 2 * count + 1))
    assert len(set(final.values())) == 2 * count
    for view in views:
        # Whatever a process saw, it saw under the UID every process sees.
        assert {uid: final[uid] for uid in view} == view


def test_flags_round_trip_through_file_names(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    inbox = MaildirStore(root).mailbox("INBOX")
    uid = success_result_of(inbox.append(MESSAGE))
    inbox.set_flags([uid], [SEEN, DRAFT, FLAGGED, DELETED, ANSWERED, "Work", "$Junk"])
    (name,) = _files(root, "cur")
    # maildir(5): letters in ASCII order; keywords a..z by dovecot-keywords.
    assert name.endswith(":2,DFRSTab")
    keywords = (root / "dovecot-keywords").read_text().splitlines()
    assert sorted(keywords) == ["0 $Junk", "1 Work"]
    reopened = MaildirStore(root).mailbox("INBOX")
    assert reopened.message(uid).flags == {
        SEEN,
        DRAFT,
        FLAGGED,
        DELETED,
        ANSWERED,
        "Work",
        "$Junk",
    }
    inbox.set_flags([uid], [SEEN])
    assert _files(root, "cur") == [name.split(":")[0] + ":2,S"]


def test_a_folder_holds_26_keywords(tmp_path: Path) -> None:
    inbox = MaildirStore(tmp_path / "Maildir").mailbox("INBOX")
    uid = success_result_of(inbox.append(MESSAGE))
    many = [f"k{n}" for n in range(26)]
    inbox.set_flags([uid], many)
    assert inbox.message(uid).flags == set(many)
    with pytest.raises(MailboxError, match="26 keywords"):
        inbox.set_flags([uid], ["one-too-many"], FlagMode.ADD)
    assert inbox.message(uid).flags == set(many)


def test_letters_without_an_imap_meaning_are_kept(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    inbox = MaildirStore(root).mailbox("INBOX")
    _drop(root, "cur", "1700000000.1_1.host:2,PS", b"x\n")
    inbox.refresh()
    (info,) = inbox.messages()
    assert info.flags == {SEEN}
    inbox.set_flags([info.uid], [FLAGGED])
    assert _files(root, "cur") == ["1700000000.1_1.host:2,FP"]


def test_a_dovecot_maildir_is_read(tmp_path: Path) -> None:
    # Built by hand as Dovecot writes one: S= and W= in the names, keywords
    # by letter in dovecot-keywords, Maildir++ folders, its own index files.
    root = tmp_path / "dovecot"
    for folder in (root, root / ".Sent", root / ".Lists.python"):
        for sub in ("tmp", "new", "cur"):
            (folder / sub).mkdir(parents=True)
    (root / ".Sent" / "maildirfolder").write_bytes(b"")
    (root / ".Lists.python" / "maildirfolder").write_bytes(b"")
    (root / "dovecot-uidlist").write_text("3 V1700000000 N3\n1 :1700000000.M1P2.mx\n")
    (root / "dovecot-keywords").write_text("0 $Forwarded\n1 NonJunk\n")
    (root / "subscriptions").write_text("Sent\nLists.python\n")
    body = b"From: b@example.test\nSubject: dove\n\nbody\n"
    # W= is what Dovecot says the CRLF size is: taken from the name, unread.
    _drop(root, "cur", "1700000000.M1P2.mx,S=43,W=999:2,Sb", body, 1700000000)
    _drop(root, "new", "1700000100.M5P6.mx,S=43,W=47", body)
    _drop(root / ".Sent", "cur", "1700000200.M7P8.mx,S=43,W=47:2,RSa", body)
    store = MaildirStore(root, create=False)
    # A parent without a folder of its own is no mailbox here (an IMAP LIST
    # shows it \Noselect).
    assert store.list_mailboxes() == ["INBOX", "Lists.python", "Sent"]
    assert store.subscriptions() == ["Lists.python", "Sent"]
    inbox = store.mailbox("INBOX")
    first, second = inbox.messages()
    assert first.flags == {SEEN, "NonJunk"}
    assert first.size == 999
    assert second.size == 47
    assert success_result_of(inbox.read(first.uid)) == body.replace(b"\n", b"\r\n")
    (sent,) = store.mailbox("Sent").messages()
    assert sent.flags == {ANSWERED, SEEN}  # no keywords file there: "a" means nothing
    # Dovecot's own files are left alone.
    assert (root / "dovecot-uidlist").read_text().startswith("3 V1700000000")


def test_a_mutt_maildir_is_read(tmp_path: Path) -> None:
    # mutt names files TIME.PID_SEQ.HOST, LF line endings, no sizes in names.
    root = tmp_path / "mutt"
    for sub in ("tmp", "new", "cur"):
        (root / sub).mkdir(parents=True)
    text = b"From: c@example.test\nSubject: mutt\n\nline\n\nend\n"
    _drop(root, "cur", "1700000000.4242_1.laptop:2,FS", text, 1700000000)
    _drop(root, "cur", "1700000001.4242_3.laptop:2,", text)
    _drop(root, "new", "1700000002.4242_5.laptop", text)
    inbox = MaildirStore(root, create=False).mailbox("INBOX")
    infos = inbox.messages()
    assert [info.flags for info in infos] == [{FLAGGED, SEEN}, frozenset(), frozenset()]
    crlf = text.replace(b"\n", b"\r\n")
    assert [info.size for info in infos] == [len(crlf)] * 3
    assert success_result_of(inbox.read(infos[2].uid)) == crlf
    assert inbox.claim_recent() == {infos[2].uid}
    assert _files(root, "new") == []
    assert "1700000002.4242_5.laptop:2," in _files(root, "cur")


@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 5, 64])
def test_sizes_of_other_programs_files_are_counted_in_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(maildir_io, "_CHUNK", chunk)
    data = b"a\r\nb\nc\r\r\n\n\rd\n"
    path = tmp_path / "message"
    path.write_bytes(data)
    assert maildir_io.wire_size_of_file(str(path)) == len(to_crlf(data))


async def test_streams_of_other_programs_files_get_crlf_across_pieces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(maildir_module, "STREAM_PIECE", 3)
    root = tmp_path / "Maildir"
    inbox = MaildirStore(root).mailbox("INBOX")
    data = b"ab\r\ncd\ne\r\r\n\nf\r"
    _drop(root, "new", "1700000000.1_1.host", data)
    inbox.refresh()
    (info,) = inbox.messages()
    pieces = [piece async for piece in inbox.read_stream(info.uid)]
    assert b"".join(pieces) == to_crlf(data)
    assert len(pieces) == 5


async def test_a_stream_follows_a_file_renamed_and_stops_at_one_expunged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(maildir_module, "STREAM_PIECE", 8)
    root = tmp_path / "Maildir"
    inbox = MaildirStore(root).mailbox("INBOX")
    uid = success_result_of(inbox.append(MESSAGE))
    other = MaildirStore(root).mailbox("INBOX")
    stream = inbox.read_stream(uid)
    first = await anext(stream)
    other.set_flags([uid], [SEEN])  # the file moves to cur/ with a new name
    rest = [piece async for piece in stream]
    assert first + b"".join(rest) == MESSAGE
    stream = inbox.read_stream(uid)
    await anext(stream)
    other.set_flags([uid], [DELETED])
    other.expunge()
    with pytest.raises(NoSuchMessageError):
        await anext(stream)


def test_a_file_expunged_by_another_client(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    inbox = MaildirStore(root).mailbox("INBOX")
    uid = success_result_of(inbox.append(MESSAGE))
    keep = success_result_of(inbox.append(MESSAGE))
    seen: list[MailboxChange] = []
    inbox.add_listener(seen.append)
    (name, _) = _files(root, "new")
    os.unlink(root / "new" / name)
    failure_result_of(inbox.read(uid), NoSuchMessageError)
    assert inbox.set_flags([uid], [SEEN]) == {}
    inbox.refresh()
    assert seen == [MessagesExpunged(uids=(uid,))]
    assert [info.uid for info in inbox.messages()] == [keep]


def test_a_file_renamed_by_another_client(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    store = MaildirStore(root)
    inbox = store.mailbox("INBOX")
    uid = success_result_of(inbox.append(MESSAGE))
    # Another process's session sets flags: the file moves under us.
    other = MaildirStore(root).mailbox("INBOX")
    other.set_flags([uid], [SEEN, FLAGGED])
    mine: list[MailboxChange] = []
    inbox.add_listener(mine.append)
    # Reading finds the file by its unique name, and learns its flags.
    assert success_result_of(inbox.read(uid)) == MESSAGE
    assert mine == [FlagsChanged(uid=uid, flags=frozenset({SEEN, FLAGGED}))]
    theirs: list[MailboxChange] = []
    other.add_listener(theirs.append)
    other.set_flags([uid], [DRAFT], FlagMode.ADD)
    # A flag added here is added to theirs, not over them.
    inbox.set_flags([uid], [ANSWERED], FlagMode.ADD)
    both = frozenset({SEEN, FLAGGED, DRAFT, ANSWERED})
    assert inbox.message(uid).flags == both
    assert mine[-1] == FlagsChanged(uid=uid, flags=both)
    other.refresh()
    assert theirs[-1] == FlagsChanged(uid=uid, flags=both)


def test_a_mailbox_deleted_by_another_process(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    box = MaildirStore(root).create("Gone")
    uid = success_result_of(box.append(MESSAGE))
    seen: list[MailboxChange] = []
    box.add_listener(seen.append)
    MaildirStore(root).delete("Gone")
    box.refresh()
    assert seen == [MessagesExpunged(uids=(uid,))]
    failure_result_of(box.append(MESSAGE), NoSuchMailboxError)


def test_copy_is_a_hard_link_and_move_a_rename(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    store = MaildirStore(root)
    inbox = store.mailbox("INBOX")
    archive = store.create("Archive")
    uid = success_result_of(inbox.append(MESSAGE, flags=[SEEN, "Work"]))
    (original,) = _files(root, "cur")
    copied = success_result_of(inbox.copy([uid], archive))[uid]
    (copy_name,) = _files(root / ".Archive", "cur")
    assert os.path.samefile(root / "cur" / original, root / ".Archive" / "cur" / copy_name)
    assert archive.message(copied).flags == {SEEN, "Work"}
    success_result_of(inbox.move([uid], archive))
    assert _files(root, "cur") == []
    assert len(_files(root / ".Archive", "cur")) == 2
    assert _files(root / ".Archive", "tmp") == []


def test_the_maildrop_lock_holds_against_another_process(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    inbox = MaildirStore(root).mailbox("INBOX")
    lock = inbox.lock_maildrop()
    try:
        # Another store object opens the lock file anew: flock refuses it as
        # it would another process.
        with pytest.raises(MaildropLockedError):
            MaildirStore(root).mailbox("INBOX").lock_maildrop()
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        worker = context.Process(target=_try_lock, args=(str(root), results))
        worker.start()
        assert results.get(timeout=60) == "locked"
        worker.join(timeout=60)
        results.close()
        results.join_thread()
    finally:
        lock.release()
    MaildirStore(root).mailbox("INBOX").lock_maildrop().release()


def _try_lock(path: str, results: object) -> None:
    try:
        MaildirStore(path).mailbox("INBOX").lock_maildrop().release()
    except MaildropLockedError:
        results.put("locked")  # type: ignore[attr-defined]
    else:
        results.put("taken")  # type: ignore[attr-defined]


def test_files_over_the_read_limit_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    inbox = MaildirStore(root, max_read_size=10).mailbox("INBOX")
    _drop(root, "new", "1700000000.1_1.host", b"x" * 11)
    inbox.refresh()
    (info,) = inbox.messages()
    failure_result_of(inbox.read(info.uid), MessageTooLargeError)


def test_the_file_systems_refusals_are_mailbox_errors(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    store = MaildirStore(root)
    inbox = store.mailbox("INBOX")
    (root / ".Blocked").write_bytes(b"a file where a folder would go")
    with pytest.raises(MailboxIOError) as raised:
        store.create("Blocked")
    assert isinstance(raised.value.__cause__, OSError)
    assert isinstance(raised.value, OSError)  # still caught as one
    uid = success_result_of(inbox.append(MESSAGE))
    os.rename(root / "cur", root / "cur-away")
    (root / "cur").write_bytes(b"")
    with pytest.raises(MailboxIOError):
        inbox.set_flags([uid], [SEEN])
    failure_result_of(inbox.append(MESSAGE, flags=[SEEN]), MailboxIOError)
    with pytest.raises(MailboxIOError):
        MaildirStore(root / "cur" / "x")  # under a file


def test_fsync_on(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    store = MaildirStore(root, fsync=True)
    inbox = store.mailbox("INBOX")
    success_result_of(store.deliver(MESSAGE))
    uid = success_result_of(inbox.append(MESSAGE, flags=[SEEN]))
    inbox.refresh()
    assert len(inbox.messages()) == 2
    assert success_result_of(inbox.read(uid)) == MESSAGE


def test_the_uid_list_file(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    inbox = MaildirStore(root).mailbox("INBOX")
    uid = success_result_of(inbox.append(MESSAGE))
    uidlist = read_uidlist(str(root / "torsion-uidlist"))
    assert uidlist is not None
    assert uidlist.uidvalidity == inbox.uidvalidity
    assert uidlist.uidnext == uid + 1
    assert list(uidlist.uids.values()) == [uid]
    assert not [name for name in os.listdir(root) if name.endswith(".tmp")]


async def test_file_work_in_the_reactors_threads(reactor: Reactor, tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    store = MaildirStore(root, threads=reactor)
    inbox = store.mailbox("INBOX")
    seen: list[MailboxChange] = []
    inbox.add_listener(seen.append)
    uid = await inbox.append(MESSAGE, flags=[SEEN])
    await store.deliver(b"Subject: two\n\n2\n")
    assert await inbox.read(uid) == MESSAGE
    archive = store.create("Archive")
    mapping = await inbox.move([uid], archive)
    assert await archive.read(mapping[uid]) == MESSAGE
    assert [type(change) for change in seen] == [MessagesAdded, MessagesAdded, MessagesExpunged]
    with pytest.raises(NoSuchMessageError):
        await inbox.read(uid)


class CountingThreads:
    """A ThreadRunner that runs each job at once and counts them."""

    def __init__(self) -> None:
        self.jobs = 0

    def defer_to_thread(self, f: Any, /, *args: Any) -> Deferred[Any]:
        self.jobs += 1
        try:
            return succeed(f(*args))
        except Exception as exc:
            return fail(exc)

    def in_reactor_thread(self) -> bool:
        return True


def test_small_deliveries_are_written_without_a_thread(tmp_path: Path) -> None:
    threads = CountingThreads()
    store = MaildirStore(tmp_path / "Maildir", threads=threads)  # type: ignore[arg-type]
    d = store.deliver(MESSAGE)
    assert success_result_of(d) is None  # done already: written on this thread
    assert threads.jobs == 0
    large = b"Subject: big\r\n\r\n" + b"y" * (INLINE_WRITE_LIMIT + 1)
    success_result_of(store.deliver(large))
    assert threads.jobs == 1  # a large message goes to a worker thread
    synced = MaildirStore(tmp_path / "Synced", threads=threads, fsync=True)  # type: ignore[arg-type]
    success_result_of(synced.deliver(MESSAGE))
    assert threads.jobs == 2  # so does one that is fsynced
    names = sorted(os.listdir(tmp_path / "Maildir" / "new"))
    assert len(names) == 2
    assert os.listdir(tmp_path / "Maildir" / "tmp") == []
    contents = {(tmp_path / "Maildir" / "new" / name).read_bytes() for name in names}
    assert contents == {to_lf(MESSAGE), to_lf(large)}


def test_a_failed_inline_write_is_a_mailbox_error(tmp_path: Path) -> None:
    threads = CountingThreads()
    store = MaildirStore(tmp_path / "Maildir", threads=threads)  # type: ignore[arg-type]
    (tmp_path / "Maildir" / "tmp").rmdir()
    failure = failure_result_of(store.deliver(MESSAGE))
    assert isinstance(failure, MailboxIOError)
    assert threads.jobs == 0


def test_unique_names_differ_and_name_the_process() -> None:
    names = [unique_base(",S=1,W=1") for _ in range(1000)]
    assert len(set(names)) == 1000
    assert all(f"P{os.getpid()}Q" in name for name in names)
    random_part = names[0].split("R", 1)[1].split(".", 1)[0]
    assert len(random_part) == 16
    assert all(f"R{random_part}." in name for name in names)


def to_lf(message: bytes) -> bytes:
    return message.replace(b"\r\n", b"\n")
