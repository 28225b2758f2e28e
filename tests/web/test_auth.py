"""Tests for BasicAuth: logins through a cred Portal, 401s, one checker for two protocols."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from _http_server_helpers import Connection, connect

from torsion.cred import (
    Anonymous,
    AnonymousChecker,
    InMemoryChecker,
    Login,
    LoginLimiter,
    Portal,
    UnauthorizedLogin,
    UsernamePassword,
)
from torsion.defer import Deferred
from torsion.internet import Reactor
from torsion.protocols import DestinationRules, SOCKSServer, allow_destinations
from torsion.testing import Clock, require_peer
from torsion.web import BasicAuth, Request, Resource, Site, handles, parse_basic_credentials

CHALLENGE = b'Basic realm="members", charset="UTF-8"'


class Home(Resource):
    """A user's page: says whose it is and what path is left."""

    is_leaf = True

    def __init__(self, owner: str) -> None:
        super().__init__()
        self.owner = owner

    @handles("GET")
    def get(self, request: Request) -> bytes:
        return f"{self.owner}: {'/'.join(request.postpath)}".encode()


class SOCKSUse:
    """What a SOCKS login asks for: the right to use the proxy."""


class Realm:
    """One realm for both protocols: a page tree for the web, a pass for SOCKS."""

    def __init__(self) -> None:
        self.logins: list[str] = []
        self.logouts: list[str] = []

    def request_avatar(self, avatar_id: str, mind: object, /, *interfaces: type) -> Login:
        self.logins.append(avatar_id)
        if Resource in interfaces:
            tree = Resource()
            tree.put_child("home", Home(avatar_id or "anonymous"))
            return Login(Resource, tree, lambda: self.logouts.append(avatar_id))
        if SOCKSUse in interfaces:
            return Login(SOCKSUse, SOCKSUse(), lambda: None)
        raise NotImplementedError(interfaces)


def basic(user: str | bytes, password: str | bytes) -> str:
    raw = (user.encode() if isinstance(user, str) else user) + b":"
    raw += password.encode() if isinstance(password, str) else password
    return "Authorization: Basic " + base64.b64encode(raw).decode()


def request(path: str, *lines: str) -> bytes:
    head = [f"GET {path} HTTP/1.1", "Host: example.test", *lines, "", ""]
    return "\r\n".join(head).encode("utf-8")


def guarded(
    users: dict[str, str] | None = None, *, anonymous: bool = False
) -> tuple[Connection, Portal, Realm]:
    clock = Clock()
    realm = Realm()
    checkers: list[Any] = [InMemoryChecker(users or {"alice": "s3cret"})]
    if anonymous:
        checkers.append(AnonymousChecker())
    portal = Portal(realm, checkers, clock=clock)
    root = Resource()
    root.put_child("private", BasicAuth(portal, realm="members"))
    return connect(root, clock=clock), portal, realm


# -- parsing -----------------------------------------------------------------------


def pair(value: bytes) -> tuple[str, str] | None:
    credentials = parse_basic_credentials(value)
    return None if credentials is None else (credentials.username, credentials.password)


def test_parse_basic_credentials() -> None:
    assert pair(b"Basic " + base64.b64encode(b"alice:pa:ss")) == ("alice", "pa:ss")
    assert pair(b"bAsIc " + base64.b64encode(b"a:")) == ("a", "")
    utf8 = b"Basic " + base64.b64encode("j\xf6s\xe9:p\xe4ss".encode())
    assert pair(utf8) == ("j\xf6s\xe9", "p\xe4ss")
    latin1 = b"Basic " + base64.b64encode("j\xf6s:p".encode("latin-1"))
    assert pair(latin1) == ("j\xf6s", "p")
    assert isinstance(parse_basic_credentials(latin1), UsernamePassword)


@pytest.mark.parametrize(
    "value",
    [
        b"Bearer abc",
        b"Basic",
        b"Basic !!!!",
        b"Basic " + base64.b64encode(b"no colon"),
        b"Basic YTpi*",
        b"Basic " + b"QUFB" * 2000,
    ],
)
def test_values_that_are_not_basic_credentials(value: bytes) -> None:
    assert parse_basic_credentials(value) is None


# -- the resource --------------------------------------------------------------------


def test_no_credentials_gets_401_with_the_challenge() -> None:
    conn, _, realm = guarded()
    conn.send(request("/private/home/x"))
    [response] = conn.responses()
    assert response.status == 401
    assert response.header(b"www-authenticate") == CHALLENGE
    assert b"alice" not in response.body
    assert realm.logins == []
    conn.lose()


def test_the_users_tree_is_walked_and_logged_out_after() -> None:
    conn, _, realm = guarded()
    conn.send(request("/private/home/a/b", basic("alice", "s3cret")))
    [response] = conn.responses()
    assert (response.status, response.body) == (200, b"alice: a/b")
    assert realm.logins == ["alice"]
    assert realm.logouts == ["alice"]
    conn.send(request("/private/elsewhere", basic("alice", "s3cret")))
    [response] = conn.responses()
    assert response.status == 404
    conn.lose()


def test_a_wrong_password_is_answered_after_the_limiters_delay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    conn, portal, realm = guarded()
    with caplog.at_level(logging.INFO, logger="torsion.cred.audit"):
        conn.send(request("/private/home", basic("alice", "hunter2")))
        assert conn.take() == b""
        conn.clock.advance(portal.limiter.delay_after(1))
    [response] = conn.responses()
    assert response.status == 401
    assert response.header(b"www-authenticate") == CHALLENGE
    assert portal.limiter.failures(username="alice") == 1
    assert realm.logins == []
    text = caplog.text
    assert "alice" in text
    assert "hunter2" not in text
    conn.lose()


def test_malformed_credentials_are_401_without_a_login() -> None:
    conn, portal, _ = guarded()
    conn.send(request("/private/home", "Authorization: Basic !!!"))
    conn.send(request("/private/home", "Authorization: Digest x=1"))
    responses = conn.responses()
    assert [r.status for r in responses] == [401, 401]
    assert portal.limiter.failures(username="alice") == 0
    conn.lose()


def test_utf8_user_names_and_passwords() -> None:
    conn, _, _ = guarded({"j\xf6s\xe9": "p\xe4ss"})
    conn.send(request("/private/home", basic("j\xf6s\xe9", "p\xe4ss")))
    [response] = conn.responses()
    assert (response.status, response.body.decode()) == (200, "j\xf6s\xe9: ")
    conn.lose()


def test_anonymous_when_the_portal_takes_it() -> None:
    conn, portal, _ = guarded(anonymous=True)
    assert Anonymous in portal.credential_types
    conn.send(request("/private/home"))
    [response] = conn.responses()
    assert (response.status, response.body) == (200, b"anonymous: ")
    conn.lose()


def test_a_client_that_leaves_during_the_delay_cancels_its_login() -> None:
    conn, portal, realm = guarded()
    conn.send(request("/private/home", basic("alice", "wrong")))
    assert conn.clock.get_delayed_calls() != []
    assert portal.limiter.failures(username="alice") == 1
    conn.lose()
    assert realm.logins == []
    # The limiter's delay and the connection's timer are both gone.
    assert conn.clock.get_delayed_calls() == []
    assert conn.take() == b""


def test_the_realm_must_give_a_resource(caplog: pytest.LogCaptureFixture) -> None:
    class Wrong:
        def request_avatar(self, avatar_id: str, mind: object, /, *interfaces: type) -> Login:
            return Login(Resource, "not a resource", lambda: None)

    clock = Clock()
    portal = Portal(Wrong(), [InMemoryChecker({"a": "b"})], clock=clock)
    conn = connect(BasicAuth(portal), clock=clock)
    with caplog.at_level(logging.ERROR, logger="torsion.web"):
        conn.send(request("/", basic("a", "b")))
    [response] = conn.responses()
    assert response.status == 500
    assert "not a Resource" in caplog.text
    conn.lose()


def test_the_realm_name_is_quoted() -> None:
    portal = Portal(Realm(), [InMemoryChecker({})], clock=Clock())
    conn = connect(BasicAuth(portal, realm='say "hi" \\ ok'))
    conn.send(request("/"))
    [response] = conn.responses()
    assert response.header(b"www-authenticate") == (
        b'Basic realm="say \\"hi\\" \\\\ ok", charset="UTF-8"'
    )
    conn.lose()
    with pytest.raises(ValueError, match="invalid header value"):
        BasicAuth(portal, realm="two\r\nlines")


# -- one checker, two protocols, on real sockets ---------------------------------------

BOTH_LOOPS = pytest.mark.parametrize(
    "loop",
    [
        pytest.param("asyncio", marks=pytest.mark.torsion_loop("asyncio")),
        pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop")),
    ],
)


async def curl(*argv: str) -> tuple[int, bytes, bytes]:
    process = await asyncio.create_subprocess_exec(
        require_peer("curl", package="curl"),
        "-sS",
        "--max-time",
        "10",
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode is not None
    return process.returncode, out, err


@asynccontextmanager
async def listening(reactor: Reactor, factory: Callable[[Any], Any]) -> AsyncIterator[int]:
    protocols: list[Any] = []
    ended: list[Deferred[None]] = []

    def tracked(address: Any) -> Any:
        protocol = factory(address)
        done: Deferred[None] = Deferred()
        ended.append(done)
        original = protocol.connection_lost

        def connection_lost(exc: Exception | None) -> None:
            original(exc)
            done.callback(None)

        protocol.connection_lost = connection_lost
        protocols.append(protocol)
        return protocol

    listener = reactor.listen_tcp(0, tracked, interface="127.0.0.1")
    try:
        yield listener.port
    finally:
        await listener.stop_listening()
        for done in ended:
            await asyncio.wait_for(asyncio.ensure_future(_wait(done)), 10)


async def _wait(d: Deferred[None]) -> None:
    await d


@pytest.mark.integration
@BOTH_LOOPS
async def test_one_checker_guards_a_socks_proxy_and_a_web_resource(
    reactor: Reactor, loop: str
) -> None:
    # One checker object, one portal (so one limiter and one audit log), two
    # protocols: SOCKS 5 passwords (RFC 1929) and HTTP Basic.
    checker = InMemoryChecker({"alice": "s3cret"})
    realm = Realm()
    portal = Portal(realm, [checker], clock=reactor, limiter=LoginLimiter(reactor, base_delay=0))

    async def authenticate(username: str, password: str) -> bool:
        try:
            login = await portal.login(UsernamePassword(username, password), None, SOCKSUse)
        except UnauthorizedLogin:
            return False
        login.logout()
        return True

    socks = SOCKSServer(
        reactor,
        rules=DestinationRules([allow_destinations(networks=["127.0.0.1/32"])]),
        authenticate=authenticate,
    )
    root = Resource()
    root.put_child("private", BasicAuth(portal, realm="members"))
    site = Site(root, reactor=reactor)
    async with listening(reactor, site) as web_port, listening(reactor, socks) as socks_port:
        url = f"http://127.0.0.1:{web_port}/private/home/page"
        proxy = ["--socks5", f"127.0.0.1:{socks_port}"]
        both = await curl(*proxy, "--proxy-user", "alice:s3cret", "-u", "alice:s3cret", url)
        assert both == (0, b"alice: page", b"")
        bad_web = await curl(*proxy, "--proxy-user", "alice:s3cret", "-u", "alice:nope",
                             "-w", "%{http_code} %header{www-authenticate}", "-o", "/dev/null",
                             url)  # fmt: skip
        assert bad_web[:2] == (0, b'401 Basic realm="members", charset="UTF-8"')
        bad_socks = await curl(*proxy, "--proxy-user", "alice:nope", "-u", "alice:s3cret", url)
        assert bad_socks[0] != 0
        assert b"rejected" in bad_socks[2].lower()
    # The refusals of both protocols were counted by the one limiter.
    assert portal.limiter.failures(username="alice") == 2
    assert realm.logins.count("alice") == 3  # SOCKS and web, then SOCKS again
