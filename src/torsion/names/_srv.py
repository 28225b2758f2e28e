"""SRV records (RFC 2782): the order to try a service's targets, and an endpoint that does.

``SRVClientEndpoint`` asks a resolver (a ``DNSClient``, a chain) where a
service is, then connects to the targets in the RFC's order until one
accepts::

    endpoint = SRVClientEndpoint(reactor, client, "xmpp-client", "example.org")
    protocol = await endpoint.connect(factory)
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import dns.name
import dns.rdatatype

from torsion.defer import Deferred, ensure_deferred
from torsion.errors import DNSLookupError
from torsion.internet import Address, Connector
from torsion.names._answer import DNSResolver, Question
from torsion.names._client import to_name

__all__ = ["SRVClientEndpoint", "order_srv"]

P = TypeVar("P", bound=asyncio.BaseProtocol)


class _ConnectsTCP(Protocol):
    def connect_tcp(
        self,
        host: str,
        port: int,
        factory: Callable[[Address], P],
        *,
        timeout: float | None = 30.0,
    ) -> Connector[P]: ...


class SRVClientEndpoint:
    """Connects to a service where its SRV records say it is (RFC 2782).

    ``connect`` asks for ``_service._proto.domain`` SRV records and tries
    the targets in the RFC's order (lowest priority first; within a priority,
    a random pick weighted by ``weight``), each through ``reactor.connect_tcp``
    (which resolves the target's name), until one connects. A single record
    whose target is "." says the service is not offered there. Without SRV
    records (NXDOMAIN, NODATA), ``fallback_port`` on the domain itself is
    tried, if given.

    Args:
        reactor: Connects (and resolves the targets' names).
        resolver: Answers the SRV question (a ``DNSClient``, a chain).
        service: The service name, without its underscore ("xmpp-client").
        domain: The domain offering it.
        proto: The transport label, "tcp" by default.
        fallback_port: Where to connect on ``domain`` when it has no SRV records.
        timeout: Seconds each connection attempt may take.
    """

    def __init__(
        self,
        reactor: _ConnectsTCP,
        resolver: DNSResolver,
        service: str,
        domain: str,
        *,
        proto: str = "tcp",
        fallback_port: int | None = None,
        timeout: float | None = 30.0,
    ) -> None:
        self._reactor = reactor
        self.resolver = resolver
        self.domain = domain
        self.name = to_name(f"_{service}._{proto}.{domain.rstrip('.')}")
        self.fallback_port = fallback_port
        self.timeout = timeout

    def connect(self, factory: Callable[[Address], P]) -> Deferred[P]:
        """Connect to the first target that accepts.

        Returns:
            A Deferred firing with the protocol, or failing with
            ``DNSLookupError`` (no SRV records and no fallback, or the
            service is refused with "."), or the last target's connection
            error. Cancel it to stop.
        """
        return ensure_deferred(self._connect(factory))

    async def _connect(self, factory: Callable[[Address], P]) -> P:
        answer = await self.resolver.query(Question(self.name, dns.rdatatype.SRV))
        records = [
            rdata
            for rrset in answer.answer
            if rrset.rdtype == dns.rdatatype.SRV
            for rdata in rrset
        ]
        if len(records) == 1 and records[0].target == dns.name.root:
            raise DNSLookupError(str(self.name), "the service is not offered (SRV target '.')")
        targets = [
            (record.target.to_text(omit_final_dot=True), int(record.port))
            for record in order_srv(records)
            if record.target != dns.name.root
        ]
        if not targets:
            if self.fallback_port is None:
                raise DNSLookupError(str(self.name), "no SRV records")
            targets = [(self.domain, self.fallback_port)]
        last: BaseException | None = None
        for host, port in targets:
            try:
                return await self._reactor.connect_tcp(host, port, factory, timeout=self.timeout)
            except (OSError, TimeoutError) as exc:
                last = exc
        assert last is not None
        raise last

    def __repr__(self) -> str:
        return f"<SRVClientEndpoint {self.name}>"


def order_srv(records: Sequence[Any]) -> list[Any]:
    """Put SRV records in the order to try them (RFC 2782, "Usage rules").

    Lowest priority first; within a priority, repeatedly pick one at random
    with a chance in proportion to its weight (weight 0 ones rarely first).

    Args:
        records: SRV rdata (with ``priority``, ``weight``, ``target``, ``port``).

    Returns:
        The same records, ordered.
    """
    ordered: list[Any] = []
    for priority in sorted({record.priority for record in records}):
        # Weight 0 first, as the RFC says, so that they are picked only by chance 0 draws.
        group = sorted(
            (record for record in records if record.priority == priority),
            key=lambda record: record.weight != 0,
        )
        while group:
            total = sum(record.weight for record in group)
            pick = random.randint(0, total)
            running = 0
            for index, record in enumerate(group):
                running += record.weight
                if running >= pick:
                    ordered.append(group.pop(index))
                    break
    return ordered
