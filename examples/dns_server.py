import sys

from torsion.internet import Reactor
from torsion.names import Authority, DNSServer

ZONE = """\
$ORIGIN example.test.
@    3600 IN SOA ns hostmaster 1 3600 600 86400 300
@         IN NS  ns
ns        IN A   127.0.0.1
www       IN A   192.0.2.10
mail      IN CNAME www
"""

reactor = Reactor()
port = int(sys.argv[1]) if len(sys.argv) > 1 else 5353
ports = DNSServer([Authority.from_text(ZONE)]).listen(reactor, port)
print(f"try: dig @127.0.0.1 -p {ports.port} mail.example.test")
reactor.run()  # until Ctrl-C or SIGTERM
reactor.close()
