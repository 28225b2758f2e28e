"""Finding the third-party programs that integration tests talk to.

A test that needs a real peer (``nc``, ``curl``, ``dig``...) asks for it with
``require_peer``. When the peer is missing the test is skipped with the
reason, unless ``TORSION_REQUIRE_PEERS=1`` is set (as CI sets it), in which
case the test fails, so a missing peer cannot pass unnoticed.
"""

from __future__ import annotations

import os
import shutil

__all__ = ["require_peer"]

# Daemons (haproxy, nsd, dovecot...) install into the system directories,
# which an ordinary user's PATH often leaves out.
_SYSTEM_DIRECTORIES = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def require_peer(program: str, *, package: str | None = None) -> str:
    """Return the path of ``program``, or skip (or fail) the test without it.

    Args:
        program: The executable's name, looked up on ``PATH`` and then in
            the system directories (``/usr/sbin``...).
        package: The package that provides it, named in the message.
    """
    import pytest  # only tests call this; pytest is not a runtime dependency

    path = shutil.which(program) or shutil.which(
        program, path=os.pathsep.join(_SYSTEM_DIRECTORIES)
    )
    if path is not None:
        return path
    where = f" (install {package})" if package else ""
    reason = f"peer {program!r} is not installed{where}"
    if os.environ.get("TORSION_REQUIRE_PEERS") == "1":
        pytest.fail(f"{reason}, and TORSION_REQUIRE_PEERS=1", pytrace=False)
    pytest.skip(reason)
