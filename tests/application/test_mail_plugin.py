"""``torsion mail``: its options, and the server run as an operator runs it, spoken to by
smtplib, swaks, poplib and imaplib."""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trustme
from _runner_helpers import DEADLINE, ENV, Torsion, run_torsion, wait_until

from torsion.application._mail import MAIL, parse_user
from torsion.application._plugins import option_values
from torsion.cred import HtpasswdFile
from torsion.testing import MemoryReactor, require_peer

LOCAL = "tcp:0:interface=127.0.0.1"
MESSAGE = "From: bob@example.test\r\nTo: alice@example.test\r\nSubject: hello\r\n\r\nHi Alice.\r\n"


def build(**given: Any) -> Any:
    values = option_values(MAIL.options, {k.replace("-", "_"): v for k, v in given.items()})
    return MAIL.build(MemoryReactor(), values)


# -- options, without a process --------------------------------------------------------


def test_parse_user() -> None:
    assert parse_user("alice:secret") == ("alice", "secret")
    assert parse_user("bob:a:b") == ("bob", "a:b")
    for wrong in ("alice", "alice:", ":secret", "../x:secret", ".hidden:pw"):
        with pytest.raises(ValueError, match="--user"):
            parse_user(wrong)


def test_what_must_be_given(tmp_path: Path) -> None:
    base: dict[str, Any] = {"maildir": str(tmp_path), "domain": ["example.test"]}
    with pytest.raises(ValueError, match="give something to serve"):
        build(**base, user=["alice:pw"])
    with pytest.raises(ValueError, match="local domains"):
        build(maildir=str(tmp_path), user=["alice:pw"], smtp=[LOCAL])
    with pytest.raises(ValueError, match="give the users"):
        build(**base, smtp=[LOCAL])
    with pytest.raises(ValueError, match="given twice"):
        build(**base, smtp=[LOCAL], user=["alice:a", "alice:b"])
    with pytest.raises(ValueError, match="--relay"):
        build(**base, smtp=[LOCAL], user=["alice:pw"], queue=str(tmp_path / "q"))
    with pytest.raises(ValueError, match="--certificate"):
        build(**base, smtp=[LOCAL], user=["alice:pw"], private_key=str(tmp_path / "k"))
    with pytest.raises(ValueError, match="--certificate"):
        build(**base, smtp=[LOCAL], user=["alice:pw"], certificate=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="--postmaster"):
        build(**base, smtp=[LOCAL], user=["alice:pw"], postmaster="carol")
    with pytest.raises(ValueError, match="Maildir"):
        MAIL.option("postmaster").convert_text("../x")
    with pytest.raises(ValueError, match="--domain"):
        MAIL.option("domain").convert_text("a@b")
    with pytest.raises(ValueError, match="checks no password"):
        MAIL.option("auth").convert_text("anonymous")


def test_without_named_users_postmaster_is_asked_for(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    passwords = HtpasswdFile()
    passwords.set_password("carol", "pw")
    passwords.save(tmp_path / "htpasswd")
    base: dict[str, Any] = {
        "maildir": str(tmp_path),
        "domain": ["example.test"],
        "smtp": [LOCAL],
        "auth": [f"file:{tmp_path / 'htpasswd'}"],
    }
    with caplog.at_level("WARNING", logger="torsion.application._mail"):
        build(**base)
    assert "no --postmaster" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="torsion.application._mail"):
        # Any user with a Maildir is local here: carol need not be named.
        build(**base, postmaster="carol")
    assert "postmaster" not in caplog.text


def test_the_build_listens_nowhere_yet(tmp_path: Path) -> None:
    reactor = MemoryReactor()
    values = option_values(
        MAIL.options,
        {
            "maildir": str(tmp_path),
            "domain": ["example.test"],
            "user": ["alice:pw"],
            "smtp": [LOCAL, "tcp:0"],
            "pop3": [LOCAL],
        },
    )
    app = MAIL.build(reactor, values)
    assert reactor.tcp_servers == []
    assert len(list(app)) == 3
    # Maildirs are made on first use, not by building.
    assert list(tmp_path.iterdir()) == []


# -- the command -----------------------------------------------------------------------


@pytest.fixture(params=["asyncio", "uvloop"])
def loop(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def ports(torsion: Torsion, *servers: str) -> list[int]:
    """The ports of ``servers`` (in the order they start), from the lines announcing them."""
    pattern = r"{} server .* listening on 127\.0\.0\.1:(\d+)"
    return [int(torsion.wait_for(pattern.format(server)).group(1)) for server in servers]


def pop3_messages(port: int, user: str, password: str) -> list[bytes]:
    client = poplib.POP3("127.0.0.1", port, timeout=DEADLINE)
    try:
        client.user(user)
        client.pass_(password)
        count, _ = client.stat()
        messages = [b"\r\n".join(client.retr(n)[1]) for n in range(1, count + 1)]
        client.quit()
    finally:
        client.close()
    return messages


def test_smtp_in_pop3_and_imap_out(loop: str, tmp_path: Path) -> None:
    args = [
        "mail",
        "--maildir", str(tmp_path / "mail"),
        "--domain", "example.test",
        "--user", "alice:secret",
        "--user", "bob:hunter2",
        "--smtp", LOCAL,
        "--pop3", LOCAL,
        "--imap", LOCAL,
        "--allow-plaintext-auth",
        "--max-message-size", "50000",
        "--reactor", loop,
    ]  # fmt: skip
    with Torsion(*args, env=ENV) as torsion:
        smtp_port, pop3_port, imap_port = ports(torsion, "SMTP", "POP3", "IMAP")
        imap = imaplib.IMAP4("127.0.0.1", imap_port, timeout=DEADLINE)
        imap.login("alice", "secret")
        assert imap.select("INBOX") == ("OK", [b"0"])
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=DEADLINE) as client:
            refused = client.sendmail("bob@example.test", ["alice@example.test"], MESSAGE)
            assert refused == {}
        # The session that was open when the mail came is told of it.
        imap.noop()
        assert imap.response("EXISTS")[1][-1] == b"1"
        status, data = imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert status == "OK"
        assert b"Subject: hello" in data[0][1]
        imap.logout()
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=DEADLINE) as client:
            client.ehlo()
            client.mail("bob@example.test")
            code, text = client.rcpt("carol@example.test")
            assert (code, text[:5]) == (550, b"5.1.1")
            code, text = client.rcpt("someone@elsewhere.test")
            assert (code, text[:5]) == (550, b"5.7.1")
            # RFC 5321 section 4.5.1: postmaster (alice, the first user).
            assert client.rcpt("PostMaster@example.test")[0] == 250
            assert client.rcpt("<Postmaster>")[0] == 250
            client.rset()
            assert client.esmtp_features["size"] == "50000"
            # Exactly at the limit: taken; one octet over: refused.
            body = MESSAGE.encode()
            lines = b"x" * 98 + b"\r\n"
            filler = lines * ((50000 - len(body)) // 100)
            last = 50000 - len(body) - len(filler)
            at_limit = body + filler + b"y" * (last - 2) + b"\r\n"
            assert len(at_limit) == 50000
            assert client.sendmail("bob@example.test", ["bob@example.test"], at_limit) == {}
            with pytest.raises(smtplib.SMTPSenderRefused) as too_big:
                client.sendmail("bob@example.test", ["bob@example.test"], at_limit + lines)
            assert too_big.value.smtp_code == 552
        [message] = pop3_messages(pop3_port, "alice", "secret")
        assert b"Subject: hello" in message
        assert b"Hi Alice." in message
        assert message.startswith(b"Received: from ")
        [at_limit_stored] = pop3_messages(pop3_port, "bob", "hunter2")
        assert at_limit_stored.endswith(b"x" * 98 + b"\r\n" + b"y" * (last - 2))
        with pytest.raises(poplib.error_proto):
            pop3_messages(pop3_port, "alice", "wrong")
        # On disk, in alice's Maildir.
        stored = list((tmp_path / "mail" / "alice").glob("*/*"))
        assert [path.parent.name for path in stored if path.is_file()] in (["new"], ["cur"])
        assert torsion.stop() == 0
    assert "Traceback" not in "\n".join(torsion.seen)


def test_swaks_and_a_relay_only_after_login(loop: str, tmp_path: Path) -> None:
    swaks = require_peer("swaks", package="swaks")
    queue = tmp_path / "queue"
    args = [
        "mail",
        "--maildir", str(tmp_path / "mail"),
        "--domain", "example.test",
        "--user", "alice:secret",
        "--smtp", LOCAL,
        "--pop3", LOCAL,
        "--allow-plaintext-auth",
        "--relay",
        "--queue", str(queue),
        "--reactor", loop,
    ]  # fmt: skip
    with Torsion(*args, env=ENV) as torsion:
        smtp_port, pop3_port = ports(torsion, "SMTP", "POP3")
        server = ["--server", f"127.0.0.1:{smtp_port}", "--timeout", "10"]
        sent = subprocess.run(
            [swaks, *server, "--from", "x@far.test", "--to", "alice@example.test"],
            capture_output=True,
            text=True,
            timeout=DEADLINE,
        )
        assert sent.returncode == 0, sent.stdout
        [message] = pop3_messages(pop3_port, "alice", "secret")
        assert b"X-Mailer: swaks" in message
        # Not logged in: another domain is refused at RCPT.
        denied = subprocess.run(
            [swaks, *server, "--from", "alice@example.test", "--to", "x@elsewhere.test"],
            capture_output=True,
            text=True,
            timeout=DEADLINE,
        )
        assert denied.returncode != 0
        assert "<** 550 5.7.1" in denied.stdout
        assert not list(queue.glob("*.json"))
        # Logged in: taken, and on disk in the queue before the 250.
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=DEADLINE) as client:
            client.login("alice", "secret")
            refused = client.sendmail("alice@example.test", ["x@elsewhere.test"], MESSAGE)
            assert refused == {}

        # The queue has it on disk, or (where DNS says the domain does not
        # exist) has already bounced it to alice, a local sender.
        def handled() -> str | None:
            if list(queue.glob("*.json")):
                return "queued"
            stored = [p for p in (tmp_path / "mail" / "alice").glob("*/*") if p.is_file()]
            return "bounced" if len(stored) == 2 else None

        if wait_until(handled, "the relayed message in the queue or bounced") == "bounced":
            bounce = pop3_messages(pop3_port, "alice", "secret")[1]
            assert b"x@elsewhere.test" in bounce
            assert b"multipart/report" in bounce
        assert torsion.stop() == 0
    assert "Traceback" not in "\n".join(torsion.seen)


def test_starttls_stls_and_implicit_tls(loop: str, tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("mail.example.test")
    pem = tmp_path / "server.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(pem))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.check_hostname = False
    args = [
        "mail",
        "--maildir", str(tmp_path / "mail"),
        "--domain", "example.test",
        "--user", "alice:secret",
        "--smtp", LOCAL,
        "--pop3", LOCAL,
        "--pop3", f"tls:0:interface=127.0.0.1:privateKey={pem}",
        "--certificate", str(pem),
        "--reactor", loop,
    ]  # fmt: skip
    with Torsion(*args, env=ENV) as torsion:
        smtp_port, pop3_port, pop3s_port = ports(torsion, "SMTP", "POP3", "POP3")
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=DEADLINE) as client:
            client.ehlo()
            # Passwords only after TLS.
            assert not client.has_extn("auth")
            client.starttls(context=context)
            client.ehlo()
            assert client.has_extn("auth")
            client.login("alice", "secret")
            client.sendmail("alice@example.test", ["alice@example.test"], MESSAGE)
        pop = poplib.POP3("127.0.0.1", pop3_port, timeout=DEADLINE)
        try:
            pop.stls(context=context)
            pop.user("alice")
            pop.pass_("secret")
            assert pop.stat()[0] == 1
            pop.quit()
        finally:
            pop.close()
        pops = poplib.POP3_SSL("127.0.0.1", pop3s_port, context=context, timeout=DEADLINE)
        try:
            pops.user("alice")
            pops.pass_("secret")
            assert pops.stat()[0] == 1
            pops.quit()
        finally:
            pops.close()
        assert torsion.stop() == 0
    assert "Traceback" not in "\n".join(torsion.seen)


def test_users_from_a_password_file_are_those_with_a_maildir(tmp_path: Path) -> None:
    passwords = HtpasswdFile()
    for user in ("carol", "dave"):
        passwords.set_password(user, "pw-" + user)
    passwords.save(tmp_path / "htpasswd")
    mail = tmp_path / "mail"
    for part in ("cur", "new", "tmp"):
        (mail / "carol" / part).mkdir(parents=True)
    args = [
        "mail",
        "--maildir", str(mail),
        "--domain", "example.test",
        "--auth", f"file:{tmp_path / 'htpasswd'}",
        "--user", "bob:hunter2",
        "--smtp", LOCAL,
        "--pop3", LOCAL,
        "--allow-plaintext-auth",
    ]  # fmt: skip
    with Torsion(*args, env=ENV) as torsion:
        smtp_port, pop3_port = ports(torsion, "SMTP", "POP3")
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=DEADLINE) as client:
            # bob's Maildir was made at start; dave has none.
            to = ["carol@example.test", "bob@example.test", "dave@example.test"]
            refused = client.sendmail("x@far.test", to, MESSAGE)
            assert list(refused) == ["dave@example.test"]
            assert refused["dave@example.test"][0] == 550
        assert len(pop3_messages(pop3_port, "carol", "pw-carol")) == 1
        assert len(pop3_messages(pop3_port, "bob", "hunter2")) == 1
        # The password is right, but there is no mail store to log in to.
        with pytest.raises(poplib.error_proto):
            pop3_messages(pop3_port, "dave", "pw-dave")
        assert torsion.stop() == 0
    assert "Traceback" not in "\n".join(torsion.seen)


def test_mktap_then_run_the_file(tmp_path: Path) -> None:
    deployment = tmp_path / "mail.toml"
    made = run_torsion(
        "mktap", "mail",
        "--maildir", str(tmp_path / "mail"),
        "--domain", "example.test",
        "--user", "alice:secret",
        "--smtp", LOCAL,
        "--pop3", LOCAL,
        "--allow-plaintext-auth",
        "-o", str(deployment),
        env=ENV,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    text = deployment.read_text()
    assert 'plugin = "mail"' in text
    assert "example.test" in text
    with Torsion("-f", str(deployment), env=ENV) as torsion:
        smtp_port, pop3_port = ports(torsion, "SMTP", "POP3")
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=DEADLINE) as client:
            client.sendmail("bob@far.test", ["alice@example.test"], MESSAGE)
        [message] = pop3_messages(pop3_port, "alice", "secret")
        assert b"Hi Alice." in message
        assert torsion.stop() == 0
