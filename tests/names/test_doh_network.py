"""DNS over HTTPS on 127.0.0.1, both loops: curl and DoHResolver against DoHResource, and dnsdist.

The server is a ``Site`` on a ``tls:`` endpoint (trustme certificates)
publishing ``DoHResource`` at ``/dns-query``. curl's ``--doh-url`` resolves
the host of an http URL through it, a name no other resolver here knows;
``DoHResolver`` asks it with POST and GET, and asks dnsdist's DoH front
(h2o, which speaks HTTP/1.1 too) in front of a torsion DNS server, and
unbound's, which speaks HTTP/2 only. kdig's ``+https`` asks over HTTP/2.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
import trustme

from torsion.defer import Deferred, gather
from torsion.internet import Address, Reactor, client_context, server_from_string
from torsion.names import Answer, Authority, DNSServer, ForwardingResolver, QueryLimits, Question
from torsion.names._doh import DoHError, DoHResolver, DoHResource
from torsion.testing import require_peer
from torsion.web import HTTPChannel, HTTPClient, Request, Resource, Site, handles

pytestmark = pytest.mark.integration

BOTH_LOOPS = pytest.mark.parametrize(
    "loop",
    [
        pytest.param("asyncio", marks=pytest.mark.torsion_loop("asyncio")),
        pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop")),
    ],
)

HOSTNAME = "dns.example.test"
ZONE = """\
$ORIGIN example.test.
$TTL 300
@       IN SOA ns1 hostmaster 5 7200 900 1209600 120
        IN NS  ns1
ns1     IN A   127.0.0.1
www     IN A   127.0.0.1
alias   60 IN CNAME www
mail    IN AAAA ::1
"""


@dataclass(frozen=True)
class Certificates:
    ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A CA, and a certificate for the DoH server's name and 127.0.0.1."""
    directory = tmp_path_factory.mktemp("doh")
    ca = trustme.CA()
    leaf = ca.issue_cert(HOSTNAME, "127.0.0.1")
    paths = Certificates(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    ca.cert_pem.write_to_path(str(paths.ca))
    leaf.cert_chain_pems[0].write_to_path(str(paths.cert))
    leaf.private_key_pem.write_to_path(str(paths.key))
    return paths


class TrackedChannel(HTTPChannel):
    """A server connection whose end the test waits for, so that nothing is left open."""

    def __init__(self, site: Site) -> None:
        super().__init__(site)
        self.closed: Deferred[None] = Deferred()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.closed.callback(None)


@contextlib.asynccontextmanager
async def serving(reactor: Reactor, endpoint: str, root: Resource) -> AsyncIterator[int]:
    """Serve ``root`` on the server ``endpoint`` string; yield the port."""
    site = Site(root, reactor=reactor)
    channels: list[TrackedChannel] = []

    def factory(address: Address) -> HTTPChannel:
        channel = TrackedChannel(site)
        channels.append(channel)
        return channel

    port = await server_from_string(reactor, endpoint).listen(factory)
    try:
        yield getattr(port.address, "port", 0)
    finally:
        await port.stop_listening()
        await asyncio.wait_for(gather([channel.closed for channel in channels]), 10)


def doh_root(resource: DoHResource) -> Resource:
    root = Resource()
    root.put_child("dns-query", resource)
    return root


def tls_endpoint(certificates: Certificates) -> str:
    return f"tls:0:interface=127.0.0.1:certKey={certificates.cert}:privateKey={certificates.key}"


def trusting(certificates: Certificates, reactor: Reactor) -> HTTPClient:
    context = client_context(ca_file=certificates.ca, alpn=("http/1.1",))
    return HTTPClient(reactor, tls_context=context)


def question(name: str, rdtype: str = "A") -> Question:
    return Question(dns.name.from_text(name), dns.rdatatype.RdataType.make(rdtype))


def texts(rrsets: list[dns.rrset.RRset]) -> list[str]:
    return [line for rrset in rrsets for line in rrset.to_text().splitlines()]


# -- DoHResolver against DoHResource --------------------------------------------------


@BOTH_LOOPS
@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_the_resolver_asks_the_resource_over_tls(
    reactor: Reactor, loop: str, method: str, certificates: Certificates
) -> None:
    resource = DoHResource(DNSServer([Authority.from_text(ZONE)]), clock=reactor)
    async with serving(reactor, tls_endpoint(certificates), doh_root(resource)) as port:
        client = trusting(certificates, reactor)
        # The certificate names 127.0.0.1 too: the client checks the address.
        resolver = DoHResolver(f"https://127.0.0.1:{port}/dns-query", client=client, method=method)
        try:
            answer = await resolver.query(question("alias.example.test."))
            assert answer.rcode == dns.rcode.NOERROR
            assert answer.authoritative
            assert texts(answer.answer) == [
                "alias.example.test. 60 IN CNAME www.example.test.",
                "www.example.test. 300 IN A 127.0.0.1",
            ]
            missing = await resolver.query(question("nothing.example.test."))
            assert missing.rcode == dns.rcode.NXDOMAIN
            assert [rrset.rdtype for rrset in missing.authority] == [dns.rdatatype.SOA]
            mail = await resolver.query(question("mail.example.test.", "AAAA"))
            assert texts(mail.answer) == ["mail.example.test. 300 IN AAAA ::1"]
            # One kept-alive connection carried the three.
            assert client.pool.open_count() == 1
            assert resource.in_flight == 0
        finally:
            await client.close()


@BOTH_LOOPS
async def test_the_resolver_refuses_a_server_it_does_not_trust(
    reactor: Reactor, loop: str, certificates: Certificates
) -> None:
    resource = DoHResource(DNSServer([Authority.from_text(ZONE)]), clock=reactor)
    async with serving(reactor, tls_endpoint(certificates), doh_root(resource)) as port:
        client = HTTPClient(reactor)  # the system's trust store, which has not our CA
        resolver = DoHResolver(f"https://127.0.0.1:{port}/dns-query", client=client)
        try:
            with pytest.raises(DoHError) as caught:
                await resolver.query(question("www.example.test."))
            assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
        finally:
            await client.close()


@BOTH_LOOPS
async def test_an_http_error_is_a_doh_error(
    reactor: Reactor, loop: str, certificates: Certificates
) -> None:
    resource = DoHResource(DNSServer([Authority.from_text(ZONE)]), clock=reactor)
    async with serving(reactor, tls_endpoint(certificates), doh_root(resource)) as port:
        client = trusting(certificates, reactor)
        resolver = DoHResolver(f"https://127.0.0.1:{port}/elsewhere", client=client)
        try:
            with pytest.raises(DoHError) as caught:
                await resolver.query(question("www.example.test."))
            assert caught.value.status == 404
        finally:
            await client.close()


# -- curl resolves through the resource -----------------------------------------------


class Hello(Resource):
    is_leaf = True

    @handles("GET")
    def get(self, request: Request) -> bytes:
        return f"hello {request.headers.get_str('host')}".encode()


async def run(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


class Counting:
    """Counts the questions a resolver is asked."""

    def __init__(self, authority: Authority) -> None:
        self.authority = authority
        self.asked: list[str] = []

    def query(self, question: Question) -> Deferred[Answer]:
        self.asked.append(str(question))
        return self.authority.query(question)


@BOTH_LOOPS
async def test_curl_resolves_a_name_through_the_resource(
    reactor: Reactor, loop: str, certificates: Certificates
) -> None:
    curl = require_peer("curl", package="curl")
    counting = Counting(Authority.from_text(ZONE))
    resource = DoHResource(DNSServer([counting]), clock=reactor)
    async with (
        serving(reactor, tls_endpoint(certificates), doh_root(resource)) as doh_port,
        serving(reactor, "tcp:0:interface=127.0.0.1", Hello()) as web_port,
    ):
        code, out, err = await run(
            curl,
            "-sS",
            "-v",
            "--doh-url",
            f"https://127.0.0.1:{doh_port}/dns-query",
            "--cacert",
            str(certificates.ca),
            f"http://www.example.test:{web_port}/",
        )
        assert code == 0, err
        assert out == f"hello www.example.test:{web_port}"
        # curl asked for both address families, over HTTP/1.1 (the endpoint
        # string offers no ALPN, so curl does not try HTTP/2).
        assert sorted(counting.asked) == ["www.example.test. A", "www.example.test. AAAA"]
        assert "DoH A: 127.0.0.1" in err
        assert re.search(r"POST /dns-query HTTP/1\.1", err)
        # A name the resource does not serve: curl cannot resolve it.
        code, _, err = await run(
            curl,
            "-sS",
            "--doh-url",
            f"https://127.0.0.1:{doh_port}/dns-query",
            "--cacert",
            str(certificates.ca),
            f"http://elsewhere.test:{web_port}/",
        )
        assert code == 6, err  # CURLE_COULDNT_RESOLVE_HOST


@BOTH_LOOPS
async def test_curl_refuses_a_doh_server_it_does_not_trust(
    reactor: Reactor, loop: str, certificates: Certificates
) -> None:
    curl = require_peer("curl", package="curl")
    resource = DoHResource(DNSServer([Authority.from_text(ZONE)]), clock=reactor)
    async with serving(reactor, tls_endpoint(certificates), doh_root(resource)) as doh_port:
        code, _, err = await run(
            curl,
            "-sS",
            "--doh-url",
            f"https://127.0.0.1:{doh_port}/dns-query",
            "http://www.example.test:1/",
        )
        assert code == 6, err
        assert resource.in_flight == 0


@BOTH_LOOPS
async def test_kdig_over_https(reactor: Reactor, loop: str, certificates: Certificates) -> None:
    # kdig speaks DNS over HTTPS on HTTP/2 only (nghttp2).
    kdig = require_peer("kdig", package="knot-dnsutils")
    resource = DoHResource(DNSServer([Authority.from_text(ZONE)]), clock=reactor)
    async with serving(reactor, tls_endpoint(certificates), doh_root(resource)) as doh_port:
        code, out, err = await run(
            kdig,
            "@127.0.0.1",
            "-p",
            str(doh_port),
            "+https=/dns-query",
            f"+tls-ca={certificates.ca}",
            f"+tls-hostname={HOSTNAME}",
            "+retry=0",
            "+time=5",
            "www.example.test.",
            "A",
        )
        assert code == 0, err
        assert "www.example.test. 300 IN A 127.0.0.1" in " ".join(out.split())


# -- DoHResolver against dnsdist ------------------------------------------------------

_DNSDIST_CONF = """\
setSecurityPollSuffix("")
setLocal("127.0.0.1:{dns_port}")
addDOHLocal("127.0.0.1:{doh_port}", "{cert}", "{key}", "/dns-query")
newServer({{address="127.0.0.1:{backend}"}})
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def running_dnsdist(
    directory: Path, certificates: Certificates, backend: int
) -> AsyncIterator[int]:
    """Run dnsdist with a DoH front on 127.0.0.1 passing queries to ``backend``; yield its port.

    It is waited for by reading its log until it listens for DoH and has
    found the backend up (the backend answers its health check from this
    test's loop, which stays free meanwhile), and stopped by its PID.
    """
    program = require_peer("dnsdist", package="dnsdist")
    doh_port = free_port()
    conf = directory / "dnsdist.conf"
    conf.write_text(
        _DNSDIST_CONF.format(
            dns_port=free_port(),
            doh_port=doh_port,
            cert=certificates.cert,
            key=certificates.key,
            backend=backend,
        )
    )
    process = await asyncio.create_subprocess_exec(
        program,
        "--supervised",
        "--disable-syslog",
        "-C",
        str(conf),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    log: list[str] = []

    async def ready() -> None:
        assert process.stdout is not None
        listening = up = False
        while not (listening and up):
            line = (await process.stdout.readline()).decode(errors="replace")
            if not line:
                pytest.fail("dnsdist exited: " + "".join(log))
            log.append(line)
            listening = listening or f"127.0.0.1:{doh_port} for DoH" in line
            up = up or "as 'up'" in line

    try:
        try:
            await asyncio.wait_for(ready(), 15)
        except TimeoutError:
            pytest.fail("dnsdist did not come up within 15 s: " + "".join(log))
        yield doh_port
    finally:
        if process.returncode is None:
            process.terminate()
        await asyncio.wait_for(process.communicate(), 10)


@BOTH_LOOPS
@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_the_resolver_asks_dnsdist(
    reactor: Reactor, loop: str, method: str, certificates: Certificates, tmp_path: Path
) -> None:
    backend = DNSServer([Authority.from_text(ZONE)], limits=QueryLimits(udp_rate=None))
    ports = backend.listen(reactor, 0)
    client = trusting(certificates, reactor)
    closed: Deferred[None] | None = None
    try:
        async with running_dnsdist(tmp_path, certificates, ports.port) as doh_port:
            resolver = DoHResolver(
                f"https://127.0.0.1:{doh_port}/dns-query", client=client, method=method
            )
            try:
                answer = await resolver.query(question("alias.example.test."))
                assert answer.rcode == dns.rcode.NOERROR
                assert texts(answer.answer) == [
                    "alias.example.test. 60 IN CNAME www.example.test.",
                    "www.example.test. 300 IN A 127.0.0.1",
                ]
                missing = await resolver.query(question("nothing.example.test."))
                assert missing.rcode == dns.rcode.NXDOMAIN
                assert [rrset.rdtype for rrset in missing.authority] == [dns.rdatatype.SOA]
            finally:
                # Closing the kept-alive TLS connection waits for dnsdist's
                # side of the TLS shutdown, which came only when it exited.
                closed = client.close()
    finally:
        await ports.stop_listening()
        if closed is None:
            closed = client.close()
        await asyncio.wait_for(closed, 10)


# -- a DNS server forwarding over DoH -------------------------------------------------


@BOTH_LOOPS
async def test_dig_asks_a_server_that_forwards_over_doh(
    reactor: Reactor, loop: str, certificates: Certificates
) -> None:
    dig = require_peer("dig", package="bind9-dnsutils")
    upstream = DoHResource(DNSServer([Authority.from_text(ZONE)]), clock=reactor)
    async with serving(reactor, tls_endpoint(certificates), doh_root(upstream)) as doh_port:
        client = trusting(certificates, reactor)
        resolver = DoHResolver(f"https://127.0.0.1:{doh_port}/dns-query", client=client)
        forwarder = DNSServer([ForwardingResolver(resolver)], recursive=True)
        ports = forwarder.listen(reactor, 0)
        try:
            code, out, err = await run(
                dig,
                "@127.0.0.1",
                "-p",
                str(ports.port),
                "+tries=1",
                "+time=5",
                "alias.example.test.",
                "A",
            )
            assert code == 0, err
            assert "status: NOERROR" in out
            # Passed on, not authoritative here (RFC 1035 section 4.1.1).
            assert re.search(r"flags: qr rd ra;", out)
            assert "www.example.test.\t300\tIN\tA\t127.0.0.1" in out
        finally:
            await ports.stop_listening()
            await client.close()


# -- DoHResolver against unbound ------------------------------------------------------

_UNBOUND_DOH_CONF = """\
server:
    interface: 127.0.0.1@{port}
    https-port: {port}
    tls-service-key: "{key}"
    tls-service-pem: "{cert}"
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
    local-zone: "example.test." static
    local-data: "www.example.test. 300 IN A 127.0.0.1"
remote-control:
    control-enable: no
"""


@BOTH_LOOPS
async def test_the_resolver_asks_unbound(
    reactor: Reactor, loop: str, certificates: Certificates, tmp_path: Path
) -> None:
    # unbound serves DoH over HTTP/2 only (it answers HTTP/1.1 with a close):
    # an answer means the client spoke HTTP/2, chosen by ALPN.
    program = require_peer("unbound", package="unbound")
    port = free_port()
    conf = tmp_path / "unbound.conf"
    conf.write_text(
        _UNBOUND_DOH_CONF.format(
            port=port, key=certificates.key, cert=certificates.cert, dir=tmp_path
        )
    )
    process = await asyncio.create_subprocess_exec(
        program,
        "-d",
        "-c",
        str(conf),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    context = client_context(ca_file=certificates.ca, alpn=("h2", "http/1.1"))
    client = HTTPClient(reactor, tls_context=context)
    try:
        assert process.stderr is not None
        log = b""
        while b"start of service" not in log:  # unbound's own word that it serves
            line = await asyncio.wait_for(process.stderr.readline(), 15)
            assert line, f"unbound exited: {log.decode(errors='replace')}"
            log += line
        resolver = DoHResolver(f"https://127.0.0.1:{port}/dns-query", client=client)
        answer = await resolver.query(question("www.example.test."))
        assert texts(answer.answer) == ["www.example.test. 300 IN A 127.0.0.1"]
    finally:
        await client.close()
        process.terminate()
        await asyncio.wait_for(process.communicate(), 10)
