"""Application files: ``torsion run app.py`` runs the service tree a Python file defines.

The file defines ``application``: a service (an ``Application``, usually),
or a function of the reactor that returns one (for services that need the
reactor to be built, such as those listening on endpoint strings). The file
is run with ``__name__`` set to ``"__torsion_app__"``, so a
``if __name__ == "__main__":`` block in it does not run.

A file that cannot be read, does not compile, fails while it runs, or
defines no ``application`` is a usage error naming the file and line.
"""

from __future__ import annotations

import os
import runpy
import traceback
from collections.abc import Callable
from typing import Any

from torsion.application._errors import UsageError
from torsion.application._service import Service
from torsion.internet import Reactor

__all__ = ["load_application"]

RUN_NAME = "__torsion_app__"


def _is_service(value: object) -> bool:
    return callable(getattr(value, "start_service", None)) and callable(
        getattr(value, "stop_service", None)
    )


def _where(path: str, exc: BaseException) -> str:
    """The file and line in ``path`` where ``exc`` came from (the deepest such frame)."""
    if isinstance(exc, SyntaxError) and exc.lineno is not None:
        return f"{path}, line {exc.lineno}"
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if os.path.abspath(frame.filename) == path:
            line = frame.lineno
    return f"{path}, line {line}" if line is not None else path


def _problem(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def load_application(path: str, reactor: Reactor) -> Service:
    """Run the application file at ``path`` and return its service tree.

    Args:
        path: The file.
        reactor: Given to ``application`` when it is a function.

    Raises:
        UsageError: The file cannot be read or run, or its ``application``
            is missing or not a service.
    """
    path = os.path.abspath(path)
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise UsageError(f"cannot read the application file {path}: {exc.strerror}") from exc
    try:
        namespace: dict[str, Any] = runpy.run_path(path, run_name=RUN_NAME)
    except Exception as exc:
        raise UsageError(f"{_where(path, exc)}: {_problem(exc)}") from exc
    if "application" not in namespace:
        raise UsageError(
            f"{path} defines no 'application' "
            "(a service, or a function of the reactor that returns one)"
        )
    application = namespace["application"]
    if not _is_service(application) and callable(application):
        make: Callable[[Reactor], object] = application
        try:
            application = make(reactor)
        except (UsageError, ValueError):
            raise
        except Exception as exc:
            raise UsageError(f"{_where(path, exc)}: {_problem(exc)}") from exc
    if not _is_service(application):
        raise UsageError(
            f"{path}: 'application' is {application!r}, not a service "
            "(something with start_service() and stop_service())"
        )
    service: Service = application
    return service
