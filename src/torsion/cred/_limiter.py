"""The failed-login limiter: guessing passwords costs the guesser, not the server.

Failures are counted per user name and per client address (IPv4 address or
IPv6 /64, as ``torsion.protocols.client_key`` names clients). After a
failure the answer is held back for a delay that doubles with each failure
counted (the larger of the two counts), up to a cap; the delay runs on the
reactor's clock, so the server keeps a timer, not a thread. For the same
delay the client's address is *blocked*: a login from it is answered with a
failure after the rest of the delay, without checking the credentials, so
that a guesser cannot make the server hash passwords faster than the
limiter allows.

A user name is never blocked, only slowed: blocking it would let anyone
lock its owner out by failing on purpose, and the right password from an
address that is not blocked always gets in at once. Counts decay (one
failure forgotten per ``decay`` seconds without failures), a success resets
both counts, and the tables are bounded, forgetting the least recently seen
entries first.
"""

from __future__ import annotations

from dataclasses import dataclass

from torsion.internet import Address, Clock
from torsion.protocols import client_key

__all__ = ["LoginLimiter"]

#: How early a timer may run (asyncio's clock resolution is about 1 ms).
_TIMER_SLACK = 0.002

_MAX_USERNAME_KEY = 256


@dataclass(slots=True)
class _Record:
    failures: int
    last: float
    blocked_until: float = 0.0


class LoginLimiter:
    """Counts failed logins per user name and per client, and says how long to wait.

    Args:
        clock: Tells the time.
        base_delay: Seconds held back after the first failure; it doubles with
            each further one. 0 turns delays and blocking off (failures are
            still counted).
        max_delay: The cap on the delay, so that nobody waits longer than this.
        decay: Seconds without failures after which one failure is forgotten.
        ipv6_prefix: The IPv6 prefix length that names one client.
        max_tracked: The most user names, and the most clients, remembered.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        base_delay: float = 1.0,
        max_delay: float = 30.0,
        decay: float = 60.0,
        ipv6_prefix: int = 64,
        max_tracked: int = 100_000,
    ) -> None:
        if base_delay < 0 or max_delay < base_delay:
            raise ValueError(f"need 0 <= base_delay <= max_delay, got {base_delay}, {max_delay}")
        if decay <= 0:
            raise ValueError(f"decay must be positive, not {decay}")
        if max_tracked < 1:
            raise ValueError(f"max_tracked must be at least 1, not {max_tracked}")
        self._clock = clock
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.decay = decay
        self.ipv6_prefix = ipv6_prefix
        self.max_tracked = max_tracked
        # Ordered by last use: the first entry is the one forgotten.
        self._users: dict[str, _Record] = {}
        self._clients: dict[str, _Record] = {}

    def blocked_for(self, client: Address | None) -> float:
        """Return how many more seconds ``client`` is blocked (0 if it is not)."""
        if client is None:
            return 0.0
        record = self._clients.get(self._client_key(client))
        if record is None:
            return 0.0
        left = record.blocked_until - self._clock.seconds()
        # asyncio runs a timer up to its clock's resolution early: a client
        # answered when its delay ended must not find itself still blocked.
        return left if left > _TIMER_SLACK else 0.0

    def failures(self, *, username: str | None = None, client: Address | None = None) -> int:
        """Return the failures counted now for ``username`` or for ``client``."""
        now = self._clock.seconds()
        if username is not None:
            record = self._users.get(self._user_key(username))
        elif client is not None:
            record = self._clients.get(self._client_key(client))
        else:
            raise TypeError("give username or client")
        return 0 if record is None else self._decayed(record, now)

    def failed(self, username: str | None, client: Address | None) -> float:
        """Count a failed login; return the seconds to hold its answer back."""
        now = self._clock.seconds()
        count = 0
        if username is not None:
            count = self._count(self._users, self._user_key(username), now).failures
        client_record = None
        if client is not None:
            client_record = self._count(self._clients, self._client_key(client), now)
            count = max(count, client_record.failures)
        delay = self.delay_after(count)
        if client_record is not None:
            client_record.blocked_until = now + delay
        return delay

    def succeeded(self, username: str | None, client: Address | None) -> None:
        """Forget the failures of ``username`` and of ``client``: it logged in."""
        if username is not None:
            self._users.pop(self._user_key(username), None)
        if client is not None:
            self._clients.pop(self._client_key(client), None)

    def delay_after(self, failures: int) -> float:
        """Return the delay after ``failures`` failures: doubling, capped."""
        if failures <= 0 or self.base_delay == 0:
            return 0.0
        # min() on the exponent first, so that the power stays small.
        return min(self.max_delay, self.base_delay * 2.0 ** min(failures - 1, 64))

    def _count(self, table: dict[str, _Record], key: str, now: float) -> _Record:
        record = table.pop(key, None)
        if record is None:
            record = _Record(0, now)
        record.failures = self._decayed(record, now) + 1
        record.last = now
        table[key] = record
        if len(table) > self.max_tracked:
            del table[next(iter(table))]
        return record

    def _decayed(self, record: _Record, now: float) -> int:
        forgotten = int(max(0.0, now - record.last) // self.decay)
        return max(0, record.failures - forgotten)

    def _client_key(self, client: Address) -> str:
        return client_key(client, ipv6_prefix=self.ipv6_prefix)

    @staticmethod
    def _user_key(username: str) -> str:
        # Case-folded, so that ALICE and alice count together whatever a
        # checker makes of case; cut, so that a long name costs no memory.
        return username[:_MAX_USERNAME_KEY].casefold()

    def __repr__(self) -> str:
        return (
            f"<LoginLimiter {len(self._users)} users, {len(self._clients)} clients, "
            f"delay {self.base_delay:g}..{self.max_delay:g}s>"
        )
