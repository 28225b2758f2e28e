"""``Resource``: the objects a web server publishes, in a tree walked by path.

A request's path is split into segments; starting at the site's root, each
resource gives the child for the next segment (``get_child``), until a leaf
or the last segment. The resource reached renders the response with the
handler its class declares for the request's method.

Handlers are declared, never looked up by the client's method string::

    class Greeting(Resource):
        is_leaf = True

        @handles("GET")
        def hello(self, request: Request) -> bytes:
            return b"Hello, World!"

        @handles("POST")
        async def echo(self, request: Request) -> bytes:
            return await request.body()

A handler returns ``bytes`` (the whole body: ``Content-Length`` is set),
``None`` after writing the response itself (``request.write`` then
``request.finish``; the response may finish later), or a Deferred or
coroutine that gives either. ``str`` is refused (a server error is logged):
the server would have to guess a charset, so encode the text and say which
charset in ``Content-Type``.

HEAD is answered by the GET handler with the body dropped, OPTIONS with
``Allow`` unless the class handles it, and any other method without a handler
with 405 and ``Allow`` (RFC 9110 sections 9.3.2, 9.3.7, 15.5.6).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, TypeAlias, TypeVar

from torsion.defer import Deferred
from torsion.web._html import render_error_page
from torsion.web._http11 import reason_phrase
from torsion.web._request import Request

__all__ = [
    "ErrorPage",
    "Handler",
    "RenderResult",
    "Resource",
    "error_page",
    "handles",
]

RenderResult: TypeAlias = (
    bytes | Deferred[bytes | None] | Deferred[bytes] | Deferred[None] | Coroutine[Any, Any, Any]
) | None
Handler: TypeAlias = Callable[[Any, Request], RenderResult]
H = TypeVar("H", bound=Callable[..., Any])

_METHODS_ATTRIBUTE = "_torsion_http_methods"
# RFC 9110 section 5.6.2: a method is a token.
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def handles(*methods: str) -> Callable[[H], H]:
    """Declare a method of a ``Resource`` subclass the handler of HTTP ``methods``.

    Args:
        methods: Method names, e.g. ``"GET"``, ``"POST"`` (case matters, as in
            HTTP).

    Returns:
        A decorator that records the methods on the function and returns it.

    Raises:
        ValueError: No method was given, or one is not a token.
    """
    if not methods:
        raise ValueError("handles() needs at least one method")
    for method in methods:
        if not method or not set(method) <= _TCHAR:
            raise ValueError(f"{method!r} is not an HTTP method")

    def mark(function: H) -> H:
        previous: tuple[str, ...] = getattr(function, _METHODS_ATTRIBUTE, ())
        setattr(function, _METHODS_ATTRIBUTE, previous + methods)
        return function

    return mark


class Resource:
    """A node of the published tree: it has children and renders requests.

    Subclass it, declare handlers with ``@handles``, and set ``is_leaf`` for a
    resource that takes the rest of the path itself (read it from
    ``request.postpath``).

    Attributes:
        is_leaf: Whether the walk stops here, whatever path is left.
    """

    is_leaf: ClassVar[bool] = False
    # The handler table: method bytes -> function, built per class.
    _handlers: ClassVar[dict[bytes, Handler]] = {}
    _allow: ClassVar[bytes] = b"OPTIONS"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Build the class's handler table from its own and inherited handlers."""
        super().__init_subclass__(**kwargs)
        table: dict[bytes, Handler] = {}
        for klass in reversed(cls.__mro__):
            for value in vars(klass).values():
                function = (
                    value.__func__ if isinstance(value, staticmethod | classmethod) else value
                )
                for method in getattr(function, _METHODS_ATTRIBUTE, ()):
                    table[method.encode("ascii")] = function
        cls._handlers = table
        allowed = set(table)
        if b"GET" in allowed:
            allowed.add(b"HEAD")
        allowed.add(b"OPTIONS")
        cls._allow = b", ".join(sorted(allowed))

    def __init__(self) -> None:
        """Make a resource with no children."""
        self._children: dict[str, Resource] = {}

    def put_child(self, segment: str, child: Resource) -> None:
        """Publish ``child`` at path segment ``segment`` below this resource.

        Args:
            segment: The decoded path segment (no ``/``); ``""`` is the child
                for a path ending in ``/`` here.
            child: The resource to publish.

        Raises:
            ValueError: ``segment`` holds a ``/``.
        """
        if "/" in segment:
            raise ValueError(f"a path segment cannot hold '/': {segment!r}")
        self._children[segment] = child

    def get_child(self, segment: str, request: Request) -> Resource:
        """The resource for the next path segment.

        The default gives the child put there with ``put_child``; for the
        empty segment (a path ending in ``/``) with no child there, this
        resource itself; else a 404 page. Override it for children made on
        demand.

        Args:
            segment: The next path segment, percent-decoded.
            request: The request being walked.

        Returns:
            The resource for the segment.
        """
        child = self._children.get(segment)
        if child is not None:
            return child
        if not segment:
            return self
        return NOT_FOUND

    @property
    def allowed_methods(self) -> list[str]:
        """The methods this resource answers (for ``Allow``)."""
        return self._allow.decode("ascii").split(", ")

    def render(self, request: Request) -> RenderResult:
        """Answer ``request`` with the handler declared for its method.

        Override this only to answer every method alike (as error pages do).

        Args:
            request: The request to answer.

        Returns:
            What the handler returned.
        """
        method = request._method
        handler = self._handlers.get(method)
        if handler is not None:
            return handler(self, request)
        if method == b"HEAD":
            handler = self._handlers.get(b"GET")
            if handler is not None:
                return handler(self, request)
        if method == b"OPTIONS":
            request.set_response_code(204)
            request.response_headers.set(b"Allow", self._allow)
            return b""
        request.response_headers.set(b"Allow", self._allow)
        return render_error(request, 405)


def error_page(code: int, detail: str = "") -> bytes:
    """A small HTML page for an error status; ``detail`` is escaped.

    Args:
        code: The status code.
        detail: A sentence to show (escaped: it may hold what a client sent).

    Returns:
        The page, UTF-8.
    """
    return render_error_page(code, reason_phrase(code), detail)


def render_error(request: Request, code: int, detail: str = "") -> bytes:
    """Set ``request``'s status and type to an error page's, and return the page."""
    request.set_response_code(code)
    request.response_headers.set(b"Content-Type", b"text/html; charset=utf-8")
    return error_page(code, detail)


class ErrorPage(Resource):
    """A leaf that answers every method with the same error page.

    Args:
        code: The status code (404, 403...).
        detail: A sentence for the page (escaped).
    """

    is_leaf = True

    def __init__(self, code: int, detail: str = "") -> None:
        """Make the page."""
        super().__init__()
        self.code = code
        self._page = error_page(code, detail)

    def render(self, request: Request) -> RenderResult:
        """Answer with the error page."""
        request.set_response_code(self.code)
        request.response_headers.set(b"Content-Type", b"text/html; charset=utf-8")
        return self._page


NOT_FOUND = ErrorPage(404, "No such resource.")
