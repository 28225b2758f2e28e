"""torsion.web: HTTP servers and clients, and the resources they publish.

The server side is object publishing: a ``Site`` is the protocol factory of
an HTTP/1.1 server (parsing on httptools), a request walks a tree of
``Resource`` objects by its path segments, and the resource found renders the
response by an explicit table of method handlers. ``Headers`` is the one
case-insensitive, multi-valued header container the server, the client and
the helpers share.
"""

from __future__ import annotations

from torsion.web._asgi import ASGIApp, ASGIResource, LifespanError, ReactorForASGI
from torsion.web._auth import BasicAuth, parse_basic_credentials
from torsion.web._cgi import CGIDirectory, CGIError, CGIScript, ReactorForCGI, cgi_environment
from torsion.web._channel import HTTPChannel
from torsion.web._client import CookieStore, HTTPClient, ReactorForHTTP
from torsion.web._client_errors import (
    BadResponseError,
    ClientClosedError,
    HTTPClientError,
    InvalidRequestError,
    ProxyConnectError,
    RedirectError,
    RedirectRefusedError,
    ResponseNeverReceivedError,
    ResponseTooLargeError,
    TooManyRedirectsError,
)
from torsion.web._client_h2 import StreamResetError
from torsion.web._client_proxy import HTTPConnectEndpoint
from torsion.web._client_response import Response
from torsion.web._conditional import (
    ETag,
    Precondition,
    check_preconditions,
    evaluate_preconditions,
    format_http_date,
    if_range_allows,
    make_etag,
    parse_etags,
    parse_http_date,
)
from torsion.web._cookies import (
    Cookie,
    CookieError,
    CookieJar,
    format_set_cookie,
    parse_cookie_header,
)
from torsion.web._forms import (
    FormError,
    FormTooLargeError,
    MultipartForm,
    MultipartParser,
    UploadedFile,
    encode_urlencoded,
    multipart_boundary,
    parse_multipart,
    parse_urlencoded,
)
from torsion.web._h2 import H2Channel, H2Request
from torsion.web._headers import (
    Headers,
    InvalidHeaderError,
    validate_header_name,
    validate_header_value,
)
from torsion.web._html import (
    DirectoryEntry,
    escape,
    render_directory_listing,
    render_error_page,
)
from torsion.web._http11 import HTTPProtocolError, RequestParser, ServerLimits
from torsion.web._proxy import ReverseProxyResource, hop_by_hop_fields
from torsion.web._ranges import (
    ByteRange,
    MultipartByteRanges,
    MultipartPart,
    RangeOutcome,
    RangeRequest,
    parse_range,
    plan_multipart,
    unsatisfiable_content_range,
)
from torsion.web._request import Request, ResponseStateError
from torsion.web._resource import ErrorPage, RenderResult, Resource, error_page, handles
from torsion.web._sessions import Session, SessionStore
from torsion.web._site import Site, combined_log_line
from torsion.web._static import File
from torsion.web._vhost import VirtualHosts, request_host, walk
from torsion.web._websocket import (
    SwitchingRequest,
    WebSocket,
    WebSocketClosedError,
    WebSocketHandler,
    WebSocketResource,
    websocket_accept,
)
from torsion.web._wsgi import AppLoadError, WSGIResource, load_app

__all__ = [
    "ASGIApp",
    "ASGIResource",
    "AppLoadError",
    "BadResponseError",
    "BasicAuth",
    "ByteRange",
    "CGIDirectory",
    "CGIError",
    "CGIScript",
    "ClientClosedError",
    "Cookie",
    "CookieError",
    "CookieJar",
    "CookieStore",
    "DirectoryEntry",
    "ETag",
    "ErrorPage",
    "File",
    "FormError",
    "FormTooLargeError",
    "H2Channel",
    "H2Request",
    "HTTPChannel",
    "HTTPClient",
    "HTTPClientError",
    "HTTPConnectEndpoint",
    "HTTPProtocolError",
    "Headers",
    "InvalidHeaderError",
    "InvalidRequestError",
    "LifespanError",
    "MultipartByteRanges",
    "MultipartForm",
    "MultipartParser",
    "MultipartPart",
    "Precondition",
    "ProxyConnectError",
    "RangeOutcome",
    "RangeRequest",
    "ReactorForASGI",
    "ReactorForCGI",
    "ReactorForHTTP",
    "RedirectError",
    "RedirectRefusedError",
    "RenderResult",
    "Request",
    "RequestParser",
    "Resource",
    "Response",
    "ResponseNeverReceivedError",
    "ResponseStateError",
    "ResponseTooLargeError",
    "ReverseProxyResource",
    "ServerLimits",
    "Session",
    "SessionStore",
    "Site",
    "StreamResetError",
    "SwitchingRequest",
    "TooManyRedirectsError",
    "UploadedFile",
    "VirtualHosts",
    "WSGIResource",
    "WebSocket",
    "WebSocketClosedError",
    "WebSocketHandler",
    "WebSocketResource",
    "cgi_environment",
    "check_preconditions",
    "combined_log_line",
    "encode_urlencoded",
    "error_page",
    "escape",
    "evaluate_preconditions",
    "format_http_date",
    "format_set_cookie",
    "handles",
    "hop_by_hop_fields",
    "if_range_allows",
    "load_app",
    "make_etag",
    "multipart_boundary",
    "parse_basic_credentials",
    "parse_cookie_header",
    "parse_etags",
    "parse_http_date",
    "parse_multipart",
    "parse_range",
    "parse_urlencoded",
    "plan_multipart",
    "render_directory_listing",
    "render_error_page",
    "request_host",
    "unsatisfiable_content_range",
    "validate_header_name",
    "validate_header_value",
    "walk",
    "websocket_accept",
]
