"""The outbound mail queue: messages on disk until delivered, bounced or expired.

One directory holds the queue. Each message is two files: ``ID.eml``, the
message's bytes, and ``ID.json``, its envelope (sender, recipients and how
far each got, attempts, times). Both are written to a temporary name,
fsync'd, renamed into place and the directory fsync'd; the envelope is
written last, so a message is in the queue exactly when its ``.json``
exists, and ``enqueue`` returns only after that is on disk. A restart
reads the directory back: a ``.eml`` without its envelope (a crash in the
middle of ``enqueue``) is removed, since nobody was told it was accepted.

Each recipient's progress is written down as soon as its delivery attempt
ends, so a restart sends nothing twice to a recipient whose server said
250 (the one window left is between that 250 and the write, which no
queue can close) and loses none that it did not.

Delivery is by domain: each attempt hands the pending recipients of one
domain to the deliverer (``Relay.deliver``), with at most
``max_concurrent`` deliveries under way in all and ``max_per_domain`` to
one domain. Temporary failures are retried with exponential backoff
(``retry_initial`` doubled per attempt, at most ``retry_max``) until the
message is ``max_age`` old (five days, RFC 5321 section 4.5.4.1's
suggestion); permanent failures, and recipients still pending at
expiry, are reported to the envelope sender in one delivery status
notification (RFC 3464) per attempt. A message with the null sender
``<>`` (a bounce itself) never causes one (RFC 5321 section 6.1).

The files are written in the reactor's thread (a few small writes and
fsyncs per message and per delivery attempt): simple and ordered, at the
cost of the loop waiting for the disk meanwhile.

Times on disk are wall-clock time (``now``, ``time.time`` by default), so
that they mean the same after a restart; timers run on the reactor's
clock. Tests give both from ``torsion.testing.Clock``.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import os
import secrets
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path
from typing import Any, Final

from torsion.defer import Deferred, maybe_deferred
from torsion.internet import Clock, DelayedCall
from torsion.mail.smtp._client_core import DeliveryStatus, RecipientOutcome, Reply, domain_of
from torsion.mail.smtp._errors import SMTPError

__all__ = ["Deliverer", "MailQueue", "QueueError", "QueuedMessage", "build_dsn"]

log = logging.getLogger(__name__)

DEFAULT_MAX_AGE: Final = 5 * 24 * 3600.0
_VERSION: Final = 1
# What a .json may be at most: a sane envelope is a few kilobytes.
_MAX_ENVELOPE: Final = 4 * 1024 * 1024

Deliverer = Callable[[str, Sequence[str], bytes], Awaitable[Sequence[RecipientOutcome]]]


class QueueError(SMTPError):
    """The queue cannot take a message (a bad envelope, or the disk failed)."""


_PENDING: Final = "pending"
_DELIVERED: Final = "delivered"
_FAILED: Final = "failed"


@dataclass
class QueuedMessage:
    """One message in the queue, as its envelope file says.

    Attributes:
        id: The message's name in the queue directory.
        sender: The envelope sender ("" for ``<>``).
        recipients: Each recipient's address, state (``"pending"``,
            ``"delivered"`` or ``"failed"``) and last reply text.
        created: When it was queued (wall-clock seconds).
        attempts: How many delivery rounds have ended.
        next_attempt: When the next round is due (wall-clock seconds).
    """

    id: str
    sender: str
    recipients: list[dict[str, str]]
    created: float
    attempts: int = 0
    next_attempt: float = 0.0

    def pending(self) -> list[str]:
        """The recipients not yet delivered nor failed."""
        return [r["address"] for r in self.recipients if r["state"] == _PENDING]

    def to_json(self) -> dict[str, Any]:
        """The envelope file's content."""
        return {
            "version": _VERSION,
            "id": self.id,
            "sender": self.sender,
            "recipients": self.recipients,
            "created": self.created,
            "attempts": self.attempts,
            "next_attempt": self.next_attempt,
        }

    @classmethod
    def from_json(cls, data: Any) -> QueuedMessage:
        """Read an envelope file's content.

        Raises:
            QueueError: It is not an envelope this queue wrote.
        """
        try:
            if data["version"] != _VERSION:
                raise QueueError(f"unknown envelope version {data['version']!r}")
            recipients = [
                {"address": str(r["address"]), "state": str(r["state"]), "reply": str(r["reply"])}
                for r in data["recipients"]
            ]
            if any(r["state"] not in (_PENDING, _DELIVERED, _FAILED) for r in recipients):
                raise QueueError("unknown recipient state")
            return cls(
                id=str(data["id"]),
                sender=str(data["sender"]),
                recipients=recipients,
                created=float(data["created"]),
                attempts=int(data["attempts"]),
                next_attempt=float(data["next_attempt"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise QueueError(f"not a queue envelope: {exc!r}") from exc


@dataclass
class _Round:
    """One delivery attempt of one message: its jobs, and what they found."""

    message: QueuedMessage
    jobs: deque[tuple[str, list[str]]]
    running: int = 0
    failures: list[tuple[str, Reply, bool]] = field(default_factory=list)


class MailQueue:
    """A persistent queue of outbound mail, delivered by the reactor's clock.

    Call order: ``start`` (reads the directory, schedules what is due)
    ``[-> enqueue]*`` ``-> stop``.

    Args:
        clock: Runs the retry timers (the reactor).
        directory: The queue's directory (created if missing).
        deliver: Delivers one message to recipients of one domain and says
            what became of each (``Relay.deliver``).
        now: Wall-clock time, for what is written to disk.
        hostname: This host's name, in bounces (``Reporting-MTA``).
        max_age: Seconds after which a message still not delivered is
            bounced (5 days).
        retry_initial: Seconds before the first retry (5 minutes).
        retry_max: The longest wait between attempts (4 hours).
        max_concurrent: Deliveries under way at once, in all.
        max_per_domain: Deliveries under way at once to one domain.
        fsync: Whether to fsync files and the directory (turn off only
            where durability does not matter, as in some tests).
    """

    def __init__(
        self,
        clock: Clock,
        directory: str | os.PathLike[str],
        deliver: Deliverer,
        *,
        now: Callable[[], float] = time.time,
        hostname: str | None = None,
        max_age: float = DEFAULT_MAX_AGE,
        retry_initial: float = 300.0,
        retry_max: float = 4 * 3600.0,
        max_concurrent: int = 20,
        max_per_domain: int = 4,
        fsync: bool = True,
    ) -> None:
        if max_concurrent < 1 or max_per_domain < 1:
            raise ValueError("concurrency limits must be at least 1")
        self.clock = clock
        self.directory = Path(directory)
        self.deliver = deliver
        self.now = now
        self.hostname = hostname or socket.getfqdn()
        self.max_age = max_age
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.max_concurrent = max_concurrent
        self.max_per_domain = max_per_domain
        self.fsync = fsync
        self.messages: dict[str, QueuedMessage] = {}
        self._timers: dict[str, DelayedCall] = {}
        self._ready: deque[_Round] = deque()
        self._rounds: dict[str, _Round] = {}
        self._running = 0
        self._per_domain: dict[str, int] = {}
        self._in_flight: set[Deferred[Any]] = set()
        self._empty_waiters: list[Deferred[None]] = []
        self._started = False

    # -- life cycle -----------------------------------------------------------

    def start(self) -> None:
        """Read the queue directory back and schedule every message in it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._started = True
        for path in sorted(self.directory.iterdir()):
            if path.name.startswith("."):
                # A temporary file of a write that never finished.
                path.unlink(missing_ok=True)
        for path in sorted(self.directory.glob("*.eml")):
            if not path.with_suffix(".json").exists():
                log.info("queue: removing %s, never accepted (no envelope)", path.name)
                path.unlink(missing_ok=True)
        for path in sorted(self.directory.glob("*.json")):
            try:
                if path.stat().st_size > _MAX_ENVELOPE:
                    raise QueueError("envelope file too large")
                message = QueuedMessage.from_json(json.loads(path.read_bytes()))
                if not path.with_suffix(".eml").exists():
                    raise QueueError("message file missing")
            except (OSError, ValueError, QueueError) as exc:
                # Kept aside, not deleted: someone may want to look at it.
                log.error("queue: cannot use %s (%s); renamed to .bad", path.name, exc)
                path.rename(path.with_suffix(".bad"))
                continue
            self.messages[message.id] = message
            self._schedule(message)

    def stop(self) -> None:
        """Cancel the timers and the deliveries under way; the disk keeps the rest."""
        self._started = False
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()
        self._ready.clear()
        in_flight, self._in_flight = self._in_flight, set()
        for d in in_flight:
            d.cancel()

    def start_service(self) -> None:
        """``start``, as a service in an application's tree."""
        self.start()

    def stop_service(self) -> None:
        """``stop``, as a service in an application's tree."""
        self.stop()

    def wait_empty(self) -> Deferred[None]:
        """Wait until no message is left in the queue (delivered, bounced or dropped).

        Returns:
            A Deferred that fires with None at once if the queue is empty,
            else when its last message leaves it.
        """
        d: Deferred[None] = Deferred()
        if not self.messages:
            d.callback(None)
        else:
            self._empty_waiters.append(d)
        return d

    # -- taking messages --------------------------------------------------------

    def enqueue(self, sender: str, recipients: Sequence[str], message: bytes) -> str:
        """Put a message on disk for delivery; return its queue ID.

        Returns once the message and its envelope are on disk (fsync'd): it
        is then safe to tell the submitter it was accepted.

        Raises:
            QueueError: The envelope is not valid, or the disk failed.
        """
        if not recipients:
            raise QueueError("a message needs at least one recipient")
        for address in (sender, *recipients):
            if any(c in address for c in "<>\r\n\0 "):
                raise QueueError(f"not an address: {address!r}")
        now = self.now()
        queue_id = f"{int(now * 1000):012x}-{secrets.token_hex(6)}"
        queued = QueuedMessage(
            id=queue_id,
            sender=sender,
            recipients=[{"address": r, "state": _PENDING, "reply": ""} for r in recipients],
            created=now,
            next_attempt=now,
        )
        try:
            self._write(queue_id + ".eml", message)
            self._write_envelope(queued)
        except OSError as exc:
            # The half-written message goes, if it can (the directory itself
            # may be what failed).
            with contextlib.suppress(OSError):
                (self.directory / (queue_id + ".eml")).unlink(missing_ok=True)
            raise QueueError(f"cannot write to the queue: {exc}") from exc
        self.messages[queue_id] = queued
        if self._started:
            self._schedule(queued)
        return queue_id

    # -- files ------------------------------------------------------------------

    def _write(self, name: str, data: bytes) -> None:
        temporary = self.directory / f".{name}.{secrets.token_hex(4)}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                if self.fsync:
                    os.fsync(file.fileno())
            os.replace(temporary, self.directory / name)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        if self.fsync:
            # The rename itself is on disk only once the directory is.
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def _write_envelope(self, message: QueuedMessage) -> None:
        self._write(message.id + ".json", json.dumps(message.to_json()).encode())

    def _remove(self, message: QueuedMessage) -> None:
        # The envelope first: without it, the message file is an orphan.
        (self.directory / (message.id + ".json")).unlink(missing_ok=True)
        (self.directory / (message.id + ".eml")).unlink(missing_ok=True)
        self.messages.pop(message.id, None)
        if not self.messages:
            waiters, self._empty_waiters = self._empty_waiters, []
            for d in waiters:
                d.callback(None)

    def message_bytes(self, queue_id: str) -> bytes:
        """Return a queued message's bytes."""
        return (self.directory / (queue_id + ".eml")).read_bytes()

    # -- scheduling -------------------------------------------------------------

    def _schedule(self, message: QueuedMessage) -> None:
        delay = max(0.0, message.next_attempt - self.now())
        old = self._timers.pop(message.id, None)
        if old is not None and old.active():
            old.cancel()
        self._timers[message.id] = self.clock.call_later(delay, self._due, message.id)

    def _due(self, queue_id: str) -> None:
        self._timers.pop(queue_id, None)
        message = self.messages.get(queue_id)
        if message is None or queue_id in self._rounds:
            return
        by_domain: dict[str, list[str]] = {}
        for address in message.pending():
            by_domain.setdefault(domain_of(address), []).append(address)
        if not by_domain:
            self._remove(message)
            return
        attempt = _Round(message=message, jobs=deque(by_domain.items()))
        self._rounds[queue_id] = attempt
        self._ready.append(attempt)
        self._pump()

    def _pump(self) -> None:
        """Start the jobs the concurrency limits allow, oldest round first."""
        blocked: deque[_Round] = deque()
        while self._ready and self._running < self.max_concurrent:
            attempt = self._ready.popleft()
            waiting: deque[tuple[str, list[str]]] = deque()
            while attempt.jobs and self._running < self.max_concurrent:
                domain, recipients = attempt.jobs.popleft()
                if self._per_domain.get(domain, 0) >= self.max_per_domain:
                    waiting.append((domain, recipients))
                    continue
                self._start_job(attempt, domain, recipients)
            attempt.jobs.extendleft(reversed(waiting))
            if attempt.jobs:
                blocked.append(attempt)
        self._ready.extendleft(reversed(blocked))

    def _start_job(self, attempt: _Round, domain: str, recipients: list[str]) -> None:
        self._running += 1
        self._per_domain[domain] = self._per_domain.get(domain, 0) + 1
        attempt.running += 1
        message = attempt.message
        try:
            data = self.message_bytes(message.id)
        except OSError as exc:
            d: Deferred[Any] = Deferred()
            d.errback(exc)
        else:
            d = maybe_deferred(self.deliver, message.sender, recipients, data)
        self._in_flight.add(d)

        def done(outcomes: Sequence[RecipientOutcome]) -> None:
            self._job_done(attempt, domain, recipients, list(outcomes))

        def failed(exc: BaseException) -> None:
            if isinstance(exc, Exception) and self._in_flight is not None and d in self._in_flight:
                log.error("queue: delivering %s to %s failed: %r", message.id, domain, exc)
                reply = Reply(code=451, lines=(f"local error: {exc!r}",), enhanced="4.3.0")
                temporary = [
                    RecipientOutcome(recipient=r, status=DeliveryStatus.TEMPORARY, reply=reply)
                    for r in recipients
                ]
                self._job_done(attempt, domain, recipients, temporary)
            else:
                # Cancelled by stop(): what is on disk is retried after a restart.
                self._release(domain)

        d.add_callbacks(done, failed)
        d.add_both(lambda _: self._in_flight.discard(d))

    def _release(self, domain: str) -> None:
        self._running -= 1
        left = self._per_domain[domain] - 1
        if left:
            self._per_domain[domain] = left
        else:
            del self._per_domain[domain]

    def _job_done(
        self,
        attempt: _Round,
        domain: str,
        recipients: list[str],
        outcomes: list[RecipientOutcome],
    ) -> None:
        if not self._started:
            self._release(domain)
            return
        message = attempt.message
        by_address = {o.recipient: o for o in outcomes}
        delivered = False
        for entry in message.recipients:
            outcome = by_address.get(entry["address"])
            if outcome is None or entry["address"] not in recipients:
                continue
            entry["reply"] = str(outcome.reply)
            if outcome.status is DeliveryStatus.ACCEPTED:
                entry["state"] = _DELIVERED
                delivered = True
            elif outcome.status is DeliveryStatus.REFUSED:
                attempt.failures.append((entry["address"], outcome.reply, False))
        if delivered:
            # At once: a restart must not send to these again.
            self._persist(message)
        self._release(domain)
        attempt.running -= 1
        if attempt.running == 0 and not attempt.jobs:
            self._round_done(attempt)
        self._pump()

    def _persist(self, message: QueuedMessage) -> None:
        try:
            self._write_envelope(message)
        except OSError as exc:
            log.error("queue: cannot write the envelope of %s: %s", message.id, exc)

    def _round_done(self, attempt: _Round) -> None:
        message = attempt.message
        del self._rounds[message.id]
        failures = attempt.failures
        refused = {address for address, _, _ in failures}
        now = self.now()
        still_pending = [a for a in message.pending() if a not in refused]
        if still_pending and now - message.created >= self.max_age:
            # RFC 3463 4.4.7: delivery time expired.
            for entry in message.recipients:
                if entry["address"] in still_pending:
                    last = entry["reply"] or "no attempt succeeded"
                    reply = Reply(code=451, lines=(last,), enhanced="4.4.7")
                    failures.append((entry["address"], reply, True))
            still_pending = []
        if failures:
            self._bounce(message, failures)
            failed = {address for address, _, _ in failures}
            for entry in message.recipients:
                if entry["address"] in failed:
                    entry["state"] = _FAILED
        if not still_pending:
            self._remove(message)
            return
        message.attempts += 1
        backoff = min(self.retry_initial * 2 ** (message.attempts - 1), self.retry_max)
        # Never past the expiry, so that a message expires on time.
        message.next_attempt = min(now + backoff, message.created + self.max_age)
        self._persist(message)
        self._schedule(message)

    def _bounce(self, message: QueuedMessage, failures: list[tuple[str, Reply, bool]]) -> None:
        if not message.sender:
            # RFC 5321 section 6.1: never a bounce for a bounce.
            log.warning(
                "queue: %s from <> undeliverable to %s; dropped",
                message.id,
                ", ".join(address for address, _, _ in failures),
            )
            return
        try:
            original = self.message_bytes(message.id)
        except OSError:
            original = b""
        dsn = build_dsn(
            hostname=self.hostname,
            sender=message.sender,
            failures=failures,
            original=original,
            arrival=message.created,
            now=self.now(),
        )
        try:
            self.enqueue("", [message.sender], dsn)
        except QueueError as exc:
            log.error("queue: cannot queue the bounce of %s: %s", message.id, exc)


def build_dsn(
    *,
    hostname: str,
    sender: str,
    failures: Sequence[tuple[str, Reply, bool]],
    original: bytes,
    arrival: float,
    now: float,
) -> bytes:
    """Build a delivery status notification (RFC 3464) for failed recipients.

    Built with the stdlib ``email`` package's compat32 classes, whose
    generator writes ``message/delivery-status`` bodies as groups of
    fields (RFC 3464 section 2.1), which the newer API does not build.

    Args:
        hostname: This host's name (``Reporting-MTA``, ``From``).
        sender: The original envelope sender, to whom it goes.
        failures: Each failed recipient with the reply that decided it and
            whether it failed by expiry (still failing after ``max_age``).
        original: The original message; its header is returned.
        arrival: When the message was queued.
        now: The time of this report.

    Returns:
        The notification's bytes, CRLF line ends.
    """
    lines = [
        f"This is the mail system at {hostname}.",
        "",
        "Your message could not be delivered to one or more recipients.",
        "",
    ]
    for address, reply, expired in failures:
        why = "gave up after repeated temporary failures" if expired else "refused"
        lines.append(f"<{address}>: {why}: {str(reply).replace(chr(10), ' ')}")
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = f"Mail Delivery System <MAILER-DAEMON@{hostname}>"
    report["To"] = f"<{sender}>"
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Date"] = email.utils.formatdate(now)
    report["Message-ID"] = email.utils.make_msgid(domain=hostname)
    # RFC 3834 section 5: an automatic reply, not to be answered automatically.
    report["Auto-Submitted"] = "auto-replied"
    report.attach(MIMEText("\n".join(lines) + "\n", "plain", "utf-8"))

    status = MIMEBase("message", "delivery-status")
    per_message = Message()
    per_message["Reporting-MTA"] = f"dns; {hostname}"
    per_message["Arrival-Date"] = email.utils.formatdate(arrival)
    blocks = [per_message]
    for address, reply, expired in failures:
        block = Message()
        block["Final-Recipient"] = f"rfc822; {address}"
        block["Action"] = "failed"
        enhanced = reply.enhanced or ("5.0.0" if reply.code >= 500 else "4.0.0")
        # Expired: a permanent outcome of temporary failures (RFC 3463 4.4.7 as 5.4.7).
        block["Status"] = "5" + enhanced[1:] if expired else enhanced
        block["Diagnostic-Code"] = "smtp; " + str(reply).replace("\n", " ")
        block["Last-Attempt-Date"] = email.utils.formatdate(now)
        blocks.append(block)
    status.set_payload(blocks)  # type: ignore[arg-type]
    report.attach(status)

    head, _, _ = original.replace(b"\r\n", b"\n").partition(b"\n\n")
    text = head.decode("utf-8", "replace")
    headers = MIMEText(text + "\n", "rfc822-headers", "us-ascii" if text.isascii() else "utf-8")
    report.attach(headers)
    return report.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
