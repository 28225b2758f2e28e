"""HTTP header fields: one case-insensitive, multi-valued container.

``Headers`` keeps header fields as they travel, ``bytes`` names and values in
the order they came, with repeated fields kept apart (``Set-Cookie`` cannot
be joined with commas; RFC 9110 section 5.3). Names compare without regard
to case (RFC 9110 section 5.1). ``str`` accessors decode and encode ISO-8859-1,
the historical charset of field values (RFC 9110 section 5.5), so any byte
round-trips.

Everything added through the public methods is validated: a name must be a
token and a value may hold no control character but horizontal tab, so CR,
LF and NUL can never reach the wire (header injection, CVE-2019-12387).
The HTTP parser, which has already checked what it read, builds its headers
with ``Headers.from_raw`` at no further cost.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TypeAlias, overload

from torsion.errors import TorsionError

__all__ = [
    "Headers",
    "InvalidHeaderError",
    "validate_header_name",
    "validate_header_value",
]

HeaderText: TypeAlias = str | bytes

# RFC 9110 section 5.6.2: token = 1*tchar.
_TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# RFC 9110 section 5.5: field-value is visible characters, SP, HTAB and
# obs-text (0x80-0xFF). Every other control character is refused, CR, LF and
# NUL first among them.
_FIELD_VALUE_OK = b"\t" + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))


class InvalidHeaderError(TorsionError, ValueError):
    """A header name or value that must not be sent.

    Raised for a name that is not an RFC 9110 token and for a value holding a
    control character (CR, LF, NUL...), before anything reaches the wire.
    """


def validate_header_name(name: bytes) -> None:
    """Check that ``name`` is a token (RFC 9110 section 5.6.2).

    Args:
        name: The field name, as it will be sent.

    Raises:
        InvalidHeaderError: The name is empty or holds a character that is not
            a token character (a space, a colon, CR, LF, NUL...).
    """
    if not name or name.translate(None, _TCHAR):
        raise InvalidHeaderError(f"invalid header name {name!r}")


def validate_header_value(value: bytes) -> None:
    """Check that ``value`` holds no control character but horizontal tab.

    Args:
        value: The field value, as it will be sent.

    Raises:
        InvalidHeaderError: The value holds CR, LF, NUL or another control
            character.
    """
    if value.translate(None, _FIELD_VALUE_OK):
        raise InvalidHeaderError(f"invalid header value {value!r}")


def _name_bytes(name: HeaderText) -> bytes:
    if isinstance(name, str):
        try:
            encoded = name.encode("ascii")
        except UnicodeEncodeError:
            raise InvalidHeaderError(f"invalid header name {name!r}") from None
    else:
        encoded = name
    validate_header_name(encoded)
    return encoded


def _value_bytes(value: HeaderText) -> bytes:
    if isinstance(value, str):
        try:
            encoded = value.encode("latin-1")
        except UnicodeEncodeError:
            raise InvalidHeaderError(f"invalid header value {value!r}") from None
    else:
        encoded = value
    validate_header_value(encoded)
    return encoded


def _key(name: HeaderText) -> bytes:
    # A lookup key only: a name that cannot be encoded matches nothing.
    if isinstance(name, str):
        return name.encode("latin-1", "replace").lower()
    return name.lower()


class Headers:
    """Case-insensitive, multi-valued, ordered HTTP header fields.

    Names and values are ``bytes``; every method that takes one also takes a
    ``str`` (names ASCII, values ISO-8859-1). Iteration yields
    ``(name, value)`` pairs in the order they were added, names spelled as
    they were given.

    Example::

        headers = Headers([("Content-Type", "text/plain")])
        headers.add("Set-Cookie", "a=1")
        headers.add("Set-Cookie", "b=2")
        headers.get("content-type")        # b"text/plain"
        headers.get_all("set-cookie")      # [b"a=1", b"b=2"]
    """

    __slots__ = ("_pairs",)

    _pairs: list[tuple[bytes, bytes]]

    def __init__(
        self,
        fields: Iterable[tuple[HeaderText, HeaderText]]
        | Mapping[str, HeaderText]
        | Mapping[bytes, HeaderText]
        | None = None,
    ) -> None:
        """Make headers from pairs or a mapping, validating each.

        Args:
            fields: ``(name, value)`` pairs or a mapping of names to values.

        Raises:
            InvalidHeaderError: A name or value may not be sent.
        """
        self._pairs = []
        if fields is None:
            return
        items = fields.items() if isinstance(fields, Mapping) else fields
        for name, value in items:
            self._pairs.append((_name_bytes(name), _value_bytes(value)))

    @classmethod
    def from_raw(cls, pairs: list[tuple[bytes, bytes]]) -> Headers:
        """Wrap a list of pairs already checked, without copying it.

        For parsers: the list becomes the headers' own storage, so the caller
        must not change it afterwards.

        Args:
            pairs: ``(name, value)`` pairs, validated by the caller.

        Returns:
            Headers holding ``pairs``.
        """
        headers = cls.__new__(cls)
        headers._pairs = pairs
        return headers

    @property
    def raw(self) -> list[tuple[bytes, bytes]]:
        """The ``(name, value)`` pairs themselves (do not change the list)."""
        return self._pairs

    @overload
    def get(self, name: HeaderText) -> bytes | None: ...

    @overload
    def get(self, name: HeaderText, default: bytes) -> bytes: ...

    def get(self, name: HeaderText, default: bytes | None = None) -> bytes | None:
        """The first value of field ``name``, or ``default`` if absent.

        Args:
            name: The field name, in any case.
            default: What to return when the field is absent.

        Returns:
            The first value sent for ``name``, or ``default``.
        """
        key = _key(name)
        for field, value in self._pairs:
            if field.lower() == key:
                return value
        return default

    def get_str(self, name: HeaderText, default: str | None = None) -> str | None:
        """The first value of field ``name`` decoded, or ``default``.

        Args:
            name: The field name, in any case.
            default: What to return when the field is absent.

        Returns:
            The value decoded as ISO-8859-1, or ``default``.
        """
        value = self.get(name)
        return default if value is None else value.decode("latin-1")

    def get_all(self, name: HeaderText) -> list[bytes]:
        """Every value of field ``name``, in order (empty if absent).

        Args:
            name: The field name, in any case.

        Returns:
            A new list of the values.
        """
        key = _key(name)
        return [value for field, value in self._pairs if field.lower() == key]

    def add(self, name: HeaderText, value: HeaderText) -> None:
        """Append a field, keeping any others of the same name.

        Args:
            name: The field name.
            value: The field value.

        Raises:
            InvalidHeaderError: The name or value may not be sent.
        """
        self._pairs.append((_name_bytes(name), _value_bytes(value)))

    def set(self, name: HeaderText, value: HeaderText) -> None:
        """Replace every field ``name`` with one holding ``value``.

        The new field takes the place of the first one replaced, or goes last
        if there was none.

        Args:
            name: The field name.
            value: The field value.

        Raises:
            InvalidHeaderError: The name or value may not be sent.
        """
        field = (_name_bytes(name), _value_bytes(value))
        key = field[0].lower()
        pairs = self._pairs
        for index, (existing, _) in enumerate(pairs):
            if existing.lower() == key:
                pairs[index] = field
                pairs[index + 1 :] = [p for p in pairs[index + 1 :] if p[0].lower() != key]
                return
        pairs.append(field)

    def set_default(self, name: HeaderText, value: HeaderText) -> None:
        """Add field ``name`` with ``value`` only if it is absent.

        Args:
            name: The field name.
            value: The field value.

        Raises:
            InvalidHeaderError: The name or value may not be sent.
        """
        if name not in self:
            self.add(name, value)

    def remove(self, name: HeaderText) -> None:
        """Remove every field ``name`` (nothing happens if absent).

        Args:
            name: The field name, in any case.
        """
        key = _key(name)
        self._pairs[:] = [p for p in self._pairs if p[0].lower() != key]

    def copy(self) -> Headers:
        """An independent copy of these headers."""
        return Headers.from_raw(list(self._pairs))

    def __contains__(self, name: object) -> bool:
        """Whether a field called ``name`` is present (any case)."""
        if not isinstance(name, (str, bytes)):
            return False
        key = _key(name)
        return any(field.lower() == key for field, _ in self._pairs)

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        """The ``(name, value)`` pairs, in order."""
        return iter(self._pairs)

    def __len__(self) -> int:
        """The number of fields (a repeated name counts each time)."""
        return len(self._pairs)

    def __eq__(self, other: object) -> bool:
        """Equal to headers with the same fields in the same order, names in any case."""
        if not isinstance(other, Headers):
            return NotImplemented
        if len(self._pairs) != len(other._pairs):
            return False
        return all(
            a[0].lower() == b[0].lower() and a[1] == b[1]
            for a, b in zip(self._pairs, other._pairs, strict=True)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        """The pairs, for debugging."""
        return f"Headers({self._pairs!r})"
