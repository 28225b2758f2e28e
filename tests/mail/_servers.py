"""What the mail network tests share: both loops, servers a test waits out, peers.

``listening`` serves one of torsion's mail servers on 127.0.0.1 port 0 and,
on the way out, waits until every connection it accepted has ended, so no
test leaves a transport behind. ``dovecot_daemon`` starts dovecot from a
configuration the caller wrote and stops it by its PID; ``curl`` and
``in_thread`` run blocking peers off the loop.
"""

from __future__ import annotations

import asyncio
import functools
import os
import pwd
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from torsion.cred import InMemoryChecker, LoginLimiter, Portal
from torsion.defer import Deferred
from torsion.internet import Protocol, Reactor
from torsion.mail import MailStore, MailUsers
from torsion.mail.smtp import Delivery, EmailAddress, Envelope, Session, SMTPReplyError
from torsion.testing import require_peer

BOTH_LOOPS = pytest.mark.parametrize(
    "loop",
    [
        pytest.param("asyncio", marks=pytest.mark.torsion_loop("asyncio")),
        pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop")),
    ],
)


class StoreRealm:
    """Hands each user their mail store from ``users`` (POP3 and IMAP logins)."""

    def __init__(self, users: MailUsers) -> None:
        self.users = users

    def request_avatar(self, avatar_id: str, mind: Any, *interfaces: type) -> Any:
        return MailStore, self.users.store(avatar_id), lambda: None


class MemoryDelivery:
    """Takes every message for any recipient but ``nobody`` (550 5.1.1), and keeps it."""

    def __init__(self) -> None:
        self.messages: list[tuple[Session, Envelope, bytes]] = []

    def validate_sender(self, session: Session, sender: EmailAddress | None) -> None:
        return None

    def validate_recipient(self, session: Session, recipient: EmailAddress) -> None:
        if recipient.local_part == "nobody":
            raise SMTPReplyError(550, "5.1.1", "no such user")

    def deliver(self, session: Session, envelope: Envelope, message: bytes) -> None:
        self.messages.append((session, envelope, message))


class DeliveryRealm:
    """Hands every SMTP login the one ``delivery``."""

    def __init__(self, delivery: MemoryDelivery) -> None:
        self.delivery = delivery

    def request_avatar(self, avatar_id: str, mind: Any, *interfaces: type) -> Any:
        return Delivery, self.delivery, lambda: None


def alice_portal(reactor: Reactor, realm: Any) -> Portal:
    """A portal on ``realm`` for alice (password s3cret), with no delay after a failed login."""
    return Portal(
        realm,
        [InMemoryChecker({"alice": "s3cret"})],
        clock=reactor,
        limiter=LoginLimiter(reactor, base_delay=0),
    )


class Connections:
    """The connections a test server accepted, each with a Deferred fired when it ends."""

    def __init__(self) -> None:
        self.ended: list[Deferred[None]] = []

    async def all_closed(self) -> None:
        for d in self.ended:
            await asyncio.wait_for(_wait(d), 10)


async def _wait(d: Deferred[None]) -> None:
    await d


@functools.cache
def _tracked(server_class: type[Protocol]) -> Any:
    class Tracked(server_class):  # type: ignore[valid-type,misc]
        def __init__(self, factory: Any, ended: list[Deferred[None]]) -> None:
            super().__init__(factory)
            self.ended: Deferred[None] = Deferred()
            ended.append(self.ended)

        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            self.ended.callback(None)

    return Tracked


@asynccontextmanager
async def listening(
    reactor: Reactor,
    server_class: type[Protocol],
    factory: Any,
    connections: Connections,
    *,
    tls: ssl.SSLContext | None = None,
) -> AsyncIterator[int]:
    """Serve ``server_class(factory)`` on 127.0.0.1 (implicit TLS with ``tls``); yield the port.

    On the way out: stop listening, then wait for every accepted connection to end.
    """
    tracked = _tracked(server_class)

    def build(_: Any) -> Protocol:
        server: Protocol = tracked(factory, connections.ended)
        return server

    if tls is None:
        listener = reactor.listen_tcp(0, build, interface="127.0.0.1")
    else:
        listener = reactor.listen_tls(0, build, tls, interface="127.0.0.1")
    try:
        yield listener.port
    finally:
        await listener.stop_listening()
        await connections.all_closed()


async def in_thread(reactor: Reactor, f: Callable[[], Any]) -> Any:
    return await reactor.defer_to_thread(f)


def curl(*args: str) -> bytes:
    """Run curl (quiet, errors shown, 10 s at most) and return what it printed."""
    program = require_peer("curl", package="curl")
    done = subprocess.run(
        [program, "-sS", "--max-time", "10", *args], capture_output=True, check=True, timeout=20
    )
    return done.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def dovecot_ids() -> tuple[int, int]:
    """The uid and gid dovecot runs mail processes as: its own account when run as root."""
    if os.geteuid() == 0:
        account = pwd.getpwnam("dovecot")
        return account.pw_uid, account.pw_gid
    return os.getuid(), os.getgid()


def alice_maildir(directory: Path, messages: Sequence[bytes]) -> Path:
    """A Maildir for alice under ``directory/mail`` holding ``messages`` as new mail."""
    maildir = directory / "mail" / "alice"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    for n, message in enumerate(messages):
        (maildir / "new" / f"100{n}.M{n}.torsion").write_bytes(message)
    return maildir


@contextmanager
def dovecot_daemon(program: str, conf: Path, directory: Path, port: int) -> Iterator[None]:
    """Run dovecot in the foreground on ``conf`` until it accepts on ``port``; stop it after.

    It is waited for by connecting (each refused try waits on the process
    itself for up to 0.05 s), and stopped by its PID.
    """
    process = subprocess.Popen(
        [program, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        for _ in range(300):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                    sock.recv(100)
                break
            except ConnectionRefusedError:
                try:
                    process.wait(0.05)
                except subprocess.TimeoutExpired:
                    continue
                log = (directory / "dovecot.log").read_text(errors="replace")
                pytest.fail(f"dovecot exited with {process.returncode}: {log}")
        else:
            pytest.fail("dovecot did not listen within 15 s")
        yield
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a wedged dovecot
            process.kill()
            process.wait()
        assert process.stderr is not None
        process.stderr.close()
