"""``torsion socks``: a SOCKS 4, 4a and 5 proxy (``torsion.protocols.SOCKSServer``).

Where clients may connect is decided by rules, in this order: ``--deny``
(networks or host names), then ``--allow`` (the same, limited to
``--ports`` when given), then the default: allow, or deny when ``--ports``
or ``--default deny`` is given. Loopback, private, link-local and the other
protected ranges stay shut unless an ``--allow`` names their network (an
open proxy into its own host's network is a forgery hole).

Passwords: ``SOCKSServer`` takes an ``authenticate`` function (SOCKS 5
username/password, RFC 1929). The ``--auth`` option that will fill it from
a ``torsion.cred`` checker string belongs here, once those strings exist:
``auth_option()`` below is the hook, and returns None until then.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from torsion.application._app import Application
from torsion.application._plugins import Option, Plugin
from torsion.application._tcp_options import (
    LIMIT_OPTIONS,
    check_password_checker,
    listen_option,
    serve,
    try_it,
)
from torsion.cred import Login, Portal, UnauthorizedLogin, UsernamePassword, checker_from_string
from torsion.defer import Deferred
from torsion.internet import Reactor
from torsion.protocols import (
    DestinationRules,
    SOCKSAuthenticator,
    SOCKSServer,
    allow_destinations,
    deny_destinations,
)

__all__ = ["SOCKS", "SOCKSUser", "auth_option", "destination_rules", "parse_ports"]

_DEFAULT_LISTEN = "tcp:1080:interface=127.0.0.1"


def parse_ports(text: str) -> list[int | tuple[int, int]]:
    """``80,443,8000-8100`` to ports and inclusive ranges.

    Raises:
        ValueError: It is not a list of ports and ranges within 1 to 65535.
    """
    ports: list[int | tuple[int, int]] = []
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise ValueError(f"--ports: {text!r} is not a list such as 80,443,8000-8100")
        first, last = int(low), int(high) if dash else int(low)
        if not 1 <= first <= last <= 65535:
            raise ValueError(f"--ports: {part.strip()!r} is not within 1 to 65535, low first")
        ports.append((first, last) if dash else first)
    return ports


def _check_ports(text: str) -> str:
    parse_ports(text)
    return text


def _split(destinations: list[str]) -> tuple[list[str], list[str]]:
    """Networks and host names, apart."""
    networks, hosts = [], []
    for text in destinations:
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            hosts.append(text)
        else:
            networks.append(text)
    return networks, hosts


def destination_rules(
    *,
    allow: list[str],
    deny: list[str],
    ports: str | None,
    default: str,
) -> DestinationRules:
    """The rules the options describe (see the module doc).

    Raises:
        ValueError: A network, host name or port list is not valid.
    """
    port_list = parse_ports(ports) if ports else []
    rules = []
    denied_networks, denied_hosts = _split(deny)
    if denied_networks:
        rules.append(deny_destinations(networks=denied_networks))
    if denied_hosts:
        rules.append(deny_destinations(hosts=denied_hosts))
    allowed_networks, allowed_hosts = _split(allow)
    if allowed_networks:
        rules.append(allow_destinations(networks=allowed_networks, ports=port_list))
    if allowed_hosts:
        rules.append(allow_destinations(hosts=allowed_hosts, ports=port_list))
    if port_list and not allow:
        rules.append(allow_destinations(ports=port_list))
    closed = default == "deny" or bool(port_list)
    return DestinationRules(rules, default="deny" if closed else "allow")


class SOCKSUser:
    """What a SOCKS login asks the realm for: the right to use the proxy."""


class _Realm:
    def request_avatar(self, avatar_id: str, mind: object, /, *interfaces: type) -> Login:
        return Login(SOCKSUser, SOCKSUser(), lambda: None)


def auth_option(options: Mapping[str, Any], reactor: Reactor) -> SOCKSAuthenticator | None:
    """The password check ``--auth`` describes (None: no passwords asked).

    Each ``--auth`` string is a ``torsion.cred`` checker (``memory:USER:PW``,
    ``file:HTPASSWD``, ``unix``...); a login goes through a ``Portal``, with
    its growing delay after failures and its audit log.

    Raises:
        ValueError: A string is not valid.
    """
    texts = options.get("auth") or []
    if not texts:
        return None
    checkers = [checker_from_string(text, threads=reactor) for text in texts]
    portal = Portal(_Realm(), checkers, clock=reactor)

    def authenticate(username: str, password: str) -> Deferred[bool]:
        attempt = portal.login(UsernamePassword(username, password), None, SOCKSUser)

        def accepted(login: Login) -> bool:
            login.logout()
            return True

        def refused(exc: BaseException) -> bool:
            if isinstance(exc, UnauthorizedLogin):
                return False
            raise exc

        return attempt.add_callbacks(accepted, refused)

    return authenticate


def _build(reactor: Reactor, options: Mapping[str, Any]) -> Application:
    rules = destination_rules(
        allow=options["allow"],
        deny=options["deny"],
        ports=options["ports"],
        default=options["default"],
    )
    server = SOCKSServer(
        reactor,
        rules=rules,
        authenticate=auth_option(options, reactor),
        allow_socks4=not options["no_socks4"],
        negotiation_timeout=options["negotiation_timeout"],
        connect_timeout=options["connect_timeout"],
    )
    app = Application("socks service")
    listens = options["listen"] or [_DEFAULT_LISTEN]
    serve(app, reactor, listens, server, options, description="socks proxy", hint=_hint)
    return app


def _hint(address: Any) -> str | None:
    text = try_it(address)
    if text.startswith("nc "):
        host, port = text.split()[1:]
        return f"curl --socks5-hostname {host}:{port} https://example.com/"
    return None


def _positive(name: str) -> Any:
    def check(seconds: float) -> float:
        if not seconds > 0:
            raise ValueError(f"--{name}: must be more than 0 seconds, not {seconds:g}")
        return seconds

    return check


SOCKS = Plugin(
    name="socks",
    description="a SOCKS 4, 4a and 5 proxy (CONNECT), with destination rules",
    options=(
        listen_option(_DEFAULT_LISTEN),
        Option(
            "allow",
            "let clients reach this network (192.0.2.0/24, 127.0.0.1) or host name "
            "(example.com, .example.com for any name under it); naming a network opens "
            "it even if it is private or loopback",
            repeatable=True,
            metavar="NETWORK|HOST",
        ),
        Option(
            "deny",
            "keep clients from this network or host name (checked before --allow)",
            repeatable=True,
            metavar="NETWORK|HOST",
        ),
        Option(
            "ports",
            "only these destination ports, e.g. 80,443,8000-8100 (the rest is denied)",
            check=_check_ports,
            metavar="PORTS",
        ),
        Option(
            "default",
            "what happens to destinations no rule names",
            choices=("allow", "deny"),
            default="allow",
            metavar="allow|deny",
        ),
        Option("no-socks4", "serve SOCKS 5 only (SOCKS 4 has no passwords)", type=bool),
        Option(
            "auth",
            "ask clients for a user name and password, checked by this checker: "
            "memory:USER:PASSWORD[:USER:PASSWORD...], file:HTPASSWD, unix (PAM); "
            "SOCKS 4 clients are then refused",
            repeatable=True,
            check=check_password_checker,
            metavar="CHECKER",
        ),
        Option(
            "negotiation-timeout",
            "seconds a client has to send its request",
            type=float,
            default=10.0,
            check=_positive("negotiation-timeout"),
            metavar="SECONDS",
        ),
        Option(
            "connect-timeout",
            "seconds a destination has to answer",
            type=float,
            default=30.0,
            check=_positive("connect-timeout"),
            metavar="SECONDS",
        ),
        *LIMIT_OPTIONS,
    ),
    build=_build,
)
