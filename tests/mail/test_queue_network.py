"""MailQueue through Relay on 127.0.0.1: DNS from a torsion DNSServer, aiosmtpd receiving."""

from __future__ import annotations

import email
import email.policy
import os
from pathlib import Path

import pytest
from _aiosmtpd import Handler, serving

from _servers import BOTH_LOOPS
from torsion.internet import Reactor
from torsion.mail import MailQueue
from torsion.mail._relay import Relay
from torsion.names import Authority, DNSClient, DNSServer

pytestmark = pytest.mark.integration

ZONE = """\
$ORIGIN test.
$TTL 300
@        SOA  ns hostmaster 1 3600 600 86400 300
@        NS   ns
ns       A    127.0.0.1
there    MX   10 mx.there
mx.there A    127.0.0.1
here     MX   10 mx.there
"""

MESSAGE = b"From: a@here.test\r\nTo: x@there.test\r\nSubject: queued\r\n\r\nbody\r\n"


@BOTH_LOOPS
async def test_queue_delivers_and_bounces(reactor: Reactor, loop: str, tmp_path: Path) -> None:
    handler = Handler(refuse={"nobody@there.test"})
    ports = DNSServer([Authority.from_text(ZONE)]).listen(reactor, 0)
    try:
        resolver = DNSClient(reactor, [("127.0.0.1", ports.port)], timeout=5.0, attempts=1)
        async with serving(handler) as port:
            relay = Relay(reactor, resolver, helo="relay.test", port=port)
            queue = MailQueue(reactor, tmp_path, relay.deliver, hostname="relay.test")
            queue.start()
            queue.enqueue("a@here.test", ["x@there.test", "nobody@there.test"], MESSAGE)
            await queue.wait_empty()
            queue.stop()
    finally:
        await ports.stop_listening()
    assert os.listdir(tmp_path) == []
    delivered, bounce = handler.messages
    assert (delivered.sender, delivered.recipients) == ("a@here.test", ["x@there.test"])
    assert delivered.data == MESSAGE
    # The refusal came back to the sender, from <>, as a delivery report.
    assert (bounce.sender, bounce.recipients) == ("", ["a@here.test"])
    report = email.message_from_bytes(bounce.data, policy=email.policy.default)
    assert report.get_content_type() == "multipart/report"
    assert b"Final-Recipient: rfc822; nobody@there.test" in bounce.data
    assert b"Diagnostic-Code: smtp; 550 5.1.1 no such user" in bounce.data
