"""LIST (RFC 9051 §6.3.9 with LIST-EXTENDED, RFC 5258), LIST-STATUS (RFC 5819), the
SPECIAL-USE options (RFC 6154 §2) and the IMAP4rev1 LSUB (RFC 3501 §6.3.9).

Theory of operation
-------------------
A LIST is planned in memory from two reads, the account's mailboxes and its subscriptions,
then written out. :func:`plan_list` is pure; the handler only fetches and writes.

1. **Chosen names.** The selection options decide which names *meet the selection
   criteria*: every existing mailbox by default; the subscribed names (existing or not)
   with SUBSCRIBED; the mailboxes with a special-use attribute with SPECIAL-USE; both
   conditions when both are given (options are cumulative, RFC 9051 §6.3.9). REMOTE
   changes nothing: there are no remote mailboxes.
2. **Patterns.** Each pattern is joined to the reference into a canonical pattern
   (:mod:`.mailbox_match`), and every name is matched against all of them at once.
3. **Which names are listed** (RFC 9051 §6.3.9.3, rule 2). A name matching a pattern is
   listed if it is chosen (reason A), or if some chosen name below it matches no pattern
   (reason B). Reason B gives the CHILDINFO extended item under RECURSIVEMATCH
   (§6.3.9.6). Without selection options it gives the hierarchy levels that do not exist
   themselves: ``LIST "" %`` shows ``foo`` when only ``foo/bar`` exists, as ``\\Noselect``
   for an IMAP4rev1 basic LIST (§6.3.9: "matching levels of hierarchy are also returned")
   or ``\\NonExistent`` once the client speaks LIST-EXTENDED or IMAP4rev2 (§6.3.9.6 Note,
   Example 10). ``LIST "" *`` does not show it, because ``foo/bar`` matches (§6.3.5, A85).
   When every chosen descendant is listed anyway the parent is left out: CHILDINFO would
   be redundant (§6.3.9.6, "servers SHOULD suppress redundant CHILDINFO responses").
4. **Attributes.** ``\\NonExistent`` (or ``\\Noselect``) for names that are not mailboxes;
   ``\\HasChildren``/``\\HasNoChildren`` always (the CHILDREN capability, RFC 3348; §6.3.9.5
   allows them without the return option), computed from existing mailboxes; the
   special-use attribute always (RFC 9051 §7.3.1 lists them among the LIST attributes);
   ``\\Subscribed`` when SUBSCRIBED is a selection or return option.
5. **STATUS** (RFC 5819) follows the LIST line of each listed mailbox that exists and
   meets the selection criteria; a mailbox that vanishes meanwhile is listed as
   ``\\NonExistent`` without STATUS (RFC 5819 §2).

Every step is a set or dict operation per name, and matching is linear in the name, so a
LIST over thousands of mailboxes with a hostile pattern stays fast (security catalogue I9).

LSUB keeps its RFC 3501 meaning: subscribed names, plus ``\\Noselect`` for a level that is
not subscribed itself but has subscribed names below it that the pattern does not reach.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mailpost.imap import commands as cmd
from mailpost.imap import responses as rsp
from mailpost.imap.handlers.mailbox_match import INBOX, PatternSet, canonical_pattern
from mailpost.imap.handlers.mailbox_names import (
    DELIMITER,
    account_id,
    answers_store_errors,
    superiors,
)
from mailpost.imap.handlers.mailbox_status import rev1_only_item, status_line, status_values
from mailpost.imap.responses import Response, Tagged
from mailpost.store.errors import NotFound
from mailpost.store.types import MailboxInfo

if TYPE_CHECKING:
    from mailpost.imap.session import IMAPSession

NONEXISTENT = "\\NonExistent"
NOSELECT = "\\Noselect"


@dataclass(frozen=True, slots=True)
class ListEntry:
    """One LIST (or LSUB) response to send. ``mailbox`` is set when a STATUS may follow."""

    name: str
    attributes: tuple[str, ...]
    childinfo: tuple[str, ...] = ()
    mailbox: MailboxInfo | None = None


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A LIST command reduced to what planning needs."""

    patterns: tuple[str, ...]
    selection: cmd.ListSelection = field(default_factory=cmd.ListSelection)
    returns: cmd.ListReturn = field(default_factory=cmd.ListReturn)
    missing_attribute: str = NONEXISTENT


class _Matches:
    """Pattern matching with a per-LIST memo (parents are asked about more than once)."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self._set = PatternSet(patterns)
        self._memo: dict[str, bool] = {}

    def __call__(self, name: str) -> bool:
        known = self._memo.get(name)
        if known is None:
            known = self._memo[name] = self._set.matches(name)
        return known


def listing_order(name: str) -> tuple[bool, str]:
    """INBOX first, then by name."""
    return (name != INBOX, name)


@dataclass(frozen=True, slots=True)
class _Account:
    """The account's names as LIST sees them."""

    existing: dict[str, MailboxInfo]
    subscribed: frozenset[str]
    with_children: frozenset[str]  # names with at least one existing mailbox below

    @classmethod
    def of(cls, mailboxes: Sequence[MailboxInfo], subscriptions: Iterable[str]) -> _Account:
        existing = {info.name: info for info in mailboxes}
        parents = frozenset(parent for name in existing for parent in superiors(name))
        return cls(existing, frozenset(subscriptions), parents)

    def attributes(self, name: str, query: ListQuery) -> tuple[str, ...]:
        """RFC 9051 §7.3.1 attributes of ``name`` (see the module docstring, step 4)."""
        attributes: list[str] = []
        info = self.existing.get(name)
        if info is None:
            attributes.append(query.missing_attribute)
        elif info.special_use:
            attributes.extend(info.special_use.split())
        show_subscribed = query.selection.subscribed or query.returns.subscribed
        if show_subscribed and name in self.subscribed:
            attributes.append("\\Subscribed")
        attributes.append("\\HasChildren" if name in self.with_children else "\\HasNoChildren")
        return tuple(attributes)


def _chosen(account: _Account, selection: cmd.ListSelection) -> set[str]:
    """The names that meet the selection criteria (RFC 9051 §6.3.9.1, RFC 6154 §2)."""
    existing = account.existing
    chosen = set(account.subscribed) if selection.subscribed else set(existing)
    if selection.special_use:
        chosen = {name for name in chosen
                  if name in existing and existing[name].special_use}
    return chosen


def _criteria(selection: cmd.ListSelection) -> tuple[str, ...]:
    """The base selection options named in CHILDINFO (RFC 5258 §6, childinfo)."""
    names = (("SUBSCRIBED", selection.subscribed), ("SPECIAL-USE", selection.special_use))
    return tuple(name for name, used in names if used)


def _parents(names: Iterable[str], matches: _Matches) -> tuple[set[str], set[str]]:
    """(names with a chosen descendant, names with one that matches no pattern)."""
    above: set[str] = set()
    above_unmatched: set[str] = set()
    for name in names:
        unmatched = not matches(name)
        for parent in superiors(name):
            above.add(parent)
            if unmatched:
                above_unmatched.add(parent)
    return above, above_unmatched


def plan_list(mailboxes: Sequence[MailboxInfo], subscriptions: Iterable[str],
              query: ListQuery) -> list[ListEntry]:
    """The LIST responses for ``query``, in order (see the module docstring)."""
    account = _Account.of(mailboxes, subscriptions)
    selection = query.selection
    matches = _Matches(query.patterns)
    chosen = _chosen(account, selection)
    above_chosen, above_unmatched = _parents(chosen, matches)
    # Reason B lists a name under RECURSIVEMATCH, or as a missing level in a plain LIST.
    reason_b = selection.recursive_match or not (selection.subscribed or selection.special_use)
    entries = []
    for name in sorted(chosen | above_unmatched, key=listing_order):
        meets = name in chosen
        if not matches(name) or not (meets or reason_b):
            continue
        recursive = selection.recursive_match and name in above_chosen
        childinfo = _criteria(selection) if recursive else ()
        mailbox = account.existing.get(name) if meets else None
        entries.append(ListEntry(name, account.attributes(name, query), childinfo, mailbox))
    return entries


def plan_lsub(subscriptions: Iterable[str], patterns: Sequence[str]) -> list[ListEntry]:
    """RFC 3501 §6.3.9: subscribed names, and ``\\Noselect`` levels above unmatched ones."""
    subscribed = set(subscriptions)
    matches = _Matches(patterns)
    _, above_unmatched = _parents(subscribed, matches)
    entries = []
    for name in sorted(subscribed | above_unmatched, key=listing_order):
        if matches(name):
            attributes = () if name in subscribed else (NOSELECT,)
            entries.append(ListEntry(name, attributes))
    return entries


# --- the commands --------------------------------------------------------------------------


def _delimiter_reply(session: IMAPSession) -> bytes:
    """RFC 9051 §6.3.9: ``LIST ref ""`` gives the delimiter and the (empty) root name."""
    return rsp.list_response((NOSELECT,), DELIMITER, "", utf8=session.utf8)


def _query(session: IMAPSession, command: cmd.List) -> ListQuery:
    patterns = tuple(canonical_pattern(command.reference, pattern)
                     for pattern in command.patterns if pattern)
    speaks_extended = command.extended or "IMAP4REV2" in session.enabled
    return ListQuery(patterns, command.selection, command.returns,
                     NONEXISTENT if speaks_extended else NOSELECT)


@answers_store_errors
async def list_mailboxes(session: IMAPSession, command: cmd.Command) -> Response:
    assert isinstance(command, cmd.List)
    wanted = command.returns.status
    if wanted is not None and rev1_only_item(session, wanted):
        return Tagged(command.tag, "BAD", "RECENT is not an IMAP4rev2 STATUS item")
    if not command.extended and command.patterns == ("",):
        session.write(_delimiter_reply(session))
        return Tagged(command.tag, "OK", "LIST completed")
    query = _query(session, command)
    if query.patterns:
        owner = account_id(session)
        mailboxes = await session.store.list_mailboxes(owner)
        subscriptions = await session.store.subscriptions(owner)
        for entry in plan_list(mailboxes, subscriptions, query):
            await _write_entry(session, command, entry)
    return Tagged(command.tag, "OK", "LIST completed")


async def _write_entry(session: IMAPSession, command: cmd.List, entry: ListEntry) -> None:
    """The LIST line, then the STATUS line when LIST-STATUS asks for one (RFC 5819 §2)."""
    status = b""
    attributes = entry.attributes
    wanted = command.returns.status
    if wanted is not None and entry.mailbox is not None:
        try:
            status = status_line(session, entry.mailbox,
                                 await status_values(session, entry.mailbox, wanted))
        except NotFound:
            # Deleted between the listing and now: RFC 5819 §2 wants it not selectable.
            attributes = (NONEXISTENT, *(a for a in attributes if a.startswith("\\Has")))
    extended: tuple[tuple[str, bytes], ...] = ()
    if command.extended and entry.childinfo:
        criteria = rsp.paren_list(rsp.string(name) for name in entry.childinfo)
        extended = (("CHILDINFO", criteria),)
    session.write(rsp.list_response(attributes, DELIMITER, entry.name, utf8=session.utf8,
                                    extended=extended))
    if status:
        session.write(status)


@answers_store_errors
async def lsub(session: IMAPSession, command: cmd.Command) -> Response:
    assert isinstance(command, cmd.Lsub)
    if not command.pattern:
        session.write(b"* LSUB" + _delimiter_reply(session)[len(b"* LIST"):])
        return Tagged(command.tag, "OK", "LSUB completed")
    pattern = canonical_pattern(command.reference, command.pattern)
    subscriptions = await session.store.subscriptions(account_id(session))
    for entry in plan_lsub(subscriptions, (pattern,)):
        # responses.lsub_response has no utf8 switch; LSUB after ENABLE UTF8=ACCEPT must
        # carry UTF-8 names (RFC 6855 §3), so the LIST line is re-labelled instead.
        line = rsp.list_response(entry.attributes, DELIMITER, entry.name, utf8=session.utf8)
        session.write(b"* LSUB" + line[len(b"* LIST"):])
    return Tagged(command.tag, "OK", "LSUB completed")
