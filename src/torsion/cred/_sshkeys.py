"""SSH public keys: authorized_keys files, signature checks, and their checker.

``parse_authorized_keys`` reads OpenSSH's ``authorized_keys`` format
(sshd(8), "AUTHORIZED_KEYS FILE FORMAT"): ``[options] type base64 [comment]``
per line, options such as ``from="10.0.0.0/8"``, ``command="..."``,
``restrict``, ``no-pty``, kept in order on each ``AuthorizedKey`` for the
SSH server to apply. ``verify_signature`` checks an RFC 4252 ``publickey``
signature with the ``cryptography`` library: ``ssh-ed25519``,
``ecdsa-sha2-nistp256/384/521`` and RSA keys signing with ``rsa-sha2-256``
or ``rsa-sha2-512`` (RFC 8332); ``ssh-rsa`` signatures (SHA-1) are refused
unless allowed. ``AuthorizedKeysChecker`` finds a user's file, the key's
line in it, applies ``from=`` and ``expiry-time=``, and checks the signature.

``cryptography`` is imported only when a key is parsed or a signature
checked; it comes with the ``cred`` extra.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import ipaddress
import logging
import os
import pwd
import stat
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from torsion.cred._credentials import SSHPublicKey
from torsion.defer import Deferred
from torsion.errors import PasswordFileError, UnauthorizedLogin
from torsion.internet import Address, IPv4Address, IPv6Address, ThreadRunner

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

__all__ = [
    "KEY_TYPES",
    "AuthorizedKey",
    "AuthorizedKeysChecker",
    "parse_authorized_key",
    "parse_authorized_keys",
    "verify_signature",
]

_log = logging.getLogger("torsion.cred")

KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "ssh-rsa",
    }
)
"""The key types this module can check signatures of."""

# Types sshd knows that we read (so the line is not an error) but never accept.
_OTHER_KEY_TYPES = frozenset(
    {
        "ssh-dss",
        "sk-ecdsa-sha2-nistp256@openssh.com",
        "sk-ssh-ed25519@openssh.com",
    }
)
_ECDSA_HASHES = {
    "ecdsa-sha2-nistp256": "SHA256",
    "ecdsa-sha2-nistp384": "SHA384",
    "ecdsa-sha2-nistp521": "SHA512",
}
_RSA_SIGNATURES = {"rsa-sha2-256": "SHA256", "rsa-sha2-512": "SHA512", "ssh-rsa": "SHA1"}

MAX_KEYS_FILE = 1 * 2**20
MAX_LINE = 16384


class _WireError(ValueError):
    """Bytes that are not the SSH wire format expected."""


class _Reader:
    """Reads SSH wire-format fields (RFC 4251 section 5)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def string(self) -> bytes:
        if self._at + 4 > len(self._data):
            raise _WireError("truncated length")
        length = int.from_bytes(self._data[self._at : self._at + 4], "big")
        start = self._at + 4
        if start + length > len(self._data):
            raise _WireError("truncated string")
        self._at = start + length
        return self._data[start : self._at]

    def mpint(self) -> int:
        return int.from_bytes(self.string(), "big", signed=True)

    def done(self) -> None:
        if self._at != len(self._data):
            raise _WireError("trailing bytes")


@dataclass(frozen=True, slots=True)
class AuthorizedKey:
    """One line of an authorized_keys file.

    Attributes:
        key_type: The key's type (``ssh-ed25519``...).
        blob: The public key, in SSH wire format.
        comment: The comment after the key ("" if none).
        options: The options before the key, in order, each ``(name, value)``
            with value None for a flag (``restrict``, ``no-pty``); names are
            lowercase.
        line: The line number in its file.
    """

    key_type: str
    blob: bytes = field(repr=False)
    comment: str = ""
    options: tuple[tuple[str, str | None], ...] = ()
    line: int = 0

    def option(self, name: str) -> str | None:
        """Return the value of the first option ``name`` (None if absent or a flag)."""
        for key, value in self.options:
            if key == name:
                return value
        return None

    def has_option(self, name: str) -> bool:
        """Return whether the option ``name`` is given (flag or value)."""
        return any(key == name for key, _ in self.options)

    @property
    def is_certificate_authority(self) -> bool:
        """``cert-authority``: the key signs certificates and is never a user key itself."""
        return self.has_option("cert-authority")

    def allows_from(self, client: Address | None) -> bool:
        """Return whether ``from=`` (if given) lets ``client`` use this key.

        Patterns match the client's IP address: ``*`` and ``?`` wildcards,
        CIDR networks, ``!`` to exclude. Host names are never looked up (as
        with sshd's ``UseDNS no``), so a name pattern matches nothing. A
        client with no IP address (Unix sockets) is refused by any ``from=``.
        """
        patterns = self.option("from")
        if patterns is None:
            return not self.has_option("from")
        if not isinstance(client, IPv4Address | IPv6Address):
            return False
        return _match_address(client.host.partition("%")[0], patterns)

    def expired(self, now: float | None = None) -> bool:
        """Return whether ``expiry-time=`` (if given) has passed, or cannot be read."""
        value = self.option("expiry-time")
        if value is None:
            return self.has_option("expiry-time")
        try:
            deadline = _expiry(value)
        except ValueError:
            return True  # Unreadable: take the key as expired, not as valid forever.
        return (time.time() if now is None else now) >= deadline


def _expiry(value: str) -> float:
    """Read ``YYYYMMDD[HHMM[SS]][Z]`` as a time stamp (local time without ``Z``)."""
    utc = value.endswith(("Z", "z"))
    digits = value[:-1] if utc else value
    if not digits.isdigit() or len(digits) not in (8, 12, 14):
        raise ValueError(value)
    digits = digits.ljust(14, "0")
    fields = (
        int(digits[0:4]), int(digits[4:6]), int(digits[6:8]),
        int(digits[8:10]), int(digits[10:12]), int(digits[12:14]),
    )  # fmt: skip
    parts = (*fields, 0, 0, -1)
    if utc:
        import calendar

        return float(calendar.timegm(parts))
    return time.mktime(parts)


def _match_address(host: str, patterns: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    allowed = False
    for raw in patterns.split(","):
        pattern = raw.strip()
        negated = pattern.startswith("!")
        pattern = pattern.removeprefix("!")
        if not pattern:
            continue
        if "/" in pattern:
            try:
                matched = address in ipaddress.ip_network(pattern, strict=False)
            except ValueError:
                matched = False
        else:
            matched = fnmatch.fnmatchcase(str(address).lower(), pattern.lower())
        if matched and negated:
            return False
        allowed = allowed or matched
    return allowed


def _read_options(
    line: str, number: int, path: str | None
) -> tuple[list[tuple[str, str | None]], int]:
    """Read the options at the start of ``line``; return them and where the key starts."""
    options: list[tuple[str, str | None]] = []
    at = 0
    while True:
        start = at
        while at < len(line) and (line[at].isalnum() or line[at] in "-_@."):
            at += 1
        name = line[start:at].lower()
        if not name:
            raise PasswordFileError("bad option", path=path, line=number)
        value: str | None = None
        if at < len(line) and line[at] == "=":
            at += 1
            if at >= len(line) or line[at] != '"':
                raise PasswordFileError(
                    f"option {name} needs a quoted value", path=path, line=number
                )
            at += 1
            chars: list[str] = []
            while True:
                if at >= len(line):
                    raise PasswordFileError(
                        f"unterminated quote in option {name}", path=path, line=number
                    )
                char = line[at]
                if char == "\\" and at + 1 < len(line) and line[at + 1] == '"':
                    chars.append('"')
                    at += 2
                    continue
                if char == '"':
                    at += 1
                    break
                chars.append(char)
                at += 1
            value = "".join(chars)
        options.append((name, value))
        if at < len(line) and line[at] == ",":
            at += 1
            continue
        if at < len(line) and line[at] in " \t":
            return options, at
        raise PasswordFileError("expected a key after the options", path=path, line=number)


def parse_authorized_key(
    line: str, *, number: int = 0, path: str | None = None
) -> AuthorizedKey | None:
    """Read one authorized_keys line; None for a blank line or a comment.

    Raises:
        PasswordFileError: The line is neither, nor a key sshd would read.
    """
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    if len(text) > MAX_LINE:
        raise PasswordFileError(f"line longer than {MAX_LINE}", path=path, line=number)
    options: list[tuple[str, str | None]] = []
    first = text.split(None, 1)[0]
    if first not in KEY_TYPES and first not in _OTHER_KEY_TYPES:
        options, at = _read_options(text, number, path)
        text = text[at:].lstrip()
    fields = text.split(None, 2)
    if len(fields) < 2:
        raise PasswordFileError("expected a key type and a key", path=path, line=number)
    key_type = fields[0]
    if key_type not in KEY_TYPES and key_type not in _OTHER_KEY_TYPES:
        raise PasswordFileError(f"unknown key type {key_type[:40]!r}", path=path, line=number)
    try:
        blob = base64.b64decode(fields[1], validate=True)
        named = _Reader(blob).string()
    except (binascii.Error, _WireError):
        raise PasswordFileError(
            "the key is not valid base64 SSH data", path=path, line=number
        ) from None
    if named != key_type.encode():
        raise PasswordFileError(
            f"the key says {named[:40]!r}, the line {key_type!r}", path=path, line=number
        )
    comment = fields[2].strip() if len(fields) > 2 else ""
    return AuthorizedKey(key_type, blob, comment, tuple(options), number)


def parse_authorized_keys(
    text: str, *, path: str | None = None
) -> tuple[list[AuthorizedKey], list[PasswordFileError]]:
    """Read an authorized_keys file's text.

    Bad lines are skipped, as sshd skips them, and returned so that they can
    be reported.

    Returns:
        The keys, in file order, and the errors of the lines skipped.
    """
    keys: list[AuthorizedKey] = []
    errors: list[PasswordFileError] = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            key = parse_authorized_key(line, number=number, path=path)
        except PasswordFileError as exc:
            errors.append(exc)
            continue
        if key is not None:
            keys.append(key)
    return keys, errors


def _public_key(key_type: str, blob: bytes) -> PublicKeyTypes:
    from cryptography.hazmat.primitives.serialization import load_ssh_public_key

    line = key_type.encode() + b" " + base64.b64encode(blob)
    return load_ssh_public_key(line)


def verify_signature(
    blob: bytes,
    signed_data: bytes,
    signature: bytes,
    *,
    algorithm: str | None = None,
    allow_sha1: bool = False,
    min_rsa_bits: int = 2048,
) -> bool:
    """Return whether ``signature`` is the key's signature over ``signed_data``.

    Args:
        blob: The public key, in SSH wire format.
        signed_data: What was signed.
        signature: The signature blob: the algorithm's name, then the
            signature (RFC 4253 section 6.6, RFC 8332 section 3).
        algorithm: The algorithm the request named, which the signature's
            must equal (None: not checked).
        allow_sha1: Accept ``ssh-rsa`` signatures, made with SHA-1.
        min_rsa_bits: The smallest RSA modulus accepted.
    """
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    try:
        key_type = _Reader(blob).string().decode("ascii")
        reader = _Reader(signature)
        signature_type = reader.string().decode("ascii")
        raw = reader.string()
        reader.done()
        if key_type not in KEY_TYPES or (algorithm is not None and algorithm != signature_type):
            return False
        key = _public_key(key_type, blob)
    except (UnicodeDecodeError, _WireError, ValueError, UnsupportedAlgorithm):
        return False
    try:
        if key_type == "ssh-ed25519":
            if signature_type != key_type or not isinstance(key, ed25519.Ed25519PublicKey):
                return False
            key.verify(raw, signed_data)
            return True
        if key_type in _ECDSA_HASHES:
            if signature_type != key_type or not isinstance(key, ec.EllipticCurvePublicKey):
                return False
            inner = _Reader(raw)
            r, s = inner.mpint(), inner.mpint()
            inner.done()
            hash_type = getattr(hashes, _ECDSA_HASHES[key_type])()
            key.verify(encode_dss_signature(r, s), signed_data, ec.ECDSA(hash_type))
            return True
        # ssh-rsa keys sign with rsa-sha2-256/512 (RFC 8332), or SHA-1 if allowed.
        hash_name = _RSA_SIGNATURES.get(signature_type)
        if hash_name is None or (hash_name == "SHA1" and not allow_sha1):
            return False
        if not isinstance(key, rsa.RSAPublicKey) or key.key_size < min_rsa_bits:
            return False
        key.verify(raw, signed_data, padding.PKCS1v15(), getattr(hashes, hash_name)())
        return True
    except (InvalidSignature, _WireError, ValueError):
        return False


def _safe_username(username: str) -> bool:
    """Whether ``username`` may name a file: no separators, no dot names, no NUL."""
    return (
        0 < len(username) <= 255
        and "/" not in username
        and "\0" not in username
        and username not in (".", "..")
        and not username.startswith("-")
    )


def _home(username: str) -> str:
    try:
        return pwd.getpwnam(username).pw_dir
    except KeyError:
        raise LookupError(username) from None


def expand_template(template: str, username: str) -> str:
    """Expand sshd's ``AuthorizedKeysFile`` tokens: ``%u`` user, ``%h`` home, ``%%``.

    Raises:
        LookupError: ``%h`` is used and the user has no account here.
        ValueError: An unknown token.
    """
    out: list[str] = []
    at = 0
    while at < len(template):
        char = template[at]
        if char != "%":
            out.append(char)
            at += 1
            continue
        token = template[at + 1 : at + 2]
        if token == "u":
            out.append(username)
        elif token == "h":
            out.append(_home(username))
        elif token == "%":
            out.append("%")
        else:
            raise ValueError(f"unknown token %{token} in {template!r}")
        at += 2
    return "".join(out)


class AuthorizedKeysChecker:
    """Checks SSH public-key logins against each user's authorized_keys file.

    The file is found by expanding ``path_template`` for the user (as sshd's
    ``AuthorizedKeysFile``), read in a worker thread at each login (so
    edits apply at once), and refused if others may write to it. A key is
    accepted when its blob is on a line (not a ``cert-authority`` one) whose
    ``from=`` allows the client and whose ``expiry-time=`` has not passed,
    and the signature checks out.

    ``find_key`` answers the SSH client's question "would this key do?"
    (a ``publickey`` request without a signature) and gives the SSH server
    the line's options (``command=``, ``restrict``...) to apply.

    Args:
        threads: Where files are read and signatures checked (the reactor).
        path_template: Where a user's file is: ``%u`` is the user name,
            ``%h`` the user's home directory.
        strict_modes: Refuse a file that its group or others can write.
        allow_sha1: Accept ``ssh-rsa`` (SHA-1) signatures.
        min_rsa_bits: The smallest RSA key accepted.
    """

    credential_types: ClassVar[tuple[type, ...]] = (SSHPublicKey,)

    def __init__(
        self,
        threads: ThreadRunner,
        *,
        path_template: str = "%h/.ssh/authorized_keys",
        strict_modes: bool = True,
        allow_sha1: bool = False,
        min_rsa_bits: int = 2048,
    ) -> None:
        expand_template(path_template.replace("%h", ""), "user")  # reject bad tokens now
        self._threads = threads
        self.path_template = path_template
        self.strict_modes = strict_modes
        self.allow_sha1 = allow_sha1
        self.min_rsa_bits = min_rsa_bits

    def find_key(
        self, username: str, blob: bytes, client: Address | None = None
    ) -> Deferred[AuthorizedKey | None]:
        """Find the line that would let ``blob`` log in as ``username`` from ``client``."""
        return self._threads.defer_to_thread(self._find, username, blob, client)

    def request_avatar_id(
        self, credentials: SSHPublicKey, client: Address | None, /
    ) -> Deferred[str]:
        """Check the key and its signature in a worker thread; fire with the user name."""
        return self._threads.defer_to_thread(self._check, credentials, client)

    def keys_file(self, username: str) -> str | None:
        """Return the path of ``username``'s file (None for a name no file may have)."""
        if not _safe_username(username):
            return None
        try:
            return expand_template(self.path_template, username)
        except LookupError:
            return None

    def _check(self, credentials: SSHPublicKey, client: Address | None) -> str:
        if credentials.signature is None or credentials.signed_data is None:
            raise UnauthorizedLogin("public key offered without a signature")
        key = self._find(credentials.username, credentials.blob, client)
        if key is None:
            raise UnauthorizedLogin("key not authorized")
        if not verify_signature(
            credentials.blob,
            credentials.signed_data,
            credentials.signature,
            algorithm=credentials.algorithm,
            allow_sha1=self.allow_sha1,
            min_rsa_bits=self.min_rsa_bits,
        ):
            raise UnauthorizedLogin("bad signature")
        return credentials.username

    def _find(self, username: str, blob: bytes, client: Address | None) -> AuthorizedKey | None:
        path = self.keys_file(username)
        if path is None:
            return None
        text = self._read(path)
        if text is None:
            return None
        keys, errors = parse_authorized_keys(text, path=path)
        for error in errors:
            _log.warning("%s (line skipped)", error)
        for key in keys:
            if key.blob != blob or key.is_certificate_authority:
                continue
            if key.key_type not in KEY_TYPES or not key.allows_from(client) or key.expired():
                continue
            return key
        return None

    def _read(self, path: str) -> str | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            return None  # No file: no keys (the usual case for most users).
        with os.fdopen(fd, "rb") as file:
            st = os.fstat(file.fileno())
            if not stat.S_ISREG(st.st_mode):
                _log.warning("%s: not a regular file; no keys read", path)
                return None
            if self.strict_modes and st.st_mode & 0o022:
                _log.warning("%s: writable by group or others; no keys read", path)
                return None
            data = file.read(MAX_KEYS_FILE + 1)
        if len(data) > MAX_KEYS_FILE:
            _log.warning("%s: larger than %d bytes; no keys read", path, MAX_KEYS_FILE)
            return None
        return data.decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        return f"<AuthorizedKeysChecker {self.path_template!r}>"
