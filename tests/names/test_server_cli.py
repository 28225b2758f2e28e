"""``torsion dns --bindzone``, run as an operator runs it, asked by dig and kdig."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from torsion.application._cli import main
from torsion.testing import require_peer

ZONE = """\
$ORIGIN example.test.
$TTL 3600
@       IN SOA ns1 hostmaster ( 2026112401 ; serial
                                7200 900 1209600 300 )
        IN NS  ns1
        IN MX  10 mail
ns1     IN A   192.0.2.53
mail    IN A   192.0.2.25
        IN AAAA 2001:db8::25
www     IN CNAME web
web     IN CNAME host
host    IN A   192.0.2.80
txt     IN TXT "hello world" "and more"
_sip._tcp IN SRV 0 5 5060 host
"""


def free_port() -> int:
    """A port free on both UDP and TCP 127.0.0.1 (a moment ago)."""
    for _ in range(20):
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise AssertionError("no port free on both UDP and TCP")


class Server:
    """``torsion dns`` in its own process; its log lines go to a queue."""

    def __init__(self, zone_file: Path, loop: str, *extra: str) -> None:
        self.zone_file = zone_file
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torsion",
                "dns",
                "--bindzone",
                str(zone_file),
                "--port",
                str(self.port),
                "--reactor",
                loop,
                *extra,
            ],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait_for(rf"listening on 127\.0\.0\.1:{self.port}; try: dig")

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)

    def wait_for(self, pattern: str) -> str:
        """The next log line matching ``pattern`` (the lines before it are skipped)."""
        while True:
            try:
                line = self.lines.get(timeout=20)
            except queue.Empty:
                raise AssertionError(f"no log line matched {pattern!r}") from None
            if re.search(pattern, line):
                return line

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=10)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self._reader.join(timeout=10)
            assert self.process.stderr is not None
            self.process.stderr.close()


@pytest.fixture(params=["asyncio", "uvloop"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    zone_file = tmp_path / "example.test.zone"
    zone_file.write_text(ZONE)
    running = Server(zone_file, str(request.param), "--allow-axfr", "127.0.0.0/8")
    try:
        yield running
    finally:
        assert running.stop() == 0


def dig(port: int, *args: str) -> str:
    program = require_peer("dig", package="bind9-dnsutils")
    result = subprocess.run(
        [program, "@127.0.0.1", "-p", str(port), "+norec", "+tries=1", "+time=5", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout


def kdig(port: int, *args: str) -> str:
    program = require_peer("kdig", package="knot-dnsutils")
    result = subprocess.run(
        [program, "@127.0.0.1", "-p", str(port), "+norec", "+retry=0", "+time=5", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout


def records(output: str) -> list[str]:
    """The record lines of dig's or kdig's output, fields joined by one space."""
    return [
        " ".join(line.split())
        for line in output.splitlines()
        if line.strip() and not line.startswith(";")
    ]


@pytest.mark.parametrize("transport", ["+notcp", "+tcp"])
def test_dig_answers_on_both_transports(server: Server, transport: str) -> None:
    output = dig(server.port, transport, "example.test.", "MX")
    assert "status: NOERROR" in output
    assert re.search(r"flags: qr aa;", output)
    assert records(output)[:3] == [
        # $ORIGIN completes "mail"; the blank owner of the AAAA line is mail's.
        "example.test. 3600 IN MX 10 mail.example.test.",
        "mail.example.test. 3600 IN A 192.0.2.25",
        "mail.example.test. 3600 IN AAAA 2001:db8::25",
    ]
    assert records(dig(server.port, transport, "txt.example.test.", "TXT")) == [
        'txt.example.test. 3600 IN TXT "hello world" "and more"'
    ]
    chain = dig(server.port, transport, "www.example.test.", "A")
    assert records(chain) == [
        "www.example.test. 3600 IN CNAME web.example.test.",
        "web.example.test. 3600 IN CNAME host.example.test.",
        "host.example.test. 3600 IN A 192.0.2.80",
    ]
    nxdomain = dig(server.port, transport, "nothing.example.test.", "A")
    assert "status: NXDOMAIN" in nxdomain
    assert re.search(r"flags: qr aa;", nxdomain)
    assert records(nxdomain) == [
        "example.test. 300 IN SOA ns1.example.test. hostmaster.example.test. "
        "2026112401 7200 900 1209600 300"
    ]
    nodata = dig(server.port, transport, "host.example.test.", "AAAA")
    assert "status: NOERROR" in nodata
    assert re.search(r"flags: qr aa;", nodata)
    assert "ANSWER: 0," in nodata
    assert records(nodata)[0].startswith("example.test. 300 IN SOA ")


def test_kdig_answers_and_refuses_other_names(server: Server) -> None:
    for transport in ("+notcp", "+tcp"):
        srv = kdig(server.port, transport, "_sip._tcp.example.test.", "SRV")
        assert "status: NOERROR" in srv
        assert records(srv) == [
            "_sip._tcp.example.test. 3600 IN SRV 0 5 5060 host.example.test.",
            "host.example.test. 3600 IN A 192.0.2.80",
        ]
        refused = kdig(server.port, transport, "example.org.", "A")
        assert "status: REFUSED" in refused


def test_axfr_to_an_allowed_network(server: Server) -> None:
    output = dig(server.port, "example.test.", "AXFR")
    lines = records(output)
    assert lines[0].startswith("example.test. 3600 IN SOA ")
    assert lines[-1] == lines[0]
    assert 'txt.example.test. 3600 IN TXT "hello world" "and more"' in lines
    assert len(lines) == 12  # 10 records and the SOA twice
    kdig_lines = records(kdig(server.port, "example.test.", "AXFR"))
    assert sorted(kdig_lines) == sorted(lines)


def test_sighup_reloads_the_zone_file(server: Server) -> None:
    assert records(dig(server.port, "host.example.test.", "A")) == [
        "host.example.test. 3600 IN A 192.0.2.80"
    ]
    server.zone_file.write_text(ZONE.replace("192.0.2.80", "192.0.2.81"))
    server.process.send_signal(signal.SIGHUP)
    server.wait_for(r"zone example\.test\. reloaded")
    assert records(dig(server.port, "host.example.test.", "A")) == [
        "host.example.test. 3600 IN A 192.0.2.81"
    ]
    # A broken file is logged, and the zone is served as it was.
    server.zone_file.write_text("$ORIGIN example.test.\nthis is not a zone\n")
    server.process.send_signal(signal.SIGHUP)
    server.wait_for(r"zone example\.test\. not reloaded")
    assert records(dig(server.port, "host.example.test.", "A")) == [
        "host.example.test. 3600 IN A 192.0.2.81"
    ]


def test_axfr_refused_without_allow(tmp_path: Path) -> None:
    zone_file = tmp_path / "zone"
    zone_file.write_text(ZONE)
    server = Server(zone_file, "asyncio")
    try:
        output = dig(server.port, "example.test.", "AXFR")
        assert "Transfer failed" in output
        server.wait_for(r"zone transfer of example\.test\. refused to 127\.0\.0\.1")
    finally:
        assert server.stop() == 0


def test_bad_zone_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    zone_file = tmp_path / "broken.zone"
    zone_file.write_text("$ORIGIN broken.test.\n@ IN A 192.0.2.1\n")
    assert main(["dns", "--bindzone", str(zone_file), "--port", str(free_port())]) == 2
    assert "--bindzone" in capsys.readouterr().err
    for bad in (["--port", "0"], ["--allow-axfr", "nowhere"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["dns", "--bindzone", str(zone_file), *bad])
        assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--port: must be within 1 to 65535, not 0" in err
    assert "--allow-axfr: 'nowhere' is not a network" in err
