"""The runner as an operator sees it: daemons, pidfiles, logs, signals, shutdown, systemd."""

from __future__ import annotations

import json
import os
import pstats
import signal
import socket
import ssl
import tempfile
from pathlib import Path

import pytest
from _runner_helpers import (
    DEADLINE,
    ENV,
    Torsion,
    exchange,
    log_lines,
    no_traceback,
    one_line,
    proc_status,
    process_gone,
    read_all,
    run_torsion,
    wait_for_log,
    wait_until,
)

LOCAL = "tcp:0:interface=127.0.0.1"


def test_echo_as_a_daemon_with_pidfile_and_logfile(tmp_path: Path) -> None:
    log, pidfile = tmp_path / "echo.log", tmp_path / "echo.pid"
    started = run_torsion(
        "echo",
        "--listen",
        LOCAL,
        "--daemon",
        "--pidfile",
        str(pidfile),
        "--logfile",
        str(log),
        "--umask",
        "027",
    )
    # The command returns once the daemon serves, and says nothing.
    assert started.returncode == 0, started.stderr
    assert started.stderr == ""
    pid = int(pidfile.read_text())
    assert pid != os.getpid()
    try:
        port = int(wait_for_log(log, r"listening on 127\.0\.0\.1:(\d+)").group(1))
        wait_for_log(log, rf"echo service running \(pid {pid}, uvloop loop\)")
        assert exchange(port, b"hello, daemon\n") == b"hello, daemon\n"
        # Detached: a session of its own but not its leader (so it can never
        # take a terminal), standard I/O on /dev/null.
        assert os.getsid(pid) != os.getsid(0)
        assert os.getsid(pid) != pid
        assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
        assert os.readlink(f"/proc/{pid}/fd/2") == "/dev/null"
        assert proc_status(pid, "Umask") == "0027"
        # logrotate moves the file away, then sends SIGHUP.
        log.rename(tmp_path / "echo.log.1")
        os.kill(pid, signal.SIGHUP)
        wait_for_log(log, "echo service reloaded")
        assert "Received SIGHUP" in "\n".join(log_lines(tmp_path / "echo.log.1"))
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: process_gone(pid), "the daemon to exit")
    finally:
        if not process_gone(pid):
            os.kill(pid, signal.SIGKILL)
    assert not pidfile.exists()
    lines = log_lines(log)
    assert any("Received SIGTERM, shutting down" in line for line in lines)
    assert lines[-1].endswith("echo service stopped")


def test_a_daemon_that_cannot_start_fails_in_the_shell(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_torsion(
            "echo",
            "--listen",
            f"tcp:{port}:interface=127.0.0.1",
            "--daemon",
            "--logfile",
            str(tmp_path / "log"),
            "--pidfile",
            str(tmp_path / "pid"),
        )
    assert result.returncode == 1
    assert one_line(result.stderr) == (
        f"torsion: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
    assert not (tmp_path / "pid").exists()
    assert "cannot listen" in log_lines(tmp_path / "log")[-1]


def test_a_daemon_reports_a_usage_error_with_status_2(tmp_path: Path) -> None:
    result = run_torsion(
        "echo", "--listen", "tcp:nope", "--daemon", "--logfile", str(tmp_path / "log")
    )
    assert result.returncode == 2
    assert one_line(result.stderr) == (
        "torsion: bad endpoint 'tcp:nope': port must be a whole number, not 'nope'"
    )


def test_a_pidfile_held_by_a_running_process_is_refused(tmp_path: Path) -> None:
    pidfile = tmp_path / "held.pid"
    pidfile.write_text(f"{os.getpid()}\n")  # this test's process: alive
    result = run_torsion("echo", "--listen", LOCAL, "--pidfile", str(pidfile))
    assert result.returncode == 1
    assert one_line(result.stderr) == (
        f"torsion: the pidfile {pidfile} is held by running process {os.getpid()}"
    )
    assert pidfile.read_text() == f"{os.getpid()}\n"


def test_a_stale_pidfile_is_replaced_and_removed_on_exit(tmp_path: Path) -> None:
    pidfile = tmp_path / "stale.pid"
    pidfile.write_text("4194304\n")  # above Linux's pid_max: no such process
    with Torsion("echo", "--listen", LOCAL, "--pidfile", str(pidfile)) as torsion:
        torsion.wait_for("Removing the stale pidfile")
        torsion.port()
        assert int(pidfile.read_text()) == torsion.process.pid
        assert torsion.stop() == 0
    assert not pidfile.exists()


def test_a_pidfile_path_holding_something_else_is_left_alone(tmp_path: Path) -> None:
    precious = tmp_path / "notes.txt"
    precious.write_text("not a pid\n")
    result = run_torsion("echo", "--listen", LOCAL, "--pidfile", str(precious))
    assert result.returncode == 1
    assert "does not hold a process id" in one_line(result.stderr)
    assert precious.read_text() == "not a pid\n"


def test_sigterm_lets_connections_finish_and_refuses_new_ones() -> None:
    with Torsion("echo", "--listen", LOCAL) as torsion:
        port = torsion.port()
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as client:
            client.sendall(b"one\n")
            assert client.recv(100) == b"one\n"
            torsion.process.send_signal(signal.SIGTERM)
            torsion.wait_for("waiting for 1 connection")
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=DEADLINE).close()
            client.sendall(b"two\n")  # the connection in hand is still served
            assert client.recv(100) == b"two\n"
            assert torsion.process.poll() is None
        assert torsion.process.wait(DEADLINE) == 0
        torsion.rest()
        assert torsion.seen[-1].endswith("echo service stopped")


def test_the_shutdown_timeout_cuts_off_what_is_left() -> None:
    with Torsion("echo", "--listen", LOCAL, "--shutdown-timeout", "0.2") as torsion:
        port = torsion.port()
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as client:
            client.sendall(b"x")
            assert client.recv(1) == b"x"
            assert torsion.stop() == 0
            assert read_all(client) == b""  # closed by the server
        rest = "\n".join(torsion.rest())
        assert "work in hand did not finish within 0.2s; cutting it off" in rest
        assert "closing 1 connection(s) still open" in rest


def test_json_log_lines(tmp_path: Path) -> None:
    log = tmp_path / "echo.jsonl"
    with Torsion(
        "--log-format", "json", "echo", "--listen", LOCAL, "--logfile", str(log)
    ) as torsion:
        entry = json.loads(wait_for_log(log, "listening on").string)
        assert torsion.stop() == 0
    assert entry["level"] == "INFO"
    assert entry["logger"] == "torsion.application._endpoint_service"
    assert entry["message"].startswith("echo service listening on 127.0.0.1:")
    assert entry["pid"] == torsion.process.pid
    assert entry["time"].endswith("+00:00")
    for line in log_lines(log):
        assert set(json.loads(line)) >= {"time", "level", "logger", "message", "pid"}


def test_logfile_dash_is_standard_output() -> None:
    with Torsion("echo", "--listen", LOCAL, "--logfile", "-") as torsion:
        assert torsion.process.stdout is not None
        line = torsion.process.stdout.readline()
        assert "echo service listening on 127.0.0.1:" in line
        assert torsion.stop() == 0


def test_log_level_warning_hides_info(tmp_path: Path) -> None:
    log, path = tmp_path / "quiet.log", tmp_path / "echo.sock"
    with Torsion(
        "echo", "--listen", f"unix:{path}", "--logfile", str(log), "--log-level", "warning"
    ) as torsion:

        def answers() -> bool:
            with socket.socket(socket.AF_UNIX) as client:
                try:
                    client.connect(str(path))
                except OSError:
                    return False
                client.sendall(b"quiet\n")
                client.shutdown(socket.SHUT_WR)
                return read_all(client) == b"quiet\n"

        wait_until(answers, "the echo service to answer")
        assert torsion.stop() == 0
    assert log.exists()
    assert log_lines(log) == []


def test_an_unwritable_logfile_is_one_line(tmp_path: Path) -> None:
    result = run_torsion("echo", "--logfile", str(tmp_path / "no" / "such" / "dir.log"))
    assert result.returncode == 1
    assert one_line(result.stderr).startswith("torsion: cannot open the log file ")


def test_profile_writes_stats_on_exit(tmp_path: Path) -> None:
    stats = tmp_path / "echo.prof"
    with Torsion("echo", "--listen", LOCAL, "--profile", str(stats)) as torsion:
        torsion.port()
        assert torsion.stop() == 0
    assert pstats.Stats(str(stats)).total_calls > 0


@pytest.mark.parametrize("reactor", ["asyncio", "uvloop"])
def test_reactor_option_chooses_the_loop(reactor: str) -> None:
    with Torsion("echo", "--listen", LOCAL, "--reactor", reactor) as torsion:
        port = torsion.port()
        torsion.wait_for(rf"echo service running \(pid \d+, {reactor} loop\)")
        assert exchange(port, b"loop\n") == b"loop\n"
        assert torsion.stop() == 0


def test_sighup_reloads_tls_certificates(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    pem = tmp_path / "server.pem"
    ca.issue_cert(
        "localhost", organization_name="first"
    ).private_key_and_cert_chain_pem.write_to_path(str(pem))
    context = ssl.create_default_context()
    ca.configure_trust(context)

    def organisation(port: int) -> str:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            subject = dict(item[0] for item in tls.getpeercert()["subject"])
            return str(subject["organizationName"])

    with Torsion("echo", "--listen", f"tls:0:interface=127.0.0.1:privateKey={pem}") as torsion:
        port = torsion.port()
        assert organisation(port) == "first"
        ca.issue_cert(
            "localhost", organization_name="second"
        ).private_key_and_cert_chain_pem.write_to_path(str(pem))
        torsion.process.send_signal(signal.SIGHUP)
        torsion.wait_for("TLS certificates reloaded")
        assert organisation(port) == "second"
        assert torsion.stop() == 0


def test_systemd_notifications_and_watchdog(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(path)
        notify.settimeout(DEADLINE)
        env = {**ENV, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"}
        with Torsion("echo", "--listen", LOCAL, env=env) as torsion:

            def next_message(*, skip_watchdog: bool = True) -> dict[str, str]:
                while True:
                    fields = dict(
                        line.split("=", 1) for line in notify.recv(4096).decode().splitlines()
                    )
                    if not (skip_watchdog and fields == {"WATCHDOG": "1"}):
                        return fields

            ready = next_message()
            assert ready == {"READY": "1", "MAINPID": str(torsion.process.pid)}
            assert next_message(skip_watchdog=False) == {"WATCHDOG": "1"}
            torsion.process.send_signal(signal.SIGHUP)
            reloading = next_message()
            assert reloading["RELOADING"] == "1"
            assert int(reloading["MONOTONIC_USEC"]) > 0
            assert next_message()["READY"] == "1"
            torsion.process.send_signal(signal.SIGTERM)
            assert next_message() == {"STOPPING": "1"}
            assert torsion.process.wait(DEADLINE) == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="binding below 1024 and changing user need root")
def test_binds_a_privileged_port_as_root_then_runs_as_nobody() -> None:
    port = _free_privileged_port()
    with tempfile.TemporaryDirectory(dir="/tmp") as where:
        os.chmod(where, 0o777)  # nobody reopens the log here on SIGHUP
        _serve_as_nobody(port, Path(where))


def _serve_as_nobody(port: int, tmp_path: Path) -> None:
    log = tmp_path / "echo.log"
    with Torsion(
        "echo",
        "--listen",
        f"tcp:{port}:interface=127.0.0.1",
        "--uid",
        "nobody",
        "--logfile",
        str(log),
    ) as torsion:
        wait_for_log(log, "echo service running")
        assert exchange(port, b"as nobody\n") == b"as nobody\n"
        pid = torsion.process.pid
        assert proc_status(pid, "Uid").split() == ["65534"] * 4
        assert proc_status(pid, "Gid").split() == ["65534"] * 4
        assert "Running as uid 65534, gid 65534" in "\n".join(log_lines(log))
        log.rename(tmp_path / "echo.log.1")
        torsion.process.send_signal(signal.SIGHUP)
        wait_for_log(log, "echo service reloaded")  # reopened as nobody
        assert torsion.stop() == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root may switch to any user")
def test_changing_user_without_root_fails_in_one_line() -> None:
    result = run_torsion("echo", "--listen", LOCAL, "--uid", "0")
    assert result.returncode == 1
    assert one_line(result.stderr).startswith("torsion: cannot switch to uid 0")


def test_an_unknown_user_is_a_usage_error() -> None:
    result = run_torsion("echo", "--listen", LOCAL, "--uid", "no-such-user-here")
    assert result.returncode == 2
    assert one_line(result.stderr) == "torsion: --uid: there is no user 'no-such-user-here'"


def _free_privileged_port() -> int:
    for port in range(1000, 900, -1):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("no free port below 1024")


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["nope"], 2, "torsion: there is no plugin or command 'nope' (see 'torsion --help')"),
        (
            ["echo", "--idle-timeout", "soon"],
            2,
            "torsion echo: argument --idle-timeout: 'soon' is not a number "
            "(see 'torsion echo --help')",
        ),
        (
            ["echo", "--bogus"],
            2,
            "torsion: unrecognized arguments: --bogus (see 'torsion --help')",
        ),
        (
            ["-f", "/no/such/file.toml"],
            2,
            "torsion: cannot read the deployment file /no/such/file.toml: "
            "No such file or directory",
        ),
        (
            ["echo", "--workers", "0"],
            2,
            "torsion echo: argument --workers: must be 1 or more, not 0 "
            "(see 'torsion echo --help')",
        ),
    ],
)
def test_bad_input_is_one_line_and_a_status(args: list[str], status: int, message: str) -> None:
    result = run_torsion(*args)
    assert result.returncode == status
    assert one_line(result.stderr) == message
    assert no_traceback(result.stderr)


def test_no_traceback_when_the_port_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_torsion("echo", "--listen", f"tcp:{port}:interface=127.0.0.1")
    assert result.returncode == 1
    assert one_line(result.stderr) == (
        f"torsion: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
