"""``torsion dns``: an authoritative DNS server for BIND zone files (``torsion.names``).

It answers over UDP and TCP on one port, for the zones given with
``--bindzone`` (as many as wanted), and refuses names outside them: it is
not a resolver. SIGHUP reads the zone files again; a file that has become
unreadable or invalid is logged and its zone keeps being served as it was.

It listens on 127.0.0.1 unless ``--interface`` says otherwise: a DNS server
open to the world answers anyone's forged-source queries, which makes it a
reflector for denial-of-service attacks, so exposing it is a decision the
operator makes (``--interface 0.0.0.0``, ``--interface ::``, or the address
of one interface). Zone transfers (AXFR) are refused to every client but
those of the ``--allow-axfr`` networks.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from torsion.application._app import Application
from torsion.application._endpoint_service import DatagramService, StreamServerEndpointService
from torsion.application._plugins import Option, Plugin
from torsion.application._service import BaseService
from torsion.internet import Reactor, TCPServerEndpoint

if TYPE_CHECKING:
    from torsion.names._zone import Authority

__all__ = ["DNS", "ZoneFiles"]

_log = logging.getLogger("torsion.names")


def _network(text: str) -> str:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"--allow-axfr: {text!r} is not a network such as 192.0.2.0/24") from None
    return text


def _port(number: int) -> int:
    # The same number on UDP and TCP: 0 would give each a different one.
    if not 1 <= number <= 65535:
        raise ValueError(f"--port: must be within 1 to 65535, not {number}")
    return number


class ZoneFiles(BaseService):
    """Reads the zone files again on reload (SIGHUP).

    Args:
        authorities: The zones read from files.
    """

    def __init__(self, authorities: list[Authority]) -> None:
        super().__init__()
        self.authorities = authorities

    def reload_service(self) -> None:
        """Read each zone file again; a bad one is logged and keeps its old zone."""
        from torsion.names._zone import ZoneError

        for authority in self.authorities:
            try:
                authority.reload()
            except ZoneError as exc:
                _log.error(
                    "zone %s not reloaded, still served as it was: %s", authority.origin, exc
                )
            else:
                _log.info("zone %s reloaded from %s", authority.origin, authority.path)


def _build(reactor: Reactor, options: Mapping[str, Any]) -> Application:
    # torsion.names is imported here, not above: it needs dnspython (the
    # names extra), which the other plugins do not.
    try:
        from torsion.names._server import DNSServer
        from torsion.names._zone import Authority, ZoneError
    except ImportError as exc:
        raise ValueError(
            f"torsion dns needs the names extra (pip install 'torsion[names]'): {exc}"
        ) from exc
    authorities = []
    for path in options["bindzone"]:
        try:
            authorities.append(Authority.from_file(path))
        except ZoneError as exc:
            raise ValueError(f"--bindzone: {exc}") from exc
    server = DNSServer(authorities, allow_axfr=options["allow_axfr"])
    port: int = options["port"]
    interface: str = options["interface"]
    zones = ", ".join(str(authority.origin) for authority in authorities)
    description = f"DNS server for {zones}"
    app = Application("dns service")
    app.add_service(ZoneFiles(authorities))
    app.add_service(
        DatagramService(
            reactor,
            port,
            server.datagram_protocol(),
            interface=interface,
            description=description,
        )
    )
    app.add_service(
        StreamServerEndpointService(
            TCPServerEndpoint(reactor, port, interface=interface),
            server.stream_factory(reactor),
            description=description,
            hint=lambda address: f"dig @{interface} -p {port} {authorities[0].origin} SOA",
        )
    )
    return app


DNS = Plugin(
    name="dns",
    description="an authoritative DNS server for BIND zone files, over UDP and TCP",
    options=(
        Option(
            "bindzone",
            "serve the zone in this BIND master file ($ORIGIN in the file names the zone)",
            repeatable=True,
            required=True,
            metavar="FILE",
        ),
        Option("port", "the UDP and TCP port", type=int, default=53, check=_port),
        Option(
            "interface",
            "the address to listen on (0.0.0.0 or :: for every interface: a DNS "
            "server open to the world is a reflector for attacks on others)",
            default="127.0.0.1",
            metavar="ADDRESS",
        ),
        Option(
            "allow-axfr",
            "let this network transfer the zones (AXFR over TCP); nobody may by default",
            repeatable=True,
            check=_network,
            metavar="NETWORK",
        ),
    ),
    build=_build,
)
