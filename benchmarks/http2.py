"""HTTP/2 server benchmark: requests per second under h2load over TLS, torsion.web against peers.

Usage: .venv/bin/python benchmarks/http2.py [--requests N] [--rounds N] [--only NAME,...]

``GET /`` answered ``Hello, World!`` over TLS with HTTP/2 chosen by ALPN,
10 connections with 10 streams each at once (``h2load -n 100000 -c 10 -m
10 https://127.0.0.1:PORT/``), one server at a time:

* ``torsion``: ``torsion.web.Site`` with a ``Resource`` whose GET handler
  returns ``b"Hello, World!"``, on a ``tls:`` listener offering h2, on
  uvloop;
* ``torsion-asyncio``: the same on the stdlib loop;
* ``hypercorn``: a raw ASGI app (no framework) on hypercorn's uvloop
  worker;
* ``twisted``: ``twisted.web`` (a ``Resource`` with ``isLeaf``) over
  ``listenSSL`` with ALPN (Twisted's HTTP/2 needs its ``tls`` and
  ``http2`` extras), on the epoll reactor.

Every server uses the same certificate (made with trustme). The server
runs pinned to CPU 0 and h2load to CPU 1. Each server is first checked to
answer with HTTP/2; a run counts only if h2load reports every request
succeeded. With ``--rounds N`` the order rotates from round to round and
the best and median runs are printed with torsion's ratios to the others.

Needs h2load (``apt-get install nghttp2-client``), hypercorn and Twisted
with its ``tls`` and ``http2`` extras (the ``bench`` extra), trustme, and
two CPUs. Internal mode (the driver starts it):
``http2.py server NAME --port PORT --cert FILE``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from _servers import BODY, HOST, free_port, hello_asgi_app, stop_server

SERVER_CPU, CLIENT_CPU = 0, 1
NAMES = ("torsion", "torsion-asyncio", "hypercorn", "twisted")
GOAL = 2.0


# -- servers (each runs in its own process) ---------------------------------------


def serve_torsion(port: int, cert: str, uvloop: bool) -> None:
    from torsion.internet import Reactor, ServerTLS
    from torsion.web import Request, Resource, Site, handles

    class Hello(Resource):
        is_leaf = True

        @handles("GET")
        def hello(self, request: Request) -> bytes:
            return BODY

    reactor = Reactor(uvloop=uvloop)
    tls = ServerTLS(cert, alpn=("h2", "http/1.1"))
    site = Site(Hello(), reactor=reactor)
    reactor.listen_tls(port, site, tls, interface=HOST, backlog=1024)
    reactor.run()


def serve_hypercorn(port: int, cert: str) -> None:
    import asyncio

    import uvloop
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"{HOST}:{port}"]
    config.certfile = cert
    config.keyfile = cert
    config.alpn_protocols = ["h2", "http/1.1"]
    config.accesslog = None
    config.errorlog = None
    config.backlog = 1024
    # hypercorn ends a connection with GOAWAY after 1,000 requests by
    # default; h2load does not reconnect, so the rest would fail.
    config.keep_alive_max_requests = 2**31
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(serve(hello_asgi_app, config))  # type: ignore[arg-type]


def serve_twisted(port: int, cert: str) -> None:
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor, ssl
    from twisted.web import resource, server

    class Hello(resource.Resource):
        isLeaf = True  # noqa: N815 - the name Twisted reads

        def render_GET(self, request):  # type: ignore[no-untyped-def]  # noqa: N802
            request.setHeader(b"content-type", b"text/plain")
            return BODY

    with open(cert, "rb") as f:
        pem = f.read()
    options = ssl.PrivateCertificate.loadPEM(pem).options()
    options = ssl.CertificateOptions(
        privateKey=options.privateKey,
        certificate=options.certificate,
        acceptableProtocols=[b"h2", b"http/1.1"],
    )
    reactor.listenSSL(port, server.Site(Hello()), options, interface=HOST, backlog=1024)
    reactor.run()


# -- driver ---------------------------------------------------------------------------


def start_server(name: str, cert: str, ca: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    argv = ["taskset", "-c", str(SERVER_CPU), sys.executable, __file__, "server", name]
    argv += ["--port", str(port), "--cert", cert]
    proc = subprocess.Popen(argv)
    curl = shutil.which("curl")
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
        if curl is None:
            # Without curl, only wait for the port.
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                return proc, port
            except OSError:
                pass
        else:
            url = f"https://{HOST}:{port}/"
            check = subprocess.run(
                [curl, "-s", "--http2", "--cacert", ca, "-w", " %{http_version}", url],
                capture_output=True,
                check=False,
            )
            if check.returncode == 0:
                if check.stdout != BODY + b" 2":
                    proc.kill()
                    raise RuntimeError(f"{name} answered {check.stdout!r}, not HTTP/2 {BODY!r}")
                return proc, port
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{name} did not answer on port {port}")
        time.sleep(0.1)


def h2load(port: int, requests: int) -> float:
    program = shutil.which("h2load")
    if program is None:
        raise SystemExit("h2load is not installed (apt-get install nghttp2-client)")
    argv = ["taskset", "-c", str(CLIENT_CPU), program, "-n", str(requests), "-c", "10", "-m", "10"]
    argv.append(f"https://{HOST}:{port}/")
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    rate = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    if done is None or rate is None or "h2" not in out:
        raise RuntimeError(f"h2load printed no result:\n{out}")
    if int(done.group(2)) != requests:
        raise RuntimeError(f"only {done.group(2)} of {requests} requests succeeded:\n{out}")
    if "Application protocol: h2" not in out:
        raise RuntimeError(f"h2load did not speak HTTP/2:\n{out}")
    return float(rate.group(1))


def driver_main(args: argparse.Namespace) -> None:
    import trustme

    names = [n for n in args.only.split(",") if n] or list(NAMES)
    results: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="h2-bench-") as directory:
        ca = trustme.CA()
        cert = os.path.join(directory, "server.pem")
        ca.issue_cert(HOST).private_key_and_cert_chain_pem.write_to_path(cert)
        ca_file = os.path.join(directory, "ca.pem")
        ca.cert_pem.write_to_path(ca_file)
        for round_number in range(args.rounds):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                proc, port = start_server(name, cert, ca_file)
                try:
                    results[name].append(h2load(port, args.requests))
                finally:
                    stop_server(proc)
    print(
        f"GET / -> {BODY.decode()!r} over TLS, HTTP/2 by ALPN; h2load -n {args.requests} "
        f"-c 10 -m 10; server on CPU {SERVER_CPU}, h2load on CPU {CLIENT_CPU}; "
        f"{args.rounds} round(s), order rotated"
    )
    best = {name: max(rates) for name, rates in results.items()}
    for name in names:
        print(
            f"  {name:16s} best {best[name]:>8,.0f} req/s   median "
            f"{statistics.median(results[name]):>8,.0f}"
        )
    torsion = best.get("torsion")
    if torsion:
        for peer in ("hypercorn", "twisted"):
            if best.get(peer):
                ratio = torsion / best[peer]
                verdict = "met" if ratio >= GOAL else "not met"
                print(f"  torsion / {peer}: {ratio:.2f}x (goal >= {GOAL}x: {verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode")
    server = sub.add_parser("server")
    server.add_argument("name")
    server.add_argument("--port", type=int, required=True)
    server.add_argument("--cert", required=True)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default=",".join(NAMES))
    args = parser.parse_args()
    if args.mode == "server":
        if args.name.startswith("torsion"):
            serve_torsion(args.port, args.cert, uvloop=args.name == "torsion")
        elif args.name == "hypercorn":
            serve_hypercorn(args.port, args.cert)
        else:
            serve_twisted(args.port, args.cert)
    else:
        driver_main(args)


if __name__ == "__main__":
    main()
