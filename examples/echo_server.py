import sys

from torsion.internet import Protocol, Reactor


class Echo(Protocol):
    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


reactor = Reactor()
port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
listener = reactor.listen_tcp(port, lambda address: Echo(), interface="127.0.0.1")
print(f"echo server on 127.0.0.1:{listener.port}; try: nc 127.0.0.1 {listener.port}")
reactor.run()  # until Ctrl-C or SIGTERM
reactor.close()
