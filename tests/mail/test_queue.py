"""MailQueue on a fake clock and a fake deliverer: persistence, retries, bounces, limits."""

from __future__ import annotations

import email
import email.policy
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torsion.defer import Deferred
from torsion.mail._queue import DEFAULT_MAX_AGE, MailQueue, QueueError, build_dsn
from torsion.mail.smtp._client_core import DeliveryStatus, RecipientOutcome, Reply
from torsion.testing import Clock

MESSAGE = b"From: a@here.test\r\nTo: x@one.test\r\nSubject: hello\r\n\r\nbody\r\n"
OK = Reply(code=250, lines=("ok",), enhanced="2.0.0")
BUSY = Reply(code=450, lines=("busy",), enhanced="4.2.1")
NO = Reply(code=550, lines=("no such user",), enhanced="5.1.1")


@dataclass
class Call:
    sender: str
    recipients: list[str]
    message: bytes
    deferred: Deferred[Sequence[RecipientOutcome]] = field(default_factory=Deferred)

    def answer(self, **replies: Reply) -> None:
        """Answer with a reply per recipient's local part (OK for those not named)."""
        outcomes = []
        for r in self.recipients:
            reply = replies.get(r.split("@")[0], OK)
            status = (
                DeliveryStatus.ACCEPTED
                if reply.code < 400
                else DeliveryStatus.TEMPORARY
                if reply.code < 500
                else DeliveryStatus.REFUSED
            )
            outcomes.append(RecipientOutcome(recipient=r, status=status, reply=reply))
        self.deferred.callback(outcomes)


@dataclass
class FakeDeliverer:
    calls: list[Call] = field(default_factory=list)

    def __call__(
        self, sender: str, recipients: Sequence[str], message: bytes
    ) -> Deferred[Sequence[RecipientOutcome]]:
        call = Call(sender, list(recipients), message)
        self.calls.append(call)
        return call.deferred

    def take(self) -> list[Call]:
        calls, self.calls = self.calls, []
        return calls


def make_queue(
    clock: Clock, directory: Path, deliverer: FakeDeliverer, **options: object
) -> MailQueue:
    queue = MailQueue(
        clock,
        directory,
        deliverer,
        now=clock.seconds,
        hostname="mx.here.test",
        fsync=False,
        **options,  # type: ignore[arg-type]
    )
    queue.start()
    return queue


def parse(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


def parts(message: EmailMessage) -> list[EmailMessage]:
    return cast(list[EmailMessage], message.get_payload())


def envelopes(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))]


def test_enqueue_writes_both_files_and_delivers_by_domain(tmp_path: Path) -> None:
    clock = Clock(1000.0)
    deliverer = FakeDeliverer()
    queue = make_queue(clock, tmp_path, deliverer)
    queue_id = queue.enqueue("a@here.test", ["x@one.test", "y@two.test", "z@ONE.test"], MESSAGE)
    assert (tmp_path / f"{queue_id}.eml").read_bytes() == MESSAGE
    (envelope,) = envelopes(tmp_path)
    assert envelope["sender"] == "a@here.test"
    assert deliverer.calls == []  # delivery runs from the clock, not inside enqueue
    clock.advance(0)
    calls = deliverer.take()
    assert sorted(c.recipients for c in calls) == [["x@one.test", "z@ONE.test"], ["y@two.test"]]
    assert all(c.message == MESSAGE and c.sender == "a@here.test" for c in calls)
    empty = queue.wait_empty()
    calls[0].answer()
    assert not empty.called
    calls[1].answer()
    assert [empty.called] == [True]
    assert queue.wait_empty().called
    assert list(tmp_path.iterdir()) == []
    assert queue.messages == {}
    assert clock.get_delayed_calls() == []


def test_temporary_failures_are_retried_with_backoff(tmp_path: Path) -> None:
    clock = Clock()
    deliverer = FakeDeliverer()
    queue = make_queue(clock, tmp_path, deliverer, retry_initial=60.0, retry_max=200.0)
    queue.enqueue("a@here.test", ["x@one.test", "busy@one.test"], MESSAGE)
    clock.advance(0)
    (call,) = deliverer.take()
    call.answer(busy=BUSY)
    (envelope,) = envelopes(tmp_path)
    states = {r["address"]: r["state"] for r in envelope["recipients"]}
    assert states == {"x@one.test": "delivered", "busy@one.test": "pending"}
    assert envelope["attempts"] == 1
    delays = []
    for _ in range(4):
        (timer,) = clock.get_delayed_calls()
        delays.append(timer.get_time() - clock.seconds())
        clock.advance(delays[-1])
        (call,) = deliverer.take()
        assert call.recipients == ["busy@one.test"]
        call.answer(busy=BUSY)
    assert delays == [60.0, 120.0, 200.0, 200.0]
    queue.stop()
    assert clock.get_delayed_calls() == []


def test_permanent_failure_bounces_to_the_sender(tmp_path: Path) -> None:
    clock = Clock()
    deliverer = FakeDeliverer()
    queue = make_queue(clock, tmp_path, deliverer)
    queue.enqueue("a@here.test", ["x@one.test", "no@one.test"], MESSAGE)
    clock.advance(0)
    (call,) = deliverer.take()
    call.answer(no=NO)
    # The original is gone; the bounce is queued, from <> to the sender.
    (envelope,) = envelopes(tmp_path)
    assert envelope["sender"] == ""
    assert [r["address"] for r in envelope["recipients"]] == ["a@here.test"]
    clock.advance(0)
    (bounce,) = deliverer.take()
    assert bounce.sender == ""
    assert bounce.recipients == ["a@here.test"]
    dsn = parse(bounce.message)
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    assert dsn["Auto-Submitted"] == "auto-replied"
    text, status, headers = parts(dsn)
    assert "no@one.test" in text.get_content()
    assert status.get_content_type() == "message/delivery-status"
    per_message, per_recipient = parts(status)
    assert per_message["Reporting-MTA"] == "dns; mx.here.test"
    assert per_recipient["Final-Recipient"] == "rfc822; no@one.test"
    assert per_recipient["Action"] == "failed"
    assert per_recipient["Status"] == "5.1.1"
    assert per_recipient["Diagnostic-Code"] == "smtp; 550 5.1.1 no such user"
    assert headers.get_content_type() == "text/rfc822-headers"
    assert "Subject: hello" in headers.get_content()
    bounce.answer()
    assert list(tmp_path.iterdir()) == []


def test_no_bounce_for_a_bounce(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    deliverer = FakeDeliverer()
    queue = make_queue(clock, tmp_path, deliverer)
    queue.enqueue("", ["no@one.test"], MESSAGE)
    clock.advance(0)
    deliverer.take()[0].answer(no=NO)
    assert list(tmp_path.iterdir()) == []
    assert deliverer.take() == []
    assert "dropped" in caplog.text


def test_expiry_bounces_what_is_still_pending(tmp_path: Path) -> None:
    clock = Clock()
    deliverer = FakeDeliverer()
    queue = make_queue(clock, tmp_path, deliverer, max_age=1000.0, retry_initial=300.0)
    queue.enqueue("a@here.test", ["busy@one.test"], MESSAGE)
    times = []
    while True:
        clock.advance(0)
        calls = deliverer.take()
        if calls[0].sender == "":
            bounce = calls[0]
            break
        times.append(clock.seconds())
        calls[0].answer(busy=BUSY)
        (timer,) = clock.get_delayed_calls()
        clock.advance(timer.get_time() - clock.seconds())
    # 0, 300, 900 (600 later), then 1000: the expiry, not 2100.
    assert times == [0.0, 300.0, 900.0, 1000.0]
    dsn = parse(bounce.message)
    _, status, _ = parts(dsn)
    _, recipient = parts(status)
    assert recipient["Status"] == "5.4.7"
    assert "busy" in recipient["Diagnostic-Code"]
    # Only the bounce is left in the queue.
    assert [m.sender for m in queue.messages.values()] == [""]


def test_restart_resumes_without_sending_twice(tmp_path: Path) -> None:
    clock = Clock()
    deliverer = FakeDeliverer()
    queue = make_queue(clock, tmp_path, deliverer)
    queue.enqueue("a@here.test", ["x@one.test", "y@two.test"], MESSAGE)
    clock.advance(0)
    one, two = sorted(deliverer.take(), key=lambda c: c.recipients)
    one.answer()
    # Killed while two.test is under way: drop everything, start anew.
    del queue
    clock = Clock(50.0)
    deliverer = FakeDeliverer()
    make_queue(clock, tmp_path, deliverer)
    clock.advance(0)
    (again,) = deliverer.take()
    assert again.recipients == ["y@two.test"]
    assert again.message == MESSAGE
    again.answer()
    assert list(tmp_path.iterdir()) == []
    del two


def test_restart_keeps_the_retry_time(tmp_path: Path) -> None:
    clock = Clock()
    deliverer = FakeDeliverer()
    queue = make_queue(clock, tmp_path, deliverer, retry_initial=300.0)
    queue.enqueue("a@here.test", ["busy@one.test"], MESSAGE)
    clock.advance(0)
    deliverer.take()[0].answer(busy=BUSY)
    queue.stop()
    clock = Clock(100.0)
    queue = make_queue(clock, tmp_path, deliverer, retry_initial=300.0)
    clock.advance(199)
    assert deliverer.take() == []
    clock.advance(1)
    (call,) = deliverer.take()
    assert call.recipients == ["busy@one.test"]
    call.answer()
    assert list(tmp_path.iterdir()) == []


def test_a_message_without_envelope_was_never_accepted(tmp_path: Path) -> None:
    (tmp_path / "0001-aa.eml").write_bytes(MESSAGE)
    (tmp_path / ".0002-bb.json.1234.tmp").write_bytes(b"{")
    (tmp_path / "0003-cc.json").write_bytes(b"not json")
    clock = Clock()
    deliverer = FakeDeliverer()
    queue = make_queue(clock, tmp_path, deliverer)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0003-cc.bad"]
    assert queue.messages == {}
    clock.advance(0)
    assert deliverer.calls == []


def test_concurrency_limits(tmp_path: Path) -> None:
    clock = Clock()
    deliverer = FakeDeliverer()
    queue = make_queue(clock, tmp_path, deliverer, max_concurrent=3, max_per_domain=2)
    for _ in range(3):
        queue.enqueue("a@here.test", ["x@one.test"], MESSAGE)
    queue.enqueue("a@here.test", ["x@two.test"], MESSAGE)
    queue.enqueue("a@here.test", ["x@three.test"], MESSAGE)
    clock.advance(0)
    first = deliverer.take()
    # Two to one.test (its limit), then two.test; three.test waits for a slot.
    assert [c.recipients[0] for c in first] == ["x@one.test", "x@one.test", "x@two.test"]
    first[2].answer()
    (second,) = deliverer.take()
    assert second.recipients == ["x@three.test"]
    first[0].answer()
    (third,) = deliverer.take()
    assert third.recipients == ["x@one.test"]
    for call in (first[1], second, third):
        call.answer()
    assert list(tmp_path.iterdir()) == []


def test_deliverer_errors_are_temporary(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    deliverer = FakeDeliverer()
    queue = make_queue(clock, tmp_path, deliverer)
    queue.enqueue("a@here.test", ["x@one.test"], MESSAGE)
    clock.advance(0)
    deliverer.take()[0].deferred.errback(RuntimeError("bug"))
    (envelope,) = envelopes(tmp_path)
    assert envelope["attempts"] == 1
    assert "bug" in caplog.text
    queue.stop()


def test_stop_cancels_deliveries_and_timers(tmp_path: Path) -> None:
    clock = Clock()
    deliverer = FakeDeliverer()
    queue = make_queue(clock, tmp_path, deliverer)
    queue.enqueue("a@here.test", ["x@one.test"], MESSAGE)
    queue.enqueue("a@here.test", ["y@one.test"], MESSAGE)
    clock.advance(0)
    calls = deliverer.take()
    queue.stop()
    assert all(c.deferred.called for c in calls)
    assert clock.get_delayed_calls() == []
    assert len(envelopes(tmp_path)) == 2


@pytest.mark.parametrize(
    ("sender", "recipients"), [("a@b", []), ("a b@c", ["x@y"]), ("a@b", ["<x@y>"])]
)
def test_bad_envelopes_are_refused(tmp_path: Path, sender: str, recipients: list[str]) -> None:
    queue = make_queue(Clock(), tmp_path, FakeDeliverer())
    with pytest.raises(QueueError):
        queue.enqueue(sender, recipients, MESSAGE)
    assert list(tmp_path.iterdir()) == []


def test_fsync_path_writes_files(tmp_path: Path) -> None:
    clock = Clock()
    queue = MailQueue(clock, tmp_path, FakeDeliverer(), now=clock.seconds, hostname="h")
    queue.start()
    queue_id = queue.enqueue("a@b.test", ["c@d.test"], MESSAGE)
    assert queue.message_bytes(queue_id) == MESSAGE
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".eml", ".json"]
    queue.stop()


def test_default_max_age_is_five_days() -> None:
    assert DEFAULT_MAX_AGE == 5 * 86400


def test_dsn_of_non_ascii_headers() -> None:
    dsn = build_dsn(
        hostname="h",
        sender="a@b",
        failures=[("x@y", NO, False)],
        original="Subject: héllo\n\nbody".encode(),
        arrival=0.0,
        now=0.0,
    )
    parsed = parse(dsn)
    headers = parts(parsed)[2]
    assert "héllo" in headers.get_content()
    assert b"\r\n" in dsn
    assert b"\n" not in dsn.replace(b"\r\n", b"")


RECIPIENTS = ["a@one.test", "b@one.test", "c@two.test", "d@two.test", "e@three.test"]
STEPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("answer"),
            st.integers(0, 5),
            st.lists(st.sampled_from([OK, BUSY, NO]), min_size=5, max_size=5),
        ),
        st.tuples(st.just("restart"), st.just(0), st.just([])),
        st.tuples(st.just("wait"), st.just(0), st.just([])),
    ),
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(STEPS)
def test_kills_and_restarts_lose_nothing_and_send_nothing_twice(
    steps: list[tuple[str, int, list[Reply]]],
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        clock = Clock()
        deliverer = FakeDeliverer()
        options: dict[str, object] = {"max_age": 2000.0, "retry_initial": 100.0}
        queue = make_queue(clock, Path(directory), deliverer, **options)
        queue.enqueue("s@here.test", RECIPIENTS, MESSAGE)
        clock.advance(0)
        delivered: list[str] = []
        bounced: list[str] = []

        def answer(call: Call, replies: list[Reply]) -> None:
            if call.sender == "":
                for part in parts(parts(parse(call.message))[1])[1:]:
                    bounced.append(part["Final-Recipient"].removeprefix("rfc822; "))
                call.answer()
                return
            chosen = dict(zip(RECIPIENTS, replies, strict=True))
            outcomes = {r.split("@")[0]: chosen[r] for r in call.recipients}
            call.answer(**outcomes)
            delivered.extend(r for r in call.recipients if chosen[r] is OK)

        for action, index, replies in steps:
            if action == "answer" and deliverer.calls:
                answer(deliverer.calls.pop(index % len(deliverer.calls)), replies)
            elif action == "restart":
                # Killed: its timers die with it, its calls are never answered.
                clock = Clock(clock.seconds())
                deliverer = FakeDeliverer()
                queue = make_queue(clock, Path(directory), deliverer, **options)
                clock.advance(0)
            elif action == "wait":
                timers = clock.get_delayed_calls()
                if timers:
                    clock.advance(min(t.get_time() for t in timers) - clock.seconds())
        # Then everything goes through, until the queue is empty.
        for _ in range(100):
            for call in deliverer.take():
                answer(call, [OK] * 5)
            timers = clock.get_delayed_calls()
            if not timers:
                break
            clock.advance(min(t.get_time() for t in timers) - clock.seconds())
        assert os.listdir(directory) == []
        assert sorted(delivered + bounced) == sorted(RECIPIENTS)


def test_a_queue_that_cannot_be_written_is_a_queue_error(tmp_path: Path) -> None:
    where = tmp_path / "queue"
    queue = make_queue(Clock(), where, FakeDeliverer())
    # The directory replaced by a file: every write fails, and so does the
    # removal of the half-written message.
    where.rmdir()
    where.write_text("not a directory")
    with pytest.raises(QueueError, match="cannot write to the queue"):
        queue.enqueue("a@b.test", ["c@d.test"], MESSAGE)
