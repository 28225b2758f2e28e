"""Authentication apart from protocols and from storage.

Four roles, each ignorant of the others' insides:

* a **protocol** receives credentials (``UsernamePassword``, ``CramMD5``,
  ``APOP``, ``HTTPDigest``, ``SSHPublicKey``, ``Anonymous``, ``BearerToken``)
  and calls ``Portal.login(credentials, mind, *interfaces)``;
* a **checker** verifies credentials and names the avatar:
  ``InMemoryChecker``, ``HtpasswdChecker`` (bcrypt, argon2, scrypt),
  ``PAMChecker`` (the system's accounts), ``AnonymousChecker``,
  ``InMemoryTokenChecker``, ``AuthorizedKeysChecker`` (SSH keys);
* a **realm** (``Realm``) turns the avatar id into the backend object;
* **deployment** ties them together: ``Portal(realm, checkers, clock=reactor)``,
  or ``checker_from_string`` for ``--auth`` strings.

Every portal counts failures per user name and per client address and holds
failed answers back for a growing delay (``LoginLimiter``), and logs every
attempt without secrets (``AuditLog``). Password hashing lives in
``hash_password``/``verify_password``; ``HtpasswdFile`` reads and writes
password files (``torsion passwd`` uses it).
"""

from torsion.cred._audit import AuditLog
from torsion.cred._checkers import AnonymousChecker, InMemoryChecker, InMemoryTokenChecker
from torsion.cred._credentials import (
    APOP,
    Anonymous,
    BearerToken,
    ChallengeResponse,
    CramMD5,
    HTTPDigest,
    SSHPublicKey,
    UsernamePassword,
    apop_challenge,
    apop_digest,
    cram_md5_challenge,
    cram_md5_response,
    http_digest_response,
)
from torsion.cred._hashes import (
    DEFAULT_SCHEME,
    LEGACY_SCHEMES,
    SCHEMES,
    check_hash,
    hash_password,
    identify_hash,
    verify_password,
)
from torsion.cred._htpasswd import HtpasswdChecker, HtpasswdEntry, HtpasswdFile
from torsion.cred._limiter import LoginLimiter
from torsion.cred._pam import PAMChecker, pam_available
from torsion.cred._portal import ANONYMOUS, Checker, Login, Portal, Realm
from torsion.cred._sshkeys import (
    AuthorizedKey,
    AuthorizedKeysChecker,
    parse_authorized_key,
    parse_authorized_keys,
    verify_signature,
)
from torsion.cred._strings import AUTH_STRING_HELP, checker_from_string
from torsion.errors import (
    AuthStringError,
    LoginError,
    PasswordFileError,
    PasswordHashError,
    UnauthorizedLogin,
    UnhandledCredentials,
)

__all__ = [
    "ANONYMOUS",
    "APOP",
    "AUTH_STRING_HELP",
    "DEFAULT_SCHEME",
    "LEGACY_SCHEMES",
    "SCHEMES",
    "Anonymous",
    "AnonymousChecker",
    "AuditLog",
    "AuthStringError",
    "AuthorizedKey",
    "AuthorizedKeysChecker",
    "BearerToken",
    "ChallengeResponse",
    "Checker",
    "CramMD5",
    "HTTPDigest",
    "HtpasswdChecker",
    "HtpasswdEntry",
    "HtpasswdFile",
    "InMemoryChecker",
    "InMemoryTokenChecker",
    "Login",
    "LoginError",
    "LoginLimiter",
    "PAMChecker",
    "PasswordFileError",
    "PasswordHashError",
    "Portal",
    "Realm",
    "SSHPublicKey",
    "UnauthorizedLogin",
    "UnhandledCredentials",
    "UsernamePassword",
    "apop_challenge",
    "apop_digest",
    "check_hash",
    "checker_from_string",
    "cram_md5_challenge",
    "cram_md5_response",
    "hash_password",
    "http_digest_response",
    "identify_hash",
    "pam_available",
    "parse_authorized_key",
    "parse_authorized_keys",
    "verify_password",
    "verify_signature",
]
