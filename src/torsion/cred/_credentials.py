"""Credentials: what a client presents to log in, one class per kind.

A protocol builds the credentials it received and hands them to a
``Portal``; the portal picks the checkers by the credentials' type. Classes:

* ``UsernamePassword``: a name and a password sent as such (POP3 ``USER``/
  ``PASS``, HTTP Basic, SMTP ``AUTH PLAIN``...).
* ``ChallengeResponse`` and its kinds ``CramMD5``, ``APOP`` and
  ``HTTPDigest``: protocols that never send the password, only proof that the
  client knows it. The checker must hold the stored secret itself (an
  in-memory checker does; a file of one-way hashes cannot) and asks the
  credentials whether it fits.
* ``SSHPublicKey``: a public key blob, and when the client proves it holds
  the private key, the signature and the data it signed (RFC 4252 section 7).
* ``Anonymous`` and ``BearerToken``.

Secrets never show in ``repr()``, so credentials may be logged by mistake
without leaking them.
"""

from __future__ import annotations

import abc
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

__all__ = [
    "APOP",
    "Anonymous",
    "BearerToken",
    "ChallengeResponse",
    "CramMD5",
    "HTTPDigest",
    "SSHPublicKey",
    "UsernamePassword",
    "apop_challenge",
    "apop_digest",
    "cram_md5_challenge",
    "cram_md5_response",
    "http_digest_response",
]


def _same(a: str | bytes, b: str | bytes) -> bool:
    """Compare two secrets in time that depends on neither's content nor length.

    ``hmac.compare_digest`` returns at once when the lengths differ, so both
    sides are hashed to one length first.
    """
    a_bytes = a.encode() if isinstance(a, str) else a
    b_bytes = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(hashlib.sha256(a_bytes).digest(), hashlib.sha256(b_bytes).digest())


@dataclass(frozen=True, slots=True, eq=False)
class UsernamePassword:
    """A user name and the password, as the client sent them.

    Attributes:
        username: The name.
        password: The password (not shown by ``repr``).
    """

    username: str
    password: str = field(repr=False)

    def check_password(self, password: str) -> bool:
        """Return whether ``password`` is the one sent, in constant time."""
        return _same(self.password, password)


class ChallengeResponse(abc.ABC):
    """Proof of a secret without the secret: the checker holds it and asks.

    Subclasses say how their proof is computed. A checker that holds the
    user's secret (in clear, or in the form the protocol needs) calls
    ``check_secret(secret)``; one that holds only one-way hashes cannot take
    these credentials.

    Attributes:
        username: Who claims to be logging in.
    """

    __slots__ = ()

    username: str

    @abc.abstractmethod
    def check_secret(self, secret: str) -> bool:
        """Return whether the client's proof was made with ``secret``."""


def cram_md5_challenge(host: str) -> bytes:
    """Return a fresh CRAM-MD5 challenge, ``<random.random@host>`` (RFC 2195).

    The challenge must never repeat, or a recorded response could be replayed.
    """
    return f"<{secrets.randbelow(2**31)}.{secrets.token_hex(8)}@{host}>".encode()


def cram_md5_response(secret: str, challenge: bytes) -> str:
    """Return the CRAM-MD5 response to ``challenge``: HMAC-MD5 in lowercase hex."""
    return hmac.new(secret.encode(), challenge, hashlib.md5).hexdigest()


@dataclass(frozen=True, slots=True, eq=False)
class CramMD5(ChallengeResponse):
    """A CRAM-MD5 login (RFC 2195), used by SMTP, IMAP and POP3 ``AUTH``.

    Attributes:
        username: The name the client gave.
        challenge: The challenge the server sent.
        response: The client's answer, HMAC-MD5 of the challenge keyed with
            the secret, in hex.
    """

    username: str
    challenge: bytes
    response: str

    def check_secret(self, secret: str) -> bool:
        """Return whether the response is the one ``secret`` gives."""
        return _same(cram_md5_response(secret, self.challenge), self.response.lower())


def apop_challenge(host: str) -> bytes:
    """Return a fresh APOP time stamp for a POP3 greeting (RFC 1939 section 7)."""
    return f"<{secrets.randbelow(2**31)}.{secrets.token_hex(8)}@{host}>".encode()


def apop_digest(secret: str, timestamp: bytes) -> str:
    """Return the APOP digest: MD5 of the greeting's time stamp then the secret, in hex."""
    return hashlib.md5(timestamp + secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True, eq=False)
class APOP(ChallengeResponse):
    """A POP3 ``APOP`` login (RFC 1939 section 7).

    Attributes:
        username: The name the client gave.
        timestamp: The time stamp in the server's greeting, brackets included.
        digest: The client's MD5 digest, in hex.
    """

    username: str
    timestamp: bytes
    digest: str

    def check_secret(self, secret: str) -> bool:
        """Return whether the digest is the one ``secret`` gives."""
        return _same(apop_digest(secret, self.timestamp), self.digest.lower())


_DIGEST_HASHES = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}


def _digest_hash(algorithm: str) -> tuple[str, bool]:
    """The hashlib name and whether it is a ``-sess`` variant, for an RFC 7616 name."""
    upper = algorithm.upper()
    session = upper.endswith("-SESS")
    name = _DIGEST_HASHES.get(upper.removesuffix("-SESS"))
    if name is None:
        raise ValueError(f"unknown HTTP Digest algorithm {algorithm!r}")
    return name, session


def http_digest_response(
    *,
    username: str,
    secret: str,
    realm: str,
    nonce: str,
    method: str,
    uri: str,
    algorithm: str = "SHA-256",
    qop: str | None = "auth",
    nc: str = "00000001",
    cnonce: str = "",
) -> str:
    """Return the ``response`` value of an HTTP Digest authorization (RFC 7616 section 3.4.1).

    Only ``qop=auth`` (or none, RFC 2069's form) is computed; ``auth-int``
    would need the request body.

    Raises:
        ValueError: ``algorithm`` or ``qop`` is not one of those.
    """
    name, session = _digest_hash(algorithm)

    def h(text: str) -> str:
        return hashlib.new(name, text.encode()).hexdigest()

    ha1 = h(f"{username}:{realm}:{secret}")
    if session:
        ha1 = h(f"{ha1}:{nonce}:{cnonce}")
    ha2 = h(f"{method}:{uri}")
    if qop is None:
        return h(f"{ha1}:{nonce}:{ha2}")
    if qop != "auth":
        raise ValueError(f"unsupported qop {qop!r}")
    return h(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


@dataclass(frozen=True, slots=True, eq=False)
class HTTPDigest(ChallengeResponse):
    """An HTTP Digest authorization (RFC 7616), its fields as the client sent them.

    Checking that the nonce is one the server issued, still fresh and not
    replayed (``nc``) is the HTTP server's work; this checks the response.

    Attributes:
        username: The name.
        realm: The protection space.
        nonce: The server's nonce.
        method: The request's method.
        uri: The ``uri`` field (the request target).
        response: The client's response, in hex.
        algorithm: ``MD5``, ``SHA-256``, ``SHA-512-256``, or one of them with ``-sess``.
        qop: ``auth``, or None for RFC 2069 clients.
        nc: The nonce count, 8 hex digits.
        cnonce: The client's nonce.
    """

    username: str
    realm: str
    nonce: str
    method: str
    uri: str
    response: str
    algorithm: str = "MD5"
    qop: str | None = "auth"
    nc: str = "00000001"
    cnonce: str = ""

    def check_secret(self, secret: str) -> bool:
        """Return whether the response is the one ``secret`` gives."""
        try:
            expected = http_digest_response(
                username=self.username,
                secret=secret,
                realm=self.realm,
                nonce=self.nonce,
                method=self.method,
                uri=self.uri,
                algorithm=self.algorithm,
                qop=self.qop,
                nc=self.nc,
                cnonce=self.cnonce,
            )
        except ValueError:
            # An algorithm or qop we do not compute: still spend the same
            # work, so that the answer's timing says nothing.
            _same(secret, self.response)
            return False
        return _same(expected, self.response.lower())


@dataclass(frozen=True, slots=True, eq=False)
class SSHPublicKey:
    """An SSH ``publickey`` login (RFC 4252 section 7).

    Without ``signature`` it is the client's question whether the key would
    be accepted; a portal refuses it (ask the checker's ``key_is_authorized``
    to answer the question), and accepts only a signed request.

    Attributes:
        username: The user name from the request.
        algorithm: The public key algorithm named in the request
            (``ssh-ed25519``, ``ecdsa-sha2-nistp256``, ``rsa-sha2-256``...).
        blob: The public key, in SSH wire format.
        signed_data: What the signature covers: the session identifier and
            the request, as RFC 4252 section 7 lays them out.
        signature: The signature blob, in SSH wire format.
    """

    username: str
    algorithm: str
    blob: bytes = field(repr=False)
    signed_data: bytes | None = field(default=None, repr=False)
    signature: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Anonymous:
    """No credentials at all: the client asks to be let in as nobody."""


@dataclass(frozen=True, slots=True, eq=False)
class BearerToken:
    """A bearer token (an API key, an OAuth 2.0 access token, RFC 6750).

    Attributes:
        token: The token (not shown by ``repr``).
    """

    token: str = field(repr=False)
