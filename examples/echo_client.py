import sys

from torsion.defer import Deferred
from torsion.internet import Protocol, Reactor, react


class EchoClient(Protocol):
    def __init__(self) -> None:
        self.received, self.done = bytearray(), Deferred[bytes]()

    def data_received(self, data: bytes) -> None:
        self.received += data
        if self.received.endswith(b"\n"):  # the whole line is back
            self.transport.close()
            self.done.callback(bytes(self.received))


async def main(reactor: Reactor, port: str = "8000") -> None:
    client = await reactor.connect_tcp("127.0.0.1", int(port), lambda address: EchoClient())
    client.transport.write(b"hello, torsion\n")
    print((await client.done).decode(), end="")


react(main, sys.argv[1:])  # python examples/echo_client.py [PORT]
