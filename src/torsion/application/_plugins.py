"""Plugins: what ``torsion PLUGIN [options]`` runs, and how their options are declared.

A plugin is a ``Plugin``: a name, a one-line description, its options, and
a function that builds the service tree from the reactor and the parsed
options. Its options are declared once, as ``Option`` values, and serve
both the command line (``--listen tcp:8000``) and deployment files
(``listen = ["tcp:8000"]`` under ``[options]``)::

    plugin = Plugin(
        name="hello",
        description="say hello to whoever connects",
        options=(
            Option("listen", "where to listen", repeatable=True, default=("tcp:8000",)),
            Option("greeting", "what to say", default="hello"),
        ),
        build=build_hello,
    )

A third-party package makes its plugin known through the ``torsion.plugins``
entry-point group (in its ``pyproject.toml``)::

    [project.entry-points."torsion.plugins"]
    hello = "hello_torsion:plugin"

``build`` must only build: binding ports and starting anything belongs to
the services' start, after the runner has set up logging, daemonized and
written its pidfile. A problem with the options found while building is a
``UsageError`` (or ``ValueError``, such as ``EndpointStringError``), which
the runner reports as one line with exit status 2.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from torsion.application._errors import UsageError

if TYPE_CHECKING:
    from torsion.application._service import Service
    from torsion.internet import Reactor

__all__ = ["ENTRY_POINT_GROUP", "Option", "Plugin", "find_plugins"]

ENTRY_POINT_GROUP = "torsion.plugins"

_log = logging.getLogger(__name__)

_TYPES: dict[type, str] = {
    str: "a string",
    int: "a whole number",
    float: "a number",
    bool: "true or false",
}
_PLURALS: dict[type, str] = {
    str: "strings",
    int: "whole numbers",
    float: "numbers",
    bool: "trues and falses",
}


@dataclass(frozen=True, slots=True)
class Option:
    """One option of a plugin (or of the runner): ``--NAME VALUE`` and ``NAME = VALUE``.

    Attributes:
        name: The option's name, dashes between words ("shutdown-timeout"):
            ``--shutdown-timeout`` on the command line, the key in a
            deployment file, ``shutdown_timeout`` in the parsed options.
        help: One line saying what it does (the default is added to it).
        type: ``str``, ``int``, ``float``, or ``bool`` for a flag that takes
            no value on the command line.
        repeatable: Given any number of times (a list; an array in TOML).
        default: The value when not given (for a repeatable option, a
            sequence; a flag's default is False).
        metavar: The value's name in the help ("ENDPOINT").
        choices: The only values allowed.
        check: Checks one value, and may convert it: returns the value to
            use, or raises ``ValueError`` saying what is wrong.
        arguments: The rest of the command line after the options, such as
            a program and its arguments (``-- /bin/cat -n``); a list of
            strings. At most one such option per plugin.
        required: It must be given (on the command line, or in the file).
        aliases: Other names on the command line ("o" for ``-o``, "to"
            for ``--to``); deployment files use ``name`` only.
    """

    name: str
    help: str
    _: KW_ONLY
    type: type = str
    repeatable: bool = False
    default: Any = None
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    check: Callable[[Any], Any] | None = None
    arguments: bool = False
    required: bool = False
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.type not in _TYPES:
            raise TypeError(f"option {self.name!r}: type must be str, int, float or bool")
        if self.arguments and (self.type is not str or self.repeatable):
            raise TypeError(f"option {self.name!r}: arguments are strings, and one list")

    @property
    def key(self) -> str:
        """The name in the parsed options: dashes become underscores."""
        return self.name.replace("-", "_")

    @property
    def flag(self) -> bool:
        """Whether it is a flag (a ``bool`` option, no value on the command line)."""
        return self.type is bool

    def initial(self) -> Any:
        """The value the option has when it is not given."""
        if self.arguments or self.repeatable:
            return list(self.default or ())
        if self.flag:
            return bool(self.default)
        return self.default

    def convert_text(self, text: str) -> Any:
        """Turn one command-line value into the option's type, and check it.

        Raises:
            ValueError: It is not a value of the option's type, or not allowed.
        """
        value: Any
        if self.type is int:
            try:
                value = int(text, 10)
            except ValueError:
                raise ValueError(f"--{self.name}: {text!r} is not a whole number") from None
        elif self.type is float:
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"--{self.name}: {text!r} is not a number") from None
        else:
            value = text
        return self._checked(value)

    def convert_value(self, value: Any, where: str) -> Any:
        """Check a value read from a deployment file (TOML types), and convert it.

        Args:
            value: What the file holds.
            where: Where it was read, for the error ("echo.toml: [options] listen").

        Raises:
            UsageError: It has the wrong type or is not allowed.
        """
        if self.arguments or self.repeatable:
            if not isinstance(value, list):
                raise UsageError(f"{where} must be an array of {_PLURALS[self.type]}")
            return [self._one_from_file(item, where) for item in value]
        return self._one_from_file(value, where)

    def _one_from_file(self, value: Any, where: str) -> Any:
        expected = self.type
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not expected:
            raise UsageError(f"{where} must be {_TYPES[expected]}, not {value!r}")
        if self.flag:
            return value
        try:
            return self._checked(value)
        except ValueError as exc:
            raise UsageError(f"{where}: {exc}") from None

    def _checked(self, value: Any) -> Any:
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(self.choices)
            raise ValueError(f"--{self.name}: {value!r} is not one of {allowed}")
        if self.check is not None:
            value = self.check(value)
        return value

    def add_to(self, parser: argparse.ArgumentParser, *, suppress: bool = False) -> None:
        """Declare the option on an argparse parser.

        Args:
            parser: Where to declare it.
            suppress: Leave it out of the parsed namespace unless given (for
                options accepted in two places, such as the runner's).
        """
        default = argparse.SUPPRESS if suppress else None
        help_text = self.help
        if self.default not in (None, (), [], False):
            shown = ", ".join(map(str, self.default)) if self.repeatable else self.default
            help_text += f" (default: {shown})"
        if self.arguments:
            parser.add_argument(
                self.key,
                nargs=argparse.REMAINDER,
                metavar=self.metavar or self.name.upper(),
                help=help_text,
                default=default,
            )
            return
        flags = [f"--{self.name}"] + [
            f"-{alias}" if len(alias) == 1 else f"--{alias}" for alias in self.aliases
        ]
        if self.flag:
            parser.add_argument(
                *flags, dest=self.key, action="store_true", help=help_text, default=default
            )
            return
        parser.add_argument(
            *flags,
            dest=self.key,
            action="append" if self.repeatable else "store",
            type=_Converter(self),
            metavar=self.metavar or self.name.upper(),
            help=help_text + (" (repeatable)" if self.repeatable else ""),
            default=default,
            required=self.required and not suppress,
        )


class _Converter:
    """An argparse ``type=``: converts and checks, failing with the option's own words."""

    def __init__(self, option: Option) -> None:
        self.option = option
        # argparse names the type in its error message.
        self.__name__ = option.name

    def __call__(self, text: str) -> Any:
        try:
            return self.option.convert_text(text)
        except ValueError as exc:
            message = str(exc).removeprefix(f"--{self.option.name}: ")
            raise argparse.ArgumentTypeError(message) from None


def option_values(options: Sequence[Option], parsed: Mapping[str, Any]) -> dict[str, Any]:
    """Every option's value, from what was given (by key) and the defaults.

    Raises:
        UsageError: A required option is missing.
    """
    values: dict[str, Any] = {}
    for option in options:
        given = parsed.get(option.key)
        if given is None or (option.repeatable and not given):
            values[option.key] = option.initial()
        elif option.arguments:
            values[option.key] = list(given[1:] if given and given[0] == "--" else given)
        else:
            values[option.key] = given
        if option.required and values[option.key] in (None, []):
            what = option.metavar or option.name.upper()
            if option.arguments:
                raise UsageError(f"{what} is missing")
            raise UsageError(f"--{option.name} is required")
    return values


@dataclass(frozen=True, slots=True, kw_only=True)
class Plugin:
    """A kind of service ``torsion`` can run: ``torsion NAME [options]``.

    Attributes:
        name: What the operator types ("echo").
        description: One line, shown by ``torsion --help``.
        options: Its options, in the order ``--help`` shows them.
        build: Makes the service tree from the reactor and the options
            (a mapping from each option's ``key`` to its value). It only
            builds: nothing may listen or start before the runner starts
            the tree.
    """

    name: str
    description: str
    options: tuple[Option, ...] = ()
    build: Callable[[Reactor, Mapping[str, Any]], Service]

    def option(self, name: str) -> Option:
        """Return the option called ``name`` (dashes or underscores).

        Raises:
            KeyError: It has none of that name.
        """
        for option in self.options:
            if name in (option.name, option.key):
                return option
        raise KeyError(name)


def find_plugins(builtin: Iterable[Plugin] = ()) -> dict[str, Plugin]:
    """The plugins ``torsion`` knows: ``builtin`` and those of the entry-point group.

    A plugin that fails to load is logged and left out, so that one broken
    package does not take the command down. A third-party plugin cannot
    replace a built-in one of the same name (it is logged and ignored).
    """
    found = {plugin.name: plugin for plugin in builtin}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            plugin = entry.load()
        except Exception as exc:
            _log.warning("Plugin %r (%s) cannot be loaded: %r", entry.name, entry.value, exc)
            continue
        if not isinstance(plugin, Plugin):
            _log.warning("Plugin %r (%s) is not a torsion Plugin", entry.name, entry.value)
            continue
        if entry.name in found and found[entry.name] is not plugin:
            _log.warning(
                "Plugin %r (%s) has the name of a built-in plugin; ignored",
                entry.name,
                entry.value,
            )
            continue
        found[entry.name] = plugin
    return found
