"""Deployment files: a plugin and its options, in plain TOML, to run again later.

``torsion mktap echo --listen tcp:7 -o echo.toml`` writes::

    # A torsion deployment file: run it with `torsion -f echo.toml`.
    plugin = "echo"

    [options]
    listen = ["tcp:7"]
    udp = []
    ...

    [runner]
    logfile = "/var/log/echo.log"

and ``torsion -f echo.toml`` runs exactly what ``torsion echo --listen tcp:7
--logfile /var/log/echo.log`` would have. ``[options]`` holds every option of
the plugin (the defaults written out, so that the file says all there is);
``[runner]`` holds the common options that were given. Keys are the options'
names without the dashes in front; values are TOML strings, numbers,
booleans and arrays. The file is meant to be read and edited by hand: an
unknown key or a value of the wrong type is an error naming it. Nothing is
ever pickled: a deployment file runs no code of its own.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torsion.application._errors import DeploymentFileError, UsageError
from torsion.application._options import COMMON_OPTIONS
from torsion.application._plugins import Option, Plugin, option_values

__all__ = ["Deployment", "read_deployment", "write_deployment"]

# A deployment file is a few hundred bytes; anything far larger is not one.
_MAX_SIZE = 1024 * 1024

_TOP_KEYS = ("plugin", "options", "runner")


@dataclass(frozen=True, slots=True)
class Deployment:
    """A deployment file, read and checked.

    Attributes:
        plugin: The plugin it runs.
        options: The plugin's option values, by key (every option).
        runner: The common options it sets, by key (only those in the file).
    """

    plugin: Plugin
    options: dict[str, Any]
    runner: dict[str, Any]


def read_deployment(path: str, plugins: Mapping[str, Plugin]) -> Deployment:
    """Read and check the deployment file at ``path``.

    Raises:
        DeploymentFileError: It cannot be read, is not TOML, names a plugin
            that does not exist, or has a key or value that is wrong; the
            message names the file and the key.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_SIZE + 1)
    except OSError as exc:
        raise DeploymentFileError(
            f"cannot read the deployment file {path}: {exc.strerror}"
        ) from exc
    if len(data) > _MAX_SIZE:
        raise DeploymentFileError(f"{path} is too large to be a deployment file")
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise DeploymentFileError(f"{path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise DeploymentFileError(f"{path} is not valid TOML: {exc}") from None
    for key in document:
        if key not in _TOP_KEYS:
            raise DeploymentFileError(
                f"{path}: unknown key {key!r} (a deployment file has plugin, [options], [runner])"
            )
    name = document.get("plugin")
    if not isinstance(name, str):
        raise DeploymentFileError(f'{path}: needs plugin = "NAME" (the plugin to run)')
    plugin = plugins.get(name)
    if plugin is None:
        known = ", ".join(sorted(plugins))
        raise DeploymentFileError(f"{path}: there is no plugin {name!r} (known: {known})")
    options = _table(document, "options", path)
    runner = _table(document, "runner", path)
    given = _values(options, plugin.options, f"{path}: [options]", f"{name} takes")
    try:
        values = option_values(plugin.options, given)
    except UsageError as exc:
        raise DeploymentFileError(f"{path}: [options] {exc}") from None
    runner_values = _values(runner, COMMON_OPTIONS, f"{path}: [runner]", "the runner takes")
    return Deployment(plugin, values, runner_values)


def _table(document: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    table = document.get(key, {})
    if not isinstance(table, dict):
        raise DeploymentFileError(f"{path}: {key} must be a table ([{key}])")
    return table


def _values(
    table: Mapping[str, Any], options: Sequence[Option], where: str, takes: str
) -> dict[str, Any]:
    by_name = {option.name: option for option in options}
    values: dict[str, Any] = {}
    for key, value in table.items():
        option = by_name.get(key)
        if option is None:
            names = ", ".join(sorted(by_name)) or "nothing"
            raise DeploymentFileError(f"{where} unknown key {key!r} ({takes}: {names})")
        try:
            values[option.key] = option.convert_value(value, f"{where} {key}")
        except UsageError as exc:
            raise DeploymentFileError(str(exc)) from None
    return values


def write_deployment(
    plugin: Plugin,
    values: Mapping[str, Any],
    runner: Mapping[str, Any],
    *,
    file_name: str = "FILE.toml",
) -> str:
    """Return the text of a deployment file for ``plugin`` with these values.

    Args:
        plugin: The plugin.
        values: Its option values, by key (those missing, or None, are left out).
        runner: The common options to set, by key.
        file_name: What to call the file in its opening comment.
    """
    lines = [
        f"# A torsion deployment file: run it with `torsion -f {os.path.basename(file_name)}`.",
        "# Edit it as you like: [options] are the plugin's options (without the",
        "# leading --), [runner] the options of every run (--logfile, --daemon...).",
        f"plugin = {_toml(plugin.name)}",
        "",
        "[options]",
    ]
    for option in plugin.options:
        value = values.get(option.key)
        if value is not None:
            lines.append(f"{_key(option.name)} = {_toml(value)}")
    lines += ["", "[runner]"]
    for option in COMMON_OPTIONS:
        value = runner.get(option.key)
        if value is not None:
            lines.append(f"{_key(option.name)} = {_toml(value)}")
    return "\n".join(lines) + "\n"


def _key(name: str) -> str:
    # Option names are bare keys (letters, digits, dashes); quote anything else.
    if name and all(c.isascii() and (c.isalnum() or c in "-_") for c in name):
        return name
    return _toml(name)


_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def _toml(value: Any) -> str:
    """A TOML value: a string, a whole number, a number, a boolean, or an array of them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        out = []
        for char in value:
            if char in _ESCAPES:
                out.append(_ESCAPES[char])
            elif ord(char) < 0x20 or ord(char) == 0x7F:
                out.append(f"\\u{ord(char):04X}")
            else:
                out.append(char)
        return '"' + "".join(out) + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    raise TypeError(f"cannot write {value!r} to a deployment file")
