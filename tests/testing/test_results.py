"""Reading Deferred outcomes in synchronous tests."""

from __future__ import annotations

import pytest

from torsion.defer import Deferred, fail, succeed
from torsion.testing import assert_no_result, failure_result_of, success_result_of


def test_success_result_of_returns_the_result_and_leaves_it() -> None:
    d = succeed(3)
    assert success_result_of(d) == 3
    assert success_result_of(d) == 3


def test_success_result_of_without_a_result_or_on_failure() -> None:
    with pytest.raises(AssertionError, match="none yet"):
        success_result_of(Deferred())
    paused = succeed(1)
    paused.pause()
    with pytest.raises(AssertionError, match="paused"):
        success_result_of(paused)
    with pytest.raises(AssertionError, match="failed with KeyError"):
        success_result_of(fail(KeyError("k")))


def test_failure_result_of_takes_the_error() -> None:
    d = fail(ValueError("bad"))
    error = failure_result_of(d, ValueError, KeyError)
    assert isinstance(error, ValueError)
    assert success_result_of(d) is None


def test_failure_result_of_mismatches() -> None:
    with pytest.raises(AssertionError, match="has result 1"):
        failure_result_of(succeed(1))
    with pytest.raises(AssertionError, match="of type KeyError"):
        failure_result_of(fail(ValueError("other")), KeyError)
    with pytest.raises(AssertionError, match="none yet"):
        failure_result_of(Deferred())


def test_assert_no_result() -> None:
    assert_no_result(Deferred())
    with pytest.raises(AssertionError, match="no result yet"):
        assert_no_result(succeed(None))
