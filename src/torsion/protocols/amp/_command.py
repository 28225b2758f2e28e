"""AMP commands, declared as classes, and the locators that find their responders.

A command says what its call carries and what its answer carries::

    class Sum(Command):
        arguments = {"a": Integer(), "b": Integer()}
        response = {"total": Integer()}
        errors = {ZeroDivisionError: b"ZERO_DIVISION"}

or, the same, with the declaration in the class statement (which linters
that want mutable class attributes annotated with ``ClassVar`` accept)::

    class Sum(
        Command,
        arguments={"a": Integer(), "b": Integer()},
        response={"total": Integer()},
        errors={ZeroDivisionError: b"ZERO_DIVISION"},
    ):
        ...

Its name on the wire is the class name unless ``command_name`` says
otherwise. ``errors`` maps exceptions a responder may raise to the codes
that travel instead; the caller gets the same exception class back, built
from the description. ``fatal_errors`` are the same but close the
connection once the answer is sent. Both are inherited and merged along
the class hierarchy. ``requires_answer = False`` sends calls without a tag
(nothing is answered, not even errors).

A responder is a function that takes the arguments by name and returns the
response as a dictionary, a Deferred of one, or is an ``async def``. It is
found by a locator: a ``CommandLocator`` subclass marks its methods with
``@Sum.responder``, and ``register`` adds one to an instance::

    class Calculator(CommandLocator):
        @Sum.responder
        def sum(self, a: int, b: int) -> dict[str, int]:
            return {"total": a + b}

``AMP`` is a ``CommandLocator`` itself, so a protocol subclass can hold its
responders, or it can be handed any object with ``locate_responder``.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NamedTuple, TypeVar

from torsion.protocols.amp._arguments import Argument, Schema
from torsion.protocols.amp._box import COMMAND, MAX_VALUE_LENGTH, encode_pair
from torsion.protocols.amp._errors import TooLongError

__all__ = ["Command", "CommandLocator", "Responder", "ResponderLocator"]

F = TypeVar("F", bound=Callable[..., Any])

# The attribute that marks a function as a responder: the commands it answers.
_MARK = "_torsion_amp_commands"


class Command:
    """Subclass it to declare a command; it is never instantiated.

    Attributes:
        command_name: The name on the wire (default: the class name).
        arguments: The call's values: each Python name and its type.
        response: The answer's values, the same way.
        errors: Exceptions a responder may raise, each with the error code
            sent in its place. Matched by ``isinstance``, so a subclass of a
            listed exception is sent with the code of its nearest listed
            ancestor.
        fatal_errors: Like ``errors``, but the responder's side closes the
            connection after sending the error.
        requires_answer: Whether a call waits for an answer. Without one the
            call is sent without a tag and nothing comes back.
    """

    command_name: ClassVar[bytes]
    arguments: ClassVar[Mapping[str, Argument[Any]]] = {}
    response: ClassVar[Mapping[str, Argument[Any]]] = {}
    errors: ClassVar[Mapping[type[BaseException], bytes]] = {}
    fatal_errors: ClassVar[Mapping[type[BaseException], bytes]] = {}
    requires_answer: ClassVar[bool] = True

    # Worked out once per class by __init_subclass__.
    argument_schema: ClassVar[Schema] = Schema({}, strict=True)
    response_schema: ClassVar[Schema] = Schema({}, strict=False)
    error_codes: ClassVar[dict[type[BaseException], bytes]] = {}
    error_types: ClassVar[dict[bytes, type[BaseException]]] = {}
    fatal_types: ClassVar[frozenset[type[BaseException]]] = frozenset()
    wire_head: ClassVar[bytes] = b""

    def __init_subclass__(
        cls,
        *,
        command_name: str | bytes | None = None,
        arguments: Mapping[str, Argument[Any]] | None = None,
        response: Mapping[str, Argument[Any]] | None = None,
        errors: Mapping[type[BaseException], bytes] | None = None,
        fatal_errors: Mapping[type[BaseException], bytes] | None = None,
        requires_answer: bool | None = None,
        **kwargs: Any,
    ) -> None:
        """Check the declaration and work out the schemas and error tables.

        The declaration may also be given as keywords of the class statement
        (``class Sum(Command, arguments={...}, response={...})``), which
        linters that want mutable class attributes annotated accept as they are.
        """
        super().__init_subclass__(**kwargs)
        keywords = {
            "command_name": command_name,
            "arguments": arguments,
            "response": response,
            "errors": errors,
            "fatal_errors": fatal_errors,
            "requires_answer": requires_answer,
        }
        for attribute, value in keywords.items():
            if value is not None:
                setattr(cls, attribute, value)
        name: object = cls.__dict__.get("command_name", cls.__name__)
        if isinstance(name, str):
            name = name.encode("utf-8")
        if not isinstance(name, bytes):
            raise TypeError(f"{cls.__name__}.command_name must be bytes or str, not {name!r}")
        if not 0 < len(name) <= MAX_VALUE_LENGTH:
            raise TooLongError(b"_command", len(name), is_key=False)
        cls.command_name = name
        # Every call starts with this pair: encode it once.
        cls.wire_head = encode_pair(COMMAND, name)
        cls.argument_schema = Schema(cls.arguments, strict=True)
        cls.response_schema = Schema(cls.response, strict=False)
        codes: dict[type[BaseException], bytes] = {}
        fatal: set[type[BaseException]] = set()
        # Base classes first, so that a subclass's declarations win.
        for klass in reversed(cls.__mro__):
            for table, is_fatal in (("errors", False), ("fatal_errors", True)):
                table_declared: Mapping[type[BaseException], bytes] | None = klass.__dict__.get(
                    table
                )
                if not table_declared:
                    continue
                for error, code in table_declared.items():
                    _check_error(cls, error, code)
                    codes[error] = code
                    if is_fatal:
                        fatal.add(error)
                    else:
                        fatal.discard(error)
        cls.error_codes = codes
        cls.error_types = {code: error for error, code in codes.items()}
        cls.fatal_types = frozenset(fatal)

    @classmethod
    def responder(cls, function: F) -> F:
        """Mark ``function`` (a method of a ``CommandLocator``) as this command's responder.

        Use it as a decorator in the locator's class body. It returns the
        function unchanged; one function may answer several commands.
        """
        marks: tuple[type[Command], ...] = getattr(function, _MARK, ())
        try:
            setattr(function, _MARK, (*marks, cls))
        except AttributeError:
            raise TypeError(f"cannot mark {function!r} as a responder") from None
        return function

    @classmethod
    def classify(cls, error: BaseException) -> tuple[bytes, bool] | None:
        """Return the code declared for ``error`` and whether it is fatal, or None.

        The nearest class in ``error``'s hierarchy that ``errors`` or
        ``fatal_errors`` lists decides.
        """
        codes = cls.error_codes
        for klass in type(error).__mro__:
            code = codes.get(klass)
            if code is not None:
                return code, klass in cls.fatal_types
        return None


def _check_error(command: type[Command], error: object, code: object) -> None:
    if not (isinstance(error, type) and issubclass(error, BaseException)):
        raise TypeError(f"{command.__name__}: {error!r} in errors is not an exception class")
    if not isinstance(code, bytes) or not 0 < len(code) <= MAX_VALUE_LENGTH:
        raise TypeError(
            f"{command.__name__}: the code of {error.__name__} must be non-empty bytes"
        )


class Responder(NamedTuple):
    """What answers one command: the command and the function to call.

    Attributes:
        command: The command answered (for its schemas and errors).
        function: Called with the arguments by name; returns the response
            dictionary, a Deferred of it, or a coroutine.
    """

    command: type[Command]
    function: Callable[..., Any]


@typing.runtime_checkable
class ResponderLocator(typing.Protocol):
    """Finds the responder for a command by its name on the wire."""

    def locate_responder(self, name: bytes) -> Responder | None:
        """Return the responder for the command called ``name``, or None."""
        ...


class CommandLocator:
    """Holds responders: methods marked with ``@Command.responder``, and registered ones.

    Methods marked in the class body (and in its bases) answer for every
    instance; ``register`` adds a responder to one instance, and takes
    precedence. A subclass may override a marked method by name.
    """

    # Command name -> (command, method name), per class.
    _marked: ClassVar[dict[bytes, tuple[type[Command], str]]] = {}
    _registered: dict[bytes, Responder] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Collect the responders marked in the class body."""
        super().__init_subclass__(**kwargs)
        marked: dict[bytes, tuple[type[Command], str]] = {}
        for base in reversed(cls.__mro__[1:]):
            marked.update(getattr(base, "_marked", {}))
        own: dict[bytes, str] = {}
        for attribute, value in cls.__dict__.items():
            function = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
            for command in getattr(function, _MARK, ()):
                name = command.command_name
                if name in own:
                    raise TypeError(
                        f"{cls.__name__}: both {own[name]} and {attribute}"
                        f" answer {command.__name__}"
                    )
                own[name] = attribute
                marked[name] = (command, attribute)
        cls._marked = marked

    def register(self, command: type[Command], function: Callable[..., Any]) -> None:
        """Have ``function`` answer ``command`` for this locator (replacing any other)."""
        if self._registered is None:
            self._registered = {}
        self._registered[command.command_name] = Responder(command, function)

    def locate_responder(self, name: bytes) -> Responder | None:
        """Return the responder for the command called ``name``, or None."""
        if self._registered is not None:
            found = self._registered.get(name)
            if found is not None:
                return found
        marked = self._marked.get(name)
        if marked is None:
            return None
        command, attribute = marked
        return Responder(command, getattr(self, attribute))
