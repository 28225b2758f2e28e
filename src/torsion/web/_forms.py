"""HTML form bodies: ``application/x-www-form-urlencoded`` and ``multipart/form-data``.

:func:`parse_urlencoded` reads a urlencoded body (or a query string) into
names and lists of values, bounded in size and field count.
:class:`MultipartParser` reads a ``multipart/form-data`` body (RFC 7578) fed
in chunks of any size as they arrive: text fields are kept in memory up to a
limit, file parts go to a ``tempfile.SpooledTemporaryFile`` (memory up to a
size, then disk), and the body as a whole is capped. Malformed bodies raise
:class:`FormError` (answer 400) and bodies over a limit raise
:class:`FormTooLargeError` (answer 413); the error's ``status`` says which.

Names and text values are ``str``, decoded as UTF-8 (what every browser sends
for a page served as UTF-8, and what WHATWG's urlencoded parser assumes) with
undecodable bytes replaced by U+FFFD, so a form never fails on bad text.
Files stay ``bytes``.
"""

from __future__ import annotations

import codecs
import enum
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import IO, Final, Self
from urllib.parse import quote_plus, unquote, unquote_to_bytes

from torsion.errors import TorsionError
from torsion.web._headers import Headers, InvalidHeaderError, validate_header_name

__all__ = [
    "FormError",
    "FormTooLargeError",
    "MultipartForm",
    "MultipartParser",
    "UploadedFile",
    "encode_urlencoded",
    "multipart_boundary",
    "parse_multipart",
    "parse_urlencoded",
]

DEFAULT_MAX_FIELDS: Final = 1000
DEFAULT_MAX_URLENCODED: Final = 1024 * 1024


class FormError(TorsionError, ValueError):
    """A form body that cannot be read: the request deserves a 400.

    Attributes:
        status: The HTTP status to answer with.
    """

    status: int = 400


class FormTooLargeError(FormError):
    """A form body over one of the parser's limits: answer 413."""

    status = 413


def _decode(raw: bytes | bytearray) -> str:
    """Decode a field name or value: UTF-8, bad bytes as U+FFFD."""
    return raw.decode("utf-8", "replace")


def parse_urlencoded(
    body: bytes,
    *,
    max_fields: int = DEFAULT_MAX_FIELDS,
    max_size: int = DEFAULT_MAX_URLENCODED,
) -> dict[str, list[str]]:
    """Parse an ``application/x-www-form-urlencoded`` body or a query string.

    Follows WHATWG URL's urlencoded parser: ``&`` separates fields, empty
    fields are skipped, ``+`` is a space, ``%XX`` is a byte, a field without
    ``=`` has the empty value, and the bytes are decoded as UTF-8.

    Args:
        body: The body (or the query string, without ``?``).
        max_fields: Most fields allowed.
        max_size: Most bytes allowed.

    Returns:
        Each name with its values in the order sent; names in order of first
        appearance.

    Raises:
        FormTooLargeError: ``body`` is longer than ``max_size`` or holds more
            than ``max_fields`` fields.
    """
    if len(body) > max_size:
        raise FormTooLargeError(f"form body over {max_size} bytes")
    fields: dict[str, list[str]] = {}
    if not body:
        return fields
    pieces = body.split(b"&")
    if len(pieces) > max_fields and sum(1 for p in pieces if p) > max_fields:
        raise FormTooLargeError(f"more than {max_fields} form fields")
    for piece in pieces:
        if not piece:
            continue
        name, _, value = piece.partition(b"=")
        # unquote_to_bytes then one decode: a multi-byte character split
        # across %XX escapes decodes whole.
        if b"+" in name:
            name = name.replace(b"+", b" ")
        if b"+" in value:
            value = value.replace(b"+", b" ")
        key = _decode(unquote_to_bytes(name) if b"%" in name else name)
        text = _decode(unquote_to_bytes(value) if b"%" in value else value)
        fields.setdefault(key, []).append(text)
    return fields


def encode_urlencoded(
    fields: Mapping[str, str | Iterable[str]] | Iterable[tuple[str, str]],
) -> bytes:
    """Encode fields as an ``application/x-www-form-urlencoded`` body.

    Args:
        fields: A mapping of names to a value or to several values, or
            ``(name, value)`` pairs.

    Returns:
        The body: UTF-8, spaces as ``+``, everything else outside
        ``A-Za-z0-9*-._~`` percent-encoded.
    """
    pairs: list[tuple[str, str]] = []
    if isinstance(fields, Mapping):
        for name, values in fields.items():
            if isinstance(values, str):
                pairs.append((name, values))
            else:
                pairs.extend((name, value) for value in values)
    else:
        pairs.extend(fields)
    return "&".join(
        f"{quote_plus(name, safe='*')}={quote_plus(value, safe='*')}" for name, value in pairs
    ).encode("ascii")


def _split_params(text: str) -> list[str]:
    """Split a header value at ``;`` outside quoted strings."""
    pieces: list[str] = []
    start, quoted, escaped = 0, False, False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ";" and not quoted:
            pieces.append(text[start:index])
            start = index + 1
    pieces.append(text[start:])
    return pieces


def _unquote(value: str) -> str:
    r"""Strip a quoted string's quotes and undo ``\"`` and ``\\``.

    Other backslashes stay: browsers send Windows paths in file names
    unescaped (``C:\dir\f.txt``), and RFC 7578 §4.2 notes that senders do
    not use quoted-pair.
    """
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
        if "\\" in value:
            value = value.replace('\\"', '"').replace("\\\\", "\\")
    return value


def _parse_header_params(value: str) -> tuple[str, dict[str, str]]:
    """Split ``type; a=1; b="2"`` into a lower-cased first item and parameters.

    Parameter names are lower-cased; a repeated parameter keeps its first
    value (a later one cannot override ``name`` or ``filename``).
    """
    pieces = _split_params(value)
    params: dict[str, str] = {}
    for piece in pieces[1:]:
        key, equals, raw = piece.partition("=")
        key = key.strip(" \t").lower()
        if equals and key:
            params.setdefault(key, _unquote(raw.strip(" \t")))
    return pieces[0].strip(" \t").lower(), params


def _extended_value(value: str) -> str | None:
    """Decode an RFC 8187 ext-value (``UTF-8''a%20b``), or None if malformed."""
    charset, first, rest = value.partition("'")
    _language, second, encoded = rest.partition("'")
    if not (first and second) or charset.lower() not in ("utf-8", "iso-8859-1"):
        return None
    try:
        return unquote(encoded, encoding=charset.lower(), errors="strict")
    except UnicodeDecodeError:
        return None


def multipart_boundary(content_type: bytes | str) -> bytes:
    """The boundary of a ``multipart/form-data`` body from its ``Content-Type``.

    Args:
        content_type: The request's ``Content-Type`` value.

    Returns:
        The boundary, as bytes.

    Raises:
        FormError: The type is not ``multipart/form-data`` or its boundary
            is missing or not 1 to 70 characters of RFC 2046's set.
    """
    text = content_type.decode("latin-1") if isinstance(content_type, bytes) else content_type
    media_type, params = _parse_header_params(text)
    if media_type != "multipart/form-data":
        raise FormError(f"not multipart/form-data: {media_type!r}")
    boundary = params.get("boundary", "")
    if not 1 <= len(boundary) <= 70 or not _BOUNDARY_CHARS.issuperset(boundary):
        raise FormError(f"invalid multipart boundary {boundary!r}")
    if boundary.endswith(" "):
        raise FormError("a multipart boundary may not end with a space")
    return boundary.encode("ascii")


_BOUNDARY_CHARS: Final = frozenset(
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? "
)


@dataclass(slots=True, kw_only=True)
class UploadedFile:
    """A file part of a ``multipart/form-data`` body.

    The data is in ``file`` (positioned at its start), in memory while small
    and on disk beyond the parser's ``spool_size``. Close the form (or the
    file) when done to remove it.

    Attributes:
        name: The form field's name.
        filename: The file name the client sent (RFC 6266 ``filename*`` when
            given, else ``filename``). Untrusted: it may be a path or empty;
            see :attr:`safe_filename`.
        content_type: The part's ``Content-Type`` (default
            ``application/octet-stream``).
        headers: All the part's header fields.
        file: The data.
        size: The data's length in bytes.
    """

    name: str
    filename: str
    content_type: str
    headers: Headers
    file: IO[bytes]
    size: int = 0

    @property
    def safe_filename(self) -> str:
        r"""The file name's last path component, or "" if nothing usable is left.

        Both ``/`` and ``\`` count as separators; NUL and other control
        characters are dropped; ``.`` and ``..`` become "". Still check the
        name against your own rules before using it on a file system.
        """
        base = self.filename.replace("\\", "/").rsplit("/", 1)[-1]
        base = "".join(c for c in base if c >= " " and c != "\x7f")
        return "" if base in (".", "..") else base

    def read(self) -> bytes:
        """Return the whole file's data (read into memory: mind its size)."""
        self.file.seek(0)
        data = self.file.read()
        self.file.seek(0)
        return data

    def close(self) -> None:
        """Close the file, removing it from disk if it went there."""
        self.file.close()


@dataclass(slots=True)
class MultipartForm:
    """What a ``multipart/form-data`` body held.

    Use it as a context manager, or call :meth:`close`, to remove the
    temporary files.

    Attributes:
        fields: Text fields: each name with its values in order.
        files: File parts: each name with its files in order.
    """

    fields: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, list[UploadedFile]] = field(default_factory=dict)

    def close(self) -> None:
        """Close every file part."""
        for uploads in self.files.values():
            for upload in uploads:
                upload.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class _State(enum.Enum):
    """Where a multipart parser is in the body."""

    PREAMBLE = enum.auto()
    AFTER_DELIMITER = enum.auto()
    HEADERS = enum.auto()
    BODY = enum.auto()
    EPILOGUE = enum.auto()


# After a delimiter, RFC 2046 §5.1.1 allows linear white space before CRLF.
_MAX_PADDING: Final = 256


class MultipartParser:
    """A streaming ``multipart/form-data`` parser (RFC 7578).

    Feed the body as it arrives with :meth:`feed`, then call :meth:`close`
    for the form. Memory stays bounded whatever the chunking: at most one
    part's header block, one text field, ``spool_size`` of one file, and a
    delimiter's length of undecided bytes.

    Example::

        parser = MultipartParser(multipart_boundary(content_type))
        for chunk in chunks:
            parser.feed(chunk)
        with parser.close() as form:
            ...
    """

    def __init__(
        self,
        boundary: bytes,
        *,
        max_parts: int = 128,
        max_header_size: int = 8192,
        max_field_size: int = 1024 * 1024,
        max_fields_size: int = 8 * 1024 * 1024,
        spool_size: int = 1024 * 1024,
        max_file_size: int | None = None,
        max_total_size: int = 64 * 1024 * 1024,
        spool_directory: str | None = None,
    ) -> None:
        """Make a parser for one body.

        Args:
            boundary: The boundary, from :func:`multipart_boundary`.
            max_parts: Most parts allowed.
            max_header_size: Most bytes of header fields in one part.
            max_field_size: Most bytes of one text field.
            max_fields_size: Most bytes of all text fields together.
            spool_size: File data kept in memory before it goes to disk.
            max_file_size: Most bytes of one file (None: only the total cap).
            max_total_size: Most bytes of the whole body.
            spool_directory: Where temporary files go (the system's default
                when None).
        """
        self._delimiter = b"\r\n--" + boundary
        self._max_parts = max_parts
        self._max_header_size = max_header_size
        self._max_field_size = max_field_size
        self._max_fields_size = max_fields_size
        self._spool_size = spool_size
        self._max_file_size = max_file_size
        self._max_total_size = max_total_size
        self._spool_directory = spool_directory
        # The body's first delimiter may come without the CRLF before it:
        # start as if one had been read, so that every delimiter looks alike.
        self._buffer = bytearray(b"\r\n")
        self._state = _State.PREAMBLE
        self._total = 0
        self._parts = 0
        self._fields_size = 0
        self._charset = "utf-8"
        self._form = MultipartForm()
        self._failed = False
        # The part being read: a text field's bytes, or a file.
        self._name = ""
        self._field: bytearray | None = None
        self._field_charset: str | None = None
        self._upload: UploadedFile | None = None

    def feed(self, data: bytes) -> None:
        """Parse the next piece of the body.

        Args:
            data: Bytes of any length (empty is fine).

        Raises:
            FormError: The body is malformed.
            FormTooLargeError: The body goes over a limit.
        """
        if self._failed:
            raise FormError("the multipart parser has already failed")
        self._total += len(data)
        try:
            if self._total > self._max_total_size:
                raise FormTooLargeError(f"multipart body over {self._max_total_size} bytes")
            if self._state is _State.EPILOGUE:
                return  # RFC 2046 §5.1.1: ignored
            self._buffer += data
            self._run()
        except FormError:
            self._fail()
            raise

    def close(self) -> MultipartForm:
        """End the body and return the form.

        Returns:
            The fields and files; the caller closes it when done.

        Raises:
            FormError: The body ended before its closing delimiter.
        """
        if self._failed:
            raise FormError("the multipart parser has already failed")
        if self._state is not _State.EPILOGUE:
            self._fail()
            raise FormError("multipart body ended before its closing delimiter")
        return self._form

    def abort(self) -> None:
        """Give up on the body (the request was cancelled): remove temporary files."""
        self._fail()

    def _fail(self) -> None:
        """Release every file and refuse any further input."""
        self._failed = True
        self._buffer = bytearray()
        if self._upload is not None:
            self._upload.close()
            self._upload = None
        self._form.close()

    def _run(self) -> None:
        """Consume the buffer for as long as a state can make progress."""
        while True:
            state = self._state
            if state is _State.BODY or state is _State.PREAMBLE:
                if not self._scan_body():
                    return
            elif state is _State.AFTER_DELIMITER:
                if not self._after_delimiter():
                    return
            elif state is _State.HEADERS:
                if not self._headers():
                    return
            else:
                self._buffer = bytearray()
                return

    def _scan_body(self) -> bool:
        """Pass data on up to the next delimiter; True once it is found."""
        buffer = self._buffer
        index = buffer.find(self._delimiter)
        if index < 0:
            # Keep what could be the start of a delimiter split across feeds.
            keep = len(self._delimiter) - 1
            if len(buffer) > keep:
                self._data(buffer[: len(buffer) - keep])
                del buffer[: len(buffer) - keep]
            return False
        if index:
            self._data(buffer[:index])
        del buffer[: index + len(self._delimiter)]
        if self._state is _State.BODY:
            self._end_part()
        self._state = _State.AFTER_DELIMITER
        return True

    def _after_delimiter(self) -> bool:
        """Read ``--`` (the end) or padding and CRLF (a part follows)."""
        buffer = self._buffer
        if len(buffer) < 2:
            return False
        if buffer[:2] == b"--":
            self._state = _State.EPILOGUE
            self._buffer = bytearray()
            return False
        end = buffer.find(b"\r\n", 0, _MAX_PADDING)
        if end < 0:
            # Not whole yet: what came must be blanks (a last CR may start CRLF).
            pending = buffer[:-1] if buffer.endswith(b"\r") else buffer
            if len(buffer) >= _MAX_PADDING or pending.strip(b" \t"):
                raise FormError("junk after a multipart delimiter")
            return False
        if buffer[:end].strip(b" \t"):
            raise FormError("junk after a multipart delimiter")
        del buffer[: end + 2]
        self._parts += 1
        if self._parts > self._max_parts:
            raise FormTooLargeError(f"more than {self._max_parts} multipart parts")
        self._state = _State.HEADERS
        return True

    def _headers(self) -> bool:
        """Read a part's header block once it is whole."""
        buffer = self._buffer
        if buffer[:2] == b"\r\n":
            end = 0  # no header fields at all
        else:
            end = buffer.find(b"\r\n\r\n", 0, self._max_header_size + 4)
            if end < 0:
                if len(buffer) > self._max_header_size + 2:
                    raise FormTooLargeError(
                        f"multipart part headers over {self._max_header_size} bytes"
                    )
                return False
            end += 2
        block = bytes(buffer[:end])
        del buffer[: end + 2]
        self._start_part(_parse_part_headers(block))
        self._state = _State.BODY
        return True

    def _start_part(self, headers: Headers) -> None:
        """Set up storage for a part from its header fields."""
        disposition = headers.get(b"content-disposition")
        if disposition is None:
            raise FormError("multipart part without Content-Disposition")
        kind, params = _parse_header_params(_decode(disposition))
        name = params.get("name")
        if "name*" in params:
            # RFC 7578 §4.2 says not to, but some writers (Python's email
            # package among them) send non-ASCII names as RFC 2231 values.
            name = _extended_value(params["name*"]) or name
        if kind != "form-data" or name is None:
            raise FormError("multipart part is not form-data with a name")
        self._name = name
        content_type = headers.get(b"content-type")
        media_type, type_params = _parse_header_params(
            _decode(content_type) if content_type is not None else ""
        )
        filename = params.get("filename")
        extended = params.get("filename*")
        if extended is not None:
            filename = _extended_value(extended) or filename
        if filename is None:
            self._field = bytearray()
            self._field_charset = type_params.get("charset")
            return
        self._upload = UploadedFile(
            name=self._name,
            filename=filename,
            content_type=media_type or "application/octet-stream",
            headers=headers,
            file=tempfile.SpooledTemporaryFile(  # noqa: SIM115 - the form owns it
                max_size=self._spool_size, dir=self._spool_directory
            ),
        )

    def _data(self, data: bytearray) -> None:
        """Store a piece of the current part's data."""
        if self._state is _State.PREAMBLE:
            return  # RFC 2046 §5.1.1: ignored
        if self._field is not None:
            self._fields_size += len(data)
            if len(self._field) + len(data) > self._max_field_size:
                raise FormTooLargeError(f"form field over {self._max_field_size} bytes")
            if self._fields_size > self._max_fields_size:
                raise FormTooLargeError(f"form fields over {self._max_fields_size} bytes")
            self._field += data
        elif self._upload is not None:
            self._upload.size += len(data)
            if self._max_file_size is not None and self._upload.size > self._max_file_size:
                raise FormTooLargeError(f"uploaded file over {self._max_file_size} bytes")
            self._upload.file.write(data)

    def _end_part(self) -> None:
        """File the finished part in the form."""
        if self._field is not None:
            charset = self._field_charset or self._charset
            try:
                value = self._field.decode(charset, "replace")
            except LookupError:
                value = _decode(self._field)
            # RFC 7578 §4.6: a field named _charset_ sets the default charset.
            if self._name == "_charset_" and _known_charset(value):
                self._charset = value
            self._form.fields.setdefault(self._name, []).append(value)
            self._field = None
        elif self._upload is not None:
            self._upload.file.seek(0)
            self._form.files.setdefault(self._name, []).append(self._upload)
            self._upload = None


def _known_charset(name: str) -> bool:
    """Whether Python has a codec of this name."""
    try:
        codecs.lookup(name)
    except LookupError:
        return False
    return True


def _parse_part_headers(block: bytes) -> Headers:
    """Parse a part's header lines (each ending in CRLF) into Headers."""
    pairs: list[tuple[bytes, bytes]] = []
    for line in block.split(b"\r\n")[:-1]:
        if line[:1] in (b" ", b"\t"):
            if not pairs:
                raise FormError("multipart header block starts with a continuation")
            name, value = pairs[-1]
            pairs[-1] = (name, value + b" " + line.strip(b" \t"))
            continue
        name, colon, value = line.partition(b":")
        if not colon:
            raise FormError("malformed multipart header line")
        try:
            validate_header_name(name)
        except InvalidHeaderError as exc:
            raise FormError("malformed multipart header name") from exc
        pairs.append((name, value.strip(b" \t")))
    for _name, value in pairs:
        if b"\0" in value or b"\r" in value or b"\n" in value:
            raise FormError("control character in a multipart header")
    return Headers.from_raw(pairs)


def parse_multipart(
    body: bytes, content_type: bytes | str, **limits: int | str | None
) -> MultipartForm:
    """Parse a whole ``multipart/form-data`` body held in memory.

    Args:
        body: The body.
        content_type: The request's ``Content-Type`` value.
        **limits: :class:`MultipartParser`'s keyword arguments.

    Returns:
        The form; close it when done.

    Raises:
        FormError: The body or its type is malformed.
        FormTooLargeError: The body goes over a limit.
    """
    parser = MultipartParser(multipart_boundary(content_type), **limits)  # type: ignore[arg-type]
    parser.feed(body)
    return parser.close()
