"""The IMAP client against dovecot as the real IMAP server, on both loops."""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trustme

from _servers import BOTH_LOOPS, alice_maildir, dovecot_daemon, dovecot_ids, free_port
from torsion.internet import Reactor
from torsion.mail.imap import (
    FlagKey,
    IMAP4Client,
    IMAPReplyError,
    MailboxState,
    TextKey,
    connect_imap,
)
from torsion.testing import require_peer

pytestmark = pytest.mark.integration

FIRST = (
    b"From: Alice Example <alice@x.test>\r\nTo: bob@x.test, carol@y.test\r\n"
    b"Subject: one\r\nMessage-ID: <one@x.test>\r\n\r\nline 1\r\nline 2\r\n"
)
SECOND = b"From: b@x.test\r\nSubject: two\r\n\r\nhello there\r\n"

_DOVECOT_CONF = """\
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
protocols = imap
listen = 127.0.0.1
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
first_valid_uid = 1
mail_location = maildir:{dir}/mail/%u
imap_idle_notify_interval = 1 secs
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={dir}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
}}
service anvil {{
  chroot =
}}
"""


@contextmanager
def running_dovecot(
    messages: list[bytes], ca: trustme.CA | None = None
) -> Iterator[tuple[int, int]]:
    """Run dovecot's IMAP server for alice (password s3cret) on 127.0.0.1.

    Yields its port and, with ``ca``, its IMAPS port (else 0): then it
    offers STARTTLS and IMAPS with a certificate for 127.0.0.1 from ``ca``.

    It is waited for by connecting (each refused try waits on the process
    itself for up to 0.05 s), and stopped by its PID.
    """
    program = require_peer("dovecot", package="dovecot-imapd")
    if not Path("/usr/lib/dovecot/imap").exists():
        require_peer("dovecot-imap-binary", package="dovecot-imapd")
    uid, gid = dovecot_ids()
    with tempfile.TemporaryDirectory(prefix="torsion-dovecot-") as name:
        directory = Path(name)
        directory.chmod(0o755)
        alice_maildir(directory, messages)
        (directory / "home" / "alice").mkdir(parents=True)
        for path in [
            directory / "mail",
            directory / "home",
            *(directory / "mail").rglob("*"),
            *(directory / "home").rglob("*"),
        ]:
            os.chown(path, uid, gid)
        (directory / "passwd").write_text("alice:{PLAIN}s3cret\n")
        port = free_port()
        tls_port = 0
        ssl_settings = "ssl = no"
        if ca is not None:
            tls_port = free_port()
            issued = ca.issue_cert("127.0.0.1")
            issued.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
            issued.private_key_pem.write_to_path(str(directory / "key.pem"))
            ssl_settings = (
                f"ssl = yes\nssl_cert = <{directory}/cert.pem\nssl_key = <{directory}/key.pem"
            )
        conf = directory / "dovecot.conf"
        conf.write_text(
            _DOVECOT_CONF.format(
                dir=directory, port=port, tls_port=tls_port, uid=uid, gid=gid, ssl=ssl_settings
            )
        )
        with dovecot_daemon(program, conf, directory, port):
            yield port, tls_port


def selected(client: IMAP4Client) -> MailboxState | None:
    """The client's view of the selected mailbox."""
    return client.mailbox


def kept(flags: dict[int, tuple[str, ...]]) -> dict[int, set[str]]:
    """The flags a session stored (dovecot adds ``\\Recent`` for this session's new mail)."""
    return {uid: set(names) - {"\\Recent"} for uid, names in flags.items()}


async def logged_in(reactor: Reactor, port: int) -> IMAP4Client:
    client = await connect_imap(reactor, "127.0.0.1", port, reply_timeout=20)
    await client.login("alice", "s3cret")
    return client


@BOTH_LOOPS
async def test_a_session_against_dovecot(reactor: Reactor, loop: str) -> None:
    with running_dovecot([FIRST, SECOND]) as (port, _):
        client = await connect_imap(reactor, "127.0.0.1", port, reply_timeout=20)
        capabilities = await client.capabilities()
        assert "IMAP4rev1" in capabilities
        await client.login("alice", "s3cret")
        assert await client.has_capability("MOVE")

        assert await client.enable("CONDSTORE") == ("CONDSTORE",)
        personal, _, _ = await client.namespace()
        assert personal in (((b"", b"."),), ((b"", b"/"),))
        await client.create("Archive")
        await client.create("Caf\u00e9")
        names = {entry.name: entry for entry in await client.list("", "*")}
        assert set(names) == {"INBOX", "Archive", "Caf\u00e9"}
        assert names["Archive"].delimiter in (".", "/")
        assert all(a.startswith("\\") for a in names["INBOX"].attributes)

        state = await client.select("INBOX")
        assert state.exists == 2
        assert state.uidvalidity is not None
        assert state.uidnext == 3
        assert "\\Seen" in state.flags
        assert not state.read_only
        assert selected(client) == state

        # LITERAL+ (offered by dovecot) and a synchronising literal both append.
        assert client.core.literal_plus
        when = datetime(2026, 11, 25, 1, 2, 3, tzinfo=UTC)
        third = b"Subject: three\r\n\r\n3\r\n"
        assert await client.append("INBOX", third, ["\\Flagged"], when) == 3
        client.core.literal_plus = False
        assert await client.append("Caf\u00e9", SECOND) == 1
        status = await client.status("INBOX")
        assert status["MESSAGES"] == 3
        assert status["UIDNEXT"] == 4
        assert (await client.status("Caf\u00e9"))["MESSAGES"] == 1

        assert await client.search() == [1, 2, 3]
        assert await client.search("FLAGGED") == [3]
        assert await client.search(TextKey(where="header", field_name="Subject", text="two")) == [
            2
        ]
        assert await client.search(FlagKey("\\Flagged", present=False)) == [1, 2]
        assert await client.search("SUBJECT nothing-matches") == []

        fetched = await client.fetch(
            [1, 2, 3], ["FLAGS", "BODY.PEEK[]", "ENVELOPE", "INTERNALDATE"]
        )
        assert sorted(fetched) == [1, 2, 3]
        assert fetched[1].body() == FIRST
        assert fetched[2].body() == SECOND
        assert kept({3: fetched[3].flags or ()}) == {3: {"\\Flagged"}}
        assert fetched[3].items["INTERNALDATE"] == b"25-Nov-2026 01:02:03 +0000"
        envelope = fetched[1].envelope
        assert envelope is not None
        assert envelope.subject == "one"
        assert envelope.message_id == "<one@x.test>"
        assert [a.address for a in envelope.from_] == ["alice@x.test"]
        assert envelope.from_[0].name == "Alice Example"
        assert [a.address for a in envelope.to] == ["bob@x.test", "carol@y.test"]
        header = await client.fetch("2", ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]", "BODYSTRUCTURE"])
        assert header[2].body("HEADER.FIELDS (SUBJECT)") == b"Subject: two\r\n\r\n"
        structure = header[2].items["BODYSTRUCTURE"]
        assert isinstance(structure, tuple)
        assert [v.upper() if isinstance(v, bytes) else v for v in structure[:2]] == [
            b"TEXT",
            b"PLAIN",
        ]

        assert kept(await client.store([1], ["\\Seen", "$Label1"])) == {1: {"\\Seen", "$Label1"}}
        assert kept(await client.store("1", ["$Label1"], action="remove")) == {1: {"\\Seen"}}
        assert kept(await client.store([2], ["\\Answered"], action="set")) == {2: {"\\Answered"}}
        assert await client.search("SEEN") == [1]

        copied = await client.copy([1], "Archive")
        assert copied is not None
        assert copied.name == "COPYUID"
        await client.move([2], "Archive")
        assert await client.search() == [1, 3]
        assert (await client.status("Archive"))["MESSAGES"] == 2

        await client.store([3], ["\\Deleted"])
        assert await client.expunge() == [2]
        assert await client.search() == [1]
        # EXPUNGE responses kept the selected mailbox's count current.
        assert getattr(selected(client), "exists", None) == 1

        with pytest.raises(IMAPReplyError) as missing:
            await client.select("Nope")
        assert missing.value.status == "NO"
        assert selected(client) is None
        with pytest.raises(IMAPReplyError) as bad:
            await client.fetch("1", "NOT-AN-ITEM")
        assert bad.value.status == "BAD"

        examined = await client.select("Archive", readonly=True)
        assert examined.read_only
        assert examined.exists == 2
        archived = await client.fetch("1:*", ["BODY.PEEK[]"])
        assert sorted(m.body() or b"" for m in archived.values()) == sorted([FIRST, SECOND])
        await client.close_mailbox()
        assert selected(client) is None
        assert await client.lsub() == []
        await client.delete("Caf\u00e9")
        assert {entry.name for entry in await client.list()} == {"INBOX", "Archive"}
        await client.logout()
        with pytest.raises(ConnectionResetError):
            await client.noop()
        # Last: dovecot slows the next logins from an address that failed.
        client = await connect_imap(reactor, "127.0.0.1", port, reply_timeout=20)
        with pytest.raises(IMAPReplyError) as refused:
            await client.login("alice", "wrong")
        assert refused.value.status == "NO"
        assert refused.value.code is not None
        assert refused.value.code.name == "AUTHENTICATIONFAILED"
        await client.logout()


@BOTH_LOOPS
async def test_idle_sees_another_connections_append(reactor: Reactor, loop: str) -> None:
    with running_dovecot([FIRST]) as (port, _):
        watcher = await logged_in(reactor, port)
        await watcher.select("INBOX")
        writer = await connect_imap(reactor, "127.0.0.1", port, reply_timeout=20)
        await writer.authenticate_plain("alice", "s3cret")
        async with watcher.idle() as updates:
            await writer.append("INBOX", SECOND)
            async for update in updates:
                if update.name == "EXISTS":
                    assert update.number == 2
                    break
            else:
                pytest.fail("IDLE ended without EXISTS")
        assert watcher.mailbox is not None
        assert watcher.mailbox.exists == 2
        # After DONE the connection takes commands again.
        assert await watcher.search() == [1, 2]

        # A message of megabytes comes back whole through literals read in
        # many pieces; a non-ASCII search goes as a UTF-8 literal.
        big = b"Subject: big\r\n\r\n" + b"".join(b"%07d padding\r\n" % i for i in range(70_000))
        assert await writer.append("INBOX", big) == 3
        cafe = b"Subject: =?utf-8?q?caf=C3=A9?=\r\n\r\nx\r\n"
        assert await writer.append("INBOX", cafe) == 4
        # The watcher learns of them (EXISTS) before it may fetch them.
        await watcher.noop()
        assert getattr(selected(watcher), "exists", None) == 4
        fetched = await watcher.fetch([3], ["RFC822.SIZE", "BODY.PEEK[]"])
        assert fetched[3].items["RFC822.SIZE"] == len(big)
        assert fetched[3].body() == big
        subject = TextKey(where="header", field_name="Subject", text="caf\u00e9")
        assert await watcher.search(subject) == [4]
        await writer.logout()
        await watcher.logout()
        # Last: dovecot slows the next logins from an address that failed.
        client = await connect_imap(reactor, "127.0.0.1", port, reply_timeout=20)
        with pytest.raises(IMAPReplyError) as refused:
            await client.authenticate_plain("alice", "wrong")
        assert refused.value.code is not None
        assert refused.value.code.name == "AUTHENTICATIONFAILED"
        await client.logout()


@BOTH_LOOPS
async def test_starttls_and_implicit_tls(reactor: Reactor, loop: str, ca: trustme.CA) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with running_dovecot([FIRST], ca) as (port, tls_port):
        client = await connect_imap(reactor, "127.0.0.1", port, reply_timeout=20)
        assert "STARTTLS" in await client.capabilities()
        await client.starttls(context, server_hostname="127.0.0.1")
        after = await client.capabilities()
        assert "STARTTLS" not in after
        assert client.transport.get_extra_info("ssl_object") is not None
        await client.login("alice", "s3cret")
        assert (await client.select()).exists == 1
        await client.logout()

        secure = await connect_imap(
            reactor, "127.0.0.1", tls_port, tls=context, server_hostname="127.0.0.1"
        )
        await secure.authenticate_plain("alice", "s3cret")
        assert (await secure.select()).exists == 1
        fetched = await secure.fetch("1:*", ["BODY.PEEK[]"])
        assert [m.body() for m in fetched.values()] == [FIRST]
        await secure.logout()

        # A certificate the client does not trust fails the handshake.
        untrusting = ssl.create_default_context()
        plain = await connect_imap(reactor, "127.0.0.1", port, reply_timeout=20)
        with pytest.raises(ssl.SSLError):
            await plain.starttls(untrusting, server_hostname="127.0.0.1")
        await plain.closed
