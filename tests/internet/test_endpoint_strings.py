"""Endpoint strings: the grammar, the built-in kinds, plugins, and clear errors."""

from __future__ import annotations

import re
from importlib.metadata import EntryPoint
from typing import Any

import pytest
import trustme

from torsion.errors import EndpointStringError
from torsion.internet import (
    HostnameEndpoint,
    ServerTLS,
    StandardIOEndpoint,
    SystemdEndpoint,
    TCPServerEndpoint,
    TLSClientEndpoint,
    TLSServerEndpoint,
    UNIXClientEndpoint,
    UNIXServerEndpoint,
    _endpoint_strings,
    client_from_string,
    parse_endpoint_string,
    server_from_string,
)
from torsion.testing import MemoryReactor, success_result_of


def test_fields_options_and_escapes() -> None:
    parsed = parse_endpoint_string(r"tcp:80:interface=\:\:1:backlog=5")
    assert (parsed.kind, parsed.args, parsed.options) == (
        "tcp",
        ("80",),
        {"interface": "::1", "backlog": "5"},
    )
    parsed = parse_endpoint_string(r"x:a\=b:key=c=d:path=C\\dir")
    assert parsed.args == ("a=b",)  # an escaped "=" is no option
    assert parsed.options == {"key": "c=d", "path": "C\\dir"}
    assert parse_endpoint_string("stdio").args == ()
    assert parse_endpoint_string("tcp::").args == ("", "")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "no endpoint kind"),
        (":80", "no endpoint kind"),
        ("a=b:80", "no endpoint kind"),
        ("tcp:80\\", "lone backslash"),
        ("tcp:80:backlog=1:backlog=2", "'backlog' given twice"),
        ("tcp:interface=x:80", "positional field '80' after key=value"),
        ("tcp:80:=x", "an option has no name"),
    ],
)
def test_grammar_errors_name_the_problem(text: str, problem: str) -> None:
    with pytest.raises(EndpointStringError, match=problem) as info:
        parse_endpoint_string(text)
    assert info.value.text == text
    assert isinstance(info.value, ValueError)


def test_tcp_server_strings() -> None:
    reactor = MemoryReactor()
    endpoint = server_from_string(reactor, "tcp:8080:interface=127.0.0.1:backlog=7")
    assert isinstance(endpoint, TCPServerEndpoint)
    port = success_result_of(endpoint.listen(lambda _: None))
    [call] = reactor.tcp_servers
    assert (call.port, call.interface, call.backlog) == (8080, "127.0.0.1", 7)
    assert port is call.listener
    six = server_from_string(reactor, "tcp6:0")
    assert isinstance(six, TCPServerEndpoint)
    assert six.interface == "::"
    assert server_from_string(reactor, "tcp:port=25").port == 25  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("tcp", "needs port"),
        ("tcp:http", "port must be a whole number, not 'http'"),
        ("tcp:70000", "port must be 0 to 65535, not 70000"),
        ("tcp:80:backlog=0", "backlog must be 1"),
        ("tcp:80:colour=red", "unknown option 'colour' for tcp"),
        ("tcp:80:81", "too many fields"),
        ("tcp:80:port=81", "port given twice"),
        (
            "udp:53",
            "no server endpoint kind 'udp' "
            "\\(known: haproxy, ssl, stdio, systemd, tcp, tcp6, tls, unix",
        ),
        ("systemd", "needs index=N or name=NAME"),
        ("systemd:index=1:name=web", "one of them"),
        ("systemd:index=-1", "index must be 0"),
    ],
)
def test_bad_server_strings_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(EndpointStringError, match=problem):
        server_from_string(MemoryReactor(), text)


@pytest.fixture(scope="module")
def pem_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    ca = trustme.CA()
    cert = ca.issue_cert("example.test")
    where = tmp_path_factory.mktemp("pem")
    files = {
        "ca": str(where / "ca.pem"),
        "cert": str(where / "cert.pem"),
        "key": str(where / "key.pem"),
        "both": str(where / "both.pem"),
    }
    ca.cert_pem.write_to_path(files["ca"])
    cert.cert_chain_pems[0].write_to_path(files["cert"])
    cert.private_key_pem.write_to_path(files["key"])
    cert.private_key_and_cert_chain_pem.write_to_path(files["both"])
    return files


def test_tls_server_strings(pem_files: dict[str, str]) -> None:
    reactor = MemoryReactor()
    text = (
        f"tls:8443:interface=127.0.0.1:certKey={pem_files['cert']}:privateKey={pem_files['key']}"
    )
    endpoint = server_from_string(reactor, text + ":alpn=h2,http/1.1")
    assert isinstance(endpoint, TLSServerEndpoint)
    assert (endpoint.port, endpoint.interface) == (8443, "127.0.0.1")
    assert isinstance(endpoint.tls, ServerTLS)
    both = server_from_string(reactor, f"ssl:443:privateKey={pem_files['both']}")
    assert isinstance(both, TLSServerEndpoint)
    mutual = server_from_string(
        reactor,
        f"tls:443:privateKey={pem_files['both']}:caCerts={pem_files['ca']}:requireClientCert=yes",
    )
    assert isinstance(mutual, TLSServerEndpoint)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ("interface=127.0.0.1", "needs privateKey=FILE"),
        ("privateKey=/nonexistent/key.pem", "/nonexistent/key.pem"),
        ("privateKey={both}:requireClientCert=yes", "requireClientCert=yes needs caCerts="),
        ("privateKey={both}:requireClientCert=perhaps", "must be yes or no"),
        ("privateKey={both}:colour=red", "unknown option 'colour' for tls"),
        ("privateKey={ca}", "{ca}"),  # a certificate without its key
    ],
)
def test_bad_tls_server_strings(pem_files: dict[str, str], options: str, problem: str) -> None:
    with pytest.raises(EndpointStringError, match=re.escape(problem.format(**pem_files))):
        server_from_string(MemoryReactor(), "tls:443:" + options.format(**pem_files))


def test_unix_strings() -> None:
    server = server_from_string(MemoryReactor(), "unix:/run/echo.sock:mode=660:backlog=5")
    assert isinstance(server, UNIXServerEndpoint)
    assert (server.path, server.mode, server.backlog) == ("/run/echo.sock", 0o660, 5)
    named = server_from_string(MemoryReactor(), "unix:address=/run/echo.sock")
    assert isinstance(named, UNIXServerEndpoint)
    assert named.mode == 0o666
    client = client_from_string(MemoryReactor(), "unix:/run/echo.sock:timeout=2")
    assert isinstance(client, UNIXClientEndpoint)
    assert (client.path, client.timeout) == ("/run/echo.sock", 2.0)
    for bad, problem in [
        ("unix", "needs address"),
        ("unix:/x:mode=rw", "mode must be octal"),
        ("unix:/x:mode=99999", "mode must be octal"),
    ]:
        with pytest.raises(EndpointStringError, match=problem):
            server_from_string(MemoryReactor(), bad)


def test_systemd_strings() -> None:
    by_index = server_from_string(MemoryReactor(), "systemd:index=2")
    assert isinstance(by_index, SystemdEndpoint)
    assert by_index.index == 2
    by_name = server_from_string(MemoryReactor(), "systemd:name=web")
    assert isinstance(by_name, SystemdEndpoint)
    assert by_name.name == "web"


def test_stdio_strings() -> None:
    reactor = MemoryReactor()
    for text in ("stdio:", "stdio"):
        endpoint = server_from_string(reactor, text)
        assert isinstance(endpoint, StandardIOEndpoint)
        assert (endpoint.stdin, endpoint.stdout) == (0, 1)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("stdio:0", "stdio: takes no fields, not '0'"),
        ("stdio::", "stdio: takes no fields, not ':'"),
        ("stdio:stdin=3", "stdio: takes no fields, not stdin="),
        ("stdio::mode=1", "stdio: takes no fields, not mode="),
    ],
)
def test_stdio_strings_take_no_fields(text: str, problem: str) -> None:
    with pytest.raises(EndpointStringError, match=re.escape(problem)):
        server_from_string(MemoryReactor(), text)
    with pytest.raises(EndpointStringError, match="no client endpoint kind 'stdio'"):
        client_from_string(MemoryReactor(), "stdio:")


def test_client_strings() -> None:
    reactor = MemoryReactor()
    tcp = client_from_string(reactor, "tcp:example.test:80:timeout=5")
    assert isinstance(tcp, HostnameEndpoint)
    assert (tcp.host, tcp.port, tcp.timeout) == ("example.test", 80, 5.0)
    named = client_from_string(reactor, "tcp:host=example.test:port=80")
    assert isinstance(named, HostnameEndpoint)
    assert (named.host, named.port) == ("example.test", 80)
    tls = client_from_string(reactor, "tls:example.test:443:alpn=h2,http/1.1")
    assert isinstance(tls, TLSClientEndpoint)
    assert tls.server_hostname == "example.test"
    assert tls.context.check_hostname
    named_tls = client_from_string(reactor, "tls:192.0.2.1:443:serverName=mail.test")
    assert isinstance(named_tls, TLSClientEndpoint)
    assert named_tls.server_hostname == "mail.test"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("tcp:example.test", "needs port"),
        ("tcp:example.test:0", "port must be 1 to 65535"),
        ("tcp:example.test:80:timeout=soon", "timeout must be a number of seconds"),
        ("tcp:example.test:80:timeout=0", "more than 0 seconds"),
        (
            "tls:example.test:443:caCerts=/nonexistent/ca.pem",
            "/nonexistent/ca.pem: CA file not found",
        ),
        ("tls:example.test:443:privateKey=k.pem", "privateKey= needs certificate="),
        ("carrier-pigeon:coop", "no client endpoint kind 'carrier-pigeon'"),
    ],
)
def test_bad_client_strings_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(EndpointStringError, match=problem):
        client_from_string(MemoryReactor(), text)


class LoopbackKind:
    """A plugin kind, as a third-party package would register it."""

    prefix = "loopback"

    def server(self, reactor: Any, args: tuple[str, ...], options: dict[str, str]) -> Any:
        if not args:
            raise ValueError("loopback: needs a port")
        return TCPServerEndpoint(reactor, int(args[0]), interface="127.0.0.1")


def test_plugins_add_kinds_through_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    kind = LoopbackKind()
    entry = EntryPoint(name="loopback", value="ignored:kind", group="torsion.endpoints")
    monkeypatch.setattr(entry.__class__, "load", lambda self: kind)

    def fake_entry_points(*, group: str) -> list[EntryPoint]:
        return [entry] if group == "torsion.endpoints" else []

    monkeypatch.setattr(_endpoint_strings, "entry_points", fake_entry_points)
    endpoint = server_from_string(MemoryReactor(), "loopback:8080")
    assert isinstance(endpoint, TCPServerEndpoint)
    assert (endpoint.interface, endpoint.port) == ("127.0.0.1", 8080)
    with pytest.raises(EndpointStringError, match="loopback: needs a port"):
        server_from_string(MemoryReactor(), "loopback")
    with pytest.raises(EndpointStringError, match="no client endpoint kind 'loopback'"):
        client_from_string(MemoryReactor(), "loopback:1")
    with pytest.raises(
        EndpointStringError, match=r"known: loopback, ssl, stdio, systemd, tcp, tcp6, tls, unix\)"
    ):
        server_from_string(MemoryReactor(), "nope:1")
