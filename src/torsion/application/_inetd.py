"""``torsion inetd``: run a program for each connection, its standard I/O on the socket.

As inetd(8) does in its ``nowait`` mode: each accepted connection's socket
becomes the new child's descriptors 0 and 1, so the program reads what the
client sends on standard input and answers on standard output, and knows
nothing of networking (``cat`` is an echo server). The child's standard
error is logged line by line. Its environment says who is connected, with
the names UCSPI-TCP uses: ``PROTO=TCP``, ``TCPREMOTEIP``, ``TCPREMOTEPORT``,
``TCPLOCALIP``, ``TCPLOCALPORT`` (``PROTO=UNIX`` on a Unix socket).

The connection is never read here: reading is paused before the child is
started, so every byte the client sends is the program's. Once the child
runs, this process closes its own copy of the socket; the connection ends
when the program closes it (or exits). TLS endpoints are refused: the
program would see the encrypted bytes.

On shutdown the port stops accepting and the children still serving have
until the deadline to finish, after which they are killed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

from torsion.application._app import Application
from torsion.application._endpoint_service import StreamServerEndpointService
from torsion.application._errors import UsageError
from torsion.application._lines import LineSplitter
from torsion.application._multi import MultiService
from torsion.application._plugins import Option, Plugin
from torsion.defer import CancelledError, Deferred, gather, succeed
from torsion.internet import (
    Address,
    ChildProcess,
    IPv4Address,
    IPv6Address,
    ProcessProtocol,
    ProcessStatus,
    Reactor,
    ReactorProcess,
    server_from_string,
)

__all__ = ["INETD", "InetdService"]

_log = logging.getLogger(__name__)


def _ucspi(transport: asyncio.BaseTransport) -> dict[str, str]:
    """The UCSPI-TCP variables for a connection."""
    peer, local = transport.get_extra_info("peername"), transport.get_extra_info("sockname")
    if isinstance(peer, tuple) and isinstance(local, tuple):
        return {
            "PROTO": "TCP",
            "TCPREMOTEIP": str(peer[0]),
            "TCPREMOTEPORT": str(peer[1]),
            "TCPLOCALIP": str(local[0]),
            "TCPLOCALPORT": str(local[1]),
        }
    return {"PROTO": "UNIX"}


class _Child(ProcessProtocol):
    """One program serving one connection: its standard error goes to the log."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.pid: int | None = None
        self._errors = LineSplitter(self._log_line)

    def connection_made(self, transport: ChildProcess) -> None:
        super().connection_made(transport)
        self.pid = transport.pid

    def _log_line(self, line: str) -> None:
        _log.info("%s[%s]: %s", self.name, self.pid, line)

    def err_received(self, data: bytes) -> None:
        self._errors.feed(data)

    def err_connection_lost(self) -> None:
        self._errors.flush()

    def process_ended(self, status: ProcessStatus) -> None:
        if not status.success:
            _log.info("%s[%s] %s", self.name, self.pid, status)


class _HandOff(asyncio.Protocol):
    """Takes an accepted connection's socket away from the loop, for a program."""

    def __init__(self, service: InetdService, peer: Address) -> None:
        self._service = service
        self._peer = peer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._service._serve(transport, self._peer)

    def connection_lost(self, exc: Exception | None) -> None:
        pass


class InetdService(MultiService):
    """Serves each connection on ``endpoint`` with a new child running ``args``.

    Args:
        reactor: Starts the children.
        endpoints: Where to listen (server endpoints; not TLS).
        args: The program and its arguments (``args[0]`` is looked up on PATH).
        user: The user the children run as (this process must be root).
        group: Their group.
        max_children: Refuse connections while this many children run.
        env: The children's environment, before the connection's variables
            are added (this process's by default).

    Attributes:
        children: The children serving now.
        served: How many connections were handed to a child.
    """

    def __init__(
        self,
        reactor: ReactorProcess,
        endpoints: Sequence[Any],
        args: Sequence[str],
        *,
        user: str | None = None,
        group: str | None = None,
        max_children: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        if not args:
            raise ValueError("inetd needs a program to run")
        self._reactor = reactor
        self.args = list(args)
        self.user = user
        self.group = group
        self.max_children = max_children
        self._env = env
        self.children: dict[int, ChildProcess] = {}
        self._ended: dict[int, Deferred[ProcessStatus]] = {}
        self.served = 0
        self._name = os.path.basename(self.args[0])
        for endpoint in endpoints:
            self.add_service(
                StreamServerEndpointService(
                    endpoint, lambda peer: _HandOff(self, peer), description=f"inetd {self._name}"
                )
            )

    def _serve(self, transport: asyncio.BaseTransport, peer: Address) -> None:
        if transport.get_extra_info("sslcontext") is not None:
            _log.warning("inetd cannot pass a TLS connection to a program; closing %s", peer)
            _abort(transport)
            return
        if self.max_children is not None and len(self.children) >= self.max_children:
            _log.warning(
                "Refusing %s: %d programs are serving already", _describe(peer), len(self.children)
            )
            _abort(transport)
            return
        sock = transport.get_extra_info("socket")
        env = dict(os.environ if self._env is None else self._env)
        env.update(_ucspi(transport))
        # The socket is taken from the loop now, before it reads anything
        # (uvloop reads once even when reading is paused in connection_made):
        # a copy of the descriptor keeps the connection open, the transport
        # is dropped, and every byte the client sends is the program's.
        fd = os.dup(sock.fileno())
        _abort(transport)
        os.set_blocking(fd, True)  # Programs expect blocking standard I/O.
        child = _Child(self._name)
        try:
            d = self._reactor.spawn_process(
                child,
                self.args[0],
                self.args,
                env=env,
                uid=self.user,
                gid=self.group,
                child_fds={0: fd, 1: fd, 2: "r"},
            )
        except Exception:
            os.close(fd)
            raise

        def started(process: ChildProcess) -> None:
            os.close(fd)  # The child has its copies.
            self.served += 1
            pid = process.pid
            self.children[pid] = process
            ended = process.ended()
            self._ended[pid] = ended
            ended.add_both(lambda _: self._gone(pid))

        def failed(exc: BaseException) -> None:
            os.close(fd)  # The connection closes with it.
            if not isinstance(exc, CancelledError):
                _log.error("Cannot run %s for %s: %s", self.args[0], _describe(peer), exc)

        d.add_callbacks(started, failed)

    def _gone(self, pid: int) -> None:
        self.children.pop(pid, None)
        self._ended.pop(pid, None)

    def stop_service(self) -> Deferred[None]:
        """Stop listening, then wait for the children serving to finish.

        Cancelling the returned Deferred kills them.
        """
        listening = super().stop_service()
        done: Deferred[None] = Deferred(lambda _: self._kill())

        def children(_: object) -> Deferred[Any]:
            waits = list(self._ended.values())
            if waits:
                _log.info("inetd %s: waiting for %d program(s) to finish", self._name, len(waits))
            return gather(waits) if waits else succeed([])

        listening.add_callback(children).add_both(
            lambda _: None if done.called else done.callback(None)
        )
        return done

    def _kill(self) -> None:
        for pid, process in list(self.children.items()):
            _log.warning("inetd %s: killing program pid %d", self._name, pid)
            process.kill()


def _abort(transport: asyncio.BaseTransport) -> None:
    # uvloop's transports are not asyncio.WriteTransport instances, but abort the same.
    abort = getattr(transport, "abort", None)
    if callable(abort):
        abort()
    else:
        transport.close()


def _describe(peer: Address) -> str:
    if isinstance(peer, IPv4Address | IPv6Address):
        return f"{peer.host}:{peer.port}"
    return str(peer)


def _build(reactor: Reactor, options: Mapping[str, Any]) -> Application:
    program: list[str] = options["program"]
    if shutil.which(program[0]) is None:
        raise UsageError(f"inetd: there is no program {program[0]!r}")
    endpoints = [server_from_string(reactor, text) for text in options["listen"]]
    app = Application(f"inetd {os.path.basename(program[0])}")
    app.add_service(
        InetdService(
            reactor,
            endpoints,
            program,
            user=options["user"],
            group=options["group"],
            max_children=options["max_connections"],
        )
    )
    return app


def _at_least_one(number: int) -> int:
    if number < 1:
        raise ValueError(f"--max-connections: must be 1 or more, not {number}")
    return number


INETD = Plugin(
    name="inetd",
    description="run a program for each connection, its stdin and stdout on the socket",
    options=(
        Option(
            "listen",
            "where to listen: an endpoint string such as tcp:PORT[:interface=ADDRESS] or "
            "unix:PATH (not tls:)",
            repeatable=True,
            required=True,
            metavar="ENDPOINT",
        ),
        Option("user", "run the programs as this user (needs root)"),
        Option("group", "run the programs as this group"),
        Option(
            "max-connections",
            "refuse connections while N programs are running",
            type=int,
            check=_at_least_one,
            metavar="N",
        ),
        Option(
            "program",
            "the program to run and its arguments (after --)",
            arguments=True,
            required=True,
            metavar="PROGRAM [ARGS...]",
        ),
    ),
    build=_build,
)
