"""The ``torsion`` command: ``torsion PLUGIN [options]`` runs a service.

Built in for now: ``echo``, the RFC 862 echo service. Serving plugins take
``--listen ENDPOINT`` (repeatable); until the full endpoint grammar lands, an
endpoint is ``tcp:PORT[:interface=ADDRESS][:backlog=N]``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torsion
from torsion.errors import CannotListenError
from torsion.internet import Listener, Reactor
from torsion.protocols import Echo

__all__ = ["TCPListenEndpoint", "console_main", "main", "parse_listen_endpoint"]

_log = logging.getLogger("torsion.application")


@dataclass(frozen=True, slots=True, kw_only=True)
class TCPListenEndpoint:
    """Where to listen for TCP connections."""

    port: int
    interface: str = ""
    backlog: int = 100

    def __str__(self) -> str:
        return f"{self.interface or '*'}:{self.port}"


def parse_listen_endpoint(text: str) -> TCPListenEndpoint:
    """Parse ``tcp:PORT[:interface=ADDRESS][:backlog=N]``.

    Raises:
        ValueError: The string is not such an endpoint; the message says why.
    """
    kind, _, rest = text.partition(":")
    if kind != "tcp":
        raise ValueError(f"unsupported endpoint type {kind!r} in {text!r} (only tcp: for now)")
    if not rest:
        raise ValueError(f"endpoint {text!r} needs a port: tcp:PORT")
    # Colons inside an IPv6 interface are escaped as "\:".
    parts = [part.replace("\0", ":") for part in rest.replace("\\:", "\0").split(":")]
    port_text, options = parts[0], parts[1:]
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"bad port {port_text!r} in {text!r}: want 0-65535")
    values = {"interface": "", "backlog": "100"}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or key not in values:
            raise ValueError(f"unknown option {option!r} in {text!r} (interface=, backlog=)")
        values[key] = value
    if not values["backlog"].isdigit() or int(values["backlog"]) < 1:
        raise ValueError(f"bad backlog {values['backlog']!r} in {text!r}")
    return TCPListenEndpoint(
        port=int(port_text), interface=values["interface"], backlog=int(values["backlog"])
    )


def _endpoint(text: str) -> TCPListenEndpoint:
    try:
        return parse_listen_endpoint(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _run_echo(options: argparse.Namespace) -> int:
    endpoints: list[TCPListenEndpoint] = options.listen or [
        TCPListenEndpoint(port=8000, interface="127.0.0.1")
    ]
    reactor = Reactor()
    listeners: list[Listener] = []
    try:
        for endpoint in endpoints:
            try:
                listener = reactor.listen_tcp(
                    endpoint.port,
                    lambda _address: Echo(),
                    interface=endpoint.interface,
                    backlog=endpoint.backlog,
                )
            except CannotListenError as exc:
                _log.error("%s", exc)
                return 1
            listeners.append(listener)
            host = listener.host if ":" not in listener.host else f"[{listener.host}]"
            _log.info(
                "echo service listening on %s:%d; try: nc %s %d",
                host,
                listener.port,
                listener.host,
                listener.port,
            )
        reactor.run()
    finally:
        reactor.close()
    _log.info("echo service stopped")
    return 0


_PLUGINS: dict[str, tuple[str, Callable[[argparse.Namespace], int]]] = {
    "echo": ("echo every byte back (RFC 862)", _run_echo),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torsion",
        description="Run a torsion service.",
        epilog="Run 'torsion PLUGIN --help' for a plugin's options.",
    )
    parser.add_argument("--version", action="version", version=f"torsion {torsion.__version__}")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="the least severe log messages to show (default: info)",
    )
    plugins = parser.add_subparsers(dest="plugin", metavar="PLUGIN", title="plugins")
    echo = plugins.add_parser("echo", help=_PLUGINS["echo"][0], description=_PLUGINS["echo"][0])
    echo.add_argument(
        "--listen",
        action="append",
        type=_endpoint,
        metavar="ENDPOINT",
        help="where to listen, as tcp:PORT[:interface=ADDRESS] "
        "(repeatable; default tcp:8000:interface=127.0.0.1)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``torsion`` command; returns the process exit status."""
    parser = _parser()
    options = parser.parse_args(argv)
    if options.plugin is None:
        parser.print_help(sys.stderr)
        return 2
    logging.basicConfig(
        level=options.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return _PLUGINS[options.plugin][1](options)


def console_main() -> None:
    """Entry point of the ``torsion`` console script."""
    sys.exit(main())
