"""The reactor: one object for time, threads, names, sockets and lifecycle, over asyncio.

``Reactor`` is a facade over an asyncio event loop: it never touches a socket
or a selector itself. It adds what Twisted programs expect from a reactor
(``call_later`` handles that can be reset, system event triggers, a thread
pool that stops with it, a pluggable resolver, ``run``/``stop`` that can be
repeated) and exposes the loop as ``reactor.loop`` for asyncio code.
There is no global reactor: code that needs one is given one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from torsion.defer import Deferred, ensure_deferred, succeed
from torsion.errors import (
    ReactorAlreadyRunningError,
    ReactorError,
    ReactorNotRunningError,
)
from torsion.internet._address import Address
from torsion.internet._child import ChildFD, StrPath
from torsion.internet._connector import Connector
from torsion.internet._delayed import Clock, LoopClock
from torsion.internet._fdesc import FileDescriptorLike, ReactorFDs
from torsion.internet._fdpass import UNIXFDListener
from torsion.internet._lifecycle import Phase, ReactorCore, SystemEvents, TriggerId
from torsion.internet._listener import Listener
from torsion.internet._process import ChildProcess, ProcessProtocol
from torsion.internet._protocol import ProtocolFactory
from torsion.internet._resolve import Resolver, SystemResolver, is_ip_address
from torsion.internet._spawn import ProcessTracker, ReactorProcess, spawn_tracked
from torsion.internet._stdio import StandardIO, stdio
from torsion.internet._tcp import ReactorTCP, connect_tcp, listen_tcp
from torsion.internet._threads import ThreadPool, ThreadRunner, blocking_call_from_thread
from torsion.internet._tls import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    ReactorTLS,
    ServerTLS,
    connect_tls,
    listen_tls,
)
from torsion.internet._udp import ReactorUDP, UDPPort, connect_udp, listen_udp
from torsion.internet._unix import ReactorUNIX, UnixPath, connect_unix, listen_unix
from torsion.internet._unix_datagram import (
    UNIXDatagramPort,
    connect_unix_datagram,
    listen_unix_datagram,
)

__all__ = ["Reactor"]

T = TypeVar("T")
P = TypeVar("P", bound=asyncio.BaseProtocol)
D = TypeVar("D", bound=asyncio.DatagramProtocol)

_log = logging.getLogger("torsion.internet")

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

# Seconds close() waits for the children it killed to be reaped: SIGKILL
# cannot be caught, so only a child stuck in the kernel takes longer.
_CHILD_EXIT_TIMEOUT = 5.0


def new_event_loop(*, uvloop: bool = True) -> asyncio.AbstractEventLoop:
    """Return a new event loop: uvloop's if asked for and installed, else asyncio's."""
    if uvloop:
        try:
            import uvloop as _uvloop  # An optional dependency.
        except ImportError:
            pass
        else:
            return _uvloop.new_event_loop()
    return asyncio.new_event_loop()


class Reactor(LoopClock):
    """The reactor: a facade over one asyncio event loop.

    Args:
        loop: The loop to drive. If omitted, the loop running in this thread
            is used, or else a new one is created (and owned: ``close()``
            closes it).
        uvloop: Whether a new loop may be uvloop's (when it is installed).
        resolver: Resolves host names; a ``SystemResolver`` by default.
        thread_pool: Runs ``call_in_thread`` and ``defer_to_thread`` work; a
            ``ThreadPool()`` by default. It is stopped (and joined) when
            ``run()`` ends and by ``close()``.
        shutdown_timeout: Seconds that "before shutdown" triggers (and the
            thread pool's last jobs) may hold up ``stop()``; the ones still
            busy then are logged and shutdown goes on.

    Attributes:
        thread_pool: The worker threads (``worker_count``, ``working_count``).
        shutdown_timeout: See above; may be changed at any time.
    """

    __slots__ = (
        "__weakref__",
        "_closed",
        "_events",
        "_in_run",
        "_listeners",
        "_loop",
        "_owns_loop",
        "_processes",
        "_resolver",
        "_signal",
        "_started",
        "_stopping",
        "_thread_ident",
        "_threads_wait",
        "_udp_ports",
        "_unix_datagram_ports",
        "shutdown_timeout",
        "thread_pool",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        uvloop: bool = True,
        resolver: Resolver | None = None,
        thread_pool: ThreadPool | None = None,
        shutdown_timeout: float = 30.0,
    ) -> None:
        owns = False
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = new_event_loop(uvloop=uvloop)
                owns = True
        self._loop = loop
        self._owns_loop = owns
        self._closed = False
        super().__init__(loop)
        self._events = SystemEvents(self)
        self.thread_pool = thread_pool if thread_pool is not None else ThreadPool()
        self._resolver: Resolver = resolver if resolver is not None else SystemResolver(self)
        self._listeners: set[Listener | UNIXFDListener] = set()
        self._udp_ports: set[UDPPort] = set()
        self._unix_datagram_ports: set[UNIXDatagramPort[Any]] = set()
        self._processes = ProcessTracker()
        self.shutdown_timeout = shutdown_timeout
        self._in_run = False
        self._started = False
        self._stopping = False
        self._signal: int | None = None
        self._thread_ident = threading.get_ident()
        self._threads_wait: Deferred[None] | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The asyncio event loop this reactor drives."""
        return self._loop

    def __repr__(self) -> str:
        if self._closed:
            state = "closed"
        elif self._stopping:
            state = "stopping"
        elif self._in_run:
            state = "running"
        else:
            state = "idle"
        return f"<Reactor {state} on {type(self._loop).__module__}.{type(self._loop).__name__}>"

    # -- time (Clock): seconds, call_later, get_delayed_calls come from LoopClock.

    # -- threads (ThreadRunner) -----------------------------------------------------

    def call_in_thread(self, f: Callable[..., object], /, *args: Any) -> None:
        """Run ``f(*args)`` in a worker thread; its result is dropped, errors logged."""
        self.thread_pool.call_in_thread(f, *args)

    def call_from_thread(self, f: Callable[..., object], /, *args: Any) -> None:
        """Run ``f(*args)`` on the reactor's thread soon; safe from any thread."""
        self._loop.call_soon_threadsafe(f, *args)

    def defer_to_thread(self, f: Callable[..., T], /, *args: Any) -> Deferred[T]:
        """Run ``f(*args)`` in a worker thread.

        Returns:
            A Deferred, fired on the reactor's thread with what ``f`` returned
            or failed with what it raised. Cancelling it cannot stop the thread;
            its result is then dropped.
        """
        d: Deferred[T] = Deferred()
        call_soon_threadsafe = self._loop.call_soon_threadsafe

        def on_result(succeeded: bool, result: Any) -> None:
            try:
                call_soon_threadsafe(_deliver, d, succeeded, result)
            except RuntimeError:
                _log.error("The reactor's loop closed before %r finished in a thread", f)

        self.thread_pool.call_in_thread_with_callback(on_result, f, *args)
        return d

    def blocking_call_from_thread(self, f: Callable[..., Any], /, *args: Any) -> Any:
        """From another thread, run ``f(*args)`` on the reactor's thread and wait.

        See ``torsion.internet.blocking_call_from_thread``.

        Raises:
            ReactorThreadError: Called on the reactor's thread.
        """
        return blocking_call_from_thread(self, f, *args)

    def in_reactor_thread(self) -> bool:
        """Return whether the caller runs on the reactor's thread."""
        if self._loop.is_running():
            try:
                return asyncio.get_running_loop() is self._loop
            except RuntimeError:
                return False
        return threading.get_ident() == self._thread_ident

    # -- names (Resolver) -------------------------------------------------------------

    @property
    def resolver(self) -> Resolver:
        """What resolves host names for this reactor."""
        return self._resolver

    def install_resolver(self, resolver: Resolver) -> Resolver:
        """Make ``resolver`` resolve host names from now on; return the previous one."""
        previous, self._resolver = self._resolver, resolver
        return previous

    def resolve(self, host: str) -> Deferred[str]:
        """Return a Deferred of the first address of ``host`` (an IP literal is its own)."""
        if is_ip_address(host):
            return succeed(host)
        return _as_deferred(self._resolver.resolve(host))

    def resolve_all(self, host: str) -> Deferred[list[str]]:
        """Return a Deferred of every address of ``host``, best first."""
        if is_ip_address(host):
            return succeed([host])
        return _as_deferred(self._resolver.resolve_all(host))

    # -- sockets opened elsewhere ------------------------------------------------------

    def listen_socket(
        self, sock: socket.socket, factory: ProtocolFactory, *, backlog: int = 100
    ) -> Listener:
        """Serve a stream socket that is already bound (systemd's, an inherited one).

        The socket is put into listening mode if it is not yet, and made
        non-blocking; the reactor owns it from now on.

        Args:
            sock: A bound TCP or Unix stream socket.
            factory: Called with each peer's address; returns the protocol for
                that connection, or None to refuse it.
            backlog: How many connections may wait to be accepted.
        """
        sock.setblocking(False)
        sock.listen(backlog)
        listener = Listener(
            self._loop, sock, factory, backlog=backlog, on_stopped=self._listeners.discard
        )
        self._listeners.add(listener)
        return listener

    # -- TCP (ReactorTCP) ---------------------------------------------------------------

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
        """Listen for TCP connections on ``interface:port``; the port is bound at once.

        Args:
            port: The port; 0 lets the system choose (read ``listener.port``).
            factory: Called with each peer's address; returns the protocol for
                that connection, or None to refuse it.
            interface: The address to bind to ("" for every IPv4 interface).
            backlog: How many connections may wait to be accepted.
            reuse_port: Set ``SO_REUSEPORT``: several sockets that all set it
                may listen on one port, sharing its connections.
            keepalive: Set ``SO_KEEPALIVE`` on every accepted connection.

        Raises:
            CannotListenError: The port is taken, or the address is not ours.
        """
        listener = listen_tcp(
            self._loop,
            port,
            factory,
            interface=interface,
            backlog=backlog,
            reuse_port=reuse_port,
            keepalive=keepalive,
            on_stopped=self._listeners.discard,
        )
        self._listeners.add(listener)
        return listener

    def connect_tcp(
        self,
        host: str,
        port: int,
        factory: Callable[[Address], P],
        *,
        timeout: float | None = 30.0,
        bind_address: tuple[str, int] | None = None,
        keepalive: bool = False,
    ) -> Connector[P]:
        """Connect to ``host:port``; see ``torsion.internet.connect_tcp`` for the outcomes.

        Args:
            host: A name or an IP address.
            port: The port.
            factory: Called with the server's address once connected.
            timeout: Seconds for the whole attempt, lookup included.
            bind_address: The local ``(ip_address, port)`` to connect from.
            keepalive: Set ``SO_KEEPALIVE`` on the connection.

        Returns:
            A ``Connector``: await it for the protocol ``factory`` made, once
            connected; ``cancel()`` stops the attempt, ``disconnect()`` also
            closes the connection.
        """
        return connect_tcp(
            self._loop,
            self.resolve_all,
            host,
            port,
            factory,
            timeout=timeout,
            bind_address=bind_address,
            keepalive=keepalive,
        )

    # -- TLS (ReactorTLS) ---------------------------------------------------------------

    def listen_tls(
        self,
        port: int,
        factory: ProtocolFactory,
        context: ssl.SSLContext | ServerTLS,
        *,
        interface: str = "",
        backlog: int = 100,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        reuse_port: bool = False,
        keepalive: bool = False,
    ) -> Listener:
        """Listen for TLS connections on ``interface:port``; the port is bound at once.

        See ``torsion.internet.listen_tls``: ``factory`` is called once a
        connection's handshake succeeded; failed handshakes close quietly.

        Args:
            port: The port; 0 lets the system choose (read ``listener.port``).
            factory: Called with each peer's address; returns the protocol for
                that connection, or None to refuse it.
            context: A ``ServerTLS`` (see ``server_tls``) or a server-side
                ``ssl.SSLContext``.
            interface: The address to bind to ("" for every IPv4 interface).
            backlog: How many connections may wait to be accepted.
            handshake_timeout: Seconds a client has to finish the handshake.
            reuse_port: Set ``SO_REUSEPORT`` (see ``listen_tcp``).
            keepalive: Set ``SO_KEEPALIVE`` on every accepted connection.

        Raises:
            CannotListenError: The port is taken, or the address is not ours.
            TLSConfigError: ``context`` is a client's.
        """
        listener = listen_tls(
            self._loop,
            port,
            factory,
            context,
            interface=interface,
            backlog=backlog,
            handshake_timeout=handshake_timeout,
            reuse_port=reuse_port,
            keepalive=keepalive,
            on_stopped=self._listeners.discard,
        )
        self._listeners.add(listener)
        return listener

    def connect_tls(
        self,
        host: str,
        port: int,
        factory: Callable[[Address], P],
        *,
        context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        timeout: float | None = 30.0,
        bind_address: tuple[str, int] | None = None,
        keepalive: bool = False,
    ) -> Connector[P]:
        """Connect over TLS to ``host:port``; see ``torsion.internet.connect_tls``.

        Args:
            host: A name or an IP address.
            port: The port.
            factory: Called with the server's address once the handshake succeeded.
            context: The TLS settings; ``client_context()`` (the system's
                trust store, host name checked) if None.
            server_hostname: The name the certificate must carry (``host`` if None).
            timeout: Seconds for the whole attempt, lookup and handshake included.
            bind_address: The local ``(ip_address, port)`` to connect from.
            keepalive: Set ``SO_KEEPALIVE`` on the connection.

        Returns:
            A ``Connector``, as ``connect_tcp`` returns; a failed handshake
            fails it with ``ssl.SSLError``.
        """
        return connect_tls(
            self._loop,
            self.resolve_all,
            host,
            port,
            factory,
            context=context,
            server_hostname=server_hostname,
            timeout=timeout,
            bind_address=bind_address,
            keepalive=keepalive,
        )

    # -- UDP (ReactorUDP) ---------------------------------------------------------------

    def listen_udp(
        self,
        port: int,
        protocol: asyncio.DatagramProtocol,
        *,
        interface: str = "",
        reuse_port: bool = False,
    ) -> UDPPort:
        """Bind a UDP port on ``interface:port`` now; see ``torsion.internet.listen_udp``.

        Raises:
            CannotListenError: The port is taken, or the address is not ours.
        """
        udp_port = listen_udp(
            self._loop,
            port,
            protocol,
            interface=interface,
            reuse_port=reuse_port,
            on_stopped=self._udp_ports.discard,
        )
        self._udp_ports.add(udp_port)
        return udp_port

    def connect_udp(
        self,
        host: str,
        port: int,
        protocol: asyncio.DatagramProtocol,
        *,
        interface: str = "",
        local_port: int = 0,
    ) -> UDPPort:
        """Bind a UDP port connected to ``host:port`` (an IP address).

        See ``torsion.internet.connect_udp``.
        """
        udp_port = connect_udp(
            self._loop,
            host,
            port,
            protocol,
            interface=interface,
            local_port=local_port,
            on_stopped=self._udp_ports.discard,
        )
        self._udp_ports.add(udp_port)
        return udp_port

    # -- Unix sockets (ReactorUNIX) -------------------------------------------------------

    def listen_unix(
        self,
        path: UnixPath,
        factory: ProtocolFactory,
        *,
        mode: int = 0o666,
        backlog: int = 100,
        pass_fds: bool = False,
    ) -> Listener | UNIXFDListener:
        """Listen on the Unix stream socket ``path``; it is bound at once.

        A stale socket file there is replaced; a path where a server answers,
        or that is not a socket, is refused. See ``torsion.internet.listen_unix``.

        Args:
            path: The socket file's path, or one starting with a NUL character
                for Linux's abstract namespace.
            factory: Called with each peer's address; returns the protocol for
                that connection, or None to refuse it.
            mode: The socket file's permissions.
            backlog: How many connections may wait to be accepted.
            pass_fds: Serve each connection with a ``UNIXFDTransport``, which
                can pass file descriptors.

        Raises:
            CannotListenError: The path is in use, is not a socket, or cannot be bound.
        """
        listener = listen_unix(
            self._loop,
            path,
            factory,
            mode=mode,
            backlog=backlog,
            pass_fds=pass_fds,
            on_stopped=self._listeners.discard,
        )
        self._listeners.add(listener)
        return listener

    def connect_unix(
        self,
        path: UnixPath,
        factory: Callable[[Address], P],
        *,
        timeout: float | None = 30.0,
        pass_fds: bool = False,
    ) -> Connector[P]:
        """Connect to the Unix stream socket ``path``; see ``torsion.internet.connect_unix``.

        Returns:
            A ``Connector``: await it for the protocol ``factory`` made, once
            connected; ``cancel()`` stops the attempt, ``disconnect()`` also
            closes the connection.
        """
        return connect_unix(self._loop, path, factory, timeout=timeout, pass_fds=pass_fds)

    def listen_unix_datagram(
        self, path: UnixPath, protocol: D, *, mode: int = 0o666
    ) -> UNIXDatagramPort[D]:
        """Bind a Unix datagram socket at ``path`` now, served by ``protocol``.

        Raises:
            CannotListenError: The path is in use, is not a socket, or cannot be bound.
        """
        port = listen_unix_datagram(
            self._loop, path, protocol, mode=mode, on_stopped=self._unix_datagram_ports.discard
        )
        self._unix_datagram_ports.add(port)
        return port

    def connect_unix_datagram(
        self,
        path: UnixPath,
        protocol: D,
        *,
        bind_path: UnixPath | None = None,
        mode: int = 0o666,
    ) -> UNIXDatagramPort[D]:
        """Open a Unix datagram socket connected to ``path`` now, served by ``protocol``.

        Raises:
            FileNotFoundError: No socket at ``path``.
            ConnectionRefusedError: Nobody serves the socket at ``path``.
            CannotListenError: ``bind_path`` could not be bound.
        """
        port = connect_unix_datagram(
            self._loop,
            path,
            protocol,
            bind_path=bind_path,
            mode=mode,
            on_stopped=self._unix_datagram_ports.discard,
        )
        self._unix_datagram_ports.add(port)
        return port

    # -- processes (ReactorProcess) -----------------------------------------------------

    def spawn_process(
        self,
        protocol: ProcessProtocol,
        executable: StrPath,
        args: Sequence[StrPath] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        path: StrPath | None = None,
        uid: int | str | None = None,
        gid: int | str | None = None,
        use_pty: bool = False,
        child_fds: Mapping[int, ChildFD] | None = None,
    ) -> Deferred[ChildProcess]:
        """Start ``executable`` as a child connected to ``protocol`` (see ``spawn_process``).

        The reactor keeps track of the child until it has ended: ``close()``
        kills it if it still runs then.
        """
        return spawn_tracked(
            self._processes,
            self._loop,
            protocol,
            executable,
            args,
            env=env,
            path=path,
            uid=uid,
            gid=gid,
            use_pty=use_pty,
            child_fds=child_fds,
        )

    # -- raw descriptors and standard I/O (ReactorFDs) ----------------------------------

    def add_reader(
        self, fd: FileDescriptorLike, callback: Callable[..., object], *args: Any
    ) -> None:
        """Call ``callback(*args)`` whenever ``fd`` is readable, until removed."""
        self._loop.add_reader(fd, callback, *args)

    def remove_reader(self, fd: FileDescriptorLike) -> bool:
        """Stop watching ``fd`` for reading (a no-op if it was not watched).

        Returns:
            Whether it was watched, as the loop reports it (uvloop may say
            False in both cases).
        """
        return bool(self._loop.remove_reader(fd))

    def add_writer(
        self, fd: FileDescriptorLike, callback: Callable[..., object], *args: Any
    ) -> None:
        """Call ``callback(*args)`` whenever ``fd`` is writable, until removed."""
        self._loop.add_writer(fd, callback, *args)

    def remove_writer(self, fd: FileDescriptorLike) -> bool:
        """Stop watching ``fd`` for writing (a no-op if it was not watched).

        Returns:
            Whether it was watched, as the loop reports it (uvloop may say
            False in both cases).
        """
        return bool(self._loop.remove_writer(fd))

    def stdio(
        self, protocol: asyncio.Protocol, *, stdin: int = 0, stdout: int = 1
    ) -> Deferred[StandardIO]:
        """Connect ``protocol`` to standard input and output; see ``torsion.internet.stdio``."""
        return stdio(self._loop, protocol, stdin=stdin, stdout=stdout)

    # -- lifecycle (ReactorCore) ----------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether ``run()`` has fired the startup event and no shutdown began."""
        return self._started and not self._stopping

    def call_when_running(self, f: Callable[..., object], /, *args: Any) -> TriggerId | None:
        """Call ``f(*args)`` once the reactor runs: now if it does, else at startup.

        Returns:
            The "during startup" trigger that will call it, or None if it was
            called now.
        """
        if self.running:
            f(*args)
            return None
        return self._events.add("during", "startup", f, args)

    def add_system_event_trigger(
        self, phase: Phase, event: str, f: Callable[..., object], /, *args: Any
    ) -> TriggerId:
        """Call ``f(*args)`` in ``phase`` of the next firing of ``event``.

        ``run()`` fires "startup" and ``stop()`` fires "shutdown"; any other
        name fires with ``fire_system_event``. A "before" trigger may return
        a Deferred or a coroutine to hold the event until it finishes
        (for "shutdown", for at most ``shutdown_timeout`` seconds).

        Args:
            phase: "before", "during" or "after".
            event: The event's name.
            f: What to call.
            *args: Its arguments.

        Returns:
            An id for ``remove_system_event_trigger``.

        Raises:
            ValueError: ``phase`` is not one of the three.
        """
        return self._events.add(phase, event, f, args)

    def remove_system_event_trigger(self, trigger_id: TriggerId) -> None:
        """Remove a trigger that has not run yet.

        Raises:
            ValueError: It already ran or was removed.
        """
        self._events.remove(trigger_id)

    def fire_system_event(self, event: str) -> Deferred[None]:
        """Fire ``event``'s triggers now; the Deferred fires once all have run."""
        timeout = self.shutdown_timeout if event == "shutdown" else None
        return self._events.fire(event, timeout=timeout)

    def run(self, *, install_signal_handlers: bool = True) -> None:
        """Run the loop until ``stop()``, firing "startup" first.

        SIGINT and SIGTERM stop the reactor gracefully while it runs (a second
        one stops it at once); their handlers are installed only on the main
        thread and the previous ones are put back afterwards. A reactor can
        run again after it stopped.

        Args:
            install_signal_handlers: Whether to handle SIGINT and SIGTERM.

        Raises:
            ReactorAlreadyRunningError: It, or its loop, is running already.
            ReactorError: It was closed.
        """
        loop = self._loop
        if self._closed or loop.is_closed():
            raise ReactorError(f"{self!r} is closed")
        if self._in_run or loop.is_running():
            raise ReactorAlreadyRunningError(f"{self!r}: the reactor or its loop is running")
        self._in_run = True
        self._started = False
        self._stopping = False
        self._signal = None
        self._thread_ident = threading.get_ident()
        restore = self._install_signal_handlers() if install_signal_handlers else []
        try:
            loop.call_soon(self._start_up)
            loop.run_forever()
        finally:
            self._remove_signal_handlers(restore)
            # A firing the loop stopped under would hold up the next run.
            self._events.abandon("startup")
            self._events.abandon("shutdown")
            self._in_run = False
            self._started = False
            self._stopping = False
            self._threads_wait = None

    def stop(self) -> None:
        """Fire "shutdown" (before, during, after), stop the thread pool, stop the loop.

        Returns at once; the shutdown happens on the loop, after which
        ``run()`` returns.

        Raises:
            ReactorNotRunningError: It is not running, or already stopping.
        """
        if not self._in_run or self._stopping:
            raise ReactorNotRunningError(f"cannot stop {self!r}: it is not running")
        self._stopping = True
        self._loop.call_soon(self._shut_down)

    def close(self) -> None:
        """Release everything: child processes, listening ports, worker threads, an owned loop.

        Idempotent. The reactor cannot run afterwards.

        Child processes started with ``spawn_process`` that still run are
        killed with SIGKILL, not asked to stop with SIGTERM: ``close()`` is
        synchronous and cannot wait for a child to finish by itself (stop
        children gracefully before, from a "before shutdown" trigger that
        signals them and waits for ``ended()``). Their pipes are closed, and
        spawns still under way are cancelled. When the loop is not running
        (and not closed), ``close()`` runs it until every such child has been
        reaped and its protocol told ``process_ended``, for at most five
        seconds (a child stuck in the kernel is logged and left); on a
        running loop that happens as the loop goes on.

        Raises:
            ReactorAlreadyRunningError: It is running.
        """
        if self._in_run:
            raise ReactorAlreadyRunningError(f"cannot close {self!r} while it runs")
        if self._closed:
            return
        self._closed = True
        loop = self._loop
        self._end_processes()
        for listener in list(self._listeners):
            listener.close_now()
        self._listeners.clear()
        for udp_port in list(self._udp_ports):
            udp_port.close_now()
        self._udp_ports.clear()
        for unix_port in list(self._unix_datagram_ports):
            unix_port.close_now()
        self._unix_datagram_ports.clear()
        self.thread_pool.stop()
        if self._owns_loop and not loop.is_closed():
            if not loop.is_running():
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    def _end_processes(self) -> None:
        processes = self._processes
        if not processes:
            return
        loop = self._loop
        if loop.is_closed():
            # Nothing can run on it any more: the pipes are beyond reach.
            processes.kill_all()
            return
        processes.end_all()
        if loop.is_running():
            return
        try:
            loop.run_until_complete(asyncio.wait_for(processes.wait_idle(), _CHILD_EXIT_TIMEOUT))
        except TimeoutError:
            _log.warning(
                "Child processes not reaped %gs after SIGKILL: %s",
                _CHILD_EXIT_TIMEOUT,
                processes.pids,
            )

    def _start_up(self) -> None:
        self.thread_pool.start()
        # Running from the "during" phase on, as call_when_running expects.
        self._events.fire("startup", on_before_done=self._started_up)

    def _started_up(self) -> None:
        self._started = True

    def _shut_down(self) -> None:
        d = self._events.fire("shutdown", timeout=self.shutdown_timeout)
        d.add_callback(self._stop_threads)
        d.add_both(self._stop_loop)

    def _stop_threads(self, _: object) -> Deferred[None] | None:
        pool = self.thread_pool
        if pool.worker_count == 0:
            return None
        # Join the workers from a helper thread so that the loop keeps running:
        # a worker may be waiting for it (blocking_call_from_thread).
        loop = self._loop
        timeout = self.shutdown_timeout
        d: Deferred[None] = Deferred()
        self._threads_wait = d

        def joined() -> None:
            if not d.called:
                d.callback(None)

        def join() -> None:
            pool.stop()
            # The loop may have been stopped and closed without waiting.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(joined)

        def expire() -> None:
            if not d.called:
                _log.warning(
                    "Worker threads still busy after %gs, not waiting for them: %r",
                    timeout,
                    pool,
                )
                d.callback(None)

        timer = self.call_later(timeout, expire)
        threading.Thread(target=join, name="torsion-pool-stop", daemon=True).start()
        return d.add_both(lambda _: timer.cancel() if timer.active() else None)

    def _stop_loop(self, result: object) -> None:
        if isinstance(result, BaseException):
            _log.error(
                "Error while shutting down", exc_info=(type(result), result, result.__traceback__)
            )
        self._loop.stop()

    # -- signals ------------------------------------------------------------------------

    def _install_signal_handlers(self) -> list[tuple[int, Any]]:
        if threading.current_thread() is not threading.main_thread():
            return []
        installed: list[tuple[int, Any]] = []
        for signum in _STOP_SIGNALS:
            previous = signal.getsignal(signum)
            try:
                self._loop.add_signal_handler(signum, self._on_signal, signum)
            except (NotImplementedError, RuntimeError, ValueError):
                continue  # Not supported by this loop or platform.
            installed.append((signum, previous))
        return installed

    def _remove_signal_handlers(self, installed: list[tuple[int, Any]]) -> None:
        for signum, previous in installed:
            try:
                self._loop.remove_signal_handler(signum)
            except (NotImplementedError, RuntimeError, ValueError):
                continue
            if previous is not None:
                signal.signal(signum, previous)

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if not self._stopping:
            _log.info("Received %s, shutting down", name)
            self._signal = signum
            self.stop()
            return
        if self._signal is None:
            # Already stopping for another reason (a failed start, stop()):
            # the first signal asks for what is already happening.
            _log.info("Received %s while shutting down", name)
            self._signal = signum
            return
        # A second signal: the user does not want to wait any longer.
        _log.warning("Received %s again, stopping without waiting", name)
        self._events.expire("shutdown", reason=f"were given up on ({name})")
        if self._threads_wait is not None and not self._threads_wait.called:
            self._threads_wait.callback(None)
        self._loop.stop()


def _deliver(d: Deferred[Any], succeeded: bool, result: Any) -> None:
    if d.called:
        return  # Cancelled meanwhile: nobody wants the result any more.
    if succeeded:
        d.callback(result)
    else:
        d.errback(result)


def _as_deferred(result: Awaitable[T]) -> Deferred[T]:
    if isinstance(result, Deferred):
        return result
    if isinstance(result, Coroutine):
        return ensure_deferred(result)
    return Deferred.from_future(result)


if TYPE_CHECKING:
    # Checked by mypy: the reactor provides every small interface.
    def _provides(
        reactor: Reactor,
    ) -> tuple[
        Clock,
        ThreadRunner,
        Resolver,
        ReactorTCP,
        ReactorTLS,
        ReactorUDP,
        ReactorUNIX,
        ReactorProcess,
        ReactorFDs,
        ReactorCore,
    ]:
        return (reactor,) * 10
