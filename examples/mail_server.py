import sys
import tempfile

from torsion.cred import InMemoryChecker, Portal
from torsion.internet import Reactor
from torsion.mail import LocalDelivery, MaildirUsers, MailRealm
from torsion.mail.pop3 import POP3Factory
from torsion.mail.smtp import SMTPFactory

reactor = Reactor()
maildirs = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="maildirs-")
# The mail server: alice's Maildir, mail for alice@example.test stored in it, SMTP in.
users = MaildirUsers(maildirs, users=["alice"], threads=reactor)
delivery = LocalDelivery(users, ["example.test"])
smtp = reactor.listen_tcp(0, SMTPFactory(delivery, clock=reactor), interface="127.0.0.1")
# POP3 out, where alice logs in with her password (in clear text: a test box only).
checker = InMemoryChecker({"alice": "s3cret"})
portal = Portal(MailRealm(users, delivery), [checker], clock=reactor)
pop3 = POP3Factory(portal, clock=reactor, plaintext_without_tls=True)
pop3_listener = reactor.listen_tcp(0, pop3, interface="127.0.0.1")
print(f"SMTP on 127.0.0.1:{smtp.port}, POP3 on 127.0.0.1:{pop3_listener.port}, mail in {maildirs}")
reactor.run()  # until Ctrl-C or SIGTERM
reactor.close()
