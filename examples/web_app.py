import sys
from pathlib import Path

from torsion.internet import Reactor
from torsion.web import File, Request, Resource, Site, handles


class Hello(Resource):
    @handles("GET")
    def get(self, request: Request) -> bytes:
        return f"Hello, {request.args.get('name', ['world'])[0]}!\n".encode()


class Echo(Resource):
    @handles("POST")
    async def post(self, request: Request) -> bytes:
        return await request.body()  # read without blocking, within the size limit


reactor = Reactor()
root = Resource()
root.put_child("hello", Hello())
root.put_child("echo", Echo())
root.put_child("static", File(Path(__file__).parent / "site"))
port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
listener = reactor.listen_tcp(port, Site(root, reactor=reactor), interface="127.0.0.1")
print(f"web app on 127.0.0.1:{listener.port}; try: curl 127.0.0.1:{listener.port}/hello?name=you")
reactor.run()  # until Ctrl-C or SIGTERM
reactor.close()
