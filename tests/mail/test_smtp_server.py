"""The ESMTP server protocol on fakes: a StringTransport, a fake Clock and in-memory deliveries."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from torsion.cred import InMemoryChecker, LoginLimiter, Portal
from torsion.defer import Deferred
from torsion.internet import IPv6Address
from torsion.mail.smtp import (
    Delivery,
    EmailAddress,
    Envelope,
    Session,
    SMTPFactory,
    SMTPLimits,
    SMTPReplyError,
    SMTPServer,
    received_header,
)
from torsion.testing import Clock, StringTransport


class MemoryDelivery:
    """Keeps every message; refuses recipients at ``refused.test``."""

    def __init__(self, name: str = "default") -> None:
        self.name = name
        self.messages: list[tuple[Session, Envelope, bytes]] = []
        self.senders: list[EmailAddress | None] = []

    def validate_sender(self, session: Session, sender: EmailAddress | None) -> None:
        self.senders.append(sender)

    def validate_recipient(self, session: Session, recipient: EmailAddress) -> None:
        if recipient.domain == "refused.test":
            raise SMTPReplyError(550, "5.1.1", "no such user")
        if recipient.domain == "later.test":
            raise SMTPReplyError(450, "4.2.1", "try later")

    def deliver(self, session: Session, envelope: Envelope, message: bytes) -> None:
        self.messages.append((session, envelope, message))


class SlowDelivery(MemoryDelivery):
    """Stores a message only when the test fires its Deferred."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[Deferred[None]] = []

    def deliver(self, session: Session, envelope: Envelope, message: bytes) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.pending.append(d)
        d.add_callback(lambda _: self.messages.append((session, envelope, message)))
        return d


class Realm:
    def __init__(self) -> None:
        self.logged_out: list[str] = []
        self.avatars: dict[str, MemoryDelivery] = {}

    def request_avatar(self, avatar_id: str, mind: Any, *interfaces: type) -> Any:
        assert interfaces == (Delivery,)
        avatar = self.avatars[avatar_id] = MemoryDelivery(avatar_id)
        return Delivery, avatar, lambda: self.logged_out.append(avatar_id)


def connect(
    delivery: Any, clock: Clock | None = None, **kwargs: Any
) -> tuple[SMTPServer, StringTransport, Clock]:
    clock = clock or Clock()
    factory = SMTPFactory(delivery, clock=clock, hostname="mx.test", **kwargs)
    transport = StringTransport()
    protocol = factory(transport.peer)
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    assert transport.value() == b"220 mx.test ESMTP torsion\r\n"
    transport.clear()
    return protocol, transport, clock


def say(protocol: SMTPServer, transport: StringTransport, data: bytes) -> bytes:
    protocol.data_received(data)
    out = transport.value()
    transport.clear()
    return out


def test_message_delivered_with_received_header() -> None:
    delivery = MemoryDelivery()
    protocol, transport, _ = connect(delivery)
    out = say(
        protocol,
        transport,
        b"EHLO client.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n"
        b"RCPT TO:<c@refused.test>\r\nRCPT TO:<d@later.test>\r\nDATA\r\n"
        b"Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n",
    )
    assert out.decode().split("\r\n")[-8:] == [
        "250 2.1.0 Sender OK",
        "250 2.1.5 Recipient OK",
        "550 5.1.1 no such user",
        "450 4.2.1 try later",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 2.0.0 OK: message accepted",
        "221 2.0.0 mx.test Bye",
        "",
    ]
    assert transport.closed
    ((session, envelope, message),) = delivery.messages
    assert session.helo == "client.test"
    assert session.tls is None
    assert envelope.recipients == (EmailAddress("b", "y.test"),)
    header, _, rest = message.partition(b"\r\n\r\n")
    assert rest == b"body\r\n"
    assert header.startswith(
        b"Received: from client.test ([192.0.2.2])\r\n\tby mx.test with ESMTP id "
    )
    assert b"\r\n\tfor <b@y.test>;\r\n\t" in header
    assert header.endswith(b"+0000\r\nSubject: hi")


def test_250_only_once_stored_and_reading_paused() -> None:
    delivery = SlowDelivery()
    protocol, transport, _ = connect(delivery)
    out = say(
        protocol,
        transport,
        b"HELO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\nx\r\n.\r\nNOOP\r\n",
    )
    assert out.endswith(b"354 End data with <CR><LF>.<CR><LF>\r\n")
    assert not transport.is_reading()
    assert delivery.messages == []
    (d,) = delivery.pending
    d.callback(None)
    assert transport.value() == b"250 2.0.0 OK: message accepted\r\n250 2.0.0 OK\r\n"
    assert transport.is_reading()
    assert len(delivery.messages) == 1


def test_failed_storage_is_not_acknowledged(caplog: pytest.LogCaptureFixture) -> None:
    delivery = SlowDelivery()
    protocol, transport, _ = connect(delivery)
    say(protocol, transport, b"HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<b@y.test>\r\nDATA\r\nx\r\n.\r\n")
    with caplog.at_level(logging.ERROR, "torsion.mail.smtp"):
        delivery.pending[0].errback(OSError("disk on fire"))
    assert transport.value() == b"451 4.3.0 Local error in processing; try again later\r\n"
    assert "delivery failed" in caplog.text
    transport.clear()
    assert say(protocol, transport, b"RCPT TO:<b@y.test>\r\n").startswith(b"503")


def test_client_vanishing_mid_data_delivers_nothing() -> None:
    delivery = MemoryDelivery()
    protocol, transport, clock = connect(delivery)
    say(protocol, transport, b"EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n")
    say(protocol, transport, b"half a message\r\n.")
    protocol.connection_lost(ConnectionResetError())
    assert delivery.messages == []
    assert clock.get_delayed_calls() == []


def test_client_vanishing_during_delivery_still_stores() -> None:
    delivery = SlowDelivery()
    protocol, transport, clock = connect(delivery)
    say(protocol, transport, b"HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<b@y.test>\r\nDATA\r\nx\r\n.\r\n")
    protocol.connection_lost(None)
    delivery.pending[0].callback(None)
    assert len(delivery.messages) == 1
    assert transport.value() == b""
    assert clock.get_delayed_calls() == []


def test_timeout_closes_with_421() -> None:
    protocol, transport, clock = connect(
        MemoryDelivery(), limits=SMTPLimits(command_timeout=60, data_timeout=30)
    )
    clock.advance(50)
    say(protocol, transport, b"HELO c\r\n")
    clock.advance(50)  # 100 s since connecting, 50 s since the last command
    assert not transport.closed
    say(protocol, transport, b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n")
    clock.advance(29)
    assert not transport.closed
    clock.advance(2)
    assert transport.value() == b"421 4.4.2 mx.test Timeout exceeded, closing connection\r\n"
    assert transport.closed
    protocol.connection_lost(None)
    assert clock.get_delayed_calls() == []


def test_no_timeout_while_the_server_works() -> None:
    delivery = SlowDelivery()
    protocol, transport, clock = connect(delivery, limits=SMTPLimits(command_timeout=10))
    say(protocol, transport, b"HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<b@y.test>\r\nDATA\r\nx\r\n.\r\n")
    clock.advance(100)
    assert not transport.closed
    delivery.pending[0].callback(None)
    clock.advance(9)
    assert not transport.closed
    clock.advance(1)
    assert transport.closed


def portal(clock: Clock, realm: Realm) -> Portal:
    return Portal(
        realm,
        [InMemoryChecker({"alice": "secret"})],
        clock=clock,
        limiter=LoginLimiter(clock, base_delay=0),
    )


def test_auth_through_portal_switches_delivery_and_logs_out() -> None:
    import base64

    default = MemoryDelivery()
    realm = Realm()
    clock = Clock()
    protocol, transport, _ = connect(
        default, clock, portal=portal(clock, realm), auth_without_tls=True
    )
    out = say(protocol, transport, b"EHLO c\r\n")
    assert b"250-AUTH PLAIN LOGIN CRAM-MD5\r\n" in out
    bad = base64.b64encode(b"\0alice\0wrong")
    assert say(protocol, transport, b"AUTH PLAIN " + bad + b"\r\n") == (
        b"535 5.7.8 Authentication credentials invalid\r\n"
    )
    good = base64.b64encode(b"\0alice\0secret")
    assert say(protocol, transport, b"AUTH PLAIN " + good + b"\r\n") == (
        b"235 2.7.0 Authentication successful\r\n"
    )
    say(
        protocol,
        transport,
        b"MAIL FROM:<alice@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\nx\r\n.\r\n",
    )
    assert default.messages == []
    ((session, _, message),) = realm.avatars["alice"].messages
    assert session.authenticated_as == "alice"
    assert b" with ESMTPA id " in message
    protocol.connection_lost(None)
    assert realm.logged_out == ["alice"]


def test_auth_not_offered_without_portal_or_tls() -> None:
    clock = Clock()
    protocol, transport, _ = connect(MemoryDelivery(), clock, portal=portal(clock, Realm()))
    out = say(protocol, transport, b"EHLO c\r\nAUTH PLAIN AGFAYg==\r\n")
    assert b"AUTH" not in out.split(b"\r\n250 HELP")[0]
    assert out.endswith(
        b"538 5.7.11 Encryption required for requested authentication mechanism\r\n"
    )
    protocol, transport, _ = connect(MemoryDelivery(), clock)
    out = say(protocol, transport, b"EHLO c\r\nAUTH PLAIN AGFAYg==\r\n")
    assert out.endswith(b"502 5.5.1 AUTH not available\r\n")


def test_received_header_shapes() -> None:
    envelope = Envelope(
        sender=None,
        recipients=(EmailAddress("a", "x.test"), EmailAddress("b", "x.test")),
        smtputf8=True,
    )
    session = Session(
        hostname="mx.test",
        helo="c.test",
        peer=IPv6Address("2001:db8::1", 25, 0, 0),
        tls="TLSv1.3",
        authenticated_as="u",
    )
    header = received_header(session, envelope, id="abc")
    assert header.startswith(
        b"Received: from c.test ([IPv6:2001:db8::1])\r\n"
        b"\tby mx.test with UTF8SMTPSA (TLSv1.3) id abc;"
    )
    assert b"for <" not in header  # several recipients are not named


def test_shut_down_says_421_and_a_delivery_still_finishes() -> None:
    delivery = SlowDelivery()
    protocol, transport, clock = connect(delivery)
    say(protocol, transport, b"HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<b@y.test>\r\nDATA\r\nx\r\n.\r\n")
    protocol.shut_down()
    assert transport.value() == (
        b"421 4.3.2 mx.test Service shutting down, closing connection\r\n"
    )
    assert transport.closed
    delivery.pending[0].callback(None)
    assert len(delivery.messages) == 1
    assert transport.value().count(b"\r\n") == 1  # no 250 after the 421
    protocol.connection_lost(None)
    assert clock.get_delayed_calls() == []


class AnswerNowDelivery(MemoryDelivery):
    """Answers each question at once: refusals raised, a failure raised, plain values."""

    def validate_sender(  # type: ignore[override]
        self, session: Session, sender: EmailAddress | None
    ) -> object:
        super().validate_sender(session, sender)
        return "accepted"  # a plain value is an acceptance too

    def deliver(self, session: Session, envelope: Envelope, message: bytes) -> None:
        if b"too big" in message:
            raise SMTPReplyError(552, "5.3.4", "Message too big for system")
        if b"crash" in message:
            raise OSError("disk on fire")
        super().deliver(session, envelope, message)


class CoroutineDelivery(MemoryDelivery):
    """Answers through coroutines that finish at once."""

    async def validate_recipient(  # type: ignore[override]
        self, session: Session, recipient: EmailAddress
    ) -> None:
        super().validate_recipient(session, recipient)

    async def deliver(  # type: ignore[override]
        self, session: Session, envelope: Envelope, message: bytes
    ) -> None:
        super().deliver(session, envelope, message)


def test_answers_given_at_once_keep_pipelined_replies_in_order(
    caplog: pytest.LogCaptureFixture,
) -> None:
    delivery = AnswerNowDelivery()
    protocol, transport, _ = connect(delivery)
    writes: list[bytes] = []
    write = transport.write

    def counted_write(data: bytes) -> None:
        writes.append(data)
        write(data)

    transport.write = counted_write  # type: ignore[method-assign,assignment]
    transaction = (
        b"MAIL FROM:<a@x.test>\r\nRCPT TO:<c@refused.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n"
    )
    with caplog.at_level(logging.ERROR, "torsion.mail.smtp"):
        out = say(
            protocol,
            transport,
            b"EHLO c\r\n"
            + transaction
            + b"too big\r\n.\r\n"
            + transaction
            + b"crash\r\n.\r\n"
            + transaction
            + b"fine\r\n.\r\nQUIT\r\n",
        )
    lines = out.decode().split("\r\n")
    assert lines[lines.index("250 HELP") + 1 :] == [
        *["250 2.1.0 Sender OK", "550 5.1.1 no such user", "250 2.1.5 Recipient OK"],
        "354 End data with <CR><LF>.<CR><LF>",
        "552 5.3.4 Message too big for system",
        *["250 2.1.0 Sender OK", "550 5.1.1 no such user", "250 2.1.5 Recipient OK"],
        "354 End data with <CR><LF>.<CR><LF>",
        "451 4.3.0 Local error in processing; try again later",
        *["250 2.1.0 Sender OK", "550 5.1.1 no such user", "250 2.1.5 Recipient OK"],
        "354 End data with <CR><LF>.<CR><LF>",
        "250 2.0.0 OK: message accepted",
        "221 2.0.0 mx.test Bye",
        "",
    ]
    assert len(writes) == 1  # the replies to one read go out in one write
    assert "SMTP delivery failed; answered 451" in caplog.text
    ((_, envelope, message),) = delivery.messages
    assert envelope.recipients == (EmailAddress("b", "y.test"),)
    assert message.startswith(b"Received: from c (")
    assert message.endswith(b" +0000\r\nfine\r\n")


def test_coroutine_answers_are_waited_for() -> None:
    delivery = CoroutineDelivery()
    protocol, transport, _ = connect(delivery)
    out = say(
        protocol,
        transport,
        b"HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<c@refused.test>\r\nRCPT TO:<b@y.test>\r\n"
        b"DATA\r\nx\r\n.\r\n",
    )
    assert out.decode().split("\r\n")[1:] == [
        "250 2.1.0 Sender OK",
        "550 5.1.1 no such user",
        "250 2.1.5 Recipient OK",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 2.0.0 OK: message accepted",
        "",
    ]
    assert len(delivery.messages) == 1


def test_one_session_object_until_the_client_says_more() -> None:
    delivery = MemoryDelivery()
    seen: list[Session] = []
    delivery.validate_recipient = (  # type: ignore[method-assign]
        lambda session, recipient: seen.append(session)
    )
    protocol, transport, _ = connect(delivery)
    say(
        protocol,
        transport,
        b"HELO one\r\nMAIL FROM:<>\r\nRCPT TO:<a@y.test>\r\nRCPT TO:<b@y.test>\r\nRSET\r\n"
        b"HELO two\r\nMAIL FROM:<>\r\nRCPT TO:<c@y.test>\r\n",
    )
    assert [session.helo for session in seen] == ["one", "one", "two"]
    assert seen[0] is seen[1]
    assert seen[2] == Session(hostname="mx.test", helo="two", peer=seen[0].peer)


def test_message_ids_differ() -> None:
    delivery = MemoryDelivery()
    protocol, transport, _ = connect(delivery)
    message = b"MAIL FROM:<>\r\nRCPT TO:<b@y.test>\r\nDATA\r\nx\r\n.\r\n"
    say(protocol, transport, b"HELO c\r\n" + message * 3)
    ids = {m.split(b" id ")[1].split(b"\r\n")[0] for _, _, m in delivery.messages}
    assert len(ids) == 3
