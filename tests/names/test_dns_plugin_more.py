"""``torsion dns`` with --forward, --resolv-conf, --cache, --hosts-file and --pyzone.

The upstream is a DNSServer in the test's own process (so that the test
counts what it is asked); the forwarding server is ``torsion dns`` in its
own, asked by dig.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import dns.name
import dns.rdatatype
import pytest
from _dns_peers import dig, kdig, records
from test_recursive import REAL, serving_hierarchy

from torsion.application._cli import main
from torsion.application._dns import DNS, _limits, _others
from torsion.application._plugins import option_values
from torsion.defer import Deferred
from torsion.internet import Reactor, server_from_string
from torsion.names._answer import Answer, Question
from torsion.names._cache import CacheResolver
from torsion.names._chain import ResolverChain
from torsion.names._client import DNSClient
from torsion.names._forward import ForwardingResolver
from torsion.names._limits import QueryLimits
from torsion.names._pyzone import PythonZoneAuthority, load_python_zone
from torsion.names._recursive import RecursiveResolver
from torsion.names._server import DNSServer
from torsion.names._zone import Authority, ZoneError
from torsion.testing import Clock

BOTH_LOOPS = pytest.mark.parametrize(
    "loop",
    [
        pytest.param("asyncio", marks=pytest.mark.torsion_loop("asyncio")),
        pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop")),
    ],
)

UPSTREAM = """\
$ORIGIN upstream.test.
$TTL 600
@       IN SOA ns hostmaster 1 7200 900 1209600 120
        IN NS  ns
ns      IN A   192.0.2.53
www     IN A   192.0.2.80
"""

LOCAL = """\
$ORIGIN local.test.
$TTL 3600
@       IN SOA ns hostmaster 1 7200 900 1209600 300
        IN NS  ns
ns      IN A   192.0.2.1
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


class Counting:
    def __init__(self, resolver: Authority) -> None:
        self.resolver = resolver
        self.asked: list[Question] = []

    def query(self, q: Question) -> Deferred[Answer]:
        self.asked.append(q)
        return self.resolver.query(q)


class Program:
    """``torsion dns`` in a child process, read line by line without blocking the loop."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port

    @classmethod
    async def start(cls, loop: str, *args: str) -> Program:
        port = free_port()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "torsion",
            "dns",
            "--port",
            str(port),
            "--reactor",
            loop,
            *args,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        program = cls(process, port)
        await program.wait_for(rf"listening on 127\.0\.0\.1:{port}; try: dig")
        return program

    async def wait_for(self, pattern: str) -> str:
        assert self.process.stderr is not None
        while True:
            line = await asyncio.wait_for(self.process.stderr.readline(), 20)
            if not line:
                raise AssertionError(f"the server exited before logging {pattern!r}")
            text = line.decode()
            if re.search(pattern, text):
                return text

    async def stop(self) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        assert self.process.stderr is not None
        await asyncio.wait_for(self.process.stderr.read(), 20)
        return await asyncio.wait_for(self.process.wait(), 20)


@BOTH_LOOPS
async def test_forward_with_cache_and_hosts(reactor: Reactor, loop: str, tmp_path: Path) -> None:
    counting = Counting(Authority.from_text(UPSTREAM))
    upstream = DNSServer([counting])
    ports = upstream.listen(reactor, 0)
    zone = tmp_path / "local.zone"
    zone.write_text(LOCAL)
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.7 printer.lan\n")
    program = await Program.start(
        loop,
        "--bindzone",
        str(zone),
        "--forward",
        f"127.0.0.1:{ports.port}",
        "--cache",
        "--hosts-file",
        str(hosts),
    )
    try:
        for transport in ("+notcp", "+tcp"):
            www = await dig(program.port, transport, "www.upstream.test.", "A")
            assert re.search(r"flags: qr rd ra;", www)
            assert records(www) == ["www.upstream.test. 600 IN A 192.0.2.80"]
        www_a = Question(dns.name.from_text("www.upstream.test."), dns.rdatatype.A)
        assert counting.asked == [www_a]  # the second came from the cache
        printer = await dig(program.port, "printer.lan.", "A")
        assert records(printer) == ["printer.lan. 60 IN A 192.0.2.7"]
        local = await dig(program.port, "ns.local.test.", "A")
        assert re.search(r"flags: qr aa rd ra;", local)
        assert counting.asked == [www_a]
    finally:
        assert await program.stop() == 0
        await ports.stop_listening()


def test_resolv_conf_names_the_upstream_servers(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 192.0.2.1\nnameserver 2001:db8::1\noptions timeout:3 attempts:4\n")
    options = {
        "forward": [("198.51.100.1", 5353)],
        "resolv_conf": str(conf),
        "cache": True,
        "hosts_file": None,
        "recursive": False,
        "root_hints": None,
        "qname_minimisation": False,
        "forward_tls": [],
        "forward_tls_ca": None,
        "forward_https": None,
        "forward_https_ca": None,
    }
    others, recursive, closers = _others(Clock(), options, "127.0.0.1", 53)  # type: ignore[arg-type]
    assert recursive
    assert closers == []
    [chain] = others
    assert isinstance(chain, ResolverChain)
    cache, forwarder = chain.resolvers
    assert isinstance(cache, CacheResolver)
    assert isinstance(forwarder, ForwardingResolver)
    client = forwarder.client
    assert isinstance(client, DNSClient)
    # --forward first, then resolv.conf's, with resolv.conf's patience.
    assert client.servers == (("198.51.100.1", 5353), ("192.0.2.1", 53), ("2001:db8::1", 53))
    assert (client.timeout, client.attempts) == (3, 4)


def test_bad_forwarding_options_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = str(free_port())
    assert main(["dns", "--port", port]) == 2
    assert "give a zone to serve" in capsys.readouterr().err
    assert main(["dns", "--port", port, "--cache", "--hosts-file", "/dev/null"]) == 2
    assert "--cache keeps what upstream servers answer" in capsys.readouterr().err
    assert main(["dns", "--port", port, "--forward", f"127.0.0.1:{port}"]) == 2
    assert "is this server itself" in capsys.readouterr().err
    everywhere = ["--interface", "0.0.0.0", "--forward", f"127.0.0.1:{port}"]
    assert main(["dns", "--port", port, *everywhere]) == 2
    assert "is this server itself" in capsys.readouterr().err
    missing = str(tmp_path / "missing")
    assert main(["dns", "--port", port, "--resolv-conf", missing]) == 2
    assert "--resolv-conf: cannot read" in capsys.readouterr().err
    for bad in ("example.org", "127.0.0.1:0", "[::1]x", "127.0.0.1:dns"):
        with pytest.raises(SystemExit) as exit_info:
            main(["dns", "--port", port, "--forward", bad])
        assert exit_info.value.code == 2
        assert f"--forward: {bad!r}" in capsys.readouterr().err


def test_bad_recursive_options_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = str(free_port())
    both = ["--recursive", "--forward", "192.0.2.1"]
    assert main(["dns", "--port", port, *both]) == 2
    assert "give it or --forward/--resolv-conf, not both" in capsys.readouterr().err
    assert main(["dns", "--port", port, "--recursive", "--cache"]) == 2
    assert "--recursive keeps a cache of its own" in capsys.readouterr().err
    hints = tmp_path / "named.root"
    hints.write_text(".  3600000 NS ns.nic.\nns.nic. 3600000 A 192.0.2.1\n")
    assert main(["dns", "--port", port, "--root-hints", str(hints)]) == 2
    assert "--root-hints names the root servers for --recursive" in capsys.readouterr().err
    assert main(["dns", "--port", port, "--qname-minimisation"]) == 2
    assert "--qname-minimisation is a way of --recursive" in capsys.readouterr().err
    missing = tmp_path / "missing.root"
    assert main(["dns", "--port", port, "--recursive", "--root-hints", str(missing)]) == 2
    assert "--root-hints: " in capsys.readouterr().err
    hints.write_text("not a zone at all (\n")
    assert main(["dns", "--port", port, "--recursive", "--root-hints", str(hints)]) == 2
    assert "--root-hints: not valid root hints" in capsys.readouterr().err


def test_recursive_resolves_from_the_root_hints_and_closes_on_stop(tmp_path: Path) -> None:
    hints = tmp_path / "named.root"
    hints.write_text(".  3600000 NS ns.nic.\nns.nic. 3600000 A 192.0.2.1\n")
    options = {
        "forward": [],
        "resolv_conf": None,
        "cache": False,
        "hosts_file": None,
        "recursive": True,
        "root_hints": str(hints),
        "qname_minimisation": True,
        "forward_tls": [],
        "forward_tls_ca": None,
        "forward_https": None,
        "forward_https_ca": None,
    }
    clock = Clock()
    others, recursive, [close] = _others(clock, options, "127.0.0.1", 53)  # type: ignore[arg-type]
    assert recursive
    [chain] = others
    assert isinstance(chain, ResolverChain)
    [resolver] = chain.resolvers
    assert isinstance(resolver, RecursiveResolver)
    assert resolver.hints == {dns.name.from_text("ns.nic."): ("192.0.2.1",)}
    assert close == resolver.close


PYZONE_TEXT = '''\
address = "192.0.2.80"
zone = f"""
$ORIGIN py.test.
$TTL 300
@    IN SOA ns hostmaster 5 7200 900 1209600 60
     IN NS  ns
ns   IN A   192.0.2.53
www  IN A   {address}
"""
'''

PYZONE_OBJECT = """\
import dns.zone

zone = dns.zone.from_text(
    "@ 300 IN SOA ns hostmaster 1 7200 900 1209600 60\\n"
    "@ 300 IN NS ns\\n"
    "ns 300 IN A 192.0.2.54\\n",
    origin="obj.test.",
)
"""


def ask(authority: Authority, name: str, rdtype: str = "A") -> list[str]:
    answer = authority.lookup(Question(dns.name.from_text(name), dns.rdatatype.from_text(rdtype)))
    return [str(rdata) for rrset in answer.answer for rdata in rrset]


def test_python_zones_as_text_and_as_zone_objects(tmp_path: Path) -> None:
    text = tmp_path / "text.py"
    text.write_text(PYZONE_TEXT)
    authority = PythonZoneAuthority(text)
    assert authority.origin == dns.name.from_text("py.test.")
    assert ask(authority, "www.py.test.") == ["192.0.2.80"]
    text.write_text(PYZONE_TEXT.replace("192.0.2.80", "192.0.2.81"))
    authority.reload()
    assert ask(authority, "www.py.test.") == ["192.0.2.81"]
    obj = tmp_path / "obj.py"
    obj.write_text(PYZONE_OBJECT)
    # A relativized zone object: names inside records come out absolute.
    by_object = PythonZoneAuthority(obj)
    assert ask(by_object, "obj.test.", "NS") == ["ns.obj.test."]
    assert ask(by_object, "ns.obj.test.") == ["192.0.2.54"]
    origin = tmp_path / "origin.py"
    origin.write_text(
        'origin = "o.test."\nzone = "@ 60 IN SOA ns h 1 2 3 4 5\\n@ 60 IN NS ns\\n"\n'
    )
    assert PythonZoneAuthority(origin).origin == dns.name.from_text("o.test.")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("x = 1\n", "must define zone as a dns.zone.Zone or BIND text, not nothing"),
        ("zone = 42\n", "not int"),
        ("raise RuntimeError('boom')\n", "failed: RuntimeError: boom"),
        ("import sys\nsys.exit(3)\n", "failed: SystemExit: 3"),
        ("zone = 'not a zone at all'\n", "zone file"),
        ("origin = 5\nzone = ''\n", "origin must be a string"),
        ("zone = (\n", "failed: SyntaxError"),
    ],
)
def test_bad_python_zones_are_zone_errors(tmp_path: Path, source: str, message: str) -> None:
    path = tmp_path / "bad.py"
    path.write_text(source)
    with pytest.raises(ZoneError, match=re.escape(message)):
        load_python_zone(path)


def test_a_bad_reload_keeps_the_zone(tmp_path: Path) -> None:
    path = tmp_path / "zone.py"
    path.write_text(PYZONE_TEXT)
    authority = PythonZoneAuthority(path)
    path.write_text("raise ValueError('half-written')\n")
    with pytest.raises(ZoneError, match="half-written"):
        authority.reload()
    path.write_text(PYZONE_TEXT.replace("py.test.", "other.test."))
    with pytest.raises(ZoneError, match=r"now defines zone other\.test\."):
        authority.reload()
    assert ask(authority, "www.py.test.") == ["192.0.2.80"]
    with pytest.raises(ZoneError, match="cannot read"):
        load_python_zone(tmp_path / "missing.py")


@BOTH_LOOPS
async def test_pyzone_served_and_reloaded_on_sighup(loop: str, tmp_path: Path) -> None:
    path = tmp_path / "zone.py"
    path.write_text(PYZONE_TEXT)
    program = await Program.start(loop, "--pyzone", str(path))
    try:
        for transport in ("+notcp", "+tcp"):
            www = await dig(program.port, transport, "+norec", "www.py.test.", "A")
            assert re.search(r"flags: qr aa;", www)
            assert records(www) == ["www.py.test. 300 IN A 192.0.2.80"]
        path.write_text(PYZONE_TEXT.replace("192.0.2.80", "192.0.2.81"))
        program.process.send_signal(signal.SIGHUP)
        await program.wait_for(r"zone py\.test\. reloaded")
        www = await dig(program.port, "+norec", "www.py.test.", "A")
        assert records(www) == ["www.py.test. 300 IN A 192.0.2.81"]
        path.write_text("zone = None\n")
        program.process.send_signal(signal.SIGHUP)
        await program.wait_for(r"zone py\.test\. not reloaded")
        www = await dig(program.port, "+norec", "www.py.test.", "A")
        assert records(www) == ["www.py.test. 300 IN A 192.0.2.81"]
    finally:
        assert await program.stop() == 0


def test_a_bad_pyzone_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "zone.py"
    path.write_text("zone = 1\n")
    assert main(["dns", "--port", str(free_port()), "--pyzone", str(path)]) == 2
    assert "--pyzone: zone file" in capsys.readouterr().err


SECONDARY = """\
$ORIGIN sec.test.
$TTL 300
@       IN SOA ns hostmaster {serial} 3600 600 86400 60
        IN NS  ns
ns      IN A   192.0.2.53
host    IN A   {address}
"""


@BOTH_LOOPS
async def test_secondary_transferred_and_refreshed_on_sighup(reactor: Reactor, loop: str) -> None:
    primary = DNSServer(
        [Authority.from_text(SECONDARY.format(serial=1, address="192.0.2.80"))],
        allow_axfr=["127.0.0.1/32"],
    )
    ports = primary.listen(reactor, 0)
    program = await Program.start(loop, "--secondary", f"sec.test:127.0.0.1:{ports.port}")
    try:
        await program.wait_for(r"zone sec\.test\. transferred from 127\.0\.0\.1:\d+, serial 1")
        host = await dig(program.port, "+norec", "host.sec.test.", "A")
        assert re.search(r"flags: qr aa;", host)
        assert records(host) == ["host.sec.test. 300 IN A 192.0.2.80"]
        primary.resolvers[0] = Authority.from_text(
            SECONDARY.format(serial=2, address="192.0.2.81")
        )
        primary.zones_changed()
        program.process.send_signal(signal.SIGHUP)
        await program.wait_for(r"zone sec\.test\. transferred from 127\.0\.0\.1:\d+, serial 2")
        host = await dig(program.port, "+norec", "host.sec.test.", "A")
        assert records(host) == ["host.sec.test. 300 IN A 192.0.2.81"]
    finally:
        assert await program.stop() == 0
        await ports.stop_listening()


async def test_a_secondary_without_its_primary_is_servfail(tmp_path: Path) -> None:
    program = await Program.start("asyncio", "--secondary", f"sec.test:127.0.0.1:{free_port()}")
    try:
        await program.wait_for(r"zone sec\.test\.: no transfer from 127\.0\.0\.1")
        host = await dig(program.port, "+norec", "host.sec.test.", "A")
        assert "status: SERVFAIL" in host
        other = await dig(program.port, "+norec", "example.org.", "A")
        assert "status: REFUSED" in other
    finally:
        assert await program.stop() == 0


def test_bad_secondaries_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    port = str(free_port())
    for bad in ("sec.test", "sec.test:primary.example", ":127.0.0.1"):
        with pytest.raises(SystemExit) as exit_info:
            main(["dns", "--port", port, "--secondary", bad])
        assert exit_info.value.code == 2
        assert f"--secondary: {bad!r}" in capsys.readouterr().err
    assert main(["dns", "--port", port, "--secondary", f"{'x' * 64}.test:127.0.0.1"]) == 2
    assert "--secondary: " in capsys.readouterr().err


@BOTH_LOOPS
async def test_recursive_command_resolves_a_local_hierarchy(
    reactor: Reactor, loop: str, tmp_path: Path
) -> None:
    # The servers of a hierarchy are reached on port 53 (glue has no port).
    if os.geteuid() != 0:
        pytest.skip("needs root to serve a hierarchy on port 53")
    try:
        hierarchy = serving_hierarchy(reactor, tmp_path, port=53)
        await hierarchy.__aenter__()
    except OSError as exc:
        pytest.skip(f"127.0.0.x:53 is taken: {exc}")
    try:
        hints = tmp_path / "named.root"
        hints.write_text(f".  3600000 NS ns.nic.\nns.nic. 3600000 A {REAL['root']}\n")
        program = await Program.start(loop, "--recursive", "--root-hints", str(hints))
        try:
            alias = await dig(program.port, "alias.example.test.", "A")
            assert re.search(r"flags: qr rd ra;", alias)
            assert [line.split(None, 2)[2] for line in records(alias)] == [
                "IN CNAME www.other.test.",
                "IN A 192.0.2.2",
            ]
            missing = await dig(program.port, "+tcp", "nothing.example.test.", "A")
            assert "status: NXDOMAIN" in missing
        finally:
            assert await program.stop() == 0
    finally:
        await hierarchy.__aexit__(None, None, None)


DOT_NAME = "dns.example.test"


@pytest.fixture(scope="module")
def dot_certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A CA's certificate, and a DNS server's certificate and key, as PEM files."""
    import trustme

    directory = tmp_path_factory.mktemp("dot")
    ca = trustme.CA()
    leaf = ca.issue_cert(DOT_NAME, "127.0.0.1")
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    ca.cert_pem.write_to_path(str(paths[0]))
    leaf.cert_chain_pems[0].write_to_path(str(paths[1]))
    leaf.private_key_pem.write_to_path(str(paths[2]))
    return paths


@BOTH_LOOPS
async def test_dns_over_tls_served_and_forwarded_to(
    reactor: Reactor, loop: str, tmp_path: Path, dot_certificates: tuple[Path, Path, Path]
) -> None:
    ca, cert, key = dot_certificates
    # Upstream: DNS over TLS only, in the test's process, counting questions.
    counting = Counting(Authority.from_text(UPSTREAM))
    upstream = DNSServer([counting])
    tls = f"tls:0:interface=127.0.0.1:certKey={cert}:privateKey={key}"
    upstream_port = await upstream.listen_stream(reactor, tls)
    zone = tmp_path / "local.zone"
    zone.write_text(LOCAL)
    program = await Program.start(
        loop,
        "--bindzone",
        str(zone),
        "--tls",
        tls,
        "--forward-tls",
        f"127.0.0.1:{upstream_port.port}#{DOT_NAME}",
        "--forward-tls-ca",
        str(ca),
        "--cache",
    )
    try:
        line = await program.wait_for(r"over TLS listening on 127\.0\.0\.1:\d+; try: kdig \+tls")
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert match is not None
        dot_port = int(match.group(1))
        # Its own zone over TLS, to a client that checks the certificate.
        local = await kdig(
            dot_port, "+tls", f"+tls-ca={ca}", f"+tls-hostname={DOT_NAME}", "ns.local.test.", "A"
        )
        assert "TLS session" in local
        assert records(local) == ["ns.local.test. 3600 IN A 192.0.2.1"]
        # Other names: forwarded over TLS (plain dig asks over UDP), then cached.
        for _ in range(2):
            www = await dig(program.port, "www.upstream.test.", "A")
            assert re.search(r"flags: qr rd ra;", www)
            assert records(www) == ["www.upstream.test. 600 IN A 192.0.2.80"]
        assert [str(q.name) for q in counting.asked] == ["www.upstream.test."]
    finally:
        assert await program.stop() == 0
        await upstream_port.stop_listening()


def test_bad_tls_options_are_usage_errors(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    dot_certificates: tuple[Path, Path, Path],
) -> None:
    port = str(free_port())
    zone = tmp_path / "local.zone"
    zone.write_text(LOCAL)
    serve = ["dns", "--port", port, "--bindzone", str(zone)]
    assert main([*serve, "--tls", f"tcp:{free_port()}"]) == 2
    assert "--tls: 'tcp:" in capsys.readouterr().err
    assert main([*serve, "--tls", "tls:853:certKey=/missing.pem"]) == 2
    assert "--tls: " in capsys.readouterr().err
    both = ["--forward", "192.0.2.1", "--forward-tls", "192.0.2.2"]
    assert main(["dns", "--port", port, *both]) == 2
    assert "give one way to ask upstream servers" in capsys.readouterr().err
    https = ["--forward-tls", "192.0.2.2", "--forward-https", "https://192.0.2.3/dns-query"]
    assert main(["dns", "--port", port, *https]) == 2
    assert "give one way to ask upstream servers" in capsys.readouterr().err
    assert main([*serve, "--forward-https", "http://192.0.2.3/dns-query"]) == 2
    assert "--forward-https: " in capsys.readouterr().err
    assert main([*serve, "--forward-https-ca", str(dot_certificates[0])]) == 2
    assert "--forward-https-ca checks the --forward-https servers" in capsys.readouterr().err
    assert main([*serve, "--doh", "tcp:8443"]) == 2
    assert "--doh: 'tcp:8443' is not a TLS endpoint such as tls:443:" in capsys.readouterr().err
    assert main([*serve, "--forward-tls-ca", str(dot_certificates[0])]) == 2
    assert "--forward-tls-ca checks the --forward-tls servers" in capsys.readouterr().err
    missing = str(tmp_path / "missing.pem")
    assert main([*serve, "--forward-tls", "192.0.2.2", "--forward-tls-ca", missing]) == 2
    assert "--forward-tls-ca: cannot read" in capsys.readouterr().err
    for bad in ("example.org", "192.0.2.2#", "192.0.2.2:0"):
        with pytest.raises(SystemExit) as exit_info:
            main([*serve, "--forward-tls", bad])
        assert exit_info.value.code == 2
        assert "--forward-tls: " in capsys.readouterr().err


def test_forward_tls_servers_default_to_port_853() -> None:
    from torsion.application._dns import _tls_server

    assert _tls_server("192.0.2.1") == ("192.0.2.1", 853, None)
    assert _tls_server("192.0.2.1:8853#dns.example") == ("192.0.2.1", 8853, "dns.example")
    assert _tls_server("[2001:db8::1]#x.test") == ("2001:db8::1", 853, "x.test")
    assert _tls_server("[2001:db8::1]:54") == ("2001:db8::1", 54, None)
    assert _tls_server("2001:db8::1") == ("2001:db8::1", 853, None)


WEB_ZONE = """\
$ORIGIN web.test.
$TTL 300
@       IN SOA ns hostmaster 1 7200 900 1209600 300
        IN NS  ns
ns      IN A   127.0.0.1
www     IN A   127.0.0.1
"""


@BOTH_LOOPS
async def test_dns_over_https_served_and_forwarded_to(
    reactor: Reactor, loop: str, tmp_path: Path, dot_certificates: tuple[Path, Path, Path]
) -> None:
    from torsion.names import doh_site
    from torsion.testing import require_peer
    from torsion.web import Request, Resource, Site, handles

    curl = require_peer("curl", package="curl")
    ca, cert, key = dot_certificates
    tls = f"tls:0:interface=127.0.0.1:certKey={cert}:privateKey={key}"
    # Upstream: DNS over HTTPS only, in the test's process.
    counting = Counting(Authority.from_text(UPSTREAM))
    upstream = await server_from_string(reactor, tls).listen(
        doh_site(DNSServer([counting]), reactor=reactor)
    )

    class Hello(Resource):
        is_leaf = True

        @handles("GET")
        def get(self, request: Request) -> bytes:
            return b"hello " + request.headers.get(b"host", b"")

    web = await server_from_string(reactor, "tcp:0:interface=127.0.0.1").listen(
        Site(Hello(), reactor=reactor)
    )
    zone = tmp_path / "web.zone"
    zone.write_text(WEB_ZONE)
    program = await Program.start(
        loop,
        "--bindzone",
        str(zone),
        "--doh",
        tls,
        "--forward-https",
        f"https://127.0.0.1:{upstream.port}/dns-query",
        "--forward-https-ca",
        str(ca),
    )
    try:
        line = await program.wait_for(r"over HTTPS listening on 127\.0\.0\.1:\d+; try: curl")
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert match is not None
        # curl resolves the web server's name through the command's DoH.
        process = await asyncio.create_subprocess_exec(
            curl,
            "-sS",
            "--doh-url",
            f"https://127.0.0.1:{match.group(1)}/dns-query",
            "--cacert",
            str(ca),
            f"http://www.web.test:{web.port}/",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, err
        assert out == f"hello www.web.test:{web.port}".encode()
        # Names outside the zone: forwarded over DoH.
        www = await dig(program.port, "www.upstream.test.", "A")
        assert re.search(r"flags: qr rd ra;", www)
        assert records(www) == ["www.upstream.test. 600 IN A 192.0.2.80"]
        assert [str(q.name) for q in counting.asked] == ["www.upstream.test."]
    finally:
        assert await program.stop() == 0
        await upstream.stop_listening()
        await web.stop_listening()


def test_flood_limits_from_the_command_line(tmp_path: Path) -> None:
    zone = tmp_path / "local.zone"
    zone.write_text(LOCAL)

    def limits_of(**given: Any) -> QueryLimits:
        limits: QueryLimits = _limits(
            option_values(DNS.options, {"bindzone": [str(zone)], **given})
        )
        return limits

    defaults = limits_of()
    assert defaults == QueryLimits()
    assert defaults.udp_rate == 1000.0
    chosen = limits_of(
        udp_rate=50.0,
        udp_burst=10,
        max_connections=5,
        max_connections_per_client=0,
        exempt=["192.0.2.0/24"],
    )
    assert chosen.udp_rate == 50.0
    assert chosen.udp_burst == 10
    assert chosen.max_connections == 5
    assert chosen.max_connections_per_client is None
    assert chosen.exempt == (*QueryLimits().exempt, "192.0.2.0/24")
    assert limits_of(udp_rate=0.0).udp_rate is None
    assert DNS.build(Clock(), option_values(DNS.options, {"bindzone": [str(zone)]}))  # type: ignore[arg-type]


def test_bad_limit_options_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    zone = tmp_path / "local.zone"
    zone.write_text(LOCAL)
    serve = ["dns", "--port", str(free_port()), "--bindzone", str(zone)]
    for option, value, message in [
        ("--udp-rate", "-1", "--udp-rate: must be at least 0"),
        ("--udp-burst", "0", "--udp-burst: must be at least 1"),
        ("--max-connections", "0", "--max-connections: must be at least 1"),
        ("--exempt", "nowhere", "--exempt: 'nowhere' is not a network"),
        ("--allow-axfr", "nowhere", "--allow-axfr: 'nowhere' is not a network"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main([*serve, option, value])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
