"""The AMP protocol on in-memory transports: calls, answers, errors, limits, flow."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from _amp_commands import Divide, Double, Explode, ExplodeError, Fail, Missing, Note, Relay

from torsion.defer import CancelledError, Deferred, succeed
from torsion.protocols.amp import (
    AMP,
    AmpProtocolError,
    BadArgumentsError,
    Box,
    BoxParser,
    Command,
    CommandLocator,
    ConnectionLostError,
    Integer,
    InvalidSignatureError,
    RemoteAmpError,
    Responder,
    String,
    TooLongError,
    UnhandledCommandError,
    Unicode,
    UnknownRemoteError,
    encode_box,
)
from torsion.testing import (
    Loopback,
    StringTransport,
    assert_no_result,
    failure_result_of,
    loopback,
    success_result_of,
)


class Wait(Command, arguments={"key": Integer()}, response={"key": Integer()}):
    """Its responder returns a Deferred the test fires."""


class BadError(ValueError):
    pass


class WorseError(BadError):
    pass


class Check(
    Command,
    arguments={"what": Unicode()},
    response={"ok": Integer()},
    errors={BadError: b"BAD", KeyError: b"KEY"},
    fatal_errors={ExplodeError: b"EXPLODED"},
):
    """Its responder answers or fails as ``what`` says."""


class Describe(Command, arguments={"length": Integer()}, errors={BadError: b"BAD"}):
    """Fails with a description as long as asked for."""


class Peer(AMP):
    """Answers the test commands; its Wait answers are fired by the test."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.waiting: dict[int, Deferred[dict[str, int]]] = {}
        self.notes: list[str] = []
        self.lost: list[Exception | None] = []

    @Double.responder
    def double(self, x: int) -> dict[str, int]:
        return {"x": 2 * x}

    @Divide.responder
    def divide(self, numerator: int, denominator: int) -> dict[str, float]:
        return {"result": numerator / denominator}

    @Wait.responder
    def wait(self, key: int) -> Deferred[dict[str, int]]:
        self.waiting[key] = Deferred()
        return self.waiting[key]

    @Relay.responder
    async def relay(self, x: int) -> dict[str, int]:
        answer = await self.call_remote(Double, x=x)
        return {"x": answer["x"] + 1}

    @Note.responder
    def note(self, text: str) -> dict[str, Any]:
        self.notes.append(text)
        return {}

    @Explode.responder
    def explode(self) -> dict[str, Any]:
        raise ExplodeError("boom")

    @Fail.responder
    def fail(self) -> dict[str, Any]:
        raise RuntimeError("nobody declared this")

    @Check.responder
    def check(self, what: str) -> dict[str, int]:
        errors: dict[str, BaseException] = {
            "bad": BadError("bad thing"),
            "worse": WorseError("worse thing"),
            "key": KeyError("k"),
            "fatal": ExplodeError("fatal thing"),
            "remote": RemoteAmpError(b"CUSTOM", "my own code"),
            "remote declared": RemoteAmpError(b"BAD", "as if declared"),
            "remote fatal": RemoteAmpError(b"GONE", "and close", fatal=True),
        }
        if what in errors:
            raise errors[what]
        if what == "not a dict":
            return [1]  # type: ignore[return-value]
        if what == "missing":
            return {}
        if what == "wrong type":
            return {"ok": "1"}  # type: ignore[dict-item]
        return {"ok": 1, "extra": "ignored"}  # type: ignore[dict-item]

    @Describe.responder
    def describe(self, length: int) -> dict[str, Any]:
        raise BadError("\u00e9" * length)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.lost.append(exc)


def connect(**kwargs: Any) -> tuple[Peer, Peer, Loopback]:
    client, server = Peer(**kwargs), Peer(**kwargs)
    return client, server, loopback(client, server)


def attach(protocol: AMP) -> StringTransport:
    transport = StringTransport(protocol)
    protocol.connection_made(transport)
    return transport


def written_boxes(transport: StringTransport) -> list[Box]:
    return BoxParser().receive_data(transport.value())


def request(tag: bytes | None, command: bytes, **values: bytes) -> bytes:
    box = {} if tag is None else {b"_ask": tag}
    box[b"_command"] = command
    box.update((key.encode(), value) for key, value in values.items())
    return encode_box(box)


# -- calls and answers -------------------------------------------------------------


def test_calls_go_both_ways_over_one_connection() -> None:
    client, server, _ = connect()
    assert success_result_of(client.call_remote(Double, x=21)) == {"x": 42}
    assert success_result_of(server.call_remote(Double, x=-4)) == {"x": -8}
    assert success_result_of(client.call_remote(Divide, numerator=1, denominator=4)) == {
        "result": 0.25
    }


def test_answers_find_their_calls_by_tag_in_any_order() -> None:
    client, server, _ = connect()
    calls = [client.call_remote(Wait, key=k) for k in range(5)]
    assert client.calls_waiting == 5
    for d in calls:
        assert_no_result(d)
    for k in (3, 0, 4, 1, 2):
        server.waiting[k].callback({"key": k * 10})
        assert success_result_of(calls[k]) == {"key": k * 10}
    assert client.calls_waiting == 0


def test_an_async_responder_may_call_back_the_caller() -> None:
    client, _, _ = connect()
    assert success_result_of(client.call_remote(Relay, x=5)) == {"x": 11}


async def test_call_remote_is_awaitable_from_a_coroutine() -> None:
    client, _, _ = connect()
    assert await client.call_remote(Double, x=3) == {"x": 6}


def test_a_command_without_an_answer_is_sent_without_a_tag() -> None:
    client = Peer()
    transport = attach(client)
    assert success_result_of(client.call_remote(Note, text="hi")) == {}
    assert written_boxes(transport) == [{b"_command": b"Note", b"text": b"hi"}]
    assert client.calls_waiting == 0

    server = Peer()
    transport = attach(server)
    server.data_received(request(None, b"Note", text=b"there"))
    server.data_received(request(None, b"Fail"))  # its error goes nowhere either
    server.data_received(request(None, b"Missing"))
    assert server.notes == ["there"]
    assert transport.value() == b""
    assert not transport.closed


def test_tags_are_hex_counters_and_answers_carry_them_back() -> None:
    client = Peer()
    transport = attach(client)
    client.call_remote(Double, x=1)
    client.call_remote(Double, x=2)
    client.call_remote(Note, text="no tag")
    assert written_boxes(transport) == [
        {b"_command": b"Double", b"_ask": b"1", b"x": b"1"},
        {b"_command": b"Double", b"_ask": b"2", b"x": b"2"},
        {b"_command": b"Note", b"text": b"no tag"},
    ]
    server = Peer()
    transport = attach(server)
    server.data_received(request(b"zz", b"Double", x=b"5"))
    assert written_boxes(transport) == [{b"_answer": b"zz", b"x": b"10"}]


def test_answers_to_a_chunk_of_calls_go_out_in_one_write() -> None:
    writes: list[bytes] = []

    class Counting(StringTransport):
        def write(self, data: Any) -> None:
            writes.append(bytes(data))
            super().write(data)

    server = Peer()
    server.connection_made(Counting(server))
    server.data_received(b"".join(request(b"%d" % n, b"Double", x=b"%d" % n) for n in range(50)))
    assert len(writes) == 1
    answers = BoxParser().receive_data(writes[0])
    assert answers == [{b"_answer": b"%d" % n, b"x": b"%d" % (2 * n)} for n in range(50)]
    # Outside data_received an answer goes out at once.
    server.data_received(request(b"w", b"Wait", key=b"1"))
    assert len(writes) == 1
    server.waiting[1].callback({"key": 7})
    assert BoxParser().receive_data(writes[1]) == [{b"_answer": b"w", b"key": b"7"}]


# -- errors -----------------------------------------------------------------------


def test_declared_errors_map_both_ways() -> None:
    client, _, _ = connect()
    error = failure_result_of(client.call_remote(Divide, numerator=1, denominator=0))
    assert type(error) is ZeroDivisionError
    assert str(error) == "division by zero"
    error = failure_result_of(client.call_remote(Check, what="bad"))
    assert type(error) is BadError
    assert str(error) == "bad thing"


def test_a_subclass_of_a_declared_error_travels_as_its_nearest_declared_class() -> None:
    client, _, _ = connect()
    error = failure_result_of(client.call_remote(Check, what="worse"))
    assert type(error) is BadError
    assert str(error) == "worse thing"


def test_an_error_class_that_cannot_take_the_description_arrives_as_remote_amp_error() -> None:
    class OddError(Exception):
        def __init__(self, a: int, b: int) -> None:
            super().__init__(a, b)

    class OddCommand(
        Command, command_name="Check", arguments={"what": Unicode()}, errors={OddError: b"BAD"}
    ):
        """Check, expecting an error class that cannot be made from a description."""

    client, _, _ = connect()
    error = failure_result_of(client.call_remote(OddCommand, what="bad"), RemoteAmpError)
    assert type(error) is RemoteAmpError
    assert (error.code, error.description) == (b"BAD", "bad thing")


def test_a_responder_may_answer_with_a_code_of_its_own() -> None:
    client, _, _ = connect()
    error = failure_result_of(client.call_remote(Check, what="remote"), UnknownRemoteError)
    assert (error.code, error.description) == (b"CUSTOM", "my own code")
    error = failure_result_of(client.call_remote(Check, what="remote declared"))
    assert type(error) is BadError
    assert str(error) == "as if declared"


def test_an_undeclared_error_is_answered_unknown_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, _, pair = connect()
    error = failure_result_of(client.call_remote(Fail), UnknownRemoteError)
    assert (error.code, error.description) == (b"UNKNOWN", "Unknown Error")
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(records) == 1
    assert records[0].name == "torsion.protocols.amp"
    assert records[0].exc_info is not None
    assert str(records[0].exc_info[1]) == "nobody declared this"
    # The connection goes on.
    assert success_result_of(client.call_remote(Double, x=1)) == {"x": 2}
    assert not pair.server_transport.is_closing()


def test_an_async_responder_failing_is_answered_too(caplog: pytest.LogCaptureFixture) -> None:
    client, server, _ = connect()
    calls = [client.call_remote(Wait, key=k) for k in range(3)]
    server.waiting[0].errback(KeyError("unexpected"))
    server.waiting[1].errback(RemoteAmpError(b"LATE", "later"))
    server.waiting[2].cancel()
    assert failure_result_of(calls[0], UnknownRemoteError).code == b"UNKNOWN"
    assert failure_result_of(calls[1], UnknownRemoteError).code == b"LATE"
    assert failure_result_of(calls[2], UnknownRemoteError).code == b"UNKNOWN"
    # The unexpected error is logged; the cancellation (deliberate) is not.
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [type(r.exc_info[1]) for r in errors if r.exc_info] == [KeyError]


def test_a_fatal_error_is_answered_then_the_connection_closes() -> None:
    client, server, pair = connect()
    waiting = server.call_remote(Double, x=1)  # answered at once: loopback
    assert success_result_of(waiting) == {"x": 2}
    pending = server.call_remote(Wait, key=1)
    error = failure_result_of(client.call_remote(Explode), ExplodeError)
    assert str(error) == "boom"
    assert pair.server_transport.is_closing()
    assert client.lost == [None]
    assert server.lost == [None]
    # What the closing side was still waiting for fails.
    lost = failure_result_of(pending, ConnectionLostError)
    assert isinstance(lost, ConnectionError)
    assert "before Wait was answered" in str(lost)


@pytest.mark.parametrize("what", ["fatal", "remote fatal"])
def test_fatal_errors_in_a_chunk_answer_what_came_before_then_close(what: str) -> None:
    server = Peer()
    transport = attach(server)
    server.data_received(
        request(b"1", b"Double", x=b"1")
        + request(b"2", b"Check", what=what.encode())
        + request(b"3", b"Double", x=b"3")
    )
    answers = written_boxes(transport)
    assert answers[0] == {b"_answer": b"1", b"x": b"2"}
    assert answers[1][b"_error"] == b"2"
    assert answers[1][b"_error_code"] in (b"EXPLODED", b"GONE")
    assert len(answers) == 2  # the call after the fatal error is not answered
    assert transport.closed


def test_an_async_fatal_error_closes_when_it_comes() -> None:
    server = Peer()
    transport = attach(server)
    server.data_received(request(b"1", b"Wait", key=b"1"))
    server.waiting[1].errback(RemoteAmpError(b"GONE", "later", fatal=True))
    assert written_boxes(transport) == [
        {b"_error": b"1", b"_error_code": b"GONE", b"_error_description": b"later"}
    ]
    assert transport.closed


def test_an_unknown_command_is_answered_unhandled() -> None:
    client, _, _ = connect()
    error = failure_result_of(client.call_remote(Missing), UnhandledCommandError)
    assert (error.code, error.description) == (b"UNHANDLED", "Unhandled Command: b'Missing'")
    assert isinstance(error, RemoteAmpError)


def test_a_long_description_is_cut_to_what_a_value_holds() -> None:
    client, _, _ = connect()
    error = failure_result_of(client.call_remote(Describe, length=40000))
    # 40,000 two-byte characters are 80,000 bytes; 32,767 of them fit.
    assert str(error) == "\u00e9" * 32767


def test_what_a_responder_returns_that_its_response_cannot_carry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, _, _ = connect()
    for what in ("not a dict", "missing", "wrong type"):
        error = failure_result_of(client.call_remote(Check, what=what), UnknownRemoteError)
        assert error.code == b"UNKNOWN"
    assert success_result_of(client.call_remote(Check, what="extra keys")) == {"ok": 1}
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 3


def test_bad_arguments_from_the_peer_are_answered_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    server = Peer()
    transport = attach(server)
    server.data_received(request(b"1", b"Double", x=b"two"))
    server.data_received(request(b"2", b"Double"))
    first, second = written_boxes(transport)
    assert first[b"_error_code"] == second[b"_error_code"] == b"UNKNOWN"
    assert first[b"_error_description"].startswith(b"bad arguments: 'x' is not valid")
    assert second[b"_error_description"] == b"bad arguments: the box has no 'x'"
    assert not transport.closed
    assert all(r.exc_info is None for r in caplog.records)
    assert all(r.levelno < logging.WARNING for r in caplog.records)


def test_an_answer_that_does_not_decode_fails_its_call() -> None:
    client = Peer()
    attach(client)
    first = client.call_remote(Double, x=1)
    second = client.call_remote(Double, x=2)
    client.data_received(encode_box({b"_answer": b"1", b"x": b"many"}))
    client.data_received(encode_box({b"_answer": b"2"}))
    assert "'x' is not valid" in str(failure_result_of(first, BadArgumentsError))
    assert "no 'x'" in str(failure_result_of(second, BadArgumentsError))


# -- what cannot be sent --------------------------------------------------------------


class Blob(Command, arguments={"data": String(), "n": Integer(optional=True)}):
    """Carries bytes."""


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({}, InvalidSignatureError),
        ({"data": b"x", "other": 1}, InvalidSignatureError),
        ({"data": b"x" * 65536}, TooLongError),
        ({"data": "text"}, TypeError),
        ({"data": b"x", "n": "1"}, TypeError),
    ],
)
def test_a_call_that_cannot_be_sent_raises_before_anything_is_written(
    arguments: dict[str, Any], error: type[Exception]
) -> None:
    client = Peer()
    transport = attach(client)
    with pytest.raises(error):
        client.call_remote(Blob, **arguments)
    assert transport.value() == b""
    assert client.calls_waiting == 0
    client.call_remote(Blob, data=b"x" * 65535)
    assert written_boxes(transport)[0][b"data"] == b"x" * 65535


def test_calls_before_connecting_or_after_the_connection_ended_fail() -> None:
    client = Peer()
    assert client.calls_waiting == 0
    error = failure_result_of(client.call_remote(Double, x=1), ConnectionLostError)
    assert "not connected" in str(error)
    transport = attach(client)
    client.connection_lost(None)
    failure_result_of(client.call_remote(Double, x=1), ConnectionLostError)
    failure_result_of(client.call_remote(Note, text="x"), ConnectionLostError)
    assert transport.value() == b""
    # Bad arguments are still the caller's error, connected or not.
    with pytest.raises(InvalidSignatureError):
        client.call_remote(Double)


# -- cancellation and connection loss --------------------------------------------------


def test_a_cancelled_call_fails_and_its_late_answer_is_dropped() -> None:
    client, server, pair = connect()
    call = client.call_remote(Wait, key=1)
    call.cancel()
    failure_result_of(call, CancelledError)
    assert client.calls_waiting == 1  # its answer is still due
    server.waiting[1].callback({"key": 1})
    assert client.calls_waiting == 0
    assert not pair.client_transport.is_closing()
    assert success_result_of(client.call_remote(Double, x=2)) == {"x": 4}
    # A late error answer is dropped the same way.
    call = client.call_remote(Wait, key=2)
    call.cancel()
    failure_result_of(call, CancelledError)
    server.waiting[2].errback(BadError("late"))
    assert client.calls_waiting == 0


async def test_cancelling_the_awaiting_task_cancels_the_call() -> None:
    client, server, _ = connect()
    task = asyncio.ensure_future(client.call_remote(Wait, key=1).as_future())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    server.waiting[1].callback({"key": 1})
    assert client.calls_waiting == 0


def test_connection_loss_fails_every_call_still_waiting() -> None:
    client, server, pair = connect()
    calls = [client.call_remote(Wait, key=k) for k in range(3)]
    cancelled = client.call_remote(Wait, key=9)
    cancelled.cancel()
    failure_result_of(cancelled, CancelledError)
    pair.server_transport.abort()
    for call in calls:
        error = failure_result_of(call, ConnectionLostError)
        assert "before Wait was answered" in str(error)
        assert isinstance(error.__cause__, ConnectionResetError)
    assert client.calls_waiting == 0
    # The server's responders finish later; their answers go nowhere.
    server.waiting[0].callback({"key": 0})


def test_an_unfinished_box_at_the_end_is_logged_and_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    server = Peer()
    attach(server)
    server.data_received(request(b"1", b"Double", x=b"1")[:-3])
    assert server.eof_received() is None
    assert "in the middle of a box" in caplog.text
    caplog.clear()
    attach(other := Peer())
    assert other.eof_received() is None
    assert caplog.text == ""


# -- the peer breaking the wire format -----------------------------------------------------


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x01\x00" + b"k" * 256, "256 bytes long"),
        (b"\x00\x00", "neither a command nor an answer"),
        (encode_box({b"a": b"b"}), "neither a command nor an answer"),
        (encode_box({b"_answer": b"99"}), "never made"),
        (
            encode_box({b"_error": b"99", b"_error_code": b"X", b"_error_description": b""}),
            "never made",
        ),
        (encode_box({b"_error": b"1"}), "without its code or description"),
        (encode_box({b"_error": b"1", b"_error_code": b"X"}), "without its code or description"),
        (encode_box({b"%d" % n: b"" for n in range(5)}), "more than 4 keys"),
        (encode_box({b"k": b"v" * 300}), "more than 200 bytes"),
        (b"\x00\x01a\x00\x00\x00\x01a\x00\x00\x00\x00", "twice"),
    ],
)
def test_a_peer_breaking_the_wire_format_is_disconnected_without_a_traceback(
    data: bytes, match: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = Peer(max_keys=4, max_box_size=200)
    transport = attach(client)
    call = client.call_remote(Double, x=1)
    transport.clear()
    client.data_received(
        request(b"a", b"Double", x=b"1") + data + request(b"b", b"Double", x=b"2")
    )
    assert transport.closed
    # What came before the bad box was answered; nothing after it.
    assert written_boxes(transport) == [{b"_answer": b"a", b"x": b"2"}]
    assert all(r.exc_info is None for r in caplog.records)
    assert match in caplog.text
    client.connection_lost(None)
    error = failure_result_of(call, ConnectionLostError)
    assert isinstance(error.__cause__, AmpProtocolError)
    assert match in str(error.__cause__)


# -- flow control and bounds --------------------------------------------------------------


def test_reading_pauses_while_too_many_of_the_peers_calls_are_being_answered() -> None:
    server = Peer(max_pending_requests=2)
    transport = attach(server)
    server.data_received(request(b"1", b"Wait", key=b"1"))
    assert transport.is_reading()
    server.data_received(request(b"2", b"Wait", key=b"2") + request(b"3", b"Double", x=b"1"))
    assert not transport.is_reading()
    server.waiting[1].callback({"key": 1})
    assert transport.is_reading()
    # Calls of our own must still be answered: reading goes on for them.
    server.data_received(request(b"4", b"Wait", key=b"4"))
    assert not transport.is_reading()
    call = server.call_remote(Double, x=1)
    assert transport.is_reading()
    server.data_received(encode_box({b"_answer": b"1", b"x": b"2"}))
    assert success_result_of(call) == {"x": 2}
    assert not transport.is_reading()
    server.waiting[2].callback({"key": 2})
    server.waiting[4].callback({"key": 4})
    assert transport.is_reading()


def test_reading_pauses_while_the_peer_does_not_read_our_answers() -> None:
    server = Peer()
    transport = attach(server)
    transport.set_write_buffer_limits(high=100)
    server.data_received(b"".join(request(b"%d" % n, b"Double", x=b"1") for n in range(10)))
    assert not transport.is_reading()
    transport.clear()
    assert transport.is_reading()
    # Not while a call of ours waits for its answer.
    call = server.call_remote(Blob, data=b"x" * 200)
    assert transport.is_reading()
    server.data_received(encode_box({b"_answer": b"1"}))
    success_result_of(call)
    assert not transport.is_reading()
    transport.clear()
    assert transport.is_reading()


def test_max_pending_requests_must_allow_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        AMP(max_pending_requests=0)


# -- locators ----------------------------------------------------------------------------


def test_another_locator_can_answer_for_a_protocol() -> None:
    class Calculator(CommandLocator):
        @Double.responder
        def double(self, x: int) -> dict[str, int]:
            return {"x": x * 100}

    class Tripler:
        def locate_responder(self, name: bytes) -> Responder | None:
            if name == b"Double":
                return Responder(Double, lambda x: {"x": 3 * x})
            return None

    for locator, expected in ((Calculator(), 200), (Tripler(), 6)):
        client, server = AMP(), AMP(locator)
        loopback(client, server)
        assert success_result_of(client.call_remote(Double, x=2)) == {"x": expected}
        failure_result_of(
            client.call_remote(Divide, numerator=1, denominator=1), UnhandledCommandError
        )


def test_responders_registered_on_a_connection_take_precedence() -> None:
    client, server, _ = connect()
    assert success_result_of(client.call_remote(Double, x=1)) == {"x": 2}
    server.register(Double, lambda x: succeed({"x": -x}))
    assert success_result_of(client.call_remote(Double, x=1)) == {"x": -1}
    server.register(Missing, lambda: {})
    assert success_result_of(client.call_remote(Missing)) == {}
    # Before connecting too.
    fresh = AMP()
    fresh.register(Double, lambda x: {"x": 0})
    other = AMP()
    loopback(other, fresh)
    assert success_result_of(other.call_remote(Double, x=5)) == {"x": 0}


def test_a_protocol_that_locates_its_own_way_is_asked_every_time() -> None:
    asked: list[bytes] = []

    class Asking(Peer):
        def locate_responder(self, name: bytes) -> Responder | None:
            asked.append(name)
            return super().locate_responder(name)

    client, server = AMP(), Asking()
    loopback(client, server)
    for _ in range(3):
        success_result_of(client.call_remote(Double, x=1))
    assert asked == [b"Double"] * 3


def test_the_repr_names_the_peer() -> None:
    protocol = Peer()
    assert repr(protocol) == "<Peer not connected>"
    attach(protocol)
    assert repr(protocol) == "<Peer peer=('192.0.2.2', 54321)>"
