"""The POP3 client core on bytes: replies matched to commands, listings, messages, SASL."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torsion.mail.pop3 import (
    Challenge,
    ClientEvent,
    Greeting,
    MessageChunk,
    MessageEnd,
    POP3ClientConnection,
    POP3ProtocolError,
    POP3ReplyError,
    Reply,
    ReplyKind,
)

SERVER = (
    b"+OK ready <1.2@pop.test>\r\n"
    b"+OK 2 300\r\n"
    b"+OK listing\r\n1 100\r\n2 200\r\n.\r\n"
    b"+OK message follows\r\nSubject: x\r\n\r\n..dot\r\nend\r\n.\r\n"
    b"-ERR [IN-USE] no\r\n"
)


def pipelined() -> POP3ClientConnection:
    core = POP3ClientConnection()
    assert core.command("STAT") == b"STAT\r\n"
    core.command("LIST", ReplyKind.LISTING)
    core.command("RETR 1", ReplyKind.MESSAGE)
    core.command("DELE 9")
    return core


def merged(events: list[ClientEvent]) -> list[ClientEvent]:
    # Message chunks depend on how the bytes were split; their sum does not.
    out: list[ClientEvent] = []
    for event in events:
        if isinstance(event, MessageChunk):
            if not event.data:
                continue
            if out and isinstance(out[-1], MessageChunk):
                out[-1] = MessageChunk(data=out[-1].data + event.data)
                continue
        out.append(event)
    return out


def test_pipelined_replies_in_order() -> None:
    core = pipelined()
    assert core.pending == 4
    assert core.receive_data(SERVER) == [
        Greeting(ok=True, text="ready <1.2@pop.test>", timestamp=b"<1.2@pop.test>"),
        Reply(ok=True, text="2 300"),
        Reply(ok=True, text="listing", lines=(b"1 100", b"2 200")),
        Reply(ok=True, text="message follows"),
        MessageChunk(data=b"Subject: x\r\n\r\n.dot\r\nend\r\n"),
        MessageEnd(),
        Reply(ok=False, text="[IN-USE] no"),
    ]
    assert core.pending == 0
    assert POP3ReplyError("[IN-USE] no").code == "IN-USE"
    assert POP3ReplyError("plain").code is None


@given(st.lists(st.integers(min_value=0, max_value=len(SERVER)), max_size=30))
def test_any_chunking_gives_the_same_events(cuts: list[int]) -> None:
    core = pipelined()
    events: list[ClientEvent] = []
    last = 0
    for cut in [*sorted(cuts), len(SERVER)]:
        events += core.receive_data(SERVER[last:cut])
        last = max(last, cut)
    assert merged(events) == merged(pipelined().receive_data(SERVER))


def test_sasl_challenge_and_errors() -> None:
    core = POP3ClientConnection()
    core.receive_data(b"+OK hi\r\n")
    core.command("AUTH CRAM-MD5", ReplyKind.SASL)
    assert core.receive_data(b"+ PDEyMz4=\r\n") == [Challenge(data=b"PDEyMz4=")]
    assert core.sasl_response(b"YWJj") == b"YWJj\r\n"
    assert core.receive_data(b"+OK in\r\n") == [Reply(ok=True, text="in")]
    core.command("LIST", ReplyKind.LISTING)
    assert core.receive_data(b"-ERR no\r\n") == [Reply(ok=False, text="no")]
    with pytest.raises(POP3ProtocolError, match="no command"):
        core.receive_data(b"+OK unasked\r\n")
    with pytest.raises(ValueError, match="one line"):
        core.command("NOOP\r\nDELE 1")


def test_bounds_and_garbage() -> None:
    core = POP3ClientConnection(max_line=100, max_listing=2)
    core.receive_data(b"+OK hi\r\n")
    core.command("NOOP")
    with pytest.raises(POP3ProtocolError, match="not a POP3 status line"):
        core.receive_data(b"HTTP/1.1 200 OK\r\n")
    core = POP3ClientConnection(max_line=100, max_listing=2)
    with pytest.raises(POP3ProtocolError, match="over 100 octets"):
        core.receive_data(b"+OK " + b"x" * 200)
    core = POP3ClientConnection(max_line=100, max_listing=2)
    core.receive_data(b"+OK hi\r\n")
    core.command("UIDL", ReplyKind.LISTING)
    with pytest.raises(POP3ProtocolError, match="over 2 lines"):
        core.receive_data(b"+OK\r\n1 a\r\n2 b\r\n3 c\r\n.\r\n")


@given(st.binary(max_size=500))
def test_junk_raises_only_protocol_errors(junk: bytes) -> None:
    core = pipelined()
    events: list[ClientEvent] = []
    # Anything else than POP3ProtocolError escaping fails the test.
    with contextlib.suppress(POP3ProtocolError):
        events = core.receive_data(b"+OK hi\r\n" + junk)
    for event in events:
        assert isinstance(event, Greeting | Reply | MessageChunk | MessageEnd)
