"""postfix's smtp-source loads the ESMTP server, which stores into Maildirs: nothing is lost.

smtp-source is the load generator of the speed benchmark; here it runs
small, on both loops, against the real delivery path (``LocalDelivery``
into ``MaildirUsers``, file work in the reactor's threads): sessions at
once, one connection per message and several messages per connection.
Every message it was told 250 for must be in the Maildir, whole.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from _servers import BOTH_LOOPS
from torsion.internet import Reactor
from torsion.mail import LocalDelivery, MaildirUsers
from torsion.mail.smtp import SMTPFactory
from torsion.testing import require_peer

pytestmark = pytest.mark.integration

LENGTH = 2048


async def smtp_source(port: int, *options: str) -> str:
    program = require_peer("smtp-source", package="postfix")
    process = await asyncio.create_subprocess_exec(
        program,
        *options,
        "-l",
        str(LENGTH),
        "-f",
        "load@source.test",
        "-t",
        "alice@example.test",
        f"127.0.0.1:{port}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    text = out.decode(errors="replace")
    assert process.returncode == 0, text
    return text


def stored(root: Path) -> list[bytes]:
    return [path.read_bytes() for path in sorted((root / "alice" / "new").iterdir())]


@BOTH_LOOPS
@pytest.mark.parametrize(
    ("options", "count"),
    [
        # 8 sessions at once, a new connection for each message.
        (("-s", "8", "-m", "120"), 120),
        # 4 sessions at once, each sending its messages over one connection.
        (("-s", "4", "-m", "80", "-d"), 80),
    ],
)
async def test_every_message_smtp_source_sent_is_in_the_maildir(
    reactor: Reactor, loop: str, tmp_path: Path, options: tuple[str, ...], count: int
) -> None:
    users = MaildirUsers(tmp_path, users=["alice"], threads=reactor)
    delivery = LocalDelivery(users, ["example.test"])
    factory = SMTPFactory(delivery, clock=reactor, hostname="mx.example.test")
    listener = reactor.listen_tcp(0, factory, interface="127.0.0.1", backlog=64)
    try:
        out = await smtp_source(listener.port, *options)
    finally:
        await listener.stop_listening()
    assert "error" not in out.lower(), out
    messages = stored(tmp_path)
    assert len(messages) == count
    for message in messages:
        # Stored with LF line ends, as maildir(5) has it, under our trace header.
        assert message.startswith(b"Received: from ")
        assert b"by mx.example.test with ESMTP id " in message
        assert b"for <alice@example.test>;" in message
        head, _, body = message.partition(b"\n\n")
        assert b"From: <load@source.test>" in head
        assert b"\r" not in body
        # smtp-source fills the body with LENGTH bytes of 'La de da' lines.
        assert len(body) >= LENGTH - 64
