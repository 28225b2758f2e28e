r"""Endpoint strings: ``tcp:8080:interface=127.0.0.1`` to an endpoint object.

The grammar: a kind, then fields separated by ``:``; a field is a positional
argument or ``key=value``. A backslash makes the next character plain, so
``\:`` is a colon inside a field (an IPv6 address) and ``\\`` a backslash.

Server kinds::

    tcp:PORT[:interface=ADDRESS][:backlog=N]
    tcp6:PORT[:interface=ADDRESS][:backlog=N]          (every IPv6 interface by default)
    tls:PORT[:interface=..][:backlog=..]:privateKey=FILE[:certKey=FILE]
        [:extraCertChain=FILE][:sniDir=DIR][:alpn=PROTO,PROTO]
        [:caCerts=FILE][:requireClientCert=yes]           ("ssl:" is the same)
    unix:PATH[:mode=OCTAL][:backlog=N]                 (PATH may be address=PATH)
    systemd:index=N  |  systemd:name=NAME              (socket activation)
    stdio:                                             (standard input and output; no fields)

Client kinds::

    tcp:HOST:PORT[:timeout=SECONDS]                    (a name: happy eyeballs)
    unix:PATH[:timeout=SECONDS]
    tls:HOST:PORT[:timeout=S][:caCerts=FILE][:certificate=FILE][:privateKey=FILE]
                 [:alpn=PROTO,PROTO][:serverName=NAME]

torsion.protocols adds, through the plugin mechanism below::

    socks5:PROXYHOST:PROXYPORT:HOST:PORT[:username=U:password=P][:timeout=S]
    socks4a:PROXYHOST:PROXYPORT:HOST:PORT[:userId=ID][:timeout=S]

and a prefix that wraps any server endpoint string::

    haproxy:[timeout=S:][trusted=NET,NET:][allowLocal=no:]ENDPOINT
        (the PROXY protocol: haproxy:tcp:8080; for haproxy:tls:... the TLS
        handshake comes after the header, as HAProxy's TCP mode sends it)

Other packages add kinds through the ``torsion.endpoints`` entry-point
group: each entry point names an object with a ``prefix`` string and a
``server(reactor, args, options)`` and/or ``client(reactor, args, options)``
method returning an endpoint; a prefix kind instead has
``wrap_server(reactor, options, inner)`` and/or ``wrap_client(...)``,
given its own leading ``key=value`` options and the rest of the string
(see ``split_prefix`` and ``tls_server_parts``). A bad string raises
``EndpointStringError`` naming the problem.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol

from torsion.errors import EndpointStringError, TLSConfigError
from torsion.internet._client_service import ClientEndpoint
from torsion.internet._endpoints import (
    ServerEndpoint,
    SystemdEndpoint,
    TCPServerEndpoint,
    TLSClientEndpoint,
    TLSServerEndpoint,
    UNIXClientEndpoint,
    UNIXServerEndpoint,
)
from torsion.internet._happy_eyeballs import HostnameEndpoint
from torsion.internet._stdio import StandardIOEndpoint
from torsion.internet._tls import ServerTLS, client_context, server_tls

__all__ = [
    "EndpointKind",
    "PrefixKind",
    "client_from_string",
    "parse_endpoint_string",
    "server_from_string",
    "split_prefix",
    "tls_server_parts",
]

ENTRY_POINT_GROUP = "torsion.endpoints"


@dataclass(frozen=True, slots=True)
class ParsedEndpoint:
    """An endpoint string split into its parts.

    Attributes:
        kind: What comes before the first colon ("tcp").
        args: The positional fields, in order.
        options: The ``key=value`` fields.
        text: The whole string, for error messages.
    """

    kind: str
    args: tuple[str, ...]
    options: dict[str, str]
    text: str

    def error(self, problem: str) -> EndpointStringError:
        """An error about this string."""
        return EndpointStringError(self.text, problem)

    def only(self, *names: str, positional: int) -> None:
        """Reject options not in ``names`` and more than ``positional`` arguments."""
        for key in self.options:
            if key not in names:
                allowed = ", ".join(f"{n}=" for n in names) or "none"
                raise self.error(f"unknown option {key!r} for {self.kind}: (allowed: {allowed})")
        if len(self.args) > positional:
            raise self.error(f"too many fields for {self.kind}: {':'.join(self.args)!r}")

    def field(self, position: int, name: str) -> str | None:
        """A field given by position or by name (not both)."""
        by_position = self.args[position] if position < len(self.args) else None
        by_name = self.options.get(name)
        if by_position is not None and by_name is not None:
            raise self.error(f"{name} given twice")
        return by_position if by_position is not None else by_name

    def required(self, position: int, name: str) -> str:
        """A field that must be there."""
        value = self.field(position, name)
        if value is None or value == "":
            raise self.error(f"{self.kind}: needs {name}")
        return value

    def integer(
        self, value: str | None, name: str, *, default: int, low: int = 0, high: int | None = None
    ) -> int:
        """Parse an integer field within bounds."""
        if value is None:
            return default
        try:
            number = int(value, 10)
        except ValueError:
            raise self.error(f"{name} must be a whole number, not {value!r}") from None
        if number < low or (high is not None and number > high):
            upper = "" if high is None else f" to {high}"
            raise self.error(f"{name} must be {low}{upper}, not {number}")
        return number

    def seconds(self, name: str, *, default: float | None) -> float | None:
        """Parse a duration field (seconds, > 0)."""
        value = self.options.get(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise self.error(f"{name} must be a number of seconds, not {value!r}") from None
        if not number > 0:
            raise self.error(f"{name} must be more than 0 seconds, not {value}")
        return number

    def flag(self, name: str, *, default: bool) -> bool:
        """Parse a yes/no field."""
        value = self.options.get(name)
        if value is None:
            return default
        if value.lower() in ("yes", "true", "1", "on"):
            return True
        if value.lower() in ("no", "false", "0", "off"):
            return False
        raise self.error(f"{name} must be yes or no, not {value!r}")


def parse_endpoint_string(text: str) -> ParsedEndpoint:
    """Split an endpoint string into kind, positional fields and options.

    Raises:
        EndpointStringError: The string has no kind, ends in a lone
            backslash, repeats an option, or puts a positional field after
            an option.
    """
    # Each field: its characters, and where its first unescaped "=" is.
    fields: list[tuple[str, int | None]] = []
    current: list[str] = []
    equals: int | None = None
    escaped = False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            fields.append(("".join(current), equals))
            current, equals = [], None
        else:
            if char == "=" and equals is None:
                equals = len(current)
            current.append(char)
    if escaped:
        raise EndpointStringError(text, "it ends with a lone backslash")
    fields.append(("".join(current), equals))
    kind = fields[0][0]
    if not kind or fields[0][1] is not None:
        raise EndpointStringError(text, "no endpoint kind before the first ':' (e.g. tcp:8080)")
    args: list[str] = []
    options: dict[str, str] = {}
    for field, at in fields[1:]:
        if at is None:
            if options:
                raise EndpointStringError(
                    text, f"positional field {field!r} after key=value options"
                )
            args.append(field)
            continue
        key, value = field[:at], field[at + 1 :]
        if not key:
            raise EndpointStringError(text, f"an option has no name: {field!r}")
        if key in options:
            raise EndpointStringError(text, f"option {key!r} given twice")
        options[key] = value
    return ParsedEndpoint(kind, tuple(args), options, text)


def split_prefix(text: str) -> tuple[str, dict[str, str], str]:
    """Split a prefixed endpoint string into its kind, its own options and the rest.

    ``"haproxy:timeout=5:tcp:8080"`` gives ``("haproxy", {"timeout": "5"},
    "tcp:8080")``: the prefix's options are the ``key=value`` fields before
    the first field that is not one, and the rest is left as written
    (backslashes included) to be parsed as an endpoint string of its own.

    Raises:
        EndpointStringError: Nothing follows the prefix, or an option is
            given twice.
    """
    # Where each unescaped colon is.
    colons: list[int] = []
    escaped = False
    for at, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            colons.append(at)
    kind = text[: colons[0]] if colons else text
    options: dict[str, str] = {}
    starts = [at + 1 for at in colons]
    for index, start in enumerate(starts):
        end = colons[index + 1] if index + 1 < len(colons) else len(text)
        fields = parse_endpoint_string("x:" + text[start:end])
        if not fields.options:
            return kind, options, text[start:]
        ((key, value),) = fields.options.items()
        if key in options:
            raise EndpointStringError(text, f"option {key!r} given twice")
        options[key] = value
    raise EndpointStringError(text, f"{kind}: needs an endpoint after it (e.g. {kind}:tcp:8080)")


class EndpointKind(Protocol):
    """What a ``torsion.endpoints`` entry point names: a kind of endpoint string."""

    prefix: str

    def server(self, reactor: Any, args: tuple[str, ...], options: dict[str, str]) -> Any:
        """Make a server endpoint (raise ValueError with the problem on a bad string)."""
        ...

    def client(self, reactor: Any, args: tuple[str, ...], options: dict[str, str]) -> Any:
        """Make a client endpoint (raise ValueError with the problem on a bad string)."""
        ...


class PrefixKind(Protocol):
    """A ``torsion.endpoints`` entry point that wraps the endpoint string after it."""

    prefix: str

    def wrap_server(self, reactor: Any, options: dict[str, str], inner: str) -> Any:
        """Make a server endpoint around ``inner`` (raise ValueError on a bad string)."""
        ...


# -- the built-in kinds -----------------------------------------------------------------


def _tcp_server(reactor: Any, parsed: ParsedEndpoint, *, default_interface: str) -> Any:
    parsed.only("port", "interface", "backlog", positional=1)
    port = parsed.integer(parsed.required(0, "port"), "port", default=0, high=65535)
    interface = parsed.options.get("interface", default_interface)
    backlog = parsed.integer(parsed.options.get("backlog"), "backlog", default=100, low=1)
    return TCPServerEndpoint(reactor, port, interface=interface, backlog=backlog)


def _tls_server(reactor: Any, parsed: ParsedEndpoint) -> Any:
    tcp, tls = _tls_server_parts(reactor, parsed)
    return TLSServerEndpoint(reactor, tcp.port, tls, interface=tcp.interface, backlog=tcp.backlog)


def _tls_server_parts(reactor: Any, parsed: ParsedEndpoint) -> tuple[TCPServerEndpoint, ServerTLS]:
    parsed.only(
        "port",
        "interface",
        "backlog",
        "privateKey",
        "certKey",
        "extraCertChain",
        "sniDir",
        "alpn",
        "caCerts",
        "requireClientCert",
        positional=1,
    )
    port = parsed.integer(parsed.required(0, "port"), "port", default=0, high=65535)
    backlog = parsed.integer(parsed.options.get("backlog"), "backlog", default=100, low=1)
    options = parsed.options
    # As in Twisted's strings: privateKey may hold the certificate too, and
    # certKey defaults to it.
    cert = options.get("certKey") or options.get("privateKey")
    if not cert:
        raise parsed.error(f"{parsed.kind}: needs privateKey=FILE (and certKey=FILE)")
    require_client_cert = parsed.flag("requireClientCert", default=False)
    if require_client_cert and "caCerts" not in options:
        raise parsed.error("requireClientCert=yes needs caCerts=FILE (who may connect)")
    try:
        tls = server_tls(
            cert,
            options.get("privateKey"),
            chain_file=options.get("extraCertChain"),
            sni_dir=options.get("sniDir"),
            alpn=_alpn(options),
            client_ca_file=options.get("caCerts"),
            require_client_cert=require_client_cert,
        )
    except (TLSConfigError, ValueError) as exc:
        raise parsed.error(str(exc)) from exc
    interface = options.get("interface", "")
    return TCPServerEndpoint(reactor, port, interface=interface, backlog=backlog), tls


def tls_server_parts(reactor: Any, text: str) -> tuple[ServerEndpoint, ServerTLS | None]:
    """Split a server endpoint string into the plain endpoint and its TLS settings.

    ``tls:443:privateKey=k.pem`` gives a TCP endpoint on port 443 and the
    ``ServerTLS``; any other string gives its endpoint and None. For a
    prefix whose protocol runs before the TLS handshake (the PROXY
    protocol's header comes in clear).

    Raises:
        EndpointStringError: The string is not a valid server endpoint.
    """
    parsed = parse_endpoint_string(text)
    if parsed.kind in ("tls", "ssl"):
        return _tls_server_parts(reactor, parsed)
    return server_from_string(reactor, text), None


def _alpn(options: dict[str, str]) -> tuple[str, ...]:
    return tuple(p for p in options.get("alpn", "").split(",") if p)


def _unix_server(reactor: Any, parsed: ParsedEndpoint) -> Any:
    parsed.only("address", "mode", "backlog", positional=1)
    path = parsed.required(0, "address")
    mode_text = parsed.options.get("mode", "666")
    try:
        mode = int(mode_text, 8)
    except ValueError:
        raise parsed.error(
            f"mode must be octal permissions such as 660, not {mode_text!r}"
        ) from None
    if not 0 <= mode <= 0o7777:
        raise parsed.error(f"mode must be octal permissions such as 660, not {mode_text!r}")
    backlog = parsed.integer(parsed.options.get("backlog"), "backlog", default=100, low=1)
    return UNIXServerEndpoint(reactor, path, mode=mode, backlog=backlog)


def _unix_client(reactor: Any, parsed: ParsedEndpoint) -> Any:
    parsed.only("address", "timeout", positional=1)
    path = parsed.required(0, "address")
    return UNIXClientEndpoint(reactor, path, timeout=parsed.seconds("timeout", default=30.0))


def _systemd_server(reactor: Any, parsed: ParsedEndpoint) -> Any:
    parsed.only("index", "name", "domain", positional=0)
    if ("index" in parsed.options) == ("name" in parsed.options):
        raise parsed.error("systemd: needs index=N or name=NAME (one of them)")
    if "index" in parsed.options:
        index = parsed.integer(parsed.options["index"], "index", default=0)
        return SystemdEndpoint(reactor, index=index)
    return SystemdEndpoint(reactor, name=parsed.options["name"])


def _stdio_server(reactor: Any, parsed: ParsedEndpoint) -> Any:
    for key in parsed.options:
        raise parsed.error(f"stdio: takes no fields, not {key}=")
    # "stdio:" has one field, empty.
    if any(parsed.args) or len(parsed.args) > 1:
        raise parsed.error(f"stdio: takes no fields, not {':'.join(parsed.args)!r}")
    return StandardIOEndpoint(reactor)


def _host_and_port(parsed: ParsedEndpoint) -> tuple[str, int]:
    host = parsed.required(0, "host")
    port = parsed.integer(parsed.required(1, "port"), "port", default=0, low=1, high=65535)
    return host, port


def _tcp_client(reactor: Any, parsed: ParsedEndpoint) -> Any:
    parsed.only("host", "port", "timeout", positional=2)
    host, port = _host_and_port(parsed)
    timeout = parsed.seconds("timeout", default=30.0)
    return HostnameEndpoint(reactor, host, port, timeout=timeout)


def _tls_client(reactor: Any, parsed: ParsedEndpoint) -> Any:
    parsed.only(
        "host",
        "port",
        "timeout",
        "caCerts",
        "certificate",
        "privateKey",
        "alpn",
        "serverName",
        positional=2,
    )
    host, port = _host_and_port(parsed)
    options = parsed.options
    if "privateKey" in options and "certificate" not in options:
        raise parsed.error("privateKey= needs certificate= (a client certificate)")
    try:
        context = client_context(
            ca_file=options.get("caCerts"),
            cert_file=options.get("certificate"),
            key_file=options.get("privateKey"),
            alpn=_alpn(options),
        )
    except (TLSConfigError, ValueError) as exc:
        raise parsed.error(str(exc)) from exc
    timeout = parsed.seconds("timeout", default=30.0)
    tcp = HostnameEndpoint(reactor, host, port, timeout=timeout)
    return TLSClientEndpoint(tcp, context, server_hostname=options.get("serverName", host))


_SERVERS: dict[str, Callable[[Any, ParsedEndpoint], Any]] = {
    "tcp": lambda reactor, parsed: _tcp_server(reactor, parsed, default_interface=""),
    "tcp6": lambda reactor, parsed: _tcp_server(reactor, parsed, default_interface="::"),
    "tls": _tls_server,
    "ssl": _tls_server,
    "unix": _unix_server,
    "systemd": _systemd_server,
    "stdio": _stdio_server,
}

_CLIENTS: dict[str, Callable[[Any, ParsedEndpoint], Any]] = {
    "tcp": _tcp_client,
    "tls": _tls_client,
    "unix": _unix_client,
}


def _plugin(kind: str) -> EndpointKind | None:
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == kind:
            plugin: EndpointKind = entry.load()
            return plugin
    return None


def _known(builtin: dict[str, Any], role: str) -> str:
    names = set(builtin)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            plugin = entry.load()
        except Exception:  # a broken plugin is not a kind anyone can use
            continue
        if hasattr(plugin, role) or hasattr(plugin, f"wrap_{role}"):
            names.add(entry.name)
    return ", ".join(sorted(names))


def server_from_string(reactor: Any, text: str) -> ServerEndpoint:
    """Make a server endpoint from a string such as ``tcp:8080:interface=127.0.0.1``.

    Args:
        reactor: What the endpoint listens with (the reactor).
        text: The endpoint string (see the module's documentation).

    Raises:
        EndpointStringError: The string is not a valid server endpoint; the
            message says what is wrong.
    """
    return _from_string(reactor, text, _SERVERS, "server")  # type: ignore[no-any-return]


def client_from_string(reactor: Any, text: str) -> ClientEndpoint:
    """Make a client endpoint from a string such as ``tcp:example.com:80``.

    Args:
        reactor: What the endpoint connects with (the reactor).
        text: The endpoint string (see the module's documentation).

    Raises:
        EndpointStringError: The string is not a valid client endpoint; the
            message says what is wrong.
    """
    return _from_string(reactor, text, _CLIENTS, "client")  # type: ignore[no-any-return]


def _from_string(
    reactor: Any,
    text: str,
    builtin: dict[str, Callable[[Any, ParsedEndpoint], Any]],
    role: str,
) -> Any:
    kind = _kind_of(text)
    plugin = None if kind in builtin else _plugin(kind)
    wrap = getattr(plugin, f"wrap_{role}", None) if plugin is not None else None
    if wrap is not None:
        # A prefix: its options, then another endpoint string of any shape.
        _, options, inner = split_prefix(text)
        try:
            return wrap(reactor, options, inner)
        except EndpointStringError as exc:
            # Name the whole string, not the part the prefix parsed.
            raise EndpointStringError(text, exc.problem) from exc
        except ValueError as exc:
            raise EndpointStringError(text, str(exc)) from exc
    parsed = parse_endpoint_string(text)
    make = builtin.get(parsed.kind)
    if make is not None:
        return make(reactor, parsed)
    method = getattr(plugin, role, None) if plugin is not None else None
    if method is None:
        known = _known(builtin, role)
        raise parsed.error(f"no {role} endpoint kind {parsed.kind!r} (known: {known})")
    try:
        return method(reactor, parsed.args, dict(parsed.options))
    except ValueError as exc:
        if isinstance(exc, EndpointStringError):
            raise
        raise parsed.error(str(exc)) from exc


def _kind_of(text: str) -> str:
    """The kind of an endpoint string, checked as ``parse_endpoint_string`` checks it."""
    try:
        return parse_endpoint_string(text.split(":", 1)[0] + ":").kind
    except EndpointStringError:
        raise EndpointStringError(
            text, "no endpoint kind before the first ':' (e.g. tcp:8080)"
        ) from None
