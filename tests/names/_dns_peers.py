"""The real DNS programs the torsion.names tests talk to: dig, kdig and nsd."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import pytest

from torsion.testing import require_peer

_NSD_CONF = """\
server:
    ip-address: 127.0.0.1@{port}
    zonesdir: "{dir}"
    pidfile: "{dir}/nsd.pid"
    database: ""
    username: ""
    chroot: ""
    xfrdfile: "{dir}/xfrd.state"
    zonelistfile: "{dir}/zone.list"
    server-count: 1
    do-ip6: no
remote-control:
    control-enable: no
zone:
    name: {zone}
    zonefile: {zone}.zone
{provide_xfr}"""


def free_port() -> int:
    """A port free on 127.0.0.1 for TCP now (and, in practice, for UDP)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def ask(program: str, port: int, *args: str) -> str:
    """Run dig or kdig against 127.0.0.1:``port``; return its output."""
    process = await asyncio.create_subprocess_exec(
        program,
        "@127.0.0.1",
        "-p",
        str(port),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr
    return stdout.decode()


async def dig(port: int, *args: str, recursion: bool = True) -> str:
    """Ask with dig, once, waiting 5 s at most; ``recursion=False`` sends +norec."""
    program = require_peer("dig", package="bind9-dnsutils")
    norec = () if recursion else ("+norec",)
    return await ask(program, port, *norec, "+tries=1", "+time=5", *args)


async def kdig(port: int, *args: str) -> str:
    """Ask with kdig, once, without recursion, waiting 5 s at most."""
    program = require_peer("kdig", package="knot-dnsutils")
    return await ask(program, port, "+norec", "+retry=0", "+time=5", *args)


def records(output: str) -> list[str]:
    """The record lines of dig's or kdig's output, spaces collapsed."""
    return [
        " ".join(line.split())
        for line in output.splitlines()
        if line.strip() and not line.startswith(";")
    ]


@contextlib.contextmanager
def running_nsd(
    directory: Path, zone: str, zone_text: str, *, provide_xfr: bool = False
) -> Iterator[int]:
    """Run nsd serving ``zone`` from ``zone_text`` on 127.0.0.1; yield its port.

    It is waited for by asking it (each try waits for the answer itself, up
    to 0.2 s), not for a guessed delay, and stopped by its PID.
    """
    program = require_peer("nsd", package="nsd")
    (directory / f"{zone}.zone").write_text(zone_text)
    port = free_port()
    conf = directory / "nsd.conf"
    xfr = "    provide-xfr: 127.0.0.1 NOKEY\n" if provide_xfr else ""
    conf.write_text(_NSD_CONF.format(port=port, dir=directory, zone=zone, provide_xfr=xfr))
    log = directory / "nsd.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [program, "-d", "-c", str(conf)], stdout=output, stderr=subprocess.STDOUT
        )
    try:
        query = dns.message.make_query(f"{zone}.", "SOA")
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                pytest.fail(f"nsd exited with {process.returncode}: {log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"nsd did not answer within 15 s: {log.read_text()}")
            try:
                dns.query.udp(query, "127.0.0.1", port=port, timeout=0.2)
            except (dns.exception.Timeout, OSError):
                continue
            break
        yield port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a wedged nsd
            process.kill()
            process.wait()


@contextlib.contextmanager
def running_nsd_at(
    directory: Path, zone: str, zone_text: str, address: str, port: int
) -> Iterator[None]:
    """Run nsd serving ``zone`` on ``address``:``port`` (UDP and TCP), as ``running_nsd`` does.

    Raises:
        OSError: With errno EADDRINUSE, when nsd could not bind that port
            (the caller may try another).
    """
    program = require_peer("nsd", package="nsd")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{zone}.zone").write_text(zone_text)
    conf = directory / "nsd.conf"
    text = _NSD_CONF.format(port=port, dir=directory, zone=zone, provide_xfr="")
    conf.write_text(text.replace("127.0.0.1@", f"{address}@"))
    log = directory / "nsd.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [program, "-d", "-c", str(conf)], stdout=output, stderr=subprocess.STDOUT
        )
    try:
        query = dns.message.make_query(f"{zone}.", "SOA")
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                if "in use" in log.read_text():
                    raise OSError(errno.EADDRINUSE, f"nsd: {address}:{port} is taken")
                pytest.fail(f"nsd exited with {process.returncode}: {log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"nsd did not answer within 15 s: {log.read_text()}")
            try:
                dns.query.udp(query, address, port=port, timeout=0.2)
            except (dns.exception.Timeout, OSError):
                continue
            break
        yield
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a wedged nsd
            process.kill()
            process.wait()


_UNBOUND_TLS_CONF = """\
server:
    interface: 127.0.0.1@{port}
    tls-port: {port}
    tls-service-key: "{key}"
    tls-service-pem: "{pem}"
    tcp-idle-timeout: {idle_ms}
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{dir}"
    pidfile: ""
    use-syslog: no
    logfile: ""
    do-ip6: no
    access-control: 127.0.0.0/8 allow
    module-config: "iterator"
    local-zone: "{zone}" static
{local_data}
remote-control:
    control-enable: no
"""


@contextlib.contextmanager
def running_unbound_tls(
    directory: Path,
    zone: str,
    records: list[str],
    *,
    key: Path,
    pem: Path,
    idle_ms: int = 30000,
) -> Iterator[int]:
    """Run unbound serving DNS over TLS only on 127.0.0.1; yield its port.

    unbound answers ``zone`` itself from ``records`` (its ``local-data``, as
    "name ttl IN type data" lines) with the certificate chain ``pem`` and
    its ``key``, and closes connections idle for ``idle_ms``. It is waited
    for by asking it over TLS (each try waits for the answer itself, up to
    0.5 s) and stopped by its PID.
    """
    program = require_peer("unbound", package="unbound")
    port = free_port()
    conf = directory / "unbound.conf"
    local_data = "\n".join(f'    local-data: "{record}"' for record in records)
    conf.write_text(
        _UNBOUND_TLS_CONF.format(
            port=port,
            key=key,
            pem=pem,
            idle_ms=idle_ms,
            dir=directory,
            zone=zone,
            local_data=local_data,
        )
    )
    log = directory / "unbound.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [program, "-d", "-c", str(conf)], stdout=output, stderr=subprocess.STDOUT
        )
    # Only to see that it serves: the tests check certificates themselves.
    probe_context = ssl.create_default_context()
    probe_context.check_hostname = False
    probe_context.verify_mode = ssl.CERT_NONE
    try:
        query = dns.message.make_query(zone, "SOA")
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                pytest.fail(f"unbound exited with {process.returncode}: {log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"unbound did not answer within 15 s: {log.read_text()}")
            try:
                dns.query.tls(
                    query, "127.0.0.1", port=port, timeout=0.5, ssl_context=probe_context
                )
            except (dns.exception.Timeout, OSError):
                continue
            break
        yield port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a wedged unbound
            process.kill()
            process.wait()
