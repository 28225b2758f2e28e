"""Transport benchmarks: torsion's TCP server against raw asyncio/uvloop, Twisted and trio.

Usage: .venv/bin/python benchmarks/transports.py [--quick] [--rounds N] [--only NAME,...]
                                                 [--loadgen c|python]

Three measurements, each against every contender's echo server. The servers
(benchmarks/transport_servers.py) run one per child process, pinned to one
CPU; the load generator is another child process, pinned to the other. It
is written in C (benchmarks/transport_loadgen.c, compiled with ``cc`` at the
start of each run) because one written in Python, even on uvloop, spends
about as much CPU per operation as the fastest servers and becomes the
bottleneck; ``--loadgen python`` uses uvloop Protocols instead
(benchmarks/transport_clients.py, which also opens the idle connections).

1. Ping-pong: 50 connections, each sending 64 bytes and waiting for the 64
   back, again and again; round trips per second over a fixed time after a
   warm-up, with the CPU time the server and the load generator used in it.
2. Accept rate: concurrent connectors open a connection, wait for the byte
   the server sends on accepting it, and reset it; cycles per second.
3. Memory per idle connection: the server's resident set size (VmRSS) after
   a garbage collection, before and after 10,000 idle connections are open,
   divided by 10,000 (1,000 more are opened first and held, so that the
   10,000 need fresh memory rather than the start-up's leftover free space).

Contenders run interleaved: in each round every contender gets a fresh
server process and all three measurements, in an order that rotates from
round to round. Figures are the median (and best) over the rounds. The
machine may be shared: each timed measurement waits for other programs to
leave both CPUs idle, and one during which the server or the load generator
still had to wait for its CPU is taken again. See benchmarks/RESULTS.md,
section "Transports", for a recorded run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from _servers import loadavg
from transport_servers import raise_nofile_limit

HERE = Path(__file__).resolve().parent
SERVERS_SCRIPT = HERE / "transport_servers.py"
CLIENTS_SCRIPT = HERE / "transport_clients.py"

# name -> what it is (the server code is in transport_servers.py).
CONTENDERS = {
    "uvloop-raw": "raw asyncio.Protocol on uvloop",
    "asyncio-raw": "raw asyncio.Protocol on the stdlib loop",
    "uvloop-streams": "asyncio streams on uvloop",
    "asyncio-streams": "asyncio streams on the stdlib loop",
    "twisted-epoll": "Twisted, epoll reactor",
    "twisted-asyncio-uvloop": "Twisted, asyncioreactor on uvloop",
    "trio": "trio.serve_tcp",
    "torsion-uvloop": "torsion Protocol, Reactor on uvloop",
    "torsion-asyncio": "torsion Protocol, Reactor on the stdlib loop",
}


# -- the driver ---------------------------------------------------------------------------


class _Child:
    """A child process spoken to in lines, with a timeout on every answer."""

    def __init__(self, argv: list[str], what: str) -> None:
        self.what = what
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr
        )
        self._buffer = b""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, line: str) -> None:
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def read_line(self, timeout: float = 120.0) -> str:
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self.kill()
                raise RuntimeError(f"{self.what}: no answer in {timeout:g}s{self.stderr_tail()}")
            chunk = os.read(fd, 65536)
            if not chunk:
                self.proc.wait()
                raise RuntimeError(
                    f"{self.what} exited ({self.proc.returncode}){self.stderr_tail()}"
                )
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def expect(self, prefix: str, timeout: float = 120.0) -> str:
        line = self.read_line(timeout)
        if not line.startswith(prefix):
            self.kill()
            raise RuntimeError(f"{self.what}: expected {prefix!r}, got {line!r}")
        return line[len(prefix) :].strip()

    def stderr_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def stderr_tail(self) -> str:
        text = self.stderr_text().strip()
        return f"; its stderr ends:\n{text[-2000:]}" if text else ""

    def finish(self, timeout: float = 30.0) -> int:
        """Close its input, wait for it to exit; return its exit status."""
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self.proc.stdout.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        self.kill()
        for f in (self.proc.stdin, self.proc.stdout):
            if f and not f.closed:
                f.close()
        self._stderr.close()


def _rss_kib(pid: int) -> int:
    """The process's resident set size in KiB (VmRSS in /proc/PID/status, proc(5))."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


@dataclass
class Settings:
    rounds: int
    connections: int
    pingpong_warmup: float
    pingpong_seconds: float
    accept_concurrency: int
    accept_warmup: float
    accept_seconds: float
    idle_count: int
    idle_prefill: int
    idle_concurrency: int
    server_cpu: int | None
    client_cpu: int | None
    loadgen: str | None  # the compiled C load generator; None: the uvloop one
    quiet_timeout: float  # see _wait_for_quiet


# A measurement in which the server or the load generator waited for its CPU
# for more than this share of the window was disturbed by another program on
# the machine: it is taken again, up to ATTEMPTS times in all, and the least
# disturbed one is kept (and counted, if it still was).
MAX_WAIT = 0.10
ATTEMPTS = 4
# Before each measurement, wait (up to Settings.quiet_timeout seconds) until
# other programs use less than MAX_BUSY of each of the two CPUs.
MAX_BUSY = 0.10


@dataclass
class Samples:
    """One contender's figures, a list per key, one entry per round."""

    values: dict[str, list[float]] = field(default_factory=dict)
    retried: int = 0
    disturbed: int = 0
    waited_for_quiet: float = 0.0
    stderr: list[str] = field(default_factory=list)

    def add(self, key: str, value: float) -> None:
        self.values.setdefault(key, []).append(value)

    def add_rate(self, kind: str, r: dict[str, float]) -> None:
        """Record a load generator's result for ``kind`` ("pingpong" or "accept")."""
        self.add(kind, r["rate"])
        for key in ("server_cpu", "server_wait", "client_cpu", "client_wait"):
            self.add(f"{kind}_{key}", r[key])
        self.add(f"{kind}_server_us", r["server_cpu"] / r["rate"] * 1e6)
        self.add(f"{kind}_user_us", r["server_user_cpu"] / r["rate"] * 1e6)


def _client(s: Settings, mode: str, port: int, server_pid: int) -> _Child:
    if mode != "idle" and s.loadgen is not None:
        n = s.connections if mode == "pingpong" else s.accept_concurrency
        warmup, seconds = (
            (s.pingpong_warmup, s.pingpong_seconds)
            if mode == "pingpong"
            else (s.accept_warmup, s.accept_seconds)
        )
        argv = [s.loadgen, mode, str(port), str(n), str(warmup), str(seconds), str(server_pid)]
        return _Child(argv, f"load generator ({mode}, C)")
    argv = [
        sys.executable,
        str(CLIENTS_SCRIPT),
        mode,
        "--port",
        str(port),
        "--server-pid",
        str(server_pid),
        "--connections",
        str(s.connections),
        "--count",
        str(s.idle_count),
        "--prefill",
        str(s.idle_prefill),
    ]
    if mode == "pingpong":
        argv += ["--warmup", str(s.pingpong_warmup), "--seconds", str(s.pingpong_seconds)]
    elif mode == "accept":
        argv += ["--warmup", str(s.accept_warmup), "--seconds", str(s.accept_seconds)]
        argv += ["--concurrency", str(s.accept_concurrency)]
    else:
        argv += ["--concurrency", str(s.idle_concurrency)]
    if s.client_cpu is not None:
        argv += ["--cpu", str(s.client_cpu)]
    return _Child(argv, f"load generator ({mode})")


def _run_client(s: Settings, mode: str, port: int, server_pid: int) -> dict:
    child = _client(s, mode, port, server_pid)
    try:
        result = json.loads(child.expect("RESULT "))
        status = child.finish()
        if status != 0:
            raise RuntimeError(f"{child.what} exited with {status}{child.stderr_tail()}")
        return result
    finally:
        child.close()


def _measure_idle(s: Settings, server: _Child, port: int) -> tuple[float, float]:
    """Return (bytes per idle connection, baseline RSS in MiB)."""
    child = _client(s, "idle", port, server.pid)
    try:
        child.expect("READY")
        server.send("gc")
        server.expect("done")
        before = _rss_kib(server.pid)
        child.send("go")
        opened = int(child.expect("OPEN ", timeout=300.0))
        server.send("gc")
        server.expect("done")
        after = _rss_kib(server.pid)
        child.send("close")
        child.expect("RESULT ")
        status = child.finish()
        if status != 0:
            raise RuntimeError(f"{child.what} exited with {status}{child.stderr_tail()}")
    finally:
        child.close()
    return (after - before) * 1024 / opened, before / 1024


def _cpu_times(cpus: set[int]) -> dict[int, tuple[int, int]]:
    """Per CPU: (busy, total) jiffies since boot, from /proc/stat (proc(5))."""
    times = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                ticks = [int(x) for x in fields[:8]]  # user .. steal
                idle = ticks[3] + ticks[4]  # idle, iowait
                times[int(name[3:])] = (sum(ticks) - idle, sum(ticks))
    return times


def _wait_for_quiet(s: Settings, samples: Samples) -> None:
    """Wait until other programs leave both CPUs (nearly) idle; our own children are idle now."""
    cpus = {c for c in (s.server_cpu, s.client_cpu) if c is not None}
    if not cpus or s.quiet_timeout <= 0:
        return
    start = time.monotonic()
    while True:
        before = _cpu_times(cpus)
        time.sleep(0.25)
        after = _cpu_times(cpus)
        busy = max((after[c][0] - before[c][0]) / max(after[c][1] - before[c][1], 1) for c in cpus)
        if busy <= MAX_BUSY or time.monotonic() - start > s.quiet_timeout:
            samples.waited_for_quiet += time.monotonic() - start
            return


def _measure_rate(s: Settings, kind: str, port: int, server_pid: int, samples: Samples) -> None:
    kept: dict[str, float] | None = None
    for attempt in range(ATTEMPTS):
        if attempt:
            samples.retried += 1
        _wait_for_quiet(s, samples)
        r = _run_client(s, kind, port, server_pid)
        r["waited"] = max(r["server_wait"], r["client_wait"])
        if kept is None or r["waited"] < kept["waited"]:
            kept = r
        if r["waited"] <= MAX_WAIT:
            break
    assert kept is not None
    if kept["waited"] > MAX_WAIT:
        samples.disturbed += 1
    samples.add_rate(kind, kept)


def _one_server(name: str, s: Settings, samples: Samples) -> None:
    argv = [sys.executable, str(SERVERS_SCRIPT), name]
    if s.server_cpu is not None:
        argv += ["--cpu", str(s.server_cpu)]
    server = _Child(argv, f"server {name}")
    try:
        port = int(server.expect("PORT ", timeout=60.0))
        per_conn, baseline = _measure_idle(s, server, port)
        samples.add("idle_bytes", per_conn)
        samples.add("baseline_mib", baseline)
        _measure_rate(s, "pingpong", port, server.pid, samples)
        _measure_rate(s, "accept", port, server.pid, samples)
        if server.proc.poll() is not None:
            raise RuntimeError(f"server {name} died{server.stderr_tail()}")
        server.finish()
        text = server.stderr_text().strip()
        if text:
            samples.stderr.append(text)
    finally:
        server.close()


def _pkg_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _torsion_source() -> str:
    """Where the servers import torsion from, and its git commit if it is a checkout."""
    import torsion

    where = Path(torsion.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "--short", "HEAD"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--", "."],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"{where} (not a git checkout)"
    return f"{where} at {commit}" + (" with uncommitted changes" if dirty else "")


# -- report ---------------------------------------------------------------------------------


def _med(xs: list[float]) -> float:
    return statistics.median(xs)


def _print_rates(title: str, kind: str, names: list[str], results: dict[str, Samples]) -> None:
    print(f"\n## {title}")
    print(
        f"{'contender':<45} {'median':>9} {'best':>9} {'srv CPU':>8} {'srv wait':>9}"
        f" {'loadgen CPU':>12} {'srv us/op':>10} {'user us/op':>11}"
    )
    for name in names:
        v = results[name].values

        def med(suffix: str, v: dict[str, list[float]] = v) -> float:
            return _med(v[kind + suffix])

        print(
            f"{CONTENDERS[name]:<45} {med(''):>9,.0f} {max(v[kind]):>9,.0f}"
            f" {med('_server_cpu'):>8.0%} {med('_server_wait'):>9.1%}"
            f" {med('_client_cpu'):>12.0%} {med('_server_us'):>10.2f} {med('_user_us'):>11.2f}"
        )


def _print_tables(names: list[str], results: dict[str, Samples]) -> None:
    _print_rates(
        "1. Ping-pong: 50 connections, 64 bytes each way (round trips/s)",
        "pingpong",
        names,
        results,
    )
    _print_rates(
        "2. Accept rate: connect, read the server's greeting, reset (connections/s)",
        "accept",
        names,
        results,
    )
    print("\n## 3. Memory per idle connection (server RSS growth / connections, bytes)")
    print(f"{'contender':<45} {'median':>9} {'lowest':>9} {'RSS before':>11}")
    for name in names:
        v = results[name].values
        print(
            f"{CONTENDERS[name]:<45} {_med(v['idle_bytes']):>9,.0f} {min(v['idle_bytes']):>9,.0f}"
            f" {_med(v['baseline_mib']):>7.1f} MiB"
        )
    print(
        "\nsrv CPU, loadgen CPU: CPU time used in the timed window, as a share of it (from"
        " 4 ms ticks: may read a little over 100%). srv wait: time the server was runnable"
        " but waited for its CPU (another program took it). srv us/op: the server's CPU"
        " time per round trip or per accepted connection; user us/op: the part of it in"
        " user mode, outside the kernel, i.e. the framework's own cost (tick-sampled:"
        " about +-10% per round)."
    )
    retried = sum(results[n].retried for n in names)
    disturbed = sum(results[n].disturbed for n in names)
    waited = sum(results[n].waited_for_quiet for n in names)
    print(
        f"Other programs on the machine: {waited:.0f}s spent waiting for them to leave both"
        f" CPUs {1 - MAX_BUSY:.0%} idle before measuring; measurements taken again because"
        f" the server or the load generator waited for its CPU more than {MAX_WAIT:.0%} of"
        f" the window: {retried}; kept although still disturbed after {ATTEMPTS}"
        f" attempts: {disturbed}."
    )


def _ratio(
    label: str,
    median: float,
    best: float,
    goal: float | None = None,
    at_most: bool = False,
) -> None:
    text = f"  {label:<62} {median:>6.2f}x (best-of-rounds {best:.2f}x)"
    if goal is not None:
        met = median <= goal if at_most else median >= goal
        sign = "<=" if at_most else ">="
        text += f"  goal {sign} {goal:.2f}x: {'met' if met else 'NOT met'} (on median)"
    print(text)


TU, TA, RU, RA, TW = (
    "torsion-uvloop",
    "torsion-asyncio",
    "uvloop-raw",
    "asyncio-raw",
    "twisted-epoll",
)

# (key, numerator, denominator, label, goal). A key ending in "_us" or
# "_bytes" is a cost (lower is better; a goal is a ceiling) unless the label
# says "capacity": then the ratio is inverted (1 / cost: what the server
# could do with the whole CPU, whether or not the load generator kept up).
GOALS = [
    ("pingpong", TU, RU, "ping-pong round trips/s: torsion on uvloop / raw uvloop", 0.9),
    ("pingpong_server_us", TU, RU, "  capacity (1 / server CPU per round trip)", 0.9),
    ("pingpong", TA, RA, "ping-pong round trips/s: torsion on stdlib loop / raw asyncio", 0.9),
    ("pingpong_server_us", TA, RA, "  capacity (1 / server CPU per round trip)", 0.9),
    ("accept", TU, RU, "accept rate: torsion on uvloop / raw uvloop", 0.9),
    ("accept_server_us", TU, RU, "  capacity (1 / server CPU per accept)", 0.9),
    ("idle_bytes", TU, RU, "memory per idle connection: torsion on uvloop / raw", 1.3),
]
MORE_RATIOS = [
    ("pingpong_user_us", TU, RU, "ping-pong, user-mode CPU per round trip: torsion/uvloop", None),
    ("pingpong_user_us", TA, RA, "ping-pong, user-mode CPU per round trip: torsion/stdlib", None),
    ("accept_user_us", TU, RU, "accept, user-mode CPU per connection: torsion/uvloop", None),
    ("accept_user_us", TA, RA, "accept, user-mode CPU per connection: torsion/stdlib", None),
    ("accept", TA, RA, "accept rate: torsion on stdlib loop / raw asyncio", None),
    ("accept_server_us", TA, RA, "  capacity (1 / server CPU per accept)", None),
    ("idle_bytes", TA, RA, "memory per idle connection: torsion on stdlib loop / raw", None),
    ("pingpong", TU, TW, "ping-pong: torsion on uvloop / Twisted epoll", None),
    ("pingpong", RA, RU, "ping-pong: raw asyncio / raw uvloop (issue: ~0.77x)", None),
    ("pingpong", TW, RU, "ping-pong: Twisted epoll / raw uvloop (issue: ~0.29x)", None),
]
LOWER_IS_BETTER = ("_us", "_bytes")


def _print_ratios(results: dict[str, Samples]) -> None:
    more = "More ratios (user-mode CPU: torsion / the raw Protocol on the same loop)"
    for title, specs in (("Goals (judged on medians)", GOALS), (more, MORE_RATIOS)):
        print(f"\n## {title}")
        for key, num, den, label, goal in specs:
            if num not in results or den not in results:
                continue
            a, b = results[num].values[key], results[den].values[key]
            med, best = _med(a) / _med(b), (min(a) / min(b), max(a) / max(b))
            if "capacity" in label:
                _ratio(label, 1 / med, 1 / best[0], goal)
            elif key.endswith(LOWER_IS_BETTER):
                _ratio(label, med, best[0], goal, at_most=True)
            else:
                _ratio(label, med, best[1], goal)


def _build_loadgen(directory: str) -> str | None:
    """Compile transport_loadgen.c; return the program, or None without a C compiler."""
    source = HERE / "transport_loadgen.c"
    program = os.path.join(directory, "transport_loadgen")
    compiler = os.environ.get("CC", "cc")
    try:
        subprocess.run(
            [compiler, "-O2", "-Wall", "-Werror", "-o", program, str(source)],
            check=True,
            capture_output=True,
            text=True,
        )
    except FileNotFoundError:
        return None
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"cannot compile {source.name}:\n{exc.stderr}") from exc
    return program


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument(
        "--only", default=None, help="comma-separated contenders: " + ", ".join(CONTENDERS)
    )
    parser.add_argument(
        "--loadgen",
        choices=["c", "python"],
        default="c",
        help="ping-pong and accept load generator: C and epoll (default; falls back to"
        " python without a C compiler) or Python on uvloop",
    )
    args = parser.parse_args()
    names = list(CONTENDERS)
    if args.only:
        names = [n.strip() for n in args.only.split(",")]
        unknown = [n for n in names if n not in CONTENDERS]
        if unknown:
            parser.error(f"unknown contenders {unknown}; choose from {', '.join(CONTENDERS)}")
    with tempfile.TemporaryDirectory() as directory:
        loadgen = _build_loadgen(directory) if args.loadgen == "c" else None
        run(args, names, loadgen)


def run(args: argparse.Namespace, names: list[str], loadgen: str | None) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    quick = args.quick
    s = Settings(
        rounds=args.rounds or (1 if quick else 5),
        connections=50,
        pingpong_warmup=0.2 if quick else 0.5,
        pingpong_seconds=0.3 if quick else 2.0,
        accept_concurrency=32,
        accept_warmup=0.1 if quick else 0.5,
        accept_seconds=0.3 if quick else 1.5,
        idle_count=2_000 if quick else 10_000,
        idle_prefill=1_000,
        idle_concurrency=50,
        server_cpu=server_cpu,
        client_cpu=client_cpu,
        loadgen=loadgen,
        quiet_timeout=0.0 if quick else 30.0,
    )
    if client_cpu is not None:
        # The driver and every load generator it starts stay off the server's CPU.
        os.sched_setaffinity(0, {client_cpu})
    files = raise_nofile_limit()
    if files < s.idle_count + s.idle_prefill + 100:
        raise SystemExit(
            f"{s.idle_count + s.idle_prefill:,} idle connections need as many open files in"
            f" the server and in the load generator; the hard limit is {files:,}"
        )

    print("# torsion transport benchmarks" + (" (--quick)" if quick else ""))
    print(f"Python {platform.python_version()} ({platform.python_implementation()})")
    print(
        f"uvloop {_pkg_version('uvloop')}, twisted {_pkg_version('twisted')},"
        f" trio {_pkg_version('trio')}, torsion {_pkg_version('torsion')}"
    )
    print(f"torsion imported from {_torsion_source()}")
    print(f"CPU count: {os.cpu_count()}  platform: {platform.platform()}")
    if server_cpu is None:
        print("WARNING: fewer than 2 CPUs available: server and load generator are not pinned")
    else:
        print(f"servers pinned to CPU {server_cpu}, load generators to CPU {client_cpu}")
    if loadgen is None:
        print(
            "load generator: Python on uvloop"
            + (" (no C compiler found)" if args.loadgen == "c" else "")
        )
    else:
        print("load generator: C with epoll (transport_loadgen.c); idle connections: uvloop")
    print(
        f"rounds: {s.rounds}, contenders interleaved (order rotates), a fresh server per"
        f" contender per round; ping-pong {s.connections} connections x 64 B,"
        f" {s.pingpong_warmup:g}s warm-up + {s.pingpong_seconds:g}s; accept"
        f" {s.accept_concurrency} connectors, {s.accept_warmup:g}s + {s.accept_seconds:g}s;"
        f" idle {s.idle_count:,} connections (after {s.idle_prefill:,} held open)"
    )
    print(f"load average at start: {loadavg()}", flush=True)

    results = {name: Samples() for name in names}
    started = time.perf_counter()
    for r in range(s.rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            _one_server(name, s, results[name])
        print(f"round {r + 1}/{s.rounds} done ({time.perf_counter() - started:.0f}s)", flush=True)
    print(f"load average at end: {loadavg()}")

    _print_tables(names, results)
    _print_ratios(results)
    for name in names:
        if results[name].stderr:
            print(f"\nWARNING: server {name} wrote to stderr:\n{results[name].stderr[0][-2000:]}")


if __name__ == "__main__":
    main()
