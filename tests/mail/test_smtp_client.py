"""send_message against aiosmtpd on 127.0.0.1 (both loops), and the glue on fakes."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest
import trustme
from _aiosmtpd import Handler, authenticator, serving

from _servers import BOTH_LOOPS
from torsion.internet import Reactor, TCPClientEndpoint, client_context
from torsion.mail.smtp._client import SMTPClientProtocol, send_message
from torsion.mail.smtp._client_core import ClientSession, SendResult, SMTPClientError, TLSMode
from torsion.testing import Clock, StringTransport

MESSAGE = b"From: a@client.test\nTo: b@mx.test\nSubject: hi\n\nline\n.starts with a dot\n"


@pytest.fixture
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    return client_context(ca_data=ca.cert_pem.bytes().decode())


# -- real sockets, real server -----------------------------------------------


@pytest.mark.integration
@BOTH_LOOPS
async def test_send_with_outcomes_per_recipient(reactor: Reactor, loop: str) -> None:
    handler = Handler(refuse={"x@mx.test"}, defer={"y@mx.test"})
    async with serving(handler) as port:
        result = await send_message(
            reactor,
            "127.0.0.1",
            "a@client.test",
            ["b@mx.test", "x@mx.test", "y@mx.test"],
            MESSAGE,
            port=port,
            helo="client.test",
            tls="none",
        )
    assert [o.recipient for o in result.accepted] == ["b@mx.test"]
    assert result.refused[0].reply.code == 550
    assert result.refused[0].reply.enhanced == "5.1.1"
    assert result.temporary[0].reply.code == 450
    (received,) = handler.messages
    assert received.sender == "a@client.test"
    assert received.recipients == ["b@mx.test"]
    # aiosmtpd undoes the dot-stuffing and keeps CRLF line ends.
    assert received.data == MESSAGE.replace(b"\n", b"\r\n")
    assert not received.tls


@pytest.mark.integration
@BOTH_LOOPS
async def test_starttls_and_auth(
    reactor: Reactor, loop: str, server_context: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    handler = Handler()
    async with serving(
        handler,
        tls_context=server_context,
        require_starttls=True,
        authenticator=authenticator({"alice": "secret"}),
        auth_required=True,
    ) as port:
        result = await send_message(
            reactor,
            TCPClientEndpoint(reactor, "127.0.0.1", port),
            "alice@client.test",
            ["b@mx.test"],
            MESSAGE,
            helo="client.test",
            tls="required",
            tls_context=client_tls,
            server_hostname="localhost",
            auth=("alice", "secret"),
        )
    assert [o.recipient for o in result.accepted] == ["b@mx.test"]
    (received,) = handler.messages
    assert received.tls
    assert received.login == "alice"


@pytest.mark.integration
@BOTH_LOOPS
async def test_wrong_password_is_a_session_failure(
    reactor: Reactor, loop: str, server_context: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    handler = Handler()
    async with serving(
        handler, tls_context=server_context, authenticator=authenticator({"alice": "secret"})
    ) as port:
        with pytest.raises(SMTPClientError, match="authentication failed") as caught:
            await send_message(
                reactor,
                "localhost",
                "alice@client.test",
                ["b@mx.test"],
                MESSAGE,
                port=port,
                helo="client.test",
                tls="required",
                tls_context=client_tls,
                auth=("alice", "wrong"),
            )
    assert caught.value.permanent
    assert handler.messages == []


@pytest.mark.integration
@BOTH_LOOPS
async def test_certificate_not_trusted_fails(
    reactor: Reactor, loop: str, server_context: ssl.SSLContext
) -> None:
    async with serving(Handler(), tls_context=server_context) as port:
        with pytest.raises(SMTPClientError, match="STARTTLS handshake failed"):
            await send_message(
                reactor,
                "127.0.0.1",
                "a@client.test",
                ["b@mx.test"],
                MESSAGE,
                port=port,
                helo="client.test",
                tls="opportunistic",
            )


@pytest.mark.integration
@BOTH_LOOPS
async def test_plain_auth_refused_in_clear(reactor: Reactor, loop: str) -> None:
    handler = Handler()
    async with serving(
        handler, authenticator=authenticator({"alice": "secret"}), auth_require_tls=False
    ) as port:
        with pytest.raises(SMTPClientError, match="need TLS"):
            await send_message(
                reactor,
                "127.0.0.1",
                "a@client.test",
                ["b@mx.test"],
                MESSAGE,
                port=port,
                helo="client.test",
                auth=("alice", "secret"),
            )
        result = await send_message(
            reactor,
            "127.0.0.1",
            "a@client.test",
            ["b@mx.test"],
            MESSAGE,
            port=port,
            helo="client.test",
            auth=("alice", "secret"),
            allow_plaintext_auth=True,
        )
    assert result.accepted
    assert handler.messages[0].login == "alice"


@pytest.mark.integration
@BOTH_LOOPS
async def test_size_limit_refused_before_data(reactor: Reactor, loop: str) -> None:
    handler = Handler()
    async with serving(handler, data_size_limit=100) as port:
        result = await send_message(
            reactor,
            "127.0.0.1",
            "a@client.test",
            ["b@mx.test"],
            b"Subject: big\n\n" + b"x" * 200 + b"\n",
            port=port,
            helo="client.test",
        )
    assert result.refused[0].reply.code == 552
    assert handler.messages == []


@pytest.mark.integration
@BOTH_LOOPS
async def test_smtputf8(reactor: Reactor, loop: str) -> None:
    handler = Handler()
    async with serving(handler, enable_SMTPUTF8=True) as port:
        result = await send_message(
            reactor,
            "127.0.0.1",
            "a@client.test",
            ["ü@mx.test"],
            "Subject: é\n\nü\n".encode(),
            port=port,
            helo="client.test",
        )
    assert result.accepted
    assert handler.messages[0].recipients == ["ü@mx.test"]


# -- the glue on fakes -------------------------------------------------------


def connected(clock: Clock) -> Iterator[tuple[SMTPClientProtocol, StringTransport]]:
    session = ClientSession(
        helo="c.test",
        sender="a@c.test",
        recipients=["b@mx.test"],
        message=b"x\n",
        tls=TLSMode.NONE,
    )
    protocol = SMTPClientProtocol(session, clock)  # type: ignore[arg-type]
    transport = StringTransport()
    protocol.connection_made(transport)
    yield protocol, transport


def test_silent_server_times_out(clock: Clock) -> None:
    ((protocol, transport),) = connected(clock)
    failures: list[BaseException] = []
    protocol.finished.add_errback(failures.append)
    clock.advance(299)
    assert failures == []
    clock.advance(1)
    assert transport.aborted
    assert isinstance(failures[0], SMTPClientError)
    protocol.connection_lost(None)
    assert clock.get_delayed_calls() == []


def test_each_reply_rearms_the_timer(clock: Clock) -> None:
    ((protocol, transport),) = connected(clock)
    clock.advance(200)
    protocol.data_received(b"220 hi\r\n")
    clock.advance(200)
    assert not transport.aborted
    protocol.data_received(b"250 mx\r\n")
    assert transport.value().endswith(b"MAIL FROM:<a@c.test>\r\n")
    protocol.data_received(b"250 ok\r\n250 ok\r\n354 go\r\n")
    results: list[SendResult] = []
    protocol.finished.add_callback(results.append)
    protocol.data_received(b"250 ok\r\n")
    assert results[0].accepted
    # QUIT's reply is waited for briefly, then the connection is cut.
    clock.advance(30)
    assert [transport.aborted] == [True]
    protocol.connection_lost(None)
    assert clock.get_delayed_calls() == []


def test_quit_reply_closes(clock: Clock) -> None:
    ((protocol, transport),) = connected(clock)
    protocol.data_received(b"220 hi\r\n250 mx\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    protocol.data_received(b"250 ok\r\n221 bye\r\n")
    assert transport.closed
    assert clock.get_delayed_calls() == []
    protocol.connection_lost(None)
    assert protocol.closed.called


def test_a_full_write_buffer_gets_the_data_block_timeout(clock: Clock) -> None:
    ((protocol, transport),) = connected(clock)
    failures: list[BaseException] = []
    protocol.finished.add_errback(failures.append)
    protocol.data_received(b"220 hi\r\n250 mx\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    (timer,) = clock.get_delayed_calls()
    assert timer.get_time() == 600
    protocol.pause_writing()
    (timer,) = clock.get_delayed_calls()
    assert timer.get_time() == 180
    clock.advance(170)
    protocol.resume_writing()
    (timer,) = clock.get_delayed_calls()
    # DATA's reply may take 10 minutes from the end of the message.
    assert timer.get_time() == 170 + 600
    clock.advance(600)
    assert transport.aborted
    assert isinstance(failures[0], SMTPClientError)
    protocol.connection_lost(None)
