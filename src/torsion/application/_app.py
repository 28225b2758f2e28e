"""``Application``: the root of a service tree, with what the runner needs to know.

An application file (``torsion run app.py``) defines ``application``: an
``Application`` (or any service), or a function that takes the reactor and
returns one, for trees whose services need the reactor to be built::

    def application(reactor: Reactor) -> Application:
        app = Application("echo")
        endpoint = server_from_string(reactor, "tcp:8000:interface=127.0.0.1")
        app.add_service(StreamServerEndpointService(endpoint, lambda _: Echo()))
        return app
"""

from __future__ import annotations

from torsion.application._multi import MultiService

__all__ = ["Application"]


class Application(MultiService):
    """The root service: a ``MultiService`` with a name and the user to run as.

    Args:
        name: What the application is called, in log lines.
        uid: The user to run as once the privileged start is done (a name
            or a number); the runner's ``--uid`` overrides it.
        gid: The group to run as (by default the user's own group).

    Attributes:
        name, uid, gid: As given.
    """

    def __init__(
        self,
        name: str = "application",
        *,
        uid: int | str | None = None,
        gid: int | str | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.uid = uid
        self.gid = gid

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Application {self.name!r} {state}, {len(self)} services>"
