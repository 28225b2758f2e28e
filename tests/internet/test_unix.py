"""Unix stream sockets: echo, socket files (mode, stale, removal), abstract names, credentials."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import shutil
import socket
import stat
import struct
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from torsion.defer import Deferred
from torsion.errors import CannotListenError
from torsion.internet import Address, Protocol, Reactor, UNIXAddress, _unix
from torsion.internet._unix import UnixCredentials, connect_unix, listen_unix, peer_credentials
from torsion.testing import require_peer

Wait = Callable[..., Any]

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="Linux's abstract namespace and SO_PEERCRED"
)


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory for socket files (a path may only be about 107 bytes long)."""
    path = Path(tempfile.mkdtemp(prefix="torsion-", dir="/tmp"))
    yield path
    shutil.rmtree(path)


Listen = Callable[..., Any]


@pytest.fixture
def listen(real_reactor: Reactor) -> Iterator[Listen]:
    """``listen_unix`` on the test's reactor; what is left listening is closed afterwards."""
    made: list[Any] = []

    def listen(path: Any, factory: Any, **options: Any) -> Any:
        made.append(listen_unix(real_reactor.loop, path, factory, **options))
        return made[-1]

    yield listen
    for listener in made:
        listener.close_now()


def open_fds() -> set[int]:
    """The process's open descriptors (not counting the one that lists them)."""
    return {
        int(name)
        for name in os.listdir("/proc/self/fd")
        if os.path.lexists(f"/proc/self/fd/{name}")  # the listing's own is closed by now
    }


def abstract_name() -> str:
    return f"\0torsion-test-{uuid.uuid4().hex}"


class Echo(Protocol):
    """Sends back what it receives."""

    def __init__(self, address: Address) -> None:
        self.address = address
        self.lost: Deferred[Exception | None] = Deferred()

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.lost.callback(exc)


class Client(Protocol):
    """Sends a message and collects the reply."""

    def __init__(self, address: Address, message: bytes = b"hello, unix") -> None:
        self.address = address
        self.message = message
        self.received = b""
        self.replied: Deferred[bytes] = Deferred()
        self.lost: Deferred[Exception | None] = Deferred()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.transport.write(self.message)

    def data_received(self, data: bytes) -> None:
        self.received += data
        if len(self.received) >= len(self.message) and not self.replied.called:
            self.replied.callback(self.received)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.lost.callback(exc)


class Servers:
    """An Echo factory that keeps what it made."""

    def __init__(self) -> None:
        self.made: list[Echo] = []
        self.first: Deferred[Echo] = Deferred()

    def __call__(self, peer: Address) -> Echo:
        self.made.append(Echo(peer))
        if not self.first.called:
            self.first.callback(self.made[-1])
        return self.made[-1]


def echo_once(r: Reactor, wait: Wait, path: str, message: bytes = b"hello, unix") -> Client:
    """Connect, check the echo, hang up; return the client."""
    client: Client = wait(r, connect_unix(r.loop, path, lambda a: Client(a, message)))
    assert wait(r, client.replied) == message
    client.transport.close()
    assert wait(r, client.lost) is None
    return client


def make_stale(path: Path, kind: socket.SocketKind = socket.SOCK_STREAM) -> None:
    """Leave a socket file behind, as a server that died would."""
    with socket.socket(socket.AF_UNIX, kind) as sock:
        sock.bind(str(path))
    assert stat.S_ISSOCK(path.lstat().st_mode)


def witness(path: Path) -> Path:
    """Hard-link ``path``: the link keeps its inode alive, so no new file can reuse it."""
    link = path.with_name(path.name + ".witness")
    os.link(path, link)
    return link


# -- stream echo ----------------------------------------------------------------


def test_echo(real_reactor: Reactor, wait: Wait, sock_dir: Path, listen: Listen) -> None:
    r = real_reactor
    path = str(sock_dir / "echo.sock")
    servers = Servers()
    listener = listen(path, servers)
    assert listener.address == UNIXAddress(path)
    assert listener.listening
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    client: Client = wait(r, connect_unix(r.loop, path, Client))
    # The client's factory got the server's address; the server's, an unnamed peer.
    assert client.address == UNIXAddress(path)
    assert client.peer == UNIXAddress(path)
    assert wait(r, client.replied) == b"hello, unix"
    (server,) = servers.made
    assert server.address == UNIXAddress(None)
    assert server.host == UNIXAddress(path)
    client.transport.close()
    assert wait(r, client.lost) is None
    assert wait(r, server.lost) is None
    assert wait(r, listener.stop_listening()) is None
    assert not listener.listening


def test_large_data_through_flow_control(
    real_reactor: Reactor, wait: Wait, sock_dir: Path, listen: Listen
) -> None:
    r = real_reactor
    path = str(sock_dir / "big.sock")
    listener = listen(path, Echo)
    big = bytes(range(256)) * 4096  # 1 MiB: more than the socket buffers hold
    echo_once(r, wait, path, big)
    wait(r, listener.stop_listening())


def test_path_object_accepted(
    real_reactor: Reactor, wait: Wait, sock_dir: Path, listen: Listen
) -> None:
    r = real_reactor
    path = sock_dir / "pathlib.sock"
    listener = listen(path, Echo)
    assert listener.address == UNIXAddress(str(path))
    echo_once(r, wait, str(path))
    wait(r, listener.stop_listening())
    assert not path.exists()


def test_factory_none_refuses_and_factory_error_is_logged(
    real_reactor: Reactor,
    wait: Wait,
    sock_dir: Path,
    caplog: pytest.LogCaptureFixture,
    listen: Listen,
) -> None:
    r = real_reactor
    refuse = listen(sock_dir / "refuse.sock", lambda peer: None)
    # A silent client: closing a Unix socket with unread data resets the peer.
    silent = connect_unix(r.loop, sock_dir / "refuse.sock", lambda a: Client(a, b""))
    client: Client = wait(r, silent)
    assert wait(r, client.lost) is None
    assert client.received == b""

    def broken(peer: Address) -> Protocol:
        raise RuntimeError("factory broke")

    broke = listen(sock_dir / "broken.sock", broken)
    client = wait(r, connect_unix(r.loop, sock_dir / "broken.sock", lambda a: Client(a, b"")))
    assert wait(r, client.lost) is None
    assert "factory broke" in caplog.text
    wait(r, refuse.stop_listening())
    wait(r, broke.stop_listening())


def test_client_factory_error_fails_the_connect(
    real_reactor: Reactor, wait: Wait, sock_dir: Path, listen: Listen
) -> None:
    r = real_reactor
    path = str(sock_dir / "s.sock")
    servers = Servers()
    listener = listen(path, servers)

    def broken(address: Address) -> Client:
        raise KeyError("client factory broke")

    echo_once(r, wait, path)  # Serving: whatever the loop sets up for that is there.
    wait(r, servers.made[0].lost)
    servers.first = Deferred()
    before = open_fds()
    with pytest.raises(KeyError):
        wait(r, connect_unix(r.loop, path, broken))
    # The server accepted the connection and saw it closed.
    server: Echo = wait(r, servers.first)
    assert server is servers.made[1]
    assert wait(r, server.lost) is None
    assert open_fds() == before
    wait(r, listener.stop_listening())


# -- the socket file ------------------------------------------------------------------


def test_mode_is_applied(
    real_reactor: Reactor, wait: Wait, sock_dir: Path, listen: Listen
) -> None:
    r = real_reactor
    private = listen(sock_dir / "private.sock", Echo, mode=0o600)
    default = listen(sock_dir / "default.sock", Echo)
    assert stat.S_IMODE(os.lstat(sock_dir / "private.sock").st_mode) == 0o600
    # The umask does not apply: the mode is set as asked.
    assert stat.S_IMODE(os.lstat(sock_dir / "default.sock").st_mode) == 0o666
    echo_once(r, wait, str(sock_dir / "private.sock"))
    wait(r, private.stop_listening())
    wait(r, default.stop_listening())


def test_socket_file_removed_when_stopped(
    real_reactor: Reactor, wait: Wait, sock_dir: Path, listen: Listen
) -> None:
    r = real_reactor
    path = sock_dir / "gone.sock"
    listener = listen(path, Echo)
    assert path.exists()
    wait(r, listener.stop_listening())
    assert not path.exists()
    # And the path can be listened on again.
    again = listen(path, Echo)
    echo_once(r, wait, str(path))
    wait(r, again.stop_listening())
    assert not path.exists()


def test_close_now_removes_a_socket_file_never_served(loop_name: str, sock_dir: Path) -> None:
    reactor = Reactor(uvloop=loop_name == "uvloop")
    path = sock_dir / "never.sock"
    listener = listen_unix(reactor.loop, path, Echo)
    listener.close_now()
    assert not path.exists()
    reactor.close()


def test_stale_socket_file_is_replaced(
    real_reactor: Reactor, wait: Wait, sock_dir: Path, listen: Listen
) -> None:
    r = real_reactor
    path = sock_dir / "stale.sock"
    make_stale(path)
    old = witness(path)
    listener = listen(path, Echo)
    assert not path.samefile(old)  # a new socket file
    echo_once(r, wait, str(path))
    wait(r, listener.stop_listening())
    assert not path.exists()


def test_live_server_path_is_refused(
    real_reactor: Reactor, wait: Wait, sock_dir: Path, listen: Listen
) -> None:
    r = real_reactor
    path = sock_dir / "live.sock"
    first = listen(path, Echo)
    inode = path.lstat().st_ino
    with pytest.raises(CannotListenError) as info:
        listen(path, Echo)
    assert info.value.path == str(path)
    assert info.value.errno == errno.EADDRINUSE
    assert "address in use" in str(info.value)
    # The first server's socket file is untouched, and it still serves.
    assert path.lstat().st_ino == inode
    echo_once(r, wait, str(path))
    wait(r, first.stop_listening())


def test_live_socket_of_another_type_is_refused(
    real_reactor: Reactor, sock_dir: Path, listen: Listen
) -> None:
    path = sock_dir / "dgram.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as live:
        live.bind(str(path))
        with pytest.raises(CannotListenError) as info:
            listen(path, Echo)
        assert info.value.errno == errno.EADDRINUSE
        assert stat.S_ISSOCK(path.lstat().st_mode)


@pytest.mark.parametrize("kind", ["file", "directory", "symlink"])
def test_what_is_not_a_socket_is_never_removed(
    real_reactor: Reactor, sock_dir: Path, kind: str, listen: Listen
) -> None:
    path = sock_dir / "not-a-socket"
    if kind == "file":
        path.write_bytes(b"precious")
    elif kind == "directory":
        path.mkdir()
    else:
        # Even a link to a stale socket: the link is not ours to remove.
        make_stale(sock_dir / "target.sock")
        path.symlink_to(sock_dir / "target.sock")
    with pytest.raises(CannotListenError) as info:
        listen(path, Echo)
    assert info.value.path == str(path)
    assert isinstance(info.value.reason, OSError)
    if kind == "file":
        assert info.value.errno == errno.EEXIST
        assert path.read_bytes() == b"precious"
    elif kind == "directory":
        assert path.is_dir()
    else:
        assert path.is_symlink()
        assert (sock_dir / "target.sock").exists()


def test_unusable_paths_raise_cannot_listen(real_reactor: Reactor, sock_dir: Path) -> None:
    loop = real_reactor.loop
    before = open_fds()
    with pytest.raises(CannotListenError) as info:
        listen_unix(loop, sock_dir / "missing-directory" / "s.sock", Echo)
    assert info.value.errno == errno.ENOENT
    with pytest.raises(CannotListenError):
        listen_unix(loop, sock_dir / ("x" * 120), Echo)  # longer than sun_path
    with pytest.raises(ValueError, match="not a Unix socket path"):
        listen_unix(loop, str(sock_dir / "a\0b"), Echo)
    assert open_fds() == before
    assert os.listdir(sock_dir) == []


def test_replaced_socket_file_is_not_removed_on_stop(
    real_reactor: Reactor, wait: Wait, sock_dir: Path, listen: Listen
) -> None:
    r = real_reactor
    path = sock_dir / "replaced.sock"
    listener = listen(path, Echo)
    # Someone removes our file and binds a socket of their own there.
    path.unlink()
    with socket.socket(socket.AF_UNIX) as theirs:
        theirs.bind(str(path))
        inode = path.lstat().st_ino
        wait(r, listener.stop_listening())
        assert path.lstat().st_ino == inode


def test_binding_waits_for_the_directory_lock(
    real_reactor: Reactor, sock_dir: Path, monkeypatch: pytest.MonkeyPatch, listen: Listen
) -> None:
    # Another process replacing a stale socket holds the directory's lock;
    # meanwhile the stale file must not be touched.
    monkeypatch.setattr(_unix, "_LOCK_WAIT", 0.05)
    path = sock_dir / "locked.sock"
    make_stale(path)
    old = witness(path)
    held = os.open(sock_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(CannotListenError) as info:
            listen(path, Echo)
        assert info.value.errno == errno.EAGAIN
        assert path.samefile(old)
    finally:
        os.close(held)
    # Once the lock is free, the stale file is replaced.
    listener = listen(path, Echo)
    assert not path.samefile(old)
    listener.close_now()
    assert not path.exists()


# -- connecting ---------------------------------------------------------------------


def test_connect_to_a_missing_path(real_reactor: Reactor, wait: Wait, sock_dir: Path) -> None:
    before = open_fds()
    connector = connect_unix(real_reactor.loop, sock_dir / "nobody.sock", Client)
    assert connector.destination == UNIXAddress(str(sock_dir / "nobody.sock"))
    with pytest.raises(FileNotFoundError):
        wait(real_reactor, connector)
    assert connector.state == "failed"
    assert open_fds() == before


def test_connect_to_a_stale_socket_is_refused(
    real_reactor: Reactor, wait: Wait, sock_dir: Path
) -> None:
    path = sock_dir / "stale.sock"
    make_stale(path)
    before = open_fds()
    with pytest.raises(ConnectionRefusedError):
        wait(real_reactor, connect_unix(real_reactor.loop, path, Client))
    assert open_fds() == before


def test_disconnect_closes_the_connection(
    real_reactor: Reactor, wait: Wait, sock_dir: Path, listen: Listen
) -> None:
    r = real_reactor
    servers = Servers()
    listener = listen(sock_dir / "d.sock", servers)
    connector = connect_unix(r.loop, sock_dir / "d.sock", Client)
    client: Client = wait(r, connector)
    wait(r, client.replied)
    connector.disconnect()
    assert connector.state == "disconnected"
    assert wait(r, client.lost) is None
    assert wait(r, servers.made[0].lost) is None
    wait(r, listener.stop_listening())


# -- the abstract namespace -----------------------------------------------------------


@linux_only
def test_abstract_namespace_echo(
    real_reactor: Reactor, wait: Wait, sock_dir: Path, listen: Listen
) -> None:
    r = real_reactor
    name = abstract_name()
    servers = Servers()
    listener = listen(name, servers)
    # Reported as the system does: bytes starting with NUL.
    assert listener.address == UNIXAddress(os.fsencode(name))
    client: Client = wait(r, connect_unix(r.loop, name, Client))
    assert client.address == UNIXAddress(os.fsencode(name))
    assert wait(r, client.replied) == b"hello, unix"
    assert servers.made[0].host == listener.address
    client.transport.close()
    wait(r, client.lost)
    wait(r, listener.stop_listening())
    # The name went with the socket: free again, and no file anywhere.
    again = listen(name, Echo)
    wait(r, again.stop_listening())
    assert os.listdir(sock_dir) == []


@linux_only
def test_abstract_name_in_use_is_refused(
    real_reactor: Reactor, wait: Wait, listen: Listen
) -> None:
    name = abstract_name()
    first = listen(name, Echo)
    with pytest.raises(CannotListenError) as info:
        listen(name, Echo)
    assert info.value.errno == errno.EADDRINUSE
    assert info.value.path == name
    wait(real_reactor, first.stop_listening())


@linux_only
def test_autobind_listens_on_a_name_linux_chooses(
    real_reactor: Reactor, wait: Wait, listen: Listen
) -> None:
    r = real_reactor
    listener = listen("", Echo)
    address = listener.address
    assert isinstance(address, UNIXAddress)
    assert isinstance(address.path, bytes)
    assert address.path.startswith(b"\0")
    echo_once(r, wait, os.fsdecode(address.path))
    wait(r, listener.stop_listening())


# -- peer credentials ---------------------------------------------------------------


@linux_only
def test_peer_credentials_on_both_ends(
    real_reactor: Reactor, wait: Wait, sock_dir: Path, listen: Listen
) -> None:
    r = real_reactor
    servers = Servers()
    listener = listen(sock_dir / "cred.sock", servers)
    client: Client = wait(r, connect_unix(r.loop, sock_dir / "cred.sock", Client))
    wait(r, client.replied)
    me = UnixCredentials(os.getpid(), os.getuid(), os.getgid())
    assert peer_credentials(client.transport) == me
    assert peer_credentials(servers.made[0].transport) == me
    client.transport.close()
    wait(r, client.lost)
    wait(r, listener.stop_listening())


def test_peer_credentials_need_a_unix_stream(real_reactor: Reactor, wait: Wait) -> None:
    r = real_reactor
    listener = r.listen_tcp(0, Echo, interface="127.0.0.1")
    client: Client = wait(r, r.connect_tcp("127.0.0.1", listener.port, Client))
    with pytest.raises(ValueError, match="not a Unix stream socket"):
        peer_credentials(client.transport)
    client.transport.close()
    wait(r, client.lost)
    wait(r, listener.stop_listening())


class FakeSocket:
    family = socket.AF_UNIX
    type = socket.SOCK_STREAM

    def getsockopt(self, level: int, option: int, size: int) -> bytes:
        assert (level, option, size) == (socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        return struct.pack("iII", 4321, 1000, 100)


class FakeTransport(asyncio.Transport):
    def __init__(self, sock: object) -> None:
        super().__init__({"socket": sock})


@linux_only
def test_peer_credentials_unpacks_struct_ucred() -> None:
    assert peer_credentials(FakeTransport(FakeSocket())) == UnixCredentials(4321, 1000, 100)
    with pytest.raises(ValueError, match="not a Unix stream socket"):
        peer_credentials(FakeTransport(None))


def test_peer_credentials_elsewhere_is_not_implemented(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(socket, "SO_PEERCRED", raising=False)
    with pytest.raises(NotImplementedError, match="SO_PEERCRED"):
        peer_credentials(FakeTransport(FakeSocket()))


# -- nothing leaks; a real peer ---------------------------------------------------------


def test_no_descriptor_leaks_over_a_full_cycle(
    real_reactor: Reactor, wait: Wait, sock_dir: Path, listen: Listen
) -> None:
    r = real_reactor
    path = str(sock_dir / "cycle.sock")

    def cycle() -> None:
        servers = Servers()
        listener = listen(path, servers)
        echo_once(r, wait, path)
        wait(r, servers.made[0].lost)
        wait(r, listener.stop_listening())

    cycle()  # The loop may set up lasting things of its own the first time.
    before = open_fds()
    cycle()
    assert open_fds() == before
    assert os.listdir(sock_dir) == []


def test_netcat_talks_to_the_echo_server(
    real_reactor: Reactor, wait: Wait, sock_dir: Path, listen: Listen
) -> None:
    nc = require_peer("nc", package="netcat-openbsd")
    r = real_reactor
    path = str(sock_dir / "nc.sock")
    servers = Servers()
    listener = listen(path, servers)
    message = b"".join(b"line %d from netcat\n" % i for i in range(1000))

    async def talk() -> tuple[bytes, int]:
        # -N: shut down the socket's write side at the end of stdin, then
        # read until the server closes (OpenBSD netcat).
        process = await asyncio.create_subprocess_exec(
            nc,
            "-N",
            "-U",
            path,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await process.communicate(message)
        return out, await process.wait()

    out, status = wait(r, talk())
    assert status == 0
    assert out == message
    wait(r, servers.made[0].lost)
    wait(r, listener.stop_listening())
