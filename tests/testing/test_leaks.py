"""The leftover detection behind the pytest plugin."""

from __future__ import annotations

import gc
import logging

from torsion.defer import _deferred
from torsion.testing import _leaks
from torsion.testing._leaks import (
    UnhandledErrorCollector,
    collect_unreferenced_deferreds,
    describe_leftovers,
    describe_unhandled,
)


def report(error):
    logging.getLogger("torsion.defer").error(
        "Unhandled error in Deferred", extra={"torsion_unhandled_error": error}
    )


def test_collector_keeps_only_marked_records(unhandled_errors):
    collector = UnhandledErrorCollector()
    collector.install()
    try:
        error = ValueError("x")
        report(error)
        logging.getLogger("torsion.defer").error("something else")
        assert collector.errors == [error]
        fresh = collector.reset()
        assert fresh == []
        assert collector.errors is fresh
    finally:
        collector.uninstall()
    after = ValueError("after")
    report(after)
    assert collector.errors == []
    # Back to the plugin's own collector.
    assert unhandled_errors == [after]


def test_only_the_innermost_collector_collects(unhandled_errors):
    outer, inner = UnhandledErrorCollector(), UnhandledErrorCollector()
    outer.install()
    inner.install()
    try:
        report(KeyError("inner session"))
        assert outer.errors == []
        assert len(inner.errors) == 1
    finally:
        inner.uninstall()
        outer.uninstall()
    # The plugin's own collector was shadowed meanwhile, so it saw nothing.
    assert unhandled_errors == []


def test_gc_is_skipped_when_defer_says_no_failed_deferred_is_alive(monkeypatch):
    collections = []
    monkeypatch.setattr(gc, "collect", lambda *args: collections.append(args) or 0)
    monkeypatch.setattr(_deferred, "pending_unhandled_errors", lambda: 0, raising=False)
    collect_unreferenced_deferreds()
    assert collections == []
    monkeypatch.setattr(_deferred, "pending_unhandled_errors", lambda: 2, raising=False)
    collect_unreferenced_deferreds()
    assert collections == [()]


def test_gc_runs_when_defer_offers_no_counter(monkeypatch):
    collections = []
    monkeypatch.setattr(gc, "collect", lambda *args: collections.append(args) or 0)
    monkeypatch.delattr(_deferred, "pending_unhandled_errors", raising=False)
    assert _leaks._pending_unhandled_errors() is None
    collect_unreferenced_deferreds()
    assert collections == [()]


def test_descriptions():
    try:
        raise RuntimeError("with a traceback")
    except RuntimeError as exc:
        error = exc
    text = describe_unhandled([error, KeyError("plain")])
    assert text.startswith("2 unhandled error(s) in Deferreds")
    assert "RuntimeError: with a traceback" in text
    assert "test_descriptions" in text
    assert "KeyError: 'plain'" in text
    assert "unhandled_errors fixture" in text
    message = describe_leftovers("t.py::test", "call", ["one", "two\n  more"])
    assert message == "t.py::test left things behind (call):\n  - one\n  - two\n  more"
