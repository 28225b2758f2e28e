"""A notes server with a LOGIN command: the four roles of torsion.cred, apart.

Run it, then talk to it with ``nc 127.0.0.1 PORT``::

    LOGIN alice wonderland
    NOTE buy milk
    LIST
    QUIT

* protocol: ``NotesProtocol`` reads lines and asks a portal for a ``Notebook``;
* checker: any (here from an --auth string: memory, file, unix...);
* realm: ``NotesRealm`` makes a ``Notebook`` over any ``NoteStore``;
* backend: ``MemoryStore`` or ``DirectoryStore`` (one file per user).

``python examples/cred_notes.py [PORT] [--auth STRING] [--dir DIRECTORY]``
"""

from __future__ import annotations

import argparse
import typing
from pathlib import Path
from typing import Any

from torsion.cred import Login, Portal, UnauthorizedLogin, UsernamePassword, checker_from_string
from torsion.defer import Deferred
from torsion.internet import Reactor
from torsion.protocols import LineOnlyReceiver


class Notebook(typing.Protocol):
    """What the protocol talks to: one user's notes."""

    def add(self, text: str) -> None: ...
    def notes(self) -> list[str]: ...


class NoteStore(typing.Protocol):
    """A backend: where notes are kept."""

    def load(self, user: str) -> list[str]: ...
    def append(self, user: str, text: str) -> None: ...


class MemoryStore:
    def __init__(self) -> None:
        self._notes: dict[str, list[str]] = {}

    def load(self, user: str) -> list[str]:
        return list(self._notes.get(user, []))

    def append(self, user: str, text: str) -> None:
        self._notes.setdefault(user, []).append(text)


class DirectoryStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def load(self, user: str) -> list[str]:
        path = self.directory / user
        return path.read_text().splitlines() if path.exists() else []

    def append(self, user: str, text: str) -> None:
        with open(self.directory / user, "a") as file:
            file.write(text + "\n")


class UserNotebook:
    def __init__(self, user: str, store: NoteStore) -> None:
        self.user, self.store = user, store

    def add(self, text: str) -> None:
        self.store.append(self.user, text)

    def notes(self) -> list[str]:
        return self.store.load(self.user)


class NotesRealm:
    """Turns an avatar id into a Notebook over whatever store it was given."""

    def __init__(self, store: NoteStore) -> None:
        self.store = store

    def request_avatar(self, avatar_id: str, mind: Any, /, *interfaces: type) -> Login:
        if Notebook not in interfaces:
            raise NotImplementedError("this realm only has notebooks")
        return Login(Notebook, UserNotebook(avatar_id, self.store), lambda: None)


class NotesProtocol(LineOnlyReceiver):
    """LOGIN user password, then NOTE text / LIST; QUIT. Knows nothing of checkers."""

    max_length = 1024

    def __init__(self, portal: Portal) -> None:
        self.portal = portal
        self.notebook: Notebook | None = None
        self.logout: typing.Callable[[], object] = lambda: None
        self.pending: Deferred[Login] | None = None

    def line_received(self, line: bytes) -> None:
        verb, _, rest = line.decode("utf-8", "replace").partition(" ")
        if verb == "LOGIN":
            user, _, password = rest.partition(" ")
            credentials = UsernamePassword(user, password)
            # Read no further until the portal answers (it may hold a failure back).
            self.pause_receiving()
            self.pending = self.portal.login(credentials, self, Notebook, client=self.peer)
            self.pending.add_callbacks(self._logged_in, self._refused)
            self.pending.add_both(lambda _: self._answered())
        elif verb == "NOTE" and self.notebook is not None:
            self.notebook.add(rest)
            self.send_line(b"OK noted")
        elif verb == "LIST" and self.notebook is not None:
            for note in self.notebook.notes():
                self.send_line(f"* {note}".encode())
            self.send_line(b"OK")
        elif verb == "QUIT":
            self.send_line(b"OK bye")
            self.transport.close()
        else:
            self.send_line(b"NO log in first" if self.notebook is None else b"NO unknown command")

    def _logged_in(self, login: Login) -> None:
        self.notebook, self.logout = login.avatar, login.logout
        self.send_line(b"OK logged in")

    def _refused(self, error: BaseException) -> None:
        # The same words for an unknown user and a wrong password.
        answer = b"NO login failed" if isinstance(error, UnauthorizedLogin) else b"NO server error"
        if not self.transport.is_closing():
            self.send_line(answer)

    def _answered(self) -> None:
        if not self.transport.is_closing():
            self.resume_receiving()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.pending is not None and not self.pending.called:
            self.pending.cancel()  # the client left: no check or delay for nobody
        self.logout()
        super().connection_lost(exc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int, nargs="?", default=8025)
    parser.add_argument("--auth", default="memory:alice:wonderland:bob:builder")
    parser.add_argument("--dir", type=Path, help="keep notes in files here (else in memory)")
    options = parser.parse_args()
    reactor = Reactor()
    checker = checker_from_string(options.auth, threads=reactor)
    store: NoteStore = DirectoryStore(options.dir) if options.dir else MemoryStore()
    portal = Portal(NotesRealm(store), [checker], clock=reactor)
    port = reactor.listen_tcp(options.port, lambda _: NotesProtocol(portal), interface="127.0.0.1")
    print(f"notes on 127.0.0.1:{port.port}; try: nc 127.0.0.1 {port.port}", flush=True)
    reactor.run()
    reactor.close()


if __name__ == "__main__":
    main()
