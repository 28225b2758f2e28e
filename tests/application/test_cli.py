"""The ``torsion`` command: parsing, and ``torsion echo`` run as a user runs it."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest

from torsion.application._cli import main
from torsion.testing import require_peer


def test_help_lists_the_plugins(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert re.search(r"echo\s+echo every byte back", capsys.readouterr().out)


def test_no_plugin_prints_usage_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: torsion" in capsys.readouterr().err


def test_bad_listen_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["echo", "--listen", "tcp:nope"]) == 2
    err = capsys.readouterr().err
    assert err == "torsion: bad endpoint 'tcp:nope': port must be a whole number, not 'nope'\n"


@pytest.fixture
def echo_server() -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``torsion echo`` in its own process, on a port the system chose."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "torsion",
            "echo",
            "--listen",
            "tcp:0:interface=127.0.0.1",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stderr is not None
    try:
        line = process.stderr.readline()
        found = re.search(r"listening on 127\.0\.0\.1:(\d+); try: nc 127\.0\.0\.1 \1$", line)
        assert found, f"unexpected first line: {line!r}"
        yield process, int(found.group(1))
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        process.stderr.close()


def test_echo_command_serves_a_real_client_and_stops_on_sigterm(
    echo_server: tuple[subprocess.Popen[str], int],
) -> None:
    process, port = echo_server
    nc = require_peer("nc", package="netcat-openbsd")
    answer = subprocess.run(
        [nc, "-N", "127.0.0.1", str(port)],
        input=b"hello from nc\n",
        capture_output=True,
        timeout=10,
        check=True,
    )
    assert answer.stdout == b"hello from nc\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"x" * 100_000)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received == b"x" * 100_000
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    assert process.stderr is not None
    assert "echo service stopped" in process.stderr.read()


def test_echo_command_reports_a_taken_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "torsion",
                "echo",
                "--listen",
                f"tcp:{port}:interface=127.0.0.1",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


SOCKET_ACTIVATED_ECHO = """
import os, socket, sys
# What systemd does before starting a socket-activated service: the listening
# socket is file descriptor 3, and LISTEN_FDS / LISTEN_PID say so.
listening = socket.socket()
listening.bind(("127.0.0.1", 0))
listening.listen()
if listening.fileno() == 3:
    listening.detach()
else:
    os.dup2(listening.fileno(), 3)
    listening.close()
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
from torsion.application._cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_echo_serves_a_socket_passed_by_systemd_and_more_listens(loop: str) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SOCKET_ACTIVATED_ECHO,
            "echo",
            "--reactor",
            loop,
            "--listen",
            "systemd:index=0",
            "--listen",
            "tcp:0:interface=127.0.0.1",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stderr is not None
    try:
        ports = []
        for _ in range(2):
            line = process.stderr.readline()
            found = re.search(r"listening on 127\.0\.0\.1:(\d+); try: nc", line)
            assert found, f"unexpected line: {line!r}"
            ports.append(int(found.group(1)))
        for port in ports:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(b"activated\n")
                sock.shutdown(socket.SHUT_WR)
                assert sock.makefile("rb").read() == b"activated\n"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        process.stderr.close()


def test_echo_over_a_unix_socket_with_nc() -> None:
    nc = require_peer("nc", package="netcat-openbsd")
    with tempfile.TemporaryDirectory(dir="/tmp") as where:
        path = os.path.join(where, "echo.sock")
        process = subprocess.Popen(
            [sys.executable, "-m", "torsion", "echo", "--listen", f"unix:{path}:mode=600"],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert process.stderr is not None
        try:
            line = process.stderr.readline()
            assert line.rstrip().endswith(f"listening on unix:{path}; try: nc -U {path}"), line
            assert os.stat(path).st_mode & 0o777 == 0o600
            answer = subprocess.run(
                [nc, "-N", "-U", path],
                input=b"over a unix socket\n",
                capture_output=True,
                timeout=10,
                check=True,
            )
            assert answer.stdout == b"over a unix socket\n"
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
            assert not os.path.exists(path)  # the socket file is removed on the way out
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
            process.stderr.close()
