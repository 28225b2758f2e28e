"""The PROXY protocol (HAProxy's, versions 1 and 2), all of it.

``torsion.protocols`` exports what a server or client needs
(``ProxyProtocolFactory``, the endpoints, ``ProxyHeader``); the codec's
details are here: the command and TLV numbers, the builders and the parser.
"""

from torsion.protocols.haproxy._header import (
    DEFAULT_MAX_LENGTH,
    V1_MAX_LENGTH,
    V2_SIGNATURE,
    ClientTLSInfo,
    Command,
    HeaderAddress,
    ProxyHeader,
    ProxyHeaderParser,
    SSLSubtype,
    TLVType,
    build_v1,
    build_v2,
    crc32c,
    parse_header,
)
from torsion.protocols.haproxy._protocol import (
    DEFAULT_TIMEOUT,
    ProxiedTransport,
    ProxyProtocolClientEndpoint,
    ProxyProtocolFactory,
    ProxyProtocolServerEndpoint,
    TrustedNetworks,
)

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "DEFAULT_TIMEOUT",
    "V1_MAX_LENGTH",
    "V2_SIGNATURE",
    "ClientTLSInfo",
    "Command",
    "HeaderAddress",
    "ProxiedTransport",
    "ProxyHeader",
    "ProxyHeaderParser",
    "ProxyProtocolClientEndpoint",
    "ProxyProtocolFactory",
    "ProxyProtocolServerEndpoint",
    "SSLSubtype",
    "TLVType",
    "TrustedNetworks",
    "build_v1",
    "build_v2",
    "crc32c",
    "parse_header",
]
