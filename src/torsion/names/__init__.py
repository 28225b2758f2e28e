"""torsion.names: DNS, a client and a server framework, on dnspython's messages and zones.

Every part answers ``Question``s with ``Answer``s through the ``DNSResolver``
interface, so that resolvers chain: hosts file, cache, zones, the network.
Needs the ``names`` extra (dnspython).
"""

from torsion.names._answer import Answer, DNSResolver, NotMineError, Question

__all__ = ["Answer", "DNSResolver", "NotMineError", "Question"]
