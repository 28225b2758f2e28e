"""Static file benchmark: a 1 MiB file under wrk, torsion.web's File against nginx and peers.

Usage: .venv/bin/python benchmarks/static.py [--seconds S] [--connections N] [--rounds N]
       [--only NAME,...]

``GET /1mib.bin`` (1 MiB of random bytes, so nothing compresses it) over 10
keep-alive connections (``wrk -t1 -c10 -d5s``), one server at a time, each
serving the same directory:

* ``torsion``: ``torsion web --path DIR`` (``File``: ETag and
  Last-Modified, ranges), on uvloop, which has no sendfile: the file is
  read and written in chunks;
* ``torsion-asyncio``: the same on the stdlib loop, where a plain GET goes
  out with ``os.sendfile``;
* ``nginx``: one worker, ``sendfile on``, access log off (the C ceiling);
* ``twisted``: ``twisted.web.static.File`` on the epoll reactor;
* ``aiohttp``: ``aiohttp.web`` with ``add_static`` (sendfile), on uvloop.

The server runs pinned to CPU 0 and wrk to CPU 1. Each server's answer is
checked first (status 200 and all the bytes). With ``--rounds N`` the order
rotates from round to round and the best and median runs are printed, in
requests and MiB per second, with each server's ratio to nginx.

Needs wrk (``apt-get install wrk``), nginx (``apt-get install nginx-light``;
skipped with a note when missing), aiohttp and Twisted (the ``bench``
extra), and two CPUs. Internal mode (the driver starts it):
``static.py server NAME --port PORT --dir DIR``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from _servers import HOST, free_port, stop_server

FILE = "1mib.bin"
SIZE = 1024 * 1024
SERVER_CPU, CLIENT_CPU = 0, 1
NAMES = ("torsion", "torsion-asyncio", "nginx", "twisted", "aiohttp")


# -- servers (each runs in its own process) ---------------------------------------


def serve_twisted(port: int, directory: str) -> None:
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor
    from twisted.web import server, static

    site = server.Site(static.File(directory))
    reactor.listenTCP(port, site, interface=HOST, backlog=1024)
    reactor.run()


def serve_aiohttp(port: int, directory: str) -> None:
    import uvloop
    from aiohttp import web

    app = web.Application()
    app.router.add_static("/", directory)
    web.run_app(
        app, host=HOST, port=port, access_log=None, print=None, loop=uvloop.new_event_loop()
    )


def _nginx_argv(port: int, directory: str, scratch: str) -> list[str]:
    conf = os.path.join(scratch, "nginx.conf")
    with open(conf, "w") as f:
        f.write(
            "daemon off;\nmaster_process off;\nworker_processes 1;\n"
            f"pid {scratch}/nginx.pid;\nerror_log stderr error;\n"
            "events { worker_connections 1024; }\n"
            "http {\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n"
            "  default_type application/octet-stream;\n"
            f"  client_body_temp_path {scratch};\n"
            f"  server {{ listen {HOST}:{port}; root {directory}; }}\n}}\n"
        )
    nginx = shutil.which("nginx", path="/usr/sbin:/usr/bin")
    assert nginx is not None
    return [nginx, "-c", conf, "-p", scratch, "-e", "stderr"]


def start_server(name: str, directory: str, scratch: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    pin = ["taskset", "-c", str(SERVER_CPU)]
    if name.startswith("torsion"):
        torsion = os.path.join(os.path.dirname(sys.executable), "torsion")
        loop = "asyncio" if name == "torsion-asyncio" else "uvloop"
        argv = [torsion, "--reactor", loop, "--log-level", "warning", "web", "--path", directory]
        argv += ["--listen", f"tcp:{port}:interface={HOST}"]
    elif name == "nginx":
        argv = _nginx_argv(port, directory, scratch)
    else:
        argv = [sys.executable, __file__, "server", name, "--port", str(port), "--dir", directory]
    proc = subprocess.Popen([*pin, *argv])
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/{FILE}", timeout=5) as answer:
                body = answer.read()
            if answer.status != 200 or len(body) != SIZE:
                raise RuntimeError(f"{name} answered {answer.status} with {len(body)} bytes")
            return proc, port
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)


def wrk(port: int, seconds: float, connections: int) -> float:
    program = shutil.which("wrk")
    if program is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    argv = ["taskset", "-c", str(CLIENT_CPU), program, "-t1", f"-c{connections}"]
    argv += [f"-d{seconds:g}s", f"http://{HOST}:{port}/{FILE}"]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"wrk printed no rate:\n{out}")
    if re.search(r"Non-2xx or 3xx responses: (\d+)", out) or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    return float(match.group(1))


def driver_main(args: argparse.Namespace) -> None:
    names = [n for n in args.only.split(",") if n] or list(NAMES)
    if "nginx" in names and shutil.which("nginx", path="/usr/sbin:/usr/bin") is None:
        print("nginx is not installed (apt-get install nginx-light): left out")
        names.remove("nginx")
    results: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="static-bench-") as top:
        directory = os.path.join(top, "www")
        os.mkdir(directory)
        os.chmod(top, 0o755)
        os.chmod(directory, 0o755)
        with open(os.path.join(directory, FILE), "wb") as f:
            f.write(os.urandom(SIZE))
        os.chmod(os.path.join(directory, FILE), 0o644)
        for round_number in range(args.rounds):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                scratch = tempfile.mkdtemp(dir=top)
                proc, port = start_server(name, directory, scratch)
                try:
                    results[name].append(wrk(port, args.seconds, args.connections))
                finally:
                    stop_server(proc)
    print(
        f"GET /{FILE} (1 MiB); wrk -t1 -c{args.connections} -d{args.seconds:g}s; "
        f"server on CPU {SERVER_CPU}, wrk on CPU {CLIENT_CPU}; {args.rounds} round(s)"
    )
    best = {name: max(rates) for name, rates in results.items()}
    for name in names:
        median = statistics.median(results[name])
        ratio = f"  {best[name] / best['nginx']:.2f}x nginx" if "nginx" in best else ""
        print(
            f"  {name:16s} best {best[name]:>8,.0f} req/s ({best[name] * SIZE / 2**20:>7,.0f}"
            f" MiB/s)   median {median:>8,.0f}{ratio}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode")
    server = sub.add_parser("server")
    server.add_argument("name")
    server.add_argument("--port", type=int, required=True)
    server.add_argument("--dir", required=True)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default=",".join(NAMES))
    args = parser.parse_args()
    if args.mode == "server":
        if args.name == "twisted":
            serve_twisted(args.port, args.dir)
        else:
            serve_aiohttp(args.port, args.dir)
    else:
        driver_main(args)


if __name__ == "__main__":
    main()
