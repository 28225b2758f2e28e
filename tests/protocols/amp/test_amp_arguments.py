"""The argument types: round trips, Twisted's encodings as the oracle, and bad values."""

from __future__ import annotations

import datetime
import decimal
import math
from typing import Any

import pytest
from _amp_commands import SAMPLES, AllTypes, canonical, tz
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.protocols import amp as tamp

from torsion.protocols.amp import (
    AmpList,
    AmpProtocolError,
    Argument,
    BadArgumentsError,
    Boolean,
    BoxParser,
    DateTime,
    Decimal,
    Float,
    Integer,
    InvalidSignatureError,
    ListOf,
    Schema,
    String,
    TooLongError,
    Unicode,
    encode_box,
)

# Values of each type, and Twisted's argument for the same type.
CASES: list[tuple[Argument[Any], Any, list[Any]]] = [
    (Integer(), tamp.Integer(), [0, 1, -1, 2**64, -(2**200), 123456789]),
    (String(), tamp.String(), [b"", b"\x00", bytes(range(256)), b"x" * 1000]),
    (Unicode(), tamp.Unicode(), ["", "a", "\u00e9", "\U0001f600", "\x00\n\r", "\u4e2d" * 100]),
    (Boolean(), tamp.Boolean(), [True, False]),
    (
        Float(),
        tamp.Float(),
        [0.0, -0.0, 0.1, 1.5, -2.5e-10, 1e300, 5e-324, math.inf, -math.inf, math.nan],
    ),
    (
        Decimal(),
        tamp.Decimal(),
        [
            decimal.Decimal(text)
            for text in [
                "0",
                "1",
                "-1.10",
                "1E+2",
                "1.5E-7",
                "123456789012345678901234567890.000",
                "Infinity",
                "-Infinity",
                "NaN",
                "-NaN",
                "sNaN",
                "-sNaN",
            ]
        ],
    ),
    (
        DateTime(),
        tamp.DateTime(),
        [
            datetime.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=tz(1)),
            datetime.datetime(1, 1, 1, tzinfo=tz(-23, -59)),
            datetime.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=tz(23, 59)),
            datetime.datetime(2000, 1, 1, 12, 0, 0, 5, tzinfo=tz(5, 45)),
            datetime.datetime(2000, 1, 1, 12, 0, 0, 5, tzinfo=tz(0, -30)),
        ],
    ),
    (ListOf(Integer()), tamp.ListOf(tamp.Integer()), [[], [1], [1, -2, 2**70]]),
    (ListOf(Unicode()), tamp.ListOf(tamp.Unicode()), [[], [""], ["a", "\u00e9", "x" * 300]]),
    (ListOf(Boolean()), tamp.ListOf(tamp.Boolean()), [[True, False, True]]),
]


@pytest.mark.parametrize(("ours", "theirs", "values"), CASES, ids=repr)
def test_every_type_encodes_as_twisted_does_and_reads_twisted(
    ours: Argument[Any], theirs: Any, values: list[Any]
) -> None:
    for value in values:
        data = ours.to_bytes(value)
        assert data == theirs.toString(value)
        assert canonical(ours.from_bytes(data)) == canonical(value)
        assert canonical(theirs.fromString(data)) == canonical(value)
        assert canonical(ours.from_bytes(theirs.toString(value))) == canonical(value)


def test_utc_is_spelt_plus_zero_which_twisted_reads() -> None:
    # Twisted writes UTC as -00:00 (ISO 8601 forbids it; RFC 3339 gives it
    # the meaning "offset unknown"); torsion writes +00:00 and reads both.
    moment = datetime.datetime(2020, 1, 2, 3, 4, 5, 6, tzinfo=datetime.UTC)
    ours = DateTime().to_bytes(moment)
    assert ours == b"2020-01-02T03:04:05.000006+00:00"
    assert tamp.DateTime().toString(moment) == b"2020-01-02T03:04:05.000006-00:00"
    assert tamp.DateTime().fromString(ours) == moment
    for spelling in (ours, tamp.DateTime().toString(moment)):
        read = DateTime().from_bytes(spelling)
        assert read == moment
        assert read.tzinfo is datetime.UTC


def test_an_offset_comes_back_as_a_fixed_offset() -> None:
    moment = datetime.datetime(2000, 1, 1, 12, 0, tzinfo=tz(-5, -30))
    read = DateTime().from_bytes(DateTime().to_bytes(moment))
    assert read.utcoffset() == datetime.timedelta(hours=-5, minutes=-30)
    assert read.isoformat() == "2000-01-01T12:00:00-05:30"


def test_amp_lists_encode_as_twisted_does_nested_too() -> None:
    ours = AmpList(
        {"a": Integer(), "inner": AmpList({"s": String(), "o": Integer(optional=True)})}
    )
    theirs = tamp.AmpList(
        [
            (b"a", tamp.Integer()),
            (b"inner", tamp.AmpList([(b"s", tamp.String()), (b"o", tamp.Integer(optional=True))])),
        ]
    )
    value = [
        {"a": 1, "inner": []},
        {"a": -2, "inner": [{"s": b"x", "o": None}, {"s": b"", "o": 5}]},
    ]
    data = ours.to_bytes(value)
    # Twisted writes each box's keys sorted, torsion in declaration order:
    # the same boxes either way.
    assert _nested_boxes(data) == _nested_boxes(theirs.toStringProto(value, None))
    assert data[:6] == b"\x00\x01a\x00\x011"
    assert ours.from_bytes(data) == value
    assert ours.from_bytes(theirs.toStringProto(value, None)) == value
    assert theirs.fromStringProto(data, None) == value
    assert ours.to_bytes([]) == b""
    assert ours.from_bytes(b"") == []


def _nested_boxes(data: bytes) -> list[dict[bytes, Any]]:
    """The boxes in an AmpList value, with values that hold boxes parsed too."""
    boxes = []
    for box in BoxParser().receive_data(data):
        parsed: dict[bytes, Any] = {}
        for key, value in box.items():
            try:
                parsed[key] = _nested_boxes(value) if value else value
            except AmpProtocolError:
                parsed[key] = value
        boxes.append(parsed)
    return boxes


def test_a_whole_command_encodes_as_twisted_does() -> None:
    from _amp_twisted_peer import AllTypes as TwistedAllTypes
    from _amp_twisted_peer import to_twisted

    for sample in SAMPLES:
        parts: list[bytes] = []
        AllTypes.argument_schema.encode(sample, parts)
        ours = dict(tamp._ParserHelper.parseString(b"".join(parts) + b"\x00\x00")[0])
        theirs = dict(TwistedAllTypes.makeArguments(to_twisted(sample), None))
        assert canonical(AllTypes.argument_schema.decode(theirs)) == canonical(sample)
        # The same pairs, except that Twisted spells UTC -00:00 and sorts
        # the keys of AmpList boxes.
        if sample["dt"].utcoffset() == datetime.timedelta(0):
            theirs[b"dt"] = theirs[b"dt"][:-6] + b"+00:00"
        assert _nested_boxes(ours.pop(b"al")) == _nested_boxes(theirs.pop(b"al"))
        assert ours == theirs


# -- bad values from the wire ------------------------------------------------------


@pytest.mark.parametrize(
    ("argument", "data"),
    [
        (Integer(), b""),
        (Integer(), b"12a"),
        (Integer(), b"1.5"),
        (Integer(), b"9" * 5000),  # more digits than Python converts
        (Boolean(), b"true"),
        (Boolean(), b"1"),
        (Boolean(), b""),
        (Float(), b"one"),
        (Float(), b""),
        (Decimal(), b"one"),
        (Decimal(), b"\xff"),
        (Unicode(), b"\xff\xfe"),
        (Unicode(), b"\xed\xa0\x80"),  # a surrogate, which UTF-8 cannot carry
        (DateTime(), b""),
        (DateTime(), b"2020-01-02T03:04:05.000006+00:0"),
        (DateTime(), b"2020-01-02T03:04:05.000006+00:000"),
        (DateTime(), b"2020-01-02 03:04:05.000006+00:00"),
        (DateTime(), b"2020-01-02T03:04:05.000006*00:00"),
        (DateTime(), b"2020/01-02T03:04:05.000006+00:00"),
        (DateTime(), b"2020-01-02T03:04:05,000006+00:00"),
        (DateTime(), b"20x0-01-02T03:04:05.000006+00:00"),
        (DateTime(), b"2020-01-02T03:04:05.00000-+00:00"),
        (DateTime(), b"2020-13-02T03:04:05.000006+00:00"),
        (DateTime(), b"2020-02-30T03:04:05.000006+00:00"),
        (DateTime(), b"2020-01-02T24:04:05.000006+00:00"),
        (DateTime(), b"2020-01-02T03:04:05.000006+24:00"),
        (DateTime(), b"2020-01-02T03:04:05.000006+00:60"),
        (DateTime(), "2020-01-02T03:04:05.00000\u0661+00:00".encode()),
        (ListOf(Integer()), b"\x00"),
        (ListOf(Integer()), b"\x00\x021"),
        (ListOf(Integer()), b"\x00\x01x"),
        (AmpList({"a": Integer()}), b"\x00\x01a\x00\x011"),
        (AmpList({"a": Integer()}), b"\x00\x00"),  # a box without its required key
        (AmpList({"a": Integer()}), b"\x01\x00"),
    ],
)
def test_bad_values_from_the_wire_are_refused(argument: Argument[Any], data: bytes) -> None:
    schema = Schema({"value": argument}, strict=True)
    with pytest.raises(BadArgumentsError, match="'value' is not valid") as info:
        schema.decode({b"value": data})
    assert isinstance(info.value, ValueError)
    assert len(str(info.value)) < 300  # the value itself is not repeated whole


def test_a_bad_decimal_is_refused_whatever_the_context_traps() -> None:
    with decimal.localcontext() as context:
        context.traps[decimal.InvalidOperation] = False
        assert decimal.Decimal("one").is_nan()  # what the constructor alone would do
        with pytest.raises(decimal.InvalidOperation):
            Decimal().from_bytes(b"one")
        assert Decimal().from_bytes(b"NaN").is_nan()


def test_a_missing_required_value_is_refused_and_an_optional_one_is_none() -> None:
    schema = Schema({"a": Integer(), "b": Integer(optional=True)}, strict=True)
    assert schema.decode({b"a": b"1"}) == {"a": 1, "b": None}
    assert schema.decode({b"a": b"1", b"b": b"2", b"other": b"x"}) == {"a": 1, "b": 2}
    with pytest.raises(BadArgumentsError, match="no 'a'"):
        schema.decode({b"b": b"2"})


# -- bad values to send --------------------------------------------------------------


@pytest.mark.parametrize(
    ("argument", "value", "error"),
    [
        (Integer(), "1", TypeError),
        (Integer(), 1.0, TypeError),
        (String(), "text", TypeError),
        (String(), bytearray(b"x"), TypeError),
        (Unicode(), b"bytes", TypeError),
        (Unicode(), "\udc80", UnicodeEncodeError),
        (Float(), "1.0", TypeError),
        (Decimal(), 1.5, TypeError),
        (DateTime(), datetime.date(2020, 1, 1), TypeError),
        (DateTime(), datetime.datetime(2020, 1, 1), ValueError),  # naive
        (
            DateTime(),
            datetime.datetime(
                2020, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(minutes=1, seconds=1))
            ),
            ValueError,
        ),
        (ListOf(Integer()), "123", TypeError),
        (ListOf(Integer()), 5, TypeError),
        (ListOf(Integer()), [1, "2"], TypeError),
        (ListOf(String()), [b"x" * 65536], TooLongError),
        (AmpList({"a": Integer()}), {"a": 1}, TypeError),
        (AmpList({"a": Integer()}), [1], TypeError),
        (AmpList({"a": Integer()}), [{"b": 1}], InvalidSignatureError),
    ],
)
def test_values_that_cannot_be_sent(argument: Argument[Any], value: Any, error: type) -> None:
    with pytest.raises(error):
        argument.to_bytes(value)


def test_floats_accept_ints_and_booleans_spell_truth() -> None:
    assert Float().to_bytes(3) == b"3.0"
    assert Boolean().to_bytes(0) == b"False"  # type: ignore[arg-type]
    assert Boolean().to_bytes("x") == b"True"  # type: ignore[arg-type]


# -- schemas -------------------------------------------------------------------------


def test_a_schema_encodes_declared_names_under_their_wire_names() -> None:
    schema = Schema(
        {"from_": Unicode(wire_name="from"), "n": Integer(), "o": Integer(optional=True)},
        strict=True,
    )
    parts: list[bytes] = []
    schema.encode({"from_": "me", "n": 3, "o": None}, parts)
    assert encode_box({b"from": b"me", b"n": b"3"}) == b"".join(parts) + b"\x00\x00"
    assert schema.keys == (b"from", b"n", b"o")
    with pytest.raises(InvalidSignatureError, match="'n' is missing"):
        schema.encode({"from_": "me"}, [])
    with pytest.raises(InvalidSignatureError, match="no such arguments: x, y"):
        schema.encode({"from_": "me", "n": 1, "y": 2, "x": 3}, [])
    lenient = Schema({"n": Integer()}, strict=False)
    parts = []
    lenient.encode({"n": 1, "extra": object()}, parts)
    assert b"".join(parts) == b"\x00\x01n\x00\x011"


def test_a_value_too_long_for_the_wire_is_refused() -> None:
    schema = Schema({"s": String()}, strict=True)
    parts: list[bytes] = []
    schema.encode({"s": b"x" * 65535}, parts)
    with pytest.raises(TooLongError) as info:
        schema.encode({"s": b"x" * 65536}, [])
    assert (info.value.key, info.value.length) == (b"s", 65536)


def test_an_encoding_error_names_the_argument() -> None:
    schema = Schema({"count": Integer()}, strict=True)
    with pytest.raises(TypeError) as info:
        schema.encode({"count": "three"}, [])
    assert "while encoding 'count'" in (info.value.__notes__ or [])


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        ({"a": Integer(), "b": Integer(wire_name="a")}, "both sent as"),
        ({"_ask": Integer()}, "AMP's own"),
        ({"a": Integer(wire_name="_tag")}, "AMP's own"),
        ({"a": int}, "should be declared with an Argument"),
    ],
)
def test_bad_schemas(arguments: dict[str, Any], match: str) -> None:
    with pytest.raises(TypeError, match=match):
        Schema(arguments, strict=True)


def test_a_key_too_long_for_the_wire_cannot_be_declared() -> None:
    with pytest.raises(TooLongError):
        Schema({"k" * 256: Integer()}, strict=True)
    with pytest.raises(TooLongError):
        Schema({"": Integer()}, strict=True)


def test_reprs_show_the_declaration() -> None:
    assert repr(Integer()) == "Integer()"
    assert (
        repr(Unicode(optional=True, wire_name="from"))
        == "Unicode(optional=True, wire_name=b'from')"
    )
    assert repr(ListOf(Integer())) == "ListOf(Integer())"
    assert repr(AmpList({"a": Integer()})) == "AmpList({'a': Integer()})"


def test_the_base_argument_is_abstract() -> None:
    with pytest.raises(NotImplementedError):
        Argument().to_bytes(1)
    with pytest.raises(NotImplementedError):
        Argument().from_bytes(b"1")


# -- properties ----------------------------------------------------------------------

zones = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(
    lambda m: datetime.timezone(datetime.timedelta(minutes=m))
)
VALUES: list[tuple[Argument[Any], Any, st.SearchStrategy[Any]]] = [
    (Integer(), tamp.Integer(), st.integers()),
    (String(), tamp.String(), st.binary(max_size=2000)),
    (Unicode(), tamp.Unicode(), st.text(max_size=500)),
    (Boolean(), tamp.Boolean(), st.booleans()),
    (Float(), tamp.Float(), st.floats()),
    (Decimal(), tamp.Decimal(), st.decimals()),
    (DateTime(), tamp.DateTime(), st.datetimes(timezones=zones)),
    (ListOf(Integer()), tamp.ListOf(tamp.Integer()), st.lists(st.integers(), max_size=50)),
    (ListOf(Unicode()), tamp.ListOf(tamp.Unicode()), st.lists(st.text(max_size=30), max_size=20)),
]


@pytest.mark.parametrize(("ours", "theirs", "strategy"), VALUES, ids=repr)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_every_type_round_trips_and_agrees_with_twisted(
    ours: Argument[Any], theirs: Any, strategy: st.SearchStrategy[Any], data: st.DataObject
) -> None:
    value = data.draw(strategy)
    encoded = ours.to_bytes(value)
    assert canonical(ours.from_bytes(encoded)) == canonical(value)
    theirs_encoded = theirs.toString(value)
    if isinstance(ours, DateTime) and value.utcoffset() == datetime.timedelta(0):
        theirs_encoded = theirs_encoded[:-6] + b"+00:00"
    assert encoded == theirs_encoded


@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "n": st.integers(),
                "t": st.text(max_size=20),
                "o": st.none() | st.booleans(),
                "inner": st.lists(
                    st.fixed_dictionaries({"b": st.binary(max_size=20)}), max_size=3
                ),
            }
        ),
        max_size=10,
    )
)
@settings(max_examples=100, deadline=None)
def test_amp_lists_round_trip(value: list[dict[str, Any]]) -> None:
    argument = AmpList(
        {
            "n": Integer(),
            "t": Unicode(),
            "o": Boolean(optional=True),
            "inner": AmpList({"b": String()}),
        }
    )
    assert argument.from_bytes(argument.to_bytes(value)) == value
