"""torsion's pytest plugin, exercised through inner pytest sessions (pytester)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Imported here so that the inner sessions, whose new modules pytester drops
# afterwards, share these modules with this one.
import torsion.defer
import torsion.internet
import torsion.testing._pytest_plugin  # noqa: F401
from torsion.testing._runtime import uvloop_available

pytest_plugins = ["pytester"]


# Hypothesis's plugin re-imports heavy modules in each inner session; not needed there.
QUIET = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest")


def run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_inner=source)
    return pytester.runpytest_inprocess(*QUIET, *args)


def test_plugin_is_loaded_by_its_entry_point_in_a_fresh_process(pytester):
    pytester.makepyfile(
        """
        import asyncio

        async def test_async():
            await asyncio.sleep(0)
        """
    )
    result = pytester.runpytest_subprocess(*QUIET)
    result.assert_outcomes(passed=1)


def test_async_test_runs_and_passes(pytester):
    result = run(
        pytester,
        """
        import asyncio

        ran = []

        async def test_async():
            loop = asyncio.get_running_loop()
            future = loop.create_future()
            loop.call_soon(future.set_result, 42)
            assert await future == 42
            ran.append(loop)

        def test_each_async_test_had_its_own_closed_loop():
            assert len(ran) == 1
            assert ran[0].is_closed()
        """,
    )
    result.assert_outcomes(passed=2)


def test_async_test_failure_is_reported_as_a_failure(pytester):
    result = run(
        pytester,
        """
        async def test_fails():
            assert 1 + 1 == 3
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*assert (1 + 1) == 3*"])


def test_async_test_can_skip(pytester):
    result = run(
        pytester,
        """
        import pytest

        async def test_skips():
            pytest.skip("not today")
        """,
    )
    result.assert_outcomes(skipped=1)


def test_deferred_returning_tests(pytester):
    result = run(
        pytester,
        """
        from torsion.defer import Deferred, succeed

        def test_already_fired():
            return succeed(1)

        def test_fired_later_by_the_reactor(reactor):
            d = Deferred()
            reactor.call_later(0, d.callback, "done")
            return d

        def test_failed_deferred_fails_the_test(reactor):
            d = Deferred()
            reactor.call_later(0, d.errback, ValueError("from the deferred"))
            return d

        def test_plain_tests_still_warn_about_other_return_values():
            return 5
        """,
        "-W",
        "error::pytest.PytestReturnNotNoneWarning",
    )
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*test_failed_deferred_fails_the_test*",
            "*ValueError: from the deferred*",
        ]
    )
    result.stdout.fnmatch_lines(["*Test functions should return None*"])


def test_timeout_fails_the_test_with_a_clear_message(pytester):
    result = run(
        pytester,
        """
        import asyncio
        import pytest

        async def wait_forever():
            await asyncio.get_running_loop().create_future()

        @pytest.mark.timeout(0.2)
        async def test_hangs():
            await wait_forever()
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_inner.py::test_hangs timed out after 0.2 s*",
            "*in wait_forever*",
        ]
    )


def test_timeout_applies_to_deferred_tests(pytester):
    result = run(
        pytester,
        """
        import pytest
        from torsion.defer import Deferred

        @pytest.mark.timeout(seconds=0.2)
        def test_never_fires():
            return Deferred()
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*test_never_fires timed out after 0.2 s*"])


def test_timeout_from_the_command_line_and_the_ini_file(pytester):
    source = """
        import asyncio

        async def test_hangs():
            await asyncio.get_running_loop().create_future()
        """
    result = run(pytester, source, "--torsion-timeout", "0.1")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*timed out after 0.1 s*"])
    pytester.makeini("[pytest]\ntorsion_timeout = 0.15\n")
    result = pytester.runpytest_inprocess(*QUIET)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*timed out after 0.15 s*"])


def test_marker_beats_the_command_line(pytester):
    result = run(
        pytester,
        """
        import asyncio
        import pytest

        @pytest.mark.timeout(0.1)
        async def test_hangs():
            await asyncio.get_running_loop().create_future()
        """,
        "--torsion-timeout",
        "60",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*timed out after 0.1 s*"])


def test_bad_timeout_option_is_a_usage_error(pytester):
    pytester.makeini("[pytest]\ntorsion_timeout = soon\n")
    pytester.makepyfile(test_inner="def test_nothing(): pass")
    result = pytester.runpytest_inprocess(*QUIET)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*torsion_timeout must be a number of seconds*"])


def test_pending_delayed_call_fails_an_async_test(pytester):
    result = run(
        pytester,
        """
        def forgotten():
            pass

        async def test_leaves_a_call(reactor):
            reactor.call_later(60, forgotten)
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_leaves_a_call left things behind (call):*",
            "*1 delayed call(s) still pending*",
            "*<DelayedCall pending at *forgotten>*",
        ]
    )


def test_pending_delayed_call_fails_a_sync_test_too(pytester):
    result = run(
        pytester,
        """
        def test_leaves_a_call(reactor):
            reactor.call_later(60, print)

        def test_cleans_up(reactor):
            reactor.call_later(60, print).cancel()
        """,
    )
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*delayed call(s) still pending*"])


def test_busy_thread_pool_fails_the_test(pytester):
    result = run(
        pytester,
        """
        import threading
        import pytest

        @pytest.fixture
        def gate():
            event = threading.Event()
            yield event
            event.set()  # torn down before the reactor, which joins its threads

        def test_leaves_a_thread(reactor, gate):
            reactor.call_in_thread(gate.wait)
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*still working in the reactor's thread pool*"])


def test_unhandled_deferred_error_fails_sync_and_async_tests(pytester):
    result = run(
        pytester,
        """
        from torsion.defer import Deferred

        def lose_an_error():
            d = Deferred()
            d.errback(KeyError("nobody looked"))

        def test_sync():
            lose_an_error()

        async def test_async():
            lose_an_error()

        def test_handled():
            d = Deferred()
            d.add_errback(lambda exc: None)
            d.errback(KeyError("seen"))
        """,
    )
    result.assert_outcomes(failed=2, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_sync left things behind (call):*",
            "*1 unhandled error(s) in Deferreds*",
            "*KeyError: 'nobody looked'*",
        ]
    )


def test_unhandled_errors_fixture_collects_them_instead(pytester):
    result = run(
        pytester,
        """
        import gc
        from torsion.defer import Deferred

        def test_logging_of_lost_errors(unhandled_errors):
            d = Deferred()
            d.errback(KeyError("on purpose"))
            del d
            gc.collect()
            assert [type(e) for e in unhandled_errors] == [KeyError]

        def test_next_test_starts_clean():
            pass
        """,
    )
    result.assert_outcomes(passed=2)


def test_unhandled_error_left_by_a_fixture_errors_at_teardown(pytester):
    result = run(
        pytester,
        """
        import pytest
        from torsion.defer import Deferred

        @pytest.fixture
        def holder():
            box = []
            yield box
            box.clear()

        def test_keeps_it_in_a_fixture(holder):
            d = Deferred()
            d.errback(KeyError("held"))
            holder.append(d)
        """,
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*test_keeps_it_in_a_fixture left things behind (teardown)*"])


def test_failing_test_reports_leftovers_without_a_second_failure(pytester):
    result = run(
        pytester,
        """
        def test_fails(reactor):
            reactor.call_later(60, print)
            assert False, "the real problem"
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the real problem*", "*torsion leftovers*", "*still pending*"])


def test_reactor_fixture_runs_async_tests_on_its_loop(pytester):
    result = run(
        pytester,
        """
        import asyncio
        from torsion.defer import Deferred
        from torsion.internet import Reactor

        seen = []

        async def test_on_the_reactor(reactor):
            assert isinstance(reactor, Reactor)
            assert asyncio.get_running_loop() is reactor.loop
            d = Deferred()
            reactor.call_later(0, d.callback, "fired")
            assert await d == "fired"
            seen.append(reactor)

        def test_sync_gets_a_reactor_too(reactor):
            assert isinstance(reactor, Reactor)
            assert reactor is not seen[0]
            assert not reactor.loop.is_running()
            assert seen[0].loop.is_closed()
        """,
    )
    result.assert_outcomes(passed=2)


def test_clock_fixture(pytester):
    result = run(
        pytester,
        """
        from torsion.testing import Clock

        def test_clock(clock):
            assert isinstance(clock, Clock)
            fired = []
            clock.call_later(1, fired.append, 1)
            clock.advance(1)
            assert fired == [1]

        def test_fresh_clock_each_time(clock):
            assert clock.seconds() == 0
            clock.call_later(5, print)  # a fake clock's calls are not leftovers
        """,
    )
    result.assert_outcomes(passed=2)


@pytest.mark.skipif(not uvloop_available(), reason="uvloop is not installed")
def test_uvloop_by_marker_and_by_option(pytester, monkeypatch):
    source = """
        import asyncio
        import pytest
        import uvloop

        @pytest.mark.torsion_loop("uvloop")
        async def test_marked(reactor):
            assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
            assert reactor.loop is asyncio.get_running_loop()

        async def test_default():
            loop = asyncio.get_running_loop()
            assert isinstance(loop, uvloop.Loop) == (LOOP == "uvloop")
        """
    pytester.makepyfile(test_inner=source.replace("LOOP", "__import__('os').environ['LOOP']"))
    monkeypatch.setenv("LOOP", "asyncio")
    pytester.runpytest_inprocess(*QUIET).assert_outcomes(passed=2)
    monkeypatch.setenv("LOOP", "uvloop")
    result = pytester.runpytest_inprocess(*QUIET, "--torsion-loop", "uvloop")
    result.assert_outcomes(passed=2)


def test_markers_are_declared(pytester):
    result = pytester.runpytest_inprocess("--markers")
    result.stdout.fnmatch_lines(["*timeout(seconds)*", "*torsion_loop(name)*"])


def test_tests_marked_for_other_async_plugins_are_left_to_them(pytester):
    # With that plugin switched off (anyio's comes with Starlette), pytest
    # itself refuses the test: proof that torsion did not take it.
    result = run(
        pytester,
        """
        import pytest

        @pytest.mark.anyio
        async def test_for_anyio():
            pass
        """,
        "-p",
        "no:anyio",
        "-W",
        "ignore::pytest.PytestUnknownMarkWarning",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*async def functions are not natively supported*"])


def test_leftover_tasks_are_cancelled_with_the_loop(pytester):
    result = run(
        pytester,
        """
        import asyncio

        cancelled = []

        async def forever():
            try:
                await asyncio.get_running_loop().create_future()
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        async def test_starts_a_task():
            asyncio.get_running_loop().create_task(forever())
            await asyncio.sleep(0)

        def test_it_was_cancelled():
            assert cancelled == [True]
        """,
    )
    result.assert_outcomes(passed=2)


def test_bad_marker_arguments_fail_the_test_clearly(pytester):
    result = run(
        pytester,
        """
        import pytest

        @pytest.mark.timeout("soon")
        async def test_bad_timeout():
            pass

        @pytest.mark.torsion_loop("trio")
        async def test_bad_loop():
            pass
        """,
    )
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines_random(
        [
            "*@pytest.mark.timeout needs a number of seconds, got 'soon'*",
            "*@pytest.mark.torsion_loop takes one of ('asyncio', 'uvloop'), not 'trio'*",
        ]
    )


def test_objects_made_before_the_tests_are_frozen_out_of_gc(pytester, monkeypatch):
    # Some interpreters (3.12) start with objects frozen already: compare with that.
    baseline = subprocess.run(
        [sys.executable, "-c", "import gc; print(gc.get_freeze_count())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    monkeypatch.setenv("FROZEN_AT_START", baseline)
    pytester.makepyfile(
        test_inner="""
        import gc
        import os

        def test_frozen():
            grew = gc.get_freeze_count() > int(os.environ["FROZEN_AT_START"])
            assert grew == (os.environ["EXPECT_FROZEN"] == "1")
        """
    )
    monkeypatch.setenv("EXPECT_FROZEN", "1")
    pytester.runpytest_subprocess(*QUIET).assert_outcomes(passed=1)
    monkeypatch.setenv("EXPECT_FROZEN", "0")
    result = pytester.runpytest_subprocess(*QUIET, "-o", "torsion_gc_freeze=false")
    result.assert_outcomes(passed=1)
