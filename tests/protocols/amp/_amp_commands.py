"""Commands and sample values the AMP tests share.

``_amp_twisted_peer.py`` declares the same commands with Twisted's AMP, so
that the interop tests can call either way.
"""

from __future__ import annotations

import datetime
import decimal
from typing import Any

from torsion.protocols.amp import (
    AmpList,
    Boolean,
    Command,
    DateTime,
    Decimal,
    Float,
    Integer,
    ListOf,
    String,
    Unicode,
)


class ExplodeError(Exception):
    """What ``Explode``'s responder raises: a fatal error."""


ALL_TYPES = {
    "i": Integer(),
    "s": String(),
    "u": Unicode(),
    "t": Boolean(),
    "flt": Float(),  # not "f": Twisted passes arguments on through a parameter f
    "d": Decimal(),
    "dt": DateTime(),
    "li": ListOf(Integer()),
    "lu": ListOf(Unicode()),
    "al": AmpList({"i": Integer(), "u": Unicode(), "inner": AmpList({"x": Float()})}),
    "opt": Integer(optional=True),
    "from_": Unicode(wire_name="from"),
    "dash_name": Integer(wire_name="dash-name"),
}


class AllTypes(Command, arguments=ALL_TYPES, response=ALL_TYPES):
    """Sends one value of every argument type; the answer echoes them."""


class Divide(
    Command,
    arguments={"numerator": Integer(), "denominator": Integer()},
    response={"result": Float()},
    errors={ZeroDivisionError: b"ZERO_DIVISION"},
):
    """Divides; a zero denominator is a declared error."""


class Explode(Command, fatal_errors={ExplodeError: b"EXPLODED"}):
    """Its responder raises ExplodeError, which is fatal: the connection closes."""


class Fail(Command):
    """Its responder raises an error nobody declared: UNKNOWN."""


class Note(Command, arguments={"text": Unicode()}, requires_answer=False):
    """Asks for no answer; the responder keeps the text."""


class Noted(Command, response={"texts": ListOf(Unicode())}):
    """Answers with the texts ``Note`` kept."""


class Double(Command, arguments={"x": Integer()}, response={"x": Integer()}):
    """Answers twice x."""


class Relay(Command, arguments={"x": Integer()}, response={"x": Integer()}):
    """Its responder calls ``Double`` back on the caller and answers with that."""


class Missing(Command):
    """No peer answers it: UNHANDLED."""


UTC = datetime.UTC


def tz(hours: int, minutes: int = 0) -> datetime.timezone:
    return datetime.timezone(datetime.timedelta(hours=hours, minutes=minutes))


# Each a full set of AllTypes arguments, covering the edges of every type.
SAMPLES: list[dict[str, Any]] = [
    {
        "i": 0,
        "s": b"",
        "u": "",
        "t": False,
        "flt": 0.0,
        "d": decimal.Decimal("0"),
        "dt": datetime.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
        "li": [],
        "lu": [],
        "al": [],
        "opt": None,
        "from_": "x",
        "dash_name": 1,
    },
    {
        "i": -(2**100),
        "s": bytes(range(256)),
        "u": "h\u00e9llo w\u00f6rld \U0001f600 \u4e2d\u6587 \x00",
        "t": True,
        "flt": -0.0,
        "d": decimal.Decimal("-1.10"),
        "dt": datetime.datetime(1, 1, 1, 0, 0, 0, 0, tzinfo=tz(5, 30)),
        "li": [0, -1, 2**64, 7],
        "lu": ["", "a", "\u00e9\U0001f600"],
        "al": [
            {"i": 1, "u": "one", "inner": []},
            {"i": -2, "u": "\u4e8c", "inner": [{"x": 1.5}, {"x": float("inf")}]},
        ],
        "opt": 42,
        "from_": "keyword on the wire",
        "dash_name": -3,
    },
    {
        "i": 2**200,
        "s": b"\xff" * 1000,
        "u": "\U0010ffff" * 100,
        "t": True,
        "flt": float("nan"),
        "d": decimal.Decimal("NaN"),
        "dt": datetime.datetime(9999, 12, 31, 12, 0, 0, 1, tzinfo=tz(-8)),
        "li": list(range(-50, 50)),
        "lu": ["x" * 300] * 3,
        "al": [{"i": n, "u": str(n), "inner": [{"x": n / 3}]} for n in range(20)],
        "opt": 0,
        "from_": "",
        "dash_name": 0,
    },
    {
        "i": 123456789,
        "s": b"\x00\x00",
        "u": "\u2028 line separator",
        "t": False,
        "flt": float("-inf"),
        "d": decimal.Decimal("-Infinity"),
        "dt": datetime.datetime(1999, 12, 31, 23, 59, 59, 0, tzinfo=tz(-23, -59)),
        "li": [1],
        "lu": ["\U0001f600"],
        "al": [{"i": 0, "u": "", "inner": [{"x": float("-inf")}, {"x": 1e300}]}],
        "opt": -1,
        "from_": "from",
        "dash_name": 2**70,
    },
    {
        "i": 1,
        "s": b"x",
        "u": "y",
        "t": True,
        "flt": 5e-324,
        "d": decimal.Decimal("sNaN"),
        "dt": datetime.datetime(2000, 6, 15, 8, 30, 0, 123, tzinfo=tz(14)),
        "li": [],
        "lu": [],
        "al": [],
        "opt": None,
        "from_": "z",
        "dash_name": 5,
    },
    {
        "i": -7,
        "s": b"\r\n",
        "u": "tab\tand\nnewline",
        "t": False,
        "flt": 1.7976931348623157e308,
        "d": decimal.Decimal("1E+2"),
        "dt": datetime.datetime(2038, 1, 19, 3, 14, 8, tzinfo=tz(0, -30)),
        "li": [2**31, -(2**31)],
        "lu": ["a", "b"],
        "al": [{"i": 1, "u": "a", "inner": []}],
        "opt": 7,
        "from_": "w",
        "dash_name": 9,
    },
    {
        "i": 99,
        "s": b"y",
        "u": "z",
        "t": True,
        "flt": 0.1,
        "d": decimal.Decimal("Infinity"),
        "dt": datetime.datetime(2020, 2, 2, 2, 2, 2, 2, tzinfo=UTC),
        "li": [5],
        "lu": ["q"],
        "al": [],
        "opt": None,
        "from_": "v",
        "dash_name": 8,
    },
    {
        "i": 5,
        "s": b"s",
        "u": "u",
        "t": False,
        "flt": 2.5,
        "d": decimal.Decimal("-0.000001000"),
        "dt": datetime.datetime(2020, 2, 2, 2, 2, 2, 2, tzinfo=UTC),
        "li": [5],
        "lu": ["q"],
        "al": [],
        "opt": None,
        "from_": "v",
        "dash_name": 8,
    },
]


def canonical(values: Any) -> Any:
    """Return ``values`` in a form that compares equal when the values do.

    NaNs are not equal to themselves, a signalling NaN refuses to be compared
    at all, and -0.0 equals 0.0: floats and Decimals compare by their text.
    """
    if isinstance(values, dict):
        return {key: canonical(value) for key, value in values.items()}
    if isinstance(values, list):
        return [canonical(value) for value in values]
    if isinstance(values, (float, decimal.Decimal)):
        return (type(values).__name__, repr(values))
    if isinstance(values, datetime.datetime):
        return (values.isoformat(), values.utcoffset())
    return (type(values).__name__, values)
