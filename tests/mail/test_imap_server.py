"""The IMAP server protocol on fakes: StringTransport, a fake Clock and a memory store."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from torsion.cred import InMemoryChecker, LoginLimiter, Portal
from torsion.defer import Deferred
from torsion.mail import FlagMode, MailboxIOError, MailStore, MailUsers, MemoryUsers
from torsion.mail.imap import IMAP4Factory, IMAP4Limits, IMAP4Server, ParserLimits
from torsion.testing import Clock, StringTransport, success_result_of

FIRST = b"Subject: one\r\n\r\nhello\r\n"
SECOND = b"Subject: two\r\n\r\nbye\r\n"
THIRD = b"Subject: three\r\n\r\nagain\r\n"


class Realm:
    def __init__(self, users: MailUsers) -> None:
        self.users = users
        self.logged_out: list[str] = []

    def request_avatar(self, avatar_id: str, mind: Any, *interfaces: type) -> Any:
        assert interfaces == (MailStore,)
        return MailStore, self.users.store(avatar_id), lambda: self.logged_out.append(avatar_id)


def setup(**kwargs: Any) -> tuple[IMAP4Factory, Realm, Clock, MemoryUsers]:
    clock = Clock()
    users = MemoryUsers(["alice"])
    users.deliver("alice", FIRST)
    users.deliver("alice", SECOND)
    realm = Realm(users)
    portal = Portal(
        realm,
        [InMemoryChecker({"alice": "pw"})],
        clock=clock,
        limiter=LoginLimiter(clock, base_delay=0),
    )
    kwargs.setdefault("plaintext_without_tls", True)
    factory = IMAP4Factory(portal, clock=clock, hostname="imap.test", **kwargs)
    return factory, realm, clock, users


def connect(factory: IMAP4Factory) -> tuple[IMAP4Server, StringTransport]:
    transport = StringTransport()
    protocol = factory(transport.peer)
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    assert transport.value().startswith(b"* OK [CAPABILITY IMAP4rev1 ")
    transport.clear()
    return protocol, transport


def say(protocol: IMAP4Server, transport: StringTransport, data: bytes) -> list[bytes]:
    protocol.data_received(data)
    out = transport.value()
    transport.clear()
    return out.split(b"\r\n")[:-1]


def selected(factory: IMAP4Factory) -> tuple[IMAP4Server, StringTransport]:
    protocol, transport = connect(factory)
    lines = say(protocol, transport, b"a LOGIN alice pw\r\nb SELECT INBOX\r\n")
    assert lines[-1] == b"b OK [READ-WRITE] SELECT completed"
    return protocol, transport


def test_greeting_without_tls_refuses_plaintext() -> None:
    factory, _, _, _ = setup(plaintext_without_tls=False)
    transport = StringTransport()
    protocol = factory(transport.peer)
    protocol.connection_made(transport)
    greeting = transport.value()
    assert b"LOGINDISABLED" in greeting
    assert b"AUTH=PLAIN" not in greeting
    assert b"AUTH=CRAM-MD5" in greeting
    transport.clear()
    assert say(
        protocol, transport, b"a LOGIN alice pw\r\nb AUTHENTICATE PLAIN AGFsaWNlAHB3\r\n"
    ) == [
        b"a NO [PRIVACYREQUIRED] LOGIN refused before STARTTLS",
        b"b NO [PRIVACYREQUIRED] plaintext mechanisms refused before STARTTLS",
    ]
    assert say(protocol, transport, b"c STARTTLS\r\n") == [b"c BAD STARTTLS not available"]
    protocol.connection_lost(None)


def test_commands_refused_in_the_wrong_state() -> None:
    factory, _, _, _ = setup()
    protocol, transport = connect(factory)
    assert say(protocol, transport, b"a SELECT INBOX\r\nb FETCH 1 FLAGS\r\nc NOOP\r\n") == [
        b"a BAD SELECT not allowed not authenticated",
        b"b BAD FETCH not allowed not authenticated",
        b"c OK NOOP completed",
    ]
    say(protocol, transport, b"d LOGIN alice pw\r\n")
    assert say(protocol, transport, b"e FETCH 1 FLAGS\r\nf LOGIN alice pw\r\n") == [
        b"e BAD FETCH not allowed authenticated",
        b"f BAD LOGIN not allowed authenticated",
    ]
    protocol.connection_lost(None)


def test_pipelined_commands_answered_in_order() -> None:
    factory, _, _, _ = setup()
    protocol, transport = connect(factory)
    lines = say(
        protocol,
        transport,
        b"a LOGIN alice pw\r\nb SELECT INBOX\r\nc FETCH 1:* (UID RFC822.SIZE)\r\nd LOGOUT\r\n",
    )
    tags = [line.split(b" ")[0] for line in lines if not line.startswith(b"*")]
    assert tags == [b"a", b"b", b"c", b"d"]
    assert b"* 1 FETCH (UID 1 RFC822.SIZE %d)" % len(FIRST) in lines
    assert lines[-2:] == [b"* BYE logging out", b"d OK LOGOUT completed"]
    assert transport.closed
    protocol.connection_lost(None)


def test_expunge_waits_until_the_protocol_allows_it() -> None:
    factory, _, _, users = setup()
    protocol, transport = selected(factory)
    inbox = users.store("alice").mailbox("INBOX")
    # Another session deletes the first message.
    inbox.set_flags([1], ["\\Deleted"], FlagMode.ADD)
    inbox.expunge([1])
    # RFC 3501 section 7.4.1: no EXPUNGE during FETCH, STORE or SEARCH.
    assert say(protocol, transport, b"c FETCH 1:* (UID)\r\n") == [
        b"* 2 FETCH (UID 2)",
        b"c NO [EXPUNGEISSUED] some messages were expunged",
    ]
    assert say(protocol, transport, b"d SEARCH ALL\r\n") == [
        b"* SEARCH 2",
        b"d OK SEARCH completed",
    ]
    assert say(protocol, transport, b"e STORE 2 +FLAGS.SILENT (\\Seen)\r\n") == [
        b"e OK STORE completed"
    ]
    # UID commands and NOOP may tell it; numbers move down from then on.
    assert say(protocol, transport, b"f NOOP\r\n") == [b"* 1 EXPUNGE", b"f OK NOOP completed"]
    assert say(protocol, transport, b"g FETCH 1 (UID FLAGS)\r\n") == [
        b"* 1 FETCH (UID 2 FLAGS (\\Recent \\Seen))",
        b"g OK FETCH completed",
    ]
    protocol.connection_lost(None)


def test_new_messages_told_after_any_command_and_recent_claimed_once() -> None:
    factory, _, _, users = setup()
    first, first_transport = selected(factory)
    second, second_transport = selected(factory)
    users.deliver("alice", THIRD)
    assert say(first, first_transport, b"c NOOP\r\n") == [
        b"* 3 EXISTS",
        b"* 3 RECENT",
        b"c OK NOOP completed",
    ]
    # The first session claimed it; the second sees it without \Recent.
    assert say(second, second_transport, b"c NOOP\r\nd FETCH 3 FLAGS\r\n") == [
        b"* 3 EXISTS",
        b"* 0 RECENT",
        b"c OK NOOP completed",
        b"* 3 FETCH (FLAGS ())",
        b"d OK FETCH completed",
    ]
    first.connection_lost(None)
    second.connection_lost(None)


def test_idle_reports_changes_at_once_and_ends_with_done() -> None:
    factory, _, _, users = setup()
    protocol, transport = selected(factory)
    assert say(protocol, transport, b"c IDLE\r\n") == [b"+ idling"]
    assert transport.is_reading()
    users.deliver("alice", THIRD)
    assert transport.value() == b"* 3 EXISTS\r\n* 3 RECENT\r\n"
    transport.clear()
    users.store("alice").mailbox("INBOX").set_flags([2], ["\\Flagged"], FlagMode.ADD)
    assert transport.value() == b"* 2 FETCH (FLAGS (\\Flagged \\Recent))\r\n"
    transport.clear()
    assert say(protocol, transport, b"DONE\r\nd NOOP\r\n") == [
        b"c OK IDLE terminated",
        b"d OK NOOP completed",
    ]
    assert say(protocol, transport, b"e IDLE\r\n") == [b"+ idling"]
    assert say(protocol, transport, b"nope\r\n") == [b"e BAD expected DONE"]
    protocol.connection_lost(None)


def test_connection_lost_stops_listening_and_logs_out() -> None:
    factory, realm, _, users = setup()
    protocol, transport = selected(factory)
    protocol.connection_lost(None)
    assert realm.logged_out == ["alice"]
    users.deliver("alice", THIRD)
    assert transport.value() == b""


def test_login_timeout_then_idle_timeout_after_login() -> None:
    factory, _, clock, _ = setup()
    protocol, transport = connect(factory)
    clock.advance(59)
    assert not transport.is_closing()
    clock.advance(1)
    assert transport.value() == b"* BYE autologout; idle for too long\r\n"
    assert transport.closed
    protocol.connection_lost(None)

    protocol, transport = connect(factory)
    say(protocol, transport, b"a LOGIN alice pw\r\n")
    clock.advance(29 * 60)
    assert not transport.is_closing()
    say(protocol, transport, b"b NOOP\r\n")
    clock.advance(29 * 60)
    assert not transport.is_closing()
    clock.advance(60)
    assert transport.closed
    assert transport.value() == b"* BYE autologout; idle for too long\r\n"
    protocol.connection_lost(None)
    assert clock.get_delayed_calls() == []


def test_failed_logins_close_the_connection() -> None:
    factory, _, _, _ = setup(limits=IMAP4Limits(max_failed_logins=2))
    protocol, transport = connect(factory)
    assert say(protocol, transport, b"a LOGIN alice no\r\n") == [
        b"a NO [AUTHENTICATIONFAILED] authentication failed"
    ]
    assert say(protocol, transport, b"b LOGIN alice no\r\nc LOGIN alice pw\r\n") == [
        b"* BYE too many failed logins",
        b"b NO [AUTHENTICATIONFAILED] authentication failed",
    ]
    assert transport.closed
    protocol.connection_lost(None)


def test_errors_and_commands_are_bounded() -> None:
    factory, _, _, _ = setup(limits=IMAP4Limits(max_errors=2, max_commands=3))
    protocol, transport = connect(factory)
    assert say(protocol, transport, b"a BOGUS\r\n\r\nb NOOP\r\n") == [
        b"a BAD unknown command BOGUS",
        b"* BAD missing or bad tag",
        b"* BYE too many errors",
    ]
    assert transport.closed
    protocol.connection_lost(None)
    protocol, transport = connect(factory)
    lines = say(protocol, transport, b"a NOOP\r\nb NOOP\r\nc NOOP\r\nd NOOP\r\n")
    assert lines == [
        b"a OK NOOP completed",
        b"b OK NOOP completed",
        b"c OK NOOP completed",
        b"* BYE too many commands in one session",
    ]
    protocol.connection_lost(None)


def test_append_literal_plus_to_a_missing_mailbox_is_dropped() -> None:
    factory, _, _, users = setup()
    protocol, transport = connect(factory)
    say(protocol, transport, b"a LOGIN alice pw\r\n")
    assert say(protocol, transport, b"b APPEND Nope {5+}\r\nhello\r\n") == [
        b"b NO [TRYCREATE] no mailbox 'Nope'"
    ]
    assert say(protocol, transport, b"c APPEND INBOX (\\Seen) {5}\r\n") == [b"+ Ready"]
    assert say(protocol, transport, b"hello\r\n") == [
        b"c OK [APPENDUID 1 3] APPEND completed".replace(
            b" 1 ", b" %d " % users.store("alice").mailbox("INBOX").uidvalidity
        )
    ]
    inbox = users.store("alice").mailbox("INBOX")
    assert [m.flags for m in inbox.messages()][-1] == frozenset({"\\Seen"})
    protocol.connection_lost(None)


def test_oversized_non_synchronising_literal_closes() -> None:
    factory, _, _, _ = setup(limits=IMAP4Limits(parser=ParserLimits(max_literal=10)))
    protocol, transport = connect(factory)
    assert say(protocol, transport, b"a LOGIN alice {100+}\r\n") == [b"* BYE literal too large"]
    assert transport.closed
    protocol.connection_lost(None)


def test_reading_pauses_while_a_read_is_pending() -> None:
    factory, _, _, users = setup()
    protocol, transport = selected(factory)
    inbox = users.store("alice").mailbox("INBOX")
    pending: Deferred[bytes] = Deferred()
    original = inbox.read
    inbox.read = lambda uid: pending  # type: ignore[method-assign]
    try:
        assert say(protocol, transport, b"c FETCH 1 BODY.PEEK[]\r\nd NOOP\r\n") == []
        assert not transport.is_reading()
        pending.callback(FIRST)
    finally:
        inbox.read = original  # type: ignore[method-assign]
    lines = transport.value().split(b"\r\n")
    assert lines[0] == b"* 1 FETCH (BODY[] {%d}" % len(FIRST)
    assert lines[-3:] == [b"c OK FETCH completed", b"d OK NOOP completed", b""]
    assert transport.is_reading()
    protocol.connection_lost(None)


def test_lost_connection_cancels_a_pending_read() -> None:
    factory, _, _, users = setup()
    protocol, transport = selected(factory)
    inbox = users.store("alice").mailbox("INBOX")
    pending: Deferred[bytes] = Deferred()
    inbox.read = lambda uid: pending  # type: ignore[method-assign]
    say(protocol, transport, b"c FETCH 1 BODY[]\r\n")
    protocol.connection_lost(None)
    assert pending.called
    assert transport.value() == b""


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"login_timeout": 0}, "timeouts"),
        ({"max_errors": 0}, "max_errors"),
        ({"max_commands": 0}, "max_commands"),
    ],
)
def test_limits_refuse_nonsense(limits: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        IMAP4Limits(**limits)


def test_a_store_failure_is_a_no_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    factory, _, _, users = setup()
    protocol, transport = selected(factory)
    inbox = users.store("alice").mailbox("INBOX")

    def broken(*args: object, **kwargs: object) -> dict[int, frozenset[str]]:
        raise MailboxIOError(28, "No space left on device")

    inbox.set_flags = broken  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, "torsion.mail.imap"):
        # FETCH sets \Seen through set_flags, which fails.
        lines = say(protocol, transport, b"c FETCH 1 BODY[]\r\nd NOOP\r\n")
    assert lines == [b"c NO [UNAVAILABLE] mailbox unavailable", b"d OK NOOP completed"]
    assert "FETCH failed in the store" in caplog.text
    protocol.connection_lost(None)


def test_idle_looks_at_the_mailbox_periodically() -> None:
    factory, _, clock, users = setup(limits=IMAP4Limits(idle_refresh=10))
    protocol, transport = selected(factory)
    inbox = users.store("alice").mailbox("INBOX")
    looks: list[float] = []
    inbox.refresh = lambda: looks.append(clock.seconds())  # type: ignore[method-assign]
    assert say(protocol, transport, b"c IDLE\r\n") == [b"+ idling"]
    clock.advance(10)
    clock.advance(10)
    assert looks == [10, 20]
    assert say(protocol, transport, b"DONE\r\n") == [b"c OK IDLE terminated"]
    clock.advance(10)
    assert looks == [10, 20]
    protocol.connection_lost(None)
    assert clock.get_delayed_calls() == []


def test_a_bad_append_is_abandoned() -> None:
    factory, _, _, users = setup(limits=IMAP4Limits(parser=ParserLimits(max_line=64)))
    protocol, transport = connect(factory)
    say(protocol, transport, b"a LOGIN alice pw\r\n")
    assert say(protocol, transport, b"b APPEND INBOX {5}\r\n") == [b"+ Ready"]
    lines = say(protocol, transport, b"hello" + b"x" * 100 + b"\r\nc NOOP\r\n")
    assert lines == [b"b BAD line too long", b"c OK NOOP completed"]
    assert len(users.store("alice").mailbox("INBOX").messages()) == 2
    protocol.connection_lost(None)


def test_connection_lost_during_idle_leaves_nothing_behind() -> None:
    factory, realm, clock, users = setup()
    protocol, transport = selected(factory)
    assert say(protocol, transport, b"c IDLE\r\n") == [b"+ idling"]
    protocol.connection_lost(ConnectionResetError())
    assert clock.get_delayed_calls() == []
    assert realm.logged_out == ["alice"]
    users.deliver("alice", THIRD)
    assert transport.value() == b""


def test_replies_naming_a_non_ascii_mailbox_stay_ascii() -> None:
    factory, _, _, _ = setup()
    protocol, transport = connect(factory)
    say(protocol, transport, b"a LOGIN alice pw\r\n")
    # "&AOk-t&AOk-" is "été" in modified UTF-7 (RFC 3501 section 5.1.3).
    assert say(protocol, transport, b"b SELECT &AOk-t&AOk-\r\nc CREATE &AOk-t&AOk-\r\n") == [
        b"b NO [NONEXISTENT] no mailbox '?t?'",
        b"c OK CREATE completed",
    ]
    assert say(protocol, transport, b'd LIST "" *\r\ne APPEND Nul {1}\r\n') == [
        b'* LIST (\\HasNoChildren) "." "INBOX"',
        b'* LIST (\\HasNoChildren) "." "&AOk-t&AOk-"',
        b"d OK LIST completed",
        b"e NO [TRYCREATE] no mailbox 'Nul'",
    ]
    protocol.connection_lost(None)


def test_authenticate_cancelled_malformed_and_with_initial_response() -> None:
    factory, _, _, _ = setup()
    protocol, transport = connect(factory)
    assert say(protocol, transport, b"a AUTHENTICATE PLAIN\r\n") == [b"+ "]
    assert say(protocol, transport, b"*\r\n") == [b"a BAD authentication cancelled"]
    assert say(protocol, transport, b"b AUTHENTICATE LOGIN\r\n") == [b"+ VXNlcm5hbWU6"]
    assert say(protocol, transport, b"!!!\r\n") == [b"b BAD malformed base64"]
    # SASL-IR (RFC 4959): the response on the command line, then a pipelined NOOP.
    lines = say(protocol, transport, b"c AUTHENTICATE PLAIN AGFsaWNlAHB3\r\nd NOOP\r\n")
    assert lines[0].startswith(b"c OK [CAPABILITY IMAP4rev1 ")
    assert lines[1:] == [b"d OK NOOP completed"]
    protocol.connection_lost(None)


def test_message_numbers_past_the_mailbox_are_bad_but_uids_are_not() -> None:
    factory, _, _, _ = setup()
    protocol, transport = selected(factory)
    # RFC 3501 section 9, seq-number: BAD for a number past the messages.
    for command in (b"FETCH 3 (FLAGS)", b"FETCH 1:3 (FLAGS)", b"STORE 9 +FLAGS (\\Seen)"):
        assert say(protocol, transport, b"c " + command + b"\r\n") == [
            b"c BAD no message %s: the mailbox has 2" % command.split()[1].split(b":")[-1]
        ]
    assert say(protocol, transport, b"d COPY 7 INBOX\r\n") == [
        b"d BAD no message 7: the mailbox has 2"
    ]
    # UIDs name messages that may be gone: no error, nothing fetched.
    assert say(protocol, transport, b"e UID FETCH 99 (FLAGS)\r\n") == [b"e OK UID FETCH completed"]
    assert say(protocol, transport, b"f FETCH 2 (UID)\r\n") == [
        b"* 2 FETCH (UID 2)",
        b"f OK FETCH completed",
    ]
    protocol.connection_lost(None)


def test_star_in_an_empty_mailbox_is_bad() -> None:
    factory, _, _, users = setup()
    users.store("alice").create("Empty")
    protocol, transport = connect(factory)
    say(protocol, transport, b"a LOGIN alice pw\r\nb SELECT Empty\r\n")
    assert say(protocol, transport, b"c FETCH * (FLAGS)\r\n") == [
        b"c BAD no message *: the mailbox has 0"
    ]
    protocol.connection_lost(None)


def test_renaming_the_inbox_moves_its_messages_and_leaves_it_empty() -> None:
    factory, _, _, users = setup()
    protocol, transport = connect(factory)
    say(protocol, transport, b"a LOGIN alice pw\r\n")
    # RFC 3501 section 6.3.5.
    assert say(protocol, transport, b"b RENAME INBOX Old\r\n") == [b"b OK RENAME completed"]
    store = users.store("alice")
    assert sorted(store.list_mailboxes()) == ["INBOX", "Old"]
    assert store.mailbox("INBOX").messages() == []
    old = store.mailbox("Old")
    assert [success_result_of(old.read(info.uid)) for info in old.messages()] == [FIRST, SECOND]
    assert say(protocol, transport, b"c RENAME inbox Old\r\n") == [
        b"c NO [ALREADYEXISTS] target exists"
    ]
    # An empty INBOX renames too: the new mailbox is made empty.
    assert say(protocol, transport, b"d RENAME INBOX Newer\r\n") == [b"d OK RENAME completed"]
    assert store.mailbox("Newer").messages() == []
    protocol.connection_lost(None)
