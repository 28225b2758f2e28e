"""Zones defined in Python files (``torsion dns --pyzone FILE``).

The file is run as a Python module and must define ``zone``, either:

- a ``dns.zone.Zone`` (built with dnspython: ``dns.zone.from_text``,
  ``dns.zone.Zone(origin)`` and its ``replace_rdataset``...), or
- a string of BIND master-file text (RFC 1035 section 5), which names its
  origin with ``$ORIGIN`` or with a module-level ``origin`` string.

For example::

    serial = 2026112401
    zone = f'''
    $ORIGIN example.test.
    $TTL 3600
    @    IN SOA ns1 hostmaster {serial} 7200 900 1209600 300
         IN NS  ns1
    ns1  IN A   192.0.2.53
    '''

The file is code, run with the server's privileges: it is the operator's,
like the server's own configuration, never a peer's. ``reload`` runs it
again (SIGHUP), so a zone may be computed from whatever the file reads.
"""

from __future__ import annotations

import os
import runpy

import dns.exception
import dns.zone

from torsion.names._zone import Authority, ZoneError

__all__ = ["PythonZoneAuthority", "load_python_zone"]


def load_python_zone(path: str | os.PathLike[str]) -> dns.zone.Zone:
    """Run the Python file ``path`` and return the zone its ``zone`` defines.

    Raises:
        ZoneError: The file cannot be read or run, defines no ``zone``, or
            its zone is not valid (no absolute origin, a syntax error...).
    """
    name = os.fspath(path)
    try:
        namespace = runpy.run_path(name, run_name="torsion_pyzone")
    except OSError as exc:
        raise ZoneError(f"cannot read zone file {name!r}: {exc.strerror}") from exc
    except (Exception, SystemExit) as exc:
        # Whatever the operator's code raised: one line for the log, not a traceback.
        raise ZoneError(f"zone file {name!r} failed: {type(exc).__name__}: {exc}") from exc
    zone = namespace.get("zone")
    if isinstance(zone, dns.zone.Zone):
        return zone
    if isinstance(zone, str):
        origin = namespace.get("origin")
        if origin is not None and not isinstance(origin, str):
            raise ZoneError(f"zone file {name!r}: origin must be a string")
        try:
            return dns.zone.from_text(zone, origin=origin, relativize=False)
        except (dns.exception.DNSException, ValueError) as exc:
            raise ZoneError(f"zone file {name!r}: {exc}") from exc
    found = "nothing" if zone is None else type(zone).__name__
    raise ZoneError(
        f"zone file {name!r} must define zone as a dns.zone.Zone or BIND text, not {found}"
    )


class PythonZoneAuthority(Authority):
    """Answers for a zone defined in a Python file; ``reload`` runs the file again.

    Args:
        path: The file (see ``load_python_zone``).

    Raises:
        ZoneError: The file does not define a valid zone.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(load_python_zone(path), path=path)

    def reload(self) -> None:
        """Run the file again; the old zone stays if the new one is bad.

        Raises:
            ZoneError: The file no longer defines a valid zone.
        """
        assert self.path is not None
        zone = load_python_zone(self.path)
        if zone.origin != self.origin:
            raise ZoneError(f"the file now defines zone {zone.origin}, not {self.origin}")
        self._set_zone(zone)

    def __repr__(self) -> str:
        return f"<PythonZoneAuthority for {self.origin}>"
