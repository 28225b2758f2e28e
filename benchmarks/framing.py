"""Framing benchmark: lines per second through torsion's and Twisted's line receivers.

Usage: .venv/bin/python benchmarks/framing.py [--quick] [--rounds N] [--lines N]

N lines of 64 bytes (62 and CRLF) are cut into reads of 4 KiB, 64 KiB and
256 KiB and fed to each contender's ``data_received``, whose line callback does
nothing. The floor is the least any line framing in Python can do: split each
read with ``bytes.split``, carry the tail over to the next read, call a no-op
per line. The stream starts with a 7-byte line so that reads cut lines in two.

The mode-switching workload is the same stream with, after every 1000th line,
an empty line and 100 bytes of raw data (CRLFs among them) that the protocol
takes in raw mode before switching back to lines with what is left over, as
an HTTP/1.1 server reads a body after its headers. The protocols that switch
test each line for emptiness, so a second floor does the same in its
callback, and the mode-switching goal is judged against that one. A busier
workload switches after every 10th line (for information: a protocol that
switches often must not pay for the size of the read at each switch).

Contenders are interleaved and their order rotates every round (one untimed
warm-up round first); each figure is the median (and best) over the timed
rounds, with the garbage collector off while timing. Before timing, every
contender is run once with counting callbacks to check it sees every line and
raw byte. torsion's protocols sit on a real uvloop transport over a socket
pair (they ask its ``is_closing()`` after each line, to deliver nothing after
a callback closed the connection) unless marked "stdlib-loop transport";
Twisted's on its ``StringTransport`` (it checks an attribute per line).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import socket
import statistics
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from time import perf_counter

import uvloop
from twisted.internet.testing import StringTransport as TwistedStringTransport
from twisted.protocols import basic as twisted_basic

from torsion.protocols._lines import LineOnlyReceiver, LineReceiver

LINE = b"x" * 62
# Lines between switches to raw mode: the workload, and a busy one.
RAW_EVERY = 1000
RAW_OFTEN = 10
RAW_BODY = (b"raw\r\n" * 20)[:100]
CHUNK_SIZES = [4 * 1024, 64 * 1024, 256 * 1024]


def make_stream(n: int, *, every: int = 0) -> tuple[bytes, int, int]:
    """Return the stream, how many lines it holds and how many raw bytes."""
    parts = [b"hello\r\n"]
    lines, raw = 1, 0
    for i in range(1, n + 1):
        parts.append(LINE + b"\r\n")
        lines += 1
        if every and i % every == 0:
            parts.append(b"\r\n" + RAW_BODY)
            lines += 1
            raw += len(RAW_BODY)
    return b"".join(parts), lines, raw


def cut(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


# -- contenders: each returns a function of the reads that times feeding them ----------


def _noop(line):
    pass


def _empty_test(line):
    if not line:
        pass


def floor_split(counting: list[int] | None = None, on_line=_noop):
    def run(chunks: list[bytes]) -> float:
        nonlocal on_line
        if counting is not None:
            on_line = lambda line: counting.append(1)  # noqa: E731
        t0 = perf_counter()
        tail = b""
        for data in chunks:
            if tail:
                data = tail + data
            lines = data.split(b"\r\n")
            tail = lines.pop()
            for line in lines:
                on_line(line)
        return perf_counter() - t0

    return run


class TorsionLines(LineReceiver):
    def line_received(self, line):
        pass


class TorsionLinesOnly(LineOnlyReceiver):
    def line_received(self, line):
        pass


class TorsionSwitching(LineReceiver):
    remaining = 0

    def line_received(self, line):
        if not line:
            self.remaining = len(RAW_BODY)
            self.set_raw_mode()

    def raw_data_received(self, data):
        body = data[: self.remaining]
        self.remaining -= len(body)
        if not self.remaining:
            self.set_line_mode(data[len(body) :])


class TwistedLines(twisted_basic.LineReceiver):
    def lineReceived(self, line):  # noqa: N802 - Twisted's name
        pass


class TwistedLinesOnly(twisted_basic.LineOnlyReceiver):
    def lineReceived(self, line):  # noqa: N802 - Twisted's name
        pass


class TwistedSwitching(twisted_basic.LineReceiver):
    remaining = 0

    def lineReceived(self, line):  # noqa: N802 - Twisted's name
        if not line:
            self.remaining = len(RAW_BODY)
            self.setRawMode()

    def rawDataReceived(self, data):  # noqa: N802 - Twisted's name
        body = data[: self.remaining]
        self.remaining -= len(body)
        if not self.remaining:
            self.setLineMode(data[len(body) :])


def _counting(cls, counts: dict[str, int], *, twisted: bool):
    """A subclass of ``cls`` whose callbacks also count lines and raw bytes."""
    line_name, raw_name = (
        ("lineReceived", "rawDataReceived")
        if twisted
        else (
            "line_received",
            "raw_data_received",
        )
    )
    base_line = getattr(cls, line_name)
    base_raw = getattr(cls, raw_name, None)

    def on_line(self, line):
        counts["lines"] += 1
        base_line(self, line)

    namespace = {line_name: on_line}
    if base_raw is not None:

        def on_raw(self, data):
            counts["raw"] += min(len(data), self.remaining)
            base_raw(self, data)

        namespace[raw_name] = on_raw
    return type("Counting" + cls.__name__, (cls,), namespace)


def torsion_contender(cls, transport):
    def run(chunks: list[bytes]) -> float:
        protocol = cls()
        protocol.connection_made(transport)
        feed = protocol.data_received
        t0 = perf_counter()
        for data in chunks:
            feed(data)
        return perf_counter() - t0

    return run


def twisted_contender(cls):
    def run(chunks: list[bytes]) -> float:
        protocol = cls()
        protocol.makeConnection(TwistedStringTransport())
        feed = protocol.dataReceived
        t0 = perf_counter()
        for data in chunks:
            feed(data)
        return perf_counter() - t0

    return run


# -- harness --------------------------------------------------------------------------


def run_rounds(contenders: dict[str, tuple[Callable[[list[bytes]], float], list[bytes]]], rounds):
    names = list(contenders)
    for name in names:  # warm-up, untimed
        run, chunks = contenders[name]
        run(chunks)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            run, chunks = contenders[name]
            gc.collect()
            gc.disable()
            try:
                seconds[name].append(run(chunks))
            finally:
                gc.enable()
    return seconds


def check(name: str, run, chunks: list[bytes], counts: dict[str, int], lines: int, raw: int):
    run(chunks)
    if counts["lines"] != lines or counts["raw"] != raw:
        raise SystemExit(
            f"{name} saw {counts['lines']} lines and {counts['raw']} raw bytes, "
            f"not {lines} and {raw}"
        )


def _pkg_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fast smoke run")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--lines", type=int, default=None, help="lines per run")
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 9)
    n = args.lines or (20_000 if args.quick else 200_000)

    uv_loop = uvloop.new_event_loop()
    std_loop = asyncio.new_event_loop()
    sockets = []
    transports = {}
    for name, loop in (("uvloop", uv_loop), ("stdlib", std_loop)):
        ours, theirs = socket.socketpair()
        sockets.append(theirs)
        transport, _ = loop.run_until_complete(loop.create_connection(asyncio.Protocol, sock=ours))
        transports[name] = transport

    print("# torsion framing benchmark" + (" (--quick)" if args.quick else ""))
    print(f"Python {platform.python_version()} ({platform.python_implementation()})")
    print(f"uvloop {_pkg_version('uvloop')}, twisted {_pkg_version('twisted')}")
    print(f"CPU count: {os.cpu_count()}  platform: {platform.platform()}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"{n:,} lines of 64 bytes per run; {rounds} timed rounds (+1 warm-up), "
        "contenders interleaved, GC off while timed"
    )

    plain, plain_lines, _ = make_stream(n)
    switching, switching_lines, switching_raw = make_stream(n, every=RAW_EVERY)
    busy, busy_lines, busy_raw = make_stream(n, every=RAW_OFTEN)
    floor = "floor"
    floor_test = "floor, callback tests for an empty line"
    goals = {
        "torsion LineReceiver": floor,
        "torsion LineOnlyReceiver": floor,
        "torsion LineReceiver, mode switching": floor_test,
    }
    for size in CHUNK_SIZES:
        plain_chunks = cut(plain, size)
        switching_chunks = cut(switching, size)
        busy_chunks = cut(busy, size)
        # name -> (what makes the timed function, the reads, the stream's lines and raw bytes)
        table = {
            floor: ("floor", _noop, plain_chunks, plain_lines, 0),
            floor_test: ("floor", _empty_test, plain_chunks, plain_lines, 0),
            "torsion LineReceiver": ("uvloop", TorsionLines, plain_chunks, plain_lines, 0),
            "torsion LineReceiver, stdlib-loop transport": (
                "stdlib",
                TorsionLines,
                plain_chunks,
                plain_lines,
                0,
            ),
            "torsion LineOnlyReceiver": ("uvloop", TorsionLinesOnly, plain_chunks, plain_lines, 0),
            "torsion LineReceiver, mode switching": (
                "uvloop",
                TorsionSwitching,
                switching_chunks,
                switching_lines,
                switching_raw,
            ),
            "twisted LineReceiver": ("twisted", TwistedLines, plain_chunks, plain_lines, 0),
            "twisted LineOnlyReceiver": (
                "twisted",
                TwistedLinesOnly,
                plain_chunks,
                plain_lines,
                0,
            ),
            "twisted LineReceiver, mode switching": (
                "twisted",
                TwistedSwitching,
                switching_chunks,
                switching_lines,
                switching_raw,
            ),
            "torsion LineReceiver, switching every 10": (
                "uvloop",
                TorsionSwitching,
                busy_chunks,
                busy_lines,
                busy_raw,
            ),
            "twisted LineReceiver, switching every 10": (
                "twisted",
                TwistedSwitching,
                busy_chunks,
                busy_lines,
                busy_raw,
            ),
        }
        contenders = {}
        expected_lines = {}
        for name, (kind, what, chunks, lines, raw) in table.items():
            expected_lines[name] = lines
            if kind == "floor":
                seen: list[int] = []
                floor_split(seen)(chunks)
                if len(seen) != lines:
                    raise SystemExit(f"the floor saw {len(seen)} lines, not {lines}")
                contenders[name] = (floor_split(on_line=what), chunks)
                continue
            counts = {"lines": 0, "raw": 0}
            counting = _counting(what, counts, twisted=kind == "twisted")
            if kind == "twisted":
                check(name, twisted_contender(counting), chunks, counts, lines, raw)
                contenders[name] = (twisted_contender(what), chunks)
            else:
                transport = transports[kind]
                check(name, torsion_contender(counting, transport), chunks, counts, lines, raw)
                contenders[name] = (torsion_contender(what, transport), chunks)

        seconds = run_rounds(contenders, rounds)
        rate = {name: expected_lines[name] / statistics.median(s) for name, s in seconds.items()}
        best = {name: expected_lines[name] / min(s) for name, s in seconds.items()}
        print(f"\n## reads of {size // 1024} KiB  [{len(plain_chunks):,} reads]")
        print(
            f"{'contender':<44} {'median Mlines/s':>15} {'best':>7} "
            f"{'/ floor':>8} {'best / floor':>13}"
        )
        for name in seconds:
            print(
                f"{name:<44} {rate[name] / 1e6:>15.2f} {best[name] / 1e6:>7.2f} "
                f"{rate[name] / rate[floor]:>7.2f}x {best[name] / best[floor]:>12.2f}x"
            )
        for name, against in goals.items():
            ratio = rate[name] / rate[against]
            verdict = "met" if ratio >= 0.7 else "NOT met"
            print(
                f"  {name} / {against.partition(':')[0]}: {ratio:.2f}x  goal >= 0.70x: {verdict}"
            )
        for ours, theirs in (
            ("torsion LineReceiver", "twisted LineReceiver"),
            ("torsion LineOnlyReceiver", "twisted LineOnlyReceiver"),
            ("torsion LineReceiver, mode switching", "twisted LineReceiver, mode switching"),
            (
                "torsion LineReceiver, switching every 10",
                "twisted LineReceiver, switching every 10",
            ),
        ):
            print(f"  {ours} / {theirs}: {rate[ours] / rate[theirs]:.2f}x")

    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for transport in transports.values():
        transport.close()
    for loop in (uv_loop, std_loop):
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
    for sock in sockets:
        sock.close()


if __name__ == "__main__":
    main()
