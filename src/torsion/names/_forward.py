"""Forwarding: questions a server does not answer itself go to upstream servers.

A forwarding server asks its upstream servers (with RD set, as every
``DNSClient`` query is) and passes their answers on. To its own clients it
is then a recursive server (RFC 1034 section 4.3.1): it sets RA, and what it
passes on is never authoritative, whatever the upstream said (the AA flag
belongs to the server that holds the zone, RFC 1035 section 4.1.1).

Put a ``CacheResolver`` before it, in a ``ResolverChain``, to keep the
answers for their TTLs::

    upstream = ForwardingResolver(DNSClient(reactor, [("192.0.2.1", 53)]))
    server = DNSServer(
        [*zones, ResolverChain([CacheResolver(reactor), upstream])], recursive=True
    )
"""

from __future__ import annotations

from torsion.defer import Deferred
from torsion.names._answer import Answer, DNSResolver, Question

__all__ = ["ForwardingResolver"]


class ForwardingResolver:
    """Asks another resolver (a ``DNSClient``, usually) and passes its answers on, without AA.

    Args:
        client: Asks the upstream servers.

    Attributes:
        client: As given.
    """

    def __init__(self, client: DNSResolver) -> None:
        self.client = client

    def query(self, question: Question) -> Deferred[Answer]:
        """Ask upstream.

        Returns:
            A Deferred firing with the upstream answer, its AA flag cleared,
            or failing as the client fails (``TimeoutError`` when no server
            answered). Cancelling it cancels the upstream query.
        """
        return self.client.query(question).add_callback(_not_authoritative)

    def __repr__(self) -> str:
        return f"<ForwardingResolver to {self.client!r}>"


def _not_authoritative(answer: Answer) -> Answer:
    return Answer(
        rcode=answer.rcode,
        answer=answer.answer,
        authority=answer.authority,
        additional=answer.additional,
        authoritative=False,
    )
