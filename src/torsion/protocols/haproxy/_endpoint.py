r"""The ``haproxy:`` endpoint-string prefix: a server endpoint behind HAProxy.

``haproxy:tcp:8080`` listens as ``tcp:8080`` does and wants a PROXY
protocol header (version 1 or 2) on every connection first. Its own options
come before the wrapped string::

    haproxy:timeout=5:trusted=10.0.0.0/8,192.0.2.7:tcp:8080:interface=10.0.0.2

``timeout`` is how long a connection may take to send its header,
``trusted`` the comma-separated networks headers are taken from (a colon
in an IPv6 network is written ``\:``), ``allowLocal=no`` refuses LOCAL
headers (health checks). ``haproxy:tls:443:privateKey=...`` runs the TLS
handshake after the header, as HAProxy in TCP mode sends them.
"""

from __future__ import annotations

from typing import Any

from torsion.internet import ServerEndpoint, parse_endpoint_string, tls_server_parts
from torsion.protocols.haproxy._protocol import DEFAULT_TIMEOUT, ProxyProtocolServerEndpoint

__all__ = ["HAPROXY_ENDPOINT_KIND", "HAProxyEndpointKind"]

_OPTIONS = ("timeout", "trusted", "allowLocal")


class HAProxyEndpointKind:
    """The ``haproxy:`` prefix (registered as a ``torsion.endpoints`` entry point)."""

    prefix = "haproxy"

    def wrap_server(self, reactor: Any, options: dict[str, str], inner: str) -> ServerEndpoint:
        """Wrap the server endpoint ``inner`` so that its connections start with a header.

        Raises:
            ValueError: An option is unknown or not valid.
            EndpointStringError: ``inner`` is not a valid server endpoint string.
        """
        for key in options:
            if key not in _OPTIONS:
                allowed = ", ".join(f"{name}=" for name in _OPTIONS)
                raise ValueError(f"unknown option {key!r} for haproxy: (allowed: {allowed})")
        # Read the options with the endpoint-string rules and messages.
        parsed = parse_endpoint_string(
            "haproxy:" + ":".join(f"{key}={value}" for key, value in options.items())
        )
        timeout = parsed.seconds("timeout", default=DEFAULT_TIMEOUT)
        allow_local = parsed.flag("allowLocal", default=True)
        trusted = None
        if "trusted" in options:
            trusted = [net for net in options["trusted"].split(",") if net]
            if not trusted:
                raise ValueError("trusted= needs at least one network")
        endpoint, tls = tls_server_parts(reactor, inner)
        try:
            return ProxyProtocolServerEndpoint(
                endpoint,
                clock=reactor,
                timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
                trusted=trusted,
                allow_local=allow_local,
                tls=tls,
            )
        except ValueError as exc:
            raise ValueError(f"haproxy: {exc}") from exc

    def __repr__(self) -> str:
        return "<HAProxyEndpointKind haproxy>"


HAPROXY_ENDPOINT_KIND = HAProxyEndpointKind()
"""The ``haproxy:`` endpoint-string prefix."""
