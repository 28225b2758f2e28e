"""The built-in plugins, deployment files and application files, run as an operator runs them."""

from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path

import pytest
from _runner_helpers import (
    DEADLINE,
    ENV,
    Torsion,
    exchange,
    no_traceback,
    one_line,
    proc_status,
    read_all,
    run_torsion,
)

ROOT = Path(__file__).resolve().parents[2]
LOCAL = "tcp:0:interface=127.0.0.1"
LOOPS = ["asyncio", "uvloop"]


def udp_ask(port: int, data: bytes = b"?") -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(DEADLINE)
        sock.bind(("127.0.0.1", 0))
        sock.sendto(data, ("127.0.0.1", port))
        return sock.recv(4096)


def udp_port(torsion: Torsion) -> int:
    return int(torsion.wait_for(r"listening on UDP 127\.0\.0\.1:(\d+)").group(1))


# -- deployment files ---------------------------------------------------------------------


def test_mktap_then_run_the_file_gives_the_same_service(tmp_path: Path) -> None:
    deployment = tmp_path / "echo.toml"
    made = run_torsion(
        "mktap",
        "echo",
        "--listen",
        LOCAL,
        "--udp",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "-o",
        str(deployment),
    )
    assert made.returncode == 0, made.stderr
    assert 'plugin = "echo"' in deployment.read_text()
    with Torsion("-f", str(deployment)) as torsion:
        # The file's [runner] table applies: JSON lines.
        line = torsion.wait_for(r'"message": "echo service listening on 127\.0\.0\.1:(\d+)')
        tcp = int(line.group(1))
        udp = int(
            torsion.wait_for(
                r'"message": "echo service listening on UDP 127\.0\.0\.1:(\d+)'
            ).group(1)
        )
        assert exchange(tcp, b"from the file\n") == b"from the file\n"
        assert udp_ask(udp, b"datagram") == b"datagram"
        assert torsion.stop() == 0


def test_mktap_writes_to_standard_output_and_the_command_line_overrides_the_runner(
    tmp_path: Path,
) -> None:
    made = run_torsion("mktap", "daytime", "--listen", LOCAL, "--log-level", "error")
    assert made.returncode == 0
    deployment = tmp_path / "daytime.toml"
    deployment.write_text(made.stdout)
    # --log-level given now wins over the file's "error", so the port is logged.
    with Torsion("-f", str(deployment), "--log-level", "info") as torsion:
        port = torsion.port()
        assert exchange(port, b"").endswith(b"-UTC\r\n")
        assert torsion.stop() == 0


def test_a_deployment_file_edited_wrong_is_one_line(tmp_path: Path) -> None:
    deployment = tmp_path / "echo.toml"
    deployment.write_text('plugin = "echo"\n\n[options]\nlisten = ["tcp:7"]\nlsiten = []\n')
    result = run_torsion("-f", str(deployment))
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith(f"torsion: {deployment}: [options] unknown key 'lsiten' (echo takes:")
    assert no_traceback(result.stderr)


def test_an_unreadable_deployment_file_is_a_usage_error(tmp_path: Path) -> None:
    deployment = tmp_path / "echo.toml"
    deployment.mkdir()  # unreadable as a file, even by root
    result = run_torsion("-f", str(deployment))
    assert result.returncode == 2
    assert one_line(result.stderr) == (
        f"torsion: cannot read the deployment file {deployment}: Is a directory"
    )


def test_f_with_a_plugin_is_refused() -> None:
    result = run_torsion("-f", "x.toml", "echo")
    assert result.returncode == 2
    assert one_line(result.stderr) == (
        "torsion: -f runs a deployment file: give it no plugin or command"
    )


# -- application files --------------------------------------------------------------------


def test_run_the_example_application_file() -> None:
    env = {**ENV, "ECHO_LISTEN": LOCAL}
    with Torsion("run", str(ROOT / "examples" / "app.py"), env=env) as torsion:
        port = int(torsion.wait_for(r"echo listening on 127\.0\.0\.1:(\d+)$").group(1))
        torsion.wait_for("app: still up")  # the timer's first call
        torsion.wait_for(r"echo app running \(pid")
        assert exchange(port, b"app\n") == b"app\n"
        assert torsion.stop() == 0
        assert torsion.rest()[-1].endswith("echo app stopped")


def test_run_a_missing_application_file(tmp_path: Path) -> None:
    result = run_torsion("run", str(tmp_path / "nope.py"))
    assert result.returncode == 2
    assert one_line(result.stderr) == (
        f"torsion: cannot read the application file {tmp_path / 'nope.py'}: "
        "No such file or directory"
    )


def test_run_an_application_that_fails_to_start(tmp_path: Path) -> None:
    app = tmp_path / "failing.py"
    app.write_text(
        "from torsion.application import BaseService\n"
        "class Failing(BaseService):\n"
        "    def start_service(self):\n"
        "        raise OSError(13, 'Permission denied', '/var/lib/db')\n"
        "application = Failing()\n"
    )
    result = run_torsion("run", str(app))
    assert result.returncode == 1
    assert one_line(result.stderr) == "torsion: Permission denied: /var/lib/db"


# -- the classic services -----------------------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
def test_discard_chargen_daytime_time_over_tcp_and_udp(loop: str) -> None:
    udp = "127.0.0.1:0"
    with (
        Torsion("discard", "--listen", LOCAL, "--udp", udp, "--reactor", loop) as discard,
        Torsion("chargen", "--listen", LOCAL, "--udp", udp, "--reactor", loop) as chargen,
        Torsion("daytime", "--listen", LOCAL, "--udp", udp, "--reactor", loop) as daytime,
        Torsion("time", "--listen", LOCAL, "--udp", udp, "--reactor", loop) as timer,
    ):
        assert exchange(discard.port(), b"gone" * 1000) == b""
        with socket.create_connection(("127.0.0.1", chargen.port()), timeout=DEADLINE) as c:
            first = c.recv(74)
            assert first.startswith(b' !"#$%&')
        assert exchange(daytime.port(), b"").endswith(b"-UTC\r\n")
        (seconds,) = struct.unpack("!I", exchange(timer.port(), b""))
        assert abs(seconds - 2_208_988_800 - time.time()) < 60
        assert udp_ask(udp_port(daytime)).endswith(b"-UTC\r\n")
        assert len(udp_ask(udp_port(timer))) == 4
        assert len(udp_ask(udp_port(chargen))) <= 512
        for torsion in (discard, chargen, daytime, timer):
            assert torsion.stop() == 0


def test_classic_udp_services_do_not_answer_privileged_ports_unless_asked() -> None:
    with Torsion("echo", "--udp", "127.0.0.1:0", "--answer-privileged-ports") as torsion:
        port = udp_port(torsion)
        assert udp_ask(port, b"hi") == b"hi"
        assert torsion.stop() == 0


def test_max_connections_refuses_the_one_too_many() -> None:
    with Torsion("echo", "--listen", LOCAL, "--max-connections", "1") as torsion:
        port = torsion.port()
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as first:
            first.sendall(b"1")
            assert first.recv(1) == b"1"
            with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as second:
                assert read_all(second) == b""  # closed at once
        assert torsion.stop() == 0


def test_a_bad_udp_option() -> None:
    result = run_torsion("echo", "--udp", "127.0.0.1:http")
    assert result.returncode == 2
    assert "'127.0.0.1:http' is not [INTERFACE:]PORT" in one_line(result.stderr)


# -- portforward --------------------------------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
def test_portforward_to_an_echo_service(loop: str) -> None:
    with Torsion("echo", "--listen", LOCAL) as echo:
        echo_port = echo.port()
        with Torsion(
            "portforward",
            "--listen",
            LOCAL,
            "--to",
            f"tcp:127.0.0.1:{echo_port}",
            "--reactor",
            loop,
        ) as forward:
            port = int(forward.wait_for(r"listening on 127\.0\.0\.1:(\d+)").group(1))
            assert exchange(port, b"through\n" * 10_000) == b"through\n" * 10_000
            assert forward.stop() == 0
        assert echo.stop() == 0


def test_portforward_to_nowhere_closes_and_logs_one_line() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]
    with Torsion(
        "portforward", "--listen", LOCAL, "--connect", f"tcp:127.0.0.1:{closed_port}"
    ) as forward:
        port = forward.port()
        assert exchange(port, b"anyone?") == b""
        forward.wait_for("Cannot forward the connection from 127.0.0.1:")
        assert forward.stop() == 0
        assert no_traceback("\n".join(forward.seen + forward.rest()))


@pytest.mark.skipif(os.geteuid() != 0, reason="changing user needs root")
def test_an_application_names_the_user_it_runs_as(tmp_path: Path) -> None:
    app = tmp_path / "as_nobody.py"
    app.write_text(
        "from torsion.application import Application, StreamServerEndpointService\n"
        "from torsion.internet import server_from_string\n"
        "from torsion.protocols import Echo\n"
        "def application(reactor):\n"
        "    app = Application('nobody app', uid='nobody', gid='nogroup')\n"
        "    endpoint = server_from_string(reactor, 'tcp:0:interface=127.0.0.1')\n"
        "    app.add_service(StreamServerEndpointService(endpoint, lambda _: Echo()))\n"
        "    return app\n"
    )
    with Torsion("run", str(app)) as torsion:
        torsion.wait_for(r"nobody app running \(pid")
        assert proc_status(torsion.process.pid, "Uid").split() == ["65534"] * 4
        assert torsion.stop() == 0
