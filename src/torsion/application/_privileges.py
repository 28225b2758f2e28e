"""Dropping root: bind the ports as root, then run as an ordinary user.

The runner starts the service tree's privileged part (ports below 1024)
while it is still root, then switches to the user and group asked for, for
good: supplementary groups first (the user's own, or only the group), then
the group, then the user, and it checks that root cannot be taken back.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
from dataclasses import dataclass

from torsion.application._errors import RunnerError, UsageError

__all__ = ["Credentials", "drop_privileges", "resolve_credentials"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Credentials:
    """Who to become.

    Attributes:
        uid: The user id, or None to keep the user.
        gid: The group id, or None to keep the group.
        user: The user's name, when known (for its supplementary groups).
    """

    uid: int | None
    gid: int | None
    user: str | None = None


def resolve_credentials(uid: int | str | None, gid: int | str | None) -> Credentials:
    """Turn user and group names or numbers into ids.

    The group defaults to the user's own group.

    Raises:
        UsageError: No such user or group.
    """
    user_name: str | None = None
    user_id: int | None = None
    group_id: int | None = None
    user_group: int | None = None
    if uid is not None:
        try:
            entry = pwd.getpwuid(int(uid)) if str(uid).isdigit() else pwd.getpwnam(str(uid))
        except KeyError:
            if not str(uid).isdigit():
                raise UsageError(f"--uid: there is no user {uid!r}") from None
            user_id = int(uid)  # A number with no entry is still a user id.
        else:
            user_name, user_id, user_group = entry.pw_name, entry.pw_uid, entry.pw_gid
    if gid is not None:
        if str(gid).isdigit():
            group_id = int(gid)
        else:
            try:
                group_id = grp.getgrnam(str(gid)).gr_gid
            except KeyError:
                raise UsageError(f"--gid: there is no group {gid!r}") from None
    elif user_group is not None:
        group_id = user_group
    return Credentials(user_id, group_id, user_name)


def drop_privileges(credentials: Credentials) -> None:
    """Become ``credentials``' user and group for the rest of the process's life.

    Raises:
        RunnerError: The switch is not allowed (not root), or root could
            be taken back afterwards.
    """
    uid, gid = credentials.uid, credentials.gid
    if uid is None and gid is None:
        return
    if (uid is None or uid == os.geteuid()) and (gid is None or gid == os.getegid()):
        return  # Already there: nothing to give up.
    try:
        if gid is not None:
            if credentials.user is not None and uid is not None:
                os.initgroups(credentials.user, gid)
            else:
                os.setgroups([gid])
            os.setgid(gid)
        if uid is not None:
            os.setuid(uid)
    except OSError as exc:
        who = f"uid {uid}" if uid is not None else f"gid {gid}"
        raise RunnerError(f"cannot switch to {who}: {exc.strerror}") from exc
    if uid is not None and uid != 0:
        try:
            os.setuid(0)
        except OSError:
            pass
        else:
            raise RunnerError("root could be taken back after dropping privileges")
    _log.info(
        "Running as uid %d, gid %d (groups %s)",
        os.getuid(),
        os.getgid(),
        ",".join(map(str, os.getgroups())),
    )
