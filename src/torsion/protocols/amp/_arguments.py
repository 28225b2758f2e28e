"""AMP's argument types: how each kind of value is spelt in a box.

Every type turns a Python value into the bytes of one box value and back,
in the encoding Twisted's AMP uses, so that either end can be either
implementation:

* ``Integer``: ASCII decimal (``-12``), any size.
* ``String``: the bytes themselves.
* ``Unicode``: UTF-8.
* ``Boolean``: ``True`` or ``False``.
* ``Float``: Python's ``repr`` (``1.5``, ``1e+100``, ``nan``, ``inf``, ``-inf``).
* ``Decimal``: its string form, special values included (``NaN``, ``sNaN``,
  ``Infinity``, ``-Infinity``), so precision survives (``1.10``).
* ``DateTime``: ``YYYY-MM-DDTHH:MM:SS.ffffff+HH:MM``, always 32 characters,
  for datetimes that carry a UTC offset (whole minutes).
* ``ListOf(element)``: each element's encoding with a 16-bit big-endian
  length before it, one after another.
* ``AmpList(fields)``: a list of dictionaries, each encoded as a whole box
  (end marker included), one after another.

A ``Schema`` is what a command's ``arguments`` or ``response`` declare: the
names, their types, and which are optional. It encodes a dictionary of
values into a box's pairs and decodes a box back into a dictionary.
"""

from __future__ import annotations

import datetime as _datetime
import decimal as _decimal
import struct
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

from torsion.protocols.amp._box import (
    END,
    MAX_VALUE_LENGTH,
    Box,
    BoxParser,
    key_prefix,
)
from torsion.protocols.amp._errors import (
    BadArgumentsError,
    InvalidSignatureError,
    TooLongError,
)

__all__ = [
    "AmpList",
    "Argument",
    "Boolean",
    "DateTime",
    "Decimal",
    "Float",
    "Integer",
    "ListOf",
    "Schema",
    "String",
    "Unicode",
]

T = TypeVar("T")

_pack_length = struct.Struct(">H").pack
_unpack_length = struct.Struct(">H").unpack_from


class Argument(Generic[T]):
    """One kind of value in a box: how it is encoded and decoded.

    Subclass it for a type of your own by overriding ``to_bytes`` and
    ``from_bytes``; both ends must agree on the encoding.

    Args:
        optional: The value may be left out (it is then None on the
            receiving side, and a None value is left out when sending).
        wire_name: The key on the wire, when it is not the Python name
            the command declares it under (``"from"``, ``"foo-bar"``).
    """

    __slots__ = ("optional", "wire_name")

    def __init__(self, *, optional: bool = False, wire_name: str | bytes | None = None) -> None:
        self.optional = optional
        self.wire_name = wire_name.encode() if isinstance(wire_name, str) else wire_name

    def to_bytes(self, value: T) -> bytes:
        """Return the encoding of ``value``.

        Raises:
            TypeError: ``value`` is not of this argument's type.
            ValueError: ``value`` cannot be encoded (see each type).
        """
        raise NotImplementedError

    def from_bytes(self, data: bytes) -> T:
        """Return the value ``data`` encodes.

        Raises:
            ValueError: ``data`` is not a valid encoding (or ``TypeError``,
                ``ArithmeticError``: the schema takes any ``Exception`` as
                a bad value).
        """
        raise NotImplementedError

    def decoder(self) -> Callable[[bytes], T]:
        """Return the function that decodes a value (``from_bytes`` by default).

        Types whose decoding is a builtin return the builtin, which saves a
        call per value on the hot path.
        """
        return self.from_bytes

    def __repr__(self) -> str:
        extra = []
        if self.optional:
            extra.append("optional=True")
        if self.wire_name is not None:
            extra.append(f"wire_name={self.wire_name!r}")
        return f"{type(self).__name__}({', '.join(extra)})"


class Integer(Argument[int]):
    """An integer of any size, as ASCII decimal digits (``-12``)."""

    __slots__ = ()

    def to_bytes(self, value: int) -> bytes:
        """Return the decimal digits of ``value``."""
        if not isinstance(value, int):
            raise TypeError(f"Integer needs an int, not {type(value).__name__}")
        return b"%d" % value

    def from_bytes(self, data: bytes) -> int:
        """Return the integer the digits spell."""
        return int(data)

    def decoder(self) -> Callable[[bytes], int]:
        """Return ``int``, which decodes ASCII digits itself."""
        return int


class String(Argument[bytes]):
    """Bytes, as they are."""

    __slots__ = ()

    def to_bytes(self, value: bytes) -> bytes:
        """Return ``value`` itself."""
        if not isinstance(value, bytes):
            raise TypeError(f"String needs bytes, not {type(value).__name__}")
        return value

    def from_bytes(self, data: bytes) -> bytes:
        """Return ``data`` itself."""
        return data


class Unicode(Argument[str]):
    """Text, as UTF-8."""

    __slots__ = ()

    def to_bytes(self, value: str) -> bytes:
        """Return ``value`` in UTF-8."""
        if not isinstance(value, str):
            raise TypeError(f"Unicode needs a str, not {type(value).__name__}")
        return value.encode("utf-8")

    def from_bytes(self, data: bytes) -> str:
        """Return the text the UTF-8 bytes spell."""
        return data.decode("utf-8")


class Boolean(Argument[bool]):
    """True or False, spelt ``True`` and ``False``."""

    __slots__ = ()

    def to_bytes(self, value: bool) -> bytes:
        """Return ``True`` or ``False`` for ``value``'s truth."""
        return b"True" if value else b"False"

    def from_bytes(self, data: bytes) -> bool:
        """Return the boolean spelt; anything but the two spellings is refused."""
        if data == b"True":
            return True
        if data == b"False":
            return False
        raise ValueError(f"a Boolean is True or False, not {data[:40]!r}")


class Float(Argument[float]):
    """A float, as Python's ``repr`` spells it (``nan``, ``inf`` and ``-inf`` too)."""

    __slots__ = ()

    def to_bytes(self, value: float) -> bytes:
        """Return the shortest decimal spelling that reads back as ``value``."""
        if not isinstance(value, (float, int)):
            raise TypeError(f"Float needs a float, not {type(value).__name__}")
        return repr(float(value)).encode("ascii")

    def from_bytes(self, data: bytes) -> float:
        """Return the float spelt."""
        return float(data)

    def decoder(self) -> Callable[[bytes], float]:
        """Return ``float``, which reads the spelling itself."""
        return float


class Decimal(Argument[_decimal.Decimal]):
    """A ``decimal.Decimal``, as its string form, precision and special values kept."""

    __slots__ = ()

    def to_bytes(self, value: _decimal.Decimal) -> bytes:
        """Return ``str(value)`` (``1.10``, ``-Infinity``, ``sNaN``, ``1E+2``)."""
        if not isinstance(value, _decimal.Decimal):
            raise TypeError(f"Decimal needs a decimal.Decimal, not {type(value).__name__}")
        return str(value).encode("ascii")

    def from_bytes(self, data: bytes) -> _decimal.Decimal:
        """Return the Decimal spelt."""
        # Decimal() signals InvalidOperation for a bad string, which the
        # current context might not trap (it would give NaN): trap it here.
        with _decimal.localcontext() as context:
            context.traps[_decimal.InvalidOperation] = True
            return _decimal.Decimal(data.decode("ascii"))


class DateTime(Argument[_datetime.datetime]):
    """A datetime with a UTC offset, as ``YYYY-MM-DDTHH:MM:SS.ffffff+HH:MM``.

    The wire format carries a fixed offset, not a time zone, so a value
    comes back with a ``datetime.timezone`` of the same offset (UTC as
    ``datetime.UTC``). Naive datetimes, and offsets that are not
    whole minutes, cannot be sent.
    """

    __slots__ = ()

    def to_bytes(self, value: _datetime.datetime) -> bytes:
        """Return the 32 characters of ``value``.

        Raises:
            ValueError: ``value`` is naive, or its offset is not whole minutes.
        """
        if not isinstance(value, _datetime.datetime):
            raise TypeError(f"DateTime needs a datetime, not {type(value).__name__}")
        offset = value.utcoffset()
        if offset is None:
            raise ValueError("DateTime cannot send a naive datetime: give it a tzinfo")
        minutes, rest = divmod(offset, _datetime.timedelta(minutes=1))
        if rest:
            raise ValueError(f"DateTime sends whole-minute UTC offsets only, not {offset}")
        sign = "-" if minutes < 0 else "+"
        hours, minutes = divmod(abs(minutes), 60)
        return (
            f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
            f"T{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}"
            f"{sign}{hours:02d}:{minutes:02d}"
        ).encode("ascii")

    def from_bytes(self, data: bytes) -> _datetime.datetime:
        """Return the datetime spelt, with a fixed-offset tzinfo."""
        if (
            len(data) != 32
            or data[4:5] != b"-"
            or data[7:8] != b"-"
            or data[10:11] != b"T"
            or data[13:14] != b":"
            or data[16:17] != b":"
            or data[19:20] != b"."
            or data[26:27] not in (b"+", b"-")
            or data[29:30] != b":"
        ):
            raise ValueError(f"not an AMP DateTime: {data[:40]!r}")
        fields = []
        for start, stop in _DATETIME_FIELDS:
            digits = data[start:stop]
            if not digits.isdigit():
                raise ValueError(f"not an AMP DateTime: {data!r}")
            fields.append(int(digits))
        year, month, day, hour, minute, second, microsecond, tz_hours, tz_minutes = fields
        if tz_minutes >= 60:
            raise ValueError(f"not an AMP DateTime: {data!r}")
        offset = _datetime.timedelta(hours=tz_hours, minutes=tz_minutes)
        if data[26:27] == b"-":
            offset = -offset
        zone = _datetime.UTC if not offset else _datetime.timezone(offset)
        return _datetime.datetime(year, month, day, hour, minute, second, microsecond, tzinfo=zone)


# Where the numbers are in a DateTime: year, month, day, hours, minutes,
# seconds, microseconds, then the offset's hours and minutes.
_DATETIME_FIELDS = (
    (0, 4),
    (5, 7),
    (8, 10),
    (11, 13),
    (14, 16),
    (17, 19),
    (20, 26),
    (27, 29),
    (30, 32),
)


class ListOf(Argument[list[T]]):
    """A list of values of one type, each with its 16-bit length before it.

    The whole list is one box value, so it is bound by 65,535 bytes too.

    Args:
        element: The type of every element.
        optional: As for every argument.
        wire_name: As for every argument.
    """

    __slots__ = ("element",)

    def __init__(
        self,
        element: Argument[T],
        *,
        optional: bool = False,
        wire_name: str | bytes | None = None,
    ) -> None:
        super().__init__(optional=optional, wire_name=wire_name)
        self.element = element

    def to_bytes(self, value: list[T]) -> bytes:
        """Return the elements' encodings, each after its length."""
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
            raise TypeError(f"ListOf needs a list, not {type(value).__name__}")
        encode = self.element.to_bytes
        parts = []
        for item in value:
            data = encode(item)
            if len(data) > MAX_VALUE_LENGTH:
                raise TooLongError(b"(a ListOf element)", len(data), is_key=False)
            parts.append(_pack_length(len(data)))
            parts.append(data)
        return b"".join(parts)

    def from_bytes(self, data: bytes) -> list[T]:
        """Return the elements, each decoded by the element type."""
        decode = self.element.decoder()
        items = []
        pos = 0
        end = len(data)
        while pos < end:
            if pos + 2 > end:
                raise ValueError("a ListOf ends in the middle of a length")
            (length,) = _unpack_length(data, pos)
            stop = pos + 2 + length
            if stop > end:
                raise ValueError("a ListOf ends in the middle of an element")
            items.append(decode(data[pos + 2 : stop]))
            pos = stop
        return items

    def __repr__(self) -> str:
        return f"ListOf({self.element!r})"


class AmpList(Argument[list[dict[str, Any]]]):
    """A list of dictionaries, each sent as a whole box.

    Args:
        fields: The names in each dictionary and their types, as a
            command's ``arguments`` declare them (nested ``AmpList``s too).
        optional: As for every argument.
        wire_name: As for every argument.
    """

    __slots__ = ("schema",)

    def __init__(
        self,
        fields: Mapping[str, Argument[Any]],
        *,
        optional: bool = False,
        wire_name: str | bytes | None = None,
    ) -> None:
        super().__init__(optional=optional, wire_name=wire_name)
        self.schema = Schema(fields, strict=True)

    def to_bytes(self, value: list[dict[str, Any]]) -> bytes:
        """Return each dictionary as a box, one after another."""
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
            raise TypeError(f"AmpList needs a list of dicts, not {type(value).__name__}")
        parts: list[bytes] = []
        for item in value:
            if not isinstance(item, Mapping):
                raise TypeError(f"AmpList needs a list of dicts, not of {type(item).__name__}")
            self.schema.encode(item, parts)
            parts.append(END)
        return b"".join(parts)

    def from_bytes(self, data: bytes) -> list[dict[str, Any]]:
        """Return the dictionaries the boxes hold."""
        parser = BoxParser()
        boxes = parser.receive_data(data)
        if parser.pending:
            raise ValueError("an AmpList ends in the middle of a box")
        return [self.schema.decode(box) for box in boxes]

    def __repr__(self) -> str:
        return f"AmpList({self.schema.arguments!r})"


class Schema:
    """The named values of a box, with their types: a command's arguments or response.

    Args:
        arguments: Each Python name and its argument type. The key on the
            wire is the name in UTF-8 unless the argument gives a
            ``wire_name``.
        strict: Whether ``encode`` refuses names not declared here (for
            arguments; a responder's answer may carry more than its
            response declares).

    Raises:
        TooLongError: A key is empty or longer than 255 bytes.
        TypeError: Two names share one key, or a key is one of AMP's own.
    """

    __slots__ = ("_decoders", "_encoders", "arguments", "keys", "strict")

    def __init__(self, arguments: Mapping[str, Argument[Any]], *, strict: bool) -> None:
        self.arguments = dict(arguments)
        self.strict = strict
        encoders = []
        decoders = []
        keys: dict[bytes, str] = {}
        for name, argument in self.arguments.items():
            if not isinstance(argument, Argument):
                raise TypeError(f"{name!r} should be declared with an Argument, not {argument!r}")
            key = argument.wire_name if argument.wire_name is not None else name.encode()
            if key in keys:
                raise TypeError(f"{name!r} and {keys[key]!r} are both sent as {key!r}")
            if key.startswith(b"_"):
                raise TypeError(f"{key!r} starts with _: such keys are AMP's own")
            keys[key] = name
            encoders.append((name, key_prefix(key), argument.to_bytes, argument.optional))
            decoders.append((name, key, argument.decoder(), argument.optional))
        self.keys = tuple(keys)
        self._encoders = tuple(encoders)
        self._decoders = tuple(decoders)

    def encode(self, values: Mapping[str, Any], parts: list[bytes]) -> None:
        """Append the wire form of ``values``' pairs to ``parts`` (no end marker).

        Raises:
            InvalidSignatureError: A required name is missing, or (when
                strict) ``values`` holds a name not declared.
            TooLongError: A value encodes to more than 65,535 bytes.
            TypeError: A value is not of its argument's type.
            ValueError: A value cannot be encoded.
        """
        used = 0
        for name, prefix, encode, optional in self._encoders:
            try:
                value = values[name]
            except KeyError:
                if optional:
                    continue
                raise InvalidSignatureError(f"the required argument {name!r} is missing") from None
            used += 1
            if value is None and optional:
                continue
            try:
                data = encode(value)
            except Exception as exc:
                exc.add_note(f"while encoding {name!r}")
                raise
            if len(data) > MAX_VALUE_LENGTH:
                raise TooLongError(prefix[2:], len(data), is_key=False)
            parts.append(prefix)
            parts.append(_pack_length(len(data)))
            parts.append(data)
        if self.strict and used != len(values):
            unknown = sorted(set(values) - set(self.arguments))
            raise InvalidSignatureError(f"no such arguments: {', '.join(unknown)}")

    def decode(self, box: Box) -> dict[str, Any]:
        """Return the values of ``box``, by Python name; other keys are ignored.

        A missing optional value is None.

        Raises:
            BadArgumentsError: A required key is missing or a value does not
                decode.
        """
        values: dict[str, Any] = {}
        for name, key, decode, optional in self._decoders:
            data = box.get(key)
            if data is None:
                if optional:
                    values[name] = None
                    continue
                raise BadArgumentsError(f"the box has no {key.decode('utf-8', 'replace')!r}")
            try:
                values[name] = decode(data)
            except Exception as exc:
                # The reason may quote the value: keep it short.
                reason = str(exc)[:200]
                raise BadArgumentsError(
                    f"{key.decode('utf-8', 'replace')!r} is not valid: {reason}"
                ) from exc
        return values
