"""Users' stores by name: MaildirUsers and MemoryUsers, one suite for both."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from torsion.mail import (
    MaildirStore,
    MaildirUsers,
    MailUsers,
    MemoryUsers,
    MessagesAdded,
    MessageTooLargeError,
    NoSuchUserError,
)
from torsion.mail._mailbox import MailboxChange
from torsion.testing import failure_result_of, success_result_of


@pytest.fixture(params=["memory", "maildir"])
def users(request: pytest.FixtureRequest, tmp_path: Path) -> MailUsers:
    """The users alice and bob, in memory and in Maildirs."""
    if request.param == "memory":
        return MemoryUsers(["alice", "bob"], max_message_size=1000)
    return MaildirUsers(tmp_path / "mail", users=["alice", "bob"], max_message_size=1000)


def test_each_user_has_one_store(users: MailUsers) -> None:
    assert users.exists("alice")
    assert not users.exists("carol")
    assert users.store("alice") is users.store("alice")
    assert users.store("alice") is not users.store("bob")
    with pytest.raises(NoSuchUserError):
        users.store("carol")


def test_delivery_reaches_the_users_listening_sessions(users: MailUsers) -> None:
    inbox = users.store("alice").mailbox("INBOX")
    seen: list[MailboxChange] = []
    inbox.add_listener(seen.append)
    success_result_of(users.deliver("alice", b"Subject: hi\r\n\r\nx\r\n"))
    (info,) = inbox.messages()
    assert seen == [MessagesAdded(uids=(info.uid,))]
    assert users.store("bob").mailbox("INBOX").messages() == []
    failure_result_of(users.deliver("carol", b"x"), NoSuchUserError)
    failure_result_of(users.deliver("bob", b"x" * 1001), MessageTooLargeError)


@pytest.mark.parametrize("name", ["", ".", "..", ".hidden", "a/b", "../alice", "a\x00", "x" * 129])
def test_names_that_climb_are_no_users(name: str, tmp_path: Path) -> None:
    with pytest.raises(NoSuchUserError):
        MemoryUsers([name])
    users = MaildirUsers(tmp_path)
    assert not users.exists(name)
    with pytest.raises(NoSuchUserError):
        users.store(name)


def test_unlisted_maildir_users_are_those_with_a_maildir(tmp_path: Path) -> None:
    MaildirStore(tmp_path / "dora")
    (tmp_path / "empty").mkdir()
    users = MaildirUsers(tmp_path)
    assert users.exists("dora")
    assert not users.exists("empty")
    assert not users.exists("eve")
    assert users.store("dora").path == str(tmp_path / "dora")


def test_a_listed_users_maildir_is_made_on_first_use(tmp_path: Path) -> None:
    users = MaildirUsers(tmp_path, users=["fred"])
    assert not (tmp_path / "fred").exists()
    success_result_of(users.deliver("fred", b"Subject: first\n\n"))
    assert len(os.listdir(tmp_path / "fred" / "new")) == 1
