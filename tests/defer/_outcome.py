"""Helpers the defer tests share for looking at outcomes as they arrive."""

from __future__ import annotations

from typing import Any

from torsion.defer import Deferred


def results_of(d: Deferred[Any]) -> list[Any]:
    """Return a list that receives ``d``'s result or error, whenever it comes."""
    seen: list[Any] = []
    d.add_both(seen.append)
    return seen


class Outcome:
    """Takes a Deferred's outcome (handling any error) for inspection."""

    def __init__(self, d: Deferred[Any]) -> None:
        self.called = False
        self.value: Any = None
        self.error: BaseException | None = None
        d.add_callbacks(self._ok, self._failed)

    def _ok(self, value: Any) -> None:
        self.called = True
        self.value = value

    def _failed(self, error: BaseException) -> None:
        self.called = True
        self.error = error
