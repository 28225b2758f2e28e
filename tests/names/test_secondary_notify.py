"""Secondary zones with nsd as the primary: NOTIFY heard, the copy served by AXFR and IXFR."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import pytest
from _dns_peers import _NSD_CONF, dig, free_port, records

from torsion.internet import Reactor
from torsion.names._secondary import SecondaryAuthority
from torsion.names._server import DNSServer
from torsion.testing import require_peer

BOTH_LOOPS = pytest.mark.parametrize(
    "loop",
    [
        pytest.param("asyncio", marks=pytest.mark.torsion_loop("asyncio")),
        pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop")),
    ],
)

ZONE = """\
$ORIGIN notify.test.
$TTL 3600
@       IN SOA ns1 hostmaster {serial} 3600 600 86400 300
        IN NS  ns1
ns1     IN A   192.0.2.53
host    IN A   {address}
"""


class Primary:
    """nsd serving one zone, transfers allowed to 127.0.0.1, NOTIFY sent to a port of it."""

    def __init__(self, process: subprocess.Popen[bytes], zone_file: Path, port: int) -> None:
        self.process = process
        self.zone_file = zone_file
        self.port = port

    def change(self, text: str) -> None:
        """Rewrite the zone file and have nsd reload it (SIGHUP), which sends NOTIFY."""
        before = self.zone_file.stat().st_mtime
        self.zone_file.write_text(text)
        # nsd reloads a file whose mtime changed: make sure it did.
        os.utime(self.zone_file, (before + 10, before + 10))
        self.process.send_signal(signal.SIGHUP)


@contextlib.contextmanager
def nsd_notifying(directory: Path, zone_text: str, notify_port: int) -> Iterator[Primary]:
    """Run nsd as the primary of notify.test., sending NOTIFY to 127.0.0.1:``notify_port``."""
    program = require_peer("nsd", package="nsd")
    zone_file = directory / "notify.test.zone"
    zone_file.write_text(zone_text)
    port = free_port()
    extra = (
        "    provide-xfr: 127.0.0.1 NOKEY\n"
        f"    notify: 127.0.0.1@{notify_port} NOKEY\n"
        "    notify-retry: 5\n"
    )
    conf = directory / "nsd.conf"
    conf.write_text(
        _NSD_CONF.format(port=port, dir=directory, zone="notify.test", provide_xfr=extra)
    )
    log = directory / "nsd.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [program, "-d", "-c", str(conf)], stdout=output, stderr=subprocess.STDOUT
        )
    try:
        query = dns.message.make_query("notify.test.", "SOA")
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
        yield Primary(process, zone_file, port)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a wedged nsd
            process.kill()
            process.wait()


async def serial_reaches(secondary: SecondaryAuthority, serial: int) -> None:
    """Wait for the secondary's copy to have ``serial`` (each check or transfer ends a wait)."""
    while secondary.serial != serial:
        await secondary.next_update()


@BOTH_LOOPS
async def test_notify_from_nsd_refreshes_the_secondary_at_once(
    reactor: Reactor, loop: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    first = ZONE.format(serial=1, address="192.0.2.1")
    with nsd_notifying(tmp_path, first, port) as nsd:
        # REFRESH an hour away, in the SOA and here: only a NOTIFY brings the change.
        secondary = SecondaryAuthority(
            reactor, "notify.test.", ("127.0.0.1", nsd.port), refresh=3600, retry=3600
        )
        server = DNSServer([secondary], allow_axfr=["127.0.0.1"])
        ports = server.listen(reactor, port)
        try:
            loaded = secondary.next_update()
            secondary.start()
            assert await asyncio.wait_for(loaded, 15)
            assert records(await dig(port, "+norec", "host.notify.test.", "A")) == [
                "host.notify.test. 3600 IN A 192.0.2.1"
            ]
            with caplog.at_level(logging.INFO, logger="torsion.names"):
                nsd.change(ZONE.format(serial=2, address="192.0.2.2"))
                await asyncio.wait_for(serial_reaches(secondary, 2), 20)
            assert "NOTIFY from 127.0.0.1" in caplog.text
            assert records(await dig(port, "+norec", "host.notify.test.", "A")) == [
                "host.notify.test. 3600 IN A 192.0.2.2"
            ]
            # The secondary's copy goes on to others by AXFR, and by IXFR AXFR-style.
            axfr = records(await dig(port, "+tcp", "notify.test.", "AXFR"))
            assert axfr[0] == axfr[-1]
            assert axfr[0].split()[6] == "2"
            assert "host.notify.test. 3600 IN A 192.0.2.2" in axfr
            ixfr = records(await dig(port, "notify.test.", "IXFR=1"))
            assert ixfr == axfr
            current = records(await dig(port, "notify.test.", "IXFR=2"))
            assert current == [axfr[0]]
        finally:
            secondary.stop()
            await ports.stop_listening()


@BOTH_LOOPS
async def test_notify_from_another_address_is_refused_by_a_real_server(
    reactor: Reactor, loop: str
) -> None:
    # The primary is said to be 192.0.2.1: dig's NOTIFY from 127.0.0.1 is not heard.
    secondary = SecondaryAuthority(reactor, "notify.test.", ("192.0.2.1", 53))
    server = DNSServer([secondary])
    ports = server.listen(reactor, 0)
    try:
        refused = await dig(ports.port, "+norec", "+opcode=notify", "notify.test.", "SOA")
        assert "opcode: NOTIFY, status: REFUSED" in refused
        unknown = await dig(ports.port, "+norec", "+opcode=notify", "other.test.", "SOA")
        assert "opcode: NOTIFY, status: REFUSED" in unknown
    finally:
        await ports.stop_listening()
