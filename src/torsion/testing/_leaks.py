"""What a test may not leave behind, and how the pytest plugin finds it.

Three kinds of leftovers make a test fail: delayed calls still pending on its
reactor, threads still working in the reactor's thread pool, and Deferreds
that failed with nobody handling the error. The last are reported by
``torsion.defer`` when such a Deferred is garbage-collected, as an ERROR record
on the ``torsion.defer`` logger carrying the exception in its
``torsion_unhandled_error`` attribute; ``UnhandledErrorCollector`` listens for
those records.
"""

from __future__ import annotations

import gc
import logging
import threading
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from torsion.internet import Reactor

__all__ = [
    "UnhandledErrorCollector",
    "collect_unreferenced_deferreds",
    "describe_leftovers",
    "describe_unhandled",
    "reactor_leftovers",
]

_DEFER_LOGGER = "torsion.defer"
_MARKER_ATTRIBUTE = "torsion_unhandled_error"


class UnhandledErrorCollector(logging.Handler):
    """Collects the unhandled Deferred errors that ``torsion.defer`` logs.

    Collectors stack: while a pytest session runs inside another (pytester's
    in-process runs), only the innermost one collects, so the outer test does
    not also fail for errors its inner session made on purpose.

    Attributes:
        errors: The errors collected since ``reset()``; a new list each time.
    """

    _active: ClassVar[list[UnhandledErrorCollector]] = []
    _active_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.errors: list[BaseException] = []

    def install(self) -> None:
        """Start listening on the ``torsion.defer`` logger."""
        with self._active_lock:
            self._active.append(self)
        logging.getLogger(_DEFER_LOGGER).addHandler(self)

    def uninstall(self) -> None:
        """Stop listening."""
        logging.getLogger(_DEFER_LOGGER).removeHandler(self)
        with self._active_lock:
            if self in self._active:
                self._active.remove(self)

    def reset(self) -> list[BaseException]:
        """Start a fresh list of errors and return it."""
        self.errors = []
        return self.errors

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the error of a record that reports an unhandled Deferred error."""
        error = getattr(record, _MARKER_ATTRIBUTE, None)
        if not isinstance(error, BaseException):
            return
        with self._active_lock:
            innermost = bool(self._active) and self._active[-1] is self
        if innermost:
            self.errors.append(error)


def collect_unreferenced_deferreds() -> None:
    """Run a full garbage collection if a failed Deferred may be waiting for one.

    A full collection costs milliseconds per test. When ``torsion.defer``
    offers ``pending_unhandled_errors()`` (how many failed, unhandled
    Deferreds are alive), the collection is skipped while that is zero,
    since no report can come out of it.
    """
    pending = _pending_unhandled_errors()
    if pending is None or pending() > 0:
        gc.collect()


def _pending_unhandled_errors() -> Callable[[], int] | None:
    # A private hook of torsion.defer, looked up by name so that it may be absent.
    from torsion.defer import _deferred

    counter = getattr(_deferred, "pending_unhandled_errors", None)
    return counter if callable(counter) else None


def reactor_leftovers(reactor: Reactor) -> list[str]:
    """Describe what ``reactor`` still has going, and cancel its delayed calls.

    Args:
        reactor: The test's reactor.

    Returns:
        One paragraph per kind of leftover; empty when the reactor is clean.
    """
    found: list[str] = []
    calls = [call for call in reactor.get_delayed_calls() if call.active()]
    if calls:
        lines = [f"{len(calls)} delayed call(s) still pending (cancelled now):"]
        lines += [f"    {call!r}" for call in calls]
        found.append("\n".join(lines))
        for call in calls:
            call.cancel()
    pool = reactor.thread_pool
    working = pool.working_count
    queued = pool.queued_count
    if working or queued:
        found.append(
            f"{working} thread(s) still working in the reactor's thread pool"
            f" and {queued} job(s) queued (closing the reactor waits for them)"
        )
    return found


def describe_unhandled(errors: list[BaseException]) -> str:
    """Describe unhandled Deferred errors, each with its traceback."""
    lines = [f"{len(errors)} unhandled error(s) in Deferreds (garbage-collected with a failure):"]
    for error in errors:
        formatted = "".join(traceback.format_exception(error)).rstrip()
        lines.append("    " + formatted.replace("\n", "\n    "))
    lines.append(
        "    (handle them with add_errback, or request the unhandled_errors "
        "fixture if the test means to leave them)"
    )
    return "\n".join(lines)


def describe_leftovers(nodeid: str, when: str, paragraphs: list[str]) -> str:
    """Build the failure message for a test that left things behind."""
    body = "\n".join(f"  - {paragraph}" for paragraph in paragraphs)
    return f"{nodeid} left things behind ({when}):\n{body}"
