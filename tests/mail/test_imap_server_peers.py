"""The IMAP server on 127.0.0.1, both loops, with clients nobody here wrote.

Python's imaplib (every command the server has, STARTTLS against trustme
certificates), curl's imap support, and raw sockets for IDLE and for two
sessions watching one mailbox.
"""

from __future__ import annotations

import asyncio
import imaplib
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trustme

from torsion.cred import InMemoryChecker, LoginLimiter, Portal
from torsion.defer import Deferred
from torsion.internet import Reactor
from torsion.mail import MailStore, MemoryUsers
from torsion.mail.imap import IMAP4Factory, IMAP4Server

pytestmark = pytest.mark.integration

BOTH_LOOPS = pytest.mark.parametrize(
    "loop",
    [
        pytest.param("asyncio", marks=pytest.mark.torsion_loop("asyncio")),
        pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop")),
    ],
)

FIRST = b"From: a@x.test\r\nTo: alice@x.test\r\nSubject: one\r\n\r\nline 1\r\nline 2\r\n"
SECOND = b"From: b@x.test\r\nSubject: two\r\n\r\nhello there\r\n"


class Realm:
    def __init__(self, users: MemoryUsers) -> None:
        self.users = users

    def request_avatar(self, avatar_id: str, mind: Any, *interfaces: type) -> Any:
        return MailStore, self.users.store(avatar_id), lambda: None


class Tracked(IMAP4Server):
    def __init__(self, factory: IMAP4Factory, ended: list[Deferred[None]]) -> None:
        super().__init__(factory)
        self.ended: Deferred[None] = Deferred()
        ended.append(self.ended)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.ended.callback(None)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


@pytest.fixture
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


class Server:
    def __init__(self, port: int, users: MemoryUsers, ended: list[Deferred[None]]) -> None:
        self.port = port
        self.users = users
        self.ended = ended

    def inbox(self) -> Any:
        return self.users.store("alice").mailbox("INBOX")

    async def all_closed(self) -> None:
        for d in self.ended:
            await asyncio.wait_for(_wait(d), 10)


async def _wait(d: Deferred[None]) -> None:
    await d


@asynccontextmanager
async def serving(reactor: Reactor, *messages: bytes, **kwargs: Any) -> AsyncIterator[Server]:
    users = MemoryUsers(["alice"])
    for message in messages or (FIRST, SECOND):
        await users.deliver("alice", message)
    portal = Portal(
        Realm(users),
        [InMemoryChecker({"alice": "s3cret"})],
        clock=reactor,
        limiter=LoginLimiter(reactor, base_delay=0),
    )
    kwargs.setdefault("plaintext_without_tls", True)
    factory = IMAP4Factory(portal, clock=reactor, hostname="imap.test", **kwargs)
    ended: list[Deferred[None]] = []
    listener = reactor.listen_tcp(0, lambda _: Tracked(factory, ended), interface="127.0.0.1")
    server = Server(listener.port, users, ended)
    try:
        yield server
    finally:
        await listener.stop_listening()
        await server.all_closed()


async def in_thread(reactor: Reactor, f: Callable[[], Any]) -> Any:
    return await reactor.defer_to_thread(f)


def client(server: Server) -> imaplib.IMAP4:
    return imaplib.IMAP4("127.0.0.1", server.port, timeout=10)


# -- imaplib ----------------------------------------------------------------------------


@BOTH_LOOPS
async def test_imaplib_reads_a_mailbox(reactor: Reactor, loop: str) -> None:
    async with serving(reactor) as server:

        def session() -> dict[str, Any]:
            imap = client(server)
            seen: dict[str, Any] = {"welcome": imap.welcome, "caps": imap.capabilities}
            seen["login"] = imap.login("alice", "s3cret")
            seen["list"] = imap.list()
            seen["select"] = imap.select("INBOX")
            seen["responses"] = {
                name: imap.response(name)[1] for name in ("UIDVALIDITY", "UIDNEXT", "FLAGS")
            }
            seen["fetch"] = imap.fetch("1:*", "(FLAGS BODY.PEEK[] RFC822.SIZE)")
            seen["header"] = imap.fetch("2", "(BODY[HEADER.FIELDS (SUBJECT)])")
            seen["flags_after"] = imap.fetch("2", "(FLAGS)")
            seen["uid_fetch"] = imap.uid("FETCH", "1:*", "(FLAGS)")
            seen["logout"] = imap.logout()
            return seen

        seen = await in_thread(reactor, session)
        await server.all_closed()
        inbox = server.inbox()
    uids = [m.uid for m in inbox.messages()]
    assert seen["welcome"].startswith(b"* OK [CAPABILITY IMAP4rev1 ")
    assert {"IMAP4REV1", "IDLE", "UIDPLUS", "MOVE", "AUTH=PLAIN"} <= set(seen["caps"])
    assert seen["login"][0] == "OK"
    assert seen["list"] == ("OK", [b'(\\HasNoChildren) "." "INBOX"'])
    assert seen["select"] == ("OK", [b"2"])
    assert seen["responses"]["UIDVALIDITY"] == [str(inbox.uidvalidity).encode()]
    assert seen["responses"]["UIDNEXT"] == [str(inbox.uidnext).encode()]
    status, data = seen["fetch"]
    assert status == "OK"
    assert data[0][0] == b"1 (FLAGS (\\Recent) BODY[] {%d}" % len(FIRST)
    assert data[0][1] == FIRST
    assert data[1] == b" RFC822.SIZE %d)" % len(FIRST)
    assert data[3] == b" RFC822.SIZE %d)" % len(SECOND)
    assert seen["header"][1][0][1] == b"Subject: two\r\n\r\n"
    # BODY[...] without PEEK set \Seen, and the FETCH said so.
    assert b"\\Seen" in seen["header"][1][1]
    assert seen["flags_after"][1] == [b"2 (FLAGS (\\Recent \\Seen))"]
    assert seen["uid_fetch"][1] == [
        b"1 (UID %d FLAGS (\\Recent))" % uids[0],
        b"2 (UID %d FLAGS (\\Recent \\Seen))" % uids[1],
    ]
    assert seen["logout"][0] == "BYE"
    assert [m.flags for m in inbox.messages()] == [frozenset(), frozenset({"\\Seen"})]
