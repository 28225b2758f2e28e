"""Services: the parts of an application that start, stop and reload.

An application is a tree of services (``MultiService`` holds the branches,
``Application`` is the root) that the ``torsion`` command starts and stops.
A service is anything with ``start_service()`` and ``stop_service()``; either
may return an awaitable (a Deferred, or be an ``async def``) to say that it
has not finished yet. ``ClientService`` from ``torsion.internet`` is one as it
is. Two more methods are optional:

- ``privileged_start_service()`` runs before ``start_service()``, while the
  process may still be root: bind ports below 1024 there. The runner drops
  privileges between the two.
- ``reload_service()`` runs on SIGHUP: read certificates, zone files or
  configuration again.

The runner calls them in this order::

    [privileged_start_service] -> start_service [-> reload_service*] -> stop_service

Cancelling the awaitable ``stop_service()`` returned means "hurry": the
shutdown deadline passed, so drop the work still in hand (close connections,
kill children) and finish now.
"""

from __future__ import annotations

import typing
from collections.abc import Awaitable
from typing import runtime_checkable

__all__ = ["BaseService", "PrivilegedService", "ReloadableService", "Service"]


class Service(typing.Protocol):
    """What a service tree holds: something that starts and stops."""

    def start_service(self) -> Awaitable[None] | None:
        """Start; return an awaitable if starting takes a while (it may fail)."""
        ...

    def stop_service(self) -> Awaitable[None] | None:
        """Stop; return an awaitable if stopping takes a while.

        Cancelling that awaitable asks the service to finish at once,
        dropping the work still in hand.
        """
        ...


@runtime_checkable
class PrivilegedService(typing.Protocol):
    """A service with work to do while the process still has its privileges."""

    def privileged_start_service(self) -> Awaitable[None] | None:
        """Do what needs root (bind a port below 1024); runs before ``start_service``."""
        ...


@runtime_checkable
class ReloadableService(typing.Protocol):
    """A service that can read its configuration again without stopping."""

    def reload_service(self) -> Awaitable[None] | None:
        """Reload (certificates, zone files, configuration); called on SIGHUP."""
        ...


class BaseService:
    """A service that keeps ``running`` and does nothing else: subclass it.

    Override the methods you need and call the base method from
    ``start_service`` and ``stop_service`` (they keep ``running``)::

        class Heartbeat(BaseService):
            def start_service(self) -> None:
                super().start_service()
                ...

            async def stop_service(self) -> None:
                super().stop_service()
                await self.flush()

    Attributes:
        running: Whether it was started and not stopped since.
    """

    running: bool = False

    def privileged_start_service(self) -> Awaitable[None] | None:
        """Nothing to do as root, by default."""
        return None

    def start_service(self) -> Awaitable[None] | None:
        """Mark the service running."""
        self.running = True
        return None

    def stop_service(self) -> Awaitable[None] | None:
        """Mark the service stopped."""
        self.running = False
        return None

    def reload_service(self) -> Awaitable[None] | None:
        """Nothing to reload, by default."""
        return None
