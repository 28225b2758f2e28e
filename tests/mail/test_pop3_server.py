"""The POP3 server protocol on fakes: StringTransport, a fake Clock, memory and Maildir stores."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest

from torsion.cred import InMemoryChecker, LoginLimiter, Portal
from torsion.defer import Deferred
from torsion.mail import MaildirUsers, MailStore, MailUsers, MemoryUsers, NoSuchMessageError
from torsion.mail.pop3 import POP3Factory, POP3Limits, POP3Server
from torsion.testing import Clock, StringTransport

FIRST = b"Subject: one\r\n\r\nhello\r\n.dot\r\n"
SECOND = b"Subject: two\r\n\r\nbye\r\n"


class Realm:
    def __init__(self, users: MailUsers, *, broken: bool = False) -> None:
        self.users = users
        self.broken = broken
        self.logged_out: list[str] = []

    def request_avatar(self, avatar_id: str, mind: Any, *interfaces: type) -> Any:
        assert interfaces == (MailStore,)
        if self.broken:
            raise RuntimeError("realm bug")
        return MailStore, self.users.store(avatar_id), lambda: self.logged_out.append(avatar_id)


def setup(
    users: MailUsers | None = None, *, broken: bool = False, **kwargs: Any
) -> tuple[POP3Factory, Realm, Clock, MailUsers]:
    clock = Clock()
    if users is None:
        users = MemoryUsers(["alice"])
        users.deliver("alice", FIRST)
        users.deliver("alice", SECOND)
    realm = Realm(users, broken=broken)
    portal = Portal(
        realm,
        [InMemoryChecker({"alice": "pw"})],
        clock=clock,
        limiter=LoginLimiter(clock, base_delay=0),
    )
    kwargs.setdefault("plaintext_without_tls", True)
    factory = POP3Factory(portal, clock=clock, hostname="pop.test", **kwargs)
    return factory, realm, clock, users


def connect(factory: POP3Factory) -> tuple[POP3Server, StringTransport]:
    transport = StringTransport()
    protocol = factory(transport.peer)
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    assert transport.value().startswith(b"+OK POP3 server ready <")
    transport.clear()
    return protocol, transport


def say(protocol: POP3Server, transport: StringTransport, data: bytes) -> list[bytes]:
    protocol.data_received(data)
    out = transport.value()
    transport.clear()
    return out.split(b"\r\n")[:-1]


def login(protocol: POP3Server, transport: StringTransport) -> None:
    assert say(protocol, transport, b"USER alice\r\nPASS pw\r\n")[-1].startswith(
        b"+OK maildrop has "
    )


def test_session_retrieves_and_deletes_at_quit() -> None:
    factory, realm, _, users = setup()
    protocol, transport = connect(factory)
    login(protocol, transport)
    assert say(protocol, transport, b"RETR 1\r\n") == [
        b"+OK message follows",
        b"Subject: one",
        b"",
        b"hello",
        b"..dot",
        b".",
    ]
    assert say(protocol, transport, b"DELE 1\r\nQUIT\r\n") == [
        b"+OK message 1 deleted",
        b"+OK bye",
    ]
    assert transport.closed
    protocol.connection_lost(None)
    inbox = users.store("alice").mailbox("INBOX")
    assert [m.size for m in inbox.messages()] == [len(SECOND)]
    assert realm.logged_out == ["alice"]
    # The lock is free again.
    inbox.lock_maildrop().release()


def test_lost_connection_deletes_nothing_and_releases_the_lock() -> None:
    factory, realm, _, users = setup()
    protocol, transport = connect(factory)
    login(protocol, transport)
    other, other_transport = connect(factory)
    assert say(other, other_transport, b"USER alice\r\nPASS pw\r\n")[-1] == (
        b"-ERR [IN-USE] maildrop already locked by another session"
    )
    say(protocol, transport, b"DELE 1\r\nDELE 2\r\n")
    protocol.connection_lost(ConnectionResetError())
    inbox = users.store("alice").mailbox("INBOX")
    assert len(inbox.messages()) == 2
    assert realm.logged_out == ["alice", "alice"]
    assert say(other, other_transport, b"USER alice\r\nPASS pw\r\n")[-1].startswith(b"+OK")
    other.connection_lost(None)


def test_idle_timeout_on_the_clock() -> None:
    factory, _, clock, _ = setup(limits=POP3Limits(idle_timeout=600))
    protocol, transport = connect(factory)
    clock.advance(599)
    say(protocol, transport, b"NOOP\r\n")
    clock.advance(599)
    assert not transport.is_closing()
    clock.advance(2)
    assert transport.value() == b"-ERR [SYS/TEMP] autologout: idle for too long\r\n"
    assert transport.is_closing()
    protocol.connection_lost(None)
    assert clock.get_delayed_calls() == []


def test_default_idle_timeout_is_ten_minutes() -> None:
    assert POP3Limits().idle_timeout >= 600


def test_retr_follows_the_write_buffer() -> None:
    body = b"".join(b"line %06d of a long message\r\n" % i for i in range(20_000))
    users = MemoryUsers(["alice"])
    users.deliver("alice", b"Subject: big\r\n\r\n" + body)
    users.deliver("alice", SECOND)
    factory, _, _, _ = setup(users)
    protocol, transport = connect(factory)
    transport.set_write_buffer_limits(high=100_000)
    login(protocol, transport)
    protocol.data_received(b"RETR 1\r\nNOOP\r\n")
    first = transport.value()
    # Paused at the high-water mark: not the whole message, and NOOP waits.
    assert 100_000 <= len(first) < len(body)
    assert not transport.is_reading()
    received = [first]
    transport.clear()
    while not transport.value().endswith(b"+OK\r\n"):
        received.append(transport.value())
        transport.clear()
    received.append(transport.value())
    wire = b"".join(received)
    assert wire.startswith(b"+OK message follows\r\nSubject: big\r\n\r\nline 000000")
    assert wire.endswith(body + b".\r\n+OK\r\n")
    assert transport.is_reading()
    protocol.connection_lost(None)


def test_connection_lost_while_sending_a_message() -> None:
    body = b"x" * 500_000 + b"\r\n"
    users = MemoryUsers(["alice"])
    users.deliver("alice", body)
    factory, realm, _, _ = setup(users)
    protocol, transport = connect(factory)
    transport.set_write_buffer_limits(high=10_000)
    login(protocol, transport)
    protocol.data_received(b"RETR 1\r\n")
    assert len(transport.value()) < len(body)
    protocol.connection_lost(ConnectionResetError())
    assert realm.logged_out == ["alice"]
    users.store("alice").mailbox("INBOX").lock_maildrop().release()


class VanishingStore:
    """A store whose INBOX says a message has gone when it is read."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def mailbox(self, name: str) -> Any:
        inner = self._store.mailbox(name)

        class Inbox:
            def __getattr__(self, attr: str) -> Any:
                return getattr(inner, attr)

            async def read_stream(self, uid: int) -> AsyncGenerator[bytes, None]:
                raise NoSuchMessageError(uid)
                yield b""  # an async generator, as the interface's

        return Inbox()


def test_message_gone_and_realm_failure(caplog: pytest.LogCaptureFixture) -> None:
    users = MemoryUsers(["alice"])
    users.deliver("alice", FIRST)

    class Gone:
        def exists(self, user: str) -> bool:
            return True

        def store(self, user: str) -> Any:
            return VanishingStore(users.store(user))

        def deliver(self, user: str, message: bytes) -> Deferred[None]:
            raise NotImplementedError

    factory, _, _, _ = setup(Gone())
    protocol, transport = connect(factory)
    assert say(protocol, transport, b"USER alice\r\nPASS pw\r\nRETR 1\r\nNOOP\r\n")[-2:] == [
        b"-ERR [SYS/TEMP] message cannot be read now",
        b"+OK",
    ]
    protocol.connection_lost(None)

    factory, _, _, _ = setup(broken=True)
    protocol, transport = connect(factory)
    with caplog.at_level(logging.ERROR, logger="torsion.mail.pop3"):
        assert say(protocol, transport, b"USER alice\r\nPASS pw\r\n")[-1] == (
            b"-ERR [SYS/TEMP] authentication unavailable"
        )
    assert "POP3 login failed in the realm" in caplog.text
    protocol.connection_lost(None)


def test_wrong_passwords_end_the_session() -> None:
    factory, _, _, _ = setup()
    protocol, transport = connect(factory)
    replies = say(protocol, transport, b"USER alice\r\nPASS x\r\n" * 3)
    assert replies[-1] == b"-ERR [AUTH] authentication failed; too many failures"
    assert transport.closed
    protocol.connection_lost(None)


def test_maildir_end_to_end(tmp_path: Path) -> None:
    users = MaildirUsers(tmp_path, users=["alice"])
    users.deliver("alice", FIRST)
    factory, _, _, _ = setup(users)
    protocol, transport = connect(factory)
    login_reply = say(protocol, transport, b"USER alice\r\nPASS pw\r\n")[-1]
    assert login_reply == b"+OK maildrop has 1 message (%d octets)" % len(FIRST)
    # Delivered after the login: not in this session's snapshot.
    users.deliver("alice", SECOND)
    assert say(protocol, transport, b"STAT\r\nTOP 1 0\r\nDELE 1\r\nQUIT\r\n") == [
        b"+OK 1 %d" % len(FIRST),
        b"+OK message follows",
        b"Subject: one",
        b"",
        b".",
        b"+OK message 1 deleted",
        b"+OK bye",
    ]
    protocol.connection_lost(None)
    files = sorted(p.read_bytes() for p in (tmp_path / "alice").glob("*/*") if p.is_file())
    # Maildir keeps LF line endings on disk.
    assert files == [SECOND.replace(b"\r\n", b"\n")]


class StreamingInbox:
    """An INBOX that hands messages out in pieces, counting what was read."""

    def __init__(self, inner: Any, piece: bytes, count: int) -> None:
        self._inner = inner
        self.piece = piece
        self.count = count
        self.pieces_read = 0
        self.closed = False

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._inner, attr)

    def read(self, uid: int) -> Deferred[bytes]:
        raise AssertionError("a streaming mailbox is not read whole")

    async def read_stream(self, uid: int) -> AsyncGenerator[bytes, None]:
        try:
            yield b"Subject: s\n\n"
            for _ in range(self.count):
                self.pieces_read += 1
                yield self.piece
        finally:
            self.closed = True


def test_a_streaming_mailbox_is_read_as_the_client_takes_it() -> None:
    users = MemoryUsers(["alice"])
    users.deliver("alice", b"Subject: s\r\n\r\nbody\r\n")
    inbox = StreamingInbox(
        users.store("alice").mailbox("INBOX"), b"line of the body\n" * 1000, 100
    )

    class Store:
        def mailbox(self, name: str) -> Any:
            return inbox

    class Users:
        def store(self, user: str) -> Any:
            return Store()

    factory, _, _, _ = setup(Users())  # type: ignore[arg-type]
    protocol, transport = connect(factory)
    transport.set_write_buffer_limits(high=50_000)
    login(protocol, transport)
    protocol.data_received(b"RETR 1\r\n")
    # Paused: only the pieces the buffer could take were read.
    assert inbox.pieces_read < 10
    wire = [transport.value()]
    transport.clear()
    while not transport.value().endswith(b"\r\n.\r\n"):
        wire.append(transport.value())
        transport.clear()
    wire.append(transport.value())
    transport.clear()
    assert b"".join(wire) == (
        b"+OK message follows\r\nSubject: s\r\n\r\n" + b"line of the body\r\n" * 100_000 + b".\r\n"
    )
    assert inbox.pieces_read == 100
    assert inbox.closed
    # TOP stops reading once its lines are out.
    inbox.pieces_read = 0
    inbox.closed = False
    lines = say(protocol, transport, b"TOP 1 3\r\n")
    assert lines == [
        b"+OK message follows",
        b"Subject: s",
        b"",
        *[b"line of the body"] * 3,
        b".",
    ]
    assert inbox.pieces_read == 1
    assert inbox.closed
    protocol.connection_lost(None)


def test_login_delay_and_expire() -> None:
    factory, _, clock, _ = setup(login_delay=60, expire="NEVER")
    protocol, transport = connect(factory)
    capabilities = say(protocol, transport, b"CAPA\r\n")
    assert b"LOGIN-DELAY 60" in capabilities
    assert b"EXPIRE NEVER" in capabilities
    login(protocol, transport)
    say(protocol, transport, b"QUIT\r\n")
    protocol.connection_lost(None)
    clock.advance(30)
    protocol, transport = connect(factory)
    assert say(protocol, transport, b"USER alice\r\nPASS pw\r\n")[-1] == (
        b"-ERR [LOGIN-DELAY] minimum time between logins not reached"
    )
    clock.advance(31)
    login(protocol, transport)
    protocol.connection_lost(None)
    with pytest.raises(ValueError, match="login_delay"):
        setup(login_delay=0)
