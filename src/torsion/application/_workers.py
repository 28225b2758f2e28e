"""``--workers N``: N processes serving the same ports, kept running by a supervisor.

The ``torsion`` command becomes a supervisor: it runs the same command line
N times as worker processes (``python -m torsion ...``, told apart by
``TORSION_WORKER``), and its service tree is one ``WorkerPool``. So the
supervisor is an ordinary run of the runner: it daemonizes, keeps the
pidfile, logs, talks to systemd and handles signals as any other run does.

- Sharing the ports. Each worker binds every TCP, TLS and UDP port itself
  with ``SO_REUSEPORT``, and the kernel spreads new connections over them
  (Linux hashes each connection to one of the sockets). A port must be
  fixed: with port 0 each worker would get a port of its own. A Unix
  socket cannot be shared this way and is refused. Sockets systemd passed
  (``systemd:`` endpoints) are inherited by every worker instead: one
  socket, accepted from by all.
- Start-up. Each worker says ``READY=1`` on a notify socket of the
  supervisor's (the sd_notify protocol, ``NOTIFY_SOCKET`` pointing there).
  The supervisor is up once every worker is; a worker that exits before
  that fails the start with the worker's own one-line error and status.
- Restarts. A worker that exits after it was ready is started again, after
  a delay that grows while workers keep dying (exponential backoff), so a
  crash loop does not spin.
- Signals. SIGHUP is passed on to every worker; SIGTERM stops the pool:
  each worker gets SIGTERM and finishes gracefully within
  ``--shutdown-timeout``; the supervisor waits a little longer, then kills
  what is left.
- Privileges. Workers drop to ``--uid``/``--gid`` after binding; the
  supervisor keeps its user, since it binds again (through new workers)
  whenever one is restarted.
- Orphans. Each worker holds the read end of a pipe whose other end only
  the supervisor has; when the supervisor dies (even by SIGKILL) the
  worker reads end of file and stops gracefully, instead of serving on
  unsupervised.

Workers inherit the supervisor's standard error (its lines are passed on
as they come) and open the log file themselves; text log lines carry the
writing process's id.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
import signal
import ssl
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from torsion.application._app import Application
from torsion.application._errors import RunnerError, UsageError
from torsion.application._options import RunnerOptions
from torsion.application._service import Service
from torsion.defer import CancelledError, Deferred, gather, succeed
from torsion.errors import ProcessExitedError, ReactorNotRunningError
from torsion.internet import (
    ChildProcess,
    DatagramProtocol,
    ExponentialBackoff,
    Listener,
    ProcessProtocol,
    ProcessStatus,
    ProtocolFactory,
    Reactor,
    ServerTLS,
    UDPPort,
    UnixPath,
    listen_fds,
)

__all__ = [
    "SUPERVISOR_FD_ENV",
    "WORKER_ENV",
    "SharedPortsReactor",
    "SupervisorWatch",
    "WorkerPool",
    "watch_supervisor",
    "worker_index",
]

_log = logging.getLogger(__name__)

WORKER_ENV = "TORSION_WORKER"
# The descriptor on which a worker hears its supervisor go: end of file.
SUPERVISOR_FD_ENV = "TORSION_SUPERVISOR_FD"

# A worker's standard error is passed on line by line; a longer line is cut.
_MAX_LINE = 64 * 1024

# The supervisor waits this long beyond the workers' own shutdown deadline
# before it kills them.
_KILL_MARGIN = 5.0

# A worker that ran this long before dying counts as healthy: the backoff
# starts again from its shortest delay.
_HEALTHY_AFTER = 30.0

_LISTEN_FDS_ENV = ("LISTEN_FDS", "LISTEN_FDNAMES")


def worker_index(environ: Mapping[str, str] | None = None) -> int | None:
    """This process's worker number, if it is a worker (``TORSION_WORKER``)."""
    value = (os.environ if environ is None else environ).get(WORKER_ENV, "")
    return int(value) if value.isdigit() else None


def _shared(port: int) -> None:
    if port == 0:
        raise UsageError(
            "--workers needs fixed ports: with port 0 each worker would listen on a port "
            "of its own"
        )


class SharedPortsReactor(Reactor):
    """A reactor whose TCP, TLS and UDP ports are shared with other processes.

    Every port is bound with ``SO_REUSEPORT``; port 0 and Unix sockets are
    refused (see the module doc).
    """

    __slots__ = ()

    def listen_tcp(
        self,
        port: int,
        factory: ProtocolFactory,
        *,
        interface: str = "",
        backlog: int = 100,
        reuse_port: bool = False,
        keepalive: bool = False,
    ) -> Listener:
        """Listen as ``Reactor.listen_tcp`` does, sharing the port."""
        _shared(port)
        return super().listen_tcp(
            port,
            factory,
            interface=interface,
            backlog=backlog,
            reuse_port=True,
            keepalive=keepalive,
        )

    def listen_tls(
        self,
        port: int,
        factory: ProtocolFactory,
        context: ssl.SSLContext | ServerTLS,
        *,
        interface: str = "",
        backlog: int = 100,
        handshake_timeout: float | None = 30.0,
        reuse_port: bool = False,
        keepalive: bool = False,
    ) -> Listener:
        """Listen as ``Reactor.listen_tls`` does, sharing the port."""
        _shared(port)
        return super().listen_tls(
            port,
            factory,
            context,
            interface=interface,
            backlog=backlog,
            handshake_timeout=handshake_timeout,
            reuse_port=True,
            keepalive=keepalive,
        )

    def listen_udp(
        self, port: int, protocol: Any, *, interface: str = "", reuse_port: bool = False
    ) -> UDPPort:
        """Bind as ``Reactor.listen_udp`` does, sharing the port."""
        _shared(port)
        return super().listen_udp(port, protocol, interface=interface, reuse_port=True)

    def listen_unix(self, path: UnixPath, factory: ProtocolFactory, **kwargs: Any) -> Any:
        """Refused: worker processes cannot share a Unix socket they each bind."""
        raise UsageError(
            f"--workers cannot share the Unix socket {path!r}: each worker would replace "
            "the others' (use a systemd socket, which they inherit)"
        )


def worker_options(options: RunnerOptions, index: int) -> RunnerOptions:
    """What a worker runs with: no daemon or pidfile of its own, its own profile file."""
    profile = f"{options.profile}.worker{index}" if options.profile else None
    return dataclasses.replace(options, daemon=False, pidfile=None, workers=1, profile=profile)


def supervisor_options(options: RunnerOptions) -> RunnerOptions:
    """What the supervisor runs with: its own user, and a later deadline than the workers'."""
    return dataclasses.replace(
        options,
        uid=None,
        gid=None,
        profile=None,
        shutdown_timeout=options.shutdown_timeout + _KILL_MARGIN,
    )


class SupervisorWatch:
    """A worker's service that stops the reactor once its supervisor is gone.

    Args:
        reactor: Watches the descriptor and is stopped.
        fd: The read end of the supervisor's pipe (end of file: it is gone).
    """

    def __init__(self, reactor: Reactor, fd: int) -> None:
        self._reactor = reactor
        self.fd = fd
        self._watching = False

    def start_service(self) -> None:
        """Watch the pipe."""
        self._reactor.add_reader(self.fd, self._readable)
        self._watching = True

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 512)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            return  # The supervisor never writes; nothing to act on.
        self._unwatch()
        _log.warning("The supervisor is gone; stopping")
        with contextlib.suppress(ReactorNotRunningError):
            self._reactor.stop()

    def _unwatch(self) -> None:
        if self._watching:
            self._watching = False
            self._reactor.remove_reader(self.fd)

    def stop_service(self) -> None:
        """Stop watching."""
        self._unwatch()


def watch_supervisor(service: Service, reactor: Reactor, name: str) -> Application:
    """In a worker: ``service`` with a ``SupervisorWatch`` on the inherited pipe, if any."""
    app = service if isinstance(service, Application) else Application(name)
    if app is not service:
        app.add_service(service)
    value = os.environ.get(SUPERVISOR_FD_ENV, "")
    if value.isdigit():
        os.set_blocking(int(value), False)
        app.add_service(SupervisorWatch(reactor, int(value)), "supervisor watch")
    return app


def adopt_systemd_sockets(environ: dict[str, str] | None = None) -> None:
    """In a worker: take the sockets systemd passed the supervisor as this process's own."""
    env = os.environ if environ is None else environ
    if worker_index(env) is not None and env.get("LISTEN_FDS"):
        env["LISTEN_PID"] = str(os.getpid())


class _Notifications(DatagramProtocol):
    """The supervisor's notify socket: workers say READY=1 and STOPPING=1 here."""

    def __init__(self, pool: WorkerPool) -> None:
        super().__init__()
        self._pool = pool

    def datagram_received(self, data: bytes, addr: Any) -> None:
        fields = dict(
            line.split("=", 1)
            for line in data.decode("utf-8", "replace").splitlines()
            if "=" in line
        )
        pid = fields.get("MAINPID", "")
        if fields.get("READY") == "1" and pid.isdigit():
            self._pool._ready(int(pid))


class _Worker(ProcessProtocol):
    """One worker process: passes its standard error on, and hears its end."""

    def __init__(self, pool: WorkerPool, index: int) -> None:
        self.pool = pool
        self.index = index
        self.ready = False
        self.started_at = 0.0
        self.last_line = ""
        self._partial = bytearray()
        self.ended: Deferred[ProcessStatus] = Deferred()

    def err_received(self, data: bytes) -> None:
        self._partial += data
        while b"\n" in self._partial:
            line, _, rest = bytes(self._partial).partition(b"\n")
            self._partial = bytearray(rest)
            self._line(line)
        if len(self._partial) > _MAX_LINE:
            self._line(bytes(self._partial))
            self._partial.clear()

    def out_received(self, data: bytes) -> None:
        self.pool.stdout.write(data.decode("utf-8", "replace"))
        self.pool.stdout.flush()

    def _line(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace")
        if text.startswith("torsion: "):
            # The worker's one-line failure: the supervisor reports it itself.
            self.last_line = text
            return
        self.pool.stderr.write(text + "\n")
        self.pool.stderr.flush()

    def process_ended(self, status: ProcessStatus) -> None:
        if self._partial:
            self._line(bytes(self._partial))
            self._partial.clear()
        self.ended.callback(status)
        self.pool._ended(self, status)


class WorkerPool:
    """Keeps ``count`` worker processes running the command line ``argv``.

    Args:
        reactor: Spawns the workers, times the restarts, binds the notify socket.
        count: How many workers.
        argv: The ``torsion`` arguments each worker runs (``python -m torsion ARGV``).
        restart_delay: The delay before restarting, by consecutive deaths.

    Attributes:
        workers: The live workers by index: their process transports.
        restarts: How many workers were started again after dying.
    """

    def __init__(
        self,
        reactor: Reactor,
        count: int,
        argv: Sequence[str],
        *,
        restart_delay: ExponentialBackoff | None = None,
    ) -> None:
        self._reactor = reactor
        self.count = count
        self.argv = list(argv)
        self.restart_delay = restart_delay or ExponentialBackoff(initial=0.5, maximum=30.0)
        self.workers: dict[int, ChildProcess] = {}
        self._protocols: dict[int, _Worker] = {}
        self._deaths = 0
        self.restarts = 0
        self.running = False
        self._stopping = False
        self._starting: Deferred[None] | None = None
        self._waiting_ready: set[int] = set()
        self._notify_port: Any = None
        self._notify_name = f"\0torsion-workers-{os.getpid()}-{secrets.token_hex(8)}"
        self._timers: dict[int, Any] = {}
        self.stdout = sys.stdout
        self.stderr = sys.stderr

    # -- starting ---------------------------------------------------------------------

    def start_service(self) -> Deferred[None]:
        """Start the workers; fires once all of them serve.

        Fails with the first worker's own error (a ``UsageError`` if it
        exited with status 2, else ``RunnerError``) if one exits first.
        """
        self.running = True
        self._stopping = False
        self._notify_port = self._reactor.listen_unix_datagram(
            self._notify_name, _Notifications(self)
        )
        self._starting = Deferred()
        self._waiting_ready = set(range(1, self.count + 1))
        for index in range(1, self.count + 1):
            self._spawn(index)
        return self._starting

    def _spawn(self, index: int) -> None:
        self._timers.pop(index, None)
        protocol = _Worker(self, index)
        env = {
            **os.environ,
            WORKER_ENV: str(index),
            "NOTIFY_SOCKET": "@" + self._notify_name[1:],
        }
        env.pop("WATCHDOG_USEC", None)
        env.pop("WATCHDOG_PID", None)
        child_fds: dict[int, Any] = {1: "r", 2: "r"}
        # Sockets systemd passed: every worker gets them at the same numbers.
        passed = sorted(fd for fds in listen_fds().values() for fd in fds)
        for fd in passed:
            child_fds[fd] = fd
        lifeline = max([2, *passed]) + 1
        child_fds[lifeline] = "w"
        env[SUPERVISOR_FD_ENV] = str(lifeline)
        if not passed:
            for key in (*_LISTEN_FDS_ENV, "LISTEN_PID"):
                env.pop(key, None)
        protocol.started_at = self._reactor.seconds()
        self._protocols[index] = protocol
        d = self._reactor.spawn_process(
            protocol,
            sys.executable,
            [sys.executable, "-m", "torsion", *self.argv],
            env=env,
            child_fds=child_fds,
        )
        d.add_callbacks(
            lambda transport: self._spawned(index, transport),
            lambda exc: self._spawn_failed(index, exc),
        )

    def _spawned(self, index: int, transport: ChildProcess) -> None:
        self.workers[index] = transport
        transport.close_stdin()  # Workers read nothing: end of file at once.
        _log.debug("Worker %d started (pid %d)", index, transport.pid)

    def _spawn_failed(self, index: int, exc: BaseException) -> None:
        self._protocols.pop(index, None)
        self._fail_start(RunnerError(f"cannot start worker {index}: {exc}"))
        if not isinstance(exc, CancelledError) and self.running and not self._stopping:
            self._restart_later(index)

    def _ready(self, pid: int) -> None:
        for index, transport in self.workers.items():
            if transport.pid == pid:
                self._protocols[index].ready = True
                self._waiting_ready.discard(index)
                break
        if not self._waiting_ready and self._starting is not None:
            starting, self._starting = self._starting, None
            _log.info("All %d workers serve", self.count)
            starting.callback(None)

    def _fail_start(self, exc: BaseException) -> None:
        if self._starting is not None:
            starting, self._starting = self._starting, None
            starting.errback(exc)

    # -- a worker ends ----------------------------------------------------------------

    def _ended(self, worker: _Worker, status: ProcessStatus) -> None:
        index = worker.index
        if self._protocols.get(index) is worker:
            del self._protocols[index]
        transport = self.workers.pop(index, None)
        pid = transport.pid if transport is not None else "?"
        if self._stopping or not self.running:
            return
        if not worker.ready and self._starting is not None:
            message = worker.last_line.removeprefix("torsion: ") or f"worker {index} {status}"
            usage = status.exit_code == 2
            error: Exception = UsageError(message) if usage else RunnerError(message)
            self._fail_start(error)
            return
        uptime = self._reactor.seconds() - worker.started_at
        self._deaths = 0 if uptime >= _HEALTHY_AFTER else self._deaths + 1
        if worker.last_line:
            _log.warning("Worker %d (pid %s) %s: %s", index, pid, status, worker.last_line)
        else:
            _log.warning("Worker %d (pid %s) %s", index, pid, status)
        self._restart_later(index)

    def _restart_later(self, index: int) -> None:
        delay = self.restart_delay(self._deaths)
        _log.info("Restarting worker %d in %.2gs", index, delay)
        self.restarts += 1
        self._timers[index] = self._reactor.call_later(delay, self._spawn, index)

    # -- reloading and stopping -------------------------------------------------------

    def reload_service(self) -> None:
        """Pass SIGHUP on to every worker."""
        for transport in list(self.workers.values()):
            with contextlib.suppress(ProcessExitedError):
                transport.signal_process(signal.SIGHUP)

    def stop_service(self) -> Deferred[None]:
        """Send every worker SIGTERM and wait for all to end; cancelling kills them."""
        self.running = False
        self._stopping = True
        # Stopped while starting (SIGTERM): not a failure of the start itself.
        self._fail_start(CancelledError())
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()
        waits: list[Deferred[ProcessStatus]] = []
        for index, transport in list(self.workers.items()):
            protocol = self._protocols.get(index)
            if protocol is None:
                continue
            with contextlib.suppress(ProcessExitedError):
                transport.signal_process(signal.SIGTERM)
            waits.append(protocol.ended)
        if not waits:
            self._close_notify()
            return succeed(None)
        # The notify socket stays open while workers stop: they say STOPPING=1.
        done: Deferred[None] = Deferred(lambda _: self._kill())
        done.add_both(self._close_notify)
        gather(waits).add_both(lambda _: None if done.called else done.callback(None))
        return done

    def _close_notify(self, result: Any = None) -> Any:
        if self._notify_port is not None:
            port, self._notify_port = self._notify_port, None
            port.stop_listening()
        return result

    def _kill(self) -> None:
        for transport in list(self.workers.values()):
            _log.warning("Killing worker pid %d", transport.pid)
            transport.kill()

    def __repr__(self) -> str:
        return f"<WorkerPool {len(self.workers)}/{self.count} workers>"
