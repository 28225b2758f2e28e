"""The POP3 server on 127.0.0.1, both loops, with clients nobody here wrote.

Python's poplib (USER/PASS, APOP, STLS against trustme certificates, CAPA,
LIST, UIDL, TOP, RETR of a large message, DELE at QUIT and not on a lost
connection, the maildrop lock), curl's pop3 support, and raw sockets for
what no well-behaved client sends.
"""

from __future__ import annotations

import getpass
import logging
import os
import poplib
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from _servers import BOTH_LOOPS, Connections, StoreRealm, alice_portal, curl, in_thread, listening
from torsion.internet import Reactor
from torsion.mail import MemoryUsers
from torsion.mail.pop3 import POP3Factory, POP3Limits, POP3Server
from torsion.testing import require_peer

pytestmark = pytest.mark.integration

FIRST = b"From: a@x.test\r\nSubject: one\r\n\r\nline 1\r\n.dotted\r\nline 3\r\n"
SECOND = b"From: b@x.test\r\nSubject: two\r\n\r\nhello\r\n"


class Server(Connections):
    def __init__(self, users: MemoryUsers) -> None:
        super().__init__()
        self.users = users
        self.port = 0

    def inbox_uids(self) -> list[int]:
        return [m.uid for m in self.users.store("alice").mailbox("INBOX").messages()]


@asynccontextmanager
async def serving(reactor: Reactor, *messages: bytes, **kwargs: Any) -> AsyncIterator[Server]:
    users = MemoryUsers(["alice"])
    for message in messages or (FIRST, SECOND):
        await users.deliver("alice", message)
    portal = alice_portal(reactor, StoreRealm(users))
    kwargs.setdefault("plaintext_without_tls", True)
    factory = POP3Factory(portal, clock=reactor, hostname="pop.test", **kwargs)
    server = Server(users)
    async with listening(reactor, POP3Server, factory, server) as server.port:
        yield server


# -- poplib ---------------------------------------------------------------------------


@BOTH_LOOPS
async def test_poplib_session_deletes_at_quit(reactor: Reactor, loop: str) -> None:
    async with serving(reactor) as server:
        before = server.inbox_uids()

        def session() -> dict[str, Any]:
            pop = poplib.POP3("127.0.0.1", server.port, timeout=10)
            seen: dict[str, Any] = {"welcome": pop.getwelcome(), "capa": pop.capa()}
            pop.user("alice")
            pop.pass_("s3cret")
            seen["stat"] = pop.stat()
            seen["list"] = pop.list()[1]
            seen["uidl"] = pop.uidl()[1]
            seen["top"] = pop.top(1, 1)[1]
            seen["retr"] = pop.retr(1)[1]
            seen["dele"] = pop.dele(1)
            seen["stat_after"] = pop.stat()
            seen["quit"] = pop.quit()
            return seen

        seen = await in_thread(reactor, session)
        await server.all_closed()
        after = server.inbox_uids()
    assert seen["welcome"].startswith(b"+OK POP3 server ready <")
    assert {"TOP", "UIDL", "USER", "RESP-CODES", "PIPELINING"} <= set(seen["capa"])
    assert seen["capa"]["SASL"] == ["CRAM-MD5", "PLAIN", "LOGIN"]
    assert seen["stat"] == (2, len(FIRST) + len(SECOND))
    assert seen["list"] == [f"1 {len(FIRST)}".encode(), f"2 {len(SECOND)}".encode()]
    uidvalidity = server.users.store("alice").mailbox("INBOX").uidvalidity
    assert seen["uidl"] == [f"{n} {uidvalidity}.{uid}".encode() for n, uid in enumerate(before, 1)]
    assert seen["top"] == [b"From: a@x.test", b"Subject: one", b"", b"line 1"]
    # poplib unstuffs the leading dot itself.
    assert seen["retr"] == FIRST.rstrip(b"\r\n").split(b"\r\n")
    assert seen["stat_after"] == (1, len(SECOND))
    assert seen["quit"].startswith(b"+OK")
    assert after == before[1:]


@BOTH_LOOPS
async def test_poplib_lost_connection_deletes_nothing_and_unlocks(
    reactor: Reactor, loop: str
) -> None:
    async with serving(reactor) as server:
        before = server.inbox_uids()

        def sessions() -> str:
            first = poplib.POP3("127.0.0.1", server.port, timeout=10)
            first.user("alice")
            first.pass_("s3cret")
            first.dele(1)
            second = poplib.POP3("127.0.0.1", server.port, timeout=10)
            second.user("alice")
            try:
                second.pass_("s3cret")
            except poplib.error_proto as exc:
                locked = str(exc)
            else:  # pragma: no cover - the test fails below
                locked = "logged in"
            second.quit()
            # Vanish without QUIT: DELE must not be carried out.
            first.sock.close()
            first.file.close()
            return locked

        locked = await in_thread(reactor, sessions)
        await server.all_closed()
        assert server.inbox_uids() == before

        def again() -> tuple[int, int]:
            pop = poplib.POP3("127.0.0.1", server.port, timeout=10)
            pop.user("alice")
            pop.pass_("s3cret")
            stat = pop.stat()
            pop.quit()
            return stat

        stat = await in_thread(reactor, again)
    assert "[IN-USE]" in locked
    assert stat[0] == 2


@BOTH_LOOPS
async def test_poplib_apop_and_wrong_password(reactor: Reactor, loop: str) -> None:
    async with serving(reactor) as server:

        def session() -> tuple[str, bytes]:
            pop = poplib.POP3("127.0.0.1", server.port, timeout=10)
            pop.user("alice")
            try:
                pop.pass_("wrong")
            except poplib.error_proto as exc:
                refused = str(exc)
            else:  # pragma: no cover - the test fails below
                refused = "accepted"
            reply = pop.apop("alice", "s3cret")
            pop.quit()
            return refused, reply

        refused, reply = await in_thread(reactor, session)
    assert "-ERR [AUTH]" in refused
    assert reply.startswith(b"+OK maildrop has 2 messages")


@BOTH_LOOPS
async def test_poplib_stls_then_user(
    reactor: Reactor,
    loop: str,
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    async with serving(reactor, tls=server_context, plaintext_without_tls=False) as server:

        def session() -> tuple[dict[str, Any], str, dict[str, Any], tuple[int, int]]:
            pop = poplib.POP3("127.0.0.1", server.port, timeout=10)
            before = pop.capa()
            try:
                pop.user("alice")
            except poplib.error_proto as exc:
                refused = str(exc)
            else:  # pragma: no cover - the test fails below
                refused = "accepted"
            plain_file = pop.file
            pop.stls(context=client_context)
            # poplib forgets the reader of the plain socket; close it here.
            plain_file.close()
            after = pop.capa()
            pop.user("alice")
            pop.pass_("s3cret")
            stat = pop.stat()
            pop.quit()
            return before, refused, after, stat

        before, refused, after, stat = await in_thread(reactor, session)
    assert "STLS" in before
    assert "USER" not in before
    assert before["SASL"] == ["CRAM-MD5"]
    assert "TLS" in refused
    assert "STLS" not in after
    assert "USER" in after
    assert after["SASL"] == ["CRAM-MD5", "PLAIN", "LOGIN"]
    assert stat[0] == 2


def _plain_after_upgrade(port: int, command: bytes) -> list[bytes]:
    """Greeting, ``command`` (STLS), then plain text where the TLS handshake belongs.

    Returns the lines the server sent before it closed the connection.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        received = b""
        while received.count(b"\r\n") < 1:
            received += sock.recv(65536)
        sock.sendall(command)
        while received.count(b"\r\n") < 2:
            received += sock.recv(65536)
        sock.sendall(b"USER alice\r\n" * 100)
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    return received.split(b"\r\n")


@BOTH_LOOPS
async def test_a_failed_stls_handshake_closes_the_connection_quietly(
    reactor: Reactor,
    loop: str,
    server_context: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with serving(reactor, tls=server_context) as server:
        # Leaving the context waits for the server's side of the connection to end.
        lines = await in_thread(reactor, lambda: _plain_after_upgrade(server.port, b"STLS\r\n"))
    assert lines[0].startswith(b"+OK POP3 server ready")
    assert lines[1] == b"+OK Begin TLS negotiation"
    # Whatever the client sent in clear was never read as commands.
    assert lines[2:] == [b""]
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


@BOTH_LOOPS
async def test_poplib_large_message_streamed(reactor: Reactor, loop: str) -> None:
    body = b"".join(b".%07d and some text to make the line longer\r\n" % i for i in range(60_000))
    big = b"Subject: big\r\n\r\n" + body
    async with serving(reactor, big) as server:

        def session() -> list[bytes]:
            pop = poplib.POP3("127.0.0.1", server.port, timeout=10)
            pop.user("alice")
            pop.pass_("s3cret")
            lines = pop.retr(1)[1]
            pop.quit()
            return lines

        lines = await in_thread(reactor, session)
    assert len(big) > 2_000_000
    assert b"\r\n".join(lines) + b"\r\n" == big


# -- raw sockets ----------------------------------------------------------------------


def _exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@BOTH_LOOPS
async def test_pipelined_session_and_long_line(reactor: Reactor, loop: str) -> None:
    async with serving(reactor) as server:
        pipelined = b"USER alice\r\nPASS s3cret\r\nSTAT\r\nRETR 2\r\nDELE 2\r\nLIST 2\r\nQUIT\r\n"
        reply = await in_thread(reactor, lambda: _exchange(server.port, pipelined))
        long_line = await in_thread(
            reactor, lambda: _exchange(server.port, b"USER " + b"a" * 300 + b"\r\nQUIT\r\n")
        )
        await server.all_closed()
        remaining = server.inbox_uids()
    lines = reply.split(b"\r\n")
    assert lines[0].startswith(b"+OK POP3 server ready")
    assert lines[1] == b"+OK send PASS"
    assert lines[2] == b"+OK maildrop has 2 messages (%d octets)" % (len(FIRST) + len(SECOND))
    assert lines[3] == b"+OK 2 %d" % (len(FIRST) + len(SECOND))
    assert lines[4] == b"+OK message follows"
    assert b"\r\n".join(lines[5:10]) == SECOND.rstrip(b"\r\n") + b"\r\n."
    assert lines[10] == b"+OK message 2 deleted"
    assert lines[11] == b"-ERR message already deleted"
    assert lines[12] == b"+OK bye"
    assert len(remaining) == 1
    assert long_line.split(b"\r\n")[1:3] == [b"-ERR line too long", b"+OK bye"]


# -- curl -----------------------------------------------------------------------------


def _curl(*args: str) -> str:
    return curl(*args).decode()


@BOTH_LOOPS
async def test_curl_list_retr_top(reactor: Reactor, loop: str) -> None:
    require_peer("curl", package="curl")
    async with serving(reactor) as server:
        base = f"pop3://127.0.0.1:{server.port}"
        listing = await in_thread(reactor, lambda: _curl(base + "/", "-u", "alice:s3cret"))
        message = await in_thread(reactor, lambda: _curl(base + "/1", "-u", "alice:s3cret"))
        top = await in_thread(
            reactor, lambda: _curl(base + "/", "-u", "alice:s3cret", "-X", "TOP 2 0")
        )
        await server.all_closed()
    assert listing == f"1 {len(FIRST)}\r\n2 {len(SECOND)}\r\n"
    assert message.encode() == FIRST
    assert top.encode() == b"From: b@x.test\r\nSubject: two\r\n\r\n"


@BOTH_LOOPS
async def test_idle_timeout_and_limits(reactor: Reactor, loop: str) -> None:
    with pytest.raises(ValueError, match="255"):
        POP3Limits(max_command_line=100)
    async with serving(reactor, limits=POP3Limits(idle_timeout=0.05)) as server:

        def silent() -> bytes:
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            return b"".join(chunks)

        reply = await in_thread(reactor, silent)
    assert reply.split(b"\r\n")[1] == b"-ERR [SYS/TEMP] autologout: idle for too long"


# -- fetchmail ------------------------------------------------------------------------

_FETCHMAILRC = """\
set no bouncemail
poll 127.0.0.1 service {port} protocol POP3 auth password uidl
  user "alice" there with password "s3cret" is "{local}" here
  sslproto '' no sslcertck
  mda "/bin/sh -c 'cat >> {mbox}'"
"""


@BOTH_LOOPS
async def test_fetchmail_pulls_and_deletes(reactor: Reactor, loop: str, tmp_path: Path) -> None:
    program = require_peer("fetchmail", package="fetchmail")
    async with serving(reactor) as server:
        mbox = tmp_path / "mbox"
        rc = tmp_path / "fetchmailrc"
        rc.write_text(_FETCHMAILRC.format(port=server.port, local=getpass.getuser(), mbox=mbox))
        rc.chmod(0o600)

        def fetch() -> subprocess.CompletedProcess[bytes]:
            return subprocess.run(
                [
                    program,
                    "--fetchmailrc",
                    str(rc),
                    "--idfile",
                    str(tmp_path / "ids"),
                    "--pidfile",
                    str(tmp_path / "pid"),
                    "--nosyslog",
                    "--nodetach",
                    "-v",
                ],
                capture_output=True,
                timeout=30,
                env={**os.environ, "HOME": str(tmp_path), "FETCHMAILHOME": str(tmp_path)},
            )

        done = await in_thread(reactor, fetch)
        await server.all_closed()
        remaining = server.inbox_uids()
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    pulled = mbox.read_bytes().replace(b"\r\n", b"\n")
    assert FIRST.replace(b"\r\n", b"\n") in pulled
    assert SECOND.replace(b"\r\n", b"\n") in pulled
    assert remaining == []
