"""Property tests of the Deferred chain rules against a plain reference model."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from torsion.defer import Deferred

# A step is (kind, action): kind says where it is added (callback, errback or
# both), action what it does when it runs.
ACTIONS = ("add1", "raise", "recover", "chain_fired", "chain_pending")
steps = st.lists(
    st.tuples(st.sampled_from(("callback", "errback", "both")), st.sampled_from(ACTIONS)),
    max_size=12,
)


class BoomError(Exception):
    pass


def model(start: tuple[bool, int], chain: list[tuple[str, str]]) -> tuple[bool, Any]:
    """What a chain must produce, computed without Deferreds."""
    failed, value = start
    for kind, action in chain:
        runs = kind == "both" or (kind == "errback") == failed
        if not runs:
            continue
        if action == "raise":
            failed, value = True, "boom"
        elif action == "recover":
            failed, value = False, 0
        elif failed:
            failed, value = False, 1  # the other actions count an error as 0, plus one
        else:
            value = value + 1
    return failed, value


def build(
    chain: list[tuple[str, str]], pending: list[Deferred[int]], d: Deferred[int] | None = None
) -> Deferred[int]:
    if d is None:
        d = Deferred()

    def make(action: str) -> Any:
        def run(value: Any) -> Any:
            number = 0 if isinstance(value, BaseException) else value
            if action == "raise":
                raise BoomError("boom")
            if action == "recover":
                return 0
            if action == "chain_fired":
                inner: Deferred[int] = Deferred()
                inner.callback(number + 1)
                return inner
            if action == "chain_pending":
                inner = Deferred()
                pending.append(inner)
                inner.add_callback(lambda v, n=number: n + 1)
                return inner
            return number + 1

        return run

    for kind, action in chain:
        fn = make(action)
        if kind == "callback":
            d.add_callback(fn)
        elif kind == "errback":
            d.add_errback(fn)
        else:
            d.add_both(fn)
    return d


def outcome(d: Deferred[int]) -> tuple[bool, Any]:
    seen: list[tuple[bool, Any]] = []
    d.add_callbacks(
        lambda v: seen.append((False, v)),
        lambda e: seen.append((True, str(e) if isinstance(e, BoomError) else e)),
    )
    assert len(seen) == 1
    return seen[0]


@given(steps, st.booleans(), st.integers(-5, 5))
def test_chain_matches_the_model(
    chain: list[tuple[str, str]], start_failed: bool, start: int
) -> None:
    pending: list[Deferred[int]] = []
    d = build(chain, pending)
    if start_failed:
        d.errback(BoomError("boom"))
    else:
        d.callback(start)
    # Fire the chained Deferreds in the order the chain made them.
    while pending:
        pending.pop(0).callback(0)
    expected = model((start_failed, "boom" if start_failed else start), chain)
    assert outcome(d) == expected


@given(steps, st.integers(-5, 5))
def test_adding_before_or_after_firing_gives_the_same_result(
    chain: list[tuple[str, str]], start: int
) -> None:
    pending: list[Deferred[int]] = []
    before = build(chain, pending)
    before.callback(start)
    while pending:
        pending.pop(0).callback(0)

    after: Deferred[int] = Deferred()
    after.callback(start)
    build(chain, pending, after)
    while pending:
        pending.pop(0).callback(0)
    assert outcome(before) == outcome(after)


@given(st.lists(st.sampled_from(("pause", "unpause", "add")), max_size=20), st.booleans())
def test_pausing_never_loses_or_reorders_results(ops: list[str], fire_first: bool) -> None:
    d: Deferred[int] = Deferred()
    seen: list[int] = []
    added = 0
    pauses = 0
    if fire_first:
        d.callback(0)
    for op in ops:
        if op == "pause":
            d.pause()
            pauses += 1
        elif op == "unpause" and pauses:
            d.unpause()
            pauses -= 1
        elif op == "add":
            index = added
            d.add_callback(lambda v, i=index: (seen.append(i), v)[1])
            added += 1
    if not fire_first:
        d.callback(0)
    for _ in range(pauses):
        d.unpause()
    assert seen == list(range(added))
