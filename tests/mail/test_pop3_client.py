"""The POP3 client: against torsion's own server on both loops, and against dovecot."""

from __future__ import annotations

import os
import poplib
import ssl
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme

from _servers import (
    BOTH_LOOPS,
    StoreRealm,
    alice_maildir,
    alice_portal,
    dovecot_daemon,
    dovecot_ids,
    free_port,
)
from torsion.cred import (
    InMemoryChecker,
    Portal,
    UnauthorizedLogin,
    UsernamePassword,
)
from torsion.internet import Reactor
from torsion.mail import MemoryUsers
from torsion.mail.pop3 import (
    LoginMethod,
    POP3Client,
    POP3Factory,
    POP3ReplyError,
    connect_pop3,
)
from torsion.testing import Clock, require_peer

pytestmark = pytest.mark.integration

FIRST = b"From: a@x.test\r\nSubject: one\r\n\r\nline 1\r\n.dotted\r\nline 3\r\n"
SECOND = b"From: b@x.test\r\nSubject: two\r\n\r\nhello\r\n"


@asynccontextmanager
async def serving(reactor: Reactor, **kwargs: Any) -> AsyncIterator[tuple[int, MemoryUsers]]:
    users = MemoryUsers(["alice"])
    for message in (FIRST, SECOND):
        await users.deliver("alice", message)
    portal = alice_portal(reactor, StoreRealm(users))
    factory = POP3Factory(portal, clock=reactor, hostname="pop.test", **kwargs)
    listener = reactor.listen_tcp(0, factory, interface="127.0.0.1")
    try:
        yield listener.port, users
    finally:
        await listener.stop_listening()


@BOTH_LOOPS
@pytest.mark.parametrize("method", ["auto", "user", "apop", "plain", "login", "cram-md5"])
async def test_client_against_torsion(reactor: Reactor, loop: str, method: LoginMethod) -> None:
    async with serving(reactor, plaintext_without_tls=True) as (port, users):
        client = await connect_pop3(reactor, "127.0.0.1", port)
        assert client.apop_timestamp is not None
        assert (await client.login("alice", "s3cret", method=method)).startswith("maildrop has 2")
        assert await client.stat() == (2, len(FIRST) + len(SECOND))
        assert await client.list() == {1: len(FIRST), 2: len(SECOND)}
        uids = await client.uidl()
        assert sorted(uids) == [1, 2]
        assert len(set(uids.values())) == 2
        assert await client.retrieve(1) == FIRST
        pieces: list[bytes] = []
        assert await client.retrieve(2, pieces.append) == b""
        assert b"".join(pieces) == SECOND
        assert await client.top(1, 1) == b"From: a@x.test\r\nSubject: one\r\n\r\nline 1\r\n"
        await client.delete(1)
        with pytest.raises(POP3ReplyError, match="already deleted"):
            await client.retrieve(1)
        await client.reset()
        await client.delete(2)
        await client.noop()
        assert (await client.quit()).startswith("bye")
    remaining = users.store("alice").mailbox("INBOX").messages()
    assert [m.size for m in remaining] == [len(FIRST)]


@BOTH_LOOPS
async def test_client_errors_and_stls(reactor: Reactor, loop: str, ca: trustme.CA) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    async with serving(reactor, tls=server_context) as (port, _):
        client = await connect_pop3(reactor, "127.0.0.1", port)
        capabilities = await client.capabilities()
        assert "STLS" in capabilities
        assert "USER" not in capabilities
        with pytest.raises(POP3ReplyError) as refused:
            await client.login("alice", "s3cret", method="user")
        assert refused.value.code == "AUTH"
        await client.starttls(client_context, server_hostname="127.0.0.1")
        capabilities = await client.capabilities()
        assert "USER" in capabilities
        with pytest.raises(POP3ReplyError) as wrong:
            await client.login("alice", "wrong", method="plain")
        assert wrong.value.code == "AUTH"
        await client.login("alice", "s3cret", method="plain")
        second = await connect_pop3(reactor, "127.0.0.1", port)
        with pytest.raises(POP3ReplyError) as locked:
            await second.login("alice", "s3cret", method="cram-md5")
        assert locked.value.code == "IN-USE"
        await second.quit()
        await client.quit()
        with pytest.raises(ConnectionResetError):
            await client.noop()


# -- dovecot --------------------------------------------------------------------------

_DOVECOT_CONF = """\
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
protocols = pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login cram-md5
auth_failure_delay = 0
first_valid_uid = 1
mail_location = maildir:{dir}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={dir}/home/%u
}}
service pop3-login {{
  chroot =
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""


@contextmanager
def running_dovecot(messages: list[bytes]) -> Iterator[tuple[int, Path]]:
    """Run dovecot's POP3 server for alice (password s3cret) on 127.0.0.1; yield its port.

    It is waited for by connecting (each refused try waits on the process
    itself for up to 0.05 s), and stopped by its PID.
    """
    program = require_peer("dovecot", package="dovecot-pop3d")
    # The mail user must be able to reach the Maildir: a directory of its
    # own, traversable, owned by the user dovecot runs mail processes as.
    uid, gid = dovecot_ids()
    with tempfile.TemporaryDirectory(prefix="torsion-dovecot-") as name:
        directory = Path(name)
        directory.chmod(0o755)
        maildir = alice_maildir(directory, messages)
        for path in [directory / "mail", *(directory / "mail").rglob("*")]:
            os.chown(path, uid, gid)
        (directory / "passwd").write_text("alice:{PLAIN}s3cret\n")
        port = free_port()
        conf = directory / "dovecot.conf"
        conf.write_text(_DOVECOT_CONF.format(dir=directory, port=port, uid=uid, gid=gid))
        with dovecot_daemon(program, conf, directory, port):
            yield port, maildir


@BOTH_LOOPS
async def test_client_against_dovecot(reactor: Reactor, loop: str) -> None:
    big = b"Subject: big\r\n\r\n" + b"".join(
        b".%06d padding padding\r\n" % i for i in range(20_000)
    )
    with running_dovecot([FIRST, SECOND, big]) as (port, maildir):
        methods: list[LoginMethod] = ["user", "plain", "login", "cram-md5"]
        for method in methods:
            client: POP3Client = await connect_pop3(reactor, "127.0.0.1", port)
            await client.login("alice", "s3cret", method=method)
            assert (await client.stat())[0] == 3
            await client.quit()
        client = await connect_pop3(reactor, "127.0.0.1", port)
        await client.login("alice", "s3cret")
        count, size = await client.stat()
        assert count == 3
        assert size == len(FIRST) + len(SECOND) + len(big)
        sizes = await client.list()
        assert sorted(sizes.values()) == sorted([len(FIRST), len(SECOND), len(big)])
        by_size = {v: k for k, v in sizes.items()}
        assert await client.retrieve(by_size[len(FIRST)]) == FIRST
        pieces: list[bytes] = []
        await client.retrieve(by_size[len(big)], pieces.append)
        assert b"".join(pieces) == big
        assert len(pieces) > 1  # it came in pieces, as it arrived
        assert (
            await client.top(by_size[len(SECOND)], 0) == b"From: b@x.test\r\nSubject: two\r\n\r\n"
        )
        assert len(await client.uidl()) == 3
        await client.delete(by_size[len(SECOND)])
        with pytest.raises(POP3ReplyError):
            await client.retrieve(99)
        await client.quit()
        # Last: dovecot slows the next logins from an address that failed.
        client = await connect_pop3(reactor, "127.0.0.1", port)
        with pytest.raises(POP3ReplyError) as refused:
            await client.login("alice", "wrong", method="cram-md5")
        assert refused.value.code == "AUTH"
        await client.quit()
        left = sorted(p.stat().st_size for p in maildir.glob("*/*") if p.is_file())
    assert left == sorted([len(FIRST), len(big)])


class PasswordsOnly:
    """A checker holding only hashes: it cannot take APOP or CRAM-MD5."""

    credential_types = (UsernamePassword,)

    def request_avatar_id(self, credentials: Any, client: Any) -> Any:
        raise UnauthorizedLogin("no")


def test_only_what_the_checkers_take_is_offered() -> None:
    clock = Clock()
    users = MemoryUsers(["alice"])
    both = POP3Factory(
        Portal(StoreRealm(users), [InMemoryChecker({})], clock=clock), clock=clock, hostname="p"
    )
    assert both.apop
    assert both.auth_mechanisms == ("CRAM-MD5", "PLAIN", "LOGIN")
    hashes = POP3Factory(
        Portal(StoreRealm(users), [PasswordsOnly()], clock=clock), clock=clock, hostname="p"
    )
    assert not hashes.apop
    assert hashes.auth_mechanisms == ("PLAIN", "LOGIN")


@BOTH_LOOPS
async def test_implicit_tls_with_poplib_and_the_client(
    reactor: Reactor, loop: str, ca: trustme.CA
) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    users = MemoryUsers(["alice"])
    await users.deliver("alice", FIRST)
    portal = Portal(StoreRealm(users), [InMemoryChecker({"alice": "s3cret"})], clock=reactor)
    factory = POP3Factory(portal, clock=reactor, hostname="pop.test")
    listener = reactor.listen_tls(0, factory, server_context, interface="127.0.0.1")
    try:
        client = await connect_pop3(reactor, "127.0.0.1", listener.port, tls=client_context)
        capabilities = await client.capabilities()
        # Already TLS: USER offered, STLS not.
        assert "USER" in capabilities
        assert "STLS" not in capabilities
        await client.login("alice", "s3cret", method="user")
        assert await client.retrieve(1) == FIRST
        await client.quit()

        def with_poplib() -> tuple[int, int]:
            pop = poplib.POP3_SSL("127.0.0.1", listener.port, context=client_context, timeout=10)
            pop.user("alice")
            pop.pass_("s3cret")
            stat = pop.stat()
            pop.quit()
            return stat

        assert await reactor.defer_to_thread(with_poplib) == (1, len(FIRST))
    finally:
        await listener.stop_listening()
