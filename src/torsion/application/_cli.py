"""The ``torsion`` command: ``torsion PLUGIN [options]`` runs a service.

Built in for now: ``echo``, the RFC 862 echo service. Serving plugins take
``--listen ENDPOINT`` (repeatable), an endpoint string such as
``tcp:8000:interface=127.0.0.1`` (see ``torsion.internet.server_from_string``),
and ``--reactor asyncio|uvloop`` to choose the event loop.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

import torsion
from torsion.errors import EndpointStringError
from torsion.internet import (
    IPv4Address,
    IPv6Address,
    ListeningPort,
    Reactor,
    UNIXAddress,
    server_from_string,
)
from torsion.protocols import Echo

__all__ = ["console_main", "main"]

_log = logging.getLogger("torsion.application")

_DEFAULT_ECHO_LISTEN = "tcp:8000:interface=127.0.0.1"


def _try_it(address: object) -> str:
    """How to talk to a port, for the log line that announces it."""
    if isinstance(address, IPv4Address | IPv6Address):
        return f"nc {address.host} {address.port}"
    if isinstance(address, UNIXAddress) and isinstance(address.path, str):
        if address.path.startswith("\0"):
            return "an abstract-namespace Unix socket client"
        return f"nc -U {address.path}"
    return "a client of your choice"


def _run_echo(options: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    reactor = Reactor(uvloop=options.reactor == "uvloop")
    try:
        try:
            endpoints = [
                server_from_string(reactor, text)
                for text in options.listen or [_DEFAULT_ECHO_LISTEN]
            ]
        except EndpointStringError as exc:
            parser.error(str(exc))  # exits with status 2
        ports: list[ListeningPort] = []
        for endpoint in endpoints:
            listening = endpoint.listen(lambda _address: Echo())
            failures: list[BaseException] = []
            listening.add_callbacks(ports.append, failures.append)
            if failures:
                _log.error("%s", failures[0])
                return 1
            address = ports[-1].address
            _log.info("echo service listening on %s; try: %s", address, _try_it(address))
        reactor.run()
    finally:
        reactor.close()
    _log.info("echo service stopped")
    return 0


_PLUGINS: dict[str, tuple[str, Callable[[argparse.Namespace, argparse.ArgumentParser], int]]] = {
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
        metavar="ENDPOINT",
        help="where to listen: an endpoint string such as tcp:PORT[:interface=ADDRESS], "
        f"unix:PATH or systemd:index=0 (repeatable; default {_DEFAULT_ECHO_LISTEN})",
    )
    echo.add_argument(
        "--reactor",
        choices=["asyncio", "uvloop"],
        default="uvloop",
        help="the event loop: uvloop (the default, where installed) or asyncio's own",
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
    return _PLUGINS[options.plugin][1](options, parser)


def console_main() -> None:
    """Entry point of the ``torsion`` console script."""
    sys.exit(main())
