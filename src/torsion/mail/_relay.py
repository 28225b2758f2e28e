"""Relaying: finding a domain's mail exchangers and handing a message to one.

``Relay.deliver`` groups the recipients by domain and, for each, asks DNS
for the MX records (RFC 5321 section 5.1): the hosts are tried in order of
preference, in random order among equal preferences; a domain without MX
records is its own mail exchanger (the "implicit MX"); a null MX (one
record, ``0 .``, RFC 7505) means the domain takes no mail at all. Each
host's IPv4 and IPv6 addresses are tried in turn until one SMTP session
gives an answer for the message. STARTTLS is used when offered
(opportunistic, RFC 7435): without DANE or MTA-STS there is no name to
hold a mail exchanger's certificate to, so by default it is not verified;
the encryption still defeats passive eavesdropping.

Outcomes are per recipient, like ``send_message``'s: a failure found
before any session (no such domain, null MX, DNS not answering, no host
reachable) is given the reply an MTA would make up for it, with RFC 3463's
enhanced code.
"""

from __future__ import annotations

import logging
import random
import socket
import ssl
from collections.abc import Awaitable, Sequence
from typing import Protocol

import dns.exception
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.MX import MX

from torsion.internet import TCPClientEndpoint, is_ip_address
from torsion.mail.smtp._client import SMTPReactor, send_message
from torsion.mail.smtp._client_core import (
    DeliveryStatus,
    RecipientOutcome,
    Reply,
    SendResult,
    SMTPClientError,
    STARTTLSError,
    domain_of,
)
from torsion.names import DNSResolver, Question

__all__ = ["MessageSender", "Relay", "RelayError"]

log = logging.getLogger(__name__)


class RelayError(SMTPClientError):
    """No mail exchanger of a domain could be used.

    Its ``reply`` is the one made up for the recipients (``permanent``
    says whether to give up).
    """


class MessageSender(Protocol):
    """Sends one message to one server address: ``send_message``, or a fake."""

    def __call__(
        self,
        address: str,
        port: int,
        sender: str,
        recipients: Sequence[str],
        message: bytes,
        *,
        server_hostname: str,
    ) -> Awaitable[SendResult]:
        """Send over one SMTP session to ``address:port``.

        Raises:
            SMTPClientError: The session failed.
            OSError: The connection could not be made.
        """
        ...


def _made_up(code: int, enhanced: str, text: str) -> Reply:
    return Reply(code=code, lines=(text,), enhanced=enhanced)


def _unverified_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Relay:
    """Delivers messages to the mail exchangers of their recipients' domains.

    Args:
        reactor: Gives time and connections.
        resolver: Answers the MX, A and AAAA questions (a ``DNSClient``).
        helo: The name to give in EHLO (this host's name by default).
        port: The SMTP port of every mail exchanger (25; tests use another).
        tls_context: The STARTTLS settings; by default encryption without
            certificate checks (see the module's documentation).
        sender: What sends one message to one address (``send_message``
            with the settings above by default); tests give a fake.
        rng: Orders mail exchangers of equal preference.
    """

    def __init__(
        self,
        reactor: SMTPReactor,
        resolver: DNSResolver,
        *,
        helo: str | None = None,
        port: int = 25,
        tls_context: ssl.SSLContext | None = None,
        sender: MessageSender | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._reactor = reactor
        self.resolver = resolver
        self.helo = helo or socket.getfqdn()
        self.port = port
        self.tls_context = tls_context
        self._send = sender or self._send_message
        self._random = rng or random.Random()

    async def _send_message(
        self,
        address: str,
        port: int,
        sender: str,
        recipients: Sequence[str],
        message: bytes,
        *,
        server_hostname: str,
    ) -> SendResult:
        for tls in ("opportunistic", "none"):
            try:
                return await send_message(
                    self._reactor,
                    TCPClientEndpoint(self._reactor, address, port),
                    sender,
                    recipients,
                    message,
                    helo=self.helo,
                    tls=tls,
                    tls_context=self.tls_context or _unverified_context(),
                    server_hostname=server_hostname,
                )
            except STARTTLSError as exc:
                # Opportunistic: a failed handshake is tried again in clear,
                # as it would have gone had STARTTLS not been offered.
                if tls == "none":  # pragma: no cover - no STARTTLS then
                    raise
                log.info("relay via %s (%s): %s; again without TLS", server_hostname, address, exc)
        raise AssertionError("unreachable")

    async def deliver(
        self, sender: str, recipients: Sequence[str], message: bytes
    ) -> list[RecipientOutcome]:
        """Deliver to every recipient, one domain after another.

        Returns:
            One outcome per recipient, in the order given.
        """
        by_domain: dict[str, list[str]] = {}
        for recipient in recipients:
            by_domain.setdefault(domain_of(recipient), []).append(recipient)
        outcomes: dict[str, RecipientOutcome] = {}
        for domain, group in by_domain.items():
            for outcome in await self.deliver_domain(domain, sender, group, message):
                outcomes[outcome.recipient] = outcome
        return [outcomes[recipient] for recipient in recipients]

    async def deliver_domain(
        self, domain: str, sender: str, recipients: Sequence[str], message: bytes
    ) -> list[RecipientOutcome]:
        """Deliver to recipients that share ``domain``.

        Returns:
            One outcome per recipient, in the order given.
        """
        try:
            hosts = await self.mail_exchangers(domain)
            result = await self._try_hosts(hosts, sender, recipients, message)
        except RelayError as exc:
            reply = exc.reply or _made_up(451, "4.4.0", str(exc))
            status = DeliveryStatus.REFUSED if exc.permanent else DeliveryStatus.TEMPORARY
            log.info("relay to %s: %s", domain, exc)
            return [RecipientOutcome(recipient=r, status=status, reply=reply) for r in recipients]
        return list(result.outcomes)

    async def mail_exchangers(self, domain: str) -> list[str]:
        """Return the hosts that take mail for ``domain``, in the order to try them.

        Raises:
            RelayError: No such domain or a null MX (permanent), or DNS did
                not answer (temporary).
        """
        if domain.startswith("[") and domain.endswith("]"):
            # An address literal (RFC 5321 section 4.1.3): no lookup.
            literal = domain[1:-1]
            if literal[:5].lower() == "ipv6:":
                literal = literal[5:]
            if not is_ip_address(literal):
                raise RelayError("bad address literal", _made_up(553, "5.1.2", domain))
            return [literal]
        try:
            name = dns.name.from_text(domain)
        except dns.exception.DNSException as exc:
            raise RelayError("bad domain", _made_up(553, "5.1.2", f"bad domain {domain}")) from exc
        answer = await self._ask(name, dns.rdatatype.MX)
        if answer is None:
            raise RelayError(
                "no such domain", _made_up(550, "5.1.2", f"domain {domain} does not exist")
            )
        records = [
            rdata for rrset in answer if rrset.rdtype == dns.rdatatype.MX for rdata in rrset
        ]
        exchanges = [r for r in records if isinstance(r, MX)]
        if not exchanges:
            # RFC 5321 section 5.1: no MX, the domain is its own exchanger.
            return [domain]
        if all(mx.exchange == dns.name.root for mx in exchanges):
            # RFC 7505 section 3: "0 ." says the domain takes no mail.
            raise RelayError(
                "null MX", _made_up(556, "5.1.10", f"domain {domain} does not accept mail")
            )
        by_preference: dict[int, list[str]] = {}
        for mx in exchanges:
            if mx.exchange != dns.name.root:
                host = mx.exchange.to_text(omit_final_dot=True)
                by_preference.setdefault(mx.preference, []).append(host)
        hosts: list[str] = []
        for preference in sorted(by_preference):
            group = by_preference[preference]
            self._random.shuffle(group)
            hosts.extend(group)
        return hosts

    async def _ask(
        self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> list[dns.rrset.RRset] | None:
        """The answer section for ``name``, or None for NXDOMAIN."""
        try:
            answer = await self.resolver.query(Question(name, rdtype))
        except Exception as exc:
            raise RelayError(
                "DNS failed", _made_up(451, "4.4.3", f"DNS lookup of {name} failed: {exc!r}")
            ) from exc
        if answer.rcode == dns.rcode.NXDOMAIN:
            return None
        if answer.rcode != dns.rcode.NOERROR:
            raise RelayError(
                "DNS failed",
                _made_up(451, "4.4.3", f"DNS lookup of {name} failed: {answer.rcode.name}"),
            )
        return answer.answer

    async def addresses(self, host: str) -> list[str]:
        """Return ``host``'s IPv4 then IPv6 addresses (none if it has none)."""
        if is_ip_address(host):
            return [host]
        name = dns.name.from_text(host)
        found: list[str] = []
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            answer = await self._ask(name, rdtype)
            for rrset in answer or []:
                if rrset.rdtype == rdtype:
                    found.extend(str(rdata) for rdata in rrset)
        return found

    async def _try_hosts(
        self, hosts: Sequence[str], sender: str, recipients: Sequence[str], message: bytes
    ) -> SendResult:
        last: SMTPClientError | None = None
        permanent_only = True
        tried = 0
        for host in hosts:
            try:
                addresses = await self.addresses(host)
            except RelayError as exc:
                last, permanent_only = exc, False
                continue
            for address in addresses:
                tried += 1
                try:
                    return await self._send(
                        address, self.port, sender, recipients, message, server_hostname=host
                    )
                except SMTPClientError as exc:
                    log.info("relay via %s (%s): %s", host, address, exc)
                    last = exc
                    permanent_only = permanent_only and exc.permanent
                except OSError as exc:
                    log.info("relay via %s (%s): %s", host, address, exc)
                    last = SMTPClientError(f"cannot connect to {host} ({address}): {exc}")
                    permanent_only = False
        if tried == 0 and last is None:
            # RFC 5321 section 5.1: no address at all for any exchanger.
            raise RelayError(
                "no address", _made_up(550, "5.1.2", f"no address for {', '.join(hosts)}")
            )
        assert last is not None
        if permanent_only and last.reply is not None:
            raise RelayError("every exchanger refused", last.reply)
        text = str(last).replace("\n", " ")[:400]
        raise RelayError("no exchanger answered", _made_up(451, "4.4.1", text))
