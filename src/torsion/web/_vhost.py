"""Name-based virtual hosts: one site, a resource tree per ``Host``.

``VirtualHosts`` is a resource (usually a site's root) that picks the tree
for a request by the host it names, then walks that tree along the request's
path as the site would have::

    root = VirtualHosts(default=File("/srv/www"))
    root.add_host("example.com", File("/srv/example"))
    root.add_host("*.example.net", File("/srv/net"))
    site = Site(root, reactor=reactor)

The host is the request target's own authority when it came in absolute
form, else the ``Host`` field (RFC 9112 section 3.2), compared without its
port, without a trailing dot and without regard to case. A request for no
known host goes to the default tree, or gets 404 when there is none; the
page never repeats the host the client sent (whatever a client sends is
never written into HTML raw: CVE-2022-39348 was that Host, echoed).
"""

from __future__ import annotations

import urllib.parse

from torsion.web._request import Request
from torsion.web._resource import RenderResult, Resource, render_error

__all__ = ["VirtualHosts", "request_host", "walk"]


def request_host(request: Request) -> str | None:
    """The host a request is for, lower-cased, without port or trailing dot.

    Args:
        request: The request.

    Returns:
        The host name or address (an IPv6 address without its brackets), or
        None when the request names none (HTTP/1.0 without ``Host``).
    """
    authority: str | None = None
    if not request.uri.startswith(b"/"):
        # Absolute form: its authority wins over Host (RFC 9112 3.2.2).
        netloc = urllib.parse.urlsplit(request.uri.decode("latin-1")).netloc
        authority = netloc.rpartition("@")[2] or None
    if authority is None:
        authority = request.headers.get_str("host")
    if not authority:
        return None
    authority = authority.strip().lower()
    if authority.startswith("["):
        host, bracket, _ = authority[1:].partition("]")
        return host if bracket else None
    host, colon, port = authority.rpartition(":")
    if not colon or (port and not port.isdigit()):
        host = authority
    return host.rstrip(".") or None


def walk(resource: Resource, request: Request) -> Resource:
    """Walk from ``resource`` along the path left in ``request.postpath``.

    For a resource that takes the rest of the path itself (``is_leaf``) and
    hands it to another tree, as the site does from its root:
    ``request.prepath`` and ``request.postpath`` are moved along the way.

    Args:
        resource: Where to start.
        request: The request; its ``postpath`` is the path still to walk.

    Returns:
        The resource that renders the request.
    """
    segments = request.postpath
    index = 0
    while index < len(segments) and not resource.is_leaf:
        segment = segments[index]
        index += 1
        request.prepath.append(segment)
        resource = resource.get_child(segment, request)
    request.postpath = segments[index:]
    return resource


class VirtualHosts(Resource):
    """Pick a resource tree by the request's host name.

    Args:
        default: The tree for requests naming no known host (None: 404).

    Attributes:
        default: The tree for requests naming no known host.
    """

    is_leaf = True

    def __init__(self, default: Resource | None = None) -> None:
        """Make it with no hosts."""
        super().__init__()
        self.default = default
        self._hosts: dict[str, Resource] = {}
        self._wildcards: dict[str, Resource] = {}

    def add_host(self, name: str, resource: Resource) -> None:
        """Serve ``resource`` for requests to host ``name``.

        Args:
            name: A host name (any case; a port is not part of it), an IP
                address, or ``*.example.com`` for every name under
                ``example.com`` (not ``example.com`` itself).
            resource: The root of the tree for that host.

        Raises:
            ValueError: The name is empty or holds a ``/``, a space or a
                ``*`` other than a leading ``*.``.
        """
        key = name.strip().lower().rstrip(".")
        if key.startswith("[") and key.endswith("]"):
            key = key[1:-1]
        wildcard = key.startswith("*.")
        bare = key[2:] if wildcard else key
        if not bare or any(c in bare for c in "/ *\t@"):
            raise ValueError(f"not a host name: {name!r}")
        if wildcard:
            self._wildcards[bare] = resource
        else:
            self._hosts[key] = resource

    def remove_host(self, name: str) -> None:
        """Stop serving host ``name`` (as given to ``add_host``).

        Raises:
            KeyError: No such host was added.
        """
        key = name.strip().lower().rstrip(".").removeprefix("[").removesuffix("]")
        if key.startswith("*."):
            del self._wildcards[key[2:]]
        else:
            del self._hosts[key]

    def resource_for_host(self, host: str | None) -> Resource | None:
        """The tree for ``host`` (as ``request_host`` gives it), or the default."""
        if host is not None:
            found = self._hosts.get(host)
            if found is not None:
                return found
            if self._wildcards:
                # The longest suffix first: a.b.example.com tries
                # b.example.com, then example.com.
                rest = host
                while "." in rest:
                    rest = rest.partition(".")[2]
                    found = self._wildcards.get(rest)
                    if found is not None:
                        return found
        return self.default

    def render(self, request: Request) -> RenderResult:
        """Walk the chosen host's tree and render with what it finds there."""
        tree = self.resource_for_host(request_host(request))
        if tree is None:
            # The host is not repeated: nothing the client sent goes in.
            return render_error(request, 404, "No site is served for this host name.")
        return walk(tree, request).render(request)

    def __repr__(self) -> str:
        """The hosts served, for debugging."""
        names = [*self._hosts, *(f"*.{n}" for n in self._wildcards)]
        return f"<VirtualHosts {names} default={self.default!r}>"
