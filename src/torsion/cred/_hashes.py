"""Password hashes: making them, recognising them, checking a password against one.

Three modern schemes, in the string formats other software writes:

* ``scrypt`` (the default, from ``hashlib``: no extra library), written as
  ``$scrypt$ln=15,r=8,p=3$SALT$HASH`` (the PHC string format, base64 without
  padding, as passlib writes it);
* ``bcrypt`` (``$2y$``/``$2b$``/``$2a$``, what Apache's ``htpasswd -B``
  writes), through the ``bcrypt`` library;
* ``argon2`` (``$argon2id$v=19$m=...,t=...,p=...$SALT$HASH``), through
  ``argon2-cffi``.

The libraries come with the ``cred`` extra (``pip install 'torsion[cred]'``);
without them, hashes of those schemes are refused with a message saying so.

Older schemes found in existing htpasswd files are refused unless
``allow_legacy=True``: unsalted SHA-1 (``{SHA}``), MD5-crypt (``$apr1$``,
``$1$``) and SHA-crypt (``$5$``, ``$6$``), all too fast to resist a guessing
attack on a stolen file. Plain text and DES crypt are refused always.

Every parameter read from a hash is bounded, so that a planted entry cannot
make one check take minutes or gigabytes. Checking is CPU-heavy by design
(tens to hundreds of milliseconds): call these in a worker thread.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import importlib
import re
import secrets
from types import ModuleType
from typing import Final

from torsion.errors import PasswordHashError

__all__ = [
    "DEFAULT_SCHEME",
    "LEGACY_SCHEMES",
    "SCHEMES",
    "check_hash",
    "hash_password",
    "identify_hash",
    "verify_password",
]

SCHEMES: Final = ("scrypt", "bcrypt", "argon2")
"""The schemes ``hash_password`` writes."""

LEGACY_SCHEMES: Final = ("sha1", "md5-crypt", "sha256-crypt", "sha512-crypt")
"""The schemes only checked with ``allow_legacy=True``."""

DEFAULT_SCHEME: Final = "scrypt"

# scrypt: OWASP's equivalent settings for N = 2**15 (32 MiB, three passes).
SCRYPT_LOG2_N: Final = 15
SCRYPT_R: Final = 8
SCRYPT_P: Final = 3
BCRYPT_COST: Final = 12
ARGON2_TIME_COST: Final = 3
ARGON2_MEMORY_KIB: Final = 65536
ARGON2_PARALLELISM: Final = 4

# Bounds on what a hash may ask for when it is checked.
_SCRYPT_MAX_MEMORY = 256 * 2**20
_SCRYPT_MAX_P = 16
_BCRYPT_MAX_COST = 17  # htpasswd's own upper bound
_ARGON2_MAX_MEMORY_KIB = 256 * 1024
_ARGON2_MAX_TIME = 20
_ARGON2_MAX_PARALLELISM = 16
_SHA_CRYPT_MAX_ROUNDS = 100_000
_BCRYPT_MAX_PASSWORD = 72  # bcrypt reads no further than this

_EXTRA_HINT = "pip install 'torsion[cred]'"

_SCRYPT = re.compile(
    r"\$scrypt\$ln=(?P<ln>\d{1,2}),r=(?P<r>\d{1,3}),p=(?P<p>\d{1,3})"
    r"\$(?P<salt>[A-Za-z0-9+/]{11,88})\$(?P<hash>[A-Za-z0-9+/]{22,88})"
)
_BCRYPT = re.compile(r"\$2[aby]\$(?P<cost>\d\d)\$[./A-Za-z0-9]{53}")
_ARGON2 = re.compile(
    r"\$argon2(?:id|i|d)\$v=19\$m=(?P<m>\d{1,8}),t=(?P<t>\d{1,4}),p=(?P<p>\d{1,3})"
    r"\$[A-Za-z0-9+/]{11,88}\$[A-Za-z0-9+/]{22,88}"
)
_SHA1 = re.compile(r"\{SHA\}[A-Za-z0-9+/]{27}=")
_MD5_CRYPT = re.compile(r"\$(?P<magic>apr1|1)\$(?P<salt>[./A-Za-z0-9]{0,8})\$[./A-Za-z0-9]{22}")
_SHA_CRYPT = re.compile(
    r"\$(?P<kind>[56])\$(?:rounds=(?P<rounds>\d{1,9})\$)?(?P<salt>[^$:\n]{0,16})"
    r"\$[./A-Za-z0-9]{43,86}"
)


def identify_hash(hashed: str) -> str:
    """Return the scheme of a hash: one of ``SCHEMES`` or ``LEGACY_SCHEMES``.

    Only the shape is looked at; ``check_hash`` also checks the parameters.

    Raises:
        PasswordHashError: It is none of them (plain text, DES crypt, garbage).
    """
    for scheme, pattern in (
        ("scrypt", _SCRYPT),
        ("bcrypt", _BCRYPT),
        ("argon2", _ARGON2),
        ("sha1", _SHA1),
        ("md5-crypt", _MD5_CRYPT),
    ):
        if pattern.fullmatch(hashed):
            return scheme
    found = _SHA_CRYPT.fullmatch(hashed)
    if found:
        return "sha256-crypt" if found["kind"] == "5" else "sha512-crypt"
    raise PasswordHashError(
        "not a password hash torsion accepts (plain text and DES crypt never are)"
    )


def check_hash(hashed: str, *, allow_legacy: bool = False) -> str:
    """Check that a hash can be used; return its scheme.

    Raises:
        PasswordHashError: Its scheme is unknown, legacy (without
            ``allow_legacy``), its parameters are out of bounds, or the
            library its scheme needs is missing.
    """
    scheme = identify_hash(hashed)
    if scheme in LEGACY_SCHEMES and not allow_legacy:
        raise PasswordHashError(
            f"{scheme} hashes are refused (too fast to resist guessing); "
            "rehash with bcrypt, argon2 or scrypt, or allow legacy hashes"
        )
    if scheme == "scrypt":
        _scrypt_params(hashed)
    elif scheme == "bcrypt":
        cost = int(hashed[4:6])
        if not 4 <= cost <= _BCRYPT_MAX_COST:
            raise PasswordHashError(f"bcrypt cost {cost} is outside 4..{_BCRYPT_MAX_COST}")
        _library("bcrypt", "bcrypt")
    elif scheme == "argon2":
        found = _ARGON2.fullmatch(hashed)
        assert found is not None  # identify_hash matched it
        memory, time, lanes = int(found["m"]), int(found["t"]), int(found["p"])
        if not (
            8 * lanes <= memory <= _ARGON2_MAX_MEMORY_KIB
            and 1 <= time <= _ARGON2_MAX_TIME
            and 1 <= lanes <= _ARGON2_MAX_PARALLELISM
        ):
            raise PasswordHashError(
                f"argon2 parameters m={memory},t={time},p={lanes} are out of bounds"
            )
        _library("argon2", "argon2-cffi")
    elif scheme in ("sha256-crypt", "sha512-crypt"):
        _sha_crypt_params(hashed)
    return scheme


def hash_password(password: str, *, scheme: str = DEFAULT_SCHEME, cost: int | None = None) -> str:
    """Hash a password with a fresh random salt.

    Args:
        password: The password.
        scheme: ``scrypt``, ``bcrypt`` or ``argon2``.
        cost: The work factor: log2 of N for scrypt (default 15), the cost
            for bcrypt (default 12), the number of passes for argon2
            (default 3). Lower it only in tests.

    Raises:
        PasswordHashError: The scheme is not one of those, its library is
            missing, or the password cannot be hashed with it (bcrypt reads
            no more than 72 bytes, so a longer password is refused rather
            than silently cut).
    """
    if scheme == "scrypt":
        log2_n = SCRYPT_LOG2_N if cost is None else cost
        if not 1 <= log2_n <= 20:
            raise PasswordHashError(f"scrypt cost (log2 N) {log2_n} is outside 1..20")
        salt = secrets.token_bytes(16)
        digest = _scrypt(password, salt, log2_n, SCRYPT_R, SCRYPT_P, 32)
        return f"$scrypt$ln={log2_n},r={SCRYPT_R},p={SCRYPT_P}${_b64(salt)}${_b64(digest)}"
    if scheme == "bcrypt":
        bcrypt = _library("bcrypt", "bcrypt")
        rounds = BCRYPT_COST if cost is None else cost
        if not 4 <= rounds <= _BCRYPT_MAX_COST:
            raise PasswordHashError(f"bcrypt cost {rounds} is outside 4..{_BCRYPT_MAX_COST}")
        secret = password.encode()
        if len(secret) > _BCRYPT_MAX_PASSWORD or b"\0" in secret:
            raise PasswordHashError(
                "bcrypt takes at most 72 bytes and no NUL byte; use scrypt or argon2"
            )
        hashed = bcrypt.hashpw(secret, bcrypt.gensalt(rounds))
        # htpasswd writes $2y$, the same algorithm as $2b$; Apache reads both.
        return "$2y$" + bytes(hashed).decode("ascii")[4:]
    if scheme == "argon2":
        argon2 = _library("argon2", "argon2-cffi")
        hasher = argon2.PasswordHasher(
            time_cost=ARGON2_TIME_COST if cost is None else cost,
            memory_cost=ARGON2_MEMORY_KIB,
            parallelism=ARGON2_PARALLELISM,
        )
        return str(hasher.hash(password))
    raise PasswordHashError(f"unknown scheme {scheme!r}: choose one of {', '.join(SCHEMES)}")


def verify_password(password: str, hashed: str, *, allow_legacy: bool = False) -> bool:
    """Return whether ``password`` matches ``hashed``, comparing in constant time.

    Raises:
        PasswordHashError: The hash cannot be used (see ``check_hash``).
    """
    scheme = check_hash(hashed, allow_legacy=allow_legacy)
    secret = password.encode()
    if scheme == "scrypt":
        log2_n, r, p, salt, expected = _scrypt_params(hashed)
        return _equal(_scrypt(password, salt, log2_n, r, p, len(expected)), expected)
    if scheme == "bcrypt":
        bcrypt = _library("bcrypt", "bcrypt")
        try:
            # Cut as every bcrypt implementation before bcrypt 5.0 did, so
            # that hashes made of longer passwords elsewhere still match.
            return bool(bcrypt.checkpw(secret[:_BCRYPT_MAX_PASSWORD], hashed.encode()))
        except ValueError:  # a NUL in the password, or a salt the library refuses
            return False
    if scheme == "argon2":
        argon2 = _library("argon2", "argon2-cffi")
        try:
            return bool(argon2.PasswordHasher().verify(hashed, password))
        except argon2.exceptions.VerificationError:
            return False
        except argon2.exceptions.InvalidHashError as exc:
            raise PasswordHashError(f"not a valid argon2 hash: {exc}") from exc
    if scheme == "sha1":
        return _equal(base64.b64encode(hashlib.sha1(secret).digest()), hashed[5:].encode())
    if scheme == "md5-crypt":
        found = _MD5_CRYPT.fullmatch(hashed)
        assert found is not None
        return _equal(md5_crypt(secret, found["salt"], found["magic"]).encode(), hashed.encode())
    rounds, crypt_salt, explicit = _sha_crypt_params(hashed)
    kind = "sha256" if scheme == "sha256-crypt" else "sha512"
    made = sha_crypt(secret, crypt_salt, rounds, kind, explicit_rounds=explicit)
    # The digests alone: a stored "rounds=" below 1000 is written back as 1000.
    return _equal(made.rpartition("$")[2].encode(), hashed.rpartition("$")[2].encode())


def _equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def _library(name: str, package: str) -> ModuleType:
    """Import an optional hashing library, or say how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise PasswordHashError(
            f"{name} hashes need the {package} library: {_EXTRA_HINT}"
        ) from exc


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error as exc:
        raise PasswordHashError(f"bad base64 in a hash: {exc}") from exc


def _scrypt(password: str, salt: bytes, log2_n: int, r: int, p: int, length: int) -> bytes:
    n = 2**log2_n
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, dklen=length, maxmem=129 * r * n + 2**20
    )


def _scrypt_params(hashed: str) -> tuple[int, int, int, bytes, bytes]:
    found = _SCRYPT.fullmatch(hashed)
    if found is None:
        raise PasswordHashError("not an scrypt hash")
    log2_n, r, p = int(found["ln"]), int(found["r"]), int(found["p"])
    if not (1 <= log2_n <= 20 and r >= 1 and 1 <= p <= _SCRYPT_MAX_P):
        raise PasswordHashError(f"scrypt parameters ln={log2_n},r={r},p={p} are out of bounds")
    if 128 * r * 2**log2_n > _SCRYPT_MAX_MEMORY:
        raise PasswordHashError(f"scrypt parameters ln={log2_n},r={r} need too much memory")
    salt, digest = _unb64(found["salt"]), _unb64(found["hash"])
    if len(digest) < 16:
        raise PasswordHashError("scrypt hash too short")
    return log2_n, r, p, salt, digest


def _sha_crypt_params(hashed: str) -> tuple[int, str, bool]:
    found = _SHA_CRYPT.fullmatch(hashed)
    if found is None:
        raise PasswordHashError("not a SHA-crypt hash")
    explicit = found["rounds"] is not None
    # The specification clamps the rounds into 1000..999999999; our bound is lower.
    rounds = max(1000, int(found["rounds"])) if explicit else 5000
    if rounds > _SHA_CRYPT_MAX_ROUNDS:
        raise PasswordHashError(f"SHA-crypt rounds {rounds} exceed {_SHA_CRYPT_MAX_ROUNDS}")
    return rounds, found["salt"], explicit


# -- legacy crypt schemes, only for checking old files ------------------------------

_CRYPT_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _crypt64(value: int, count: int) -> str:
    """Encode the low ``6 * count`` bits of ``value``, least significant first."""
    out = []
    for _ in range(count):
        out.append(_CRYPT_ALPHABET[value & 0x3F])
        value >>= 6
    return "".join(out)


def _crypt64_groups(digest: bytes, groups: tuple[tuple[int, int, int], ...]) -> str:
    return "".join(
        _crypt64((digest[a] << 16) | (digest[b] << 8) | digest[c], 4) for a, b, c in groups
    )


def md5_crypt(password: bytes, salt: str, magic: str = "apr1") -> str:
    """Return Poul-Henning Kamp's MD5-crypt of ``password`` (``$1$``, Apache's ``$apr1$``).

    Only for checking old hashes: it is fast and unsuitable for new ones.
    """
    salt_bytes = salt.encode()[:8]
    prefix = f"${magic}$".encode()
    alternate = hashlib.md5(password + salt_bytes + password).digest()
    context = hashlib.md5(password + prefix + salt_bytes)
    for start in range(0, len(password), 16):
        context.update(alternate[: min(16, len(password) - start)])
    length = len(password)
    while length:
        context.update(b"\0" if length & 1 else password[:1])
        length >>= 1
    digest = context.digest()
    # A thousand rounds, to slow guessing down (a little, by today's measure).
    for i in range(1000):
        step = hashlib.md5(password if i & 1 else digest)
        if i % 3:
            step.update(salt_bytes)
        if i % 7:
            step.update(password)
        step.update(digest if i & 1 else password)
        digest = step.digest()
    encoded = _crypt64_groups(
        digest, ((0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5))
    ) + _crypt64(digest[11], 2)
    return f"${magic}${salt_bytes.decode()}${encoded}"


_SHA256_ORDER = (
    (0, 10, 20), (21, 1, 11), (12, 22, 2), (3, 13, 23), (24, 4, 14),
    (15, 25, 5), (6, 16, 26), (27, 7, 17), (18, 28, 8), (9, 19, 29),
)  # fmt: skip
_SHA512_ORDER = (
    (0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4),
    (47, 5, 26), (6, 27, 48), (28, 49, 7), (50, 8, 29), (9, 30, 51),
    (31, 52, 10), (53, 11, 32), (12, 33, 54), (34, 55, 13), (56, 14, 35),
    (15, 36, 57), (37, 58, 16), (59, 17, 38), (18, 39, 60), (40, 61, 19),
    (62, 20, 41),
)  # fmt: skip


def _repeat(block: bytes, length: int) -> bytes:
    return (block * (length // len(block) + 1))[:length]


def sha_crypt(
    password: bytes, salt: str, rounds: int, kind: str, *, explicit_rounds: bool = True
) -> str:
    """Return Ulrich Drepper's SHA-crypt of ``password`` (``$5$`` SHA-256, ``$6$`` SHA-512).

    Only for checking old hashes.

    Args:
        password: The password.
        salt: The salt (at most 16 characters are used).
        rounds: How many rounds.
        kind: ``sha256`` or ``sha512``.
        explicit_rounds: Whether the result names the rounds (it must when
            they are not the default 5000).
    """
    salt_bytes = salt.encode()[:16]

    def h(data: bytes) -> bytes:
        return hashlib.new(kind, data).digest()

    alternate = h(password + salt_bytes + password)
    first = bytearray(password + salt_bytes)
    first += _repeat(alternate, len(password))
    length = len(password)
    while length:
        first += alternate if length & 1 else password
        length >>= 1
    digest = h(bytes(first))
    p_bytes = _repeat(h(password * len(password)), len(password))
    s_bytes = _repeat(h(salt_bytes * (16 + digest[0])), len(salt_bytes))
    for i in range(rounds):
        step = bytearray(p_bytes if i & 1 else digest)
        if i % 3:
            step += s_bytes
        if i % 7:
            step += p_bytes
        step += digest if i & 1 else p_bytes
        digest = h(bytes(step))
    if kind == "sha256":
        encoded = _crypt64_groups(digest, _SHA256_ORDER) + _crypt64(
            (digest[31] << 8) | digest[30], 3
        )
        magic = "5"
    else:
        encoded = _crypt64_groups(digest, _SHA512_ORDER) + _crypt64(digest[63], 2)
        magic = "6"
    rounds_text = f"rounds={rounds}$" if explicit_rounds else ""
    return f"${magic}${rounds_text}{salt_bytes.decode()}${encoded}"
