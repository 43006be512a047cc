"""Selecting and leaving a mailbox: SELECT, EXAMINE (with CONDSTORE/QRESYNC), CHECK, CLOSE,
UNSELECT, EXPUNGE and UID EXPUNGE (RFC 9051 §6.3.2, §6.3.3, §6.4; RFC 3691; RFC 4315 §2.1;
RFC 7162 §3.1.2, §3.2.5).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailpost.imap import commands as cmd
from mailpost.imap import responses as rsp
from mailpost.imap.errors import SequenceRangeError
from mailpost.imap.handlers.mailbox_names import mailbox_object_id
from mailpost.imap.responses import Response, Tagged
from mailpost.imap.selected import SelectedMailbox
from mailpost.imap.seqset import IntervalSet
from mailpost.store.errors import StoreError, StoreUnavailable
from mailpost.store.types import MailboxInfo

if TYPE_CHECKING:
    from mailpost.imap.session import Handler, IMAPSession

CAPABILITIES: tuple[str, ...] = ("UNSELECT",)
SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")


def _unselect(session: IMAPSession, announce: bool) -> None:
    from mailpost.imap.session import SessionState
    if session.selected is not None and announce:
        session.write(rsp.untagged(b"OK [CLOSED] Previous mailbox is now closed"))
    session.selected = None
    session.saved_search = None  # RFC 5182 §2.1: "$" does not outlive its mailbox
    session.state = SessionState.AUTHENTICATED


async def select(session: IMAPSession, command: cmd.Command) -> Response:
    """SELECT and EXAMINE (§6.3.2, §6.3.3)."""
    assert isinstance(command, cmd.SelectBase) and session.account is not None
    from mailpost.imap.session import SessionState
    readonly = isinstance(command, cmd.Examine)
    _unselect(session, announce=True)
    if command.condstore or command.qresync:
        if command.qresync and "QRESYNC" not in session.enabled:
            return Tagged(command.tag, "BAD", "ENABLE QRESYNC first (RFC 7162 §3.2.5)")
        session.enabled.add("CONDSTORE")
        session.options.condstore = True
    info = await session.store.get_mailbox(session.account.id, command.mailbox)
    if info is None:
        return Tagged(command.tag, "NO", "No such mailbox", "NONEXISTENT")
    # IMAP4rev1 clients get \Recent (imap.recent); IMAP4rev2 deprecated it.
    registry = None if "IMAP4REV2" in session.enabled else session.services.recent
    view = await SelectedMailbox.open(session.store, info, readonly, registry)
    _announce(session, view)
    if command.qresync is not None and command.qresync.uidvalidity == info.uidvalidity:
        await _qresync(session, view, command.qresync)
    session.selected = view
    session.state = SessionState.SELECTED
    code = "READ-ONLY" if readonly else "READ-WRITE"
    return Tagged(command.tag, "OK", f"{'EXAMINE' if readonly else 'SELECT'} completed", code)


def _announce(session: IMAPSession, view: SelectedMailbox) -> None:
    info = view.info
    keywords = sorted({flag for meta in view.messages.values() for flag in meta.flags
                       if not flag.startswith("\\")})
    session.write(rsp.exists(view.exists))
    if "IMAP4REV2" not in session.enabled:
        session.write(rsp.recent(len(view.recent)))
    session.write(rsp.untagged(f"OK [UIDVALIDITY {info.uidvalidity}] UIDs valid".encode()))
    session.write(rsp.untagged(f"OK [UIDNEXT {view.uidnext}] Predicted next UID".encode()))
    session.write(rsp.flags((*SYSTEM_FLAGS, *keywords)))
    permanent = () if view.readonly else (*SYSTEM_FLAGS, *keywords, "\\*")
    session.write(rsp.untagged(b"OK [" + rsp.code_permanentflags(permanent).encode()
                               + b"] Flags permitted"))
    session.write(rsp.list_response(_attributes(info), "/", info.name, utf8=session.utf8))
    session.write(rsp.untagged(f"OK [MAILBOXID ({mailbox_object_id(info.id)})] Ok".encode()))
    if session.options.condstore:
        session.write(rsp.untagged(f"OK [HIGHESTMODSEQ {view.modseq}] Highest".encode()))
    unseen = next((index + 1 for index, uid in enumerate(view.uids)
                   if "\\Seen" not in view.messages[uid].flags), None)
    if unseen is not None and "IMAP4REV2" not in session.enabled:
        session.write(rsp.untagged(f"OK [UNSEEN {unseen}] First unseen".encode()))


def _attributes(info: MailboxInfo) -> list[str]:
    return [info.special_use] if info.special_use else []


async def _qresync(session: IMAPSession, view: SelectedMailbox, params: cmd.QResync) -> None:
    """RFC 7162 §3.2.5: what changed since the client's modseq, as VANISHED and FETCH."""
    changes = await session.store.changes_since(view.info.id, params.modseq)
    known = params.known_uids
    wanted = known.intervals(view.highest_uid) if known is not None else None
    vanished = [uid for uid in changes.expunged if wanted is None or uid in wanted]
    if vanished:
        session.write(rsp.vanished(IntervalSet.from_numbers(sorted(vanished)), earlier=True))
    for meta in changes.updated:
        current = view.messages.get(meta.uid)
        # RFC 7162 §3.2.5: only the messages the client said it knows.
        if current is not None and (wanted is None or meta.uid in wanted):
            session.write(view.flags_line(current, session.options))


async def check(session: IMAPSession, command: cmd.Command) -> Response:
    return Tagged(command.tag, "OK", "CHECK completed")


async def close(session: IMAPSession, command: cmd.Command) -> Response:
    """§6.4.1: expunge silently (unless read-only), then leave the selected state."""
    view = session.selected
    assert view is not None
    if not view.readonly:
        # Ask the store, not the view: \Deleted set by another session counts as well, and
        # CLOSE sends no untagged responses that could tell the view about it.
        deleted = [meta.uid for meta in await session.store.messages(view.info.id)
                   if "\\Deleted" in meta.flags]
        if deleted:
            try:
                await session.store.expunge(view.info.id, deleted)
            except StoreError:
                return Tagged(command.tag, "NO", "Cannot expunge now", "UNAVAILABLE")
    _unselect(session, announce=False)
    return Tagged(command.tag, "OK", "CLOSE completed")


async def unselect(session: IMAPSession, command: cmd.Command) -> Response:
    _unselect(session, announce=False)
    return Tagged(command.tag, "OK", "UNSELECT completed")


async def expunge(session: IMAPSession, command: cmd.Command) -> Response:
    """EXPUNGE (§6.4.3) and UID EXPUNGE (RFC 4315 §2.1, RFC 9051 §6.4.9)."""
    view = session.selected
    assert view is not None
    if view.readonly:
        return Tagged(command.tag, "NO", "Mailbox is read-only", "READ-ONLY")
    # \Deleted set by other sessions counts too: learn about it first.
    await session.catch_up(allow_expunge=True)
    candidates = view.uids
    if isinstance(command, cmd.UidExpunge):
        try:
            candidates = [uid for _, uid in command.sequence_set.select_by_uid(view.uids)]
        except (SequenceRangeError, ValueError):
            return Tagged(command.tag, "BAD", "Invalid UID set")
    deleted = [uid for uid in candidates if "\\Deleted" in view.messages[uid].flags
               and not view.is_ghost(uid)]
    try:
        removed = await session.store.expunge(view.info.id, deleted) if deleted else []
    except StoreUnavailable:
        return Tagged(command.tag, "NO", "Cannot expunge now", "UNAVAILABLE")
    for line in view.remove_now(removed, session.options):
        session.write(line)
    if session.options.condstore:
        # By id, not name: another session may have renamed the mailbox meanwhile.
        latest = await session.store.changes_since(view.info.id, view.modseq)
        return Tagged(command.tag, "OK", "EXPUNGE completed",
                      f"HIGHESTMODSEQ {latest.highest_modseq}")
    return Tagged(command.tag, "OK", "EXPUNGE completed")


HANDLERS: dict[type[cmd.Command], Handler] = {
    cmd.Select: select,
    cmd.Examine: select,
    cmd.Check: check,
    cmd.Close: close,
    cmd.Unselect: unselect,
    cmd.Expunge: expunge,
    cmd.UidExpunge: expunge,
}
