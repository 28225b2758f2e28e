"""``torsion web``: an HTTP server for a directory, a resource script, or several hosts.

What it serves (at least one of):

* ``--path DIR``: the directory tree, as ``torsion.web.File`` serves it
  (index files, listings unless ``--no-listing``, ranges, conditional
  requests, precompressed and on-the-fly gzip/br). A single file works too.
* ``--resource-script FILE.py``: a Python file that defines ``resource``, a
  ``torsion.web.Resource`` (the root of its tree); it is run with
  ``reactor`` among its globals, for resources that need time or threads.
* ``--wsgi MODULE:APP``: a WSGI application (PEP 3333), run in the
  reactor's thread pool; ``--asgi MODULE:APP``: an ASGI application
  (Starlette, FastAPI...), run on the event loop, its lifespan startup
  finished before the ports open and its shutdown run after they close.
  ``MODULE`` is imported with the current directory first on the path.
* ``--vhost NAME=DIR`` (repeatable): the tree at ``DIR`` for requests to host
  ``NAME`` (``*.example.com`` for every name under it). What the other
  options give, if any, serves every other host;
  without one, other hosts get 404.

``--auth CHECKER`` (repeatable, a ``torsion.cred`` checker string such as
``memory:alice:secret`` or ``file:/etc/torsion/htpasswd``) puts HTTP Basic
authentication in front of everything, with the portal's delays after
failures and its audit log; ``--auth-realm`` names the protection space.
Basic sends passwords in clear: listen on ``tls:`` when you use it.

``--listen ENDPOINT`` (repeatable, ``tcp:8080`` by default) takes any server
endpoint string: ``tls:8443:privateKey=key.pem:certKey=cert.pem`` serves
HTTPS, offering HTTP/2 and HTTP/1.1 by ALPN (unless the string names its own
``alpn=``); a cleartext port speaks HTTP/2 to clients that start with its
preface (prior knowledge). ``--access-log FILE`` (``-`` for standard output) writes one line per
request, in the combined log format or, with ``--access-log-format json``,
one JSON object per line; the file is reopened when rotated away.

The server's bounds are on by default and can be changed: ``--max-body``,
``--header-timeout``, ``--body-timeout``, ``--idle-timeout`` (the wait
for a kept-alive connection's next request) and ``--write-timeout`` (the
wait for a client that does not take the response), beside the connection limits
every serving plugin has (``--max-connections``, ``--max-per-client``).
"""

from __future__ import annotations

import codecs
import json
import logging
import logging.handlers
import os
import re
import runpy
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torsion.application._app import Application
from torsion.application._plugins import Option, Plugin
from torsion.application._service import BaseService
from torsion.application._tcp_options import (
    LIMIT_OPTIONS,
    check_password_checker,
    listen_option,
    serve,
)
from torsion.internet import Address, IPv4Address, IPv6Address, Reactor

if TYPE_CHECKING:
    from torsion.web import ASGIResource, Resource

__all__ = ["WEB", "JSONAccessFormatter", "parse_vhost"]

_log = logging.getLogger("torsion.web")

_DEFAULT_LISTEN = "tcp:8080"
_ACCESS_LOGGER = "torsion.web.access"

# The combined log format as torsion.web writes it (see combined_log_line):
# quoted fields have their quotes and control characters backslash-escaped.
_QUOTED = r'"((?:[^"\\]|\\.)*)"'
_COMBINED = re.compile(
    rf"^(\S+) \S+ \S+ \[([^\]]*)\] {_QUOTED} (\d{{3}}) (\S+) {_QUOTED} {_QUOTED}$"
)


def parse_vhost(text: str) -> tuple[str, str]:
    """``NAME=DIR`` to its parts.

    Raises:
        ValueError: It is not NAME=DIR, or the name is not a host name.
    """
    name, equals, directory = text.partition("=")
    name = name.strip()
    if not equals or not name or not directory:
        raise ValueError(f"--vhost: {text!r} is not NAME=DIR (example.com=/srv/example)")
    # The rule VirtualHosts.add_host applies, checked here without
    # importing torsion.web (options are parsed before anything is built).
    bare = name.removeprefix("*.")
    if not bare.strip(".") or any(c in bare for c in "/ *\t@"):
        raise ValueError(f"--vhost: not a host name: {name!r}")
    return name, directory


def _check_vhost(text: str) -> str:
    parse_vhost(text)
    return text


def _positive(name: str) -> Any:
    def check(value: Any) -> Any:
        if not value > 0:
            raise ValueError(f"--{name}: must be more than 0, not {value}")
        return value

    return check


def _unescape(text: str) -> str:
    # Undo the log line's escapes (quotes and control characters).
    try:
        return codecs.decode(text.encode("latin-1", "backslashreplace"), "unicode_escape")
    except (UnicodeDecodeError, ValueError):
        return text


class JSONAccessFormatter(logging.Formatter):
    """Formats access-log records (combined log lines) as one JSON object each.

    Fields: ``client``, ``time``, ``request`` (and ``method``, ``target``,
    ``version`` when it splits in three), ``status``, ``bytes`` (null for
    none), ``referer``, ``user_agent``. A message that is not a combined log
    line is kept whole as ``message``.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON object on one line."""
        message = record.getMessage()
        found = _COMBINED.match(message)
        if found is None:
            return json.dumps({"message": message}, ensure_ascii=False)
        client, when, request, status, sent, referer, agent = found.groups()
        entry: dict[str, Any] = {"client": client, "time": when}
        request = _unescape(request)
        entry["request"] = request
        parts = request.split(" ")
        if len(parts) == 3:
            entry["method"], entry["target"], entry["version"] = parts
        entry["status"] = int(status)
        entry["bytes"] = int(sent) if sent.isdigit() else None
        entry["referer"] = None if referer == "-" else _unescape(referer)
        entry["user_agent"] = None if agent == "-" else _unescape(agent)
        return json.dumps(entry, ensure_ascii=False)


class _AccessLog(BaseService):
    """Owns the access log's handler: attached while the service runs."""

    def __init__(self, logger: logging.Logger, handler: logging.Handler) -> None:
        super().__init__()
        self.logger = logger
        self.handler = handler
        logger.addHandler(handler)

    def stop_service(self) -> None:
        super().stop_service()
        self.logger.removeHandler(self.handler)
        self.handler.close()


def _access_log(target: str, form: str) -> tuple[logging.Logger, _AccessLog]:
    logger = logging.getLogger(_ACCESS_LOGGER)
    logger.setLevel(logging.INFO)
    # Requests are not the runner's log: they go only where asked.
    logger.propagate = False
    handler: logging.Handler
    if target == "-":
        handler = logging.StreamHandler(sys.stdout)
    else:
        try:
            # Reopened when logrotate moves the file away.
            handler = logging.handlers.WatchedFileHandler(target, encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"--access-log: cannot open {target!r}: {exc.strerror}") from exc
    if form == "json":
        handler.setFormatter(JSONAccessFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(message)s"))
    return logger, _AccessLog(logger, handler)


def _script_resource(path: str, reactor: Reactor) -> Resource:
    from torsion.web import Resource

    if not Path(path).is_file():
        raise ValueError(f"--resource-script: {path!r} is not a file")
    try:
        namespace = runpy.run_path(path, init_globals={"reactor": reactor})
    except Exception as exc:
        raise ValueError(
            f"--resource-script: {path!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    resource = namespace.get("resource")
    if not isinstance(resource, Resource):
        raise ValueError(
            f"--resource-script: {path!r} must define resource, a torsion.web.Resource"
        )
    return resource


def _directory(option: str, path: str, options: Mapping[str, Any]) -> Resource:
    from torsion.web import File

    if not Path(path).exists():
        raise ValueError(f"{option}: {path!r} does not exist")
    return File(
        path,
        listing=not options["no_listing"],
        follow_symlinks=options["follow_symlinks"],
    )


def _application(option: str, spec: str) -> Any:
    from torsion.web import AppLoadError, load_app

    try:
        return load_app(spec, app_dir=os.getcwd())
    except AppLoadError as exc:
        raise ValueError(f"{option}: {exc}") from exc


class _Lifespan(BaseService):
    """Runs an ASGI application's lifespan: startup before the ports, shutdown after."""

    def __init__(self, resource: ASGIResource) -> None:
        super().__init__()
        self.resource = resource

    async def start_service(self) -> None:
        from torsion.application._errors import RunnerError
        from torsion.web import LifespanError

        super().start_service()
        try:
            await self.resource.start()
        except LifespanError as exc:
            raise RunnerError(f"the ASGI application's startup failed: {exc}") from exc

    async def stop_service(self) -> None:
        from torsion.web import LifespanError

        super().stop_service()
        try:
            await self.resource.stop()
        except LifespanError as exc:
            _log.error("The ASGI application's shutdown failed: %s", exc)


def _root(reactor: Reactor, options: Mapping[str, Any]) -> Resource:
    from torsion.web import ASGIResource, VirtualHosts, WSGIResource

    path, script, vhosts = options["path"], options["resource_script"], options["vhost"]
    wsgi, asgi = options["wsgi"], options["asgi"]
    given = [name for name, value in _sources(options) if value]
    if len(given) > 1:
        raise ValueError(f"give one of {', '.join(given)}, not several")
    if not (given or vhosts):
        raise ValueError(
            "give something to serve: --path DIR, --resource-script FILE, "
            "--wsgi MODULE:APP, --asgi MODULE:APP or --vhost"
        )
    root: Resource | None = None
    if script:
        root = _script_resource(script, reactor)
    elif path:
        root = _directory("--path", path, options)
    elif wsgi:
        root = WSGIResource(_application("--wsgi", wsgi), reactor=reactor)
    elif asgi:
        root = ASGIResource(_application("--asgi", asgi), reactor=reactor)
    if vhosts:
        hosts = VirtualHosts(default=root)
        for text in vhosts:
            name, directory = parse_vhost(text)
            hosts.add_host(name, _directory("--vhost", directory, options))
        root = hosts
    assert root is not None
    return root


def _sources(options: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """What may be served at the root, by option (one at most)."""
    return [
        ("--path", options["path"]),
        ("--resource-script", options["resource_script"]),
        ("--wsgi", options["wsgi"]),
        ("--asgi", options["asgi"]),
    ]


def _guarded(root: Resource, reactor: Reactor, options: Mapping[str, Any]) -> Resource:
    from torsion.cred import Login, Portal, checker_from_string
    from torsion.web import BasicAuth, Resource

    class _Everyone:
        # Every user who logs in sees the same tree.
        def request_avatar(self, avatar_id: str, mind: object, /, *interfaces: type) -> Login:
            return Login(Resource, root, lambda: None)

    checkers = [checker_from_string(text, threads=reactor) for text in options["auth"]]
    portal = Portal(_Everyone(), checkers, clock=reactor)
    return BasicAuth(portal, realm=options["auth_realm"])


def _lifespans(root: Resource) -> list[_Lifespan]:
    from torsion.web import ASGIResource, VirtualHosts

    if isinstance(root, ASGIResource):
        return [_Lifespan(root)]
    if isinstance(root, VirtualHosts) and isinstance(root.default, ASGIResource):
        return [_Lifespan(root.default)]
    return []


def _hint(secure: bool) -> Any:
    def hint(address: Address) -> str | None:
        if not isinstance(address, IPv4Address | IPv6Address):
            return None
        host = f"[{address.host}]" if isinstance(address, IPv6Address) else address.host
        if host in ("0.0.0.0", "[::]"):
            host = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
        if secure:
            return f"curl -k https://{host}:{address.port}/"
        return f"curl http://{host}:{address.port}/"

    return hint


def _build(reactor: Reactor, options: Mapping[str, Any]) -> Application:
    # torsion.web is imported here, not above: it needs httptools (the web
    # extra), which the other plugins do not.
    try:
        from torsion.web import ServerLimits, Site
    except ImportError as exc:
        raise ValueError(
            f"torsion web needs the web extra (pip install 'torsion[web]'): {exc}"
        ) from exc
    root = _root(reactor, options)
    lifespans = _lifespans(root)
    if options["auth"]:
        root = _guarded(root, reactor, options)
    defaults = ServerLimits()
    limits = ServerLimits(
        max_body=options["max_body"] or defaults.max_body,
        header_timeout=options["header_timeout"] or defaults.header_timeout,
        body_timeout=options["body_timeout"] or defaults.body_timeout,
        idle_timeout=options["idle_timeout"] or defaults.idle_timeout,
        write_timeout=options["write_timeout"] or defaults.write_timeout,
    )
    app = Application("web service")
    # Added before the ports: started first, stopped after them.
    for lifespan in lifespans:
        app.add_service(lifespan)
    access_log = None
    if options["access_log"]:
        access_log, service = _access_log(options["access_log"], options["access_log_format"])
        app.add_service(service)
    site = Site(root, reactor=reactor, limits=limits, access_log=access_log)
    # The idle timeout is the server's own (between requests), not the
    # connection-level one of the other plugins.
    connection_limits = {k: v for k, v in options.items() if k != "idle_timeout"}
    what = next((value for _, value in _sources(options) if value), "virtual hosts")
    for text in options["listen"] or [_DEFAULT_LISTEN]:
        secure = _is_tls(text)
        serve(
            app,
            reactor,
            [_with_alpn(text) if secure else text],
            site,
            connection_limits,
            description=f"web server for {what}",
            hint=_hint(secure),
        )
    return app


def _is_tls(text: str) -> bool:
    # The kind, or the kind after one prefix (haproxy:tls:...).
    return bool({"tls", "ssl"} & set(text.split(":", 2)[:2]))


def _with_alpn(text: str) -> str:
    """A TLS endpoint string offering HTTP/2 and HTTP/1.1 by ALPN, unless it names its own."""
    if any(part.startswith("alpn=") for part in text.split(":")):
        return text
    return text + ":alpn=h2,http/1.1"


WEB = Plugin(
    name="web",
    description="an HTTP server for a directory, a resource script, or virtual hosts",
    options=(
        listen_option(_DEFAULT_LISTEN),
        Option("path", "serve this directory (or file)", metavar="DIR"),
        Option(
            "resource-script",
            "serve the resource a Python file defines as `resource` (it sees `reactor`)",
            metavar="FILE.py",
        ),
        Option(
            "vhost",
            "serve DIR for requests to host NAME (*.example.com for every name under it); "
            "--path or --resource-script serves the other hosts",
            repeatable=True,
            check=_check_vhost,
            metavar="NAME=DIR",
        ),
        Option("no-listing", "answer 403 for directories without an index file", type=bool),
        Option(
            "follow-symlinks",
            "follow symbolic links that point out of the served directory",
            type=bool,
        ),
        Option(
            "auth",
            "ask for a user name and password (HTTP Basic), checked by this checker: "
            "memory:USER:PASSWORD[:USER:PASSWORD...], file:HTPASSWD, unix (PAM)",
            repeatable=True,
            check=check_password_checker,
            metavar="CHECKER",
        ),
        Option(
            "auth-realm",
            "the realm named in the password prompt",
            default="torsion",
            metavar="NAME",
        ),
        Option(
            "access-log",
            "write a line per request to FILE (- for standard output)",
            metavar="FILE",
        ),
        Option(
            "access-log-format",
            "the access log's format",
            choices=("combined", "json"),
            default="combined",
            metavar="combined|json",
        ),
        Option(
            "max-body",
            "refuse request bodies over BYTES with 413 (default: 16 MiB)",
            type=int,
            check=_positive("max-body"),
            metavar="BYTES",
        ),
        Option(
            "header-timeout",
            "seconds a request's head may take to arrive (default: 20)",
            type=float,
            check=_positive("header-timeout"),
            metavar="SECONDS",
        ),
        Option(
            "body-timeout",
            "seconds a request body may stall (default: 60)",
            type=float,
            check=_positive("body-timeout"),
            metavar="SECONDS",
        ),
        Option(
            "write-timeout",
            "seconds a response may wait for a client that does not read it, "
            "or (HTTP/2) does not open its flow-control window (default: 60)",
            type=float,
            check=_positive("write-timeout"),
            metavar="SECONDS",
        ),
        Option(
            "wsgi",
            "serve this WSGI application (PEP 3333), run in the thread pool; "
            "MODULE is imported from the current directory first",
            metavar="MODULE:APP",
        ),
        Option(
            "asgi",
            "serve this ASGI application (Starlette, FastAPI...) on the event loop, "
            "with its lifespan startup before the ports open",
            metavar="MODULE:APP",
        ),
        *(
            option
            if option.name != "idle-timeout"
            else Option(
                "idle-timeout",
                "seconds a kept-alive connection may wait for its next request (default: 60)",
                type=float,
                check=_positive("idle-timeout"),
                metavar="SECONDS",
            )
            for option in LIMIT_OPTIONS
        ),
    ),
    build=_build,
)
