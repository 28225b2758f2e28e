"""``react``: run a main function on a reactor, then exit with its status.

The entry point of a small program::

    async def main(reactor: Reactor, host: str) -> None:
        ...

    if __name__ == "__main__":
        react(main, sys.argv[1:])
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from torsion.defer import CancelledError, Deferred, maybe_deferred
from torsion.errors import ReactorNotRunningError
from torsion.internet._reactor import Reactor

__all__ = ["react"]

_log = logging.getLogger("torsion.internet")


class _Main:
    """Runs the main function once the reactor runs, and keeps its exit status."""

    def __init__(self, reactor: Reactor, main: Callable[..., Any], argv: Sequence[Any]) -> None:
        self.reactor = reactor
        self.main = main
        self.argv = argv
        self.deferred: Deferred[Any] | None = None
        self.finished = False
        self.cancelled_by_us = False
        self.status: int | str | None = 0

    def start(self) -> None:
        d = maybe_deferred(self.main, self.reactor, *self.argv)
        self.deferred = d
        d.add_callbacks(self._succeeded, self._failed)

    def before_shutdown(self) -> None:
        # The reactor stops (a signal, or someone called stop()) before main
        # finished: cancel it, so that it can clean up while the loop still runs.
        if self.deferred is not None and not self.finished:
            self.cancelled_by_us = True
            self.deferred.cancel()

    def _succeeded(self, _: object) -> None:
        self.finished = True
        self.status = 0
        self._stop()

    def _failed(self, exc: BaseException) -> None:
        self.finished = True
        if isinstance(exc, SystemExit):
            self.status = exc.code
        elif isinstance(exc, CancelledError) and self.cancelled_by_us:
            interrupted = self.reactor._signal
            if interrupted is not None:
                name = signal.Signals(interrupted).name
                _log.error("Interrupted by %s before the main function finished", name)
                self.status = 1
            else:
                self.status = 0
        elif isinstance(exc, KeyboardInterrupt):
            _log.error("Interrupted before the main function finished")
            self.status = 1
        else:
            _log.error(
                "Main function failed: %r", exc, exc_info=(type(exc), exc, exc.__traceback__)
            )
            self.status = 1
        self._stop()

    def _stop(self) -> None:
        # It may be stopping already: main called stop(), or a signal came.
        with contextlib.suppress(ReactorNotRunningError):
            self.reactor.stop()


def react(
    main: Callable[..., Any], argv: Sequence[Any] = (), *, reactor: Reactor | None = None
) -> NoReturn:
    """Run ``main(reactor, *argv)`` on a running reactor, then exit the process.

    ``main`` may return a plain value, a Deferred or a coroutine (an ``async
    def`` main). When that finishes, the reactor is stopped and the process
    exits with ``sys.exit`` and the status:

    - 0 when ``main`` succeeded;
    - the code of a ``SystemExit`` raised in ``main``;
    - 1 when ``main`` failed (the error is logged with its traceback, to
      logger ``torsion.internet``);
    - 1 when SIGINT or SIGTERM (Ctrl-C) stopped the reactor before ``main``
      finished (``main`` is cancelled first, and a message is logged);
    - 0 when something else stopped the reactor before ``main`` finished.

    Args:
        main: The program, called with the reactor and the arguments.
        argv: The arguments for ``main``.
        reactor: The reactor to run; a new one (closed afterwards) if omitted.

    Raises:
        SystemExit: Always, with the status above.
    """
    owned = reactor is None
    if reactor is None:
        reactor = Reactor()
    runner = _Main(reactor, main, argv)
    reactor.call_when_running(runner.start)
    trigger = reactor.add_system_event_trigger("before", "shutdown", runner.before_shutdown)
    status: int | str | None
    try:
        reactor.run()
        status = runner.status
    except SystemExit as exc:
        # Raised out of a callback rather than from main's Deferred.
        status = exc.code
    except KeyboardInterrupt:
        _log.error("Interrupted before the main function finished")
        status = 1
    finally:
        # Normally it ran; not if run() ended without a shutdown.
        with contextlib.suppress(ValueError):
            reactor.remove_system_event_trigger(trigger)
        if owned:
            reactor.close()
    sys.exit(status)
