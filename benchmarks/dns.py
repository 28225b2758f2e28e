"""DNS server benchmark: queries per second under dnsperf, torsion against Twisted names and nsd.

Usage: .venv/bin/python benchmarks/dns.py [--quick] [--rounds N] [--seconds S] [--only NAME,...]

One zone (``example.bench.``: 50 hosts, each with A, AAAA, MX and TXT
records) served by each contender, and dnsperf (10 clients, UDP, at most
100 queries outstanding, 5 s timeout) asking the same 200 questions in a
shuffled order, A, AAAA, MX and TXT mixed, as fast as the server answers:

* ``torsion-uvloop``: ``torsion.names.DNSServer`` with an ``Authority``
  read from the zone file, on a Reactor on uvloop;
* ``torsion-asyncio``: the same on the stdlib loop;
* ``twisted``: ``twisted.names`` (``BindAuthority`` and
  ``DNSServerFactory``, its ``DNSDatagramProtocol``) on the epoll reactor;
* ``dnspython``: a plain responder, an ``asyncio.DatagramProtocol`` on
  uvloop that parses each query with ``dns.message.from_wire``, answers
  from ``dns.zone`` and renders with ``to_wire``;
* ``nsd``: the C authoritative server (one server process), for the
  ceiling of what the load generator can ask;
* ``uvloop-echo``: no DNS at all, each query sent back as it came with the
  QR flag set, from a raw ``asyncio.DatagramProtocol`` on uvloop: what one
  datagram in and one out cost Python on uvloop, the ceiling of any Python
  server here (its answers are not checked: they have no records).

Each server runs pinned to CPU 0 and dnsperf to CPU 1. Before a server is
measured its answers are checked: every question of the query file, asked
once with dnspython, must get NOERROR and the zone's records. Every round
starts a fresh server per contender, in an order that rotates from round to
round; each measurement runs dnsperf for ``--seconds`` after a 1-second
dnsperf warm-up. Figures are the median (and best) queries per second over
the rounds; lost queries are summed over every round. The driver waits for
other programs to leave both CPUs (nearly) idle before each measurement
(for at most 30 s: the load average is printed with each figure, so that a
busy machine shows in the output).

Needs dnsperf (``apt-get install dnsperf``), nsd, Twisted (the ``bench``
extra) and two CPUs. Internal mode (the driver starts it):
``dns.py server NAME --zone FILE [--cpu N]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from transport_servers import announce, pin_to_cpu
from transports import _Child, _cpu_times, _loadavg, _pkg_version, _torsion_source

# This file is dns.py: with its directory on sys.path (where Python puts a
# script's), "import dns" would find it rather than dnspython. The helpers
# above are imported; the directory is no longer needed.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != _HERE]

HOST = "127.0.0.1"
ORIGIN = "example.bench."
HOSTS = 50
TYPES = ("A", "AAAA", "MX", "TXT")
CLIENTS = 10
CLK_TCK = os.sysconf("SC_CLK_TCK")
GOAL = 3.0  # torsion (uvloop) / Twisted, queries per second, with no query lost
SERVER_CPU, CLIENT_CPU = 0, 1
MAX_BUSY = 0.10  # other programs' share of a CPU below which it counts as idle
QUIET_TIMEOUT = 30.0
# A measurement is taken again (up to ATTEMPTS times, the least disturbed
# kept) when the server waited for its CPU more than this share of the window.
MAX_WAIT = 0.10
ATTEMPTS = 3

CONTENDERS = {
    "torsion-uvloop": "torsion DNSServer + Authority, Reactor on uvloop",
    "torsion-asyncio": "torsion DNSServer + Authority, Reactor on the stdlib loop",
    "twisted": "Twisted names, BindAuthority + DNSServerFactory, epoll reactor",
    "dnspython": "dnspython from_wire/zone/to_wire in an asyncio DatagramProtocol, uvloop",
    "nsd": "nsd (C), one server process",
    "uvloop-echo": "no DNS: each query sent back with QR set, asyncio DatagramProtocol, uvloop",
}
# Contenders whose answers are not the zone's (the echo is a floor of the
# cost of a datagram in and out of Python on uvloop, not a DNS server).
UNCHECKED = {"uvloop-echo"}


def zone_text() -> str:
    lines = [
        f"$ORIGIN {ORIGIN}",
        "$TTL 3600",
        # Every record names its owner, names in records are absolute, and
        # the TXT strings are unquoted words: Twisted's zone file reader
        # reads nothing else alike.
        f"@ IN SOA ns1.{ORIGIN} hostmaster.{ORIGIN} 1 7200 900 1209600 300",
        f"@ IN NS ns1.{ORIGIN}",
        "ns1 IN A 192.0.2.53",
        "mail IN A 192.0.2.25",
        "mail IN AAAA 2001:db8::25",
    ]
    for n in range(HOSTS):
        lines += [
            f"h{n} IN A 198.51.100.{n + 1}",
            f"h{n} IN AAAA 2001:db8::{n + 1:x}",
            f"h{n} IN MX 10 mail.{ORIGIN}",
            f"h{n} IN TXT host-{n}-of-the-benchmark-zone",
        ]
    return "\n".join(lines) + "\n"


def questions() -> list[tuple[str, str]]:
    asked = [(f"h{n}.{ORIGIN}", rdtype) for n in range(HOSTS) for rdtype in TYPES]
    random.Random(53).shuffle(asked)
    return asked


# -- the servers ---------------------------------------------------------------------------


def serve_torsion(zone: str, uvloop: bool) -> None:
    from torsion.internet import Reactor
    from torsion.names import Authority, DNSServer

    reactor = Reactor(uvloop=uvloop)
    server = DNSServer([Authority.from_file(zone)])
    ports = server.listen(reactor, 0, interface=HOST)
    announce(ports.port)
    reactor.run(install_signal_handlers=False)


def serve_twisted(zone: str) -> None:
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor
    from twisted.names import authority, dns, server

    factory = server.DNSServerFactory(authorities=[authority.BindAuthority(zone)])
    port = reactor.listenUDP(0, dns.DNSDatagramProtocol(factory), interface=HOST)
    announce(port.getHost().port)
    reactor.run(installSignalHandlers=False)


def serve_dnspython(zone_path: str) -> None:
    import asyncio

    import dns.flags
    import dns.message
    import dns.rcode
    import dns.rdataclass
    import dns.rdatatype
    import dns.rrset
    import dns.zone
    import uvloop

    zone = dns.zone.from_file(zone_path, relativize=False)
    origin = zone.origin
    soa = zone.find_rdataset(origin, dns.rdatatype.SOA)
    negative = dns.rrset.from_rdata_list(origin, soa.ttl, list(soa))

    class Responder(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            try:
                query = dns.message.from_wire(data)
            except Exception:
                return
            if len(query.question) != 1:
                return
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA
            asked = query.question[0]
            node = zone.get_node(asked.name)
            if node is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
                response.authority.append(negative)
            else:
                rdataset = node.get_rdataset(dns.rdataclass.IN, asked.rdtype)
                if rdataset is None:
                    response.authority.append(negative)
                else:
                    response.answer.append(
                        dns.rrset.from_rdata_list(asked.name, rdataset.ttl, list(rdataset))
                    )
            self.transport.sendto(response.to_wire(), addr)

    async def main():
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(Responder, local_addr=(HOST, 0))
        announce(transport.get_extra_info("sockname")[1])
        await loop.create_future()

    uvloop.run(main())


def serve_echo() -> None:
    import asyncio

    import uvloop

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            # The query itself as its answer: QR set, opcode and RD kept.
            self.transport.sendto(data[:2] + bytes((data[2] | 0x80,)) + data[3:], addr)

    async def main():
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=(HOST, 0))
        announce(transport.get_extra_info("sockname")[1])
        await loop.create_future()

    uvloop.run(main())


NSD_CONF = """\
server:
    ip-address: {host}@{port}
    zonesdir: "{dir}"
    pidfile: "{dir}/nsd.pid"
    database: ""
    username: ""
    chroot: ""
    xfrdfile: "{dir}/xfrd.state"
    zonelistfile: "{dir}/zone.list"
    server-count: 1
    do-ip6: no
    verbosity: 0
    # Response rate limiting (on in this build) would drop most of a
    # benchmark's answers, all asked from one address.
    rrl-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: {origin}
    zonefile: {zone}
"""


def _free_port() -> int:
    # A port free for both UDP and TCP (nsd takes both).
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((HOST, 0))
            port: int = udp.getsockname()[1]
            with socket.socket() as tcp:
                try:
                    tcp.bind((HOST, port))
                except OSError:
                    continue
                return port


class _Nsd:
    """nsd in the foreground, pinned; looks like a _Child to the driver."""

    what = "server nsd"

    def __init__(self, zone: str, directory: str) -> None:
        program = shutil.which("nsd") or shutil.which("nsd", path="/usr/sbin:/usr/local/sbin")
        if program is None:
            raise RuntimeError("nsd is not installed (apt-get install nsd)")
        self.port = _free_port()
        conf = Path(directory) / "nsd.conf"
        conf.write_text(
            NSD_CONF.format(
                host=HOST, port=self.port, dir=directory, origin=ORIGIN, zone=Path(zone).name
            )
        )
        self._log = open(Path(directory) / "nsd.log", "wb")  # noqa: SIM115 - closed by close()
        self.proc = subprocess.Popen(
            ["taskset", "-c", str(SERVER_CPU), program, "-d", "-c", str(conf)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def server_main(args: argparse.Namespace) -> None:
    pin_to_cpu(args.cpu)
    if args.name == "torsion-uvloop":
        serve_torsion(args.zone, uvloop=True)
    elif args.name == "torsion-asyncio":
        serve_torsion(args.zone, uvloop=False)
    elif args.name == "twisted":
        serve_twisted(args.zone)
    elif args.name == "dnspython":
        serve_dnspython(args.zone)
    elif args.name == "uvloop-echo":
        serve_echo()
    else:
        raise SystemExit(f"unknown server {args.name}")


# -- the driver ---------------------------------------------------------------------------


def check_answers(port: int, zone_path: str, asked: list[tuple[str, str]]) -> None:
    """Every question gets NOERROR and the zone's records (dnspython asks, once each)."""
    import dns.exception
    import dns.message
    import dns.query
    import dns.rcode
    import dns.rdatatype
    import dns.zone

    zone = dns.zone.from_file(zone_path, relativize=False)
    deadline = time.monotonic() + 15
    for name, rdtype in asked:
        expected = {
            rdata.to_text().lower()
            for rdata in zone.find_rdataset(name, dns.rdatatype.from_text(rdtype))
        }
        query = dns.message.make_query(name.upper(), rdtype)  # any case is the same name
        while True:
            try:
                response = dns.query.udp(query, HOST, port=port, timeout=1.0)
                break
            except dns.exception.Timeout:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no answer to {name} {rdtype} on port {port}") from None
        if response.rcode() != dns.rcode.NOERROR:
            raise RuntimeError(f"{name} {rdtype}: {dns.rcode.to_text(response.rcode())}")
        # Lower case: names in the records may take the question's case.
        got = {
            rdata.to_text().lower()
            for rrset in response.answer
            if rrset.rdtype == dns.rdatatype.from_text(rdtype)
            for rdata in rrset
        }
        if got != expected:
            raise RuntimeError(f"{name} {rdtype}: {got} instead of {expected}")


def wait_for_quiet() -> float:
    """Wait (at most QUIET_TIMEOUT) until other programs leave both CPUs nearly idle."""
    cpus = {SERVER_CPU, CLIENT_CPU}
    start = time.monotonic()
    while True:
        before = _cpu_times(cpus)
        time.sleep(0.25)
        after = _cpu_times(cpus)
        busy = max((after[c][0] - before[c][0]) / max(after[c][1] - before[c][1], 1) for c in cpus)
        if busy <= MAX_BUSY or time.monotonic() - start > QUIET_TIMEOUT:
            return busy


_FIELDS = {
    "sent": r"Queries sent:\s+(\d+)",
    "completed": r"Queries completed:\s+(\d+)",
    "lost": r"Queries lost:\s+(\d+)",
    "qps": r"Queries per second:\s+([\d.]+)",
}


def dnsperf(port: int, query_file: str, seconds: float) -> dict[str, float]:
    program = shutil.which("dnsperf")
    if program is None:
        raise RuntimeError("dnsperf is not installed (apt-get install dnsperf)")
    argv = ["taskset", "-c", str(CLIENT_CPU), program, "-s", HOST, "-p", str(port)]
    argv += ["-d", query_file, "-c", str(CLIENTS), "-l", f"{seconds:g}", "-t", "5", "-q", "100"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"dnsperf failed ({done.returncode}): {done.stderr}{done.stdout}")
    result: dict[str, float] = {}
    for key, pattern in _FIELDS.items():
        match = re.search(pattern, done.stdout)
        if match is None:
            raise RuntimeError(f"dnsperf said no {key!r}:\n{done.stdout}")
        result[key] = float(match.group(1))
    codes = re.search(r"Response codes:\s+(.*)", done.stdout)
    result["not_noerror"] = float(
        sum(
            int(count)
            for code, count in re.findall(r"([A-Z]+) (\d+)", codes.group(1) if codes else "")
            if code != "NOERROR"
        )
    )
    return result


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children, from /proc (proc(5))."""
    total = 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            # Fields after the command name, which may contain spaces and ")".
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                total += sum(tree_cpu_seconds(int(child)) for child in f.read().split())
    except (OSError, ValueError):
        pass  # gone meanwhile
    return total


def tree_wait_seconds(pid: int) -> float:
    """Seconds the threads of a process and its children waited for a CPU while runnable."""
    total = 0.0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[1]) / 1e9  # sched(7): run-queue wait, ns
            with open(f"/proc/{pid}/task/{task}/children") as f:
                total += sum(tree_wait_seconds(int(child)) for child in f.read().split())
    except (OSError, ValueError, IndexError):
        pass  # gone meanwhile, or no scheduler statistics
    return total


def one_server(
    name: str, zone: str, query_file: str, seconds: float, directory: str
) -> tuple[dict[str, float], float, str]:
    if name == "nsd":
        server = _Nsd(zone, directory)
        port = server.port
    else:
        argv = [sys.executable, os.path.abspath(__file__), "server", name, "--zone", zone]
        argv += ["--cpu", str(SERVER_CPU)]
        child = _Child(argv, f"server {name}")
        server = child
        port = int(child.expect("PORT ", timeout=60.0))
    try:
        if name not in UNCHECKED:
            check_answers(port, zone, questions())
        dnsperf(port, query_file, 1)  # warm-up: caches filled, code paths hot
        kept: tuple[dict[str, float], float, str] | None = None
        for _ in range(ATTEMPTS):
            busy = wait_for_quiet()
            load = _loadavg()
            pid = server.proc.pid
            cpu_before, wait_before = tree_cpu_seconds(pid), tree_wait_seconds(pid)
            result = dnsperf(port, query_file, seconds)
            used = tree_cpu_seconds(pid) - cpu_before
            result["per_cpu_second"] = result["completed"] / used if used > 0 else 0.0
            result["server_cpu"] = used / seconds
            result["server_wait"] = (tree_wait_seconds(pid) - wait_before) / seconds
            if kept is None or result["server_wait"] < kept[0]["server_wait"]:
                kept = (result, busy, load)
            if result["server_wait"] <= MAX_WAIT:
                break
        assert kept is not None
        result, busy, load = kept
        if server.proc.poll() is not None:
            raise RuntimeError(f"server {name} died during the run")
        return result, busy, load
    finally:
        server.close()


def report(names: list[str], results: dict[str, list[dict[str, float]]]) -> None:
    print()
    print(
        f"{'contender':<18}{'median q/s':>12}{'best q/s':>12}{'lost':>8}{'not NOERROR':>13}"
        f"{'srv CPU':>9}{'srv wait':>10}{'q/srv-CPU-s':>13}"
    )
    medians = {}
    per_cpu = {}
    for name in names:
        rates = [r["qps"] for r in results[name]]
        medians[name] = statistics.median(rates)
        per_cpu[name] = statistics.median(r["per_cpu_second"] for r in results[name])
        cpu = statistics.median(r["server_cpu"] for r in results[name])
        wait = statistics.median(r["server_wait"] for r in results[name])
        lost = int(sum(r["lost"] for r in results[name]))
        bad = int(sum(r["not_noerror"] for r in results[name]))
        print(
            f"{name:<18}{medians[name]:>12,.0f}{max(rates):>12,.0f}{lost:>8}{bad:>13}"
            f"{cpu:>9.0%}{wait:>10.1%}{per_cpu[name]:>13,.0f}"
        )
    print(
        "srv CPU: the server's CPU time (its processes, user + system) over the window; "
        "q/srv-CPU-s: queries answered per second of it, what one CPU running that "
        "server could answer were the load generator faster; srv wait: the time "
        "the server was runnable but waited for its CPU (other programs), over the window."
    )
    if "twisted" in medians:
        print()
        for name in names:
            print(
                f"  {name} / twisted: {medians[name] / medians['twisted']:.2f}x q/s, "
                f"{per_cpu[name] / per_cpu['twisted']:.2f}x per server-CPU-second"
            )
        if "torsion-uvloop" in medians:
            ratio = medians["torsion-uvloop"] / medians["twisted"]
            lost = sum(r["lost"] for r in results["torsion-uvloop"])
            met = ratio >= GOAL and lost == 0
            print(
                f"  goal: torsion-uvloop >= {GOAL:.1f}x twisted with no query lost: "
                f"{ratio:.2f}x, {int(lost)} lost: {'met' if met else 'not met'}"
            )


def driver_main(args: argparse.Namespace) -> None:
    names = list(CONTENDERS) if not args.only else args.only.split(",")
    for name in names:
        if name not in CONTENDERS:
            raise SystemExit(f"unknown contender {name}; choose from {', '.join(CONTENDERS)}")
    rounds = 1 if args.quick else args.rounds
    seconds = 2 if args.quick else args.seconds
    print("# torsion DNS server benchmark")
    print(f"Python {platform.python_version()} ({platform.python_implementation()})")
    print(
        f"uvloop {_pkg_version('uvloop')}, twisted {_pkg_version('twisted')}, "
        f"dnspython {_pkg_version('dnspython')}"
    )
    print(f"torsion from {_torsion_source()}")
    for program in ("dnsperf", "nsd"):
        package = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", program], capture_output=True, text=True
        )
        print(f"{program} {package.stdout.strip() or '(version unknown)'}")
    print(f"CPU count: {os.cpu_count()}  platform: {platform.platform()}")
    print(
        f"rounds: {rounds}, {seconds} s of dnsperf per contender per round "
        f"({CLIENTS} clients, UDP, 100 outstanding), server on CPU {SERVER_CPU}, "
        f"dnsperf on CPU {CLIENT_CPU}"
    )
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as directory:
        zone = os.path.join(directory, "example.bench.zone")
        Path(zone).write_text(zone_text())
        query_file = os.path.join(directory, "queries.txt")
        Path(query_file).write_text("".join(f"{n} {t}\n" for n, t in questions()))
        for r in range(rounds):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                result, busy, load = one_server(name, zone, query_file, seconds, directory)
                results[name].append(result)
                print(
                    f"round {r + 1} {name:<16} {result['qps']:>10,.0f} q/s  "
                    f"lost {int(result['lost'])}  srv CPU {result['server_cpu']:.0%} "
                    f"wait {result['server_wait']:.1%}  "
                    f"(CPUs busy before: {busy:.0%}, load average {load})",
                    flush=True,
                )
    report(names, results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode")
    server = sub.add_parser("server")
    server.add_argument("name")
    server.add_argument("--zone", required=True)
    server.add_argument("--cpu", type=int)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    if args.mode == "server":
        server_main(args)
    else:
        driver_main(args)


if __name__ == "__main__":
    main()
