"""Running ``torsion`` as an operator does, and waiting for what it does, with deadlines."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

TORSION = [sys.executable, "-m", "torsion"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
ENV.pop("NOTIFY_SOCKET", None)

# Only a broken test waits this long.
DEADLINE = 15.0


def wait_until(predicate: Callable[[], T], what: str, timeout: float = DEADLINE) -> T:
    """Poll ``predicate`` until it returns something true, failing after ``timeout``."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


def run_torsion(
    *args: str, timeout: float = 30, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run ``torsion ARGS`` to completion."""
    kwargs.setdefault("env", ENV)
    return subprocess.run(
        [*TORSION, *args], capture_output=True, text=True, timeout=timeout, **kwargs
    )


class Torsion:
    """A ``torsion`` command running in the background, its standard error read as it comes."""

    def __init__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        command: Sequence[str] = TORSION,
    ):
        self.process = subprocess.Popen(
            [*command, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env if env is not None else ENV,
            cwd=cwd,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pattern: str, timeout: float = DEADLINE) -> re.Match[str]:
        """Wait for a line of standard error matching ``pattern``."""
        end = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r}; saw {self.seen}") from None
            if line is None:
                self.lines.put(None)
                raise AssertionError(f"exited before {pattern!r}; saw {self.seen}")
            self.seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found

    def port(self, timeout: float = DEADLINE) -> int:
        """Wait for the first "listening on 127.0.0.1:PORT" line; return PORT."""
        return int(self.wait_for(r"listening on 127\.0\.0\.1:(\d+)", timeout).group(1))

    def rest(self) -> list[str]:
        """Every line after those seen so far, once the process has ended."""
        self._reader.join(DEADLINE)
        rest = []
        while True:
            line = self.lines.get_nowait()
            if line is None:
                break
            rest.append(line)
        self.seen += rest
        return rest

    def stop(self, sig: int = signal.SIGTERM, timeout: float = DEADLINE) -> int:
        """Send ``sig`` and wait for the exit status."""
        self.process.send_signal(sig)
        return self.process.wait(timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(DEADLINE)
        self._reader.join(DEADLINE)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> Torsion:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def log_lines(path: Path) -> list[str]:
    """The lines of a log file (none if it does not exist yet)."""
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def wait_for_log(path: Path, pattern: str, timeout: float = DEADLINE) -> re.Match[str]:
    """Wait for a line matching ``pattern`` in the log file at ``path``."""

    def found() -> re.Match[str] | None:
        for line in log_lines(path):
            match = re.search(pattern, line)
            if match:
                return match
        return None

    return wait_until(found, f"{pattern!r} in {path}", timeout)


def exchange(port: int, data: bytes, *, host: str = "127.0.0.1") -> bytes:
    """Send ``data``, half-close, and return everything the server sent back."""
    with socket.create_connection((host, port), timeout=DEADLINE) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        return read_all(sock)


def read_all(sock: socket.socket) -> bytes:
    received = bytearray()
    while chunk := sock.recv(65536):
        received += chunk
    return bytes(received)


def process_gone(pid: int) -> bool:
    """Whether ``pid`` no longer runs (a zombie of someone else's counts as gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return any(line.startswith("State:\tZ") for line in f)
    except FileNotFoundError:
        return True


def proc_status(pid: int, field: str) -> str:
    """A field of /proc/PID/status ("Uid", "Umask"...)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return line.split(":", 1)[1].strip()
    raise KeyError(field)


def no_traceback(text: str) -> bool:
    return "Traceback" not in text


def one_line(text: str) -> str:
    """The only line of ``text`` (failing if there are more)."""
    lines = text.strip("\n").splitlines()
    assert len(lines) == 1, f"expected one line, got: {text!r}"
    return lines[0]


def args_with(base: Sequence[str], *more: str) -> list[str]:
    return [*base, *more]
