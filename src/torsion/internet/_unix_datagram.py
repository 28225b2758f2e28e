"""Unix datagram sockets: bound ones that receive, connected ones that send.

``listen_unix_datagram`` binds a datagram socket at a path now (with the
stale-socket handling, mode and abstract namespace of ``listen_unix``), and
``connect_unix_datagram`` opens one connected to a server's path, bound to a
path of its own if replies are wanted. asyncio serves the socket
(``create_datagram_endpoint(sock=...)``) and talks to the protocol directly.
A ``UNIXDatagramPort`` is what both return; its socket file is removed when
the socket closes.

Unlike UDP, a Unix datagram is never lost or reordered on the way: a sender
whose receiver's queue is full gets EAGAIN (reported to its protocol's
``error_received``) instead, and a server can only reply to a client that
bound a name of its own.

The protocol's call order, for one port::

    connection_made [-> datagram_received* | error_received*] -> connection_lost

``datagram_received(data, addr)`` gets the sender's path as the socket module
reports it (a str, bytes for an abstract name, None for an unbound sender),
ready to go back into ``transport.sendto(reply, addr)``.

On uvloop, ``sendto`` cannot reach an abstract name: uvloop reports an
abstract sender padded with NULs to the full size of ``sun_path`` (108
bytes), which its ``sendto`` refuses, and sends to any abstract name so
padded, which makes it another name (ECONNREFUSED). A connected port still
sends to its abstract peer, since the kernel holds the exact name; a server
on uvloop that must answer its clients should have them bind filesystem
paths.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

from torsion.defer import Deferred
from torsion.internet._address import UNIXAddress, to_address
from torsion.internet._udp import _LostHook, _Relay
from torsion.internet._unix import UnixPath, bind_unix

__all__ = ["UNIXDatagramPort", "connect_unix_datagram", "listen_unix_datagram"]

D = TypeVar("D", bound=asyncio.DatagramProtocol)

_log = logging.getLogger("torsion.internet")


def listen_unix_datagram(
    loop: asyncio.AbstractEventLoop,
    path: UnixPath,
    protocol: D,
    *,
    mode: int = 0o666,
    on_stopped: Callable[[UNIXDatagramPort[D]], object] | None = None,
) -> UNIXDatagramPort[D]:
    r"""Bind a Unix datagram socket at ``path`` now, and serve it on ``loop``.

    Args:
        loop: The loop that serves the socket.
        path: The socket file's path, or "\0name" in Linux's abstract
            namespace (see ``listen_unix`` for both).
        protocol: Receives the socket's events; one protocol serves one port.
        mode: The socket file's permissions (sending needs write permission).
        on_stopped: Called with the port once it has closed.

    Raises:
        CannotListenError: The path is in use, is not a socket, or cannot be
            bound there.
    """
    sock, cleanup = bind_unix(os.fspath(path), socket.SOCK_DGRAM, mode=mode)
    return _serve(loop, sock, protocol, cleanup, on_stopped)


def connect_unix_datagram(
    loop: asyncio.AbstractEventLoop,
    path: UnixPath,
    protocol: D,
    *,
    bind_path: UnixPath | None = None,
    mode: int = 0o666,
    on_stopped: Callable[[UNIXDatagramPort[D]], object] | None = None,
) -> UNIXDatagramPort[D]:
    r"""Open a Unix datagram socket connected to ``path`` now, and serve it on ``loop``.

    ``transport.sendto(data)`` then needs no address, and only datagrams from
    ``path`` are received.

    Args:
        loop: The loop that serves the socket.
        path: The server's socket path (or "\0name").
        protocol: Receives the socket's events; one protocol serves one port.
        bind_path: Bind this path first, so that the server can reply (its
            file is removed when the socket closes); "" has Linux choose an
            abstract name. None leaves the socket unnamed: it can only send.
        mode: The permissions of ``bind_path``'s file.
        on_stopped: Called with the port once it has closed.

    Raises:
        FileNotFoundError: No socket at ``path``.
        ConnectionRefusedError: Nobody serves the socket at ``path`` (or it
            is a stream socket).
        PermissionError: Not allowed to send to ``path``.
        CannotListenError: ``bind_path`` could not be bound.
    """
    cleanup: Callable[[], None] | None = None
    if bind_path is None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
    else:
        sock, cleanup = bind_unix(os.fspath(bind_path), socket.SOCK_DGRAM, mode=mode)
    try:
        # Connecting a datagram socket only records the peer: it never blocks.
        sock.connect(os.fspath(path))
    except BaseException:
        sock.close()
        if cleanup is not None:
            cleanup()
        raise
    return _serve(loop, sock, protocol, cleanup, on_stopped)


def _serve(
    loop: asyncio.AbstractEventLoop,
    sock: socket.socket,
    protocol: D,
    cleanup: Callable[[], None] | None,
    on_stopped: Callable[[UNIXDatagramPort[D]], object] | None,
) -> UNIXDatagramPort[D]:
    try:
        return UNIXDatagramPort(loop, sock, protocol, cleanup=cleanup, on_stopped=on_stopped)
    except BaseException:
        sock.close()
        if cleanup is not None:
            cleanup()
        raise


class UNIXDatagramPort(Generic[D]):
    """A Unix datagram socket served by a protocol.

    Args:
        loop: The loop that serves the socket.
        sock: A bound or connected Unix datagram socket; the port owns it.
        protocol: Receives the socket's events.
        cleanup: Called once the socket has closed (removes its file).
        on_stopped: Called with the port once it has closed.

    Raises:
        ValueError: ``protocol`` already serves another port.

    Attributes:
        address: This socket's address (``UNIXAddress(None)`` if unnamed).
        peer: The address it is connected to, or None.
        protocol: The protocol serving the socket.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        protocol: D,
        *,
        cleanup: Callable[[], None] | None = None,
        on_stopped: Callable[[UNIXDatagramPort[D]], object] | None = None,
    ) -> None:
        self.address = _unix_address(sock.getsockname())
        try:
            peer: Any = sock.getpeername()
        except OSError:  # ENOTCONN: not connected.
            peer = None
        self.peer = None if peer is None else _unix_address(peer)
        self.protocol = protocol
        self._loop = loop
        self._sock = sock
        self._cleanup = cleanup
        self._on_stopped = on_stopped
        self._transport: asyncio.DatagramTransport | None = None
        self._stopping = False
        self._stopped = False
        self._waiters: list[Deferred[None]] = []
        self._done: asyncio.Future[None] = loop.create_future()
        self._served = self._hook(protocol)
        # create_datagram_endpoint is a coroutine; datagrams arriving before it
        # runs wait in the socket's receive queue.
        self._start_task = loop.create_task(self._start())
        self._start_task.add_done_callback(self._started)

    @property
    def transport(self) -> asyncio.DatagramTransport | None:
        """The transport, once the loop has set it up (when ``connection_made`` ran)."""
        return self._transport

    @property
    def listening(self) -> bool:
        """Whether the socket is open (not closed, and ``stop_listening`` not called)."""
        return not (self._stopping or self._stopped)

    def stop_listening(self) -> Deferred[None]:
        """Close the socket and remove its file; the protocol's ``connection_lost`` is called.

        Returns:
            A Deferred that fires with None once the socket is closed. Calling
            again returns another Deferred for the same moment.
        """
        d: Deferred[None] = Deferred()
        if self._stopped:
            d.callback(None)
            return d
        self._waiters.append(d)
        if not self._stopping:
            self._stopping = True
            if self._transport is not None:
                self._transport.close()
            # Else the transport is still being set up; _start closes it.
        return d

    def close_now(self) -> None:
        """Close the socket from outside the event loop, running it if needed.

        For cleaning up when the loop is about to be closed: if it is not
        running, it is run until the socket is closed.
        """
        loop = self._loop
        if self._stopped or loop.is_closed():
            return
        self.stop_listening()
        if not loop.is_running():
            loop.run_until_complete(self._done)

    async def _start(self) -> None:
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: self._served, sock=self._sock
        )
        self._transport = transport
        if self._stopping:
            transport.close()

    def _started(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is None:
            return
        # The transport was never made: the socket is still ours to close.
        if not task.cancelled():
            _log.error("Cannot serve %s", self.address, exc_info=task.exception())
        self._sock.close()
        if self._transport is None:
            self._finish()

    def _finish(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._unhook()
        if self._cleanup is not None:
            try:
                self._cleanup()
            except Exception:
                _log.exception("Cleaning up after %r failed", self)
        if not self._done.done():
            self._done.set_result(None)
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)
        if self._on_stopped is not None:
            self._on_stopped(self)

    # Knowing when the transport has closed (to remove the socket file, and
    # to fire stop_listening) needs connection_lost: this instance's method is
    # wrapped while the port is open, with the same hook (and, for a protocol
    # without a __dict__, the same relay) as UDPPort's.

    def _hook(self, protocol: D) -> asyncio.DatagramProtocol:
        if isinstance(getattr(protocol, "connection_lost", None), _LostHook):
            raise ValueError(f"{protocol!r} already serves a port")
        hook = _LostHook(protocol.connection_lost, self._lost)
        try:
            protocol.connection_lost = hook  # type: ignore[method-assign]
        except AttributeError:
            return _Relay(protocol, hook)
        return protocol

    def _unhook(self) -> None:
        instance = getattr(self.protocol, "__dict__", {})
        if isinstance(instance.get("connection_lost"), _LostHook):
            del instance["connection_lost"]

    def _lost(self) -> None:
        # The transport closes the socket once connection_lost returns.
        self._loop.call_soon(self._finish)

    def __repr__(self) -> str:
        state = "listening" if self.listening else "stopped"
        connected = f" connected to {self.peer}" if self.peer is not None else ""
        return f"<UNIXDatagramPort {state} on {self.address}{connected}>"


def _unix_address(sockaddr: Any) -> UNIXAddress:
    return cast(UNIXAddress, to_address(sockaddr, "unix"))
