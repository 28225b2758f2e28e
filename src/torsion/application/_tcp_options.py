"""What every plugin that serves connections shares: ``--listen`` and the limits.

``--listen ENDPOINT`` is repeatable and takes any server endpoint string
(``torsion.internet.server_from_string``). The limits wrap the plugin's
protocol factory with ``torsion.protocols``' policies, one policy object for
all of a plugin's ports, so that ``--max-connections 100`` means 100 in all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torsion.application._endpoint_service import Announce, StreamServerEndpointService
from torsion.application._multi import MultiService
from torsion.application._plugins import Option
from torsion.internet import (
    Address,
    IPv4Address,
    IPv6Address,
    ProtocolFactory,
    Reactor,
    UNIXAddress,
    server_from_string,
)
from torsion.protocols import ConnectionLimit, IdleTimeout

__all__ = [
    "LIMIT_OPTIONS",
    "check_password_checker",
    "limited",
    "listen_option",
    "serve",
    "try_it",
]


def try_it(address: Address) -> str:
    """How to talk to a line service on ``address``, for the log line announcing it."""
    if isinstance(address, IPv4Address | IPv6Address):
        return f"nc {address.host} {address.port}"
    if isinstance(address, UNIXAddress) and isinstance(address.path, str):
        if address.path.startswith("\0"):
            return "an abstract-namespace Unix socket client"
        return f"nc -U {address.path}"
    return "a client of your choice"


def listen_option(default: str | None, *, note: str = "") -> Option:
    """The ``--listen`` option, with ``default`` used when it is not given."""
    text = (
        "where to listen: an endpoint string such as tcp:PORT[:interface=ADDRESS], "
        "tls:PORT:privateKey=FILE, unix:PATH or systemd:index=N"
    )
    if default is not None:
        text += f" (default: {default}{' ' + note if note else ''})"
    # The default is applied by the plugin (it may depend on other options).
    return Option("listen", text, repeatable=True, metavar="ENDPOINT")


def _positive_int(name: str) -> Any:
    def check(number: int) -> int:
        if number < 1:
            raise ValueError(f"--{name}: must be 1 or more, not {number}")
        return number

    return check


def _positive_seconds(seconds: float) -> float:
    if not seconds > 0:
        raise ValueError(f"--idle-timeout: must be more than 0 seconds, not {seconds:g}")
    return seconds


LIMIT_OPTIONS: tuple[Option, ...] = (
    Option(
        "max-connections",
        "refuse connections beyond N open at once, over all the ports",
        type=int,
        check=_positive_int("max-connections"),
        metavar="N",
    ),
    Option(
        "max-per-client",
        "refuse a client's connections beyond N open at once (an IPv6 /64 counts as one)",
        type=int,
        check=_positive_int("max-per-client"),
        metavar="N",
    ),
    Option(
        "idle-timeout",
        "close a connection with nothing sent or received for SECONDS",
        type=float,
        check=_positive_seconds,
        metavar="SECONDS",
    ),
)


def limited(
    reactor: Reactor, factory: ProtocolFactory, options: Mapping[str, Any]
) -> ProtocolFactory:
    """Wrap ``factory`` in the limits the options ask for (if any)."""
    if options.get("idle_timeout") is not None:
        factory = IdleTimeout(reactor, options["idle_timeout"]).wrap(factory)
    total, per_client = options.get("max_connections"), options.get("max_per_client")
    if total is not None or per_client is not None:
        factory = ConnectionLimit(reactor, total=total, per_address=per_client).wrap(factory)
    return factory


def serve(
    parent: MultiService,
    reactor: Reactor,
    listens: Sequence[str],
    factory: ProtocolFactory,
    options: Mapping[str, Any],
    *,
    description: str,
    hint: Announce | None = None,
) -> None:
    """Add a ``StreamServerEndpointService`` to ``parent`` for each endpoint string.

    Raises:
        EndpointStringError: A string is not a server endpoint.
    """
    factory = limited(reactor, factory, options)
    for text in listens:
        endpoint = server_from_string(reactor, text)
        parent.add_service(
            StreamServerEndpointService(endpoint, factory, description=description, hint=hint)
        )


def check_password_checker(text: str) -> str:
    """Check an ``--auth`` string for a checker of user names and passwords.

    What the plugins whose protocols log in with a password take
    (``memory:``, ``file:``, ``unix``); parsed here for its errors only, the
    checker is built later, with the reactor.

    Raises:
        ValueError: The string is not valid, or its checker takes no password.
    """
    from torsion.cred._strings import split_auth_string

    split_auth_string(text)
    kind = text.partition(":")[0]
    if kind in ("anonymous", "sshkey"):
        raise ValueError(f"--auth: {kind} checks no password; give memory:, file: or unix")
    if kind not in ("memory", "file", "unix"):
        raise ValueError(f"--auth: unknown checker {kind!r} (memory:, file:, unix)")
    return text
