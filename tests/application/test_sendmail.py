"""torsion sendmail: its command line, reading the message, -t, and submitting to aiosmtpd."""

from __future__ import annotations

import asyncio
import io
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from torsion.application._errors import UsageError
from torsion.application._sendmail import (
    EX_DATAERR,
    EX_NOUSER,
    EX_TEMPFAIL,
    EX_USAGE,
    SendmailOptions,
    extract_recipients,
    parse_arguments,
    read_message,
    sendmail_main,
    submit,
)
from torsion.internet import Reactor

try:
    import aiosmtpd.smtp
except ImportError:  # pragma: no cover - a test dependency
    if os.environ.get("TORSION_REQUIRE_PEERS") == "1":
        raise
    HAVE_AIOSMTPD = False
else:
    HAVE_AIOSMTPD = True

BOTH_LOOPS = pytest.mark.parametrize(
    "loop",
    [
        pytest.param("asyncio", marks=pytest.mark.torsion_loop("asyncio")),
        pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop")),
    ],
)

MESSAGE = (
    b"From: me@here.test\n"
    b"To: Ann <ann@there.test>, bob@there.test\n"
    b"Cc: undisclosed:;\n"
    b"Bcc: secret@there.test,\n"
    b"  other@there.test\n"
    b"Subject: hi\n"
    b"\n"
    b"Bcc: this is the body\n"
    b".\n"
    b"after the dot\n"
)


# -- the command line --------------------------------------------------------


def test_sendmail_style_arguments() -> None:
    options = parse_arguments(["-oi", "-t", "-fme@here.test", "-odi", "-oem", "a@x", "b@y"])
    assert options.from_headers
    assert not options.dot_ends
    assert options.sender == "me@here.test"
    assert options.recipients == ["a@x", "b@y"]
    assert parse_arguments(["-f", "<>", "a@x"]).sender == ""
    assert parse_arguments(["-r", "<s@x>", "-F", "Full Name", "a@x"]).sender == "s@x"
    assert parse_arguments(["-i", "--", "-a@x"]).recipients == ["-a@x"]
    assert parse_arguments([]).dot_ends


def test_our_options() -> None:
    options = parse_arguments(
        ["--connect", "tcp:mail.test:587", "--tls=required", "--auth", "u:p:q", "--helo", "h"]
    )
    assert options.connect == "tcp:mail.test:587"
    assert options.tls == "required"
    assert options.auth == ("u", "p:q")
    assert options.helo == "h"
    assert parse_arguments([]).connect == "tcp:localhost:25"


def test_password_from_the_environment() -> None:
    options = parse_arguments(["--auth", "u"], {"TORSION_SMTP_PASSWORD": "pw"})
    assert options.auth == ("u", "pw")
    with pytest.raises(UsageError, match="no password"):
        parse_arguments(["--auth", "u"], {})


@pytest.mark.parametrize(
    "argv", [["-z"], ["-f"], ["--tls", "maybe"], ["--nope"], ["-bs"], ["--max-size", "x"]]
)
def test_bad_command_lines(argv: list[str]) -> None:
    stderr = io.StringIO()
    status = sendmail_main(argv, stdin=io.BytesIO(), stdout=io.StringIO(), stderr=stderr)
    assert status == EX_USAGE
    assert stderr.getvalue().startswith("torsion sendmail: ")


def test_help() -> None:
    stdout = io.StringIO()
    assert sendmail_main(["--help"], stdin=io.BytesIO(), stdout=stdout, stderr=io.StringIO()) == 0
    assert "usage: torsion sendmail" in stdout.getvalue()


# -- reading the message -----------------------------------------------------


def test_a_lone_dot_ends_the_message_unless_i() -> None:
    assert read_message(io.BytesIO(MESSAGE), dot_ends=True, max_size=1000).endswith(b"the body\n")
    assert read_message(io.BytesIO(MESSAGE), dot_ends=False, max_size=1000) == MESSAGE
    assert read_message(io.BytesIO(b"a\r\n.\r\nb"), dot_ends=True, max_size=10) == b"a\r\n"


def test_message_size_is_bounded() -> None:
    stderr = io.StringIO()
    status = sendmail_main(
        ["--max-size", "10", "a@x"],
        stdin=io.BytesIO(b"x" * 11),
        stdout=io.StringIO(),
        stderr=stderr,
    )
    assert status == EX_DATAERR
    assert "larger than 10" in stderr.getvalue()


def test_recipients_from_headers_and_bcc_removed() -> None:
    recipients, message = extract_recipients(MESSAGE)
    assert recipients == [
        "ann@there.test",
        "bob@there.test",
        "secret@there.test",
        "other@there.test",
    ]
    assert b"secret" not in message.split(b"\n\n")[0]
    assert b"other@there.test" not in message
    # The body is untouched, a "Bcc:" in it included.
    assert message.endswith(b"\nBcc: this is the body\n.\nafter the dot\n")
    assert message.startswith(b"From: me@here.test\nTo: Ann")


def test_no_recipient_is_a_data_error(reactor: Reactor) -> None:
    stderr = io.StringIO()
    status = reactor.loop.run_until_complete(
        submit(reactor, SendmailOptions(from_headers=True), b"Subject: x\n\n", stderr)
    )
    assert status == EX_DATAERR
    assert "no recipients" in stderr.getvalue()


# -- submitting to a real server ---------------------------------------------


class _Handler:
    def __init__(self) -> None:
        self.envelopes: list[tuple[str, list[str], bytes]] = []

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user"
        if address.startswith("later@"):
            return "451 4.3.0 try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.envelopes.append(
            (envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
        )
        return "250 OK"


@asynccontextmanager
async def aiosmtpd_server() -> AsyncIterator[tuple[_Handler, int]]:
    if not HAVE_AIOSMTPD:
        pytest.skip("aiosmtpd is not installed")
    loop = asyncio.get_running_loop()
    handler = _Handler()
    protocols: list[Any] = []

    def factory() -> Any:
        protocols.append(aiosmtpd.smtp.SMTP(handler, hostname="mx.test", loop=loop))
        return protocols[-1]

    server = await loop.create_server(factory, "127.0.0.1", 0)
    try:
        yield handler, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
        tasks = [p._handler_coroutine for p in protocols if p._handler_coroutine is not None]
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.integration
@BOTH_LOOPS
async def test_submit_with_t(reactor: Reactor, loop: str) -> None:
    async with aiosmtpd_server() as (handler, port):
        options = parse_arguments(
            ["-t", "-i", "-f", "me@here.test", "--connect", f"tcp:127.0.0.1:{port}", "c@x.test"]
        )
        stderr = io.StringIO()
        status = await submit(reactor, options, MESSAGE, stderr)
    assert status == 0, stderr.getvalue()
    ((sender, recipients, data),) = handler.envelopes
    assert sender == "me@here.test"
    assert recipients == [
        "c@x.test",
        "ann@there.test",
        "bob@there.test",
        "secret@there.test",
        "other@there.test",
    ]
    assert b"secret" not in data
    assert data.endswith(b"\r\n.\r\nafter the dot\r\n")


@pytest.mark.integration
@BOTH_LOOPS
async def test_exit_status_of_refused_and_deferred(reactor: Reactor, loop: str) -> None:
    async with aiosmtpd_server() as (handler, port):
        connect = f"--connect=tcp:127.0.0.1:{port}"
        stderr = io.StringIO()
        refused = parse_arguments([connect, "a@x.test", "nobody@x.test", "later@x.test"])
        assert await submit(reactor, refused, b"Subject: x\n\nhi\n", stderr) == EX_NOUSER
        assert "<nobody@x.test>: refused: 550 5.1.1 no such user" in stderr.getvalue()
        assert "<later@x.test>: deferred: 451 4.3.0 try later" in stderr.getvalue()
        deferred = parse_arguments([connect, "later@x.test"])
        assert await submit(reactor, deferred, b"Subject: x\n\nhi\n", stderr) == EX_TEMPFAIL
    assert [recipients for _, recipients, _ in handler.envelopes] == [["a@x.test"]]


@pytest.mark.integration
@BOTH_LOOPS
async def test_nothing_listening_is_a_temporary_failure(reactor: Reactor, loop: str) -> None:
    server = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    stderr = io.StringIO()
    options = parse_arguments([f"--connect=tcp:127.0.0.1:{port}", "a@x.test"])
    assert await submit(reactor, options, b"Subject: x\n\n", stderr) == EX_TEMPFAIL
    assert "cannot connect" in stderr.getvalue()


@pytest.mark.integration
@BOTH_LOOPS
async def test_the_command_end_to_end(reactor: Reactor, loop: str) -> None:
    async with aiosmtpd_server() as (handler, port):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "torsion",
            "sendmail",
            "-f",
            "me@here.test",
            "--connect",
            f"tcp:127.0.0.1:{port}",
            "z@x.test",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await process.communicate(b"Subject: piped\n\nline\n.\nnot sent\n")
    assert process.returncode == 0, err.decode()
    ((sender, recipients, data),) = handler.envelopes
    assert (sender, recipients) == ("me@here.test", ["z@x.test"])
    assert data == b"Subject: piped\r\n\r\nline\r\n"
