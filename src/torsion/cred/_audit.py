"""The audit log: every login and every failure, with where it came from, no secrets.

Lines go to the ``torsion.cred.audit`` logger (INFO for successes, WARNING
for failures), each with the user name as the client gave it (quoted and
cut, so that a name cannot forge a log line), the credentials' kind, the
client's address and, for a failure, the reason the server knows (unknown
user, wrong password) and the client never sees. Passwords, hashes, tokens
and signatures never appear. Each record also carries the same facts as
``record.cred`` (a dict), for structured (JSON) logging.

Logins refused because the client is blocked by the limiter are not
checked, and are logged like refused connections: the first at once, the
rest counted and reported with the next line after a quiet period, so that a
flood of guesses does not become a flood of log lines.
"""

from __future__ import annotations

import logging

from torsion.internet import Address, Clock

__all__ = ["AuditLog"]

_log = logging.getLogger("torsion.cred.audit")

_MAX_SHOWN = 64
_MAX_REFUSALS = 10_000


def shown(username: str | None) -> str:
    """Return a user name fit for a log line: quoted, escaped and cut."""
    if username is None:
        return "-"
    cut = username[:_MAX_SHOWN]
    text = repr(cut)
    return text if cut == username else f"{text}..."


class AuditLog:
    """Writes one line per login attempt that a portal checked.

    Args:
        clock: Tells the time (for collapsing refusals).
        logger: Where the lines go.
        quiet_period: Seconds during which repeated refusals of a blocked
            client are only counted.
    """

    def __init__(
        self, clock: Clock, *, logger: logging.Logger = _log, quiet_period: float = 60.0
    ) -> None:
        self.logger = logger
        self._clock = clock
        self.quiet_period = quiet_period
        # client key -> (when last logged, refusals not logged since); bounded.
        self._refusals: dict[str, tuple[float, int]] = {}

    def succeeded(
        self, *, username: str | None, avatar_id: str, kind: str, client: Address | None
    ) -> None:
        """Log a login that got in."""
        facts = _facts("succeeded", username, kind, client, avatar_id=avatar_id)
        self.logger.info(
            "Login succeeded: user %s as %s with %s from %s",
            shown(username),
            shown(avatar_id),
            kind,
            _where(client),
            extra={"cred": facts},
        )

    def failed(
        self,
        *,
        username: str | None,
        kind: str,
        client: Address | None,
        reason: str,
        delay: float,
    ) -> None:
        """Log a login whose credentials were checked and not accepted."""
        facts = _facts("failed", username, kind, client, reason=reason, delay=delay)
        self.logger.warning(
            "Login failed: user %s with %s from %s: %s (answered after %gs)",
            shown(username),
            kind,
            _where(client),
            reason,
            delay,
            extra={"cred": facts},
        )

    def unhandled(self, *, kind: str, client: Address | None) -> None:
        """Log a login with credentials no checker takes."""
        self.logger.warning(
            "Login refused: no checker takes %s credentials (from %s)",
            kind,
            _where(client),
            extra={"cred": _facts("unhandled", None, kind, client)},
        )

    def refused(self, *, kind: str, client: Address, key: str) -> None:
        """Log (collapsed) a login refused unchecked because its client is blocked.

        The first refusal of a client is logged at once; more within
        ``quiet_period`` are counted, and the next line says how many.
        """
        now = self._clock.seconds()
        seen = self._refusals.get(key)
        if seen is not None and now - seen[0] < self.quiet_period:
            self._refusals[key] = (seen[0], seen[1] + 1)
            return
        more = "" if seen is None or not seen[1] else f" ({seen[1]} more since the last report)"
        self.logger.warning(
            "Login refused unchecked: %s from %s, blocked after failures from %s%s",
            kind,
            client,
            key,
            more,
            extra={"cred": _facts("refused", None, kind, client, more=seen[1] if seen else 0)},
        )
        self._refusals.pop(key, None)
        self._refusals[key] = (now, 0)
        if len(self._refusals) > _MAX_REFUSALS:
            del self._refusals[next(iter(self._refusals))]

    def error(self, *, username: str | None, kind: str, client: Address | None) -> None:
        """Log a checker that broke (not the client's doing), with its traceback."""
        self.logger.error(
            "Login failed: a checker raised an error for user %s with %s from %s",
            shown(username),
            kind,
            _where(client),
            exc_info=True,
            extra={"cred": _facts("error", username, kind, client)},
        )


def _where(client: Address | None) -> str:
    return "an unknown address" if client is None else str(client)


def _facts(
    outcome: str, username: str | None, kind: str, client: Address | None, **more: object
) -> dict[str, object]:
    return {
        "outcome": outcome,
        "username": username[:_MAX_SHOWN] if username is not None else None,
        "kind": kind,
        "client": None if client is None else str(client),
        **more,
    }
