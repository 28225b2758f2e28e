"""Commands as declarations and the locators that find their responders."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from torsion.protocols.amp import (
    AMP,
    Command,
    CommandLocator,
    Integer,
    Responder,
    ResponderLocator,
    TooLongError,
    Unicode,
    encode_box,
)


class Base(Command):
    """Declared with class attributes, as Twisted's commands are."""

    arguments: ClassVar = {"n": Integer()}
    response: ClassVar = {"n": Integer()}
    errors: ClassVar = {KeyError: b"KEY", ValueError: b"VALUE"}
    fatal_errors: ClassVar = {MemoryError: b"MEMORY"}


class Derived(
    Base, errors={LookupError: b"LOOKUP"}, fatal_errors={ValueError: b"VALUE_NOW_FATAL"}
):
    """Declared with keywords of the class statement."""


class Renamed(Command):
    command_name = "renamed-on-the-wire"


def test_the_wire_name_is_the_class_name_unless_given() -> None:
    assert Base.command_name == b"Base"
    assert Derived.command_name == b"Derived"
    assert Renamed.command_name == b"renamed-on-the-wire"
    assert Renamed.wire_head == encode_box({b"_command": b"renamed-on-the-wire"})[:-2]

    class Raw(Command):
        command_name = b"\xffraw"

    assert Raw.command_name == b"\xffraw"


def test_errors_are_inherited_and_merged() -> None:
    assert Base.error_codes == {KeyError: b"KEY", ValueError: b"VALUE", MemoryError: b"MEMORY"}
    assert Derived.error_codes == {
        KeyError: b"KEY",
        ValueError: b"VALUE_NOW_FATAL",
        LookupError: b"LOOKUP",
        MemoryError: b"MEMORY",
    }
    assert Derived.error_types[b"LOOKUP"] is LookupError
    assert Derived.fatal_types == {ValueError, MemoryError}
    assert Base.fatal_types == {MemoryError}


def test_an_error_is_classified_by_its_nearest_declared_class() -> None:
    assert Base.classify(KeyError("k")) == (b"KEY", False)
    assert Base.classify(UnicodeDecodeError("utf-8", b"", 0, 1, "x")) == (b"VALUE", False)
    assert Base.classify(IndexError()) is None
    assert Derived.classify(IndexError()) == (b"LOOKUP", False)
    assert Derived.classify(KeyError()) == (b"KEY", False)
    assert Derived.classify(ValueError()) == (b"VALUE_NOW_FATAL", True)
    assert Derived.classify(MemoryError()) == (b"MEMORY", True)


def test_the_schemas_are_worked_out_once() -> None:
    assert Base.argument_schema.keys == (b"n",)
    assert Base.argument_schema.strict
    assert not Base.response_schema.strict
    # Inherited by a subclass that declares none of its own.
    assert Derived.argument_schema.keys == (b"n",)
    assert Derived.requires_answer


def test_both_ways_of_declaring_agree() -> None:
    class Keywords(
        Command,
        command_name="Same",
        arguments={"a": Integer()},
        response={"b": Unicode()},
        errors={KeyError: b"KEY"},
        requires_answer=False,
    ):
        pass

    class Attributes(Command):
        command_name = "Same"
        arguments: ClassVar = {"a": Integer()}
        response: ClassVar = {"b": Unicode()}
        errors: ClassVar = {KeyError: b"KEY"}
        requires_answer = False

    for command in (Keywords, Attributes):
        assert command.command_name == b"Same"
        assert command.argument_schema.keys == (b"a",)
        assert command.response_schema.keys == (b"b",)
        assert command.error_codes == {KeyError: b"KEY"}
        assert not command.requires_answer


def test_class_keywords_must_be_known() -> None:
    with pytest.raises(TypeError):
        type("Bad", (Command,), {}, argumnets={"a": Integer()})


@pytest.mark.parametrize(
    ("declaration", "error"),
    [
        ({"command_name": 5}, TypeError),
        ({"command_name": b""}, TooLongError),
        ({"errors": {KeyError: "KEY"}}, TypeError),
        ({"errors": {KeyError: b""}}, TypeError),
        ({"errors": {"KeyError": b"KEY"}}, TypeError),
        ({"fatal_errors": {int: b"INT"}}, TypeError),
        ({"arguments": {"a": Integer(), "b": Integer(wire_name="a")}}, TypeError),
        ({"response": {"_answer": Integer()}}, TypeError),
        ({"arguments": {"k" * 256: Integer()}}, TooLongError),
    ],
)
def test_bad_declarations_are_refused_when_the_class_is_made(
    declaration: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        type("Bad", (Command,), declaration)


# -- locators -------------------------------------------------------------------------


class Other(Command, arguments={"text": Unicode()}):
    """Answered by the same function as Derived."""


class Calculator(CommandLocator):
    @Base.responder
    def base(self, n: int) -> dict[str, int]:
        return {"n": n + 1}

    @Derived.responder
    @Other.responder
    def several(self, **values: Any) -> dict[str, Any]:
        return values


def test_marked_methods_are_found_by_command_name() -> None:
    calculator = Calculator()
    found = calculator.locate_responder(b"Base")
    assert found is not None
    assert found.command is Base
    assert found.function(n=1) == {"n": 2}
    derived, other = calculator.locate_responder(b"Derived"), calculator.locate_responder(b"Other")
    assert derived is not None
    assert derived.command is Derived
    assert other is not None
    assert other.command is Other
    assert calculator.locate_responder(b"Renamed") is None
    assert isinstance(calculator, ResponderLocator)


def test_a_subclass_inherits_responders_and_may_override_them_by_name() -> None:
    class Better(Calculator):
        def base(self, n: int) -> dict[str, int]:
            return {"n": n * 10}

        @Renamed.responder
        def renamed(self) -> dict[str, Any]:
            return {}

    better = Better()
    found = better.locate_responder(b"Base")
    assert found is not None
    assert found.function(n=2) == {"n": 20}
    assert better.locate_responder(b"renamed-on-the-wire") is not None
    assert Calculator().locate_responder(b"renamed-on-the-wire") is None


def test_two_responders_for_one_command_in_one_class_are_refused() -> None:
    with pytest.raises(TypeError, match="both first and second answer Base"):

        class Twice(CommandLocator):
            @Base.responder
            def first(self, n: int) -> dict[str, int]:
                return {"n": n}

            @Base.responder
            def second(self, n: int) -> dict[str, int]:
                return {"n": n}


def test_what_cannot_be_marked_is_refused() -> None:
    with pytest.raises(TypeError, match="cannot mark"):
        Base.responder(len)


def test_registered_responders_come_first() -> None:
    calculator = Calculator()

    def minus(n: int) -> dict[str, int]:
        return {"n": -n}

    calculator.register(Base, minus)
    assert calculator.locate_responder(b"Base") == Responder(Base, minus)
    assert Calculator().locate_responder(b"Base") != Responder(Base, minus)


def test_amp_is_a_locator() -> None:
    assert isinstance(AMP(), CommandLocator)
