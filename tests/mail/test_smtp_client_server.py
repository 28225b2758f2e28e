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

from _servers import (
    BOTH_LOOPS,
    Connections,
    DeliveryRealm,
    MemoryDelivery,
    alice_portal,
    listening,
)
from torsion.internet import Reactor, client_context
from torsion.mail.smtp import (
    SMTPClientError,
    SMTPFactory,
    SMTPLimits,
    SMTPServer,
    send_message,
)

pytestmark = pytest.mark.integration

MESSAGE = b"Subject: both ends\r\n\r\n.leading dot\r\nbody\r\n"


@asynccontextmanager
async def serving(reactor: Reactor, ca: trustme.CA, **options: Any) -> AsyncIterator[Any]:
    store = MemoryDelivery()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mx.test").configure_cert(context)
    portal = alice_portal(reactor, DeliveryRealm(store))
    factory = SMTPFactory(
        store, clock=reactor, hostname="mx.test", portal=portal, tls=context, **options
    )
    async with listening(reactor, SMTPServer, factory, Connections()) as port:
        yield port, store


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
@BOTH_LOOPS
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
