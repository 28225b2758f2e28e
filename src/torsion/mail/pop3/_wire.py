"""POP3's multi-line framing: byte-stuffing a message out and unstuffing it in.

RFC 1939 section 3: each line of a multi-line response ends in CRLF, a line
that begins with ``.`` gets one more ``.`` in front, and the response ends
with a line holding only ``.``. Both directions work on chunks of any size
and keep only a bounded tail between chunks, so that a message is never
held whole.
"""

from __future__ import annotations

__all__ = ["MessageUnstuffer", "MessageWriter"]

# A line longer than this is passed on in pieces rather than held whole.
_MAX_HELD = 64 * 1024


class MessageWriter:
    """Turns a message's bytes, fed in chunks, into a multi-line response body.

    Bare LFs become CRLF, leading dots are doubled, and for TOP only the
    header, the empty line after it and ``body_lines`` lines of the body
    go out (RFC 1939 section 7). ``finish()`` adds the closing ``.`` line.

    Args:
        body_lines: The body lines to keep (TOP's second argument), or None
            for the whole message (RETR).
    """

    def __init__(self, body_lines: int | None = None) -> None:
        self._body_lines = body_lines
        self._in_body = False
        self._sent_body = 0
        self._tail = b""
        # True while the current line has been partly written already.
        self._mid_line = False
        self._done = False

    @property
    def done(self) -> bool:
        """Whether TOP's lines are all out (what follows is dropped)."""
        return self._done

    def feed(self, data: bytes) -> bytes:
        """Return the wire bytes for the next chunk of the message."""
        if self._done:
            return b""
        data = self._tail + data
        lines = data.split(b"\n")
        self._tail = lines.pop()
        out: list[bytes] = []
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not self._line(line, out):
                self._tail = b""
                return b"".join(out)
        if len(self._tail) > _MAX_HELD:
            # A huge line without a newline: send what there is of it. The
            # last byte stays, in case it is the CR of a CRLF split here.
            piece, self._tail = self._tail[:-1], self._tail[-1:]
            if not self._mid_line:
                if not self._start_line():
                    self._tail = b""
                    return b"".join(out)
                if piece.startswith(b"."):
                    out.append(b".")
            out.append(piece)
            self._mid_line = True
        return b"".join(out)

    def finish(self) -> bytes:
        """Return the last bytes: the unfinished last line, ended, and the ``.`` line."""
        out: list[bytes] = []
        if not self._done:
            tail = self._tail
            if tail.endswith(b"\r"):
                tail = tail[:-1]
            if tail or self._mid_line:
                self._line(tail, out)
        self._tail = b""
        self._done = True
        out.append(b".\r\n")
        return b"".join(out)

    def _start_line(self) -> bool:
        # Counts a new line of the body; False once TOP has sent its lines.
        if self._in_body and self._body_lines is not None:
            if self._sent_body >= self._body_lines:
                self._done = True
                return False
            self._sent_body += 1
        return True

    def _line(self, line: bytes, out: list[bytes]) -> bool:
        # Ends the current line (begun by a partial piece or not).
        if not self._mid_line:
            if not self._start_line():
                return False
            if line.startswith(b"."):
                out.append(b".")
        out.append(line)
        out.append(b"\r\n")
        if not self._in_body and not self._mid_line and not line:
            self._in_body = True
        self._mid_line = False
        return True


class MessageUnstuffer:
    """Reads a multi-line response body: lines in, the message's bytes out.

    Feed it each line without its line ending; it returns the line's
    content with its CRLF, or None for the closing ``.`` line.
    """

    def __init__(self) -> None:
        self.finished = False

    def line(self, line: bytes) -> bytes | None:
        """Return one unstuffed line with CRLF, or None at the end of the body."""
        if line == b".":
            self.finished = True
            return None
        if line.startswith(b"."):
            line = line[1:]
        return line + b"\r\n"
