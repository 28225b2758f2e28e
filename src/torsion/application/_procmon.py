"""``ProcessMonitor`` and ``torsion procmon``: keep a set of processes running.

Each process is started with the service and started again whenever it
ends, after a delay: ``min_restart_delay`` at first, doubling each time the
process dies young (before running ``threshold`` seconds), up to
``max_restart_delay``, and back to the start once it ran long enough. So a
program that crashes at once is retried ever more slowly instead of
spinning, and one that crashes after a day is back within a second.

What the processes write on standard output and error is logged line by
line (``NAME[PID]: line``), on the ``torsion.application._procmon`` logger.
SIGHUP to the runner is passed on to each process. On stop, each process
gets SIGTERM, then SIGKILL if it is still there ``kill_time`` seconds later
(or at once, when the stop is hurried).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import shutil
import signal
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torsion.application._app import Application
from torsion.application._errors import UsageError
from torsion.application._lines import LineSplitter
from torsion.application._plugins import Option, Plugin
from torsion.defer import Deferred, gather, succeed
from torsion.errors import ProcessExitedError
from torsion.internet import (
    ChildProcess,
    Clock,
    DelayedCall,
    ProcessProtocol,
    ProcessStatus,
    Reactor,
    ReactorProcess,
)

__all__ = ["PROCMON", "ManagedProcess", "ProcessMonitor", "parse_process"]

_log = logging.getLogger(__name__)


class ProcmonReactor(ReactorProcess, Clock, typing.Protocol):
    """What ``ProcessMonitor`` needs: children, and time."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ManagedProcess:
    """A process to keep running.

    Attributes:
        name: What it is called in the log and in ``ProcessMonitor``.
        args: The program and its arguments (``args[0]`` is looked up on PATH).
        user: The user it runs as (needs root).
        group: Its group.
        env: Its environment (the monitor's own if None).
        cwd: Its working directory (the monitor's if None).
    """

    name: str
    args: tuple[str, ...]
    user: str | None = None
    group: str | None = None
    env: Mapping[str, str] | None = None
    cwd: str | None = None


@dataclass(eq=False)
class _State:
    """One managed process's current run and its restart bookkeeping."""

    process: ManagedProcess
    transport: ChildProcess | None = None
    started_at: float = 0.0
    delay: float = 0.0
    restart: DelayedCall | None = None
    ended: list[Deferred[None]] = field(default_factory=list)
    removed: bool = False


class _Child(ProcessProtocol):
    """Hears one run of a managed process: its output, its end."""

    def __init__(self, monitor: ProcessMonitor, state: _State) -> None:
        self.monitor = monitor
        self.state = state
        self.pid: int | None = None
        name = state.process.name
        self._out = LineSplitter(lambda line: _log.info("%s[%s]: %s", name, self.pid, line))
        self._err = LineSplitter(lambda line: _log.info("%s[%s]: %s", name, self.pid, line))

    def connection_made(self, transport: ChildProcess) -> None:
        super().connection_made(transport)
        self.pid = transport.pid
        process = self.state.process
        command = shlex.join(process.args)
        _log.info("%s started (pid %d): %s", process.name, transport.pid, command)

    def out_received(self, data: bytes) -> None:
        self._out.feed(data)

    def err_received(self, data: bytes) -> None:
        self._err.feed(data)

    def out_connection_lost(self) -> None:
        self._out.flush()

    def err_connection_lost(self) -> None:
        self._err.flush()

    def process_ended(self, status: ProcessStatus) -> None:
        self.monitor._ended(self.state, self.pid, status)


class ProcessMonitor:
    """Keeps processes running, restarting them with growing delays.

    Args:
        reactor: Starts the processes and times the restarts.
        min_restart_delay: Seconds before restarting a process that died.
        max_restart_delay: The longest delay, however often it died.
        threshold: A process that ran this long before dying is restarted
            after ``min_restart_delay`` again.
        kill_time: Seconds between SIGTERM and SIGKILL on stop.

    Attributes:
        running: Whether the monitor runs.
    """

    def __init__(
        self,
        reactor: ProcmonReactor,
        *,
        min_restart_delay: float = 1.0,
        max_restart_delay: float = 60.0,
        threshold: float = 60.0,
        kill_time: float = 5.0,
    ) -> None:
        if not 0 <= min_restart_delay <= max_restart_delay:
            raise ValueError("restart delays must satisfy 0 <= min <= max")
        self._reactor = reactor
        self.min_restart_delay = min_restart_delay
        self.max_restart_delay = max_restart_delay
        self.threshold = threshold
        self.kill_time = kill_time
        self._states: dict[str, _State] = {}
        self.running = False
        self._hurry = False

    # -- the processes ----------------------------------------------------------------

    def add_process(self, process: ManagedProcess) -> None:
        """Manage ``process`` (started at once if the monitor runs).

        Raises:
            ValueError: A process of that name is managed already.
        """
        if process.name in self._states:
            raise ValueError(f"a process named {process.name!r} is managed already")
        state = _State(process, delay=self.min_restart_delay)
        self._states[process.name] = state
        if self.running:
            self._start(state)

    def remove_process(self, name: str) -> Deferred[None]:
        """Stop managing ``name``, stopping it; the Deferred fires once it has ended.

        Raises:
            KeyError: No process of that name is managed.
        """
        state = self._states.pop(name)
        state.removed = True
        return self._stop(state)

    @property
    def processes(self) -> dict[str, ManagedProcess]:
        """The managed processes, by name."""
        return {name: state.process for name, state in self._states.items()}

    def pid(self, name: str) -> int | None:
        """The process id of ``name``'s current run (None while it is not running)."""
        transport = self._states[name].transport
        return transport.pid if transport is not None else None

    # -- running them -----------------------------------------------------------------

    def _start(self, state: _State) -> None:
        state.restart = None
        process = state.process
        child = _Child(self, state)
        state.started_at = self._reactor.seconds()
        d = self._reactor.spawn_process(
            child,
            process.args[0],
            process.args,
            env=process.env,
            path=process.cwd,
            uid=process.user,
            gid=process.group,
        )

        def started(transport: ChildProcess) -> None:
            state.transport = transport
            transport.close_stdin()  # Nothing to read: end of file at once.
            _log.info(
                "%s started (pid %d): %s", process.name, transport.pid, shlex.join(process.args)
            )

        def failed(exc: BaseException) -> None:
            _log.error("Cannot start %s: %s", process.name, exc)
            self._schedule(state)

        d.add_callbacks(started, failed)

    def _ended(self, state: _State, pid: int | None, status: ProcessStatus) -> None:
        state.transport = None
        waiters, state.ended = state.ended, []
        for d in waiters:
            d.callback(None)
        if not self.running or state.removed:
            _log.info("%s (pid %s) %s", state.process.name, pid, status)
            return
        ran = self._reactor.seconds() - state.started_at
        if ran >= self.threshold:
            state.delay = self.min_restart_delay
        _log.warning(
            "%s (pid %s) %s after %.3gs; restarting in %.3gs",
            state.process.name,
            pid,
            status,
            ran,
            state.delay,
        )
        self._schedule(state)

    def _schedule(self, state: _State) -> None:
        if not self.running or state.removed:
            return
        state.restart = self._reactor.call_later(state.delay, self._start, state)
        state.delay = min(max(state.delay * 2, self.min_restart_delay), self.max_restart_delay)

    # -- the service ------------------------------------------------------------------

    def start_service(self) -> None:
        """Start every process."""
        self.running = True
        self._hurry = False
        for state in self._states.values():
            if state.transport is None and state.restart is None:
                self._start(state)

    def reload_service(self) -> None:
        """Pass SIGHUP on to every process."""
        for state in self._states.values():
            if state.transport is not None:
                with contextlib.suppress(ProcessExitedError):
                    state.transport.signal_process(signal.SIGHUP)

    def stop_service(self) -> Deferred[None]:
        """Stop every process: SIGTERM, then SIGKILL after ``kill_time``.

        Cancelling the returned Deferred kills them at once.
        """
        self.running = False
        waits = [self._stop(state) for state in self._states.values()]
        done: Deferred[None] = Deferred(lambda _: self._kill_all())
        gather(waits).add_both(lambda _: None if done.called else done.callback(None))
        return done

    def _stop(self, state: _State) -> Deferred[None]:
        if state.restart is not None:
            if state.restart.active():
                state.restart.cancel()
            state.restart = None
        transport = state.transport
        if transport is None:
            return succeed(None)
        d: Deferred[None] = Deferred()
        state.ended.append(d)
        with contextlib.suppress(ProcessExitedError):
            transport.signal_process(signal.SIGTERM)
        killer = self._reactor.call_later(self.kill_time, self._kill, state)
        d.add_both(lambda _: killer.cancel() if killer.active() else None)
        return d

    def _kill(self, state: _State) -> None:
        if state.transport is not None:
            _log.warning(
                "%s (pid %d) still running; killing it", state.process.name, state.transport.pid
            )
            state.transport.kill()

    def _kill_all(self) -> None:
        for state in self._states.values():
            self._kill(state)

    def __repr__(self) -> str:
        running = sum(state.transport is not None for state in self._states.values())
        return f"<ProcessMonitor {running}/{len(self._states)} running>"


_NAMED = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.-]*)=(.*)$", re.DOTALL)


def parse_process(text: str) -> tuple[str | None, list[str]]:
    """Split ``[NAME=]COMMAND LINE`` (shell quoting) into the name and the arguments.

    Raises:
        ValueError: The command line is empty or badly quoted.
    """
    name: str | None = None
    named = _NAMED.match(text.strip())
    if named and " " not in named.group(1):
        name, text = named.group(1), named.group(2)
    try:
        args = shlex.split(text)
    except ValueError as exc:
        raise ValueError(f"--process: {text!r}: {exc}") from None
    if not args:
        raise ValueError(f"--process: {text!r} has no command")
    return name, args


def _check_process(text: str) -> str:
    parse_process(text)
    return text


def _build(reactor: Reactor, options: Mapping[str, Any]) -> Application:
    processes: list[str] = options["process"]
    if not processes:
        raise UsageError("procmon: give at least one --process")
    monitor = ProcessMonitor(
        reactor,
        min_restart_delay=options["min_restart_delay"],
        max_restart_delay=options["max_restart_delay"],
        threshold=options["threshold"],
        kill_time=options["kill_time"],
    )
    for text in processes:
        name, args = parse_process(text)
        if shutil.which(args[0]) is None:
            raise UsageError(f"procmon: there is no program {args[0]!r}")
        name = name or os.path.basename(args[0])
        unique, n = name, 1
        while unique in monitor.processes:
            n += 1
            unique = f"{name}-{n}"
        monitor.add_process(
            ManagedProcess(
                name=unique, args=tuple(args), user=options["user"], group=options["group"]
            )
        )
    app = Application("procmon")
    app.add_service(monitor, "processes")
    return app


def _seconds(name: str) -> Any:
    def check(value: float) -> float:
        if value < 0:
            raise ValueError(f"--{name}: must not be negative, not {value:g}")
        return value

    return check


PROCMON = Plugin(
    name="procmon",
    description="keep processes running: restart with backoff, log their output",
    options=(
        Option(
            "process",
            "a process to keep running: [NAME=]COMMAND LINE, quoted as for a shell",
            repeatable=True,
            check=_check_process,
            metavar="[NAME=]COMMAND",
        ),
        Option("user", "run the processes as this user (needs root)"),
        Option("group", "run the processes as this group"),
        Option(
            "min-restart-delay",
            "seconds before restarting a process that ended",
            type=float,
            default=1.0,
            check=_seconds("min-restart-delay"),
            metavar="SECONDS",
        ),
        Option(
            "max-restart-delay",
            "the longest delay before a restart, however often it died",
            type=float,
            default=60.0,
            check=_seconds("max-restart-delay"),
            metavar="SECONDS",
        ),
        Option(
            "threshold",
            "a process that ran this long is restarted without delay growing",
            type=float,
            default=60.0,
            check=_seconds("threshold"),
            metavar="SECONDS",
        ),
        Option(
            "kill-time",
            "seconds between SIGTERM and SIGKILL when stopping",
            type=float,
            default=5.0,
            check=_seconds("kill-time"),
            metavar="SECONDS",
        ),
    ),
    build=_build,
)
