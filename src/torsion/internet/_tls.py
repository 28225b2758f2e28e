"""TLS: secure contexts from certificate files, and TLS listening and connecting.

``client_context`` and ``server_tls`` build ``ssl.SSLContext`` objects with
secure defaults (TLS 1.2 or later, no compression, no renegotiation; a client
checks the server's certificate and host name against the system's trust
store unless given its own CA). A file that cannot be used fails at once with
a ``TLSConfigError`` naming it, never at the first handshake.

``ServerTLS`` (what ``server_tls`` returns) serves several names from one
port, choosing the certificate by the name the client asks for (SNI, RFC
6066 section 3), and re-reads its files on ``reload()`` without a restart.

``listen_tls`` and ``connect_tls`` are ``listen_tcp`` and ``connect_tcp`` with
a handshake before the protocol sees the connection: the factory is called,
and ``connection_made`` runs, only once the handshake succeeded. A handshake
that fails (garbage, a wrong certificate, a silent client past
``handshake_timeout``) closes that connection quietly: no protocol, no
traceback. ``tls_info`` reads what was negotiated.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias, TypeVar

from torsion.errors import TLSConfigError
from torsion.internet._address import Address
from torsion.internet._connector import Connector
from torsion.internet._listener import Listener
from torsion.internet._protocol import ProtocolFactory
from torsion.internet._tcp import (
    TCPListeningPort,
    bind_tcp,
    check_bind_address,
    connect_stream,
    destination,
)

__all__ = [
    "ReactorTLS",
    "ServerTLS",
    "StrPath",
    "TLSInfo",
    "client_context",
    "connect_tls",
    "listen_tls",
    "server_tls",
    "tls_info",
]

P = TypeVar("P", bound=asyncio.BaseProtocol)

StrPath: TypeAlias = str | os.PathLike[str]
"""A file name, as a string or a path object."""

DEFAULT_HANDSHAKE_TIMEOUT = 30.0

# Far beyond any real certificate chain or key: a bigger file is a mistake.
_MAX_PEM_BYTES = 1 << 20

_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)
# PKCS#8 ("PRIVATE KEY") and the older per-algorithm forms ("RSA PRIVATE KEY", ...).
_PRIVATE_KEY = re.compile(rb"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")
# RFC 5958's encrypted PKCS#8, and RFC 1421's headers on the older forms.
_ENCRYPTED_KEY = re.compile(rb"-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: *4, *ENCRYPTED")


class ReactorTLS(Protocol):
    """What listens for and makes TLS connections."""

    def listen_tls(
        self,
        port: int,
        factory: ProtocolFactory,
        context: ssl.SSLContext | ServerTLS,
        *,
        interface: str = "",
        backlog: int = 100,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        reuse_port: bool = False,
        keepalive: bool = False,
    ) -> TCPListeningPort:
        """Listen for TLS on ``port``; each connection gets ``factory(peer_address)``."""
        ...

    def connect_tls(
        self,
        host: str,
        port: int,
        factory: Callable[[Address], P],
        *,
        context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        timeout: float | None = 30.0,
        bind_address: tuple[str, int] | None = None,
        keepalive: bool = False,
    ) -> Connector[P]:
        """Connect over TLS to ``host:port``; await the connector for the protocol."""
        ...


# -- contexts -------------------------------------------------------------------------


def client_context(
    *,
    ca_file: StrPath | None = None,
    ca_data: str | bytes | None = None,
    cert_file: StrPath | None = None,
    key_file: StrPath | None = None,
    alpn: Sequence[str] = (),
    verify: bool = True,
) -> ssl.SSLContext:
    """Build the TLS settings for connecting to servers.

    The server's certificate must chain to a trusted CA and name the host
    connected to (``connect_tls`` checks the host name, or the IP address).

    Args:
        ca_file: A PEM file of the CA certificates to trust instead of the
            system's trust store.
        ca_data: The same as text (PEM) or bytes (DER), instead or as well.
        cert_file: A PEM file holding this client's certificate (and any
            intermediate certificates after it), for servers that ask for one
            (mutual TLS); with the private key too unless ``key_file`` is given.
        key_file: A PEM file holding the certificate's private key
            (unencrypted).
        alpn: Application protocols to offer, most preferred first (RFC 7301),
            e.g. ``("h2", "http/1.1")``.
        verify: False turns off every check of the server's certificate: the
            connection is then encrypted but the server unauthenticated, open
            to anyone in the middle. Only for tests and trusted networks.

    Raises:
        TLSConfigError: A file is missing, unreadable or not what it should be.
    """
    _check_alpn(alpn)
    if key_file is not None and cert_file is None:
        raise TLSConfigError("key_file was given without cert_file")
    # PROTOCOL_TLS_CLIENT starts with certificate and host name checks on.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _harden(context)
    if ca_file is None and ca_data is None:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if ca_file is not None:
        _load_ca(context, os.fspath(ca_file))
    if ca_data is not None:
        try:
            context.load_verify_locations(cadata=ca_data)
        except (ssl.SSLError, ValueError) as exc:
            raise TLSConfigError(f"ca_data holds no usable CA certificate: {exc}") from exc
    if cert_file is not None:
        key = os.fspath(key_file) if key_file is not None else None
        _load_chain(context, os.fspath(cert_file), key, None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def server_tls(
    cert_file: StrPath,
    key_file: StrPath | None = None,
    *,
    chain_file: StrPath | None = None,
    sni_dir: StrPath | None = None,
    alpn: Sequence[str] = (),
    client_ca_file: StrPath | None = None,
    require_client_cert: bool = False,
) -> ServerTLS:
    """Build the TLS settings for serving; see ``ServerTLS`` for the arguments.

    Pass the result (or its ``context``) to ``listen_tls`` or
    ``Protocol.start_tls``, and call its ``reload()`` when the files changed.

    Raises:
        TLSConfigError: A file is missing, unreadable or not what it should be.
    """
    return ServerTLS(
        cert_file,
        key_file,
        chain_file=chain_file,
        sni_dir=sni_dir,
        alpn=alpn,
        client_ca_file=client_ca_file,
        require_client_cert=require_client_cert,
    )


class ServerTLS:
    """A server's TLS settings: a default certificate, one per name, and reloading.

    Every file is read when it is built and again on ``reload()``;
    connections made afterwards use what was read, while those already
    established carry on with what they began with.

    The ``sni_dir`` layout: one PEM file per host name, named after it with
    ``.pem`` added (``www.example.com.pem``; an internationalised name in its
    ``xn--`` form), holding the certificate, then its intermediate
    certificates, then its unencrypted private key. Other files, and names
    starting with a dot, are ignored. Names are matched whole, ignoring
    letter case, without wildcards: a client asking for a name with no
    file, or for none, gets the default certificate.

    Args:
        cert_file: The default certificate (PEM), with its intermediate
            certificates after it, and its private key as well unless
            ``key_file`` is given.
        key_file: The default certificate's private key (PEM, unencrypted).
        chain_file: Intermediate certificates (PEM) to send after the default
            certificate, when ``cert_file`` does not hold them.
        sni_dir: A directory of certificates by host name (layout above).
        alpn: Application protocols the server speaks, preferred first (RFC
            7301); the first the client offers too is chosen, and a client
            offering none of them connects without one.
        client_ca_file: CA certificates (PEM) that sign client certificates.
            Clients are then asked for one; a certificate that does not
            verify fails the handshake.
        require_client_cert: Refuse clients that send no certificate (needs
            ``client_ca_file``).

    Attributes:
        context: The ``ssl.SSLContext`` to serve with. It stays the same
            object across reloads: each handshake is switched to the
            certificates current at that moment.

    Raises:
        TLSConfigError: A file is missing, unreadable or not what it should
            be; or ``require_client_cert`` without ``client_ca_file``.
    """

    def __init__(
        self,
        cert_file: StrPath,
        key_file: StrPath | None = None,
        *,
        chain_file: StrPath | None = None,
        sni_dir: StrPath | None = None,
        alpn: Sequence[str] = (),
        client_ca_file: StrPath | None = None,
        require_client_cert: bool = False,
    ) -> None:
        _check_alpn(alpn)
        if require_client_cert and client_ca_file is None:
            raise TLSConfigError(
                "require_client_cert needs client_ca_file, the CA that signs client certificates"
            )
        self._cert_file = os.fspath(cert_file)
        self._key_file = os.fspath(key_file) if key_file is not None else None
        self._chain_file = os.fspath(chain_file) if chain_file is not None else None
        self._sni_dir = os.fspath(sni_dir) if sni_dir is not None else None
        self._alpn = tuple(alpn)
        self._client_ca_file = os.fspath(client_ca_file) if client_ca_file is not None else None
        self._require_client_cert = require_client_cert
        # One attribute, replaced whole, so that a handshake never sees half a reload.
        self._current = self._load()
        self.context: ssl.SSLContext = self._current[0]
        self.context.sni_callback = self._choose

    @property
    def names(self) -> tuple[str, ...]:
        """The host names with their own certificate in ``sni_dir``, sorted."""
        return tuple(sorted(self._current[1]))

    def reload(self) -> None:
        """Read every file again; new handshakes use what was read.

        Blocks while it reads (certificate files are small). Established
        connections are not touched.

        Raises:
            TLSConfigError: A file is now missing or wrong; nothing changed,
                the certificates read before stay in use.
        """
        self._current = self._load()

    def _choose(
        self, ssl_object: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        # Called by OpenSSL during every handshake, with the name the client
        # asked for (None if it sent none); must not raise.
        default, by_name = self._current
        chosen = by_name.get(server_name.lower(), default) if server_name else default
        if ssl_object.context is not chosen:
            ssl_object.context = chosen

    def _load(self) -> tuple[ssl.SSLContext, dict[str, ssl.SSLContext]]:
        client_ca: str | None = None
        if self._client_ca_file is not None:
            client_ca = _read_ca(self._client_ca_file, "client CA")
        default = self._build(self._cert_file, self._key_file, self._chain_file, client_ca)
        by_name = {
            name: self._build(path, None, None, client_ca)
            for name, path in (_sni_files(self._sni_dir) if self._sni_dir is not None else [])
        }
        return default, by_name

    def _build(
        self, cert_file: str, key_file: str | None, chain_file: str | None, client_ca: str | None
    ) -> ssl.SSLContext:
        # Every context gets every setting: the one a handshake is switched to
        # is the one that selects ALPN and verifies the client's certificate.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        _harden(context)
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        _load_chain(context, cert_file, key_file, chain_file)
        if client_ca is not None:
            try:
                context.load_verify_locations(cadata=client_ca)
            except ssl.SSLError as exc:
                problem = f"cannot load the client CA certificates ({exc.reason})"
                raise TLSConfigError(problem, path=self._client_ca_file) from exc
            context.verify_mode = (
                ssl.CERT_REQUIRED if self._require_client_cert else ssl.CERT_OPTIONAL
            )
        if self._alpn:
            context.set_alpn_protocols(list(self._alpn))
        return context

    def __repr__(self) -> str:
        names = f" and {len(self._current[1])} names" if self._current[1] else ""
        return f"<ServerTLS {self._cert_file}{names}>"


def _harden(context: ssl.SSLContext) -> None:
    # TLS 1.0 and 1.1 are deprecated (RFC 8996); compression leaks secrets
    # (CRIME); renegotiation lets a client make the server work at will.
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION


def _check_alpn(alpn: Sequence[str]) -> None:
    if isinstance(alpn, str):
        raise TypeError(f"alpn takes a sequence of protocol names, not the string {alpn!r}")
    for name in alpn:
        # RFC 7301 section 3.1: "Empty strings MUST NOT be included", at most 255 bytes.
        if not 1 <= len(name.encode()) <= 255:
            raise TLSConfigError(f"ALPN protocol names take 1 to 255 bytes, not {name!r}")


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as file:
            data = file.read(_MAX_PEM_BYTES + 1)
    except FileNotFoundError as exc:
        raise TLSConfigError(f"{what} file not found", path=path) from exc
    except IsADirectoryError as exc:
        raise TLSConfigError(f"the {what} file is a directory", path=path) from exc
    except OSError as exc:
        problem = f"cannot read the {what} file: {exc.strerror or exc}"
        raise TLSConfigError(problem, path=path) from exc
    if len(data) > _MAX_PEM_BYTES:
        raise TLSConfigError(f"the {what} file is over {_MAX_PEM_BYTES} bytes", path=path)
    return data


def _read_ca(path: str, what: str) -> str:
    certificates = _CERTIFICATE.findall(_read(path, what))
    if not certificates:
        raise TLSConfigError(f"no PEM certificate in the {what} file", path=path)
    return "\n".join(c.decode("ascii", "replace") for c in certificates) + "\n"


def _load_ca(context: ssl.SSLContext, path: str) -> None:
    try:
        context.load_verify_locations(cadata=_read_ca(path, "CA"))
    except ssl.SSLError as exc:
        raise TLSConfigError(f"cannot load the CA certificates ({exc.reason})", path=path) from exc


def _load_chain(
    context: ssl.SSLContext, cert_file: str, key_file: str | None, chain_file: str | None
) -> None:
    """Load a certificate, its chain and its key, checking each file first to name it."""
    cert_pem = _read(cert_file, "certificate")
    certificates = _CERTIFICATE.findall(cert_pem)
    if not certificates:
        raise TLSConfigError("no PEM certificate in the certificate file", path=cert_file)
    key_path = cert_file if key_file is None else key_file
    key_pem = cert_pem if key_file is None else _read(key_file, "private key")
    if _ENCRYPTED_KEY.search(key_pem):
        raise TLSConfigError(
            "the private key is encrypted; give it unencrypted (readable by the server only)",
            path=key_path,
        )
    if not _PRIVATE_KEY.search(key_pem):
        hint = " (pass key_file, or append the key to the certificate file)"
        hint = hint if key_file is None else ""
        raise TLSConfigError(f"no PEM private key in it{hint}", path=key_path)
    if chain_file is not None:
        chain = _CERTIFICATE.findall(_read(chain_file, "certificate chain"))
        if not chain:
            raise TLSConfigError("no PEM certificate in the chain file", path=chain_file)
        certificates += chain

    def no_password() -> str:
        # Never let OpenSSL prompt on the terminal (the checks above should
        # already have refused an encrypted key).
        raise TLSConfigError("the private key is encrypted", path=key_path)

    try:
        if chain_file is None:
            context.load_cert_chain(cert_file, key_path, password=no_password)
        else:
            # OpenSSL reads a chain from one file only: the leaf, then the rest.
            with tempfile.TemporaryDirectory() as scratch:
                combined = os.path.join(scratch, "chain.pem")
                with open(combined, "wb") as file:
                    file.write(b"\n".join(certificates) + b"\n")
                context.load_cert_chain(combined, key_path, password=no_password)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            problem = f"the private key in {key_path} does not match the certificate"
        else:
            problem = f"cannot load the certificate with the key in {key_path} ({exc.reason})"
        raise TLSConfigError(problem, path=cert_file) from exc
    except OSError as exc:  # A file vanished since it was read.
        raise TLSConfigError(f"cannot load the certificate: {exc}", path=cert_file) from exc


def _sni_files(directory: str) -> list[tuple[str, str]]:
    try:
        with os.scandir(directory) as entries:
            found = [
                (entry.name[: -len(".pem")].lower(), entry.path)
                for entry in entries
                if entry.name.endswith(".pem")
                and not entry.name.startswith(".")
                and entry.is_file()
            ]
    except FileNotFoundError as exc:
        raise TLSConfigError("SNI directory not found", path=directory) from exc
    except NotADirectoryError as exc:
        raise TLSConfigError("the SNI directory is not a directory", path=directory) from exc
    except OSError as exc:
        problem = f"cannot read the SNI directory: {exc.strerror or exc}"
        raise TLSConfigError(problem, path=directory) from exc
    found.sort()
    for (name, path), (other, other_path) in itertools.pairwise(found):
        if name == other:
            raise TLSConfigError(f"two files for {name!r}: {path} and {other_path}", path=path)
    return found


# -- what was negotiated ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSInfo:
    """What a TLS connection negotiated, as ``tls_info`` reports it.

    Attributes:
        version: The protocol version, e.g. "TLSv1.3".
        cipher: The cipher suite, e.g. "TLS_AES_256_GCM_SHA384".
        alpn: The application protocol agreed with ALPN, or None.
        peer_certificate: The other end's certificate as ``ssl`` decodes it
            (``subject``, ``subjectAltName``, ``notAfter``, ...), or None if
            it sent none or it was not verified.
        peer_certificate_der: The same certificate in DER, verified or not,
            or None if it sent none.
    """

    version: str
    cipher: str
    alpn: str | None
    peer_certificate: dict[str, Any] | None
    peer_certificate_der: bytes | None


def tls_info(transport: asyncio.BaseTransport) -> TLSInfo | None:
    """Return what a connection's TLS handshake negotiated (None if it is not TLS)."""
    ssl_object: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    cipher = ssl_object.cipher()
    return TLSInfo(
        version=ssl_object.version() or "",
        cipher=cipher[0] if cipher is not None else "",
        alpn=ssl_object.selected_alpn_protocol(),
        peer_certificate=ssl_object.getpeercert() or None,
        peer_certificate_der=ssl_object.getpeercert(binary_form=True),
    )


# -- listening and connecting ---------------------------------------------------------------


def listen_tls(
    loop: asyncio.AbstractEventLoop,
    port: int,
    factory: ProtocolFactory,
    context: ssl.SSLContext | ServerTLS,
    *,
    interface: str = "",
    backlog: int = 100,
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    reuse_port: bool = False,
    keepalive: bool = False,
    on_stopped: Callable[[Listener], object] | None = None,
) -> Listener:
    """Bind ``interface:port`` now and serve TLS on it.

    The factory is called, with the peer's address, once a connection's
    handshake has succeeded; failed handshakes are closed without a word.

    Args:
        loop: The loop that serves the connections.
        port: The port; 0 lets the system choose (see ``Listener.port``).
        factory: Called with each peer's address; returns its protocol, or
            None to refuse the connection.
        context: The server's TLS settings: a ``ServerTLS`` (see
            ``server_tls``) or a server-side ``ssl.SSLContext``.
        interface: The address to bind to ("" for every IPv4 interface).
        backlog: How many connections may wait to be accepted.
        handshake_timeout: Seconds a client has to complete the handshake
            before it is disconnected (None: asyncio's 60).
        reuse_port: Set ``SO_REUSEPORT`` (see ``listen_tcp``).
        keepalive: Set ``SO_KEEPALIVE`` on every connection (see ``listen_tcp``).
        on_stopped: Called with the Listener once it has stopped.

    Raises:
        CannotListenError: The address could not be bound.
        TLSConfigError: ``context`` is a client's.
    """
    ssl_context = context.context if isinstance(context, ServerTLS) else context
    if ssl_context.protocol == ssl.PROTOCOL_TLS_CLIENT:
        raise TLSConfigError("a client context cannot serve TLS: build one with server_tls()")
    sock = bind_tcp(interface, port, backlog, reuse_port=reuse_port, keepalive=keepalive)
    return Listener(
        loop,
        sock,
        factory,
        backlog=backlog,
        ssl_context=ssl_context,
        handshake_timeout=handshake_timeout,
        on_stopped=on_stopped,
    )


def connect_tls(
    loop: asyncio.AbstractEventLoop,
    resolve_all: Callable[[str], Awaitable[list[str]]],
    host: str,
    port: int,
    factory: Callable[[Address], P],
    *,
    context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    timeout: float | None = 30.0,
    bind_address: tuple[str, int] | None = None,
    keepalive: bool = False,
) -> Connector[P]:
    """Connect to ``host:port`` and run the TLS handshake before the protocol starts.

    Args:
        loop: The loop that runs the connection.
        resolve_all: Turns a host name into addresses (the reactor's resolver).
        host: A name or an IP address; its addresses are tried in turn.
        port: The port.
        factory: Called with the server's address; returns the protocol,
            whose ``connection_made`` runs once the handshake succeeded.
        context: The TLS settings; ``client_context()`` (the system's trust
            store) if None. Building one costs a read of the trust store:
            reuse one context for many connections.
        server_hostname: The name the certificate must carry, also sent as
            SNI; ``host`` if None (an IP address is then checked against the
            certificate's IP addresses, and not sent).
        timeout: Seconds for the whole attempt, lookup and handshake
            included; None waits as long as the system does.
        bind_address: The local ``(ip_address, port)`` to connect from.
        keepalive: Set ``SO_KEEPALIVE`` on the connection.

    Returns:
        A ``Connector``, as ``connect_tcp`` returns; a failed handshake fails
        it with ``ssl.SSLError`` (``ssl.SSLCertVerificationError`` for a
        certificate that does not verify or name the host).

    Raises:
        TLSConfigError: ``context`` is a server's.
        ValueError: ``bind_address`` does not hold an IP address.
    """
    if context is None:
        context = client_context()
    elif context.protocol == ssl.PROTOCOL_TLS_SERVER:
        raise TLSConfigError("a server context cannot connect: build one with client_context()")
    check_bind_address(bind_address)
    attempt = connect_stream(
        loop,
        resolve_all,
        host,
        port,
        factory,
        limit=timeout,
        bind_address=bind_address,
        keepalive=keepalive,
        tls=context,
        server_hostname=server_hostname if server_hostname is not None else host,
    )
    return Connector.start(loop, attempt, destination(host, port))
