"""The ESMTP server on 127.0.0.1, both loops, with clients nobody here wrote.

Python's smtplib (EHLO, STARTTLS against trustme certificates, AUTH PLAIN,
LOGIN and CRAM-MD5, SMTPUTF8, SIZE), swaks (pipelining, TLS, AUTH), and raw
sockets for what no well-behaved client sends (over-long lines, bare LF,
smuggling, commands out of order, AUTH garbage, STARTTLS injection, a
client vanishing mid-DATA).
"""

from __future__ import annotations

import asyncio
import base64
import os
import smtplib
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage
from typing import Any

import pytest

from _servers import (
    BOTH_LOOPS,
    Connections,
    DeliveryRealm,
    MemoryDelivery,
    alice_portal,
    in_thread,
    listening,
)
from torsion.internet import Reactor
from torsion.mail.smtp import (
    EmailAddress,
    SMTPFactory,
    SMTPLimits,
    SMTPServer,
)
from torsion.testing import require_peer

pytestmark = pytest.mark.integration


class Server(Connections):
    def __init__(self, delivery: MemoryDelivery) -> None:
        super().__init__()
        self.delivery = delivery
        self.port = 0


@asynccontextmanager
async def serving(reactor: Reactor, **kwargs: Any) -> AsyncIterator[Server]:
    delivery = MemoryDelivery()
    if kwargs.pop("auth", False):
        kwargs["portal"] = alice_portal(reactor, DeliveryRealm(delivery))
    factory = SMTPFactory(delivery, clock=reactor, hostname="mx.test", **kwargs)
    server = Server(delivery)
    async with listening(reactor, SMTPServer, factory, server) as server.port:
        yield server


def address(server: Server) -> tuple[str, int]:
    return "127.0.0.1", server.port


# -- smtplib --------------------------------------------------------------------------


@BOTH_LOOPS
async def test_smtplib_plain_session(reactor: Reactor, loop: str) -> None:
    async with serving(reactor) as server:

        def send() -> tuple[dict[str, str], dict[str, tuple[int, bytes]]]:
            with smtplib.SMTP(*address(server), local_hostname="client.test", timeout=10) as smtp:
                smtp.ehlo()
                features = dict(smtp.esmtp_features)
                refused = smtp.sendmail(
                    "a@x.test",
                    ["b@y.test", "nobody@y.test"],
                    b"Subject: hi\r\n\r\n.leading dot\r\nbody\r\n",
                )
                return features, refused

        features, refused = await in_thread(reactor, send)
        await server.all_closed()
    for name in ("pipelining", "size", "8bitmime", "smtputf8", "enhancedstatuscodes"):
        assert name in features
    assert "starttls" not in features
    assert refused == {"nobody@y.test": (550, b"5.1.1 no such user")}
    ((session, envelope, message),) = server.delivery.messages
    assert session.helo == "client.test"
    assert envelope.recipients == (EmailAddress("b", "y.test"),)
    assert message.endswith(b"\r\nSubject: hi\r\n\r\n.leading dot\r\nbody\r\n")
    assert message.startswith(b"Received: from client.test ([127.0.0.1])")


@BOTH_LOOPS
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
async def test_smtplib_starttls_and_auth(
    reactor: Reactor,
    loop: str,
    mechanism: str,
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    async with serving(reactor, tls=server_context, auth=True) as server:

        def send() -> tuple[str, str, int]:
            with smtplib.SMTP(*address(server), local_hostname="client.test", timeout=10) as smtp:
                smtp.ehlo()
                before = smtp.esmtp_features.get("auth", "")
                smtp.starttls(context=client_context)
                smtp.ehlo()
                after = smtp.esmtp_features["auth"]
                smtp.user, smtp.password = "alice", "s3cret"
                authobject = {
                    "PLAIN": smtp.auth_plain,
                    "LOGIN": smtp.auth_login,
                    "CRAM-MD5": smtp.auth_cram_md5,
                }[mechanism]
                code, _ = smtp.auth(mechanism, authobject, initial_response_ok=False)
                smtp.sendmail("alice@x.test", ["b@y.test"], b"Subject: t\r\n\r\nhi\r\n")
                return before, after, code

        before, after, code = await in_thread(reactor, send)
        await server.all_closed()
    assert before == ""  # no AUTH offered in clear text
    assert after.split() == ["PLAIN", "LOGIN", "CRAM-MD5"]
    assert code == 235
    ((session, _, message),) = server.delivery.messages
    assert session.tls in ("TLSv1.2", "TLSv1.3")
    assert session.authenticated_as == "alice"
    assert b" with ESMTPSA (TLSv1." in message


@BOTH_LOOPS
async def test_smtplib_wrong_password_and_auth_before_tls(
    reactor: Reactor, loop: str, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    async with serving(reactor, tls=server_context, auth=True) as server:

        def attempt() -> tuple[tuple[int, bytes], int]:
            with smtplib.SMTP(*address(server), timeout=10) as smtp:
                smtp.ehlo()
                secret = base64.b64encode(b"\0alice\0s3cret").decode()
                clear = smtp.docmd("AUTH", "PLAIN " + secret)
                smtp.starttls(context=client_context)
                smtp.ehlo()
                try:
                    smtp.login("alice", "wrong")
                except smtplib.SMTPAuthenticationError as exc:
                    return clear, exc.smtp_code
                raise AssertionError("a wrong password was accepted")

        clear, code = await in_thread(reactor, attempt)
        await server.all_closed()
    assert clear == (538, b"5.7.11 Encryption required for requested authentication mechanism")
    assert code == 535


@BOTH_LOOPS
async def test_smtplib_smtputf8_and_size(reactor: Reactor, loop: str) -> None:
    async with serving(reactor, limits=SMTPLimits(max_message_size=4000)) as server:

        def send() -> tuple[int, str]:
            with smtplib.SMTP(*address(server), timeout=10) as smtp:
                message = EmailMessage()
                message["From"] = "jos\u00e9@b\u00fccher.test"
                message["To"] = "\u00fc@x.test"
                message["Subject"] = "gr\u00fc\u00df"
                message.set_content("h\u00e9llo\n")
                smtp.send_message(message)
                big = b"Subject: big\r\n\r\n" + b"x" * 5000 + b"\r\n"
                try:
                    smtp.sendmail("a@x.test", ["b@y.test"], big)
                except smtplib.SMTPSenderRefused as exc:
                    return exc.smtp_code, exc.smtp_error.decode()
                raise AssertionError("an oversized message was accepted")

        code, text = await in_thread(reactor, send)
        await server.all_closed()
    assert (code, text) == (552, "5.3.4 Message size exceeds fixed maximum message size")
    ((_, envelope, message),) = server.delivery.messages
    assert envelope.smtputf8
    assert envelope.sender == EmailAddress("jos\u00e9", "b\u00fccher.test")
    assert envelope.recipients == (EmailAddress("\u00fc", "x.test"),)
    assert b"with UTF8SMTP id" in message


# -- swaks ----------------------------------------------------------------------------


async def swaks(*argv: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        require_peer("swaks", package="swaks"),
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace")


def require_swaks_tls() -> None:
    """Skip (fail in CI) when swaks cannot do TLS: it needs Perl's Net::SSLeay."""
    perl = require_peer("perl", package="perl")
    found = subprocess.run([perl, "-MNet::SSLeay", "-e", "1"], capture_output=True, check=False)
    if found.returncode == 0:
        return
    reason = "swaks needs Net::SSLeay for --tls (install libnet-ssleay-perl)"
    if os.environ.get("TORSION_REQUIRE_PEERS") == "1":
        pytest.fail(f"{reason}, and TORSION_REQUIRE_PEERS=1", pytrace=False)
    pytest.skip(reason)


@BOTH_LOOPS
async def test_swaks_pipelining(reactor: Reactor, loop: str) -> None:
    async with serving(reactor) as server:
        argv = ["--server", f"127.0.0.1:{server.port}", "--to", "a@x.test,b@x.test"]
        argv += ["--from", "b@x.test", "--pipeline", "--body", "pipelined"]
        status, out = await swaks(*argv)
        await server.all_closed()
    assert status == 0, out
    assert "PIPELINING" in out
    ((_, envelope, message),) = server.delivery.messages
    assert len(envelope.recipients) == 2
    assert b"pipelined" in message


@BOTH_LOOPS
async def test_swaks_tls_and_auth(
    reactor: Reactor, loop: str, server_context: ssl.SSLContext
) -> None:
    require_swaks_tls()
    async with serving(reactor, tls=server_context, auth=True) as server:
        base = ["--server", f"127.0.0.1:{server.port}", "--to", "a@x.test"]
        base += ["--from", "alice@x.test", "--tls", "--auth-user", "alice"]
        results = []
        for mechanism in ("PLAIN", "LOGIN", "CRAM-MD5"):
            argv = [*base, "--auth", mechanism, "--auth-password", "s3cret"]
            results.append(await swaks(*argv))
        status, out = await swaks(*base, "--auth", "PLAIN", "--auth-password", "nope")
        await server.all_closed()
    for result_status, result_out in results:
        assert result_status == 0, result_out
        assert "235 2.7.0 Authentication successful" in result_out
    assert status != 0
    assert "535 5.7.8" in out
    assert len(server.delivery.messages) == 3
    assert all(session.tls for session, _, _ in server.delivery.messages)


# -- raw sockets ----------------------------------------------------------------------


class Raw:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def reply(self) -> list[str]:
        lines = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), 10)
            assert line, "connection closed before a reply"
            lines.append(line.decode().rstrip("\r\n"))
            if line[3:4] != b"-":
                return lines

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@asynccontextmanager
async def raw(port: int) -> AsyncIterator[Raw]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    client = Raw(reader, writer)
    try:
        assert (await client.reply())[0].startswith("220 mx.test")
        yield client
    finally:
        await client.close()


@BOTH_LOOPS
async def test_raw_bad_input(reactor: Reactor, loop: str) -> None:
    async with serving(reactor) as server, raw(server.port) as client:
        await client.send(b"MAIL FROM:<a@x.test>\r\n")
        assert await client.reply() == ["503 5.5.1 Send EHLO or HELO first"]
        await client.send(b"EHLO c\nNOOP\r\n")
        assert await client.reply() == ["500 5.5.2 Bare LF received; lines must end with CRLF"]
        assert await client.reply() == ["250 2.0.0 OK"]
        await client.send(b"NOOP " + b"x" * 100_000 + b"\r\n")
        assert await client.reply() == ["500 5.5.2 Line too long"]
        await client.send(b"EHLO c\r\nAUTH PLAIN AAAA\r\nRCPT TO:<a@x.test>\r\n")
        assert (await client.reply())[-1] == "250 HELP"
        assert await client.reply() == ["502 5.5.1 AUTH not available"]
        assert await client.reply() == ["503 5.5.1 Need MAIL before RCPT"]
        # Smuggling: the bare-LF dot does not end the data, and the "second
        # message" after it is content, not commands.
        await client.send(b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n")
        assert await client.reply() == ["250 2.1.0 Sender OK"]
        assert await client.reply() == ["250 2.1.5 Recipient OK"]
        assert (await client.reply())[0].startswith("354")
        await client.send(
            b"Subject: one\r\n\r\nx\r\n\n.\n"
            b"MAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@y.test>\r\nDATA\r\n"
            b"Subject: smuggled\r\n\r\n.\r\n"
        )
        assert await client.reply() == [
            "554 5.6.0 Message has a bare CR or LF; lines must end with CRLF"
        ]
        await client.send(b"QUIT\r\n")
        assert await client.reply() == ["221 2.0.0 mx.test Bye"]
        assert await asyncio.wait_for(client.reader.read(), 10) == b""
    await server.all_closed()
    assert server.delivery.messages == []


@BOTH_LOOPS
async def test_raw_auth_garbage(reactor: Reactor, loop: str) -> None:
    async with serving(reactor, auth=True, auth_without_tls=True) as server:
        async with raw(server.port) as client:
            await client.send(b"EHLO c\r\n")
            assert "250-AUTH PLAIN LOGIN CRAM-MD5" in await client.reply()
            for garbage in (b"AUTH PLAIN ***\r\n", b"AUTH LOGIN\r\n\xff\xfe\r\n", b"AUTH\r\n"):
                await client.send(garbage)
                replies = await client.reply()
                if replies[0].startswith("334"):
                    replies = await client.reply()
                assert replies[0][:3] in ("501", "504"), replies
            await client.send(b"AUTH LOGIN " + b"A" * 20_000 + b"\r\n")
            assert await client.reply() == ["500 5.5.2 Line too long"]
            await client.send(b"NOOP\r\n")
            assert await client.reply() == ["250 2.0.0 OK"]
        await server.all_closed()


@BOTH_LOOPS
async def test_raw_starttls_injection(
    reactor: Reactor, loop: str, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    async with serving(reactor, tls=server_context) as server, raw(server.port) as client:
        await client.send(b"EHLO c\r\n")
        assert "250-STARTTLS" in await client.reply()
        # CVE-2011-0411: commands sent in clear text with STARTTLS must not
        # be read as commands of the TLS session.
        await client.send(b"STARTTLS\r\nMAIL FROM:<evil@x.test>\r\n")
        assert await client.reply() == ["220 2.0.0 Ready to start TLS"]
        await client.writer.start_tls(client_context, server_hostname="localhost")
        await client.send(b"NOOP\r\n")
        assert await client.reply() == ["250 2.0.0 OK"]
        await client.send(b"RCPT TO:<a@x.test>\r\n")
        assert await client.reply() == ["503 5.5.1 Need MAIL before RCPT"]
        await client.send(b"EHLO c\r\n")
        assert "250-STARTTLS" not in await client.reply()
        await client.send(b"QUIT\r\n")
        assert await client.reply() == ["221 2.0.0 mx.test Bye"]
    await server.all_closed()


@BOTH_LOOPS
async def test_raw_vanishing_mid_data(reactor: Reactor, loop: str) -> None:
    async with serving(reactor) as server:
        async with raw(server.port) as client:
            await client.send(b"HELO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n")
            for _ in range(3):
                await client.reply()
            assert (await client.reply())[0].startswith("354")
            await client.send(b"Subject: cut\r\n\r\nhalf a message\r\n.")
        await server.all_closed()
    assert server.delivery.messages == []


@BOTH_LOOPS
async def test_raw_timeout(reactor: Reactor, loop: str) -> None:
    limits = SMTPLimits(command_timeout=0.2)
    async with serving(reactor, limits=limits) as server, raw(server.port) as client:
        assert await client.reply() == ["421 4.4.2 mx.test Timeout exceeded, closing connection"]
        assert await asyncio.wait_for(client.reader.read(), 10) == b""
