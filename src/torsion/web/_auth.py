"""HTTP Basic authentication (RFC 7617) in front of a resource tree, through ``torsion.cred``.

``BasicAuth`` is a resource that logs each request's ``Authorization:
Basic`` credentials in with a ``Portal`` (as ``UsernamePassword``), asking
the realm for a ``Resource``: the tree that user may see. It then walks that
tree along the rest of the path and renders what it finds, as the site would
have. The checker is any of cred's: the same object can guard a SOCKS proxy,
a mail server and this site at once, and the portal's limiter (growing
delays after failures, per user name and per client address) and audit log
apply to every one of them::

    class Pages:
        def request_avatar(self, avatar_id, mind, *interfaces):
            return Login(Resource, File(f"/srv/users/{avatar_id}"), lambda: None)

    portal = Portal(Pages(), [HtpasswdChecker("/etc/torsion/htpasswd", threads=reactor)],
                    clock=reactor)
    root.put_child("private", BasicAuth(portal, realm="members"))

A request without credentials, with credentials that are not Basic or not
well formed, or that the portal refuses is answered 401 with
``WWW-Authenticate: Basic realm="...", charset="UTF-8"`` (the charset
parameter of RFC 7617 section 2.1: user names and passwords are taken as
UTF-8, and as ISO-8859-1 when they are not valid UTF-8, as older clients send
them). When the portal takes ``Anonymous`` credentials, a request without
``Authorization`` is logged in anonymously instead. Basic sends the password
in clear, so serve it over TLS.

Each request logs in on its own (Basic has no session); the avatar's
``logout`` is called once the response is finished or the connection is
lost. A login still waiting (the limiter holds failures back) is cancelled
when the client goes away.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Coroutine
from typing import Any

from torsion.cred import Anonymous, Login, Portal, UnauthorizedLogin, UsernamePassword
from torsion.defer import Deferred
from torsion.web._headers import validate_header_value
from torsion.web._request import Request
from torsion.web._resource import RenderResult, Resource, render_error
from torsion.web._vhost import walk

__all__ = ["BasicAuth", "parse_basic_credentials"]

# An Authorization value longer than this is no user name and password
# anyone types; it is refused before being decoded.
_MAX_CREDENTIALS = 4096


def parse_basic_credentials(value: bytes) -> UsernamePassword | None:
    """Decode an ``Authorization: Basic`` value (RFC 7617 section 2).

    Args:
        value: The field value, e.g. ``b"Basic YWxhZGRpbjpvcGVuc2VzYW1l"``.

    Returns:
        The credentials, or None when the value is not Basic or not well
        formed (not base64, no ``:``, too long).
    """
    scheme, _, token = value.strip().partition(b" ")
    if scheme.lower() != b"basic" or len(token) > _MAX_CREDENTIALS:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(b":")
    if not colon:
        return None
    try:
        return UsernamePassword(user.decode("utf-8"), password.decode("utf-8"))
    except UnicodeDecodeError:
        return UsernamePassword(user.decode("latin-1"), password.decode("latin-1"))


class BasicAuth(Resource):
    """Ask for a user name and password, and serve that user's resource tree.

    Args:
        portal: Logs the credentials in; its realm gives a ``Resource``.
        realm: The protection space named to clients (shown in their
            password prompt).

    Raises:
        ValueError: ``realm`` holds a control character.
    """

    is_leaf = True

    def __init__(self, portal: Portal, *, realm: str = "torsion") -> None:
        """Make the wrapper."""
        super().__init__()
        self.portal = portal
        self.realm = realm
        quoted = realm.replace("\\", "\\\\").replace('"', '\\"')
        challenge = f'Basic realm="{quoted}", charset="UTF-8"'.encode()
        validate_header_value(challenge)
        self._challenge = challenge

    def render(self, request: Request) -> RenderResult:
        """Log the request's credentials in, then render with the user's tree."""
        return self._render(request)

    async def _render(self, request: Request) -> Any:
        value = request.headers.get(b"authorization")
        credentials: object
        if value is None:
            if Anonymous not in self.portal.credential_types:
                return self._unauthorized(request)
            credentials = Anonymous()
        else:
            parsed = parse_basic_credentials(value)
            if parsed is None:
                return self._unauthorized(request)
            credentials = parsed
        attempt = self.portal.login(credentials, None, Resource, client=request.client)
        # A client that leaves stops its login (and the limiter's delay).
        request.notify_finish().add_errback(lambda _exc: attempt.cancel())
        try:
            login: Login = await attempt
        except UnauthorizedLogin:
            return self._unauthorized(request)
        request.notify_finish().add_both(lambda _: _logout(login))
        avatar = login.avatar
        if not isinstance(avatar, Resource):
            raise TypeError(f"the realm gave {type(avatar).__name__}, not a Resource")
        result: Any = walk(avatar, request).render(request)
        # Settled here: the site takes bytes or None from this coroutine.
        while isinstance(result, Deferred | Coroutine):
            result = await result
        return result

    def _unauthorized(self, request: Request) -> bytes:
        request.response_headers.set(b"WWW-Authenticate", self._challenge)
        return render_error(request, 401, "Authentication is required.")

    def __repr__(self) -> str:
        """The realm and portal, for debugging."""
        return f"<BasicAuth realm={self.realm!r} portal={self.portal!r}>"


def _logout(login: Login) -> None:
    # Called once, whether the response finished or the connection went.
    login.logout()
