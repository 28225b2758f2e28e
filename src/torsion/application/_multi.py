"""``MultiService``: a branch of the service tree, holding named children.

Children start in the order they were added, each once the one before has
finished starting, and stop in the reverse order, each once the one after
has finished stopping: a database pool added first is up before the web
server that uses it and still up while the web server finishes its last
requests. If a child fails to start, the ones already started (or holding
ports from their privileged start) are stopped again, in reverse, and the
failure is passed on.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Iterator

from torsion.application._service import PrivilegedService, ReloadableService, Service
from torsion.defer import CancelledError, Deferred, awaitable_deferred, ensure_deferred, succeed

__all__ = ["MultiService"]

_log = logging.getLogger(__name__)


async def _wait(result: Awaitable[None] | None) -> None:
    d = awaitable_deferred(result)
    if d is not None:
        await d


class MultiService:
    """A service made of services: started in order, stopped in reverse.

    Attributes:
        running: Whether it was started and not stopped since.
    """

    def __init__(self) -> None:
        self._children: list[tuple[str | None, Service]] = []
        # Children whose privileged start ran and who have not been stopped.
        self._prepared: list[Service] = []
        self.running = False

    # -- the children -----------------------------------------------------------------

    def add_service(self, service: Service, name: str | None = None) -> Deferred[None]:
        """Add ``service`` as the last child, under ``name`` if given.

        Returns:
            A Deferred that fires once the child is started, if this service
            runs (the child then goes through its privileged start and its
            start now); at once otherwise.

        Raises:
            ValueError: ``service`` is a child already, or ``name`` is taken.
        """
        if any(child is service for _, child in self._children):
            raise ValueError(f"{service!r} is a child of {self!r} already")
        if name is not None and name in self.names:
            raise ValueError(f"{self!r} has a child named {name!r} already")
        self._children.append((name, service))
        if not self.running:
            return succeed(None)
        return ensure_deferred(self._start_one(service))

    def remove_service(self, service: Service | str) -> Deferred[None]:
        """Remove a child (given as itself or by name), stopping it if this service runs.

        Returns:
            A Deferred that fires once the child has stopped.

        Raises:
            KeyError: There is no such child.
        """
        for i, (name, child) in enumerate(self._children):
            if child is service or (isinstance(service, str) and name == service):
                del self._children[i]
                break
        else:
            raise KeyError(service)
        if self.running or _holds(self._prepared, child):
            return ensure_deferred(self._stop_one(child))
        return succeed(None)

    def get_service(self, name: str) -> Service:
        """Return the child named ``name``.

        Raises:
            KeyError: No child has that name.
        """
        for child_name, child in self._children:
            if child_name == name:
                return child
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        """The names of the named children, in order."""
        return [name for name, _ in self._children if name is not None]

    def __iter__(self) -> Iterator[Service]:
        return iter([child for _, child in self._children])

    def __len__(self) -> int:
        return len(self._children)

    def __contains__(self, service: object) -> bool:
        return any(child is service for _, child in self._children)

    def _describe(self, service: Service) -> str:
        for name, child in self._children:
            if child is service and name is not None:
                return repr(name)
        return repr(service)

    # -- starting ---------------------------------------------------------------------

    def privileged_start_service(self) -> Deferred[None]:
        """Run each child's privileged start (where it has one), in order."""
        return ensure_deferred(self._privileged_start())

    async def _privileged_start(self) -> None:
        for service in list(self):
            if _holds(self._prepared, service):
                continue
            try:
                if isinstance(service, PrivilegedService):
                    await _wait(service.privileged_start_service())
            except BaseException:
                await self._undo()
                raise
            self._prepared.append(service)

    def start_service(self) -> Deferred[None]:
        """Start the children in order, each once the one before has started.

        Returns:
            A Deferred that fires once all have started, or fails with the
            first child's failure after the ones started are stopped again.
        """
        return ensure_deferred(self._start())

    async def _start(self) -> None:
        self.running = True
        started: list[Service] = []
        for service in list(self):
            try:
                if isinstance(service, PrivilegedService) and not _holds(self._prepared, service):
                    await _wait(service.privileged_start_service())
                    self._prepared.append(service)
                await _wait(service.start_service())
            except BaseException:
                self.running = False
                await self._undo(started)
                raise
            started.append(service)

    async def _start_one(self, service: Service) -> None:
        if isinstance(service, PrivilegedService):
            await _wait(service.privileged_start_service())
        self._prepared.append(service)
        await _wait(service.start_service())

    async def _undo(self, started: list[Service] | None = None) -> None:
        """Stop, in reverse, what was started or prepared before a failure."""
        undo = list(started or [])
        undo += [s for s in self._prepared if not _holds(undo, s)]
        order = [s for s in self if _holds(undo, s)]
        for service in reversed(order):
            await self._stop_one(service)

    # -- stopping ---------------------------------------------------------------------

    def stop_service(self) -> Deferred[None]:
        """Stop the children in reverse order, each once the one after has stopped.

        A child that fails to stop is logged and the others still stop.

        Returns:
            A Deferred that fires once all have stopped. Cancelling it hurries
            the rest: the child stopping now has its stop cancelled, and each
            child after it is stopped and its stop cancelled at once.
        """
        self.running = False
        stopping = _Stopping()
        done: Deferred[None] = Deferred(lambda _: stopping.hurry())

        def finished(_: object) -> None:
            if done.called:
                return
            if stopping.hurrying:
                done.errback(CancelledError())
            else:
                done.callback(None)

        ensure_deferred(self._stop_all(stopping)).add_both(finished)
        return done

    async def _stop_all(self, stopping: _Stopping) -> None:
        for service in reversed(list(self)):
            await self._stop_one(service, stopping)

    async def _stop_one(self, service: Service, stopping: _Stopping | None = None) -> None:
        self._prepared = [s for s in self._prepared if s is not service]
        try:
            d = awaitable_deferred(service.stop_service())
            if d is None:
                return
            if stopping is not None:
                if stopping.hurrying:
                    d.cancel()
                else:
                    stopping.current = d
            try:
                await d
            finally:
                if stopping is not None:
                    stopping.current = None
        except CancelledError:
            if stopping is None or not stopping.hurrying:
                _log.error("Stopping %s was cancelled", self._describe(service))
        except Exception as exc:
            _log.error(
                "Stopping %s failed: %r",
                self._describe(service),
                exc,
                exc_info=(type(exc), exc, exc.__traceback__),
            )

    # -- reloading --------------------------------------------------------------------

    def reload_service(self) -> Deferred[None]:
        """Reload every child that can, in order; a failure is logged, not passed on."""
        return ensure_deferred(self._reload())

    async def _reload(self) -> None:
        for service in list(self):
            if not isinstance(service, ReloadableService):
                continue
            try:
                await _wait(service.reload_service())
            except Exception as exc:
                _log.error(
                    "Reloading %s failed: %s",
                    self._describe(service),
                    exc,
                    exc_info=(type(exc), exc, exc.__traceback__),
                )

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {state}, {len(self)} children>"


class _Stopping:
    """One ``stop_service`` under way: the child being waited for, and whether to hurry."""

    __slots__ = ("current", "hurrying")

    def __init__(self) -> None:
        self.current: Deferred[None] | None = None
        self.hurrying = False

    def hurry(self) -> None:
        self.hurrying = True
        if self.current is not None:
            self.current.cancel()


def _holds(services: list[Service], service: Service) -> bool:
    # By identity: two services that compare equal are still two services.
    return any(s is service for s in services)
