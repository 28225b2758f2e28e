r"""``--auth`` strings: a checker described in one command-line argument.

Runner plugins that log users in take ``--auth`` (repeatable), one checker
each, tried in order::

    memory:alice:secret:bob:pw      users and passwords, in memory
    file:/etc/torsion/htpasswd      an htpasswd file (legacy=yes to accept old hashes)
    unix                            the system's accounts through PAM (unix:SERVICE)
    anonymous                       anonymous logins
    sshkey:/etc/ssh/keys            SSH keys: DIR/USER, or a template with %u / %h
    sshkey                          SSH keys in ~USER/.ssh/authorized_keys

Fields are separated by ``:``; a backslash escapes the next character
(``memory:alice:pa\:ss`` is the password ``pa:ss``). Errors name the
string with every password in it masked.
"""

from __future__ import annotations

import os
from typing import Final

from torsion.cred._checkers import AnonymousChecker, InMemoryChecker
from torsion.cred._htpasswd import HtpasswdChecker
from torsion.cred._pam import PAMChecker, pam_available
from torsion.cred._portal import Checker
from torsion.cred._sshkeys import AuthorizedKeysChecker
from torsion.errors import AuthStringError, PasswordFileError
from torsion.internet import ThreadRunner

__all__ = ["AUTH_STRING_HELP", "checker_from_string", "split_auth_string"]

AUTH_STRING_HELP: Final = (
    "a checker: memory:USER:PASSWORD[:USER:PASSWORD...], file:HTPASSWD[:legacy=yes], "
    "unix[:PAM_SERVICE], anonymous, sshkey[:DIR_OR_TEMPLATE] (repeatable; tried in order)"
)


def _split(text: str) -> tuple[list[str], bool]:
    """Split at unescaped colons; also say whether the text ended cleanly."""
    fields: list[str] = []
    current: list[str] = []
    escaped = False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            fields.append("".join(current))
            current = []
        else:
            current.append(char)
    fields.append("".join(current))
    return fields, not escaped


def split_auth_string(text: str) -> list[str]:
    """Split at unescaped colons, undoing backslash escapes.

    Raises:
        AuthStringError: The string ends with a lone backslash.
    """
    fields, clean = _split(text)
    if not clean:
        raise AuthStringError(_masked(text), "ends with a lone backslash")
    return fields


def _masked(text: str) -> str:
    """The string with the passwords of a ``memory:`` string replaced by ``***``."""
    if not text.startswith("memory:"):
        return text
    fields, _ = _split(text)
    shown = [fields[0]]
    for index, value in enumerate(fields[1:]):
        shown.append(value if index % 2 == 0 else "***")
    return ":".join(shown)


def checker_from_string(text: str, *, threads: ThreadRunner) -> Checker:
    """Build the checker an ``--auth`` string describes.

    Args:
        text: The string (see the module's documentation).
        threads: Where checkers that hash, read files or call PAM do it.

    Raises:
        AuthStringError: The string is not valid, names a file that cannot
            be used, or needs a library that is not installed.
    """
    kind, _, _ = text.partition(":")
    fields = split_auth_string(text)
    arguments = fields[1:]
    shown = _masked(text)
    if kind == "memory":
        if not arguments or len(arguments) % 2:
            raise AuthStringError(shown, "expected memory:USER:PASSWORD[:USER:PASSWORD...]")
        users: dict[str, str] = {}
        for username, password in zip(arguments[::2], arguments[1::2], strict=True):
            if not username:
                raise AuthStringError(shown, "a user name is empty")
            if username in users:
                raise AuthStringError(shown, f"user {username!r} given twice")
            users[username] = password
        return InMemoryChecker(users)
    if kind == "file":
        if not arguments or not arguments[0]:
            raise AuthStringError(shown, "expected file:PATH")
        legacy = False
        for option in arguments[1:]:
            name, equals, value = option.partition("=")
            if name != "legacy" or not equals or value not in ("yes", "no"):
                raise AuthStringError(shown, f"unknown option {option!r} (legacy=yes|no)")
            legacy = value == "yes"
        try:
            return HtpasswdChecker(arguments[0], threads=threads, allow_legacy=legacy)
        except PasswordFileError as exc:
            raise AuthStringError(shown, str(exc)) from exc
    if kind == "unix":
        if len(arguments) > 1:
            raise AuthStringError(shown, "expected unix or unix:PAM_SERVICE")
        problem = pam_available()
        if problem is not None:
            raise AuthStringError(shown, problem)
        try:
            return PAMChecker(threads, service=arguments[0] if arguments else "login")
        except ValueError as exc:
            raise AuthStringError(shown, str(exc)) from exc
    if kind == "anonymous":
        if arguments:
            raise AuthStringError(shown, "anonymous takes no arguments")
        return AnonymousChecker()
    if kind == "sshkey":
        return _sshkey(shown, arguments, threads)
    raise AuthStringError(
        shown, f"unknown kind {kind!r}: expected memory, file, unix, anonymous or sshkey"
    )


def _sshkey(shown: str, arguments: list[str], threads: ThreadRunner) -> Checker:
    if len(arguments) > 1:
        raise AuthStringError(shown, "expected sshkey or sshkey:DIR_OR_TEMPLATE")
    if not arguments or not arguments[0]:
        template = "%h/.ssh/authorized_keys"
    elif "%" in arguments[0]:
        template = arguments[0]
    elif os.path.isdir(arguments[0]):
        template = os.path.join(arguments[0].replace("%", "%%"), "%u")
    elif os.path.exists(arguments[0]):
        raise AuthStringError(
            shown,
            "a single file would let every key in it log in as anyone: "
            "give a directory of per-user files, or a template with %u",
        )
    else:
        raise AuthStringError(shown, f"no such directory: {arguments[0]!r}")
    try:
        return AuthorizedKeysChecker(threads, path_template=template)
    except ValueError as exc:
        raise AuthStringError(shown, str(exc)) from exc
