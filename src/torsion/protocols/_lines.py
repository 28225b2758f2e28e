"""Line framing: a sans-IO line decoder and the line protocols built on it.

``LineDecoder`` splits a byte stream at a delimiter and calls back once per
line. It can switch to raw mode and back mid-stream without losing or
reordering a byte, which is what SMTP ``DATA``, IMAP literals and HTTP
bodies need, and it can pause. ``LineReceiver`` is a ``Protocol`` over it;
``LineOnlyReceiver`` is the same without raw mode.

The cost is linear in the data, never in what is buffered. A read is split
with ``bytes.split`` a window of at most ``WINDOW`` bytes at a time and its
lines handed out in turn; the position in the read is an offset, so nothing
is copied per line. A callback that changes how the rest is read (raw mode,
a pause, a new delimiter) ends the window after its line; the lines split
and not delivered are used again if reading resumes within them, as it does
after raw data handed back or a pause. After a switch to raw mode, the rest
of the read goes to the raw callback in pieces that grow from
``FIRST_WINDOW``, and raw data handed back by its end is read where it lies,
so switching back soon copies little. Only the tail without a delimiter is
kept, bounded by ``max_length``; a line longer than that is reported as soon
as it is known to be, not after buffering it whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from torsion.errors import LineTooLongError
from torsion.protocols._framing import (
    Decoder,
    DecodingProtocol,
    check_max_length,
)

__all__ = ["LineDecoder", "LineOnlyReceiver", "LineReceiver"]

DEFAULT_DELIMITER = b"\r\n"
DEFAULT_MAX_LINE = 16384
# The most bytes split at once. Larger windows cost less per read; smaller
# ones waste less when a callback changes how the rest is read and the lines
# split are not used again (a new delimiter). So windows, and raw pieces,
# start small after a change and double with each one read through.
WINDOW = 16384
FIRST_WINDOW = 1024
# Fewer lines given back than this are split again rather than used again.
_SPARE_MIN = 32


class LineDecoder(Decoder):
    """Splits a byte stream into lines, with raw mode and pausing; no I/O.

    Feed it with ``receive_data``; it calls ``line_received(line)`` for each
    complete line, without its delimiter, in order. In raw mode it calls
    ``raw_data_received(data)`` with the bytes instead, in pieces of any
    size, as reads come (the rest of a read after a switch may come in a few
    pieces, so that a switch back soon costs little). Switching
    mode, pausing, closing, or changing ``delimiter`` or ``max_length`` from
    inside a callback takes effect at the next byte: the bytes after the
    current line are read the new way, none lost, none reordered.

    A line longer than ``max_length`` (without its delimiter) is handed to
    ``line_length_exceeded(line)`` as soon as that is known, with the part
    received so far if its delimiter has not arrived; the rest of it, up to
    its delimiter, is then dropped, and decoding goes on after it. Without
    that callback, ``receive_data`` raises ``LineTooLongError`` instead (the
    lines before it were delivered).

    Args:
        line_received: Called with each line.
        raw_data_received: Called with the bytes received in raw mode;
            without it, ``set_raw_mode()`` is refused.
        line_length_exceeded: Called with a line that is too long.
        delimiter: What ends a line.
        max_length: The longest line allowed, in bytes.
    """

    def __init__(
        self,
        line_received: Callable[[bytes], object],
        *,
        raw_data_received: Callable[[bytes], object] | None = None,
        line_length_exceeded: Callable[[bytes], object] | None = None,
        delimiter: bytes = DEFAULT_DELIMITER,
        max_length: int = DEFAULT_MAX_LINE,
    ) -> None:
        super().__init__()
        self._on_line = line_received
        self._on_raw = raw_data_received
        self._on_too_long = line_length_exceeded
        self._delimiter = _check_delimiter(delimiter)
        self._max_length = check_max_length(max_length)
        self._raw = False
        # Dropping the rest of a line that was too long, up to its delimiter.
        self._discarding = False
        # The bytes not yet read are ``_buffer[_start:]``.
        self._start = 0
        # Bytes fed from inside a callback, read after everything else; kept
        # apart so that ``_buffer`` stays the one the offsets are into.
        self._fed: list[bytes] = []
        # The lines split off ``_buffer`` and not yet delivered, which end at
        # ``_batch_end`` (each followed by its delimiter) and come before
        # ``_start``. While they are being delivered this is the very
        # iterator the delivery loop runs on, so that exhausting it ends the
        # loop after the current line (see ``_rewind``).
        self._batch: Iterator[bytes] = iter(())
        self._batch_end = 0
        self._batch_delimiter = self._delimiter
        self._window = FIRST_WINDOW
        # The raw data being delivered, and where it ends in ``_buffer``.
        self._given = b""
        self._given_end = 0
        # The lines ``_rewind`` gave back, which were ``_spare_buffer`` from
        # ``_spare_start`` to ``_spare_end`` split at ``_spare_delimiter``
        # and all within ``_spare_limit``.
        self._spare: list[bytes] | None = None
        self._spare_start = self._spare_end = self._spare_limit = 0
        self._spare_buffer = b""
        self._spare_delimiter = b""

    @property
    def delimiter(self) -> bytes:
        """What ends a line; a new one applies from the next line on."""
        return self._delimiter

    @delimiter.setter
    def delimiter(self, value: bytes) -> None:
        value = _check_delimiter(value)
        self._rewind()
        self._delimiter = value
        self._kick()

    @property
    def max_length(self) -> int:
        """The longest line allowed; a new limit applies from the next line on."""
        return self._max_length

    @max_length.setter
    def max_length(self, value: int) -> None:
        value = check_max_length(value)
        self._rewind()
        self._max_length = value
        self._kick()

    @property
    def line_mode(self) -> bool:
        """Whether bytes are read as lines (else they are delivered raw)."""
        return not self._raw

    @property
    def buffered(self) -> int:
        """How many bytes are held and not delivered yet."""
        return len(self._buffer) - self._start + sum(map(len, self._fed))

    def receive_data(self, data: bytes) -> None:
        """Feed bytes received; complete lines are delivered before it returns.

        Called from inside a callback, it only queues the bytes: they are
        read after everything held before them. Ignored once closed.

        Args:
            data: The next bytes of the stream, in any split.
        """
        if self._closed:
            return
        if self._delivering:
            self._fed.append(data)
            return
        start = self._start
        if start < len(self._buffer):
            # What is held is a partial line, or what came while paused.
            self._buffer = self._buffer[start:] + data
        else:
            self._buffer = data
        self._start = 0
        if not self._paused:
            self._deliver()

    def set_raw_mode(self) -> None:
        """Deliver the bytes from here on to ``raw_data_received``, as they come.

        Called from ``line_received``, the bytes after that line are the
        first raw ones; a partial line held is delivered raw too.

        Raises:
            TypeError: The decoder was made without ``raw_data_received``.
        """
        if self._on_raw is None:
            raise TypeError("this LineDecoder has no raw_data_received callback")
        if self._raw:
            return
        self._rewind()
        self._raw = True
        self._discarding = False
        self._window = FIRST_WINDOW
        self._kick()

    def set_line_mode(self, extra: bytes = b"") -> None:
        """Read lines again, starting with ``extra``.

        Args:
            extra: Bytes to read before everything held, typically the part
                of the last raw data that ``raw_data_received`` did not use
                (handing back the end of that data costs no copy).
        """
        self._rewind()
        if self._raw:
            self._raw = False
            self._discarding = False
            self._window = FIRST_WINDOW
        if extra and not self._closed:
            given = self._given
            if (
                self._start == self._given_end
                and len(extra) <= len(given)
                and given.endswith(extra)
            ):
                # The end of the raw data just delivered, handed back: read
                # it again where it lies rather than copy what follows it.
                self._start -= len(extra)
            else:
                self._buffer = extra + self._buffer[self._start :]
                self._start = 0
            self._given = b""
        self._kick()

    def pause(self) -> None:
        """Deliver nothing until ``resume()``; see ``Decoder.pause``."""
        self._rewind()
        super().pause()

    def close(self) -> None:
        """Drop what is held and deliver nothing more, ever."""
        self._rewind()
        super().close()
        self._start = 0
        self._fed = []
        self._given = b""
        self._spare = None

    def _rewind(self) -> None:
        """Give the lines split off and not delivered back to the bytes to read.

        Exhausting the batch iterator ends the delivery loop running on it,
        after the line whose callback called us.
        """
        rest = list(self._batch)
        if rest:
            size = sum(map(len, rest)) + len(rest) * len(self._batch_delimiter)
            self._start = start = self._batch_end - size
            self._window = FIRST_WINDOW
            if len(rest) < _SPARE_MIN:
                return  # splitting them again costs less than finding them
            # If lines are read again from within these bytes (after raw
            # data handed back, a pause), the lines split are used again.
            self._spare = rest
            self._spare_start = start
            self._spare_end = self._batch_end
            self._spare_buffer = self._buffer
            self._spare_delimiter = self._batch_delimiter
            self._spare_limit = self._max_length

    def _take_fed(self) -> None:
        """Append the bytes fed during callbacks to those held."""
        fed = b"".join(self._fed)
        self._fed = []
        self._buffer = self._buffer[self._start :] + fed
        self._start = 0

    def _deliver(self) -> None:
        self._delivering = True
        try:
            while not (self._paused or self._closed):
                if self._fed:
                    self._take_fed()
                if self._raw:
                    buf = self._buffer
                    start = self._start
                    if start >= len(buf):
                        break
                    if start:
                        # The rest of a read after a switch: in pieces that
                        # grow, so that a switch back soon copies little.
                        window = min(self._window, WINDOW)
                        end = min(len(buf), start + window)
                        data = buf[start:end]
                        self._window = window * 2
                    else:
                        end = len(buf)
                        data = buf
                    self._start = self._given_end = end
                    self._given = data
                    on_raw = self._on_raw
                    assert on_raw is not None  # set_raw_mode checked
                    on_raw(data)
                    self._given = b""
                    if self._stopped():
                        break
                elif not (self._lines() or self._fed):
                    break
        except BaseException:
            # A callback raised: the lines after its line are kept.
            self._rewind()
            raise
        finally:
            self._delivering = False
            if self._fed and not self._closed:
                self._take_fed()
            elif self._start and not self._paused:
                # Keep the partial line, not the whole read it ends.
                self._buffer = self._buffer[self._start :]
                self._start = 0
                self._spare = None
                self._spare_buffer = b""

    def _lines(self) -> bool:
        """Deliver a window's complete lines; return whether there may be more."""
        buf = self._buffer
        start = self._start
        delimiter = self._delimiter
        if self._discarding:
            found = buf.find(delimiter, start)
            if found < 0:
                keep = _partial_delimiter(buf, start, delimiter)
                self._buffer = buf[len(buf) - keep :] if keep else b""
                self._start = 0
                return False
            self._discarding = False
            start = self._start = found + len(delimiter)
        limit = self._max_length
        spare = self._spare
        if spare is not None:
            spare_buffer = self._spare_buffer
            self._spare = None
            self._spare_buffer = b""
            if (
                spare_buffer is buf
                and self._spare_delimiter is delimiter
                and self._spare_limit <= limit
                and self._spare_start <= start < self._spare_end
            ):
                lines = _resume(buf, start, spare, self._spare_start, self._spare_end, delimiter)
                if lines is not None and len(lines[0]) <= limit:
                    return self._deliver_lines(buf, lines, self._spare_end, delimiter, b"")
        window = self._window
        if window > WINDOW:
            window = WINDOW
        if len(buf) - start > window:
            found = buf.rfind(delimiter, start, start + window)
            if found < 0:
                # None ends inside the window: the first line is longer.
                found = buf.find(delimiter, max(start, start + window - len(delimiter) + 1))
                if found < 0:
                    return self._check_partial(buf, start, delimiter)
            stop = found + len(delimiter)
            piece = buf[start:stop]
            if window < WINDOW:
                self._window = window * 2
        else:
            stop = len(buf)
            piece = buf[start:] if start else buf
        lines = piece.split(delimiter)
        tail = lines.pop()  # empty unless the window reaches the end
        if not lines:
            return self._check_partial(buf, start, delimiter)
        batch_end = stop - len(tail)
        if len(piece) - len(tail) > limit:
            first = _first_too_long(piece, len(piece) - len(tail), lines, limit, delimiter)
            if first == 0:
                line = lines[0]
                self._start = start + len(line) + len(delimiter)
                return self._too_long(line)
            if first > 0:
                # Deliver the lines before it; it comes first next time round.
                del lines[first:]
                batch_end = start + sum(map(len, lines)) + first * len(delimiter)
                tail = b""
        return self._deliver_lines(buf, lines, batch_end, delimiter, tail)

    def _deliver_lines(
        self, buf: bytes, lines: list[bytes], batch_end: int, delimiter: bytes, tail: bytes
    ) -> bool:
        """Deliver ``lines``, which end at ``batch_end`` in ``buf``.

        ``tail`` is what follows them if it is all the rest of ``buf`` (it
        has no delimiter); else it is empty.

        Returns:
            Whether there may be more to do.
        """
        self._start = batch_end
        self._batch_end = batch_end
        self._batch_delimiter = delimiter
        self._batch = batch = iter(lines)
        on_line = self._on_line
        stop_when = self.stop_when
        if stop_when is None:
            for line in batch:
                on_line(line)
        else:
            for line in batch:
                on_line(line)
                if stop_when():
                    self.close()
                    return False
        if self._paused or self._closed:
            return False
        if (
            batch_end + len(tail) < len(buf)
            or self._start != batch_end
            or self._buffer is not buf
            or self._delimiter is not delimiter
            or self._raw
        ):
            return True
        # Nothing changed during the callbacks, and the tail has no delimiter.
        return len(tail) > self._max_length and self._check_partial(buf, batch_end, delimiter)

    def _check_partial(self, buf: bytes, start: int, delimiter: bytes) -> bool:
        """Report the partial line ``buf[start:]`` once it is too long; return whether it was."""
        limit = self._max_length
        if len(buf) - start <= limit:
            return False
        # Its last bytes may be the start of a delimiter, not of the line.
        keep = _partial_delimiter(buf, start, delimiter)
        end = len(buf) - keep
        if end - start <= limit:
            return False
        self._buffer = buf[end:] if keep else b""
        self._start = 0
        self._discarding = True
        return self._too_long(buf[start:end])

    def _too_long(self, line: bytes) -> bool:
        on_too_long = self._on_too_long
        if on_too_long is None:
            raise LineTooLongError(line, self._max_length)
        on_too_long(line)
        return not self._stopped()


def _check_delimiter(delimiter: bytes) -> bytes:
    if not isinstance(delimiter, bytes) or not delimiter:
        raise ValueError(f"a line delimiter must be non-empty bytes, not {delimiter!r}")
    return delimiter


def _partial_delimiter(data: bytes, start: int, delimiter: bytes) -> int:
    """Return the length of the longest start of ``delimiter`` that ends ``data[start:]``."""
    for size in range(min(len(delimiter) - 1, len(data) - start), 0, -1):
        if data.endswith(delimiter[:size], start):
            return size
    return 0


def _resume(
    data: bytes, start: int, lines: list[bytes], begin: int, end: int, delimiter: bytes
) -> list[bytes] | None:
    r"""Return the lines from ``start`` on, using ``lines`` split from ``begin``.

    ``lines`` are ``data[begin:end]`` split at ``delimiter``, each followed
    by one. Reading from ``start`` finds the first delimiter at or after it;
    the lines after that one are the same as before, and which they are is
    counted, not split again. Only for a delimiter that cannot overlap
    itself (``\r\n``, ``\n``): for one that can, a delimiter found from
    ``start`` need not be one the split found, so this returns None.
    """
    width = len(delimiter)
    for size in range(1, width):
        if delimiter[:size] == delimiter[-size:]:
            return None
    found = data.find(delimiter, start, end)
    if found < 0:
        return None
    index = data.count(delimiter, begin, found + width)
    return [data[start:found], *lines[index:]]


def _first_too_long(
    data: bytes, end: int, lines: list[bytes], limit: int, delimiter: bytes
) -> int:
    """Return the index of the first line longer than ``limit``, or -1.

    ``lines`` are ``data[:end]`` split at ``delimiter``. Checking every
    length costs about as much as delivering the lines, so look first for a
    cheaper proof that none is too long: cut ``data[:end]`` into tiles of
    ``limit // 2 + 1`` bytes; a line longer than ``limit`` covers at least
    one tile whole, so if every tile holds a delimiter, no line is.
    """
    step = limit // 2 + 1
    if end // step <= len(lines):
        find = data.find
        for start in range(0, end - step + 1, step):
            if find(delimiter, start, start + step) < 0:
                break
        else:
            return -1
    if max(map(len, lines)) <= limit:
        return -1
    for index, line in enumerate(lines):
        if len(line) > limit:
            return index
    raise AssertionError("unreachable: a line was longer than the limit")


class LineOnlyReceiver(DecodingProtocol[LineDecoder]):
    r"""A protocol that reads its connection as lines (no raw mode).

    Override ``line_received``. Configure it with class attributes, or set
    them on an instance at any time (from the next line on)::

        class Chat(LineOnlyReceiver):
            delimiter = b"\\n"
            max_length = 1024

            def line_received(self, line: bytes) -> None:
                self.send_line(b"you said: " + line)

    Lines are delivered in order, one ``line_received`` call each, until
    the transport starts closing: after ``self.transport.close()`` in a
    callback, the lines after that one are not delivered. A partial line
    held when the connection ends is dropped.

    Attributes:
        delimiter: What ends a line (default ``b"\\r\\n"``).
        max_length: The longest line accepted, delimiter excluded (default
            16384 bytes); a longer one goes to ``line_length_exceeded``.
    """

    _settings = ("delimiter", "max_length")
    _default_delimiter = DEFAULT_DELIMITER
    _default_max_length = DEFAULT_MAX_LINE

    @property
    def delimiter(self) -> bytes:
        """What ends a line."""
        if self._decoder is None:
            return self._default_delimiter
        return self._decoder.delimiter

    @delimiter.setter
    def delimiter(self, value: bytes) -> None:
        self._get_decoder().delimiter = value

    @property
    def max_length(self) -> int:
        """The longest line accepted, delimiter excluded."""
        if self._decoder is None:
            return self._default_max_length
        return self._decoder.max_length

    @max_length.setter
    def max_length(self, value: int) -> None:
        self._get_decoder().max_length = value

    def _make_decoder(self) -> LineDecoder:
        return LineDecoder(
            self.line_received,
            line_length_exceeded=self.line_length_exceeded,
            delimiter=self._default_delimiter,
            max_length=self._default_max_length,
        )

    def line_received(self, line: bytes) -> None:
        """Called with each line received, without its delimiter. Override it."""

    def line_length_exceeded(self, line: bytes) -> None:
        """Called with a line longer than ``max_length``; closes the connection.

        Override it to answer otherwise; if the connection stays open, the
        rest of the line is dropped and the next line is read as usual.

        Args:
            line: The line, or as much of it as has arrived.
        """
        self._framing_error(LineTooLongError(line, self.max_length))

    def send_line(self, line: bytes) -> None:
        """Write ``line`` followed by the delimiter."""
        self.transport.write(line + self.delimiter)


class LineReceiver(LineOnlyReceiver):
    """A protocol that reads its connection as lines or as raw data, switching.

    Override ``line_received``, and ``raw_data_received`` if the protocol
    uses raw mode. ``set_raw_mode()`` from ``line_received`` hands the rest
    of the stream, from the byte after that line, to ``raw_data_received``;
    ``set_line_mode(extra)`` from there goes back to lines, starting with
    ``extra``, the bytes of the last raw chunk that were not part of the raw
    section::

        class Upload(LineReceiver):
            def line_received(self, line: bytes) -> None:
                self.remaining = int(line)      # a length, then raw bytes
                self.set_raw_mode()

            def raw_data_received(self, data: bytes) -> None:
                body, rest = data[: self.remaining], data[self.remaining :]
                self.remaining -= len(body)
                self.store(body)
                if not self.remaining:
                    self.set_line_mode(rest)

    ``pause_receiving()`` / ``resume_receiving()`` hold delivery (of lines
    and raw data alike) and the transport's reading. Everything else is as
    in ``LineOnlyReceiver``.
    """

    def _make_decoder(self) -> LineDecoder:
        return LineDecoder(
            self.line_received,
            raw_data_received=self.raw_data_received,
            line_length_exceeded=self.line_length_exceeded,
            delimiter=self._default_delimiter,
            max_length=self._default_max_length,
        )

    @property
    def line_mode(self) -> bool:
        """Whether the connection is read as lines (else as raw data)."""
        return self._get_decoder().line_mode

    def raw_data_received(self, data: bytes) -> None:
        """Called with the bytes received in raw mode, in pieces of any size.

        Override it to use raw mode.
        """

    def set_raw_mode(self) -> None:
        """Deliver the bytes from here on to ``raw_data_received``."""
        self._get_decoder().set_raw_mode()

    def set_line_mode(self, extra: bytes = b"") -> None:
        """Read lines again, starting with ``extra`` (bytes handed back)."""
        self._get_decoder().set_line_mode(extra)
