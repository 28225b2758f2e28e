"""HTTP/1.1 server benchmark: requests per second under wrk, torsion.web against Python peers.

Usage: .venv/bin/python benchmarks/web.py [--seconds S] [--connections N] [--rounds N]
       [--only NAME,...] [--profile]

``GET /`` answered ``Hello, World!`` over 50 keep-alive connections
(``wrk -t1 -c50 -d5s``), one run per server, each in its own process:

* ``torsion``: ``torsion.web.Site`` with a ``Resource`` whose GET handler
  returns ``b"Hello, World!"``, on a Reactor on uvloop;
* ``torsion-asyncio``: the same on the stdlib loop;
* ``uvicorn``: a raw ASGI app (no framework) with ``--http httptools
  --loop uvloop``, access log off;
* ``aiohttp``: an ``aiohttp.web`` app with one handler, on uvloop;
* ``twisted``: ``twisted.web`` (a ``Resource`` with ``isLeaf``), on the
  epoll reactor;
* ``floor``: a bare ``asyncio.Protocol`` on uvloop that parses with
  httptools and answers every request with one fixed response: what
  parsing and one write cost on uvloop, the ceiling of any Python server
  here.

The server runs pinned to CPU 0 and wrk to CPU 1. Each server's answer is
checked with one request before it is measured. With ``--rounds N`` every
server is measured N times, the order rotating from round to round, and
the best run (the least disturbed by other programs) is compared; the
median is printed beside it. The figures are printed with the ratios the
goal is stated in (torsion / uvicorn, torsion / floor).
``--profile`` runs torsion alone under cProfile and prints where its time
goes.

Needs wrk (``apt-get install wrk``), uvicorn, aiohttp and Twisted (the
``bench`` extra), and two CPUs. Internal mode (the driver starts it):
``web.py server NAME [--cpu N] [--profile FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request

from _servers import BODY, HOST, free_port, hello_asgi_app, loadavg, stop_server

SERVER_CPU, CLIENT_CPU = 0, 1
NAMES = ("torsion", "torsion-asyncio", "uvicorn", "aiohttp", "twisted", "floor")
GOAL_UVICORN = 2.0
GOAL_FLOOR = 0.5


# -- servers (each runs in its own process) ---------------------------------------


def serve_torsion(port: int, uvloop: bool) -> None:
    from torsion.internet import Reactor
    from torsion.web import Request, Resource, Site, handles

    class Hello(Resource):
        is_leaf = True

        @handles("GET")
        def hello(self, request: Request) -> bytes:
            return BODY

    reactor = Reactor(uvloop=uvloop)
    reactor.listen_tcp(port, Site(Hello(), reactor=reactor), interface=HOST, backlog=1024)
    reactor.run()


def serve_uvicorn(port: int) -> None:
    import uvicorn

    uvicorn.run(
        hello_asgi_app,
        host=HOST,
        port=port,
        http="httptools",
        loop="uvloop",
        access_log=False,
        log_level="warning",
        backlog=1024,
    )


def serve_aiohttp(port: int) -> None:
    import uvloop
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        return web.Response(body=BODY)

    app = web.Application()
    app.router.add_get("/", hello)
    uvloop.install()
    web.run_app(app, host=HOST, port=port, access_log=None, print=None, backlog=1024)


def serve_twisted(port: int) -> None:
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor
    from twisted.web import resource, server

    class Hello(resource.Resource):
        isLeaf = True  # noqa: N815 - Twisted's name

        def render_GET(self, request):  # type: ignore[no-untyped-def]  # noqa: N802
            return BODY

    site = server.Site(Hello())
    site.log = lambda request: None  # no access log, as for the others
    reactor.listenTCP(port, site, interface=HOST, backlog=1024)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


def serve_floor(port: int) -> None:
    import httptools
    import uvloop

    response = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n" + BODY

    class Floor(asyncio.Protocol):
        def connection_made(self, transport):  # type: ignore[no-untyped-def]
            self.transport = transport
            self.parser = httptools.HttpRequestParser(self)

        def data_received(self, data):  # type: ignore[no-untyped-def]
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                self.transport.close()

        def on_message_complete(self):  # type: ignore[no-untyped-def]
            self.transport.write(response)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Floor, HOST, port, backlog=1024)
        await server.serve_forever()

    uvloop.run(main())


def server_main(args: argparse.Namespace) -> None:
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()

        def stop(signum: int, frame: object) -> None:
            profiler.disable()
            profiler.dump_stats(args.profile)
            os._exit(0)

        # SIGUSR1, not SIGTERM: the reactor handles SIGTERM itself.
        signal.signal(signal.SIGUSR1, stop)
        profiler.enable()
    if args.name == "torsion":
        serve_torsion(args.port, uvloop=True)
    elif args.name == "torsion-asyncio":
        serve_torsion(args.port, uvloop=False)
    elif args.name == "uvicorn":
        serve_uvicorn(args.port)
    elif args.name == "aiohttp":
        serve_aiohttp(args.port)
    elif args.name == "twisted":
        serve_twisted(args.port)
    elif args.name == "floor":
        serve_floor(args.port)
    else:
        raise SystemExit(f"unknown server {args.name}")


# -- the driver -----------------------------------------------------------------


def start_server(name: str, profile: str | None = None) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    argv = [sys.executable, __file__, "server", name, "--port", str(port)]
    argv += ["--cpu", str(SERVER_CPU)]
    if profile:
        argv += ["--profile", profile]
    proc = subprocess.Popen(argv)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server {name} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/", timeout=2) as response:
                body = response.read()
        except OSError:
            time.sleep(0.05)  # the server is starting: poll its port
            continue
        if body != BODY:
            raise RuntimeError(f"server {name} answered {body!r}")
        return proc, port
    proc.kill()
    raise RuntimeError(f"server {name} did not start")


def wrk(port: int, seconds: float, connections: int) -> tuple[float, int]:
    program = shutil.which("wrk")
    if program is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    argv = ["taskset", "-c", str(CLIENT_CPU), program, "-t1", f"-c{connections}"]
    argv += [f"-d{seconds:g}s", f"http://{HOST}:{port}/"]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"wrk printed no rate:\n{out}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    if socket_errors:
        print(f"    wrk: socket errors: {socket_errors.group(1)}")
    return float(match.group(1)), int(errors.group(1)) if errors else 0


def driver_main(args: argparse.Namespace) -> None:
    names = [n for n in args.only.split(",") if n] or list(NAMES)
    print(
        f"GET / -> {BODY.decode()!r}; wrk -t1 -c{args.connections} -d{args.seconds:g}s; "
        f"server on CPU {SERVER_CPU}, wrk on CPU {CLIENT_CPU}; {args.rounds} round(s), "
        f"order rotated; Python {sys.version.split()[0]}; load {loadavg()}"
    )
    results: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(args.rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            proc, port = start_server(name)
            try:
                rate, bad = wrk(port, args.seconds, args.connections)
            finally:
                stop_server(proc)
            if bad:
                print(f"    {name}: {bad} non-2xx responses")
            results[name].append(rate)
    best = {name: max(rates) for name, rates in results.items()}
    for name in names:
        rates = results[name]
        print(
            f"  {name:16s} best {best[name]:>10,.0f} req/s   median "
            f"{statistics.median(rates):>10,.0f}"
        )
    torsion = best.get("torsion")
    if torsion:
        for peer, goal in (("uvicorn", GOAL_UVICORN), ("floor", GOAL_FLOOR)):
            if best.get(peer):
                ratio = torsion / best[peer]
                verdict = "met" if ratio >= goal else "not met"
                print(f"  torsion / {peer}: {ratio:.2f}x (goal >= {goal}x: {verdict})")
        for peer in ("aiohttp", "twisted", "torsion-asyncio"):
            if best.get(peer):
                print(f"  torsion / {peer}: {torsion / best[peer]:.2f}x")


def profile_main(args: argparse.Namespace) -> None:
    import pstats
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        stats_file = os.path.join(directory, "torsion.prof")
        proc, port = start_server("torsion", profile=stats_file)
        try:
            rate, _ = wrk(port, args.seconds, args.connections)
        finally:
            proc.send_signal(signal.SIGUSR1)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                stop_server(proc)
        print(f"torsion under cProfile: {rate:,.0f} req/s")
        stats = pstats.Stats(stats_file)
        stats.sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode")
    server = sub.add_parser("server")
    server.add_argument("name")
    server.add_argument("--port", type=int, required=True)
    server.add_argument("--cpu", type=int)
    server.add_argument("--profile")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--only", default="")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if args.mode == "server":
        server_main(args)
    elif args.profile:
        profile_main(args)
    else:
        driver_main(args)


if __name__ == "__main__":
    main()
