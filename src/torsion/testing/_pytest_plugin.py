"""torsion's pytest plugin: tests on a fresh reactor, and nothing left behind.

pytest loads it by itself wherever torsion is installed (entry point
``pytest11``). It does three things:

* An ``async def`` test, or a test that returns a ``Deferred``, runs as an
  asyncio task on a fresh event loop made for that test alone, under a timeout.
  Tests marked ``asyncio``, ``anyio`` or ``trio`` are left to those plugins
  (pytest-asyncio's "auto" mode marks every async test, so use its default
  "strict" mode alongside torsion).
* Fixtures: ``reactor`` (a ``torsion.internet.Reactor`` on the loop the test
  runs on), ``clock`` (a fresh fake ``torsion.testing.Clock``) and
  ``unhandled_errors`` (see below).
* Every test, synchronous or not, fails when it leaves delayed calls pending
  on its reactor, threads working or queued in the reactor's pool, or
  Deferreds whose failure nobody handled (found by a full garbage collection
  after the test, failing it, and again after its fixtures are torn down,
  erroring its teardown). A test that means to leave such errors requests
  ``unhandled_errors``: it gets the list of them, and they no longer fail it.
  A test that fails anyway gets its leftovers as a report section instead.

Options (command line, then ini file):

* ``--torsion-timeout SECONDS`` / ``torsion_timeout`` (default 10; 0 means no
  limit), overridden per test by ``@pytest.mark.timeout(seconds)``.
* ``--torsion-loop {asyncio,uvloop}`` / ``torsion_loop`` (default asyncio),
  overridden per test by ``@pytest.mark.torsion_loop("uvloop")``.

The garbage collections are cheap because the objects made before the first
test (modules, pytest's own) are frozen out of the collector with
``gc.freeze()`` for the session; ``torsion_gc_freeze = false`` turns that off.

Async fixtures are not supported: fixtures are synchronous, and an async test
does its asynchronous set-up itself (the ``reactor`` fixture's loop is the
test's loop). The timeout applies to asynchronous tests only; nothing can
interrupt a synchronous test.
"""

from __future__ import annotations

import functools
import gc
import inspect
from collections.abc import Awaitable, Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from torsion.defer import Deferred
from torsion.testing._clock import Clock
from torsion.testing._leaks import (
    UnhandledErrorCollector,
    collect_unreferenced_deferreds,
    describe_leftovers,
    describe_unhandled,
    reactor_leftovers,
)
from torsion.testing._runtime import LOOP_NAMES, TestRuntime, TestTimeout, uvloop_available

if TYPE_CHECKING:
    from torsion.internet import Reactor

__all__ = [
    "clock",
    "pytest_addoption",
    "pytest_configure",
    "pytest_unconfigure",
    "reactor",
    "unhandled_errors",
]

DEFAULT_TIMEOUT = 10.0

# Tests carrying one of these markers belong to another async plugin.
_FOREIGN_ASYNC_MARKERS = frozenset({"asyncio", "anyio", "trio"})


class _TorsionPlugin:
    """The per-session half of the plugin: hooks that need its settings."""

    # Whether a session (an outer one, under pytester) has frozen the GC.
    _session_froze: ClassVar[bool] = False

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.collector = UnhandledErrorCollector()
        self.default_timeout = _configured_timeout(config)
        self.default_loop = _configured_loop(config)
        self.freeze_gc = bool(config.getini("torsion_gc_freeze"))

    # Settings per test.

    def timeout_for(self, item: pytest.Item) -> float | None:
        """Return the test's timeout in seconds, None for no limit."""
        marker = item.get_closest_marker("timeout")
        if marker is None:
            seconds = self.default_timeout
        else:
            raw: Any = marker.args[0] if marker.args else marker.kwargs.get("seconds")
            try:
                seconds = float(raw)
            except (TypeError, ValueError):
                pytest.fail(
                    f"{item.nodeid}: @pytest.mark.timeout needs a number of seconds, got {raw!r}",
                    pytrace=False,
                )
        return seconds if seconds > 0 else None

    def loop_for(self, item: pytest.Item) -> str:
        """Return the name of the event loop the test runs on."""
        marker = item.get_closest_marker("torsion_loop")
        if marker is None:
            return self.default_loop
        name = marker.args[0] if marker.args else marker.kwargs.get("name")
        if name not in LOOP_NAMES:
            pytest.fail(
                f"{item.nodeid}: @pytest.mark.torsion_loop takes one of {LOOP_NAMES}, "
                f"not {name!r}",
                pytrace=False,
            )
        if name == "uvloop" and not uvloop_available():
            pytest.skip("uvloop is not installed")
        return str(name)

    # The runtime (loop and reactor) of a test.

    def runtime(self, item: pytest.Item) -> TestRuntime:
        """Return the test's runtime, making it on first use."""
        runtime = item.stash.get(_RUNTIME_KEY, None)
        if runtime is None:
            runtime = TestRuntime(self.loop_for(item))
            item.stash[_RUNTIME_KEY] = runtime
        return runtime

    def close_runtime(self, item: pytest.Item) -> None:
        """Close the test's runtime if it has one."""
        runtime = item.stash.get(_RUNTIME_KEY, None)
        if runtime is not None:
            del item.stash[_RUNTIME_KEY]
            runtime.close()

    def run_async(self, item: pytest.Item, make: Callable[[], Awaitable[Any]]) -> None:
        """Run the awaitable ``make()`` gives on the test's loop, under its timeout."""
        owned_here = _RUNTIME_KEY not in item.stash
        runtime = self.runtime(item)
        timeout = self.timeout_for(item)
        timed_out: TestTimeout | None = None
        try:
            runtime.run(make, timeout=timeout)
        except TestTimeout as exc:
            timed_out = exc
        finally:
            if owned_here:
                self.close_runtime(item)
        if timed_out is not None:
            pytest.fail(
                f"{item.nodeid} timed out after {timed_out.timeout:g} s "
                "(change the limit with @pytest.mark.timeout(seconds), --torsion-timeout "
                "or the torsion_timeout ini option)\n\n"
                f"{timed_out.stack}",
                pytrace=False,
            )

    # Leftovers.

    def leftovers(self, item: pytest.Item, *, collect: bool) -> list[str]:
        """Describe (and clear) what the test left behind so far."""
        paragraphs: list[str] = []
        runtime = item.stash.get(_RUNTIME_KEY, None)
        if runtime is not None and runtime.has_reactor:
            paragraphs += reactor_leftovers(runtime.reactor)
        if collect:
            # Unreferenced failed Deferreds report themselves when collected.
            collect_unreferenced_deferreds()
        if not item.stash.get(_EXPECT_ERRORS_KEY, False) and self.collector.errors:
            paragraphs.append(describe_unhandled(self.collector.errors))
            self.collector.reset()
        return paragraphs

    def settle(self, item: pytest.Item, when: str, *, passed: bool) -> None:
        """Fail a test that passed but left things behind; note them otherwise."""
        paragraphs = self.leftovers(item, collect=passed)
        if not paragraphs:
            return
        message = describe_leftovers(item.nodeid, when, paragraphs)
        if passed:
            pytest.fail(message, pytrace=False)
        item.add_report_section(when, "torsion leftovers", message)

    # Hooks.

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, object, object]:
        """Freeze what exists before the tests, so that each test's gc is cheap.

        The full collections after each test would otherwise scan every
        object pytest and the imported modules hold, milliseconds a test.
        Frozen objects are only skipped by the cyclic collector (reference
        counting still frees them); nested sessions (pytester) leave an outer
        session's freeze alone.
        """
        # Not the freeze count: some interpreters (3.12) start with objects frozen.
        froze = self.freeze_gc and not _TorsionPlugin._session_froze
        if froze:
            _TorsionPlugin._session_froze = True
            gc.collect()
            gc.freeze()
        try:
            return (yield)
        finally:
            if froze:
                gc.unfreeze()
                _TorsionPlugin._session_froze = False

    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Function) -> bool | None:
        """Run an ``async def`` test on its own loop; leave other tests alone."""
        if not _is_ours(pyfuncitem):
            return None
        function = pyfuncitem.obj
        arguments = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
        self.run_async(pyfuncitem, lambda: function(**arguments))
        return True

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, None, None]:
        """Start collecting the test's unhandled errors afresh."""
        self.collector.reset()
        item.stash[_EXPECT_ERRORS_KEY] = False
        item.stash[_CALL_PASSED_KEY] = False
        return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        """Let a test return a Deferred; fail it if it leaves things behind."""
        restore = _wrap_deferred_test(self, item)
        try:
            result = yield
        except BaseException:
            restore()
            self.settle(item, "call", passed=False)
            raise
        restore()
        self.settle(item, "call", passed=True)
        item.stash[_CALL_PASSED_KEY] = True
        return result

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Generator[None, None, None]:
        """After the fixtures are gone, look again for unhandled errors."""
        try:
            result = yield
        finally:
            self.close_runtime(item)
        self.settle(item, "teardown", passed=item.stash.get(_CALL_PASSED_KEY, False))
        return result


_PLUGIN_KEY = pytest.StashKey[_TorsionPlugin]()
_RUNTIME_KEY = pytest.StashKey[TestRuntime]()
_EXPECT_ERRORS_KEY = pytest.StashKey[bool]()
_CALL_PASSED_KEY = pytest.StashKey[bool]()


def _is_ours(item: pytest.Function) -> bool:
    if not inspect.iscoroutinefunction(item.obj):
        return False
    return not any(item.get_closest_marker(name) for name in _FOREIGN_ASYNC_MARKERS)


def _wrap_deferred_test(plugin: _TorsionPlugin, item: pytest.Item) -> Callable[[], None]:
    """Make a plain test that returns a Deferred wait for it on the loop.

    The test function is swapped for a wrapper for the duration of the call,
    so pytest's own ``pytest_pyfunc_call`` still runs it (and still warns
    about other non-None results). Returns what undoes the swap.
    """
    if type(item) is not pytest.Function:
        return _nothing
    original = item.obj
    if not callable(original) or inspect.iscoroutinefunction(original):
        return _nothing
    if inspect.isasyncgenfunction(original):
        return _nothing

    @functools.wraps(original)
    def call_test(**arguments: Any) -> Any:
        result = original(**arguments)
        if _is_deferred(result):
            plugin.run_async(item, lambda: _wait_for(result))
            return None
        return result

    item.obj = call_test

    def restore() -> None:
        item.obj = original

    return restore


def _nothing() -> None:
    pass


def _is_deferred(value: object) -> bool:
    return isinstance(value, Deferred)


async def _wait_for(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _configured_timeout(config: pytest.Config) -> float:
    value: Any = config.getoption("torsion_timeout")
    source = "--torsion-timeout"
    if value is None:
        value = config.getini("torsion_timeout")
        source = "torsion_timeout"
    try:
        return float(value)
    except (TypeError, ValueError):
        raise pytest.UsageError(f"{source} must be a number of seconds, not {value!r}") from None


def _configured_loop(config: pytest.Config) -> str:
    value: Any = config.getoption("torsion_loop") or config.getini("torsion_loop")
    if value not in LOOP_NAMES:
        raise pytest.UsageError(f"torsion_loop must be one of {LOOP_NAMES}, not {value!r}")
    if value == "uvloop" and not uvloop_available():
        raise pytest.UsageError("torsion_loop is uvloop but uvloop is not installed")
    return str(value)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add the timeout and loop options."""
    group = parser.getgroup("torsion", "torsion: tests on a reactor")
    group.addoption(
        "--torsion-timeout",
        dest="torsion_timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help=(
            "timeout of each async or Deferred-returning test, 0 for none "
            f"(default: the torsion_timeout ini option, else {DEFAULT_TIMEOUT:g})"
        ),
    )
    group.addoption(
        "--torsion-loop",
        dest="torsion_loop",
        choices=LOOP_NAMES,
        default=None,
        help="event loop that async tests run on (default: the torsion_loop ini option)",
    )
    parser.addini(
        "torsion_timeout",
        "timeout in seconds of each async or Deferred-returning test, 0 for none",
        default=str(DEFAULT_TIMEOUT),
    )
    parser.addini(
        "torsion_gc_freeze",
        "freeze the objects made before the tests start (gc.freeze), so that the "
        "garbage collection after each test only scans what tests made",
        type="bool",
        default=True,
    )
    parser.addini(
        "torsion_loop",
        "event loop that async tests run on: asyncio or uvloop",
        default="asyncio",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Declare the markers and start the per-session plugin."""
    config.addinivalue_line(
        "markers", "timeout(seconds): per-test timeout for tests run on a real reactor"
    )
    config.addinivalue_line(
        "markers", "torsion_loop(name): run this test on the 'asyncio' or 'uvloop' event loop"
    )
    plugin = _TorsionPlugin(config)
    config.stash[_PLUGIN_KEY] = plugin
    config.pluginmanager.register(plugin, "torsion-session")
    plugin.collector.install()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop listening for unhandled errors."""
    plugin = config.stash.get(_PLUGIN_KEY, None)
    if plugin is not None:
        plugin.collector.uninstall()
        config.pluginmanager.unregister(plugin)
        del config.stash[_PLUGIN_KEY]


def _plugin(config: pytest.Config) -> _TorsionPlugin:
    return config.stash[_PLUGIN_KEY]


@pytest.fixture
def reactor(request: pytest.FixtureRequest) -> Iterator[Reactor]:
    """A fresh ``torsion.internet.Reactor``, on the loop this test runs on.

    An ``async def`` test that requests it runs on its loop; a synchronous
    test gets a reactor that is not running. It is closed after the test.
    """
    plugin = _plugin(request.config)
    item = request.node
    if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
        foreign = sorted(name for name in _FOREIGN_ASYNC_MARKERS if item.get_closest_marker(name))
        if foreign:
            pytest.fail(
                f"{item.nodeid} is run by another plugin (marked {', '.join(foreign)}), "
                "on a loop the reactor fixture cannot use; with pytest-asyncio, use its "
                "strict mode so that unmarked async tests run on torsion's reactor",
                pytrace=False,
            )
    yield plugin.runtime(item).reactor
    plugin.close_runtime(item)


@pytest.fixture
def clock() -> Clock:
    """A fresh fake ``Clock`` at time 0."""
    return Clock()


@pytest.fixture
def unhandled_errors(request: pytest.FixtureRequest) -> list[BaseException]:
    """The unhandled Deferred errors of this test, which then do not fail it.

    The list fills as errors are reported (when their Deferreds are
    garbage-collected: call ``gc.collect()`` before looking).
    """
    plugin = _plugin(request.config)
    request.node.stash[_EXPECT_ERRORS_KEY] = True
    return plugin.collector.errors
