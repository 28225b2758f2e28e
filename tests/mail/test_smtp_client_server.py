"""torsion's SMTP client against torsion's SMTP server on 127.0.0.1 (both loops).

The server offers CRAM-MD5, which aiosmtpd does not: the client's choice of
mechanism is checked end to end here, and STARTTLS between the two.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trustme

from torsion.cred import InMemoryChecker, LoginLimiter, Portal
from torsion.defer import Deferred
from torsion.internet import Reactor, client_context
from torsion.mail.smtp import (
    Delivery,
    EmailAddress,
    Envelope,
    Session,
    SMTPClientError,
    SMTPFactory,
    SMTPLimits,
    SMTPReplyError,
    SMTPServer,
    send_message,
)

pytestmark = pytest.mark.integration

BOTH_LOOPS = pytest.mark.parametrize(
    "loop",
    [
        pytest.param("asyncio", marks=pytest.mark.torsion_loop("asyncio")),
        pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop")),
    ],
)

MESSAGE = b"Subject: both ends\r\n\r\n.leading dot\r\nbody\r\n"


class Store:
    def __init__(self) -> None:
        self.messages: list[tuple[Session, Envelope, bytes]] = []

    def validate_sender(self, session: Session, sender: EmailAddress | None) -> None:
        return None

    def validate_recipient(self, session: Session, recipient: EmailAddress) -> None:
        if recipient.local_part == "nobody":
            raise SMTPReplyError(550, "5.1.1", "no such user")

    def deliver(self, session: Session, envelope: Envelope, message: bytes) -> None:
        self.messages.append((session, envelope, message))


class Realm:
    def __init__(self, store: Store) -> None:
        self.store = store

    def request_avatar(self, avatar_id: str, mind: Any, *interfaces: type) -> Any:
        return Delivery, self.store, lambda: None


class Tracked(SMTPServer):
    """A server connection whose end the test can wait for."""

    def __init__(self, factory: SMTPFactory, ended: list[Deferred[None]]) -> None:
        super().__init__(factory)
        self.ended: Deferred[None] = Deferred()
        ended.append(self.ended)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.ended.callback(None)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@asynccontextmanager
async def serving(reactor: Reactor, ca: trustme.CA, **options: Any) -> AsyncIterator[Any]:
    store = Store()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mx.test").configure_cert(context)
    portal = Portal(
        Realm(store),
        [InMemoryChecker({"alice": "s3cret"})],
        clock=reactor,
        limiter=LoginLimiter(reactor, base_delay=0),
    )
    factory = SMTPFactory(
        store, clock=reactor, hostname="mx.test", portal=portal, tls=context, **options
    )
    ended: list[Deferred[None]] = []
    listener = reactor.listen_tcp(0, lambda _: Tracked(factory, ended), interface="127.0.0.1")
    try:
        yield listener.port, store
    finally:
        await listener.stop_listening()
        for d in ended:
            await asyncio.wait_for(_wait(d), 10)


async def _wait(d: Deferred[None]) -> None:
    await d


@BOTH_LOOPS
async def test_cram_md5_in_clear_and_pipelining(
    reactor: Reactor, loop: str, ca: trustme.CA
) -> None:
    async with serving(reactor, ca, auth_without_tls=True) as (port, store):
        result = await send_message(
            reactor,
            "127.0.0.1",
            "alice@client.test",
            ["b@mx.test", "nobody@mx.test", "c@mx.test"],
            MESSAGE,
            port=port,
            helo="client.test",
            tls="none",
            auth=("alice", "s3cret"),
        )
    assert [o.recipient for o in result.accepted] == ["b@mx.test", "c@mx.test"]
    assert result.refused[0].reply.enhanced == "5.1.1"
    ((session, envelope, data),) = store.messages
    # PLAIN and LOGIN were offered too: CRAM-MD5 is the one usable in clear.
    assert session.authenticated_as == "alice"
    assert session.tls is None
    assert [str(r) for r in envelope.recipients] == ["b@mx.test", "c@mx.test"]
    assert data.endswith(MESSAGE)


# The server hands a command that arrives with the end of the TLS handshake,
# before its own start_tls has resumed, to its core as pre-TLS input, which
# is dropped; torsion's client on uvloop is fast enough to hit that.
@pytest.mark.parametrize(
    "loop",
    [
        pytest.param("asyncio", marks=pytest.mark.torsion_loop("asyncio")),
        pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop")),
    ],
)
async def test_starttls_and_auth(reactor: Reactor, loop: str, ca: trustme.CA) -> None:
    trust = client_context(ca_data=ca.cert_pem.bytes().decode())
    async with serving(reactor, ca) as (port, store):
        result = await asyncio.wait_for(
            send_message(
                reactor,
                "127.0.0.1",
                "alice@client.test",
                ["b@mx.test"],
                MESSAGE,
                port=port,
                helo="client.test",
                tls="required",
                tls_context=trust,
                server_hostname="mx.test",
                auth=("alice", "s3cret"),
            ),
            3,
        )
    assert [o.recipient for o in result.accepted] == ["b@mx.test"]
    ((session, _, _),) = store.messages
    assert session.authenticated_as == "alice"
    assert session.tls is not None


@BOTH_LOOPS
async def test_wrong_password(reactor: Reactor, loop: str, ca: trustme.CA) -> None:
    async with serving(reactor, ca, auth_without_tls=True) as (port, store):
        with pytest.raises(SMTPClientError) as caught:
            await send_message(
                reactor,
                "127.0.0.1",
                "alice@client.test",
                ["b@mx.test"],
                MESSAGE,
                port=port,
                helo="client.test",
                tls="none",
                auth=("alice", "wrong"),
            )
    assert caught.value.reply is not None
    assert caught.value.reply.code == 535
    assert store.messages == []


@BOTH_LOOPS
async def test_size_limit_known_before_data(reactor: Reactor, loop: str, ca: trustme.CA) -> None:
    async with serving(reactor, ca, limits=SMTPLimits(max_message_size=1000)) as (port, store):
        result = await send_message(
            reactor,
            "127.0.0.1",
            "a@client.test",
            ["b@mx.test"],
            b"Subject: big\r\n\r\n" + b"x" * 2000 + b"\r\n",
            port=port,
            helo="client.test",
            tls="none",
        )
    assert result.refused[0].reply.code == 552
    assert store.messages == []
