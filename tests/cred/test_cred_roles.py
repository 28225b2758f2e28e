"""The four roles apart: one checker behind two protocols, one realm over two backends.

The line protocol is the notes server of ``examples/cred_notes.py`` (a
``LineOnlyReceiver`` with a LOGIN command); the second protocol is HTTP with
Basic authentication (RFC 7617), a minimal server written here (the request
head and the 401 challenge), talked to by Python's own ``http.client``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import http.client
import importlib.util
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from torsion.cred import (
    HtpasswdChecker,
    HtpasswdFile,
    LoginLimiter,
    Portal,
    UnauthorizedLogin,
    UsernamePassword,
)
from torsion.internet import Protocol, Reactor

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cred_notes.py"
_spec = importlib.util.spec_from_file_location("cred_notes", EXAMPLE)
assert _spec is not None
assert _spec.loader is not None
notes = importlib.util.module_from_spec(_spec)
sys.modules["cred_notes"] = notes
_spec.loader.exec_module(notes)

LOOPS = ["asyncio", "uvloop"]


class BasicAuthHTTP(Protocol):
    """GET / answers the user's notes, behind HTTP Basic authentication."""

    MAX_HEAD = 8192

    def __init__(self, portal: Portal) -> None:
        self.portal = portal
        self.head = b""

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        self.head += data
        if b"\r\n\r\n" not in self.head:
            if len(self.head) > self.MAX_HEAD:
                self.reply(431, "Request Header Fields Too Large", b"")
            return
        credentials = basic_credentials(self.head.split(b"\r\n\r\n", 1)[0])
        if credentials is None:
            self.challenge()
            return
        d = self.portal.login(credentials, self, notes.Notebook, client=self.peer)
        d.add_callbacks(self.logged_in, lambda error: self.refused(error))

    def logged_in(self, login: Any) -> None:
        body = "".join(f"{note}\n" for note in login.avatar.notes()).encode()
        login.logout()
        self.reply(200, "OK", body)

    def refused(self, error: BaseException) -> None:
        if isinstance(error, UnauthorizedLogin):
            self.challenge()
        else:
            self.reply(500, "Internal Server Error", b"")

    def challenge(self) -> None:
        # RFC 7617 section 2: the challenge, and section 2.1's charset.
        self.reply(401, "Unauthorized", b"log in\n", b'Basic realm="notes", charset="UTF-8"')

    def reply(self, status: int, reason: str, body: bytes, challenge: bytes | None = None) -> None:
        lines = [b"HTTP/1.1 %d %s" % (status, reason.encode())]
        if challenge is not None:
            lines.append(b"WWW-Authenticate: " + challenge)
        lines += [b"Content-Length: %d" % len(body), b"Connection: close", b"", b""]
        self.transport.write(b"\r\n".join(lines) + body)
        self.transport.close()


def basic_credentials(head: bytes) -> UsernamePassword | None:
    """The user and password of an ``Authorization: Basic`` header, or None."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() != b"authorization":
            continue
        scheme, _, token = value.strip().partition(b" ")
        if scheme.lower() != b"basic":
            return None
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, colon, password = decoded.partition(":")
        return UsernamePassword(user, password) if colon else None
    return None


def test_basic_credentials_parser() -> None:
    token = base64.b64encode(b"alice:wonder:land")
    head = b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + token
    assert basic_credentials(head) == UsernamePassword("alice", "wonder:land") or (
        basic_credentials(head) is not None and basic_credentials(head).password == "wonder:land"  # type: ignore[union-attr]
    )
    assert basic_credentials(b"GET / HTTP/1.1\r\nAuthorization: Bearer abc") is None
    assert basic_credentials(b"GET / HTTP/1.1\r\nAuthorization: Basic !!!") is None
    assert basic_credentials(b"GET / HTTP/1.1\r\nHost: x") is None


async def line_session(port: int, *lines: str) -> list[str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answers: list[str] = []
    try:
        for line in lines:
            writer.write(line.encode() + b"\r\n")
            await writer.drain()
            while True:
                answer = (await reader.readline()).decode().rstrip("\r\n")
                answers.append(answer)
                if not answer.startswith("* "):
                    break
    finally:
        writer.close()
        await writer.wait_closed()
    return answers


def http_get(port: int, user: str, password: str) -> tuple[int, str, str | None]:
    """Fetch / with Python's own client, as a user agent would."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        connection.request("GET", "/", headers={"Authorization": f"Basic {token}"})
        response = connection.getresponse()
        return response.status, response.read().decode(), response.getheader("WWW-Authenticate")
    finally:
        connection.close()


def run_on(reactor: Reactor, main: Callable[[], Awaitable[None]]) -> None:
    """Run ``main`` on a reactor of the test's own; closing it joins its workers."""
    try:
        reactor.loop.run_until_complete(asyncio.wait_for(main(), 60))
    finally:
        reactor.close()


@pytest.mark.parametrize("loop", LOOPS)
def test_one_checker_two_protocols_one_realm_two_backends(tmp_path: Path, loop: str) -> None:
    if loop == "uvloop":
        pytest.importorskip("uvloop", reason="uvloop is not installed")
    reactor = Reactor(uvloop=loop == "uvloop")
    users = tmp_path / "htpasswd"
    passwords = HtpasswdFile()
    passwords.set_password("alice", "wonderland", cost=4)
    passwords.set_password("bob", "builder", cost=4)
    passwords.save(users)
    directory = tmp_path / "notes"
    directory.mkdir()

    # The authorization developer's checker: one object, for every protocol.
    checker = HtpasswdChecker(users, threads=reactor)
    # Deployment 1: notes in memory, served over the line protocol and HTTP.
    in_memory = Portal(notes.NotesRealm(notes.MemoryStore()), [checker], clock=reactor)
    # Deployment 2: the same realm code and the same checker over files.
    on_disk = Portal(notes.NotesRealm(notes.DirectoryStore(directory)), [checker], clock=reactor)

    line_port = reactor.listen_tcp(
        0, lambda _: notes.NotesProtocol(in_memory), interface="127.0.0.1"
    )
    http_port = reactor.listen_tcp(0, lambda _: BasicAuthHTTP(in_memory), interface="127.0.0.1")
    disk_port = reactor.listen_tcp(
        0, lambda _: notes.NotesProtocol(on_disk), interface="127.0.0.1"
    )

    async def main() -> None:
        answers = await line_session(
            line_port.port, "LIST", "LOGIN alice wonderland", "NOTE buy milk", "LIST", "QUIT"
        )
        assert answers == [
            "NO log in first",
            "OK logged in",
            "OK noted",
            "* buy milk",
            "OK",
            "OK bye",
        ]
        # The note made over the line protocol, read over HTTP: same checker,
        # same realm and backend, another protocol.
        status, body, challenge = await reactor.defer_to_thread(
            http_get, http_port.port, "alice", "wonderland"
        )
        assert (status, body, challenge) == (200, "buy milk\n", None)
        status, body, challenge = await reactor.defer_to_thread(
            http_get, http_port.port, "alice", "wrong"
        )
        assert status == 401
        assert challenge == 'Basic realm="notes", charset="UTF-8"'
        # The checker refused the same way over the line protocol (after the
        # limiter's delay, counted for the user across both protocols).
        assert in_memory.limiter.failures(username="alice") == 1
        # Deployment 2: bob's note lands in a file; alice's memory notes are not there.
        answers = await line_session(
            disk_port.port, "LOGIN bob builder", "NOTE fix the roof", "LIST"
        )
        assert answers == ["OK logged in", "OK noted", "* fix the roof", "OK"]
        answers = await line_session(disk_port.port, "LOGIN alice wonderland", "LIST")
        assert answers == ["OK logged in", "OK"]
        for port in (line_port, http_port, disk_port):
            await port.stop_listening()

    run_on(reactor, main)
    assert (directory / "bob").read_text() == "fix the roof\n"


def test_a_wrong_login_over_the_line_protocol_is_refused_after_the_delay(tmp_path: Path) -> None:
    reactor = Reactor()
    checker = HtpasswdChecker(_users(tmp_path), threads=reactor)
    # A short delay, so that the test is quick; the answer still waits for it.
    limiter = LoginLimiter(reactor, base_delay=0.05)
    portal = Portal(
        notes.NotesRealm(notes.MemoryStore()), [checker], clock=reactor, limiter=limiter
    )
    port = reactor.listen_tcp(0, lambda _: notes.NotesProtocol(portal), interface="127.0.0.1")

    async def main() -> None:
        started = reactor.seconds()
        answers = await line_session(port.port, "LOGIN alice nope", "LOGIN carol nope", "QUIT")
        assert answers == ["NO login failed", "NO login failed", "OK bye"]
        assert reactor.seconds() - started >= 0.05 + 0.1  # 0.05s, then 0.1s held back
        await port.stop_listening()

    run_on(reactor, main)


def _users(tmp_path: Path) -> Path:
    users = tmp_path / "htpasswd"
    passwords = HtpasswdFile()
    passwords.set_password("alice", "wonderland", cost=4)
    passwords.save(users)
    return users
