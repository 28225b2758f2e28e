"""``--workers N``: processes sharing the ports, restarted, signalled, stopped together."""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _runner_helpers import (
    DEADLINE,
    Torsion,
    exchange,
    log_lines,
    one_line,
    process_gone,
    run_torsion,
    wait_for_log,
    wait_until,
)

from torsion.application._workers import SharedPortsReactor, WorkerPool, worker_index
from torsion.internet import TCPServerEndpoint
from torsion.protocols import Echo
from torsion.testing import MemoryReactor


@pytest.fixture
def shared_port() -> Iterator[int]:
    """A port held for the test: bound with SO_REUSEPORT but not listening.

    Workers that also set SO_REUSEPORT can bind it; since this socket does
    not listen, no connection ever lands on it.
    """
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]


def socket_count(pid: int) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                count += 1
        except FileNotFoundError:
            continue
    return count


def worker_pids(torsion: Torsion, count: int) -> list[int]:
    """Wait for ``count`` workers and the supervisor to say they run, in any order."""
    pids: list[int] = []
    supervisor = False
    while len(pids) < count or not supervisor:
        found = torsion.wait_for(r"echo service (supervisor )?running \(pid (\d+)")
        if found.group(1):
            assert int(found.group(2)) == torsion.process.pid
            supervisor = True
        else:
            pids.append(int(found.group(2)))
    return pids


def test_two_workers_share_the_connections(shared_port: int) -> None:
    with Torsion(
        "echo", "--listen", f"tcp:{shared_port}:interface=127.0.0.1", "--workers", "2"
    ) as torsion:
        pids = worker_pids(torsion, 2)
        assert len(set(pids)) == 2
        assert torsion.process.pid not in pids
        before = {pid: socket_count(pid) for pid in pids}
        clients = []
        try:
            for n in range(16):
                client = socket.create_connection(("127.0.0.1", shared_port), timeout=DEADLINE)
                clients.append(client)
                client.sendall(b"%d\n" % n)
                assert client.recv(10) == b"%d\n" % n  # accepted and served
            served = {pid: socket_count(pid) - before[pid] for pid in pids}
        finally:
            for client in clients:
                client.close()
        # Each worker took some of them (all 16 on one: a chance of 1 in 32768).
        assert sum(served.values()) == 16
        assert all(n > 0 for n in served.values()), served
        assert torsion.stop() == 0
        rest = "\n".join(torsion.rest())
        for pid in pids:
            assert f"torsion.application._runner[{pid}]: echo service stopped" in rest
            assert process_gone(pid)


def test_a_dead_worker_is_restarted_and_signals_are_passed_on(
    shared_port: int, tmp_path: Path
) -> None:
    log = tmp_path / "workers.log"
    with Torsion(
        "echo",
        "--listen",
        f"tcp:{shared_port}:interface=127.0.0.1",
        "--workers",
        "2",
        "--logfile",
        str(log),
    ) as torsion:
        wait_for_log(log, "echo service supervisor running")
        pids = [
            int(line.split("(pid ")[1].split(",")[0])
            for line in log_lines(log)
            if "echo service running (pid" in line
        ]
        assert len(pids) == 2
        os.kill(pids[0], signal.SIGKILL)
        wait_for_log(log, rf"Worker \d \(pid {pids[0]}\) terminated by SIGKILL")
        wait_for_log(log, r"Restarting worker \d in ")

        def new_worker() -> int | None:
            for line in log_lines(log):
                if "echo service running (pid" in line:
                    pid = int(line.split("(pid ")[1].split(",")[0])
                    if pid not in pids:
                        return pid
            return None

        replacement = wait_until(new_worker, "the replacement worker")
        assert exchange(shared_port, b"still here\n") == b"still here\n"
        torsion.process.send_signal(signal.SIGHUP)
        for pid in (pids[1], replacement):
            wait_for_log(log, rf"_runner\[{pid}\]: echo service reloaded")
        assert torsion.stop() == 0
        for pid in (pids[1], replacement):
            assert process_gone(pid)
    assert log_lines(log)[-1].endswith("echo service supervisor stopped")


def test_the_notify_socket_stays_open_until_every_worker_has_stopped() -> None:
    reactor = MemoryReactor()
    pool = WorkerPool(reactor, 2, ["echo"])
    pool.start_service()
    (notify,) = reactor.unix_datagram_ports
    first, second = (call.transport for call in reactor.processes)
    stopped = pool.stop_service()
    assert first.signals == [signal.SIGTERM]
    assert second.signals == [signal.SIGTERM]
    first.child_exits(0)
    assert notify.listening  # the second worker may still say STOPPING=1
    assert not stopped.called
    second.child_exits(0)
    assert stopped.called
    assert not notify.listening


def test_workers_need_a_fixed_port() -> None:
    result = run_torsion("echo", "--listen", "tcp:0:interface=127.0.0.1", "--workers", "2")
    assert result.returncode == 2
    assert one_line(result.stderr) == (
        "torsion: --workers needs fixed ports: with port 0 each worker would listen "
        "on a port of its own"
    )


def test_workers_on_a_taken_port_fail_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_torsion(
            "echo", "--listen", f"tcp:{port}:interface=127.0.0.1", "--workers", "2"
        )
    assert result.returncode == 1
    assert one_line(result.stderr) == (
        f"torsion: cannot listen on 127.0.0.1:{port}: Address already in use"
    )


def test_workers_as_a_daemon_with_a_pidfile(shared_port: int, tmp_path: Path) -> None:
    pidfile, log = tmp_path / "pool.pid", tmp_path / "pool.log"
    result = run_torsion(
        "echo",
        "--listen",
        f"tcp:{shared_port}:interface=127.0.0.1",
        "--workers",
        "2",
        "--daemon",
        "--pidfile",
        str(pidfile),
        "--logfile",
        str(log),
    )
    assert result.returncode == 0, result.stderr
    supervisor = int(pidfile.read_text())
    try:
        wait_for_log(log, "echo service supervisor running")
        assert exchange(shared_port, b"daemonic\n") == b"daemonic\n"
        os.kill(supervisor, signal.SIGTERM)
        wait_until(lambda: process_gone(supervisor), "the supervisor to exit")
    finally:
        if not process_gone(supervisor):
            os.kill(supervisor, signal.SIGKILL)
    assert not pidfile.exists()
    assert sum("echo service stopped" in line for line in log_lines(log)) == 2


def test_the_shared_ports_reactor_sets_so_reuseport(shared_port: int) -> None:
    reactor = SharedPortsReactor(uvloop=False)
    try:
        listener = reactor.listen_tcp(shared_port, lambda _: Echo(), interface="127.0.0.1")
        assert listener.port == shared_port
        with pytest.raises(ValueError, match="--workers needs fixed ports"):
            reactor.listen_tcp(0, lambda _: Echo())
        failed = TCPServerEndpoint(reactor, 0).listen(lambda _: Echo())
        errors: list[BaseException] = []
        failed.add_errback(errors.append)
        assert "--workers needs fixed ports" in str(errors[0])
        with pytest.raises(ValueError, match="cannot share the Unix socket"):
            reactor.listen_unix("/tmp/x.sock", lambda _: Echo())
    finally:
        reactor.close()


def test_worker_index_reads_the_environment() -> None:
    assert worker_index({"TORSION_WORKER": "3"}) == 3
    assert worker_index({}) is None
    assert worker_index({"TORSION_WORKER": "x"}) is None


SOCKET_ACTIVATED = """
import os, socket, sys
# What systemd does for a socket-activated service: the listening socket is
# descriptor 3, and LISTEN_FDS / LISTEN_PID say so.
listening = socket.socket()
listening.bind(("127.0.0.1", 0))
listening.listen()
print(listening.getsockname()[1], flush=True)
if listening.fileno() != 3:
    os.dup2(listening.fileno(), 3)
    listening.close()
else:
    listening.detach()
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
from torsion.application._cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_workers_share_a_socket_systemd_passed() -> None:
    with Torsion(
        "inetd",
        "--listen",
        "systemd:index=0",
        "--workers",
        "2",
        "--",
        "sh",
        "-c",
        "echo $PPID",
        command=[sys.executable, "-c", SOCKET_ACTIVATED],
    ) as torsion:
        assert torsion.process.stdout is not None
        port = int(torsion.process.stdout.readline())
        torsion.wait_for("supervisor running")
        parents = {int(exchange(port, b"")) for _ in range(24)}
        assert len(parents) == 2, parents
        assert torsion.process.pid not in parents
        assert torsion.stop() == 0


def test_workers_stop_when_their_supervisor_is_killed(shared_port: int, tmp_path: Path) -> None:
    log = tmp_path / "orphans.log"
    listen = f"tcp:{shared_port}:interface=127.0.0.1"
    with Torsion("echo", "--listen", listen, "--workers", "2", "--logfile", str(log)) as torsion:
        wait_for_log(log, "echo service supervisor running")

        def worker_pids() -> list[int]:
            return [
                int(line.split("(pid ")[1].split(",")[0])
                for line in log_lines(log)
                if "echo service running (pid" in line
            ]

        # A worker says READY before its own line may have reached the file.
        pids = wait_until(lambda: len(worker_pids()) == 2 and worker_pids(), "two workers")
        torsion.process.kill()  # SIGKILL: the supervisor cannot pass anything on
        torsion.process.wait(DEADLINE)
        for pid in pids:
            wait_until(lambda pid=pid: process_gone(pid), f"worker {pid} to stop")  # type: ignore[misc]
    text = "\n".join(log_lines(log))
    for pid in pids:
        assert f"_workers[{pid}]: The supervisor is gone; stopping" in text
        assert f"_runner[{pid}]: echo service stopped" in text
