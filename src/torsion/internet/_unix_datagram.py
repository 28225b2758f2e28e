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
from typing import Any, TypeVar, cast

from torsion.internet._address import UNIXAddress, to_address
from torsion.internet._datagram import DatagramPort
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


class UNIXDatagramPort(DatagramPort[D]):
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

    _kind = "Unix datagrams"

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
        super().__init__(loop, sock, protocol, cleanup=cleanup, on_stopped=on_stopped)

    def __repr__(self) -> str:
        state = "listening" if self.listening else "stopped"
        connected = f" connected to {self.peer}" if self.peer is not None else ""
        return f"<UNIXDatagramPort {state} on {self.address}{connected}>"


def _unix_address(sockaddr: Any) -> UNIXAddress:
    return cast(UNIXAddress, to_address(sockaddr, "unix"))
