"""Fakes for the cred tests: a thread runner that runs work at once, in the test's thread."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torsion.defer import Deferred, maybe_deferred

T = TypeVar("T")


class InlineThreads:
    """A ``ThreadRunner`` that runs each job at once and counts the jobs."""

    def __init__(self) -> None:
        self.jobs = 0

    def call_in_thread(self, f: Callable[..., object], /, *args: Any) -> None:
        self.jobs += 1
        f(*args)

    def call_from_thread(self, f: Callable[..., object], /, *args: Any) -> None:
        f(*args)

    def defer_to_thread(self, f: Callable[..., T], /, *args: Any) -> Deferred[T]:
        self.jobs += 1
        return maybe_deferred(f, *args)

    def in_reactor_thread(self) -> bool:
        return True
