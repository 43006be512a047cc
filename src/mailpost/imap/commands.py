"""Typed IMAP commands: one frozen dataclass per command (RFC 9051 §6 and extensions).

Theory of operation
-------------------
Every command the parser accepts becomes exactly one of these values, with its arguments
decoded and normalised, so the session never sees wire syntax:

* mailbox names are ``str`` in Unicode: modified UTF-7 is decoded (RFC 9051 Appendix A.1)
  unless UTF-8 mode is on (``ENABLE IMAP4rev2`` or ``UTF8=ACCEPT``), UTF-8 names are in NFC,
  and every case variant of ``INBOX`` is ``"INBOX"`` (RFC 9051 §9, ``mailbox``);
* keywords and option names are upper-case; system flags are spelled canonically
  (``\\seen`` becomes ``\\Seen``), other keywords keep the client's spelling;
* numbers are ``int`` already range-checked against their grammar; sequence sets are
  :class:`~mailpost.imap.seqset.SequenceSet`; SEARCH criteria are a
  :data:`~mailpost.imap.search.SearchKey` tree; FETCH items are
  :data:`~mailpost.imap.fetchatt.FetchAttribute` values with macros expanded.

The parser checks syntax only. Whether a command is allowed in the current state (RFC 9051
§3, the ``command-any``/``-nonauth``/``-auth``/``-select`` rules) is the session's call:
:data:`ANY_STATE`, :data:`NOT_AUTHENTICATED`, :data:`AUTHENTICATED` and :data:`SELECTED` list
the command classes of each rule. APPEND is not here: it is streamed as
:class:`~mailpost.imap.events.AppendMessage` / ``AppendData`` / ``AppendDone`` events.

Every command carries its ``tag``; the session completes it with a tagged response.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from mailpost.imap.fetchatt import FetchAttribute
from mailpost.imap.search import SearchKey
from mailpost.imap.seqset import SequenceSet
from mailpost.store.types import FlagMode


@dataclass(frozen=True, slots=True)
class Command:
    """Base of all commands. ``name`` is the command word, e.g. ``"UID FETCH"``."""

    tag: str
    NAME: ClassVar[str] = ""

    @property
    def name(self) -> str:
        return self.NAME


# --- any state (RFC 9051 §6.1, RFC 2971, RFC 5161) ---------------------------------------


@dataclass(frozen=True, slots=True)
class Capability(Command):
    NAME: ClassVar[str] = "CAPABILITY"


@dataclass(frozen=True, slots=True)
class Noop(Command):
    NAME: ClassVar[str] = "NOOP"


@dataclass(frozen=True, slots=True)
class Logout(Command):
    """Answer ``* BYE`` then the tagged OK; the machine closes after the OK (§6.1.3)."""

    NAME: ClassVar[str] = "LOGOUT"


@dataclass(frozen=True, slots=True)
class Id(Command):
    """ID (RFC 2971): field/value pairs, or None for ``ID NIL``. At most 30 pairs, fields of
    at most 30 octets and values of at most 1024 (RFC 2971 §3.3) - longer is BAD."""

    NAME: ClassVar[str] = "ID"
    params: tuple[tuple[str, str | None], ...] | None


@dataclass(frozen=True, slots=True)
class Enable(Command):
    """ENABLE (RFC 5161): capability names, upper-cased. Answer ``* ENABLED ...`` through
    ``send(Enabled(...))`` so the parser learns about UTF-8 mode (see the protocol module)."""

    NAME: ClassVar[str] = "ENABLE"
    capabilities: tuple[str, ...]


# --- not authenticated (RFC 9051 §6.2) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartTLS(Command):
    NAME: ClassVar[str] = "STARTTLS"


@dataclass(frozen=True, slots=True)
class Authenticate(Command):
    """AUTHENTICATE: mechanism upper-cased; ``initial_response`` decoded from base64 (SASL-IR,
    RFC 4959), ``b""`` for ``=``, None when absent. Invalid base64 never gets here (BAD)."""

    NAME: ClassVar[str] = "AUTHENTICATE"
    mechanism: str
    initial_response: bytes | None = None


@dataclass(frozen=True, slots=True)
class Login(Command):
    """LOGIN: both strings are UTF-8 decoded (RFC 6855 §5 keeps LOGIN out of UTF-8 work,
    but ill-formed octets are refused rather than guessed)."""

    NAME: ClassVar[str] = "LOGIN"
    userid: str
    password: str = field(repr=False)


# --- authenticated (RFC 9051 §6.3 and extensions) ----------------------------------------


@dataclass(frozen=True, slots=True)
class QResync:
    """The QRESYNC select parameter (RFC 7162 §3.2.5). ``known_uids`` and the two halves of
    ``seq-match-data`` never contain ``*`` (the parser rejects it)."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    known_sequence_set: SequenceSet | None = None
    known_uid_set: SequenceSet | None = None


@dataclass(frozen=True, slots=True)
class SelectBase(Command):
    """What SELECT and EXAMINE share: the RFC 4466 select-params CONDSTORE (RFC 7162
    §3.1.8) and QRESYNC (§3.2.5). ``read_only`` tells EXAMINE from SELECT."""

    mailbox: str
    condstore: bool = False
    qresync: QResync | None = None

    @property
    def read_only(self) -> bool:
        return isinstance(self, Examine)


@dataclass(frozen=True, slots=True)
class Select(SelectBase):
    NAME: ClassVar[str] = "SELECT"


@dataclass(frozen=True, slots=True)
class Examine(SelectBase):
    NAME: ClassVar[str] = "EXAMINE"


@dataclass(frozen=True, slots=True)
class Create(Command):
    """CREATE; ``special_use`` from ``(USE (\\Drafts ...))`` (RFC 6154 §3), canonical case."""

    NAME: ClassVar[str] = "CREATE"
    mailbox: str
    special_use: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Delete(Command):
    NAME: ClassVar[str] = "DELETE"
    mailbox: str


@dataclass(frozen=True, slots=True)
class Rename(Command):
    NAME: ClassVar[str] = "RENAME"
    mailbox: str
    new_mailbox: str


@dataclass(frozen=True, slots=True)
class Subscribe(Command):
    NAME: ClassVar[str] = "SUBSCRIBE"
    mailbox: str


@dataclass(frozen=True, slots=True)
class Unsubscribe(Command):
    NAME: ClassVar[str] = "UNSUBSCRIBE"
    mailbox: str


@dataclass(frozen=True, slots=True)
class ListSelection:
    """LIST selection options (RFC 9051 §6.3.9.1, RFC 6154 §5.1)."""

    subscribed: bool = False
    remote: bool = False
    recursive_match: bool = False
    special_use: bool = False


@dataclass(frozen=True, slots=True)
class ListReturn:
    """LIST return options (RFC 9051 §6.3.9.2, RFC 5819 STATUS, RFC 6154 SPECIAL-USE).
    ``status`` holds the STATUS items to return, or None when not asked."""

    subscribed: bool = False
    children: bool = False
    special_use: bool = False
    status: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class List(Command):
    """LIST, basic or extended (RFC 9051 §6.3.9). ``patterns`` keeps empty strings: in the
    basic form ``LIST ref ""`` asks for the delimiter; in the extended form they are ignored.
    ``extended`` tells which form was used (selection options, a pattern list, or RETURN)."""

    NAME: ClassVar[str] = "LIST"
    reference: str
    patterns: tuple[str, ...]
    selection: ListSelection = ListSelection()
    returns: ListReturn = ListReturn()
    extended: bool = False


@dataclass(frozen=True, slots=True)
class Lsub(Command):
    """LSUB (RFC 3501 §6.3.9; deprecated by RFC 9051 in favour of LIST (SUBSCRIBED))."""

    NAME: ClassVar[str] = "LSUB"
    reference: str
    pattern: str


@dataclass(frozen=True, slots=True)
class Namespace(Command):
    NAME: ClassVar[str] = "NAMESPACE"


@dataclass(frozen=True, slots=True)
class Status(Command):
    """STATUS: items upper-case, each one of :data:`STATUS_ITEMS`, duplicates removed."""

    NAME: ClassVar[str] = "STATUS"
    mailbox: str
    items: tuple[str, ...]


STATUS_ITEMS = frozenset(
    {
        "MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE", "RECENT",
        "HIGHESTMODSEQ", "APPENDLIMIT", "MAILBOXID", "DELETED-STORAGE",
    }
)


@dataclass(frozen=True, slots=True)
class Idle(Command):
    """IDLE (RFC 2177): answer ``+ idling`` with ``send(Continuation(...))``; the machine then
    waits for ``DONE`` and reports it as :class:`~mailpost.imap.events.Done`."""

    NAME: ClassVar[str] = "IDLE"


@dataclass(frozen=True, slots=True)
class Compress(Command):
    """COMPRESS (RFC 4978); ``mechanism`` upper-case (only ``DEFLATE`` is defined)."""

    NAME: ClassVar[str] = "COMPRESS"
    mechanism: str


@dataclass(frozen=True, slots=True)
class GetQuota(Command):
    NAME: ClassVar[str] = "GETQUOTA"
    root: str


@dataclass(frozen=True, slots=True)
class GetQuotaRoot(Command):
    NAME: ClassVar[str] = "GETQUOTAROOT"
    mailbox: str


@dataclass(frozen=True, slots=True)
class SetQuota(Command):
    """SETQUOTA (RFC 9208 §4.3): (resource name upper-case, limit) pairs."""

    NAME: ClassVar[str] = "SETQUOTA"
    root: str
    limits: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class NotifyEvent:
    """One NOTIFY event name (canonical spelling, e.g. ``MessageNew``) and, for MessageNew on
    the selected mailbox, the FETCH items to send with it (RFC 5465 §5)."""

    name: str
    fetch_attributes: tuple[FetchAttribute, ...] = ()


@dataclass(frozen=True, slots=True)
class NotifyGroup:
    """``(filter events)``: ``filter`` upper-case (SELECTED, SELECTED-DELAYED, INBOXES,
    PERSONAL, SUBSCRIBED, SUBTREE, MAILBOXES); ``mailboxes`` for the last two; ``events``
    None for ``NONE``."""

    filter: str
    mailboxes: tuple[str, ...] = ()
    events: tuple[NotifyEvent, ...] | None = ()


@dataclass(frozen=True, slots=True)
class Notify(Command):
    """NOTIFY SET [STATUS] groups, or NOTIFY NONE (``groups`` is None), RFC 5465 §3."""

    NAME: ClassVar[str] = "NOTIFY"
    groups: tuple[NotifyGroup, ...] | None
    status: bool = False


# --- selected (RFC 9051 §6.4 and extensions) ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Check(Command):
    """CHECK (RFC 3501 §6.4.1; removed from IMAP4rev2, treat as NOOP)."""

    NAME: ClassVar[str] = "CHECK"


@dataclass(frozen=True, slots=True)
class Close(Command):
    NAME: ClassVar[str] = "CLOSE"


@dataclass(frozen=True, slots=True)
class Unselect(Command):
    NAME: ClassVar[str] = "UNSELECT"


@dataclass(frozen=True, slots=True)
class Expunge(Command):
    NAME: ClassVar[str] = "EXPUNGE"


@dataclass(frozen=True, slots=True)
class UidExpunge(Command):
    NAME: ClassVar[str] = "UID EXPUNGE"
    sequence_set: SequenceSet


@dataclass(frozen=True, slots=True)
class Search(Command):
    """SEARCH / UID SEARCH. ``charset`` upper-cased or None; the parser already answered
    unsupported charsets (``NO [BADCHARSET]``). ``return_options`` is None without RETURN
    (old ``* SEARCH`` response, or ESEARCH if IMAP4rev2 is enabled) or a tuple of MIN, MAX,
    ALL, COUNT, SAVE (RFC 4731 §3.1: ``RETURN ()`` is read as ``RETURN (ALL)``)."""

    NAME: ClassVar[str] = "SEARCH"
    key: SearchKey
    charset: str | None = None
    return_options: tuple[str, ...] | None = None
    uid: bool = False

    @property
    def name(self) -> str:
        return "UID SEARCH" if self.uid else "SEARCH"


@dataclass(frozen=True, slots=True)
class Fetch(Command):
    """FETCH / UID FETCH with the CHANGEDSINCE and VANISHED modifiers (RFC 7162 §3.1.4,
    §3.2.6). The parser enforces that VANISHED comes with CHANGEDSINCE and only in UID
    FETCH. For UID FETCH the session must add UID to every response (RFC 9051 §6.4.9)."""

    NAME: ClassVar[str] = "FETCH"
    sequence_set: SequenceSet
    attributes: tuple[FetchAttribute, ...]
    uid: bool = False
    changed_since: int | None = None
    vanished: bool = False

    @property
    def name(self) -> str:
        return "UID FETCH" if self.uid else "FETCH"


@dataclass(frozen=True, slots=True)
class Store(Command):
    """STORE / UID STORE (RFC 9051 §6.4.6) with UNCHANGEDSINCE (RFC 7162 §3.1.3)."""

    NAME: ClassVar[str] = "STORE"
    sequence_set: SequenceSet
    mode: FlagMode
    silent: bool
    flags: tuple[str, ...]
    uid: bool = False
    unchanged_since: int | None = None

    @property
    def name(self) -> str:
        return "UID STORE" if self.uid else "STORE"


@dataclass(frozen=True, slots=True)
class Copy(Command):
    NAME: ClassVar[str] = "COPY"
    sequence_set: SequenceSet
    mailbox: str
    uid: bool = False

    @property
    def name(self) -> str:
        return "UID COPY" if self.uid else "COPY"


@dataclass(frozen=True, slots=True)
class Move(Command):
    NAME: ClassVar[str] = "MOVE"
    sequence_set: SequenceSet
    mailbox: str
    uid: bool = False

    @property
    def name(self) -> str:
        return "UID MOVE" if self.uid else "MOVE"


@dataclass(frozen=True, slots=True)
class SortCriterion:
    """``[REVERSE] key`` with key one of ARRIVAL CC DATE FROM SIZE SUBJECT TO (RFC 5256)."""

    key: str
    reverse: bool = False


@dataclass(frozen=True, slots=True)
class Sort(Command):
    """SORT / UID SORT (RFC 5256 §3); ``return_options`` as in :class:`Search` (ESORT)."""

    NAME: ClassVar[str] = "SORT"
    criteria: tuple[SortCriterion, ...]
    charset: str
    key: SearchKey
    uid: bool = False
    return_options: tuple[str, ...] | None = None

    @property
    def name(self) -> str:
        return "UID SORT" if self.uid else "SORT"


@dataclass(frozen=True, slots=True)
class Thread(Command):
    """THREAD / UID THREAD (RFC 5256 §3); ``algorithm`` upper-case (REFERENCES,
    ORDEREDSUBJECT; others parse and the session answers NO)."""

    NAME: ClassVar[str] = "THREAD"
    algorithm: str
    charset: str
    key: SearchKey
    uid: bool = False

    @property
    def name(self) -> str:
        return "UID THREAD" if self.uid else "THREAD"


# --- which state each command belongs to (RFC 9051 §9 command-* rules) -------------------

ANY_STATE: frozenset[type[Command]] = frozenset({Capability, Noop, Logout, Id})
NOT_AUTHENTICATED: frozenset[type[Command]] = frozenset({StartTLS, Authenticate, Login})
AUTHENTICATED: frozenset[type[Command]] = frozenset(
    {
        Enable, Select, Examine, Create, Delete, Rename, Subscribe, Unsubscribe, List, Lsub,
        Namespace, Status, Idle, Compress, GetQuota, GetQuotaRoot, SetQuota, Notify,
    }
)
SELECTED: frozenset[type[Command]] = frozenset(
    {Check, Close, Unselect, Expunge, UidExpunge, Search, Fetch, Store, Copy, Move, Sort, Thread}
)
