"""The runner: run a service tree as a well-behaved Unix service, until told to stop.

What ``torsion PLUGIN``, ``torsion run APP.py`` and ``torsion -f FILE.toml``
all come down to. In order:

1. Logging is set up (``--logfile``, ``--log-format``, ``--syslog``).
2. With ``--daemon``, the process detaches; the command waits for the
   daemon's start-up report (see ``_daemon``).
3. The pidfile is written (refused if a running process holds it).
4. The reactor is made and the service tree built.
5. On the running reactor: the tree's privileged start (ports below 1024),
   the switch to ``--uid``/``--gid``, the tree's start; then systemd hears
   ``READY=1`` and the starting command its success.
6. SIGHUP reopens the log files and reloads the tree; SIGTERM or SIGINT
   stops it: the ports stop accepting, the work in hand has
   ``--shutdown-timeout`` seconds to finish, and what is left is cut off.
7. The pidfile is removed, ``--profile`` stats written, and the exit status
   returned: 0 after a stop, 1 when the service could not run, 2 for a
   usage error. Each failure is one line on standard error, no traceback.
"""

from __future__ import annotations

import contextlib
import cProfile
import logging
import os
import re
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TextIO

from torsion.application._app import Application
from torsion.application._daemon import StartupReport, daemonize
from torsion.application._errors import RunnerError, UsageError
from torsion.application._logging import LogSetup, configure_logging
from torsion.application._options import RunnerOptions
from torsion.application._pidfile import Pidfile
from torsion.application._privileges import Credentials, drop_privileges, resolve_credentials
from torsion.application._sdnotify import SystemdNotifier, watchdog_interval
from torsion.application._service import Service
from torsion.defer import CancelledError, Deferred, awaitable_deferred, ensure_deferred
from torsion.errors import TorsionError
from torsion.internet import LoopingCall, Reactor

__all__ = ["Target", "describe_error", "run"]

_log = logging.getLogger(__name__)

_ERRNO = re.compile(r"\[Errno \d+\] ")

# The reactor's own bound on shutdown triggers, beyond --shutdown-timeout:
# the runner cuts work off at the deadline itself, and this is a backstop.
_SHUTDOWN_MARGIN = 10.0

USAGE = 2
FAILURE = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """What the runner runs.

    Attributes:
        name: What it is called in log lines ("echo service").
        build: Builds the service tree, given the reactor. It may raise
            ``UsageError`` (or ``ValueError``) for bad options.
        make_reactor: Makes the reactor (worker processes share their ports).
    """

    name: str
    build: Callable[[Reactor], Service]
    make_reactor: Callable[[RunnerOptions], Reactor] | None = None


def describe_error(exc: BaseException) -> str:
    """One line naming the problem, for an operator (no traceback)."""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
        if exc.filename and str(exc.filename) not in text:
            text += f": {exc.filename}"
    elif isinstance(exc, TorsionError | ValueError) and str(exc):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    # "[Errno 98] Address already in use" reads better without the number.
    return _ERRNO.sub("", text).replace("\n", " ")


def exit_status(exc: BaseException) -> int:
    """The exit status for a failure: 2 for usage errors, 1 for the rest."""
    return USAGE if isinstance(exc, UsageError | ValueError) else FAILURE


def run(
    target: Target,
    options: RunnerOptions,
    *,
    stderr: TextIO | None = None,
    show_pid: bool = False,
    manage_process: bool = True,
    interruptible: bool = True,
) -> int:
    """Run ``target`` until it is told to stop; return the exit status.

    Args:
        target: What to run.
        options: How (the common options).
        stderr: Where the one-line errors go (``sys.stderr`` if None).
        show_pid: Put the process id in text log lines (worker processes).
        manage_process: Daemonize and keep the pidfile as the options say
            (False in a worker process, whose supervisor does both).
        interruptible: Stop on SIGINT. A worker process ignores it: Ctrl-C
            in a terminal reaches every process of the group, and the
            supervisor passes the stop on as SIGTERM.
    """
    run = _Run(target, options, stderr or sys.stderr, show_pid, manage_process)
    run.interruptible = interruptible
    return run.main()


class _Run:
    """One run of the runner: its state from start to exit."""

    def __init__(
        self,
        target: Target,
        options: RunnerOptions,
        stderr: TextIO,
        show_pid: bool,
        manage_process: bool,
    ) -> None:
        self.target = target
        self.options = options
        self.stderr = stderr
        self.show_pid = show_pid
        self.manage_process = manage_process
        self.report = StartupReport(None)
        self.logs = LogSetup()
        self.notifier: SystemdNotifier | None = None
        self.status = 0
        self.failure: str | None = None
        self.app: Application | None = None
        self.started = False
        self.watchdog: LoopingCall | None = None
        self.interruptible = True

    # -- failing in one line --------------------------------------------------------

    def fail(self, status: int, message: str) -> int:
        """Report a failure on one line (to the waiting command, or standard error)."""
        line = f"torsion: {message}"
        if not self.logs.to_stderr and self.logs.handlers:
            _log.error("%s", message)
        if self.report.waiting:
            self.report.failed(status, line)
        else:
            self.stderr.write(line + "\n")
            self.stderr.flush()
        return status

    # -- the whole run --------------------------------------------------------------

    def main(self) -> int:
        options = self.options
        try:
            self.logs = configure_logging(
                logfile=options.logfile,
                log_format=options.log_format,
                level=options.log_level,
                syslog=options.syslog,
                show_pid=self.show_pid,
            )
        except RunnerError as exc:
            return self.fail(FAILURE, str(exc))
        try:
            return self._main()
        finally:
            self.logs.close()

    def _main(self) -> int:
        options = self.options
        pidfile = Pidfile(options.pidfile) if options.pidfile and self.manage_process else None
        try:
            if pidfile is not None:
                pidfile.check()  # Before detaching, so that the shell hears it.
            if options.daemon and self.manage_process:
                if self.logs.to_stderr and not options.syslog:
                    self.stderr.write(
                        "torsion: warning: --daemon without --logfile or --syslog: "
                        "the log goes nowhere\n"
                    )
                self.report = daemonize(umask=options.umask_value)
            elif options.umask_value is not None:
                os.umask(options.umask_value)
            if pidfile is not None:
                pidfile.write()
        except TorsionError as exc:
            return self.fail(exit_status(exc), describe_error(exc))
        try:
            return self._serve()
        finally:
            if pidfile is not None:
                pidfile.remove()
            if self.report.waiting:
                # Nothing was reported (a crash): the command must not hang.
                self.report.failed(FAILURE, "torsion: the daemon stopped during start-up")

    def _serve(self) -> int:
        options = self.options
        make = self.target.make_reactor
        reactor = (
            make(options) if make is not None else Reactor(uvloop=options.reactor == "uvloop")
        )
        reactor.shutdown_timeout = options.shutdown_timeout + _SHUTDOWN_MARGIN
        profiler = cProfile.Profile() if options.profile else None
        try:
            try:
                built = self.target.build(reactor)
            except (TorsionError, ValueError) as exc:
                return self.fail(exit_status(exc), describe_error(exc))
            app = built if isinstance(built, Application) else _wrap(built, self.target.name)
            self.app = app
            try:
                credentials = resolve_credentials(
                    options.uid if options.uid is not None else app.uid,
                    options.gid if options.gid is not None else app.gid,
                )
            except UsageError as exc:
                return self.fail(USAGE, str(exc))
            self.notifier = SystemdNotifier()
            reactor.call_when_running(self._start, reactor, app, credentials)
            reactor.add_system_event_trigger("before", "shutdown", self._stop, reactor, app)
            if profiler is not None:
                profiler.enable()
            try:
                reactor.run()
            finally:
                if profiler is not None:
                    profiler.disable()
        finally:
            reactor.close()
        if profiler is not None and options.profile:
            self._write_profile(profiler, options.profile)
        if self.failure is not None:
            return self.fail(self.status, self.failure)
        _log.info("%s stopped", app.name)
        return 0

    # -- start-up, on the running reactor ----------------------------------------------

    def _start(self, reactor: Reactor, app: Application, credentials: Credentials) -> None:
        ensure_deferred(self._start_up(reactor, app, credentials)).add_errback(
            lambda exc: self._start_failed(reactor, exc)
        )

    async def _start_up(
        self, reactor: Reactor, app: Application, credentials: Credentials
    ) -> None:
        await _wait(app.privileged_start_service())
        drop_privileges(credentials)
        await _wait(app.start_service())
        self.started = True
        reactor.loop.add_signal_handler(signal.SIGHUP, self._reload, app)
        if not self.interruptible:
            reactor.loop.remove_signal_handler(signal.SIGINT)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        interval = watchdog_interval()
        notifier = self.notifier
        if interval is not None and notifier is not None:
            self.watchdog = LoopingCall(notifier.watchdog, clock=reactor)
            self.watchdog.start(interval)
        if notifier is not None:
            notifier.ready()
        _log.info("%s running (pid %d, %s loop)", app.name, os.getpid(), _loop_name(reactor))
        self.report.succeeded()

    def _start_failed(self, reactor: Reactor, exc: BaseException) -> None:
        if isinstance(exc, CancelledError):
            return  # Stopped (SIGTERM) while starting: no failure of its own.
        self.status = exit_status(exc)
        self.failure = describe_error(exc)
        if not isinstance(exc, TorsionError | OSError | ValueError):
            # Not an operator's mistake but a bug: its traceback is in the log.
            _log.error("Starting failed: %s", "".join(traceback.format_exception(exc)).rstrip())
        if reactor.running:
            reactor.stop()
        else:
            reactor.call_when_running(reactor.stop)

    # -- reloading ----------------------------------------------------------------------

    def _reload(self, app: Application) -> None:
        _log.info("Received SIGHUP: reopening the log files and reloading")
        self.logs.reopen()
        if self.notifier is not None:
            self.notifier.reloading()

        def reloaded(_: object) -> None:
            _log.info("%s reloaded", app.name)
            if self.notifier is not None:
                self.notifier.ready()

        app.reload_service().add_callback(reloaded)

    # -- shutting down ------------------------------------------------------------------

    def _stop(self, reactor: Reactor, app: Application) -> Deferred[None] | None:
        if self.notifier is not None:
            self.notifier.stopping()
        if self.watchdog is not None and self.watchdog.running:
            self.watchdog.stop()
        if self.started:
            with contextlib.suppress(RuntimeError, ValueError):
                reactor.loop.remove_signal_handler(signal.SIGHUP)
        if not app.running:
            return None
        timeout = self.options.shutdown_timeout
        stopping = app.stop_service()

        def hurry() -> None:
            _log.warning(
                "%s: work in hand did not finish within %gs; cutting it off", app.name, timeout
            )
            stopping.cancel()

        timer = reactor.call_later(timeout, hurry)

        def stopped(result: object) -> None:
            if timer.active():
                timer.cancel()
            if isinstance(result, BaseException) and not isinstance(result, CancelledError):
                _log.error("Stopping %s failed: %s", app.name, describe_error(result))

        return stopping.add_both(stopped)

    # -- profiling ----------------------------------------------------------------------

    def _write_profile(self, profiler: cProfile.Profile, path: str) -> None:
        try:
            profiler.dump_stats(path)
        except OSError as exc:
            _log.error("Cannot write the profile to %s: %s", path, exc.strerror)
        else:
            _log.info("Profile written to %s (read it with python -m pstats)", path)


async def _wait(result: Awaitable[None] | None) -> None:
    d = awaitable_deferred(result)
    if d is not None:
        await d


def _loop_name(reactor: Reactor) -> str:
    return "uvloop" if type(reactor.loop).__module__.startswith("uvloop") else "asyncio"


def _wrap(service: Service, name: str) -> Application:
    app = Application(name)
    app.add_service(service)
    return app
