"""Password hashes: the modern schemes, the bounds on what a hash may ask, legacy ones refused."""

from __future__ import annotations

import subprocess

import pytest

from torsion.cred import (
    LEGACY_SCHEMES,
    PasswordHashError,
    check_hash,
    hash_password,
    identify_hash,
    verify_password,
)
from torsion.cred._hashes import md5_crypt, sha_crypt
from torsion.testing import require_peer


def test_scrypt_is_the_default_and_needs_no_library() -> None:
    hashed = hash_password("correct horse", cost=4)
    assert hashed.startswith("$scrypt$ln=4,r=8,p=3$")
    assert identify_hash(hashed) == "scrypt"
    assert verify_password("correct horse", hashed)
    assert not verify_password("correct horse ", hashed)
    assert hash_password("correct horse", cost=4) != hashed  # a fresh salt each time


def test_the_default_cost_is_the_recommended_one() -> None:
    # OWASP's scrypt settings with N = 2**15 (three passes of 32 MiB).
    hashed = hash_password("pw")
    assert hashed.startswith("$scrypt$ln=15,r=8,p=3$")
    assert verify_password("pw", hashed)


def test_bcrypt_writes_what_apache_writes() -> None:
    pytest.importorskip("bcrypt", reason="bcrypt hashes need the cred extra (bcrypt)")
    hashed = hash_password("pässword", scheme="bcrypt", cost=4)
    assert hashed.startswith("$2y$04$")
    assert verify_password("pässword", hashed)
    assert not verify_password("password", hashed)
    # The same hash spelled $2b$ (what the library writes) checks the same.
    assert verify_password("pässword", "$2b$" + hashed[4:])


def test_bcrypt_refuses_to_hash_what_it_would_cut() -> None:
    pytest.importorskip("bcrypt", reason="bcrypt hashes need the cred extra (bcrypt)")
    with pytest.raises(PasswordHashError, match="72 bytes"):
        hash_password("x" * 73, scheme="bcrypt", cost=4)
    with pytest.raises(PasswordHashError, match="NUL"):
        hash_password("a\0b", scheme="bcrypt", cost=4)


def test_bcrypt_checks_long_passwords_as_other_implementations_cut_them() -> None:
    bcrypt = pytest.importorskip("bcrypt", reason="bcrypt hashes need the cred extra (bcrypt)")
    made_elsewhere = bcrypt.hashpw(b"y" * 72, bcrypt.gensalt(4)).decode()
    assert verify_password("y" * 80, made_elsewhere)
    assert not verify_password("y" * 71, made_elsewhere)
    assert not verify_password("y\0", made_elsewhere)


def test_argon2() -> None:
    pytest.importorskip("argon2", reason="argon2 hashes need the cred extra (argon2-cffi)")
    hashed = hash_password("pw", scheme="argon2", cost=1)
    assert hashed.startswith("$argon2id$v=19$m=65536,t=1,p=4$")
    assert identify_hash(hashed) == "argon2"
    assert verify_password("pw", hashed)
    assert not verify_password("pW", hashed)


def test_unknown_scheme_or_cost_out_of_range() -> None:
    with pytest.raises(PasswordHashError, match="unknown scheme"):
        hash_password("pw", scheme="md5")
    with pytest.raises(PasswordHashError, match=r"1\.\.20"):
        hash_password("pw", cost=21)


@pytest.mark.parametrize(
    "hashed",
    [
        "$scrypt$ln=21,r=8,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2g",  # N too big
        "$scrypt$ln=16,r=64,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2g",  # 512 MiB
        "$scrypt$ln=4,r=8,p=17$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2g",  # p too big
        "$2y$18$" + "a" * 53,  # bcrypt cost above htpasswd's 17
        "$2y$03$" + "a" * 53,
        "$argon2id$v=19$m=4194304,t=3,p=4$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2g",
        "$argon2id$v=19$m=65536,t=99,p=4$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2g",
        "$6$rounds=999999$saltsalt$" + "a" * 86,  # SHA-crypt rounds above the bound
    ],
)
def test_a_planted_hash_cannot_ask_for_minutes_or_gigabytes(hashed: str) -> None:
    with pytest.raises(PasswordHashError, match=r"bound|outside|exceed|too much"):
        check_hash(hashed, allow_legacy=True)


@pytest.mark.parametrize(
    "hashed",
    ["secret", "", "rqXexS6ZhobKA", "$scrypt$garbage", "$2y$12$short", "{SHA}short"],
)
def test_plain_text_des_crypt_and_garbage_are_never_accepted(hashed: str) -> None:
    with pytest.raises(PasswordHashError, match=r"not a password hash"):
        verify_password("secret", hashed, allow_legacy=True)


def test_bad_base64_in_an_scrypt_hash() -> None:
    with pytest.raises(PasswordHashError, match="base64"):
        verify_password("pw", "$scrypt$ln=4,r=8,p=1$c2FsdHNhbHRzYWx0$" + "A" * 41)


@pytest.mark.parametrize(
    ("hashed", "scheme"),
    [
        ("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "sha1"),  # "password"
        (md5_crypt(b"password", "SrNLTe3N"), "md5-crypt"),
        (md5_crypt(b"password", "abcdefgh", "1"), "md5-crypt"),
        (
            sha_crypt(b"password", "saltstring", 5000, "sha256", explicit_rounds=False),
            "sha256-crypt",
        ),
        (sha_crypt(b"password", "saltstring", 1000, "sha512"), "sha512-crypt"),
    ],
)
def test_legacy_hashes_are_refused_unless_allowed(hashed: str, scheme: str) -> None:
    assert scheme in LEGACY_SCHEMES
    assert identify_hash(hashed) == scheme
    with pytest.raises(PasswordHashError, match="refused"):
        verify_password("password", hashed)
    assert verify_password("password", hashed, allow_legacy=True)
    assert not verify_password("Password", hashed, allow_legacy=True)


def test_sha_crypt_matches_the_specification_examples() -> None:
    # Test vectors of Ulrich Drepper's "Unix crypt using SHA-256 and SHA-512" (glibc's too).
    assert (
        sha_crypt(b"Hello world!", "saltstring", 5000, "sha256", explicit_rounds=False)
        == "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"
    )
    assert (
        sha_crypt(b"Hello world!", "saltstringsaltstring", 10000, "sha512")
        == "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0"
        "Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."
    )


# -- against Apache's own htpasswd -------------------------------------------------


def _htpasswd(*flags: str, password: str = "pässword 1") -> str:
    program = require_peer("htpasswd", package="apache2-utils")
    line = subprocess.run(
        [program, "-nb", *flags, "user", password],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    return line.partition(":")[2]


def test_htpasswd_bcrypt_hashes_check() -> None:
    pytest.importorskip("bcrypt", reason="bcrypt hashes need the cred extra (bcrypt)")
    hashed = _htpasswd("-B", "-C", "4")
    assert identify_hash(hashed) == "bcrypt"
    assert verify_password("pässword 1", hashed)
    assert not verify_password("pässword 2", hashed)


@pytest.mark.parametrize(
    ("flags", "scheme"),
    [
        (("-m",), "md5-crypt"),
        (("-s",), "sha1"),
        (("-2",), "sha256-crypt"),
        (("-5",), "sha512-crypt"),
        (("-2", "-r", "1234"), "sha256-crypt"),
        (("-5", "-r", "7000"), "sha512-crypt"),
    ],
)
def test_htpasswd_legacy_hashes_check_only_when_allowed(
    flags: tuple[str, ...], scheme: str
) -> None:
    hashed = _htpasswd(*flags)
    assert identify_hash(hashed) == scheme
    with pytest.raises(PasswordHashError, match="refused"):
        check_hash(hashed)
    assert verify_password("pässword 1", hashed, allow_legacy=True)
    assert not verify_password("pässword 2", hashed, allow_legacy=True)


@pytest.mark.parametrize("flags", [("-p",), ("-d",)])
def test_htpasswd_plain_text_and_crypt_are_refused_even_as_legacy(flags: tuple[str, ...]) -> None:
    hashed = _htpasswd(*flags, password="secret")
    with pytest.raises(PasswordHashError):
        verify_password("secret", hashed, allow_legacy=True)


def test_a_missing_library_is_named_with_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    real = importlib.import_module

    def without_bcrypt(name: str, package: str | None = None) -> object:
        if name == "bcrypt":
            raise ImportError("no bcrypt here")
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", without_bcrypt)
    with pytest.raises(PasswordHashError, match=r"torsion\[cred\]"):
        check_hash("$2y$04$" + "a" * 53)
