"""IMAP4rev1 (RFC 3501): the server, and the sans-IO core it stands on.

- ``IMAP4Factory``: the server for a stream listener, logging users in
  through a cred ``Portal`` (the avatar is their ``MailStore``), with
  ``IMAP4Server`` per connection and ``IMAP4Limits`` for its bounds.

- ``connect_imap``: the client, an ``IMAP4Client`` whose methods are the
  commands (typed results: ``MailboxState``, ``FetchResult``, ``ListEntry``;
  ``IdleSession`` for IDLE), on the sans-IO ``IMAP4ClientConnection``.

- ``CommandParser``: an incremental, bounded parser of client commands
  (literals synchronising and LITERAL+, APPEND messages streamed in chunks,
  UID variants, IDLE, MOVE, UID EXPUNGE, NAMESPACE, ENABLE), its events
  (``Command``, ``ContinuationNeeded``, ``AppendStart``/``AppendData``/
  ``AppendEnd``, ``ContinuationLine``, ``BadCommand``) and ``ParserLimits``.
- SEARCH: ``parse_search_program`` and ``matches`` over a ``SearchMessage``,
  the keys as a tree (``AndKey``, ``OrKey``, ``NotKey``, ``FlagKey``...).
- FETCH: ``FetchItem``/``Section`` parsed from the attribute grammar,
  ``render_fetch`` over a ``FetchMessage``; ``envelope`` and
  ``body_structure`` on a ``MimePart`` tree of the message's octets.
- Responses: ``tagged``, ``untagged``, ``continuation``, ``exists``,
  ``fetch_response``, ``list_response``, ``status_response``... and
  ``ResponseCode`` (ALERT, PERMANENTFLAGS, APPENDUID, COPYUID...).
"""

from torsion.mail.imap._client import IdleSession, IMAP4Client, IMAP4Reactor, connect_imap
from torsion.mail.imap._client_core import (
    ClientLimits,
    CommandResult,
    ContinuationRequest,
    EnvelopeAddress,
    FetchResult,
    IMAP4ClientConnection,
    IMAPProtocolError,
    IMAPReplyError,
    ListEntry,
    LiteralArgument,
    MailboxState,
    MessageEnvelope,
    ResponseEvent,
    ResponseValue,
    TaggedResponse,
    UntaggedResponse,
)
from torsion.mail.imap._commands import Argument, Command, StoreAction, parse_command
from torsion.mail.imap._fetch import (
    FetchItem,
    FetchMessage,
    Section,
    needs_content,
    parse_fetch_items,
    render_fetch,
    section_octets,
    sets_seen,
)
from torsion.mail.imap._mime import MimePart, to_crlf
from torsion.mail.imap._parser import (
    AppendData,
    AppendEnd,
    AppendStart,
    BadCommand,
    CommandParser,
    ContinuationLine,
    ContinuationNeeded,
    ParserEvent,
    ParserLimits,
)
from torsion.mail.imap._reader import IMAPError, IMAPParseError, Reader, SequenceSet
from torsion.mail.imap._responses import (
    ResponseCode,
    bye,
    capability,
    continuation,
    enabled,
    exists,
    expunge,
    fetch_response,
    flags,
    format_date_time,
    list_response,
    mailbox_name,
    namespace,
    nstring,
    recent,
    search_response,
    status_response,
    string,
    tagged,
    uid_set,
    untagged,
)
from torsion.mail.imap._search import (
    SEARCH_CHARSETS,
    AllKey,
    AndKey,
    DateKey,
    FlagKey,
    NotKey,
    OrKey,
    SearchKey,
    SearchMessage,
    SequenceKey,
    SizeKey,
    TextKey,
    format_search_key,
    matches,
    parse_search_program,
)
from torsion.mail.imap._server import IMAP4Factory, IMAP4Limits, IMAP4Server
from torsion.mail.imap._structure import body_structure, envelope

__all__ = [
    "SEARCH_CHARSETS",
    "AllKey",
    "AndKey",
    "AppendData",
    "AppendEnd",
    "AppendStart",
    "Argument",
    "BadCommand",
    "ClientLimits",
    "Command",
    "CommandParser",
    "CommandResult",
    "ContinuationLine",
    "ContinuationNeeded",
    "ContinuationRequest",
    "DateKey",
    "EnvelopeAddress",
    "FetchItem",
    "FetchMessage",
    "FetchResult",
    "FlagKey",
    "IMAP4Client",
    "IMAP4ClientConnection",
    "IMAP4Factory",
    "IMAP4Limits",
    "IMAP4Reactor",
    "IMAP4Server",
    "IMAPError",
    "IMAPParseError",
    "IMAPProtocolError",
    "IMAPReplyError",
    "IdleSession",
    "ListEntry",
    "LiteralArgument",
    "MailboxState",
    "MessageEnvelope",
    "MimePart",
    "NotKey",
    "OrKey",
    "ParserEvent",
    "ParserLimits",
    "Reader",
    "ResponseCode",
    "ResponseEvent",
    "ResponseValue",
    "SearchKey",
    "SearchMessage",
    "Section",
    "SequenceKey",
    "SequenceSet",
    "SizeKey",
    "StoreAction",
    "TaggedResponse",
    "TextKey",
    "UntaggedResponse",
    "body_structure",
    "bye",
    "capability",
    "connect_imap",
    "continuation",
    "enabled",
    "envelope",
    "exists",
    "expunge",
    "fetch_response",
    "flags",
    "format_date_time",
    "format_search_key",
    "list_response",
    "mailbox_name",
    "matches",
    "namespace",
    "needs_content",
    "nstring",
    "parse_command",
    "parse_fetch_items",
    "parse_search_program",
    "recent",
    "render_fetch",
    "search_response",
    "section_octets",
    "sets_seen",
    "status_response",
    "string",
    "tagged",
    "to_crlf",
    "uid_set",
    "untagged",
]
