"""The IMAP client protocol on fakes: a StringTransport, a fake Clock, scripted server bytes."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torsion.defer import Deferred, ensure_deferred
from torsion.mail.imap._client import IMAP4Client, _sequence, _split_literals
from torsion.mail.imap._client_core import IMAPProtocolError, IMAPReplyError, LiteralArgument
from torsion.testing import Clock, StringTransport

T = TypeVar("T")


class Outcome:
    """What a Deferred fired with, read without an event loop."""

    def __init__(self, deferred: Deferred[Any]) -> None:
        self.values: list[object] = []
        self.errors: list[BaseException] = []

        def settle(result: object) -> None:
            if isinstance(result, BaseException):
                self.errors.append(result)
            else:
                self.values.append(result)

        deferred.add_both(settle)

    @property
    def value(self) -> object:
        assert not self.errors, self.errors
        assert len(self.values) == 1
        return self.values[0]

    @property
    def error(self) -> BaseException:
        assert len(self.errors) == 1, self.values
        return self.errors[0]


def run(coro: Coroutine[Any, Any, T]) -> Outcome:
    return Outcome(ensure_deferred(coro))


def greeted(
    greeting: bytes = b"* OK [CAPABILITY IMAP4rev1 IDLE] hi\r\n",
) -> tuple[IMAP4Client, StringTransport, Clock]:
    clock = Clock()
    transport = StringTransport()
    client = IMAP4Client(clock, timeout=10)
    client.connection_made(transport)
    client.data_received(greeting)
    return client, transport, clock


def sent(transport: StringTransport) -> bytes:
    data = transport.value()
    transport.clear()
    return data


def test_capabilities_from_the_greeting_need_no_command() -> None:
    client, transport, _ = greeted()
    outcome = run(client.capabilities())
    assert outcome.value == ("IMAP4rev1", "IDLE")
    assert sent(transport) == b""


def test_a_bye_greeting_fails_and_closes() -> None:
    clock = Clock()
    transport = StringTransport()
    client = IMAP4Client(clock)
    greeting = Outcome(client.greeted)
    client.connection_made(transport)
    client.data_received(b"* BYE [UNAVAILABLE] too busy\r\n")
    error = greeting.error
    assert isinstance(error, IMAPReplyError)
    assert error.status == "BYE"
    assert error.code is not None
    assert error.code.name == "UNAVAILABLE"
    assert transport.closed


def test_pipelined_commands_settle_by_tag_in_any_order() -> None:
    client, transport, _ = greeted()
    noop = run(client.noop())
    search = run(client.search("UNSEEN"))
    assert sent(transport) == b"T0001 NOOP\r\nT0002 UID SEARCH UNSEEN\r\n"
    client.data_received(b"* SEARCH 9 4\r\nT0002 OK done\r\n* 3 EXISTS\r\nT0001 OK [ALERT] x\r\n")
    assert search.value == [4, 9]
    result = noop.value
    assert [r.name for r in getattr(result, "responses", ())] == ["SEARCH", "EXISTS"]
    assert getattr(result, "code", None) is not None


def test_no_and_bad_carry_status_code_and_text() -> None:
    client, _transport, _ = greeted()
    outcome = run(client.select("Nope"))
    client.data_received(b"T0001 NO [NONEXISTENT] Mailbox doesn't exist: Nope\r\n")
    error = outcome.error
    assert isinstance(error, IMAPReplyError)
    assert (error.status, error.text) == ("NO", "Mailbox doesn't exist: Nope")
    assert error.code is not None
    assert error.code.name == "NONEXISTENT"
    assert "[NONEXISTENT]" in str(error)


def test_a_silent_server_times_out_and_the_connection_closes() -> None:
    client, transport, clock = greeted()
    outcome = run(client.noop())
    clock.advance(9.9)
    assert not outcome.errors
    clock.advance(0.2)
    assert isinstance(outcome.error, TimeoutError)
    assert transport.closed


def test_garbage_fails_every_command_and_closes() -> None:
    client, transport, _ = greeted()
    first = run(client.noop())
    second = run(client.noop())
    client.data_received(b"T0001 MAYBE\r\n")
    assert isinstance(first.error, IMAPProtocolError)
    assert isinstance(second.error, IMAPProtocolError)
    assert transport.closed


def test_a_lost_connection_fails_waiting_and_later_commands() -> None:
    client, _transport, clock = greeted()
    outcome = run(client.noop())
    client.connection_lost(None)
    assert isinstance(outcome.error, ConnectionResetError)
    assert isinstance(run(client.noop()).error, ConnectionResetError)
    clock.advance(100)
    assert not clock.get_delayed_calls()


def test_append_waits_for_the_continuation_without_literal_plus() -> None:
    client, transport, _ = greeted()
    outcome = run(client.append("Sent", b"Hi\r\n", ["\\Seen"]))
    assert sent(transport) == b'T0001 APPEND "Sent" (\\Seen) {4}\r\n'
    client.data_received(b"+ Ready for literal data\r\n")
    assert sent(transport) == b"Hi\r\n\r\n"
    client.data_received(b"T0001 OK [APPENDUID 7 12] Append completed.\r\n")
    assert outcome.value == 12


def test_authenticate_plain_answers_once_then_cancels() -> None:
    client, transport, _ = greeted()
    outcome = run(client.authenticate_plain("alice", "pw"))
    assert sent(transport) == b"T0001 AUTHENTICATE PLAIN\r\n"
    client.data_received(b"+ \r\n")
    assert sent(transport) == b"AGFsaWNlAHB3\r\n"
    client.data_received(b"+ bW9yZT8=\r\n")
    assert sent(transport) == b"*\r\n"
    client.data_received(b"T0001 BAD Authentication aborted\r\n")
    assert isinstance(outcome.error, IMAPReplyError)


def test_idle_yields_updates_and_done_ends_it() -> None:
    client, transport, clock = greeted()
    session = client.idle()
    started = run(session.start())
    assert sent(transport) == b"T0001 IDLE\r\n"
    assert not started.values
    client.data_received(b"+ idling\r\n")
    assert started.values == [None]
    # No reply timer while idling: the server may stay quiet for long.
    clock.advance(3600)
    assert not transport.closed
    client.data_received(b"* 4 EXISTS\r\n* 2 EXPUNGE\r\n")
    first = run(session.__anext__())
    second = run(session.__anext__())
    assert [getattr(first.value, "name", None), getattr(second.value, "name", None)] == [
        "EXISTS",
        "EXPUNGE",
    ]
    waiting = run(session.__anext__())
    assert not waiting.values
    client.data_received(b"* 5 EXISTS\r\n")
    assert getattr(waiting.value, "number", None) == 5
    done = run(session.done())
    assert sent(transport) == b"DONE\r\n"
    # The server owes the tagged OK now: the reply timer runs again.
    assert clock.get_delayed_calls()
    client.data_received(b"T0001 OK Idle completed.\r\n")
    assert getattr(done.value, "text", None) == "Idle completed."
    assert isinstance(run(session.__anext__()).error, StopAsyncIteration)
    run(client.noop())
    assert sent(transport) == b"T0002 NOOP\r\n"


def test_idle_ends_when_the_connection_is_lost() -> None:
    client, _transport, _ = greeted()
    session = client.idle()
    run(session.start())
    client.data_received(b"+ idling\r\n")
    waiting = run(session.__anext__())
    client.connection_lost(None)
    assert isinstance(waiting.error, StopAsyncIteration)
    assert isinstance(run(session.done()).error, ConnectionResetError)


def test_idle_refused() -> None:
    client, _transport, _ = greeted()
    started = run(client.idle().start())
    client.data_received(b"T0001 BAD IDLE not supported\r\n")
    assert isinstance(started.error, IMAPReplyError)


def test_select_reads_the_mailbox_state() -> None:
    client, transport, _ = greeted()
    outcome = run(client.select("INBOX", readonly=True))
    assert sent(transport) == b'T0001 EXAMINE "INBOX"\r\n'
    client.data_received(
        b"* FLAGS (\\Answered \\Seen)\r\n* 5 EXISTS\r\n* 1 RECENT\r\n"
        b"* OK [UNSEEN 3] first unseen\r\n* OK [UIDVALIDITY 99] ok\r\n"
        b"* OK [UIDNEXT 17] ok\r\n* OK [PERMANENTFLAGS ()] none\r\n"
        b"T0001 OK [READ-ONLY] done\r\n"
    )
    state = outcome.value
    assert getattr(state, "exists", None) == 5
    assert (
        getattr(state, "recent", None),
        getattr(state, "unseen", None),
        getattr(state, "uidvalidity", None),
        getattr(state, "uidnext", None),
        getattr(state, "flags", None),
        getattr(state, "permanent_flags", None),
        getattr(state, "read_only", None),
    ) == (1, 3, 99, 17, ("\\Answered", "\\Seen"), (), True)
    client.data_received(b"* 6 EXISTS\r\n")
    assert client.mailbox is not None
    assert client.mailbox.exists == 6


def test_mailbox_names_go_out_in_modified_utf7() -> None:
    client, transport, _ = greeted()
    run(client.create("Caf\u00e9 & Co"))
    assert sent(transport) == b'T0001 CREATE "Caf&AOk- &- Co"\r\n'
    listing = run(client.list())
    client.data_received(b'* LIST () "/" "Caf&AOk- &- Co"\r\n* LIST () NIL "bad&-name&"\r\n')
    client.data_received(b"T0002 OK\r\n")
    entries = listing.value
    assert isinstance(entries, list)
    assert [(e.name, e.delimiter) for e in entries] == [
        ("Caf\u00e9 & Co", "/"),
        ("bad&-name&", None),
    ]


@pytest.mark.parametrize(
    ("uids", "wire"),
    [([3, 1, 2, 7, 9, 8, 20], "1:3,7:9,20"), ([5], "5"), ("1:*", "1:*")],
)
def test_sequence_sets(uids: list[int] | str, wire: str) -> None:
    assert _sequence(uids) == wire


def test_an_empty_set_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        _sequence([])


def test_search_literals_are_split_out() -> None:
    assert _split_literals(b'OR SUBJECT {4}\r\ncaf\xc3 FROM "a"') == [
        b"OR SUBJECT",
        LiteralArgument(b"caf\xc3"),
        b'FROM "a"',
    ]


def test_idle_in_async_with_after_the_connection_is_lost() -> None:
    client, _transport, _ = greeted()

    async def idle() -> None:
        async with client.idle() as updates:
            client.connection_lost(None)
            assert [update async for update in updates] == []

    outcome = run(idle())
    client.data_received(b"+ idling\r\n")
    assert outcome.values == [None]


def literal_plus(client: IMAP4Client) -> bool:
    return client.core.literal_plus


def test_literal_plus_from_a_capability_response() -> None:
    client, transport, _ = greeted()
    assert not literal_plus(client)
    login = run(client.login("alice", "pw"))
    assert sent(transport) == b'T0001 LOGIN "alice" "pw"\r\n'
    client.data_received(b"* CAPABILITY IMAP4rev1 LITERAL+\r\nT0001 OK logged in\r\n")
    assert login.value == "logged in"
    assert literal_plus(client)
    run(client.append("INBOX", b"x"))
    assert sent(transport) == b'T0002 APPEND "INBOX" {1+}\r\nx\r\n'


def test_a_bye_before_closing_fails_commands_with_its_text() -> None:
    client, _transport, _ = greeted()
    outcome = run(client.noop())
    client.data_received(b"* BYE [UNAVAILABLE] shutting down\r\n")
    assert not outcome.errors
    client.connection_lost(None)
    error = outcome.error
    assert isinstance(error, IMAPReplyError)
    assert (error.status, error.text) == ("BYE", "shutting down")
    # LOGOUT on a connection already gone returns all the same.
    assert run(client.logout()).values == [None]


def test_logout_closes_after_the_tagged_ok() -> None:
    client, transport, _ = greeted()
    outcome = run(client.logout())
    assert sent(transport) == b"T0001 LOGOUT\r\n"
    client.data_received(b"* BYE Logging out\r\nT0001 OK Logout completed.\r\n")
    assert transport.closed
    assert not outcome.values
    client.connection_lost(None)
    assert outcome.values == [None]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                b"* 3 EXISTS\r\n",
                b"* BYE [ALERT] x\r\n",
                b"* OK [UIDNEXT z] y\r\n",
                b"* OK [PERMANENTFLAGS (\\*\r\n",
                b"* 1 FETCH (UID x FLAGS 3 ENVELOPE (1 2))\r\n",
                b"* LIST 1 2 3\r\n",
                b"* STATUS x 7\r\n",
                b"+ more\r\n",
                b"T0001 OK [APPENDUID x] done\r\n",
                b"T0002 NO [CAPABILITY] nope\r\n",
                b"T0003 BAD\r\n",
                b"T0009 OK stray\r\n",
                b"* SEARCH a b 3\r\n",
                b"* 2 EXPUNGE\r\n",
            ]
        ),
        max_size=12,
    ),
    st.binary(max_size=40),
)
def test_odd_but_wellformed_responses_never_escape(pieces: list[bytes], junk: bytes) -> None:
    client, _transport, _ = greeted()
    outcomes = [
        run(client.select("INBOX")),
        run(client.append("INBOX", b"x")),
        run(client.fetch([1], ["ENVELOPE"])),
    ]
    for piece in [*pieces, junk]:
        client.data_received(piece)
    client.connection_lost(None)
    for outcome in outcomes:
        assert len(outcome.values) + len(outcome.errors) == 1
        assert all(
            isinstance(e, IMAPProtocolError | IMAPReplyError | ConnectionResetError)
            for e in outcome.errors
        )
