"""The options every way of running takes: logging, pidfile, daemon, user, workers...

They are declared once, as ``Option`` values, and accepted before or after
the plugin's name (``torsion --daemon echo`` and ``torsion echo --daemon``),
after ``run APP.py`` and ``-f FILE.toml``, and in a deployment file's
``[runner]`` table. ``RunnerOptions`` is their parsed form.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from torsion.application._plugins import Option

__all__ = ["COMMON_OPTIONS", "RunnerOptions"]


def _umask(text: str) -> str:
    try:
        mask = int(text, 8)
    except ValueError:
        raise ValueError(f"--umask: {text!r} is not an octal mask such as 027") from None
    if not 0 <= mask <= 0o777:
        raise ValueError(f"--umask: {text!r} is not an octal mask such as 027")
    return text


def _at_least_one(number: int) -> int:
    if number < 1:
        raise ValueError(f"--workers: must be 1 or more, not {number}")
    return number


def _positive(seconds: float) -> float:
    if not seconds > 0:
        raise ValueError(f"--shutdown-timeout: must be more than 0 seconds, not {seconds:g}")
    return seconds


COMMON_OPTIONS: tuple[Option, ...] = (
    Option("logfile", "write the log to PATH ('-' for standard output)", metavar="PATH"),
    Option(
        "log-format",
        "text lines, or one JSON object per line (for log shippers)",
        choices=("text", "json"),
        default="text",
        metavar="text|json",
    ),
    Option(
        "log-level",
        "the least severe log messages to keep",
        choices=("debug", "info", "warning", "error"),
        default="info",
        metavar="LEVEL",
    ),
    Option("syslog", "log to the system log as well (/dev/log)", type=bool),
    Option(
        "pidfile",
        "write the process id to PATH; refuse to start if a running process holds it",
        metavar="PATH",
    ),
    Option("daemon", "detach: run in the background, in a session of its own", type=bool),
    Option("uid", "run as this user once the ports are bound (a name or number)"),
    Option("gid", "run as this group (by default the user's own)"),
    Option("umask", "the file mode mask, in octal (e.g. 027)", check=_umask, metavar="MASK"),
    Option("profile", "profile with cProfile, writing the stats to PATH on exit", metavar="PATH"),
    Option(
        "reactor",
        "the event loop: uvloop (where installed) or asyncio's own",
        choices=("asyncio", "uvloop"),
        default="uvloop",
        metavar="asyncio|uvloop",
    ),
    Option(
        "workers",
        "run N processes sharing the listening ports (SO_REUSEPORT), restarted if they die",
        type=int,
        default=1,
        check=_at_least_one,
        metavar="N",
    ),
    Option(
        "shutdown-timeout",
        "seconds that work in hand may take to finish on SIGTERM before it is cut off",
        type=float,
        default=30.0,
        check=_positive,
        metavar="SECONDS",
    ),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunnerOptions:
    """How to run: the common options, parsed (see ``COMMON_OPTIONS`` for each)."""

    logfile: str | None = None
    log_format: Literal["text", "json"] = "text"
    log_level: str = "info"
    syslog: bool = False
    pidfile: str | None = None
    daemon: bool = False
    uid: str | None = None
    gid: str | None = None
    umask: str | None = None
    profile: str | None = None
    reactor: Literal["asyncio", "uvloop"] = "uvloop"
    workers: int = 1
    shutdown_timeout: float = 30.0

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> RunnerOptions:
        """Make them from parsed values by key; what is missing takes its default."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})

    @property
    def umask_value(self) -> int | None:
        """The umask as a number, if one was given."""
        return int(self.umask, 8) if self.umask is not None else None
