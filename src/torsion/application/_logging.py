"""Where the log goes: standard error, a file that SIGHUP reopens, JSON lines, syslog.

Everything logs through the standard ``logging`` module (torsion's own
modules with ``logging.getLogger(__name__)``); the runner only sets up the
root logger's handlers. Text lines look like::

    2026-05-01 12:00:00,123 INFO torsion.application: echo service listening on ...

and with ``--log-format json`` each record is one JSON object on one line
(``time``, ``level``, ``logger``, ``message``, ``pid``, and ``exception``
when there is one), which log shippers read without guessing.

A log file is opened in append mode and reopened on SIGHUP, after logrotate
(or an operator) has moved it away.
"""

from __future__ import annotations

import datetime
import json
import logging
import logging.handlers
import os
import socket
import sys
from dataclasses import dataclass, field
from typing import Literal

from torsion.application._errors import RunnerError

__all__ = ["JSONFormatter", "LogSetup", "ReopenableFileHandler", "configure_logging"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# With several worker processes, each line says which one wrote it.
WORKER_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"
SYSLOG_FORMAT = "torsion[%(process)d]: %(levelname)s %(name)s: %(message)s"

_SYSLOG_SOCKET = "/dev/log"


class JSONFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as a line of JSON."""
        entry: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=repr)


class ReopenableFileHandler(logging.FileHandler):
    """A log file in append mode that ``reopen()`` opens afresh (after rotation)."""

    def __init__(self, path: str) -> None:
        super().__init__(path, mode="a", encoding="utf-8", delay=False)

    def reopen(self) -> None:
        """Close the file and open the path again (a new file if it was moved away).

        Raises:
            OSError: The path cannot be opened now; the old file stays in use.
        """
        self.acquire()
        try:
            stream = self._open()
            old, self.stream = self.stream, stream
            if old is not None:
                old.close()
        finally:
            self.release()


@dataclass
class LogSetup:
    """The handlers the runner installed, to reopen and to remove.

    Attributes:
        handlers: What was added to the root logger.
        to_stderr: Whether the log goes to standard error (where the runner
            also prints its one-line errors; it then does not print them twice).
    """

    handlers: list[logging.Handler] = field(default_factory=list)
    to_stderr: bool = False

    def reopen(self) -> None:
        """Reopen every log file (SIGHUP); one that cannot be reopened is logged."""
        for handler in self.handlers:
            if isinstance(handler, ReopenableFileHandler):
                try:
                    handler.reopen()
                except OSError as exc:
                    logging.getLogger(__name__).error(
                        "Cannot reopen the log file %s: %s", handler.baseFilename, exc.strerror
                    )

    def close(self) -> None:
        """Remove and close the handlers."""
        root = logging.getLogger()
        for handler in self.handlers:
            root.removeHandler(handler)
            handler.close()
        self.handlers.clear()


def configure_logging(
    *,
    logfile: str | None = None,
    log_format: Literal["text", "json"] = "text",
    level: str = "info",
    syslog: bool = False,
    show_pid: bool = False,
) -> LogSetup:
    """Send the root logger's records where the options say.

    Args:
        logfile: A path, "-" for standard output, or None for standard error.
        log_format: "text" or "json".
        level: The least severe level kept ("debug", "info", "warning", "error").
        syslog: Also log to the system log.
        show_pid: Put the process id in text lines (for worker processes).

    Raises:
        RunnerError: The log file cannot be opened.
    """
    formatter: logging.Formatter
    if log_format == "json":
        formatter = JSONFormatter()
    else:
        formatter = logging.Formatter(WORKER_TEXT_FORMAT if show_pid else TEXT_FORMAT)
    setup = LogSetup()
    handler: logging.Handler
    if logfile is None:
        handler = logging.StreamHandler(sys.stderr)
        setup.to_stderr = True
    elif logfile == "-":
        handler = logging.StreamHandler(sys.stdout)
    else:
        try:
            handler = ReopenableFileHandler(os.path.abspath(logfile))
        except OSError as exc:
            raise RunnerError(f"cannot open the log file {logfile}: {exc.strerror}") from exc
    handler.setFormatter(formatter)
    setup.handlers.append(handler)
    if syslog:
        setup.handlers.append(_syslog_handler())
    root = logging.getLogger()
    root.setLevel(level.upper())
    for handler in setup.handlers:
        root.addHandler(handler)
    return setup


def _syslog_handler() -> logging.Handler:
    handler: logging.Handler
    if os.path.exists(_SYSLOG_SOCKET):
        handler = logging.handlers.SysLogHandler(
            address=_SYSLOG_SOCKET, facility=logging.handlers.SysLogHandler.LOG_DAEMON
        )
    else:
        # No local syslog socket: the conventional UDP port on this host.
        handler = logging.handlers.SysLogHandler(
            address=("localhost", 514),
            facility=logging.handlers.SysLogHandler.LOG_DAEMON,
            socktype=socket.SOCK_DGRAM,
        )
    handler.setFormatter(logging.Formatter(SYSLOG_FORMAT))
    return handler
