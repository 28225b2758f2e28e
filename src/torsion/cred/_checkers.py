"""Checkers that need no files: secrets held in memory, anonymous logins, tokens.

Each compares in constant time, and each spends the same work on an unknown
user (or token) as on a known one with a wrong secret, so that neither the
answer nor its timing tells whether a user exists.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from typing import ClassVar

from torsion.cred._credentials import (
    Anonymous,
    BearerToken,
    ChallengeResponse,
    UsernamePassword,
)
from torsion.cred._portal import ANONYMOUS
from torsion.defer import Deferred, fail, succeed
from torsion.errors import UnauthorizedLogin
from torsion.internet import Address

__all__ = ["AnonymousChecker", "InMemoryChecker", "InMemoryTokenChecker"]


class InMemoryChecker:
    """Checks user names and secrets kept in memory, in clear.

    Because it holds the secrets themselves, it takes challenge-response
    credentials too (CRAM-MD5, APOP, HTTP Digest), which a file of one-way
    hashes cannot. Meant for tests, examples and small deployments; the
    avatar id is the user name.

    Args:
        users: User name to secret.
    """

    credential_types: ClassVar[tuple[type, ...]] = (UsernamePassword, ChallengeResponse)

    def __init__(self, users: Mapping[str, str] | None = None) -> None:
        self._users: dict[str, str] = {}
        # Checked against when the user is unknown, so that the same work is done.
        self._dummy = secrets.token_urlsafe(16)
        for username, secret in (users or {}).items():
            self.add_user(username, secret)

    def add_user(self, username: str, secret: str) -> None:
        """Add a user, or change a user's secret."""
        if not username:
            raise ValueError("a user name cannot be empty")
        self._users[username] = secret

    def remove_user(self, username: str) -> None:
        """Remove a user (nothing happens if there is none)."""
        self._users.pop(username, None)

    def request_avatar_id(
        self, credentials: UsernamePassword | ChallengeResponse, client: Address | None, /
    ) -> Deferred[str]:
        """Check the secret; fire with the user name, or fail with ``UnauthorizedLogin``."""
        username = credentials.username
        secret = self._users.get(username) if username else None
        stored = self._dummy if secret is None else secret
        if isinstance(credentials, UsernamePassword):
            matched = credentials.check_password(stored)
        else:
            matched = credentials.check_secret(stored)
        if secret is None:
            return fail(UnauthorizedLogin("unknown user"))
        if not matched:
            return fail(UnauthorizedLogin("wrong secret"))
        return succeed(username)

    def __repr__(self) -> str:
        return f"<InMemoryChecker {len(self._users)} users>"


class AnonymousChecker:
    """Lets anonymous logins in, as ``ANONYMOUS`` (the empty avatar id)."""

    credential_types: ClassVar[tuple[type, ...]] = (Anonymous,)

    def request_avatar_id(
        self, credentials: Anonymous, client: Address | None, /
    ) -> Deferred[str]:
        """Fire with ``ANONYMOUS``."""
        return succeed(ANONYMOUS)

    def __repr__(self) -> str:
        return "<AnonymousChecker>"


def _token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class InMemoryTokenChecker:
    """Checks bearer tokens kept in memory; each names its avatar.

    Tokens are kept as SHA-256 digests and looked up by digest, so that the
    lookup's timing depends on no prefix of a real token, and a dump of the
    process's memory shows no token.

    Args:
        tokens: Token to avatar id.
    """

    credential_types: ClassVar[tuple[type, ...]] = (BearerToken,)

    def __init__(self, tokens: Mapping[str, str] | None = None) -> None:
        self._tokens: dict[bytes, str] = {}
        for token, avatar_id in (tokens or {}).items():
            self.add_token(token, avatar_id)

    def add_token(self, token: str, avatar_id: str) -> None:
        """Accept ``token`` as ``avatar_id``."""
        if len(token) < 16:
            raise ValueError("a bearer token must have at least 16 characters")
        self._tokens[_token_digest(token)] = avatar_id

    def revoke(self, token: str) -> None:
        """Stop accepting ``token``."""
        self._tokens.pop(_token_digest(token), None)

    def request_avatar_id(
        self, credentials: BearerToken, client: Address | None, /
    ) -> Deferred[str]:
        """Fire with the token's avatar id, or fail with ``UnauthorizedLogin``."""
        digest = _token_digest(credentials.token)
        avatar_id = self._tokens.get(digest)
        if avatar_id is None:
            return fail(UnauthorizedLogin("unknown token"))
        return succeed(avatar_id)

    def __repr__(self) -> str:
        return f"<InMemoryTokenChecker {len(self._tokens)} tokens>"
