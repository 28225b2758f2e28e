"""The runner's parts on their own: pidfile, sd_notify, logging, privileges, output lines."""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from pathlib import Path

import pytest

from torsion.application import _logging
from torsion.application._errors import PidfileError, UsageError
from torsion.application._lines import LineSplitter
from torsion.application._logging import JSONFormatter, configure_logging
from torsion.application._pidfile import Pidfile
from torsion.application._privileges import Credentials, drop_privileges, resolve_credentials
from torsion.application._runner import describe_error
from torsion.application._sdnotify import SystemdNotifier, watchdog_interval
from torsion.errors import CannotListenError

# -- pidfile ------------------------------------------------------------------------------


def test_pidfile_written_and_removed_only_while_ours(tmp_path: Path) -> None:
    path = tmp_path / "service.pid"
    pidfile = Pidfile(str(path))
    pidfile.check()
    pidfile.write()
    assert path.read_text() == f"{os.getpid()}\n"
    assert pidfile.read() == os.getpid()
    pidfile.remove()
    assert not path.exists()
    pidfile.write()
    path.write_text("1\n")  # someone else's now
    pidfile.remove()
    assert path.read_text() == "1\n"


def test_pidfile_held_by_a_live_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "held.pid"
    path.write_text("1\n")  # init: always alive
    with pytest.raises(PidfileError, match="is held by running process 1"):
        Pidfile(str(path)).check()
    with pytest.raises(PidfileError, match="is held by running process 1"):
        Pidfile(str(path)).write()


def test_a_stale_pidfile_is_removed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "stale.pid"
    path.write_text("4194304\n")
    Pidfile(str(path)).write()  # replaces it
    assert path.read_text() == f"{os.getpid()}\n"
    assert "Removing the stale pidfile" in caplog.text


@pytest.mark.parametrize("content", ["", "abc\n", "-5\n", "0\n", "1" * 100])
def test_a_pidfile_without_a_process_id_is_left_alone(tmp_path: Path, content: str) -> None:
    path = tmp_path / "odd.pid"
    path.write_text(content)
    with pytest.raises(PidfileError, match="does not hold a process id"):
        Pidfile(str(path)).check()
    assert path.read_text() == content


def test_an_uncreatable_pidfile(tmp_path: Path) -> None:
    with pytest.raises(PidfileError, match=r"cannot create the pidfile .*No such file"):
        Pidfile(str(tmp_path / "no" / "dir.pid")).write()


# -- sd_notify ----------------------------------------------------------------------------


def test_notifier_sends_to_an_abstract_socket_and_leaves_the_environment() -> None:
    name = f"torsion-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        receiver.settimeout(5)
        env = {"NOTIFY_SOCKET": "@" + name}
        notifier = SystemdNotifier(env)
        assert env == {}  # children do not speak for the service
        assert notifier.enabled
        assert notifier.ready(status="serving")
        assert receiver.recv(100) == f"READY=1\nMAINPID={os.getpid()}\nSTATUS=serving".encode()
        assert notifier.stopping()
        assert receiver.recv(100) == b"STOPPING=1"


def test_notifier_without_a_socket_does_nothing(caplog: pytest.LogCaptureFixture) -> None:
    assert not SystemdNotifier({}).ready()
    gone = SystemdNotifier({"NOTIFY_SOCKET": "/nonexistent/notify"})
    assert not gone.watchdog()
    assert not gone.watchdog()
    assert caplog.text.count("Cannot notify systemd") == 1  # logged once


def test_watchdog_interval() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "10000000"}) == 5.0
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}) == 1.0
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({}) is None


# -- logging ------------------------------------------------------------------------------


def test_json_lines_carry_the_exception() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        record = logging.LogRecord("x.y", logging.ERROR, __file__, 1, "failed: %s", ("it",), None)
        record.exc_info = sys.exc_info()
    line = JSONFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "failed: it"
    assert entry["logger"] == "x.y"
    assert entry["level"] == "ERROR"
    assert "ValueError: bad\nvalue" in entry["exception"]


def test_a_log_file_reopens_after_it_was_moved(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    setup = configure_logging(logfile=str(path), level="info")
    try:
        log = logging.getLogger("torsion.test.reopen")
        log.info("before")
        path.rename(tmp_path / "app.log.1")
        log.info("still the old file")
        setup.reopen()
        log.info("after")
    finally:
        setup.close()
    assert (tmp_path / "app.log.1").read_text().splitlines()[-1].endswith("still the old file")
    assert path.read_text().splitlines()[-1].endswith("torsion.test.reopen: after")


def test_syslog_gets_each_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = str(tmp_path / "log")
    monkeypatch.setattr(_logging, "_SYSLOG_SOCKET", fake)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as syslog:
        syslog.bind(fake)
        syslog.settimeout(5)
        setup = configure_logging(logfile=str(tmp_path / "also.log"), syslog=True)
        try:
            logging.getLogger("torsion.test.syslog").warning("to the system log")
        finally:
            setup.close()
        message = syslog.recv(1000).decode()
    # <28>: facility daemon (3), severity warning (4); RFC 3164's priority.
    assert message.startswith("<28>torsion[")
    assert message.rstrip("\0").endswith("WARNING torsion.test.syslog: to the system log")


# -- privileges and error lines -----------------------------------------------------------


def test_resolving_users_and_groups() -> None:
    root = resolve_credentials("root", None)
    assert root == Credentials(0, 0, "root")
    assert resolve_credentials("0", "0") == Credentials(0, 0, "root")
    assert resolve_credentials(None, "65534") == Credentials(None, 65534, None)
    assert resolve_credentials("4000000", None).uid == 4000000  # a number with no entry
    with pytest.raises(UsageError, match="--uid: there is no user 'no-such-user'"):
        resolve_credentials("no-such-user", None)
    with pytest.raises(UsageError, match="--gid: there is no group 'no-such-group'"):
        resolve_credentials(None, "no-such-group")


def test_dropping_to_who_we_are_does_nothing() -> None:
    drop_privileges(Credentials(os.geteuid(), os.getegid()))
    drop_privileges(Credentials(None, None))
    assert os.geteuid() == os.getuid()


def test_errors_are_described_in_one_line() -> None:
    taken = CannotListenError("127.0.0.1", 80, OSError(98, "Address already in use"))
    assert describe_error(taken) == "cannot listen on 127.0.0.1:80: Address already in use"
    missing = FileNotFoundError(2, "No such file or directory", "/etc/x.pem")
    assert describe_error(missing) == "No such file or directory: /etc/x.pem"
    assert describe_error(RuntimeError("two\nlines")) == "RuntimeError: two lines"
    assert describe_error(KeyError()) == "KeyError"


def test_output_lines_are_split_and_bounded() -> None:
    lines: list[str] = []
    splitter = LineSplitter(lines.append, max_line=8)
    splitter.feed(b"one\ntw")
    splitter.feed(b"o\r\nthree-and-more")
    splitter.feed(b"\xff\n")
    splitter.feed(b"tail")
    splitter.flush()
    assert lines == ["one", "two", "three-an", "d-more\ufffd", "tail"]
