"""``torsion inetd``: a program per connection, the socket as its standard input and output."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from _runner_helpers import DEADLINE, Torsion, exchange, one_line, read_all, run_torsion

LOCAL = "tcp:0:interface=127.0.0.1"


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_cat_is_an_echo_server(loop: str) -> None:
    with Torsion("inetd", "--listen", LOCAL, "--reactor", loop, "--", "cat") as torsion:
        port = torsion.port()
        assert exchange(port, b"first\n") == b"first\n"
        big = os.urandom(300_000)
        assert exchange(port, big) == big  # every byte reaches the program
        assert torsion.stop() == 0


def test_the_program_knows_who_is_connected_and_its_errors_are_logged() -> None:
    script = (
        'echo "$PROTO $TCPREMOTEIP $TCPLOCALIP $TCPLOCALPORT"; '
        'echo "first problem" >&2; printf "second\\nthird" >&2'
    )
    with Torsion("inetd", "--listen", LOCAL, "--", "sh", "-c", script) as torsion:
        port = torsion.port()
        assert exchange(port, b"") == f"TCP 127.0.0.1 127.0.0.1 {port}\n".encode()
        for line in ("first problem", "second", "third"):
            torsion.wait_for(rf"_inetd: sh\[\d+\]: {line}$")
        assert torsion.stop() == 0


def test_over_a_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "inetd.sock"
    with Torsion("inetd", "--listen", f"unix:{path}", "--", "sh", "-c", "echo $PROTO") as t:
        t.wait_for("listening on unix:")
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(DEADLINE)
            client.connect(str(path))
            assert read_all(client) == b"UNIX\n"
        assert t.stop() == 0


@pytest.fixture
def shared_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]


def test_two_workers_each_run_programs(shared_port: int) -> None:
    # $PPID of each program is the worker that accepted its connection.
    with Torsion(
        "inetd",
        "--listen",
        f"tcp:{shared_port}:interface=127.0.0.1",
        "--workers",
        "2",
        "--",
        "sh",
        "-c",
        "echo $PPID",
    ) as torsion:
        torsion.wait_for("supervisor running")
        parents = {int(exchange(shared_port, b"")) for _ in range(24)}
        assert len(parents) == 2, parents
        assert torsion.process.pid not in parents
        assert torsion.stop() == 0


def test_stop_waits_for_programs_serving_then_the_deadline_kills_them() -> None:
    with Torsion("inetd", "--listen", LOCAL, "--", "cat") as torsion:
        port = torsion.port()
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as client:
            client.sendall(b"in hand\n")
            assert client.recv(100) == b"in hand\n"
            torsion.process.send_signal(15)
            torsion.wait_for(r"inetd cat: waiting for 1 program\(s\) to finish")
            client.sendall(b"still served\n")
            assert client.recv(100) == b"still served\n"
        assert torsion.process.wait(DEADLINE) == 0
    with Torsion("inetd", "--listen", LOCAL, "--shutdown-timeout", "0.2", "--", "cat") as t:
        port = t.port()
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as client:
            client.sendall(b"x")
            assert client.recv(1) == b"x"
            assert t.stop() == 0
            assert read_all(client) == b""
        assert any("killing program pid" in line for line in t.seen + t.rest())


def test_max_connections_counts_running_programs() -> None:
    with Torsion("inetd", "--listen", LOCAL, "--max-connections", "1", "--", "cat") as torsion:
        port = torsion.port()
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as first:
            first.sendall(b"1")
            assert first.recv(1) == b"1"
            with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as second:
                assert read_all(second) == b""
            torsion.wait_for("1 programs are serving already")
        assert torsion.stop() == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="running programs as another user needs root")
def test_programs_run_as_the_user_asked_for() -> None:
    with Torsion("inetd", "--listen", LOCAL, "--user", "nobody", "--", "id", "-u") as t:
        assert exchange(t.port(), b"") == b"65534\n"
        assert t.stop() == 0


def test_a_missing_program_is_a_usage_error() -> None:
    result = run_torsion("inetd", "--listen", LOCAL, "--", "no-such-program-anywhere")
    assert result.returncode == 2
    assert (
        one_line(result.stderr) == "torsion: inetd: there is no program 'no-such-program-anywhere'"
    )
    result = run_torsion("inetd", "--listen", LOCAL)
    assert result.returncode == 2
    assert one_line(result.stderr) == "torsion: PROGRAM [ARGS...] is missing"
