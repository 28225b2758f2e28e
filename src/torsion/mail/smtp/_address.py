"""RFC 5321 paths and mailboxes: the addresses of ``MAIL FROM`` and ``RCPT TO``.

The grammar is RFC 5321 section 4.1.2, with RFC 6531's UTF-8 additions
when the client asked for SMTPUTF8. Parsing is strict (what is not in the
grammar is refused) and bounded by section 4.5.3.1's sizes: 64 octets of
local part, 255 of domain, 256 of path. Source routes (``<@a,@b:u@c>``)
are parsed and dropped, as section 4.1.1.3 and appendix C let a server do.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final

from torsion.mail.smtp._errors import AddressError

__all__ = ["EmailAddress", "parse_parameters", "parse_path"]

MAX_LOCAL_PART: Final = 64
MAX_DOMAIN: Final = 255
MAX_PATH: Final = 256

# RFC 5321 section 4.1.2 (atext is RFC 5322's); RFC 6531 section 3.3 adds
# every non-ASCII character to atext, qtextSMTP and sub-domains.
_ATEXT = r"A-Za-z0-9!#$%&'*+\-/=?^_`{|}~"
_ASCII_DOT_STRING: Final = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*")
_UTF8_DOT_STRING: Final = re.compile(
    rf"[{_ATEXT}\u0080-\U0010ffff]+(?:\.[{_ATEXT}\u0080-\U0010ffff]+)*"
)
_ASCII_QUOTED: Final = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"')
_UTF8_QUOTED: Final = re.compile(
    r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*"'
)
# A label is at most 63 octets (RFC 1035 section 2.3.4).
_ASCII_DOMAIN: Final = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_UTF8_DOMAIN: Final = re.compile(
    r"[A-Za-z0-9\u0080-\U0010ffff](?:[A-Za-z0-9\u0080-\U0010ffff-]*[A-Za-z0-9\u0080-\U0010ffff])?"
    r"(?:\.[A-Za-z0-9\u0080-\U0010ffff](?:[A-Za-z0-9\u0080-\U0010ffff-]*"
    r"[A-Za-z0-9\u0080-\U0010ffff])?)*"
)
# General-address-literal: Standardized-tag ":" 1*dcontent (section 4.1.3).
_GENERAL_LITERAL: Final = re.compile(r"[A-Za-z0-9-]*[A-Za-z0-9]:[\x21-\x5a\x5e-\x7e]+")
_ESMTP_KEYWORD: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_ESMTP_VALUE: Final = re.compile(r"[\x21-\x3c\x3e-\x7e\u0080-\U0010ffff]+")


@dataclass(frozen=True, slots=True)
class EmailAddress:
    """A mailbox as RFC 5321 writes it: ``local-part@domain``.

    Attributes:
        local_part: The local part, unquoted (``"a b"@x`` has ``a b``).
        domain: The domain as the client wrote it, or an address literal
            with its brackets (``[192.0.2.1]``); empty only for the special
            ``<Postmaster>`` recipient of section 4.1.1.3.
    """

    local_part: str
    domain: str

    def __str__(self) -> str:
        local = self.local_part
        if not _UTF8_DOT_STRING.fullmatch(local):
            # Section 4.1.2: a local part that is not a dot-string is quoted.
            local = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{local}@{self.domain}" if self.domain else local

    @property
    def is_ascii(self) -> bool:
        """Whether the address is plain ASCII (no SMTPUTF8 needed to send it)."""
        return self.local_part.isascii() and self.domain.isascii()


def parse_path(
    text: str, *, utf8: bool = False, null: bool = False
) -> tuple[EmailAddress | None, str]:
    """Parse a path and what follows it: ``<a@b.example> SIZE=10``.

    Args:
        text: What follows ``MAIL FROM:`` or ``RCPT TO:``.
        utf8: Whether the client asked for SMTPUTF8 (RFC 6531): non-ASCII
            local parts and domains are allowed.
        null: Whether ``<>`` is allowed (a reverse-path, for ``MAIL``).

    Returns:
        The address (None for ``<>``) and the rest of the text (the
        parameters), without its leading spaces.

    Raises:
        AddressError: The path is not in RFC 5321's grammar or too long;
            ``non_ascii`` is set on it when the path would be valid with
            SMTPUTF8.
    """
    if not text.startswith("<"):
        raise AddressError("a path must be in angle brackets")
    end = _closing_bracket(text)
    inner, rest = text[1:end], text[end + 1 :]
    if rest and not rest.startswith(" "):
        raise AddressError("a space must separate the path from its parameters")
    rest = rest.lstrip(" ")
    if len(inner.encode()) + 2 > MAX_PATH:
        raise AddressError("path too long")
    if inner == "":
        if not null:
            raise AddressError("the null path <> is not allowed here")
        return None, rest
    if inner.startswith("@"):
        # A source route (A-d-l ":"): checked, then ignored (appendix C).
        route, colon, inner = inner.partition(":")
        if not colon:
            raise AddressError("a source route must end with a colon")
        for hop in route.split(","):
            if not hop.startswith("@") or not _is_domain(hop[1:], utf8):
                raise AddressError("bad source route")
    return parse_mailbox(inner, utf8=utf8), rest


def parse_mailbox(text: str, *, utf8: bool = False) -> EmailAddress:
    """Parse a bare mailbox, ``local-part@domain`` (section 4.1.2).

    ``Postmaster`` without a domain is accepted (section 4.1.1.3 requires
    servers to take ``RCPT TO:<Postmaster>``).

    Raises:
        AddressError: ``text`` is not a mailbox.
    """
    if text.isascii():
        # The UTF-8 grammar is the ASCII one for ASCII text, and the ASCII
        # expressions are the cheaper.
        utf8 = False
    elif not utf8:
        parse_mailbox(text, utf8=True)  # raises if it is not a mailbox at all
        raise AddressError("non-ASCII address without SMTPUTF8", non_ascii=True)
    if len(text) == 10 and text.lower() == "postmaster":
        return EmailAddress(text, "")
    at = text.rfind("@")
    if at < 1:
        raise AddressError("a mailbox needs a local part and a domain")
    local, domain = text[:at], text[at + 1 :]
    if len(local.encode()) > MAX_LOCAL_PART:
        raise AddressError("local part too long")
    dot_string = _UTF8_DOT_STRING if utf8 else _ASCII_DOT_STRING
    quoted = _UTF8_QUOTED if utf8 else _ASCII_QUOTED
    if dot_string.fullmatch(local):
        pass
    elif quoted.fullmatch(local):
        local = re.sub(r"\\(.)", r"\1", local[1:-1])
    else:
        raise AddressError("bad local part")
    if domain.startswith("["):
        if not _is_address_literal(domain):
            raise AddressError("bad address literal")
    elif not _is_domain(domain, utf8):
        raise AddressError("bad domain")
    return EmailAddress(local, domain)


def parse_parameters(text: str) -> dict[str, str | None]:
    """Parse ESMTP parameters, ``KEY[=VALUE]`` separated by spaces (section 4.1.2).

    Returns:
        The parameters by upper-cased keyword (None for a keyword alone).

    Raises:
        AddressError: A parameter is malformed or given twice.
    """
    params: dict[str, str | None] = {}
    for word in text.split(" "):
        if not word:
            continue
        key, eq, value = word.partition("=")
        if not _ESMTP_KEYWORD.fullmatch(key) or (eq and not _ESMTP_VALUE.fullmatch(value)):
            raise AddressError(f"bad parameter {word[:40]!r}")
        key = key.upper()
        if key in params:
            raise AddressError(f"parameter {key} given twice")
        params[key] = value if eq else None
    return params


def _closing_bracket(text: str) -> int:
    # The path ends at the first ">" outside a quoted string.
    if '"' not in text:
        end = text.find(">")
        if end < 0:
            raise AddressError("unterminated path")
        return end
    quoted = False
    i = 1
    while i < len(text):
        c = text[i]
        if quoted and c == "\\":
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif c == ">" and not quoted:
            return i
        i += 1
    raise AddressError("unterminated path")


def _is_domain(domain: str, utf8: bool) -> bool:
    if not domain or len(domain.encode()) > MAX_DOMAIN:
        return False
    if not utf8 or domain.isascii():
        # The ASCII expression bounds each label to 63 octets itself.
        return _ASCII_DOMAIN.fullmatch(domain) is not None
    if any(len(label.encode()) > 63 for label in domain.split(".")):
        return False  # RFC 1035 section 2.3.4
    return bool((_UTF8_DOMAIN if utf8 else _ASCII_DOMAIN).fullmatch(domain))


def _is_address_literal(literal: str) -> bool:
    # Section 4.1.3: [IPv4], [IPv6:...] or [tag:content].
    if len(literal) > MAX_DOMAIN or not literal.endswith("]"):
        return False
    inner = literal[1:-1]
    if inner[:5].lower() == "ipv6:":
        try:
            ipaddress.IPv6Address(inner[5:])
        except ValueError:
            return False
        return True
    if ":" in inner:
        return bool(_GENERAL_LITERAL.fullmatch(inner))
    try:
        ipaddress.IPv4Address(inner)
    except ValueError:
        return False
    return True
