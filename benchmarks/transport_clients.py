"""The Python load generator of benchmarks/transports.py, on uvloop: one child process per run.

Usage: python benchmarks/transport_clients.py pingpong|accept|idle --port PORT
    --server-pid PID [--connections N] [--concurrency N] [--count N]
    [--prefill N] [--warmup S] [--seconds S] [--cpu N]

pingpong and accept do what transport_loadgen.c does (see there), with
uvloop Protocols and sockets instead of C: ``transports.py --loadgen
python`` uses them; they cost about as much CPU per operation as the
fastest servers, so they measure the load generator as much as the server.
idle opens the idle connections of the memory measurement in every run:
it holds ``--prefill`` connections, prints READY and waits for a line "go"
on its input, opens ``--count`` more, prints ``OPEN n`` and waits for
"close", then resets them all. Each mode ends by printing ``RESULT`` and a
JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import struct
import sys
import time

from transport_servers import GREETING, HOST, raise_nofile_limit

PAYLOAD = b"x" * 64
# SO_LINGER on with a zero timeout: close() sends a reset, so that no
# connection lingers in TIME_WAIT and the client's ephemeral ports (about
# 28,000 by default) never run out however many connections a run makes.
LINGER_RESET = struct.pack("ii", 1, 0)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU time of a whole process, from /proc/PID/stat (proc(5))."""
    with open(f"/proc/{pid}/stat") as f:
        # Fields after the command name, which may contain spaces and ")".
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK  # utime, stime: fields 14, 15


def _run_queue_wait(pid: int) -> float:
    """Seconds the main thread waited for a CPU while runnable (/proc/PID/schedstat)."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError):
        return 0.0  # the kernel keeps no scheduler statistics


def _reset_close(sock) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
    sock.close()


class _Window:
    """Measures wall time, and both processes' CPU time and wait for a CPU, over a window."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.own0 = time.process_time()
        self.user0, self.system0 = _cpu_seconds(self.server_pid)
        self.wait0 = _run_queue_wait(self.server_pid)
        self.own_wait0 = _run_queue_wait(os.getpid())

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self.t0
        own = time.process_time() - self.own0
        user, system = _cpu_seconds(self.server_pid)
        user -= self.user0
        system -= self.system0
        return {
            "seconds": wall,
            "server_cpu": (user + system) / wall,
            "server_user_cpu": user / wall,
            "server_wait": (_run_queue_wait(self.server_pid) - self.wait0) / wall,
            "client_cpu": own / wall,
            "client_wait": (_run_queue_wait(os.getpid()) - self.own_wait0) / wall,
        }


class _PingPong(asyncio.Protocol):
    """One connection of the ping-pong: 64 bytes out, wait for 64 back, repeat."""

    __slots__ = ("done", "lost", "pending", "transport")

    def __init__(self) -> None:
        self.done = 0  # round trips completed; summed over connections when sampled
        self.pending = len(GREETING)  # the server speaks first
        self.lost: BaseException | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        pending = self.pending - len(data)
        if pending > 0:
            self.pending = pending
            return
        if pending:
            raise RuntimeError(f"the server sent {-pending} bytes more than it was sent")
        self.pending = 64
        self.done += 1
        self.transport.write(PAYLOAD)

    def connection_lost(self, exc) -> None:
        self.lost = exc or ConnectionResetError("closed by the server")


async def _ping_pong(port: int, server_pid: int, connections: int, warmup: float, seconds: float):
    loop = asyncio.get_running_loop()
    protocols: list[_PingPong] = []
    for _ in range(connections):
        _, protocol = await loop.create_connection(_PingPong, HOST, port)
        protocols.append(protocol)
    await asyncio.sleep(warmup)
    window = _Window(server_pid)
    before = sum(p.done for p in protocols)
    window.start()
    await asyncio.sleep(seconds)
    result = window.stop()
    result["count"] = sum(p.done for p in protocols) - before
    lost = [p.lost for p in protocols if p.lost is not None]
    for p in protocols:
        if p.lost is None:
            p.transport.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET
            )
            p.transport.abort()
    if lost:
        raise RuntimeError(f"{len(lost)} connections lost during the run: {lost[0]!r}")
    result["rate"] = result["count"] / result["seconds"]
    return result


async def _accept_cycle(loop, address) -> None:
    """Connect, wait for the server's greeting (it has accepted us), reset."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, address)
        data = await loop.sock_recv(sock, 1)
    finally:
        _reset_close(sock)
    if data != GREETING:
        raise RuntimeError(f"expected the greeting, got {data!r}")


async def _accept_rate(
    port: int, server_pid: int, concurrency: int, warmup: float, seconds: float
):
    loop = asyncio.get_running_loop()
    address = (HOST, port)
    cycles = 0
    stopping = False

    async def connector() -> None:
        nonlocal cycles
        while not stopping:
            await _accept_cycle(loop, address)
            cycles += 1

    tasks = [loop.create_task(connector()) for _ in range(concurrency)]
    try:
        await asyncio.sleep(warmup)
        window = _Window(server_pid)
        before = cycles
        window.start()
        await asyncio.sleep(seconds)
        result = window.stop()
        result["count"] = cycles - before
    finally:
        stopping = True
        await asyncio.gather(*tasks)
    result["rate"] = result["count"] / result["seconds"]
    return result


async def _idle(port: int, count: int, prefill: int, concurrency: int):
    """Hold ``prefill`` connections; open ``count`` more when told "go"; reset all on "close".

    The prefill connections stay open throughout, so that the measured ones
    get fresh memory rather than the free space a server's heap keeps from
    its start-up (which differs from one framework to the next).
    """
    loop = asyncio.get_running_loop()
    address = (HOST, port)
    socks: list[socket.socket] = []

    async def ask(prompt: str, expect: str) -> None:
        print(prompt, flush=True)
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if line.strip() != expect:
            raise RuntimeError(f"expected {expect!r} from the driver, got {line!r}")

    async def opener(n: int) -> None:
        for _ in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            socks.append(sock)
            await loop.sock_connect(sock, address)
            if await loop.sock_recv(sock, 1) != GREETING:
                raise RuntimeError("expected the greeting")

    async def open_idle(n: int) -> None:
        share, extra = divmod(n, concurrency)
        await asyncio.gather(*(opener(share + (i < extra)) for i in range(concurrency)))

    try:
        # Warm the server up (first-connection costs, lazy imports), then prefill.
        for _ in range(10):
            await asyncio.gather(*(_accept_cycle(loop, address) for _ in range(concurrency)))
        await open_idle(prefill)
        await ask("READY", "go")
        t0 = time.perf_counter()
        await open_idle(count)
        seconds = time.perf_counter() - t0
        await ask(f"OPEN {len(socks) - prefill}", "close")
    finally:
        for sock in socks:
            _reset_close(sock)
    return {"connections": count, "prefill": prefill, "open_seconds": seconds}


def main() -> None:
    import uvloop

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["pingpong", "accept", "idle"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server-pid", type=int, required=True)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--prefill", type=int, default=1_000)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--cpu", type=int, default=None, help="pin the process to this CPU")
    args = parser.parse_args()

    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    raise_nofile_limit()
    if args.mode == "pingpong":
        coro = _ping_pong(args.port, args.server_pid, args.connections, args.warmup, args.seconds)
    elif args.mode == "accept":
        coro = _accept_rate(
            args.port, args.server_pid, args.concurrency, args.warmup, args.seconds
        )
    else:
        coro = _idle(args.port, args.count, args.prefill, args.concurrency)
    result = uvloop.run(coro)
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
