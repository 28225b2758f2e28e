"""The plugins that come with torsion (``torsion --help`` lists them with a line each).

Besides the classic services, portforward, inetd, procmon and socks defined
here, dns, web and mail come from their own modules.

Every serving plugin takes ``--listen ENDPOINT`` (repeatable; any server
endpoint string) and the connection limits an operator expects on a port
open to the world: ``--max-connections``, ``--max-per-client`` and
``--idle-timeout``. The classic services also serve UDP with
``--udp [INTERFACE:]PORT``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torsion.application._app import Application
from torsion.application._dns import DNS
from torsion.application._endpoint_service import DatagramService
from torsion.application._inetd import INETD
from torsion.application._mail import MAIL
from torsion.application._plugins import Option, Plugin
from torsion.application._procmon import PROCMON
from torsion.application._socks import SOCKS
from torsion.application._tcp_options import LIMIT_OPTIONS, listen_option, serve, try_it
from torsion.application._web import WEB
from torsion.internet import (
    DatagramProtocol,
    ProtocolFactory,
    Reactor,
    client_from_string,
)
from torsion.protocols import (
    Chargen,
    Daytime,
    Discard,
    Echo,
    PortForward,
    Time,
    UDPChargen,
    UDPDaytime,
    UDPDiscard,
    UDPEcho,
    UDPTime,
)

__all__ = ["BUILTIN_PLUGINS", "try_it"]


def _udp_port(text: str) -> str:
    _split_udp(text)
    return text


def _split_udp(text: str) -> tuple[str, int]:
    """``[INTERFACE:]PORT`` (an IPv6 interface in brackets) to its parts."""
    host, colon, port_text = text.rpartition(":")
    if not colon:
        host, port_text = "", text
    host = host.removeprefix("[").removesuffix("]")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"--udp: {text!r} is not [INTERFACE:]PORT (a port 0 to 65535)")
    return host, int(port_text)


_UDP_OPTIONS = (
    Option(
        "udp",
        "also serve UDP on [INTERFACE:]PORT (IPv6 interfaces in brackets)",
        repeatable=True,
        check=_udp_port,
        metavar="[INTERFACE:]PORT",
    ),
    Option(
        "answer-privileged-ports",
        "answer UDP datagrams from ports below 1024 too (off: they are how "
        "reflection loops between services start)",
        type=bool,
    ),
)


def _classic(
    name: str,
    description: str,
    default_listen: str,
    tcp: Callable[[Reactor], ProtocolFactory],
    udp: Callable[[bool], DatagramProtocol],
) -> Plugin:
    def build(reactor: Reactor, options: Mapping[str, Any]) -> Application:
        app = Application(f"{name} service")
        listens: list[str] = options["listen"]
        udp_ports: list[str] = options["udp"]
        if not listens and not udp_ports:
            listens = [default_listen]
        serve(
            app,
            reactor,
            listens,
            tcp(reactor),
            options,
            description=f"{name} service",
            hint=try_it,
        )
        for text in udp_ports:
            interface, port = _split_udp(text)
            app.add_service(
                DatagramService(
                    reactor,
                    port,
                    udp(options["answer_privileged_ports"]),
                    interface=interface,
                    description=f"{name} service",
                )
            )
        return app

    return Plugin(
        name=name,
        description=description,
        options=(
            listen_option(default_listen, note="when no --udp is given"),
            *_UDP_OPTIONS,
            *LIMIT_OPTIONS,
        ),
        build=build,
    )


def _always(protocol: Callable[[], Any]) -> Callable[[Reactor], ProtocolFactory]:
    return lambda _reactor: lambda _address: protocol()


ECHO = _classic(
    "echo",
    "echo every byte back (RFC 862)",
    "tcp:8000:interface=127.0.0.1",
    _always(Echo),
    lambda privileged: UDPEcho(answer_privileged_ports=privileged),
)
DISCARD = _classic(
    "discard",
    "read and throw away every byte (RFC 863)",
    "tcp:8009:interface=127.0.0.1",
    _always(Discard),
    lambda privileged: UDPDiscard(answer_privileged_ports=privileged),
)
CHARGEN = _classic(
    "chargen",
    "send characters for as long as the client reads (RFC 864)",
    "tcp:8019:interface=127.0.0.1",
    lambda reactor: lambda _address: Chargen(reactor),
    lambda privileged: UDPChargen(answer_privileged_ports=privileged),
)
DAYTIME = _classic(
    "daytime",
    "send the date and time as text, then close (RFC 867)",
    "tcp:8013:interface=127.0.0.1",
    _always(Daytime),
    lambda privileged: UDPDaytime(answer_privileged_ports=privileged),
)
TIME = _classic(
    "time",
    "send the time as 32-bit seconds since 1900, then close (RFC 868)",
    "tcp:8037:interface=127.0.0.1",
    _always(Time),
    lambda privileged: UDPTime(answer_privileged_ports=privileged),
)


def _build_portforward(reactor: Reactor, options: Mapping[str, Any]) -> Application:
    destination = client_from_string(reactor, options["connect"])
    app = Application("portforward service")
    serve(
        app,
        reactor,
        options["listen"],
        PortForward(destination),
        options,
        description=f"portforward to {options['connect']}",
    )
    return app


PORTFORWARD = Plugin(
    name="portforward",
    description="forward each connection to another endpoint, both ways",
    options=(
        listen_option("tcp:8080:interface=127.0.0.1"),
        Option(
            "connect",
            "where to forward to: a client endpoint string such as tcp:HOST:PORT, "
            "tls:HOST:PORT or unix:PATH",
            required=True,
            aliases=("to",),
            metavar="ENDPOINT",
        ),
        *LIMIT_OPTIONS,
    ),
    build=_build_portforward,
)

BUILTIN_PLUGINS: tuple[Plugin, ...] = (
    ECHO,
    DISCARD,
    CHARGEN,
    DAYTIME,
    TIME,
    PORTFORWARD,
    INETD,
    PROCMON,
    SOCKS,
    DNS,
    WEB,
    MAIL,
)
