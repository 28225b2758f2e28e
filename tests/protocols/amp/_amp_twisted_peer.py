"""A Twisted AMP peer for the interop tests, run as a child process.

Usage: python _amp_twisted_peer.py server
       python _amp_twisted_peer.py client PORT

``server`` listens on 127.0.0.1, port 0, prints ``PORT n`` and serves the
commands of ``_amp_commands`` (declared here with Twisted's AMP) until its
standard input closes. ``AllTypes`` checks that what it received is one of
the samples (else it answers the error ``MISMATCH``) and echoes it; ``Relay``
calls ``Double`` back on the caller.

``client`` connects to PORT, calls a torsion server through every command,
and prints ``RESULT`` and a JSON object: each check's name and "ok", or what
went wrong. It has a ``Double`` responder for the server to call back.

Twisted's reactor cannot share the tests' event loop, hence the process. The
module installs no reactor when imported: the tests import its Twisted
declarations to compare encodings.
"""

# Twisted declares commands with class attributes, which ruff would have
# annotated as ClassVar; Twisted's own classes do not annotate them.
# ruff: noqa: RUF012

from __future__ import annotations

import json
import sys
from typing import Any

from _amp_commands import SAMPLES, ExplodeError, canonical
from twisted.internet import defer, protocol
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.protocols import amp

ALL_TYPES = [
    (b"i", amp.Integer()),
    (b"s", amp.String()),
    (b"u", amp.Unicode()),
    (b"t", amp.Boolean()),
    (b"flt", amp.Float()),
    (b"d", amp.Decimal()),
    (b"dt", amp.DateTime()),
    (b"li", amp.ListOf(amp.Integer())),
    (b"lu", amp.ListOf(amp.Unicode())),
    (
        b"al",
        amp.AmpList(
            [
                (b"i", amp.Integer()),
                (b"u", amp.Unicode()),
                (b"inner", amp.AmpList([(b"x", amp.Float())])),
            ]
        ),
    ),
    (b"opt", amp.Integer(optional=True)),
    (b"from", amp.Unicode()),
    (b"dash-name", amp.Integer()),
]
# Twisted's Python names for the wire names that are not identifiers.
TO_TWISTED = {"from_": "From"}
FROM_TWISTED = {v: k for k, v in TO_TWISTED.items()}


class MismatchError(Exception):
    pass


class AllTypes(amp.Command):
    arguments = ALL_TYPES
    response = ALL_TYPES
    errors = {MismatchError: b"MISMATCH"}


class Divide(amp.Command):
    arguments = [(b"numerator", amp.Integer()), (b"denominator", amp.Integer())]
    response = [(b"result", amp.Float())]
    errors = {ZeroDivisionError: b"ZERO_DIVISION"}


class Explode(amp.Command):
    fatalErrors = {ExplodeError: b"EXPLODED"}  # noqa: N815 - Twisted's name


class Fail(amp.Command):
    pass


class Note(amp.Command):
    arguments = [(b"text", amp.Unicode())]
    requiresAnswer = False  # noqa: N815 - Twisted's name


class Noted(amp.Command):
    response = [(b"texts", amp.ListOf(amp.Unicode()))]


class Double(amp.Command):
    arguments = [(b"x", amp.Integer())]
    response = [(b"x", amp.Integer())]


class Relay(amp.Command):
    arguments = [(b"x", amp.Integer())]
    response = [(b"x", amp.Integer())]


class Missing(amp.Command):
    pass


def to_twisted(values: dict[str, Any]) -> dict[str, Any]:
    return {TO_TWISTED.get(k, k): v for k, v in values.items() if v is not None}


def from_twisted(values: dict[str, Any]) -> dict[str, Any]:
    return {FROM_TWISTED.get(k, k): v for k, v in values.items()}


SAMPLE_FORMS = [canonical(sample) for sample in SAMPLES]


class Server(amp.AMP):
    def __init__(self) -> None:
        super().__init__()
        self.notes: list[str] = []

    @AllTypes.responder
    def all_types(self, **values: Any) -> dict[str, Any]:
        received = from_twisted(values)
        if canonical(received) not in SAMPLE_FORMS:
            raise MismatchError(f"received {received!r}")
        return values

    @Divide.responder
    def divide(self, numerator: int, denominator: int) -> dict[str, float]:
        return {"result": numerator / denominator}

    @Explode.responder
    def explode(self) -> dict[str, Any]:
        raise ExplodeError("boom")

    @Fail.responder
    def fail(self) -> dict[str, Any]:
        raise RuntimeError("an error nobody declared")

    @Note.responder
    def note(self, text: str) -> dict[str, Any]:
        self.notes.append(text)
        return {}

    @Noted.responder
    def noted(self) -> dict[str, Any]:
        return {"texts": self.notes}

    @Double.responder
    def double(self, x: int) -> dict[str, int]:
        return {"x": 2 * x}

    @Relay.responder
    @defer.inlineCallbacks
    def relay(self, x: int) -> Any:
        answer = yield self.callRemote(Double, x=x)
        return {"x": answer["x"]}


class Control(protocol.Protocol):
    """Standard input: its end stops the reactor."""

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802 - Twisted's name
        from twisted.internet import reactor

        if reactor.running:
            reactor.stop()


def serve() -> None:
    from twisted.internet import reactor, stdio

    # Twisted's log (the tracebacks of failed responders) goes to stderr.
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Server), interface="127.0.0.1")
    print(f"PORT {port.getHost().port}", flush=True)
    stdio.StandardIO(Control())
    reactor.run()


class Client(amp.AMP):
    def __init__(self) -> None:
        super().__init__()
        self.lost: defer.Deferred[None] = defer.Deferred()

    @Double.responder
    def double(self, x: int) -> dict[str, int]:
        return {"x": 2 * x}

    def connectionLost(self, reason: Any) -> None:  # noqa: N802 - Twisted's name
        super().connectionLost(reason)
        self.lost.callback(None)


async def expect_error(results: dict[str, str], name: str, call: Any, error: type) -> None:
    try:
        await call
    except error as exc:
        results[name] = "ok"
        # Twisted's remote errors keep the description apart; others in args.
        description = getattr(exc, "description", None)
        results[name + " description"] = description or (exc.args[-1] if exc.args else "")
    except Exception as exc:
        results[name] = f"failed with {exc!r} instead of {error.__name__}"
    else:
        results[name] = f"did not fail with {error.__name__}"


async def run_client(port: int) -> dict[str, str]:
    from twisted.internet import endpoints, reactor

    results: dict[str, str] = {}
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    client: Client = await endpoints.connectProtocol(endpoint, Client())
    for n, sample in enumerate(SAMPLES):
        try:
            answer = await client.callRemote(AllTypes, **to_twisted(sample))
        except Exception as exc:
            results[f"all types {n}"] = f"failed: {exc!r}"
            continue
        same = canonical(from_twisted(answer)) == canonical(sample)
        results[f"all types {n}"] = "ok" if same else f"echoed {answer!r}"
    answer = await client.callRemote(Divide, numerator=7, denominator=2)
    results["divide"] = "ok" if answer == {"result": 3.5} else repr(answer)
    await expect_error(
        results,
        "declared error",
        client.callRemote(Divide, numerator=1, denominator=0),
        ZeroDivisionError,
    )
    await expect_error(results, "unhandled", client.callRemote(Missing), amp.UnhandledCommand)
    await expect_error(results, "unknown", client.callRemote(Fail), amp.UnknownRemoteError)
    client.callRemote(Note, text="first")
    client.callRemote(Note, text="second \u00e9")
    answer = await client.callRemote(Noted)
    results["no answer"] = (
        "ok" if answer == {"texts": ["first", "second \u00e9"]} else repr(answer)
    )
    answer = await client.callRemote(Relay, x=21)
    results["relay"] = "ok" if answer == {"x": 42} else repr(answer)
    answers = await defer.gatherResults(
        [defer.Deferred.fromCoroutine(_double(client, x)) for x in range(200)]
    )
    results["concurrent"] = "ok" if answers == [2 * x for x in range(200)] else repr(answers)
    await expect_error(results, "fatal", client.callRemote(Explode), ExplodeError)
    await client.lost
    results["closed after fatal"] = "ok"
    return results


async def _double(client: Client, x: int) -> int:
    answer = await client.callRemote(Double, x=x)
    return int(answer["x"])


def call(port: int) -> None:
    from twisted.internet import reactor

    outcome: dict[str, Any] = {}

    def done(results: dict[str, str]) -> None:
        outcome.update(results)
        reactor.stop()

    def failed(failure: Any) -> None:
        outcome["client"] = failure.getTraceback()
        reactor.stop()

    def too_slow() -> None:
        outcome["client"] = "timed out"
        reactor.stop()

    d = defer.Deferred.fromCoroutine(run_client(port))
    d.addCallbacks(done, failed)
    timer = reactor.callLater(20, too_slow)
    reactor.run()
    if timer.active():
        timer.cancel()
    print("RESULT " + json.dumps(outcome), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve()
    else:
        call(int(sys.argv[2]))
