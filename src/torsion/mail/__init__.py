"""torsion.mail: SMTP, POP3 and IMAP4 on one mailbox interface.

- Storage: the ``MailStore`` and ``Mailbox`` interfaces every mail protocol
  uses, with Maildir and in-memory implementations.
"""

__all__: list[str] = []
