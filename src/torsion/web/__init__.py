"""torsion.web: HTTP servers and clients, and the resources they publish.

The server side is object publishing: a ``Site`` is the protocol factory of
an HTTP/1.1 server (parsing on httptools), a request walks a tree of
``Resource`` objects by its path segments, and the resource found renders the
response by an explicit table of method handlers. ``Headers`` is the one
case-insensitive, multi-valued header container the server, the client and
the helpers share.
"""

from __future__ import annotations

from torsion.web._headers import (
    Headers,
    InvalidHeaderError,
    validate_header_name,
    validate_header_value,
)

__all__ = [
    "Headers",
    "InvalidHeaderError",
    "validate_header_name",
    "validate_header_value",
]
