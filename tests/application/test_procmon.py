"""``ProcessMonitor`` on a memory reactor, and ``torsion procmon`` as an operator runs it."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import pytest
from _runner_helpers import Torsion, one_line, process_gone, run_torsion, wait_until

from torsion.application._procmon import ManagedProcess, ProcessMonitor, parse_process
from torsion.defer import CancelledError
from torsion.testing import MemoryReactor, assert_no_result, failure_result_of, success_result_of

TERM, KILL, HUP = int(signal.SIGTERM), int(signal.SIGKILL), int(signal.SIGHUP)


def monitor_with(reactor: MemoryReactor, *names: str, **settings: float) -> ProcessMonitor:
    monitor = ProcessMonitor(reactor, **settings)
    for name in names:
        monitor.add_process(ManagedProcess(name=name, args=(f"/usr/bin/{name}", "--flag")))
    return monitor


def test_starts_every_process_and_logs_its_output_line_by_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    reactor = MemoryReactor()
    monitor = monitor_with(reactor, "web", "worker")
    monitor.start_service()
    assert [call.args for call in reactor.processes] == [
        ["/usr/bin/web", "--flag"],
        ["/usr/bin/worker", "--flag"],
    ]
    child = reactor.processes[0].transport
    assert 0 in child.closed_fds  # standard input: end of file at once
    child.child_writes(1, b"listening\nhalf a ")
    child.child_writes(1, b"line\npartial")
    child.child_writes(2, b"warning: low disk\n")
    child.child_exits(0)  # the partial line is logged as the output ends
    pid = child.pid
    lines = [r.getMessage() for r in caplog.records if r.name.endswith("_procmon")]
    assert f"web[{pid}]: listening" in lines
    assert f"web[{pid}]: half a line" in lines
    assert f"web[{pid}]: partial" in lines
    assert f"web[{pid}]: warning: low disk" in lines


def test_a_process_that_keeps_dying_young_waits_longer_each_time() -> None:
    reactor = MemoryReactor()
    monitor = monitor_with(
        reactor, "flaky", min_restart_delay=1, max_restart_delay=4, threshold=10
    )
    monitor.start_service()
    delays = []
    for _ in range(5):
        reactor.processes[-1].transport.child_exits(1)
        spawned = len(reactor.processes)
        waited = 0.0
        while len(reactor.processes) == spawned:
            reactor.advance(0.5)
            waited += 0.5
        delays.append(waited)
    assert delays == [1, 2, 4, 4, 4]
    # One that ran past the threshold is back after the shortest delay again.
    reactor.advance(11)
    reactor.processes[-1].transport.child_exits(1)
    reactor.advance(1)
    assert len(reactor.processes) == 7
    stopped = monitor.stop_service()
    reactor.processes[-1].transport.child_killed("TERM")
    success_result_of(stopped)


def test_stop_terminates_then_kills_and_restarts_nothing() -> None:
    reactor = MemoryReactor()
    monitor = monitor_with(reactor, "stubborn", "polite", kill_time=5)
    monitor.start_service()
    stubborn, polite = (call.transport for call in reactor.processes)
    stopped = monitor.stop_service()
    assert stubborn.signals == [TERM]
    assert polite.signals == [TERM]
    polite.child_killed("TERM")
    reactor.advance(4.9)
    assert_no_result(stopped)
    reactor.advance(0.1)
    assert stubborn.signals == [TERM, KILL]
    stubborn.child_killed("KILL")
    success_result_of(stopped)
    reactor.advance(100)
    assert len(reactor.processes) == 2  # nothing restarted
    assert reactor.get_delayed_calls() == []


def test_a_hurried_stop_kills_at_once() -> None:
    reactor = MemoryReactor()
    monitor = monitor_with(reactor, "slow")
    monitor.start_service()
    child = reactor.processes[0].transport
    stopped = monitor.stop_service()
    stopped.cancel()
    failure_result_of(stopped, CancelledError)
    assert child.signals == [TERM, KILL]
    child.child_killed("KILL")
    assert reactor.get_delayed_calls() == []


def test_reload_passes_sighup_on() -> None:
    reactor = MemoryReactor()
    monitor = monitor_with(reactor, "daemon")
    monitor.start_service()
    monitor.reload_service()
    assert reactor.processes[0].transport.signals == [HUP]


def test_processes_added_and_removed_while_running() -> None:
    reactor = MemoryReactor()
    monitor = monitor_with(reactor)
    monitor.start_service()
    monitor.add_process(ManagedProcess(name="late", args=("late",), user="nobody"))
    [call] = reactor.processes
    assert call.uid == "nobody"
    assert monitor.pid("late") == call.transport.pid
    with pytest.raises(ValueError, match="is managed already"):
        monitor.add_process(ManagedProcess(name="late", args=("other",)))
    removed = monitor.remove_process("late")
    assert call.transport.signals == [TERM]
    call.transport.child_killed("TERM")
    success_result_of(removed)
    assert monitor.processes == {}
    reactor.advance(100)
    assert len(reactor.processes) == 1


def test_a_process_that_cannot_start_is_retried(caplog: pytest.LogCaptureFixture) -> None:
    reactor = MemoryReactor(start_processes=False)
    monitor = monitor_with(reactor, "missing", min_restart_delay=2)
    monitor.start_service()
    reactor.processes[0].fail()
    assert "Cannot start missing" in caplog.text
    reactor.advance(2)
    assert len(reactor.processes) == 2
    reactor.processes[1].start()
    stopped = monitor.stop_service()
    reactor.processes[1].transport.child_killed("TERM")
    success_result_of(stopped)


@pytest.mark.parametrize(
    ("text", "name", "args"),
    [
        ("sleep 30", None, ["sleep", "30"]),
        ("web=/usr/bin/web --port 80", "web", ["/usr/bin/web", "--port", "80"]),
        ("sh -c 'echo a=b; exit 1'", None, ["sh", "-c", "echo a=b; exit 1"]),
        ('job.2="/opt/my job" -v', "job.2", ["/opt/my job", "-v"]),
    ],
)
def test_parse_process(text: str, name: str | None, args: list[str]) -> None:
    assert parse_process(text) == (name, args)


@pytest.mark.parametrize("text", ["", "name=", "sh -c 'unclosed"])
def test_parse_process_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="--process"):
        parse_process(text)


# -- torsion procmon ----------------------------------------------------------------------


def test_procmon_restarts_a_killed_process_and_stops_them_all(tmp_path: Path) -> None:
    deployment = tmp_path / "procmon.toml"
    made = run_torsion(
        "mktap",
        "procmon",
        "--process",
        "sleeper=sleep 60",
        "--process",
        "sh -c 'echo hello from sh; exec sleep 60'",
        "--min-restart-delay",
        "0.1",
        "-o",
        str(deployment),
    )
    assert made.returncode == 0, made.stderr
    assert 'process = ["sleeper=sleep 60", ' in deployment.read_text()
    with Torsion("-f", str(deployment)) as torsion:
        pid = int(torsion.wait_for(r"sleeper started \(pid (\d+)\): sleep 60").group(1))
        torsion.wait_for(r"sh\[\d+\]: hello from sh$")
        os.kill(pid, signal.SIGKILL)
        torsion.wait_for(rf"sleeper \(pid {pid}\) terminated by SIGKILL after .*; restarting")
        again = int(torsion.wait_for(r"sleeper started \(pid (\d+)\)").group(1))
        assert again != pid
        assert torsion.stop() == 0
        wait_until(lambda: process_gone(again), "the process to be stopped")


def test_procmon_without_processes_or_with_a_missing_program() -> None:
    result = run_torsion("procmon")
    assert result.returncode == 2
    assert one_line(result.stderr) == "torsion: procmon: give at least one --process"
    result = run_torsion("procmon", "--process", "no-such-program-here --flag")
    assert result.returncode == 2
    assert (
        one_line(result.stderr) == "torsion: procmon: there is no program 'no-such-program-here'"
    )
