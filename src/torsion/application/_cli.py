"""The ``torsion`` command line.

::

    torsion [options] PLUGIN [plugin options]       run a plugin
    torsion [options] run APP.py                    run an application file
    torsion [options] -f FILE.toml                  run a deployment file
    torsion mktap PLUGIN [plugin options] [-o FILE.toml]
                                                    write a deployment file
    torsion package deb|rpm FILE.toml [-o DIR]      package a deployment file

The options of every run (``--logfile``, ``--daemon``, ``--pidfile``,
``--workers``...) go before or after the plugin's name; after ``-f``, they
override the file's ``[runner]`` table. ``torsion --help`` lists the
plugins, ``torsion PLUGIN --help`` a plugin's options.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import torsion
from torsion.application._app_file import load_application
from torsion.application._builtin_plugins import BUILTIN_PLUGINS
from torsion.application._deployment import read_deployment, write_deployment
from torsion.application._errors import RunnerError, UsageError
from torsion.application._options import COMMON_OPTIONS, RunnerOptions
from torsion.application._package import build_package
from torsion.application._plugins import Plugin, find_plugins, option_values
from torsion.application._runner import FAILURE, USAGE, Target, run
from torsion.application._workers import (
    SharedPortsReactor,
    WorkerPool,
    adopt_systemd_sockets,
    supervisor_options,
    watch_supervisor,
    worker_index,
    worker_options,
)
from torsion.cred._passwd import passwd_main
from torsion.internet import Reactor

__all__ = ["console_main", "main"]

_COMMANDS = ("run", "mktap", "package", "passwd", "sendmail")

_USAGE = """\
commands:
  PLUGIN [options]          run a plugin (listed below)
  run APP.py                run an application file that defines 'application'
  -f FILE.toml              run a deployment file
  mktap PLUGIN [options] [-o FILE.toml]
                            write a deployment file instead of running
  package deb|rpm FILE.toml build a .deb or .rpm package that runs a deployment file
  passwd FILE USER          add or change a user in an htpasswd file (hashed; -D removes)
  sendmail [-t] [-i] [-f SENDER] [--connect ENDPOINT] [RCPT...]
                            submit a message from standard input over SMTP
"""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (and exit status 2)."""

    def error(self, message: str) -> NoReturn:
        """Print ``PROG: MESSAGE`` and a pointer to the help, then exit with 2."""
        unknown = re.match(r"argument PLUGIN: invalid choice: ('[^']*')", message)
        if unknown:
            message = f"there is no plugin or command {unknown.group(1)}"
        self.exit(USAGE, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def _add_common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("options for every way of running")
    for option in COMMON_OPTIONS:
        option.add_to(group, suppress=True)  # type: ignore[arg-type]


def _plugin_parser(subparsers: Any, plugin: Plugin) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        plugin.name,
        description=plugin.description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    group = parser.add_argument_group(f"{plugin.name} options")
    for option in plugin.options:
        option.add_to(group)  # type: ignore[arg-type]
    return parser


def _listing(plugins: Mapping[str, Plugin]) -> str:
    width = max([len(name) for name in plugins] + [8]) + 2
    lines = [_USAGE, "plugins:"]
    for name in sorted(plugins):
        lines.append(f"  {name.ljust(width)}{plugins[name].description}")
    return "\n".join(lines)


def build_parser(plugins: Mapping[str, Plugin]) -> argparse.ArgumentParser:
    """The ``torsion`` argument parser, for these plugins."""
    top = _Parser(
        prog="torsion",
        usage="torsion [options] PLUGIN [plugin options] | run APP.py | -f FILE.toml | ...",
        description="Run torsion services: a plugin, an application file or a deployment file.",
        epilog=_listing(plugins) + "\n\nRun 'torsion PLUGIN --help' for a plugin's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--version", action="version", version=f"torsion {torsion.__version__}")
    top.add_argument(
        "-f",
        "--file",
        metavar="FILE.toml",
        help="run a deployment file (made by 'torsion mktap')",
    )
    _add_common(top)
    commands = top.add_subparsers(
        dest="command",
        metavar="PLUGIN",
        parser_class=_Parser,
        prog="torsion",
        help=argparse.SUPPRESS,
    )
    for plugin in plugins.values():
        _add_common(_plugin_parser(commands, plugin))

    run_app = commands.add_parser(
        "run", description="Run an application file: Python that defines 'application'."
    )
    run_app.add_argument("app", metavar="APP.py", help="the application file")
    _add_common(run_app)

    mktap = commands.add_parser(
        "mktap",
        description="Write a deployment file: the plugin and its options, in TOML, "
        "to run later with 'torsion -f FILE.toml'.",
    )
    mktap_plugins = mktap.add_subparsers(
        dest="mktap_plugin",
        metavar="PLUGIN",
        required=True,
        parser_class=_Parser,
        prog="torsion mktap",
        help=argparse.SUPPRESS,
    )
    for plugin in plugins.values():
        parser = _plugin_parser(mktap_plugins, plugin)
        parser.add_argument(
            "-o",
            "--output",
            metavar="FILE.toml",
            help="where to write the deployment file (default: standard output)",
        )
        _add_common(parser)

    package = commands.add_parser(
        "package",
        description="Build a package that installs a deployment file as /etc/torsion/NAME.toml "
        "and a systemd unit that runs 'torsion -f' on it.",
    )
    kinds = package.add_subparsers(
        dest="package_kind",
        metavar="deb|rpm",
        required=True,
        parser_class=_Parser,
        prog="torsion package",
        help=argparse.SUPPRESS,
    )
    for kind, what in (("deb", "a Debian package (with dpkg-deb)"), ("rpm", "an RPM (rpmbuild)")):
        parser = kinds.add_parser(kind, description=f"Build {what}.")
        parser.add_argument("deployment", metavar="FILE.toml", help="the deployment file")
        parser.add_argument(
            "-o", "--output-dir", default=".", metavar="DIR", help="where to write the package"
        )
        parser.add_argument(
            "--name", help="the package's name (default: torsion- and the file's name)"
        )
        parser.add_argument(
            "--version", default="1.0", help="the package's version (default: 1.0)"
        )
        parser.add_argument(
            "--torsion-command",
            default="/usr/bin/torsion",
            metavar="PATH",
            help="the torsion command the unit runs (default: /usr/bin/torsion)",
        )
        parser.add_argument(
            "--depends",
            metavar="DEPENDENCY",
            help="what the package needs installed, '' for nothing (default: "
            "python3-torsion at this torsion's version or later)",
        )
        parser.add_argument("--maintainer", metavar="'NAME <EMAIL>'", help="who maintains it")
    return top


def _given(namespace: argparse.Namespace) -> dict[str, Any]:
    return {key: value for key, value in vars(namespace).items() if value is not None}


def _runner_options(
    given: Mapping[str, Any], base: Mapping[str, Any] | None = None
) -> RunnerOptions:
    values = dict(base or {})
    keys = {option.key for option in COMMON_OPTIONS}
    values.update({key: value for key, value in given.items() if key in keys})
    return RunnerOptions.from_values(values)


def _usage_error(message: str) -> int:
    sys.stderr.write(f"torsion: {message}\n")
    sys.stderr.flush()
    return USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``torsion`` command; returns the process exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["passwd"]:
        # A tool of its own, with its own options: nothing of the runner's.
        return passwd_main(args[1:], stdin=sys.stdin, stdout=sys.stdout, stderr=sys.stderr)
    if args[:1] == ["sendmail"]:
        # sendmail's own options (-t, -i, -f...); torsion.mail only when used.
        from torsion.application._sendmail import sendmail_main

        return sendmail_main(
            args[1:], stdin=sys.stdin.buffer, stdout=sys.stdout, stderr=sys.stderr
        )
    plugins = find_plugins(BUILTIN_PLUGINS)
    for name in _COMMANDS:
        plugins.pop(name, None)  # A command's name cannot be a plugin's.
    parser = build_parser(plugins)
    namespace = parser.parse_args(args)
    given = _given(namespace)
    command = given.get("command")
    try:
        if "file" in given:
            if command is not None:
                return _usage_error("-f runs a deployment file: give it no plugin or command")
            deployment = read_deployment(given["file"], plugins)
            return _launch(
                _plugin_target(deployment.plugin, deployment.options),
                _runner_options(given, deployment.runner),
                args,
            )
        if command is None:
            parser.print_usage(sys.stderr)
            sys.stderr.write("torsion: give a plugin, 'run APP.py' or '-f FILE.toml'\n")
            return USAGE
        if command == "run":
            path = os.path.abspath(given["app"])
            stem = os.path.splitext(os.path.basename(path))[0]
            target = Target(name=stem, build=lambda reactor: load_application(path, reactor))
            return _launch(target, _runner_options(given), args)
        if command == "mktap":
            return _mktap(plugins[given["mktap_plugin"]], given)
        if command == "package":
            built = build_package(
                given["package_kind"],
                given["deployment"],
                plugins,
                output_dir=given["output_dir"],
                name=given.get("name"),
                version=given["version"],
                command=given["torsion_command"],
                depends=vars(namespace).get("depends"),
                maintainer=given.get("maintainer"),
            )
            sys.stdout.write(f"{built}\n")
            return 0
        plugin = plugins[command]
        values = option_values(plugin.options, given)
        return _launch(_plugin_target(plugin, values), _runner_options(given), args)
    except UsageError as exc:
        return _usage_error(str(exc))
    except RunnerError as exc:
        sys.stderr.write(f"torsion: {exc}\n")
        return FAILURE


def _plugin_target(plugin: Plugin, values: Mapping[str, Any]) -> Target:
    def build(reactor: Reactor) -> Any:
        return plugin.build(reactor, values)

    return Target(name=f"{plugin.name} service", build=build)


def _launch(target: Target, options: RunnerOptions, argv: Sequence[str]) -> int:
    """Run ``target`` in this process, or in ``--workers`` processes."""
    index = worker_index()
    if index is not None:
        # A worker of a supervisor: the same command line, sharing the ports.
        adopt_systemd_sockets()
        build = target.build
        shared = Target(
            name=target.name,
            build=lambda reactor: watch_supervisor(build(reactor), reactor, target.name),
            make_reactor=lambda o: SharedPortsReactor(uvloop=o.reactor == "uvloop"),
        )
        return run(
            shared,
            worker_options(options, index),
            show_pid=True,
            manage_process=False,
            interruptible=False,
        )
    if options.workers > 1:
        count = options.workers
        supervisor = Target(
            name=f"{target.name} supervisor",
            build=lambda reactor: WorkerPool(reactor, count, argv),
        )
        return run(supervisor, supervisor_options(options), show_pid=True)
    return run(target, options)


def _mktap(plugin: Plugin, given: Mapping[str, Any]) -> int:
    values = option_values(plugin.options, given)
    # Build the tree once (nothing starts), so that a bad option is caught
    # now rather than when the file is run.
    reactor = Reactor(uvloop=False)
    try:
        plugin.build(reactor, values)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    finally:
        reactor.close()
    runner_keys = {option.key for option in COMMON_OPTIONS}
    runner = {key: value for key, value in given.items() if key in runner_keys}
    output = given.get("output")
    text = write_deployment(plugin, values, runner, file_name=output or f"{plugin.name}.toml")
    if output is None or output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return 0
    try:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        sys.stderr.write(f"torsion: cannot write {output}: {exc.strerror}\n")
        return 1
    return 0


def console_main() -> None:
    """Entry point of the ``torsion`` console script."""
    sys.exit(main())
