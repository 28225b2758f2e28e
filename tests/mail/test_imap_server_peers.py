"""The IMAP server on 127.0.0.1, both loops, with clients nobody here wrote.

Python's imaplib (every command the server has, STARTTLS against trustme
certificates), curl's imap support, and raw sockets for IDLE and for two
sessions watching one mailbox.
"""

from __future__ import annotations

import imaplib
import logging
import socket
import ssl
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme

from _servers import BOTH_LOOPS, Connections, StoreRealm, alice_portal, curl, in_thread, listening
from torsion.internet import Reactor
from torsion.mail import MaildirUsers, MailUsers, MemoryUsers
from torsion.mail.imap import IMAP4Factory, IMAP4Server
from torsion.testing import require_peer

pytestmark = pytest.mark.integration

FIRST = b"From: a@x.test\r\nTo: alice@x.test\r\nSubject: one\r\n\r\nline 1\r\nline 2\r\n"
THIRD = b"Subject: 3\r\n\r\nthree\r\n"
SECOND = b"From: b@x.test\r\nSubject: two\r\n\r\nhello there\r\n"


class Server(Connections):
    def __init__(self, users: MailUsers) -> None:
        super().__init__()
        self.users = users
        self.port = 0

    def inbox(self) -> Any:
        return self.users.store("alice").mailbox("INBOX")


@asynccontextmanager
async def serving(
    reactor: Reactor,
    *messages: bytes,
    users: MailUsers | None = None,
    implicit_tls: ssl.SSLContext | None = None,
    **kwargs: Any,
) -> AsyncIterator[Server]:
    if users is None:
        users = MemoryUsers(["alice"])
    for message in messages or (FIRST, SECOND):
        await users.deliver("alice", message)
    portal = alice_portal(reactor, StoreRealm(users))
    kwargs.setdefault("plaintext_without_tls", True)
    factory = IMAP4Factory(portal, clock=reactor, hostname="imap.test", **kwargs)
    server = Server(users)
    async with listening(reactor, IMAP4Server, factory, server, tls=implicit_tls) as server.port:
        yield server


def client(server: Server) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", server.port, timeout=10)
    return imap


def refused(call: Callable[[], Any]) -> str:
    """Return the error imaplib raises for a BAD reply."""
    try:
        call()
    except imaplib.IMAP4.error as exc:
        return str(exc)
    raise AssertionError("no BAD reply")


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


@BOTH_LOOPS
async def test_imaplib_manages_mailboxes(reactor: Reactor, loop: str) -> None:
    async with serving(reactor) as server:

        def session() -> dict[str, Any]:
            imap = client(server)
            imap.login("alice", "s3cret")
            seen: dict[str, Any] = {}
            seen["create"] = imap.create("Archive.2024")
            seen["create_again"] = imap.create("Archive.2024")
            seen["create_trailing"] = imap.create("Work.")
            seen["list"] = imap.list()
            seen["list_top"] = imap.list('""', "%")
            seen["list_inbox_any_case"] = imap.list('""', "inbox")
            seen["list_root"] = imap.list('""', '""')
            seen["rename"] = imap.rename("Work", "Jobs")
            seen["rename_missing"] = imap.rename("Nope", "Other")
            seen["subscribe"] = imap.subscribe("Jobs")
            seen["lsub"] = imap.lsub()
            seen["unsubscribe"] = imap.unsubscribe("Jobs")
            seen["lsub_after"] = imap.lsub()
            seen["delete"] = imap.delete("Jobs")
            seen["delete_missing"] = imap.delete("Jobs")
            seen["delete_inbox"] = imap.delete("INBOX")
            seen["status"] = imap.status("INBOX", "(MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)")
            seen["status_missing"] = imap.status("Nope", "(MESSAGES)")
            seen["namespace"] = imap.namespace()
            seen["enable"] = imap._simple_command("ENABLE", "CONDSTORE")
            seen["enabled"] = imap.response("ENABLED")
            seen["noop"] = imap.noop()
            seen["select_missing"] = imap.select("Nope")
            seen["state"] = imap.state
            imap.logout()
            return seen

        seen = await in_thread(reactor, session)
        inbox = server.inbox()
        names = server.users.store("alice").list_mailboxes()
    assert seen["create"] == ("OK", [b"CREATE completed"])
    assert seen["create_again"] == ("NO", [b"[ALREADYEXISTS] mailbox exists"])
    assert seen["create_trailing"][0] == "OK"
    assert seen["list"] == (
        "OK",
        [
            b'(\\HasChildren) "." "Archive"',
            b'(\\HasNoChildren) "." "Archive.2024"',
            b'(\\HasNoChildren) "." "INBOX"',
            b'(\\HasNoChildren) "." "Work"',
        ],
    )
    assert seen["list_top"][1] == [
        b'(\\HasChildren) "." "Archive"',
        b'(\\HasNoChildren) "." "INBOX"',
        b'(\\HasNoChildren) "." "Work"',
    ]
    assert seen["list_inbox_any_case"][1] == [b'(\\HasNoChildren) "." "INBOX"']
    assert seen["list_root"][1] == [b'(\\Noselect) "." ""']
    assert seen["rename"][0] == "OK"
    assert seen["rename_missing"] == ("NO", [b"[NONEXISTENT] no such mailbox"])
    assert seen["subscribe"][0] == "OK"
    assert seen["lsub"] == ("OK", [b'(\\HasNoChildren) "." "Jobs"'])
    assert seen["unsubscribe"][0] == "OK"
    assert seen["lsub_after"] == ("OK", [None])
    assert seen["delete"][0] == "OK"
    assert seen["delete_missing"][0] == "NO"
    assert seen["delete_inbox"][0] == "NO"
    assert names == ["Archive", "Archive.2024", "INBOX"]
    assert seen["status"] == (
        "OK",
        [
            b'"INBOX" (MESSAGES 2 RECENT 2 UIDNEXT %d UIDVALIDITY %d UNSEEN 2)'
            % (inbox.uidnext, inbox.uidvalidity)
        ],
    )
    assert seen["status_missing"][0] == "NO"
    assert seen["namespace"] == ("OK", [b'(("" ".")) NIL NIL'])
    assert seen["enable"][0] == "OK"
    assert seen["noop"][0] == "OK"
    assert seen["select_missing"][0] == "NO"
    assert seen["state"] == "AUTH"


@BOTH_LOOPS
async def test_imaplib_changes_messages(reactor: Reactor, loop: str) -> None:
    async with serving(reactor) as server:
        inbox = server.inbox()
        uid1, uid2 = (m.uid for m in inbox.messages())

        def session() -> dict[str, Any]:
            imap = client(server)
            imap.login("alice", "s3cret")
            seen: dict[str, Any] = {}
            imap.create("Kept")
            seen["append"] = imap.append(
                "INBOX",
                "(\\Flagged)",
                imaplib.Time2Internaldate(1_700_000_000),
                b"Subject: 3\r\n\r\nthree\r\n",
            )
            seen["append_missing"] = imap.append("Nope", None, None, b"x\r\n")
            seen["select"] = imap.select("INBOX")
            seen["search"] = imap.search(None, "FLAGGED")
            seen["search_text"] = imap.search(None, "BODY", "hello")
            seen["uid_search"] = imap.uid("SEARCH", "SUBJECT", "one")
            seen["search_charset"] = imap.search("KOI8-R", "ALL")
            seen["store"] = imap.store("1", "+FLAGS", "(\\Deleted)")
            seen["store_silent"] = imap.store("2", "+FLAGS.SILENT", "(\\Answered)")
            seen["uid_store"] = imap.uid("STORE", str(uid2), "FLAGS", "(\\Seen kw)")
            seen["store_bad"] = refused(lambda: imap.store("2", "+FLAGS", "(\\Bogus)"))
            seen["copy"] = imap.copy("2", "Kept")
            seen["copy_missing"] = imap.copy("2", "Nope")
            seen["check"] = imap.check()
            seen["expunge"] = imap.expunge()
            seen["exists_after"] = imap.fetch("1:*", "(UID)")
            seen["move"] = imap._simple_command("MOVE", "1", "Kept")
            seen["move_untagged"] = imap.untagged_responses.pop("OK", None)
            seen["after_move"] = imap.fetch("1:*", "(UID)")
            imap.store("1", "+FLAGS", "(\\Deleted)")
            seen["uid_expunge"] = imap.uid("EXPUNGE", "1:*")
            seen["unselect"] = imap._simple_command("UNSELECT")
            seen["examine"] = imap.select("Kept", readonly=True)
            seen["store_read_only"] = imap.store("1", "+FLAGS", "(\\Deleted)")
            seen["fetch_read_only"] = imap.fetch("1", "(BODY[TEXT])")
            seen["close"] = imap.close()
            seen["state"] = imap.state
            imap.logout()
            return seen

        seen = await in_thread(reactor, session)
        kept = server.users.store("alice").mailbox("Kept")
        kept_messages = kept.messages()
        inbox_messages = inbox.messages()
    assert seen["append"][0] == "OK"
    assert seen["append"][1][0].startswith(b"[APPENDUID %d " % inbox.uidvalidity)
    assert seen["append_missing"][0] == "NO"
    assert b"TRYCREATE" in seen["append_missing"][1][0]
    assert seen["select"] == ("OK", [b"3"])
    assert seen["search"] == ("OK", [b"3"])
    assert seen["search_text"] == ("OK", [b"2"])
    assert seen["uid_search"] == ("OK", [str(uid1).encode()])
    assert seen["search_charset"][0] == "NO"
    assert seen["store"] == ("OK", [b"1 (FLAGS (\\Deleted \\Recent))"])
    assert seen["store_silent"] == ("OK", [None])
    assert seen["uid_store"] == ("OK", [b"2 (FLAGS (\\Recent \\Seen kw) UID %d)" % uid2])
    assert "not a settable system flag" in seen["store_bad"]
    assert seen["copy"][0] == "OK"
    assert seen["copy"][1][0].startswith(b"[COPYUID %d %d " % (kept.uidvalidity, uid2))
    assert seen["copy_missing"][0] == "NO"
    assert seen["check"][0] == "OK"
    assert seen["expunge"] == ("OK", [b"1"])
    # The APPENDed message is now 2, the kept one 1.
    assert seen["exists_after"][1] == [b"1 (UID %d)" % uid2, b"2 (UID %d)" % (uid2 + 1)]
    assert seen["move"][0] == "OK"
    assert seen["move_untagged"] is not None
    assert seen["move_untagged"][0].startswith(b"[COPYUID %d %d " % (kept.uidvalidity, uid2))
    assert seen["after_move"][1] == [b"1 (UID %d)" % (uid2 + 1)]
    assert seen["uid_expunge"][0] == "OK"  # imaplib returns FETCH data for UID commands
    assert seen["unselect"][0] == "OK"
    assert seen["examine"] == ("OK", [b"2"])
    assert seen["store_read_only"][0] == "NO"
    assert seen["fetch_read_only"][0] == "OK"
    assert seen["close"][0] == "OK"
    assert seen["state"] == "AUTH"
    # EXPUNGE, MOVE and UID EXPUNGE emptied it.
    assert list(inbox_messages) == []
    assert [m.flags for m in kept_messages] == [
        frozenset({"\\Seen", "kw"}),
        frozenset({"\\Seen", "kw"}),
    ]


class LineReader:
    """A blocking client socket read line by line (for what imaplib cannot do)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buffer = b""

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(self.buffer)
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def until(self, prefix: bytes) -> list[bytes]:
        """Read lines up to and including the one starting with ``prefix``."""
        lines = [self.line()]
        while not lines[-1].startswith(prefix):
            lines.append(self.line())
        return lines

    def close(self) -> None:
        self.sock.close()


@BOTH_LOOPS
async def test_idle_sees_another_sessions_append_store_and_expunge(
    reactor: Reactor, loop: str
) -> None:
    async with serving(reactor) as server:

        def sessions() -> dict[str, Any]:
            watcher = LineReader(server.port)
            seen: dict[str, Any] = {}
            try:
                watcher.until(b"* OK")
                watcher.send(b"a1 LOGIN alice s3cret\r\na2 SELECT INBOX\r\na3 IDLE\r\n")
                watcher.until(b"a2 OK")
                seen["idling"] = watcher.line()
                other = client(server)
                other.login("alice", "s3cret")
                other.append("INBOX", None, None, THIRD)
                seen["after_append"] = watcher.until(b"* 3 RECENT")
                other.select("INBOX")
                other.store("1", "+FLAGS.SILENT", "(\\Deleted)")
                seen["after_store"] = watcher.line()
                other.expunge()
                seen["after_expunge"] = watcher.line()
                other.logout()
                watcher.send(b"DONE\r\n")
                seen["done"] = watcher.line()
                watcher.send(b"a4 FETCH 1:* (UID)\r\na5 LOGOUT\r\n")
                seen["fetch"] = watcher.until(b"a4 ")
                seen["logout"] = watcher.until(b"a5 ")
            finally:
                watcher.close()
            return seen

        seen = await in_thread(reactor, sessions)
        uids = [m.uid for m in server.inbox().messages()]
    assert seen["idling"] == b"+ idling"
    # The watcher claimed the new message's \Recent: the other session
    # selected the mailbox after the watcher was told of it.
    assert seen["after_append"] == [b"* 3 EXISTS", b"* 3 RECENT"]
    assert seen["after_store"] == b"* 1 FETCH (FLAGS (\\Deleted \\Recent))"
    assert seen["after_expunge"] == b"* 1 EXPUNGE"
    assert seen["done"] == b"a3 OK IDLE terminated"
    fetched = [b"* %d FETCH (UID %d)" % (n, uid) for n, uid in enumerate(uids, 1)]
    assert seen["fetch"] == [*fetched, b"a4 OK FETCH completed"]
    assert seen["logout"] == [b"* BYE logging out", b"a5 OK LOGOUT completed"]


@BOTH_LOOPS
async def test_imaplib_authenticate_mechanisms(reactor: Reactor, loop: str) -> None:
    async with serving(reactor) as server:

        def sessions() -> dict[str, Any]:
            seen: dict[str, Any] = {}
            imap = client(server)
            seen["plain"] = imap.authenticate("PLAIN", lambda _: b"\0alice\0s3cret")
            imap.logout()
            imap = client(server)
            seen["cram"] = imap.login_cram_md5("alice", "s3cret")
            imap.logout()
            imap = client(server)
            answers = iter([b"alice", b"s3cret"])
            seen["login"] = imap.authenticate("LOGIN", lambda _: next(answers))
            imap.logout()
            imap = client(server)
            seen["wrong"] = refused(
                lambda: imap.authenticate("PLAIN", lambda _: b"\0alice\0wrong")
            )
            seen["unknown"] = refused(lambda: imap.authenticate("XOAUTH2", lambda _: b""))
            seen["after"] = imap.login("alice", "s3cret")
            imap.logout()
            return seen

        seen = await in_thread(reactor, sessions)
    assert seen["plain"][0] == "OK"
    assert seen["cram"][0] == "OK"
    assert seen["login"][0] == "OK"
    assert "AUTHENTICATIONFAILED" in seen["wrong"]
    assert "not supported" in seen["unknown"]
    assert seen["after"][0] == "OK"


@BOTH_LOOPS
async def test_imaplib_starttls_before_login(
    reactor: Reactor,
    loop: str,
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    async with serving(reactor, tls=server_context, plaintext_without_tls=False) as server:

        def session() -> dict[str, Any]:
            seen: dict[str, Any] = {}
            imap = client(server)
            seen["caps_before"] = imap.capabilities
            seen["starttls"] = imap.starttls(client_context)
            seen["caps_after"] = imap.capabilities
            seen["login"] = imap.login("alice", "s3cret")
            seen["select"] = imap.select("INBOX")
            sock = imap.sock
            assert isinstance(sock, ssl.SSLSocket)
            seen["cipher"] = sock.cipher()
            imap.logout()
            return seen

        seen = await in_thread(reactor, session)
    assert {"STARTTLS", "LOGINDISABLED"} <= set(seen["caps_before"])
    assert not any(cap.startswith("AUTH=PLAIN") for cap in seen["caps_before"])
    assert seen["starttls"][0] == "OK"
    assert "STARTTLS" not in seen["caps_after"]
    assert "LOGINDISABLED" not in seen["caps_after"]
    assert "AUTH=PLAIN" in seen["caps_after"]
    assert seen["login"][0] == "OK"
    assert seen["select"] == ("OK", [b"2"])
    assert seen["cipher"] is not None


@BOTH_LOOPS
async def test_login_refused_before_tls_and_pipelined_bytes_after_starttls_dropped(
    reactor: Reactor,
    loop: str,
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    async with serving(reactor, tls=server_context, plaintext_without_tls=False) as server:

        def session() -> dict[str, Any]:
            seen: dict[str, Any] = {}
            raw = LineReader(server.port)
            try:
                raw.until(b"* OK")
                raw.send(b"a1 LOGIN alice s3cret\r\n")
                seen["login"] = raw.line()
                # A command pipelined after STARTTLS, in the clear: dropped.
                raw.send(b"a2 STARTTLS\r\na3 LOGIN alice s3cret\r\n")
                seen["starttls"] = raw.line()
                tls = client_context.wrap_socket(raw.sock, server_hostname="localhost")
                tls.sendall(b"a4 CAPABILITY\r\n")
                data = b""
                while b"a4 " not in data:
                    chunk = tls.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                seen["after"] = data
                tls.sendall(b"a5 LOGOUT\r\n")
                while tls.recv(65536):
                    pass
                tls.close()
            finally:
                raw.close()
            return seen

        seen = await in_thread(reactor, session)
    assert seen["login"] == b"a1 NO [PRIVACYREQUIRED] LOGIN refused before STARTTLS"
    assert seen["starttls"] == b"a2 OK begin TLS negotiation now"
    assert b"a3" not in seen["after"]
    assert seen["after"].endswith(b"a4 OK CAPABILITY completed\r\n")


@BOTH_LOOPS
async def test_a_failed_starttls_handshake_closes_the_connection_quietly(
    reactor: Reactor,
    loop: str,
    server_context: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with serving(reactor, tls=server_context) as server:

        def session() -> list[bytes]:
            raw = LineReader(server.port)
            try:
                raw.until(b"* OK")
                raw.send(b"a1 STARTTLS\r\n")
                lines = [raw.line()]
                # Plain text where the client's TLS handshake belongs.
                raw.send(b"a2 LOGIN alice s3cret\r\n" * 100)
                try:
                    while True:
                        lines.append(raw.line())
                except (EOFError, ConnectionResetError):
                    pass
            finally:
                raw.close()
            return lines

        # Leaving the context waits for the server's side of the connection to end.
        lines = await in_thread(reactor, session)
    assert lines == [b"a1 OK begin TLS negotiation now"]
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


# -- curl -------------------------------------------------------------------------------


@BOTH_LOOPS
async def test_curl_fetches_lists_and_appends(reactor: Reactor, loop: str) -> None:
    require_peer("curl", package="curl")
    async with serving(reactor) as server:
        base = f"imap://127.0.0.1:{server.port}"
        user = ("-u", "alice:s3cret")
        fetched = await in_thread(
            reactor, lambda: curl(f"{base}/INBOX", *user, "-X", "FETCH 1 BODY[]")
        )
        by_uid = await in_thread(reactor, lambda: curl(f"{base}/INBOX/;UID=2", *user))
        listing = await in_thread(reactor, lambda: curl(f"{base}/", *user))
        searched = await in_thread(reactor, lambda: curl(f"{base}/INBOX?SUBJECT%20two", *user))
        upload = Path(tempfile.mkdtemp()) / "message.eml"
        try:
            upload.write_bytes(THIRD)
            await in_thread(reactor, lambda: curl(f"{base}/INBOX", *user, "-T", str(upload)))
        finally:
            upload.unlink()
            upload.parent.rmdir()
        await server.all_closed()
        inbox = server.inbox()
        last = inbox.messages()[-1].uid
        stored = await inbox.read(last)
    # curl writes the untagged lines of a custom command, not the literal.
    assert fetched == b"* 1 FETCH (BODY[] {%d}\r\n" % len(FIRST)
    assert by_uid == SECOND
    assert listing == b'* LIST (\\HasNoChildren) "." "INBOX"\r\n'
    assert searched == b"* SEARCH 2\r\n"
    assert len(inbox.messages()) == 3
    assert stored == THIRD


# -- mbsync -----------------------------------------------------------------------------


@BOTH_LOOPS
async def test_mbsync_syncs_both_ways(
    reactor: Reactor, loop: str, tmp_path: Path, ca: trustme.CA
) -> None:
    mbsync = require_peer("mbsync", package="isync")
    # mbsync reads the certificate's common name.
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", common_name="127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    local = tmp_path / "mail"
    local.mkdir()
    config = tmp_path / "mbsyncrc"
    async with serving(reactor, tls=server_context, plaintext_without_tls=False) as server:
        store = server.users.store("alice")
        store.create("Archive")
        await store.mailbox("Archive").append(THIRD, flags=["\\Flagged"])
        config.write_text(
            f"IMAPAccount test\nHost 127.0.0.1\nPort {server.port}\nUser alice\n"
            f"Pass s3cret\nSSLType STARTTLS\nCertificateFile {ca_file}\n\n"
            "IMAPStore remote\nAccount test\n\n"
            f"MaildirStore local\nPath {local}/\nInbox {local}/INBOX\nSubFolders Verbatim\n\n"
            "Channel sync\nFar :remote:\nNear :local:\nPatterns *\nCreate Both\n"
            "Expunge Both\nSyncState *\nSync All\n"
        )

        def run() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [mbsync, "-c", str(config), "-a"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )

        first = await in_thread(reactor, run)
        assert first.returncode == 0, first.stderr
        pulled = sorted(p.name for p in (local / "INBOX" / "cur").iterdir()) + sorted(
            p.name for p in (local / "INBOX" / "new").iterdir()
        )
        archived = list((local / "Archive" / "cur").iterdir()) + list(
            (local / "Archive" / "new").iterdir()
        )
        # A message written locally goes up on the next run.
        (local / "INBOX" / "new" / "1700000000.local.test").write_bytes(
            b"Subject: local\n\nfrom the near side\n"
        )
        second = await in_thread(reactor, run)
        assert second.returncode == 0, second.stderr
        await server.all_closed()
        inbox = server.users.store("alice").mailbox("INBOX")
        contents = [await inbox.read(m.uid) for m in inbox.messages()]
    assert len(pulled) == 2
    assert len(archived) == 1
    # mbsync adds its X-TUID header to what it stores.
    near = archived[0].read_bytes().replace(b"\r\n", b"\n")
    assert near.startswith(b"Subject: 3\n")
    assert near.endswith(b"\n\nthree\n")
    assert "F" in archived[0].name.rpartition(",")[2]
    assert len(contents) == 3
    assert contents[2].startswith(b"Subject: local\r\n")


@BOTH_LOOPS
async def test_maildir_store_served_to_two_sessions(
    reactor: Reactor, loop: str, tmp_path: Path
) -> None:
    users = MaildirUsers(tmp_path, users=["alice"], threads=reactor)
    async with serving(reactor, users=users) as server:

        def sessions() -> dict[str, Any]:
            seen: dict[str, Any] = {}
            watcher = LineReader(server.port)
            try:
                watcher.until(b"* OK")
                watcher.send(b"a1 LOGIN alice s3cret\r\na2 SELECT INBOX\r\na3 IDLE\r\n")
                watcher.until(b"a2 OK")
                seen["idling"] = watcher.line()
                imap = client(server)
                imap.login("alice", "s3cret")
                seen["append"] = imap.append("INBOX", "(\\Seen)", None, THIRD)
                seen["told"] = watcher.until(b"* 3 RECENT")
                imap.select("INBOX")
                seen["fetch"] = imap.fetch("3", "(FLAGS BODY[])")
                imap.create("Old")
                seen["copy"] = imap.copy("1", "Old")
                imap.store("1", "+FLAGS", "(\\Deleted)")
                seen["expunge"] = imap.expunge()
                seen["expunge_told"] = watcher.until(b"* 1 EXPUNGE")
                imap.logout()
                watcher.send(b"DONE\r\na4 LOGOUT\r\n")
                seen["end"] = watcher.until(b"a4 ")
            finally:
                watcher.close()
            return seen

        seen = await in_thread(reactor, sessions)
        store = users.store("alice")
        inbox = store.mailbox("INBOX")
        old = store.mailbox("Old")
        inbox_bodies = [await inbox.read(m.uid) for m in inbox.messages()]
        old_bodies = [await old.read(m.uid) for m in old.messages()]
    assert seen["idling"] == b"+ idling"
    assert seen["append"][0] == "OK"
    assert seen["told"] == [b"* 3 EXISTS", b"* 3 RECENT"]
    assert seen["fetch"][1][0][1] == THIRD
    assert b"\\Seen" in seen["fetch"][1][0][0]
    assert seen["copy"][0] == "OK"
    assert seen["expunge"] == ("OK", [b"1"])
    assert seen["expunge_told"][-1] == b"* 1 EXPUNGE"
    assert seen["end"][-1] == b"a4 OK LOGOUT completed"
    assert inbox_bodies == [SECOND, THIRD]
    assert old_bodies == [FIRST]


@BOTH_LOOPS
async def test_imaplib_over_implicit_tls(
    reactor: Reactor,
    loop: str,
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    async with serving(
        reactor, implicit_tls=server_context, tls=server_context, plaintext_without_tls=False
    ) as server:

        def session() -> dict[str, Any]:
            imap = imaplib.IMAP4_SSL(
                "127.0.0.1", server.port, ssl_context=client_context, timeout=10
            )
            seen: dict[str, Any] = {"caps": imap.capabilities}
            seen["login"] = imap.login("alice", "s3cret")
            seen["fetch"] = imap.select("INBOX") and imap.fetch("2", "(BODY.PEEK[])")
            imap.logout()
            return seen

        seen = await in_thread(reactor, session)
    assert "AUTH=PLAIN" in seen["caps"]
    assert "STARTTLS" not in seen["caps"]
    assert "LOGINDISABLED" not in seen["caps"]
    assert seen["login"][0] == "OK"
    assert seen["fetch"][1][0][1] == SECOND
