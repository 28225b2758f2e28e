"""Chaining resolvers: ask each in turn until one answers.

A resolver that has nothing to say raises ``NotMineError`` and the chain
asks the next; any other outcome (an answer, negative ones included, or
another error) is the chain's. The usual chain is hosts file, cache,
network::

    chain = ResolverChain([HostsResolver(), CacheResolver(reactor), DNSClient(reactor)])

Each ``CacheResolver`` in the chain is given what the resolvers after it
answer, so that the next time it answers itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from torsion.defer import Deferred
from torsion.names._answer import Answer, DNSResolver, NotMineError, Question
from torsion.names._cache import CacheResolver

__all__ = ["ResolverChain"]


class ResolverChain:
    """Asks each resolver in turn, skipping those that say "not mine".

    Args:
        resolvers: The resolvers, in the order to ask them.

    Raises:
        ValueError: ``resolvers`` is empty.
    """

    def __init__(self, resolvers: Sequence[DNSResolver]) -> None:
        if not resolvers:
            raise ValueError("a resolver chain needs at least one resolver")
        self.resolvers = tuple(resolvers)

    def query(self, question: Question) -> Deferred[Answer]:
        """Ask the resolvers in turn.

        Returns:
            A Deferred firing with the first answer, or failing with the
            first error other than ``NotMineError`` (``NotMineError`` if no
            resolver knew). Cancelling it cancels the resolver being asked.
        """
        current: list[Deferred[Answer]] = []

        def cancel(_: Deferred[Answer]) -> None:
            if current:
                current[-1].cancel()

        result: Deferred[Answer] = Deferred(cancel)

        def ask(index: int) -> None:
            if index == len(self.resolvers):
                result.errback(NotMineError(str(question)))
                return
            d = self.resolvers[index].query(question)
            current.append(d)
            d.add_callbacks(lambda answer: answered(index, answer), lambda exc: failed(index, exc))

        def answered(index: int, answer: Answer) -> None:
            current.clear()
            for resolver in self.resolvers[:index]:
                if isinstance(resolver, CacheResolver):
                    resolver.add(question, answer)
            if not result.called:
                result.callback(answer)

        def failed(index: int, exc: BaseException) -> None:
            current.clear()
            if result.called:
                return
            if isinstance(exc, NotMineError):
                ask(index + 1)
            else:
                result.errback(exc)

        ask(0)
        return result

    def __repr__(self) -> str:
        return f"<ResolverChain of {len(self.resolvers)}>"
