"""The errors the runner reports: usage errors (exit status 2) and the rest (1).

Each is shown as one line on standard error, naming the problem, with no
traceback::

    TorsionError
    ├── UsageError (+ValueError)          the command or its options are wrong: exit 2
    │   └── DeploymentFileError           a deployment file cannot be read or is wrong
    └── RunnerError                       the service cannot run as asked: exit 1
        └── PidfileError                  a pidfile is held by a running process, or unusable
"""

from __future__ import annotations

from torsion.errors import TorsionError

__all__ = ["DeploymentFileError", "PidfileError", "RunnerError", "UsageError"]


class UsageError(TorsionError, ValueError):
    """The command line, a plugin's options or an application file are wrong."""


class DeploymentFileError(UsageError):
    """A deployment file cannot be read, is not TOML, or holds a wrong or unknown key."""


class RunnerError(TorsionError):
    """The runner cannot do what it was asked (a log file, a user, a daemon)."""


class PidfileError(RunnerError):
    """The pidfile is held by a running process, or cannot be read or written."""
