"""``torsion mail``: a small mail server, SMTP in, POP3 and IMAP out, over users' Maildirs.

``--maildir DIR`` holds one Maildir per user (``DIR/alice``), made on
first use. ``--domain NAME`` (repeatable) names the local domains:
SMTP takes mail for their users and stores it in the user's INBOX before
it answers 250, and POP3 and IMAP sessions of that user see it at once
(an IMAP session in IDLE is told of it). An unknown user of a local
domain gets ``550 5.1.1`` at RCPT; a recipient elsewhere gets ``550
5.7.1`` unless ``--relay`` is given and the client logged in (AUTH), in
which case the message goes to a queue on disk
(``--queue DIR``, by default ``DIR/.queue``) and on to the recipient's
mail exchangers (MX records, retried with backoff, bounced when it fails).

Users and their passwords: ``--user USER:PASSWORD`` (repeatable) and
``--auth CHECKER`` (a ``torsion.cred`` checker string: ``memory:``,
``file:`` for an htpasswd file, ``unix`` for PAM). When a checker other
than ``memory:`` is given, any user with a Maildir under ``--maildir`` is
a local user; otherwise exactly the users named are. Mail for
``postmaster`` at each local domain, and for the bare ``<Postmaster>``
(RFC 5321 section 4.5.1), goes to ``--postmaster USER``, by default the
first ``--user``.

What it serves (at least one): ``--smtp ENDPOINT``, ``--pop3 ENDPOINT``
and ``--imap ENDPOINT`` (repeatable; any server endpoint string, ``tls:``
for implicit TLS as on ports 465, 995 and 993). ``--certificate FILE``
(with ``--private-key FILE`` when the key is not in it) offers STARTTLS
(RFC 3207, RFC 3501 section 6.2.1) and STLS (RFC 2595) on the plain
ones. Passwords are taken only over TLS unless ``--allow-plaintext-auth``
is given (for tests and local use).
``--max-message-size`` bounds a message (SMTP's SIZE, enforced), and
``--fsync`` makes each delivery durable on disk before its 250.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from torsion.application._app import Application
from torsion.application._plugins import Option, Plugin
from torsion.application._service import BaseService
from torsion.application._tcp_options import LIMIT_OPTIONS, check_password_checker, serve
from torsion.internet import Address, IPv4Address, IPv6Address, Reactor

__all__ = ["MAIL", "parse_user"]

log = logging.getLogger(__name__)

#: SMTP's own default, advertised as SIZE (RFC 1870).
_DEFAULT_MAX_MESSAGE_SIZE = 10 * 1024 * 1024
#: Room in a store for the header lines SMTP adds above a message's content.
_HEADER_ROOM = 16 * 1024


def parse_user(text: str) -> tuple[str, str]:
    """``USER:PASSWORD`` to its parts (the password may hold colons).

    Raises:
        ValueError: It is not USER:PASSWORD, or the user cannot name a Maildir.
    """
    from torsion.mail._users import NoSuchUserError, check_user_name

    user, colon, password = text.partition(":")
    if not colon or not user or not password:
        raise ValueError("--user: expected USER:PASSWORD")
    try:
        check_user_name(user)
    except NoSuchUserError:
        raise ValueError(f"--user: {user!r} cannot be a user name") from None
    return user, password


def _check_user(text: str) -> str:
    parse_user(text)
    return text


def _check_user_name(text: str) -> str:
    from torsion.mail._users import NoSuchUserError, check_user_name

    try:
        return check_user_name(text)
    except NoSuchUserError as exc:
        raise ValueError(f"{text!r} cannot name a Maildir") from exc


def _check_domain(text: str) -> str:
    domain = text.strip().rstrip(".").lower()
    if not domain or any(c in domain for c in " \t@/:[]<>"):
        raise ValueError(f"--domain: not a domain name: {text!r}")
    return domain


def _positive(number: int) -> int:
    if number < 1:
        raise ValueError(f"--max-message-size: must be 1 or more, not {number}")
    return number


def _host(address: Address) -> str | None:
    if not isinstance(address, IPv4Address | IPv6Address):
        return None
    host = address.host
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return host


def _smtp_hint(domain: str, secure: bool) -> Callable[[Address], str | None]:
    def hint(address: Address) -> str | None:
        host = _host(address)
        if host is None or not isinstance(address, IPv4Address | IPv6Address):
            return None
        tls = " --tlsc" if secure else ""
        return f"swaks --server {host}:{address.port}{tls} --to USER@{domain}"

    return hint


def _pop3_hint(secure: bool) -> Callable[[Address], str | None]:
    def hint(address: Address) -> str | None:
        host = _host(address)
        if host is None or not isinstance(address, IPv4Address | IPv6Address):
            return None
        shown = f"[{host}]" if ":" in host else host
        scheme = "pop3s" if secure else "pop3"
        return f"curl -k -u USER {scheme}://{shown}:{address.port}/"

    return hint


def _imap_hint(secure: bool) -> Callable[[Address], str | None]:
    def hint(address: Address) -> str | None:
        host = _host(address)
        if host is None or not isinstance(address, IPv4Address | IPv6Address):
            return None
        shown = f"[{host}]" if ":" in host else host
        scheme = "imaps" if secure else "imap"
        return f"curl -k -u USER '{scheme}://{shown}:{address.port}/INBOX?ALL'"

    return hint


class _MakeMaildirs(BaseService):
    """Makes the named users' Maildirs at start, when the stores take any user with one."""

    def __init__(self, root: str, users: list[str]) -> None:
        super().__init__()
        self.root = root
        self.users = users

    def start_service(self) -> None:
        from torsion.application._errors import RunnerError

        super().start_service()
        try:
            for user in self.users:
                for part in ("cur", "new", "tmp"):
                    os.makedirs(os.path.join(self.root, user, part), mode=0o700, exist_ok=True)
        except OSError as exc:
            raise RunnerError(f"--maildir: cannot make the users' Maildirs: {exc}") from exc


class _Closing(BaseService):
    """Starts and stops the outbound queue, and closes the DNS client after it."""

    def __init__(self, queue: Any, resolver: Any) -> None:
        super().__init__()
        self.queue = queue
        self.resolver = resolver

    def start_service(self) -> None:
        from torsion.application._errors import RunnerError

        super().start_service()
        try:
            self.queue.start()
        except OSError as exc:
            raise RunnerError(f"--queue: cannot use {self.queue.directory}: {exc}") from exc

    def stop_service(self) -> Any:
        super().stop_service()
        self.queue.stop()
        return self.resolver.close()


def _tls(options: Mapping[str, Any]) -> Any:
    from torsion.errors import TLSConfigError
    from torsion.internet import server_tls

    certificate, key = options["certificate"], options["private_key"]
    if certificate is None:
        if key is not None:
            raise ValueError("--private-key goes with --certificate")
        return None
    try:
        return server_tls(certificate, key)
    except TLSConfigError as exc:
        raise ValueError(f"--certificate: {exc}") from exc


def _build(reactor: Reactor, options: Mapping[str, Any]) -> Application:
    from torsion.cred import InMemoryChecker, Portal, checker_from_string
    from torsion.cred._strings import split_auth_string
    from torsion.mail import LocalDelivery, MaildirUsers, MailQueue, MailRealm, local_first
    from torsion.mail.pop3 import POP3Factory
    from torsion.mail.smtp import SMTPFactory, SMTPLimits

    smtp_listens: list[str] = options["smtp"]
    pop3_listens: list[str] = options["pop3"]
    imap_listens: list[str] = options["imap"]
    if not smtp_listens and not pop3_listens and not imap_listens:
        raise ValueError(
            "give something to serve: --smtp ENDPOINT, --pop3 ENDPOINT and/or --imap ENDPOINT"
        )
    domains: list[str] = options["domain"]
    if not domains:
        raise ValueError("give the local domains: --domain NAME (repeatable)")
    passwords: dict[str, str] = {}
    for text in options["user"]:
        user, password = parse_user(text)
        if user in passwords:
            raise ValueError(f"--user: {user!r} given twice")
        passwords[user] = password
    auth: list[str] = options["auth"]
    if not passwords and not auth:
        raise ValueError("give the users: --user USER:PASSWORD or --auth CHECKER")
    checkers: list[Any] = [InMemoryChecker(passwords)] if passwords else []
    checkers += [checker_from_string(text, threads=reactor) for text in auth]
    named = list(passwords)
    for text in auth:
        if text.startswith("memory:"):
            named += split_auth_string(text)[1::2]
    only_named = all(text.startswith("memory:") for text in auth)
    root = os.path.abspath(options["maildir"])
    hostname: str | None = options["hostname"]
    size: int = options["max_message_size"]
    users = MaildirUsers(
        root,
        users=named if only_named else None,
        threads=reactor,
        fsync=options["fsync"],
        # SMTP bounds the content; the store also gets the Received: header
        # SMTP puts on top, so a message SMTP took is never refused after.
        max_message_size=size + _HEADER_ROOM,
    )
    tls = _tls(options)
    app = Application("mail service")
    if not only_named and named:
        app.add_service(_MakeMaildirs(root, named))
    queue = None
    if options["relay"]:
        # The relay asks DNS through torsion.names (dnspython): imported here.
        from torsion.mail import Relay
        from torsion.names import DNSClient

        resolver = DNSClient(reactor)
        relay = Relay(reactor, resolver, helo=hostname)
        directory = options["queue"] or os.path.join(root, ".queue")
        # Bounces to local senders go straight into their INBOX.
        deliver = local_first(users, domains, relay.deliver)
        queue = MailQueue(reactor, directory, deliver, hostname=hostname)
        # Added before the ports: the queue runs before mail comes in.
        app.add_service(_Closing(queue, resolver))
    elif options["queue"] is not None:
        raise ValueError("--queue holds relayed mail: give --relay too")
    postmaster: str | None = options["postmaster"]
    if postmaster is None and named:
        postmaster = named[0]
    if postmaster is not None and only_named and postmaster not in named:
        raise ValueError(f"--postmaster: {postmaster!r} is not one of the users")
    if postmaster is None:
        log.warning(
            "no --postmaster: mail for postmaster@%s is refused unless a user "
            "named 'postmaster' has a Maildir",
            domains[0],
        )
    delivery = LocalDelivery(users, domains, queue=queue, postmaster=postmaster)
    portal = Portal(MailRealm(users, delivery), checkers, clock=reactor)
    plaintext = options["allow_plaintext_auth"]
    if smtp_listens:
        smtp = SMTPFactory(
            delivery,
            clock=reactor,
            hostname=hostname,
            portal=portal,
            tls=tls,
            limits=SMTPLimits(max_message_size=size),
            auth_without_tls=plaintext,
        )
        for text in smtp_listens:
            serve(
                app,
                reactor,
                [text],
                smtp,
                options,
                description=f"SMTP server for {', '.join(domains)}",
                hint=_smtp_hint(domains[0], text.startswith(("tls:", "ssl:"))),
            )
    if pop3_listens:
        pop3 = POP3Factory(
            portal, clock=reactor, hostname=hostname, tls=tls, plaintext_without_tls=plaintext
        )
        for text in pop3_listens:
            serve(
                app,
                reactor,
                [text],
                pop3,
                options,
                description=f"POP3 server for the Maildirs in {root}",
                hint=_pop3_hint(text.startswith(("tls:", "ssl:"))),
            )
    if imap_listens:
        from torsion.mail.imap import IMAP4Factory

        imap = IMAP4Factory(
            portal, clock=reactor, hostname=hostname, tls=tls, plaintext_without_tls=plaintext
        )
        for text in imap_listens:
            serve(
                app,
                reactor,
                [text],
                imap,
                options,
                description=f"IMAP server for the Maildirs in {root}",
                hint=_imap_hint(text.startswith(("tls:", "ssl:"))),
            )
    return app


MAIL = Plugin(
    name="mail",
    description="a mail server: SMTP in, POP3 and IMAP out, users' Maildirs in between",
    options=(
        Option(
            "maildir",
            "the directory of the users' Maildirs (DIR/USER)",
            required=True,
            metavar="DIR",
        ),
        Option(
            "domain",
            "a local domain: mail to USER@NAME is stored for USER",
            repeatable=True,
            check=_check_domain,
            metavar="NAME",
        ),
        Option(
            "user",
            "a user and their password",
            repeatable=True,
            check=_check_user,
            metavar="USER:PASSWORD",
        ),
        Option(
            "auth",
            "check passwords with this checker: memory:USER:PASSWORD[:...], "
            "file:HTPASSWD, unix (PAM); with file: or unix, a local user is "
            "anyone with a Maildir in --maildir",
            repeatable=True,
            check=check_password_checker,
            metavar="CHECKER",
        ),
        Option(
            "smtp",
            "serve SMTP here: an endpoint string such as tcp:25 or tls:465:privateKey=key.pem",
            repeatable=True,
            metavar="ENDPOINT",
        ),
        Option(
            "pop3",
            "serve POP3 here: an endpoint string such as tcp:110 or tls:995:privateKey=key.pem",
            repeatable=True,
            metavar="ENDPOINT",
        ),
        Option(
            "imap",
            "serve IMAP4rev1 here: an endpoint string such as tcp:143 or "
            "tls:993:privateKey=key.pem",
            repeatable=True,
            metavar="ENDPOINT",
        ),
        Option(
            "certificate",
            "offer STARTTLS and STLS with this certificate (PEM, with its key "
            "unless --private-key is given)",
            metavar="FILE",
        ),
        Option("private-key", "the certificate's private key (PEM)", metavar="FILE"),
        Option(
            "relay",
            "accept mail for other domains from clients that logged in, and "
            "deliver it to their mail exchangers through the queue",
            type=bool,
        ),
        Option(
            "queue",
            "the outbound queue's directory (default: .queue in --maildir)",
            metavar="DIR",
        ),
        Option(
            "allow-plaintext-auth",
            "take passwords without TLS (for tests and local use only)",
            type=bool,
        ),
        Option(
            "max-message-size",
            "refuse messages over BYTES",
            type=int,
            default=_DEFAULT_MAX_MESSAGE_SIZE,
            check=_positive,
            metavar="BYTES",
        ),
        Option(
            "fsync",
            "fsync each delivered message before answering 250",
            type=bool,
        ),
        Option(
            "hostname",
            "the server's name in greetings and Received: headers (default: this host's)",
            metavar="NAME",
        ),
        Option(
            "postmaster",
            "the user who gets mail for postmaster at each local domain (RFC "
            "5321 requires it; default: the first --user, else a user named "
            "postmaster)",
            check=_check_user_name,
            metavar="USER",
        ),
        *LIMIT_OPTIONS,
    ),
    build=_build,
)
