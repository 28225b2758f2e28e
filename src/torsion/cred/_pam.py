"""The local system's accounts, checked through PAM.

PAM (pam(8)) decides: ``/etc/shadow`` through ``pam_unix``, LDAP, Kerberos,
whatever the service's stack in ``/etc/pam.d`` says. The ``python-pam``
library (the ``pam`` extra: ``pip install 'torsion[pam]'``) talks to
libpam. Each check runs in a worker thread, since PAM blocks (and many
stacks wait a few seconds after a failure, on purpose). Reading
``/etc/shadow`` needs root, so a server that checks system passwords runs as
root or through a PAM stack that does not need it.

``account`` management (expired or locked accounts, ``pam_acct_mgmt``) is
checked after the password, so that a locked account cannot log in with the
right password either.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, ClassVar

from torsion.cred._credentials import UsernamePassword
from torsion.defer import Deferred
from torsion.errors import UnauthorizedLogin
from torsion.internet import Address, IPv4Address, IPv6Address, ThreadRunner

__all__ = ["PAMChecker", "pam_available"]

# (username, password, service, rhost) -> (accepted, reason)
Authenticate = Callable[[str, str, str, str | None], tuple[bool, str]]


def pam_available() -> str | None:
    """Return why PAM cannot be used here, or None if it can."""
    try:
        importlib.import_module("pam")
    except ImportError:
        return "the python-pam library is not installed: pip install 'torsion[pam]'"
    except OSError as exc:  # libpam itself is missing
        return f"libpam cannot be loaded: {exc}"
    return None


def _python_pam_authenticate(
    username: str, password: str, service: str, rhost: str | None
) -> tuple[bool, str]:
    """Authenticate through python-pam, which then checks the account too.

    python-pam runs ``pam_authenticate`` then ``pam_acct_mgmt`` and ends the
    transaction; it cannot set ``PAM_RHOST``, so ``rhost`` goes unused here.
    Credentials are not established (``resetcreds=False``): this only checks.
    """
    pam: Any = importlib.import_module("pam")
    handle = pam.pam()
    accepted = bool(handle.authenticate(username, password, service=service, resetcreds=False))
    return accepted, str(getattr(handle, "reason", "") or "")


class PAMChecker:
    """Checks user names and passwords through PAM, in worker threads.

    Args:
        threads: Where PAM runs (the reactor).
        service: The PAM service: which ``/etc/pam.d`` stack decides.
        authenticate: The call into PAM (for tests; python-pam by default).

    Raises:
        RuntimeError: PAM cannot be used here (see ``pam_available``).
    """

    credential_types: ClassVar[tuple[type, ...]] = (UsernamePassword,)

    def __init__(
        self,
        threads: ThreadRunner,
        *,
        service: str = "login",
        authenticate: Authenticate | None = None,
    ) -> None:
        if authenticate is None:
            problem = pam_available()
            if problem is not None:
                raise RuntimeError(problem)
            authenticate = _python_pam_authenticate
        if not service or "/" in service or "\0" in service:
            raise ValueError(f"bad PAM service name {service!r}")
        self._threads = threads
        self.service = service
        self._authenticate = authenticate

    def request_avatar_id(
        self, credentials: UsernamePassword, client: Address | None, /
    ) -> Deferred[str]:
        """Ask PAM in a worker thread; fire with the user name."""
        rhost = client.host if isinstance(client, IPv4Address | IPv6Address) else None
        return self._threads.defer_to_thread(
            self._check, credentials.username, credentials.password, rhost
        )

    def _check(self, username: str, password: str, rhost: str | None) -> str:
        # NUL cannot cross into C; PAM would see a cut password.
        if not username or "\0" in username or "\0" in password:
            raise UnauthorizedLogin("user name or password holds a NUL")
        accepted, reason = self._authenticate(username, password, self.service, rhost)
        if not accepted:
            raise UnauthorizedLogin(f"PAM: {reason or 'refused'}")
        return username

    def __repr__(self) -> str:
        return f"<PAMChecker service={self.service!r}>"
