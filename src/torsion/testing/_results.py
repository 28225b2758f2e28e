"""Reading a Deferred's outcome in a synchronous test.

With fake clocks and in-memory transports, a Deferred has usually fired by
the time a test looks at it; these helpers say so in one line, or fail with
a message that tells what the Deferred holds instead.
"""

from __future__ import annotations

from typing import Any, TypeVar

from torsion.defer import Deferred

__all__ = ["assert_no_result", "failure_result_of", "success_result_of"]

T = TypeVar("T")


def success_result_of(d: Deferred[T]) -> T:
    """Return the result ``d`` already has, leaving it in place.

    Raises:
        AssertionError: ``d`` has no result yet, or it failed.
    """
    seen: list[tuple[bool, Any]] = []

    def succeeded(value: T) -> T:
        seen.append((False, value))
        return value

    def failed(exc: BaseException) -> None:
        seen.append((True, exc))  # taken, so that it is reported here, not at GC

    _check_fired(d, "a result")
    d.add_callbacks(succeeded, failed)
    [(did_fail, value)] = seen
    if did_fail:
        raise AssertionError(f"expected {d!r} to have a result, but it failed with {value!r}")
    return value  # type: ignore[no-any-return]


def failure_result_of(d: Deferred[Any], *expected: type[BaseException]) -> BaseException:
    """Return the error ``d`` already failed with, taking it (``d`` then holds None).

    Args:
        d: The Deferred.
        expected: If given, the error must be an instance of one of these.

    Raises:
        AssertionError: ``d`` has no result yet, succeeded, or failed with
            another kind of error.
    """
    seen: list[tuple[bool, Any]] = []

    def succeeded(value: object) -> object:
        seen.append((False, value))
        return value

    def failed(exc: BaseException) -> None:
        seen.append((True, exc))

    _check_fired(d, "an error")
    d.add_callbacks(succeeded, failed)
    [(did_fail, value)] = seen
    if not did_fail:
        raise AssertionError(f"expected {d!r} to have failed, but it has result {value!r}")
    if expected and not isinstance(value, expected):
        names = ", ".join(kind.__name__ for kind in expected)
        raise AssertionError(f"expected an error of type {names}, got {value!r}") from value
    return value  # type: ignore[no-any-return]


def assert_no_result(d: Deferred[Any]) -> None:
    """Check that ``d`` has no result yet.

    Raises:
        AssertionError: ``d`` has one (or is paused on one).
    """
    if d.called:
        raise AssertionError(f"expected {d!r} to have no result yet")


def _check_fired(d: Deferred[Any], wanted: str) -> None:
    if not d.called:
        raise AssertionError(f"expected {d!r} to have {wanted}, but it has none yet")
    if d.paused:
        raise AssertionError(f"expected {d!r} to have {wanted}, but it is paused")
