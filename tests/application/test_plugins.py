"""Plugins, their options, deployment files and application files, without running anything."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torsion.application import Application
from torsion.application._app_file import load_application
from torsion.application._builtin_plugins import BUILTIN_PLUGINS, ECHO, PORTFORWARD
from torsion.application._cli import build_parser, main
from torsion.application._deployment import read_deployment, write_deployment
from torsion.application._errors import DeploymentFileError, UsageError
from torsion.application._plugins import Option, Plugin, find_plugins, option_values
from torsion.internet import Reactor

PLUGINS = {plugin.name: plugin for plugin in BUILTIN_PLUGINS}


# -- options ------------------------------------------------------------------------------


def test_an_option_converts_and_checks_command_line_text() -> None:
    count = Option("count", "how many", type=int)
    assert count.convert_text("12") == 12
    with pytest.raises(ValueError, match="'twelve' is not a whole number"):
        count.convert_text("twelve")
    delay = Option("delay", "seconds", type=float)
    assert delay.convert_text("0.5") == 0.5
    colour = Option("colour", "which", choices=("red", "blue"))
    with pytest.raises(ValueError, match="'green' is not one of red, blue"):
        colour.convert_text("green")

    def even(n: int) -> int:
        if n % 2:
            raise ValueError("must be even")
        return n // 2

    halved = Option("pairs", "how many pairs", type=int, check=even)
    assert halved.convert_text("8") == 4
    with pytest.raises(ValueError, match="must be even"):
        halved.convert_text("7")


def test_an_option_checks_values_from_a_file_by_toml_type() -> None:
    where = "f.toml: [options] x"
    assert Option("x", "", type=float).convert_value(3, where) == 3.0
    with pytest.raises(UsageError, match="x must be a whole number, not True"):
        Option("x", "", type=int).convert_value(True, where)
    with pytest.raises(UsageError, match="x must be a string, not 7"):
        Option("x", "").convert_value(7, where)
    with pytest.raises(UsageError, match="x must be an array of strings"):
        Option("x", "", repeatable=True).convert_value("tcp:80", where)
    with pytest.raises(UsageError, match="x must be true or false"):
        Option("x", "", type=bool).convert_value("yes", where)
    assert Option("x", "", repeatable=True).convert_value(["a", "b"], where) == ["a", "b"]


def test_options_on_the_command_line() -> None:
    options = (
        Option("listen", "where", repeatable=True),
        Option("connect", "to where", required=True, aliases=("to", "c")),
        Option("verbose", "say more", type=bool),
        Option("command", "what to run", arguments=True),
    )
    parser = argparse.ArgumentParser()
    for option in options:
        option.add_to(parser)
    parsed = vars(
        parser.parse_args(
            ["--listen", "a", "--to", "b", "--listen", "c", "--verbose", "--", "cat", "-n"]
        )
    )
    values = option_values(options, parsed)
    assert values == {
        "listen": ["a", "c"],
        "connect": "b",
        "verbose": True,
        "command": ["cat", "-n"],
    }
    assert option_values(options, vars(parser.parse_args(["-c", "x"])))["command"] == []


def test_a_missing_required_argument_list_is_a_usage_error() -> None:
    options = (Option("command", "what to run", arguments=True, required=True, metavar="PROGRAM"),)
    with pytest.raises(UsageError, match="PROGRAM is missing"):
        option_values(options, {"command": []})


def test_option_types_are_limited() -> None:
    with pytest.raises(TypeError):
        Option("x", "", type=list)
    with pytest.raises(TypeError):
        Option("x", "", type=int, arguments=True)


def test_help_lists_every_plugin_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser(PLUGINS).parse_args(["--help"])
    out = capsys.readouterr().out
    for plugin in BUILTIN_PLUGINS:
        assert f"  {plugin.name.ljust(13)}{plugin.description}\n" in out


# -- finding plugins ----------------------------------------------------------------------


def _fake_distribution(where: Path, entries: str, module: str = "") -> None:
    dist = where / "torsion_fake_plugins-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: torsion-fake-plugins\n")
    (dist / "entry_points.txt").write_text(f"[torsion.plugins]\n{entries}")
    if module:
        (where / "torsion_fake_plugin.py").write_text(module)


FAKE_PLUGIN = """
from torsion.application import Application, StreamServerEndpointService
from torsion.application._plugins import Option, Plugin
from torsion.internet import Protocol, server_from_string


class Hello(Protocol):
    def __init__(self, greeting):
        self.greeting = greeting

    def connection_made(self, transport):
        super().connection_made(transport)
        transport.write(self.greeting.encode() + b"\\n")
        transport.close()


def build(reactor, options):
    app = Application("hello")
    for text in options["listen"]:
        endpoint = server_from_string(reactor, text)
        app.add_service(StreamServerEndpointService(
            endpoint, lambda _: Hello(options["greeting"]), description="hello"))
    return app


plugin = Plugin(
    name="hello",
    description="say hello and hang up",
    options=(
        Option("listen", "where", repeatable=True),
        Option("greeting", "what to say", default="hello"),
    ),
    build=build,
)
not_a_plugin = 42
"""


def test_plugins_come_from_the_entry_point_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _fake_distribution(
        tmp_path,
        "hello = torsion_fake_plugin:plugin\n"
        "broken = torsion_no_such_module:plugin\n"
        "wrong = torsion_fake_plugin:not_a_plugin\n"
        "echo = torsion_fake_plugin:plugin\n",
        FAKE_PLUGIN,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    found = find_plugins(BUILTIN_PLUGINS)
    assert found["hello"].description == "say hello and hang up"
    assert found["echo"] is ECHO  # a built-in cannot be replaced
    assert "broken" not in found
    assert "wrong" not in found
    messages = [record.getMessage() for record in caplog.records]
    assert any("'broken'" in m and "cannot be loaded" in m for m in messages)
    assert any("'wrong'" in m and "is not a torsion Plugin" in m for m in messages)
    assert any("'echo'" in m and "name of a built-in plugin" in m for m in messages)


def test_a_third_party_plugin_runs_from_the_command_line(tmp_path: Path) -> None:
    from _runner_helpers import ENV, Torsion, read_all, run_torsion

    _fake_distribution(tmp_path, "hello = torsion_fake_plugin:plugin\n", FAKE_PLUGIN)
    env = {**ENV, "PYTHONPATH": str(tmp_path)}
    listing = run_torsion("--help", env=env)
    assert "  hello        say hello and hang up\n" in listing.stdout
    with Torsion(
        "hello", "--listen", "tcp:0:interface=127.0.0.1", "--greeting", "bonjour", env=env
    ) as torsion:
        port = torsion.port()
        import socket

        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            assert read_all(sock) == b"bonjour\n"
        assert torsion.stop() == 0


# -- deployment files ---------------------------------------------------------------------


def test_a_deployment_file_holds_every_option_and_reads_back(tmp_path: Path) -> None:
    values = option_values(
        PORTFORWARD.options,
        {"listen": ["tcp:80"], "connect": 'tcp:example.com:80:x="1"', "max_connections": 5},
    )
    text = write_deployment(
        PORTFORWARD, values, {"logfile": "/var/log/pf.log", "daemon": True}, file_name="pf.toml"
    )
    assert text.startswith("# A torsion deployment file: run it with `torsion -f pf.toml`.\n")
    document = tomllib.loads(text)
    assert document == {
        "plugin": "portforward",
        "options": {
            "listen": ["tcp:80"],
            "connect": 'tcp:example.com:80:x="1"',
            "max-connections": 5,
        },
        "runner": {"logfile": "/var/log/pf.log", "daemon": True},
    }
    path = tmp_path / "pf.toml"
    path.write_text(text)
    deployment = read_deployment(str(path), PLUGINS)
    assert deployment.plugin is PORTFORWARD
    assert deployment.options == values
    assert deployment.runner == {"logfile": "/var/log/pf.log", "daemon": True}


@given(st.text())
def test_any_string_survives_the_toml_writer(value: str) -> None:
    text = write_deployment(PORTFORWARD, {"listen": [value], "connect": value}, {})
    assert tomllib.loads(text)["options"] == {"listen": [value], "connect": value}


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('plugin = "echo"\nlisten = ["tcp:7"]\n', "unknown key 'listen' (a deployment file has"),
        (
            'plugin = "echo"\n[options]\nlsiten = ["tcp:7"]\n',
            "[options] unknown key 'lsiten' (echo takes: answer-privileged-ports, idle-timeout",
        ),
        (
            'plugin = "echo"\n[runner]\nworkrs = 2\n',
            "[runner] unknown key 'workrs' (the runner takes: daemon, gid,",
        ),
        ('plugin = "echo"\n[options]\nlisten = "tcp:7"\n', "listen must be an array of strings"),
        ('plugin = "echo"\n[runner]\nworkers = 0\n', "workers: --workers: must be 1 or more"),
        ('plugin = "nope"\n', "there is no plugin 'nope' (known: chargen, daytime"),
        ("[options]\n", 'needs plugin = "NAME"'),
        ('plugin = "echo\n', "is not valid TOML"),
        ('plugin = "portforward"\n', "[options] --connect is required"),
    ],
)
def test_a_wrong_deployment_file_names_the_problem(
    tmp_path: Path, content: str, problem: str
) -> None:
    path = tmp_path / "wrong.toml"
    path.write_text(content)
    with pytest.raises(DeploymentFileError) as info:
        read_deployment(str(path), PLUGINS)
    assert str(info.value).startswith(f"{path}")
    assert problem in str(info.value)


def test_a_deployment_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'plugin = "\xe9cho"\n')
    with pytest.raises(DeploymentFileError, match="is not UTF-8 text"):
        read_deployment(str(path), PLUGINS)


def test_mktap_refuses_options_the_plugin_would_refuse(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["mktap", "echo", "--listen", "tcp:nope"]) == 2
    assert capsys.readouterr().err == (
        "torsion: bad endpoint 'tcp:nope': port must be a whole number, not 'nope'\n"
    )


# -- application files --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("x = 1\n", "defines no 'application'"),
        ("application = 5\n", "'application' is 5, not a service"),
        ("\n\ndef broken(:\n", "line 3: SyntaxError: "),
        ("import os\n\nos.no_such_thing()\n", "line 3: AttributeError: module 'os' has no"),
        (
            "def application(reactor):\n    return missing\n",
            "line 2: NameError: name 'missing' is not defined",
        ),
    ],
)
def test_a_wrong_application_file_names_the_problem(
    tmp_path: Path, source: str, problem: str
) -> None:
    path = tmp_path / "app.py"
    path.write_text(source)
    reactor = Reactor(uvloop=False)
    try:
        with pytest.raises(UsageError) as info:
            load_application(str(path), reactor)
    finally:
        reactor.close()
    assert str(info.value).startswith(str(path))
    assert problem in str(info.value)


def test_an_application_file_may_define_a_service_or_a_function(tmp_path: Path) -> None:
    service_file = tmp_path / "service.py"
    service_file.write_text(
        "from torsion.application import Application\n"
        "application = Application('plain')\n"
        "if __name__ == '__main__':\n"
        "    raise SystemExit('not run as a script')\n"
    )
    function_file = tmp_path / "function.py"
    function_file.write_text(
        "from torsion.application import Application\n"
        "def application(reactor):\n"
        "    app = Application('made')\n"
        "    app.reactor_seen = reactor\n"
        "    return app\n"
    )
    reactor = Reactor(uvloop=False)
    try:
        plain = load_application(str(service_file), reactor)
        made: Any = load_application(str(function_file), reactor)
    finally:
        reactor.close()
    assert isinstance(plain, Application)
    assert plain.name == "plain"
    assert made.name == "made"
    assert made.reactor_seen is reactor


def test_plugin_lookup_by_name() -> None:
    assert PORTFORWARD.option("max_connections").name == "max-connections"
    assert PORTFORWARD.option("max-connections").key == "max_connections"
    with pytest.raises(KeyError):
        PORTFORWARD.option("nope")


def test_builtin_plugins_have_one_line_descriptions() -> None:
    for plugin in BUILTIN_PLUGINS:
        assert isinstance(plugin, Plugin)
        assert "\n" not in plugin.description
        assert len(plugin.description) < 70
