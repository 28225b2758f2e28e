r"""Unix domain sockets: listen and connect, socket files, peer credentials.

``listen_unix`` binds its socket at once, in the caller's thread, as
``listen_tcp`` does, so that a path that cannot be used fails right there
with ``CannotListenError``. The socket file gets the mode asked for and is
removed when the listener stops.

**A socket file left behind** by a server that died (nothing removes it) is
"stale": binding the path fails with EADDRINUSE although nobody listens.
``listen_unix`` then probes the path: it removes it and binds again only if
it is a socket that refuses a connection (ECONNREFUSED, unix(7)). A path
where a server answers, or where the answer is anything else (a socket of
another type, no permission to connect, a full backlog), is "in use"; a path
that is not a socket at all (a file, a directory, a symbolic link) is never
removed. The probe, the removal and the new bind are not one atomic step, so
they run holding an exclusive ``flock(2)`` on the socket's directory, which
every torsion process binding or removing a socket file there takes too.
This guards against two races: a server that has bound its socket but not
yet called ``listen()`` (the probe would be refused, and take it for stale),
and two servers replacing the same stale socket at once (the second would
remove the first one's new socket). A process that removes socket files
without that lock can still race with us; as a last check the file removed
must be the very one that was probed (same device and inode). When the
directory cannot be opened or locked (no read permission, a file system
without ``flock``), binding goes on without the lock.

**Linux's abstract namespace**: a path that starts with a NUL character
("\0name") names a socket that has no file: nothing to remove, no mode
(any process in the same network namespace may connect, so check
``peer_credentials`` where that matters), and the name disappears with the
socket, so it is never stale. Addresses report such a name as the system
does, as bytes that start with NUL (``UNIXAddress(b"\0name")``).

``pass_fds=True`` serves (or makes) the connection with a ``UNIXFDTransport``
instead of asyncio's transport, so that it can pass file descriptors (see
``torsion.internet._fdpass``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import logging
import os
import socket
import stat
import struct
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeAlias, TypeVar

from torsion.errors import CannotListenError
from torsion.internet._address import Address, UNIXAddress, to_address
from torsion.internet._connector import Connector
from torsion.internet._fdpass import UNIXFDListener, open_fd_transport
from torsion.internet._listener import Listener, ListeningPort
from torsion.internet._protocol import ProtocolFactory

__all__ = [
    "ReactorUNIX",
    "UNIXDatagramListeningPort",
    "UnixCredentials",
    "UnixPath",
    "bind_unix",
    "connect_unix",
    "listen_unix",
    "peer_credentials",
]

P = TypeVar("P", bound=asyncio.BaseProtocol)
D = TypeVar("D", bound=asyncio.DatagramProtocol)
D_co = TypeVar("D_co", bound=asyncio.DatagramProtocol, covariant=True)

UnixPath: TypeAlias = "str | os.PathLike[str]"
r"""A socket's path: a file name, or "\0name" in Linux's abstract namespace."""

_log = logging.getLogger("torsion.internet")

# How long binding waits for another process's lock on the socket directory.
# The lock is only held for a few system calls, so a longer wait means
# something else holds it; binding then fails rather than block the loop.
_LOCK_WAIT = 1.0

# struct ucred (unix(7)): pid_t, uid_t, gid_t.
_UCRED = struct.Struct("iII")


class UNIXDatagramListeningPort(ListeningPort, Protocol[D_co]):
    """A Unix datagram socket served by a protocol, as the reactor opens it."""

    @property
    def address(self) -> UNIXAddress:
        """This socket's address (``UNIXAddress(None)`` if unnamed)."""
        ...

    @property
    def peer(self) -> UNIXAddress | None:
        """The address it is connected to, or None."""
        ...

    @property
    def protocol(self) -> D_co:
        """The protocol serving the socket."""
        ...

    @property
    def transport(self) -> asyncio.DatagramTransport | None:
        """The socket's transport, None once it is closed."""
        ...

    @property
    def listening(self) -> bool:
        """Whether the socket is still open."""
        ...


class ReactorUNIX(Protocol):
    """What listens for and makes Unix socket connections, streams and datagrams."""

    def listen_unix(
        self,
        path: UnixPath,
        factory: ProtocolFactory,
        *,
        mode: int = 0o666,
        backlog: int = 100,
        pass_fds: bool = False,
    ) -> ListeningPort:
        """Listen on the Unix socket ``path``; each connection gets ``factory(peer_address)``."""
        ...

    def connect_unix(
        self,
        path: UnixPath,
        factory: Callable[[Address], P],
        *,
        timeout: float | None = 30.0,
        pass_fds: bool = False,
    ) -> Connector[P]:
        """Connect to the Unix socket ``path``; await the connector for the protocol."""
        ...

    def listen_unix_datagram(
        self, path: UnixPath, protocol: D, *, mode: int = 0o666
    ) -> UNIXDatagramListeningPort[D]:
        """Bind a Unix datagram socket at ``path``, served by ``protocol``."""
        ...

    def connect_unix_datagram(
        self,
        path: UnixPath,
        protocol: D,
        *,
        bind_path: UnixPath | None = None,
        mode: int = 0o666,
    ) -> UNIXDatagramListeningPort[D]:
        """Open a Unix datagram socket connected to ``path``, served by ``protocol``."""
        ...


# -- listening ---------------------------------------------------------------------


def listen_unix(
    loop: asyncio.AbstractEventLoop,
    path: UnixPath,
    factory: ProtocolFactory,
    *,
    mode: int = 0o666,
    backlog: int = 100,
    pass_fds: bool = False,
    on_stopped: Callable[[Listener | UNIXFDListener], object] | None = None,
) -> Listener | UNIXFDListener:
    r"""Bind and listen on the Unix socket ``path`` now, and serve it on ``loop``.

    Args:
        loop: The loop that serves the connections.
        path: The socket file's path, or "\0name" for Linux's abstract
            namespace (see the module's documentation).
        factory: Called with each peer's address (usually
            ``UNIXAddress(None)``: clients rarely bind a name); returns its
            protocol, or None to refuse the connection.
        mode: The socket file's permissions; connecting needs write
            permission. The umask does not apply. Ignored for abstract names.
        backlog: How many connections may wait to be accepted.
        pass_fds: Serve each connection with a ``UNIXFDTransport``, which can
            pass file descriptors, instead of asyncio's transport.
        on_stopped: Called with the listener once it has stopped.

    Returns:
        A ``Listener`` (a ``UNIXFDListener`` with ``pass_fds``); its
        ``address`` is a ``UNIXAddress``. Stopping it removes the socket file.

    Raises:
        CannotListenError: The path is in use (a server answers on it), is
            not a socket, is too long (about 107 bytes), or is in a directory
            that does not exist or is not writable.
    """
    name = os.fspath(path)
    sock, cleanup = bind_unix(name, socket.SOCK_STREAM, mode=mode, backlog=backlog)
    try:
        if pass_fds:
            return UNIXFDListener(
                loop, sock, factory, backlog=backlog, on_stopped=on_stopped, cleanup=cleanup
            )
        return Listener(
            loop, sock, factory, backlog=backlog, on_stopped=on_stopped, cleanup=cleanup
        )
    except BaseException:
        sock.close()
        if cleanup is not None:
            cleanup()
        raise


def bind_unix(
    path: str, kind: socket.SocketKind, *, mode: int = 0o666, backlog: int | None = None
) -> tuple[socket.socket, Callable[[], None] | None]:
    r"""Make a Unix socket of ``kind`` bound to ``path`` (listening, given a backlog).

    A stale socket file at ``path`` is replaced, under the directory lock
    described in the module's documentation. The mode is set before
    ``listen()``, so no client can connect while the file still has the
    umask's permissions. (A datagram socket can receive as soon as it is
    bound; keep its directory closed to others if that instant matters.)

    Args:
        path: The path, "\0name" for Linux's abstract namespace, or "" for
            an abstract name that Linux chooses.
        kind: ``socket.SOCK_STREAM`` or ``socket.SOCK_DGRAM``.
        mode: The socket file's permissions.
        backlog: Listen with this backlog; None does not listen (datagrams).

    Returns:
        The socket, non-blocking, and what removes its file (None for an
        abstract name): a callable that removes the file only if it is still
        this socket's.

    Raises:
        CannotListenError: The path could not be bound.
        ValueError: ``path`` holds a NUL character other than a leading one.
    """
    # "" asks Linux to choose a unique abstract name (autobind, unix(7)).
    abstract = path.startswith("\0") or not path
    if "\0" in path[1:]:
        raise ValueError(f"not a Unix socket path: {path!r}")
    if abstract and not sys.platform.startswith("linux"):
        reason = OSError(errno.EINVAL, "the abstract socket namespace is Linux's")
        raise CannotListenError("", 0, reason, path=path)
    sock = socket.socket(socket.AF_UNIX, kind)
    try:
        if abstract:
            sock.bind(path)
            if backlog is not None:
                sock.listen(backlog)
            cleanup = None
        else:
            with _directory_locked(path):
                identity = _bind_replacing_stale(sock, path)
                try:
                    os.chmod(path, mode)
                    if backlog is not None:
                        sock.listen(backlog)
                except BaseException:
                    _remove_if_same(path, identity)
                    raise
            cleanup = functools.partial(_remove_socket_file, path, identity)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise CannotListenError("", 0, exc, path=path) from exc
    except BaseException:
        sock.close()
        raise
    return sock, cleanup


def _bind_replacing_stale(sock: socket.socket, path: str) -> tuple[int, int]:
    """Bind ``sock`` to ``path``, replacing a stale socket; return the file's identity."""
    try:
        sock.bind(path)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        _remove_if_stale(path, sock.type)
        # EADDRINUSE again if a process that does not take the lock got there first.
        sock.bind(path)
    info = os.lstat(path)
    return info.st_dev, info.st_ino


def _remove_if_stale(path: str, kind: socket.SocketKind) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return  # Removed meanwhile: the path is free.
    if not stat.S_ISSOCK(info.st_mode):
        raise OSError(errno.EEXIST, "the path exists and is not a socket; it is left alone")
    if _answers(path, kind):
        raise OSError(errno.EADDRINUSE, "address in use: a server answers on it")
    _remove_if_same(path, (info.st_dev, info.st_ino))


def _answers(path: str, kind: socket.SocketKind) -> bool:
    """Whether anyone may be serving the socket at ``path``; in doubt, yes."""
    probe = socket.socket(socket.AF_UNIX, kind)
    try:
        probe.setblocking(False)
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        # No socket is bound to that file any more (unix(7)).
        return False
    except OSError:
        # EAGAIN (a full backlog), EPROTOTYPE (a socket of the other type),
        # EACCES: someone may well be there.
        return True
    finally:
        probe.close()
    return True


def _remove_if_same(path: str, identity: tuple[int, int]) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if (info.st_dev, info.st_ino) == identity and stat.S_ISSOCK(info.st_mode):
        os.unlink(path)


def _remove_socket_file(path: str, identity: tuple[int, int]) -> None:
    # Under the lock: once our socket is closed its file looks stale, and
    # another server may be replacing it with its own right now.
    with _directory_locked(path):
        _remove_if_same(path, identity)


@contextlib.contextmanager
def _directory_locked(path: str) -> Iterator[None]:
    """Hold an exclusive flock(2) on ``path``'s directory (see the module's documentation)."""
    directory = os.path.dirname(path) or "."
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        yield  # Not ours to read (binding will tell whether it is usable).
        return
    try:
        deadline = time.monotonic() + _LOCK_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise OSError(
                        errno.EAGAIN, f"another process keeps {directory!r} locked"
                    ) from None
                # Held for a few system calls by a process binding there.
                time.sleep(0.001)
                continue
            except OSError:
                pass  # A file system without flock: go on unlocked.
            break
        yield
    finally:
        os.close(fd)  # Releases the lock.


# -- connecting --------------------------------------------------------------------


def connect_unix(
    loop: asyncio.AbstractEventLoop,
    path: UnixPath,
    factory: Callable[[Address], P],
    *,
    timeout: float | None = 30.0,
    pass_fds: bool = False,
) -> Connector[P]:
    r"""Connect to the Unix stream socket ``path``.

    Args:
        loop: The loop that runs the connection.
        path: The socket's path, or "\0name" in Linux's abstract namespace.
        factory: Called with the server's address (a ``UNIXAddress``) once
            connected; returns the protocol.
        timeout: Seconds the attempt may take; None waits as long as the
            system does.
        pass_fds: Make the connection with a ``UNIXFDTransport``, which can
            pass file descriptors, instead of asyncio's transport.

    Returns:
        A ``Connector``: awaiting it gives the protocol once
        ``connection_made`` was called, or raises ``FileNotFoundError`` (no
        such socket), ``ConnectionRefusedError`` (nobody listens on it),
        ``PermissionError``, ``TimeoutError`` or what the factory raised.
        ``cancel()`` stops the attempt; ``disconnect()`` also closes the
        connection.
    """
    name = os.fspath(path)
    attempt = _connect(loop, name, factory, pass_fds=pass_fds, limit=timeout)
    return Connector.start(loop, attempt, UNIXAddress(name))


async def _connect(
    loop: asyncio.AbstractEventLoop,
    path: str,
    factory: Callable[[Address], P],
    *,
    pass_fds: bool,
    limit: float | None,
) -> tuple[asyncio.BaseTransport, P]:
    # The socket is made and connected here rather than by
    # create_unix_connection(path), which uvloop cannot give an abstract name.
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    handed_over = False
    try:
        sock.setblocking(False)
        async with asyncio.timeout(limit):
            await loop.sock_connect(sock, path)
            protocol = factory(to_address(sock.getpeername(), "unix"))
            if pass_fds:
                handed_over = True
                return open_fd_transport(loop, sock, protocol), protocol
            # From here the loop owns the socket, and closes it if this fails.
            handed_over = True
            transport, _ = await loop.create_unix_connection(lambda: protocol, sock=sock)
            return transport, protocol
    finally:
        if not handed_over:
            sock.close()


# -- peer credentials --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UnixCredentials:
    """Who is at the other end of a Unix socket connection.

    The kernel records them when the connection is made (for the server's
    end, when it called ``listen()``); they cannot be forged by the peer.

    Attributes:
        pid: The peer's process id (0 if it is in another PID namespace).
        uid: Its effective user id.
        gid: Its effective group id.
    """

    pid: int
    uid: int
    gid: int


def peer_credentials(transport: asyncio.BaseTransport) -> UnixCredentials:
    """Return the credentials of the process at the other end (SO_PEERCRED).

    Works on any transport over a connected Unix stream socket: asyncio's,
    uvloop's, a ``UNIXFDTransport``, and TLS over any of them.

    Args:
        transport: The connection's transport.

    Raises:
        NotImplementedError: The system has no SO_PEERCRED (it is Linux's).
        ValueError: The transport is not over a Unix stream socket.
        OSError: The socket is closed.
    """
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        raise NotImplementedError(
            f"peer credentials need SO_PEERCRED, which {sys.platform} does not have"
        )
    sock = transport.get_extra_info("socket")
    if (
        sock is None
        or sock.family != socket.AF_UNIX
        or sock.type not in (socket.SOCK_STREAM, socket.SOCK_SEQPACKET)
    ):
        raise ValueError(f"{transport!r} is not a Unix stream socket connection")
    pid, uid, gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, option, _UCRED.size))
    return UnixCredentials(pid, uid, gid)
