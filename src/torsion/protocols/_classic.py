"""The classic small services: echo, discard, chargen, daytime and time.

Each over TCP and over UDP, as RFC 862, 863, 864, 867 and 868 define them.
They are tiny, but two things about them are not:

- Backpressure. Echo and chargen write as fast as the peer reads, never
  faster: echo stops reading while its writes back up, and chargen writes
  in bursts, each only once the previous one has drained, so a peer that
  does not read costs the server one transport buffer and no more.
- Reflection. A UDP service answers whoever the datagram says sent it, and
  the sender's address is easy to forge: pointed at another service's port
  (two echo servers, or echo and chargen) two servers answer each other
  forever, the attack classic UDP services became known for. So the UDP
  services do not answer datagrams from privileged ports (below 1024, where
  every one of these services lives), and chargen's answers stay within the
  RFC's 512 characters.

Time comes from an injected function (``time.time`` by default) so that
tests fix it.
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
from collections.abc import Callable
from typing import Any

from torsion.internet import Clock, DatagramProtocol, DelayedCall, Protocol

__all__ = [
    "Chargen",
    "Daytime",
    "Discard",
    "Echo",
    "Time",
    "UDPChargen",
    "UDPDaytime",
    "UDPDiscard",
    "UDPEcho",
    "UDPTime",
    "chargen_lines",
    "daytime_text",
    "rfc868_time",
]

# RFC 868: the time is seconds since 00:00 1 January 1900 UTC, and the Unix
# epoch is 2,208,988,800 of those seconds later. The 32-bit field wraps in
# 2036; sending it modulo 2**32 is what the RFC's readers expect then.
_SECONDS_1900_TO_1970 = 2_208_988_800

# RFC 864: lines of 72 characters from the 95 printable ASCII characters,
# each line starting one character further along than the one before.
_PRINTABLE = bytes(range(0x20, 0x7F))
_LINE_LENGTH = 72

# RFC 864, UDP: "an answering datagram containing a random number (between 0
# and 512) of characters".
_UDP_CHARGEN_MAX = 512

# What chargen writes per turn of the event loop before it lets other
# connections run: enough to fill a socket buffer in a few turns.
_CHARGEN_BURST = 64 * 1024

# Ports below this are where servers live, not clients: no reply goes there.
_FIRST_UNPRIVILEGED_PORT = 1024

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def chargen_lines(count: int, first: int = 0) -> bytes:
    """Return ``count`` lines of the RFC 864 pattern, starting with line ``first``.

    Each line is 72 printable characters and CRLF; line ``n`` starts with
    the ``n % 95``-th printable character.
    """
    doubled = _PRINTABLE * 2
    width = len(_PRINTABLE)
    return b"".join(
        doubled[(first + n) % width : (first + n) % width + _LINE_LENGTH] + b"\r\n"
        for n in range(count)
    )


# One whole cycle of the pattern: after 95 lines it starts again.
_CHARGEN_CYCLE = chargen_lines(len(_PRINTABLE))


def daytime_text(now: float) -> bytes:
    """Return the RFC 867 daytime answer for ``now`` (seconds since the epoch).

    The RFC fixes no syntax; this is its own example's, in UTC and in
    English whatever the locale: ``Tuesday, November 24, 2026 21:30:05-UTC``
    and CRLF.
    """
    t = time.gmtime(now)
    text = (
        f"{_DAYS[t.tm_wday]}, {_MONTHS[t.tm_mon - 1]} {t.tm_mday}, {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}-UTC\r\n"
    )
    return text.encode("ascii")


def rfc868_time(now: float) -> bytes:
    """Return the RFC 868 answer for ``now``: 32-bit big-endian seconds since 1900."""
    return struct.pack("!I", (int(now) + _SECONDS_1900_TO_1970) % 2**32)


# -- TCP ---------------------------------------------------------------------------------


class Echo(Protocol):
    """RFC 862: sends back whatever it receives, pausing reads while writes back up.

    A client that sends without reading would otherwise grow the server's
    write buffer without bound.
    """

    def data_received(self, data: bytes) -> None:
        """Send the bytes straight back."""
        self.transport.write(data)

    def pause_writing(self) -> None:
        """The peer is not reading what we send: stop reading what it sends."""
        super().pause_writing()
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        """The write buffer drained: read again."""
        super().resume_writing()
        self.transport.resume_reading()

    def eof_received(self) -> bool | None:
        """The peer finished sending: finish writing what is queued, then close."""
        if isinstance(self.transport, asyncio.WriteTransport) and self.transport.can_write_eof():
            self.transport.write_eof()
        return None


class Discard(Protocol):
    """RFC 863: reads everything and throws it away."""

    def data_received(self, data: bytes) -> None:
        """Drop the bytes."""


class Chargen(Protocol):
    """RFC 864: sends the character pattern until the peer closes.

    It writes a burst per turn of the clock, and no more while the
    transport's buffer is above its high-water mark; what the peer sends is
    discarded.

    Args:
        clock: Schedules the next burst (the reactor; a fake clock in tests).
    """

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self._clock = clock
        self._next_burst: DelayedCall | None = None
        self._stopped = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start sending."""
        super().connection_made(transport)
        self._schedule()

    def data_received(self, data: bytes) -> None:
        """Drop the bytes: RFC 864 says data received is thrown away."""

    def pause_writing(self) -> None:
        """The peer is behind: stop until the buffer drains."""
        super().pause_writing()
        if self._next_burst is not None and self._next_burst.active():
            self._next_burst.cancel()
        self._next_burst = None

    def resume_writing(self) -> None:
        """The buffer drained: carry on."""
        super().resume_writing()
        self._schedule()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop for good."""
        self._stopped = True
        if self._next_burst is not None and self._next_burst.active():
            self._next_burst.cancel()
        self._next_burst = None
        super().connection_lost(exc)

    def _schedule(self) -> None:
        if self._next_burst is None and not self._stopped:
            self._next_burst = self._clock.call_later(0, self._burst)

    def _burst(self) -> None:
        self._next_burst = None
        if self._stopped or self.transport.is_closing():
            return
        write = self.transport.write
        sent = 0
        # A write may pause us (pause_writing runs inside it): stop then.
        while sent < _CHARGEN_BURST and not self._writing_paused:
            write(_CHARGEN_CYCLE)
            sent += len(_CHARGEN_CYCLE)
        if not self._writing_paused:
            self._schedule()


class Daytime(Protocol):
    """RFC 867: sends the date and time as text, then closes.

    Args:
        now: Returns the time, in seconds since the epoch.
    """

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        super().__init__()
        self._now = now

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the time and close."""
        super().connection_made(transport)
        self.transport.write(daytime_text(self._now()))
        self.transport.close()


class Time(Protocol):
    """RFC 868: sends the time as 32-bit seconds since 1900, then closes.

    Args:
        now: Returns the time, in seconds since the epoch.
    """

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        super().__init__()
        self._now = now

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the time and close."""
        super().connection_made(transport)
        self.transport.write(rfc868_time(self._now()))
        self.transport.close()


# -- UDP ---------------------------------------------------------------------------------


class _UDPService(DatagramProtocol):
    """Answers each datagram with ``answer(data)``, unless its source port is privileged.

    Args:
        answer_privileged_ports: Answer datagrams from ports below 1024 too;
            see the module's documentation for why that is off by default.
    """

    def __init__(self, *, answer_privileged_ports: bool = False) -> None:
        super().__init__()
        self.answer_privileged_ports = answer_privileged_ports

    def datagram_received(self, data: bytes, addr: Any) -> None:
        """Answer the datagram (dropped if the send buffer is full)."""
        if addr[1] < _FIRST_UNPRIVILEGED_PORT and not self.answer_privileged_ports:
            return
        answer = self.answer(data)
        if answer is not None and not self.writing_paused and not self.transport.is_closing():
            self.transport.sendto(answer, addr)

    def answer(self, data: bytes) -> bytes | None:
        """Return the answer to ``data``, or None for none."""
        raise NotImplementedError


class UDPEcho(_UDPService):
    """RFC 862 over UDP: sends each datagram back to its sender."""

    def answer(self, data: bytes) -> bytes:
        """The datagram itself."""
        return data


class UDPDiscard(_UDPService):
    """RFC 863 over UDP: drops every datagram."""

    def answer(self, data: bytes) -> None:
        """No answer."""
        return None


class UDPChargen(_UDPService):
    """RFC 864 over UDP: answers each datagram with 0 to 512 characters of the pattern.

    Args:
        rng: Chooses each answer's length (``random.Random()`` if None).
        answer_privileged_ports: As for every UDP service here.
    """

    def __init__(
        self, rng: random.Random | None = None, *, answer_privileged_ports: bool = False
    ) -> None:
        super().__init__(answer_privileged_ports=answer_privileged_ports)
        self._rng = rng if rng is not None else random.Random()

    def answer(self, data: bytes) -> bytes:
        """A random length of the pattern, from its start."""
        return _CHARGEN_CYCLE[: self._rng.randint(0, _UDP_CHARGEN_MAX)]


class UDPDaytime(_UDPService):
    """RFC 867 over UDP: answers each datagram with the date and time as text.

    Args:
        now: Returns the time, in seconds since the epoch.
        answer_privileged_ports: As for every UDP service here.
    """

    def __init__(
        self, now: Callable[[], float] = time.time, *, answer_privileged_ports: bool = False
    ) -> None:
        super().__init__(answer_privileged_ports=answer_privileged_ports)
        self._now = now

    def answer(self, data: bytes) -> bytes:
        """The time as text."""
        return daytime_text(self._now())


class UDPTime(_UDPService):
    """RFC 868 over UDP: answers each datagram with the time as 32-bit seconds since 1900.

    Args:
        now: Returns the time, in seconds since the epoch.
        answer_privileged_ports: As for every UDP service here.
    """

    def __init__(
        self, now: Callable[[], float] = time.time, *, answer_privileged_ports: bool = False
    ) -> None:
        super().__init__(answer_privileged_ports=answer_privileged_ports)
        self._now = now

    def answer(self, data: bytes) -> bytes:
        """The time as four bytes."""
        return rfc868_time(self._now())
