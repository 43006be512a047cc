"""FETCH and UID FETCH (RFC 9051 §6.4.5, §6.4.9, §7.5.2; RFC 3516; RFC 7162 §3.1.4, §3.2.6;
RFC 8474 §5.3), and the dispatch entries of this family (STORE lives in :mod:`.fetch_store`).

Theory of operation
-------------------
A FETCH runs in four steps, all against the session's view of the mailbox:

1. **Resolve** the sequence set (:func:`~.fetch_common.resolve`); a number beyond the view
   is BAD (catalogue I6). MODSEQ or CHANGEDSINCE make the session CONDSTORE-aware
   (RFC 7162 §3.1). With ``VANISHED`` (QRESYNC only, else BAD: RFC 7162 §3.2.6) the UIDs of
   the set expunged after the given modseq are reported first, as ``* VANISHED (EARLIER)``,
   "before any FETCH responses". CHANGEDSINCE then keeps the messages whose modseq is
   higher (§3.1.4.1).
2. **Set \\Seen** for a non-PEEK body fetch, unless the mailbox is read-only
   (RFC 9051 §6.4.5), in one store call for all the messages *before* any response is
   written, so that each response can carry the new FLAGS (and MODSEQ/UID under
   CONDSTORE/QRESYNC, RFC 7162 §3.2.4); the result is recorded in the view with
   ``apply_own_update`` so the end-of-command catch-up does not report it a second time.
3. **Render** each message's items (:mod:`.fetch_items`), which reads what is needed
   (:mod:`.fetch_source`), and only then
4. **Write** them (:mod:`.fetch_output`), streaming large bodies in bounded chunks.

Messages expunged by another session stay in the view as ghosts until this session may say
so (no EXPUNGE during FETCH, RFC 9051 §7.5.1; the session enforces it). Such a message is
answered from its last known metadata and its body while the body can still be read
(RFC 2180 §4.1 lets a server keep expunged messages available to FETCH until it can announce
the expunge); once the body is gone the message is left out and the command ends
``NO [EXPUNGEISSUED]`` after the other messages' data (RFC 2180 §4.1 also describes this
tagged NO; the code is RFC 5530's). This holds for UID FETCH too, although the expunge is
announced right after it: a body that cannot be read is never answered with OK. A part whose
transfer encoding cannot be undone for BINARY gives ``NO [UNKNOWN-CTE]`` the same way
(RFC 3516 §4.3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailpost.imap import commands as cmd
from mailpost.imap import responses as rsp
from mailpost.imap.errors import SequenceRangeError
from mailpost.imap.fetchatt import FetchItem, sets_seen
from mailpost.imap.handlers import fetch_store
from mailpost.imap.handlers.fetch_cache import MESSAGE_CACHE
from mailpost.imap.handlers.fetch_common import enable_condstore, resolve, uid_intervals
from mailpost.imap.handlers.fetch_items import FetchOptions, render_items
from mailpost.imap.handlers.fetch_output import PacedWriter
from mailpost.imap.handlers.fetch_source import MessageSource
from mailpost.imap.responses import Response, Tagged
from mailpost.imap.selected import SelectedMailbox
from mailpost.imap.seqset import IntervalSet
from mailpost.mime import UnknownTransferEncoding
from mailpost.store.errors import NotFound, StoreError
from mailpost.store.types import FlagMode

if TYPE_CHECKING:
    from mailpost.imap.session import Handler, IMAPSession

SEEN = "\\Seen"
Targets = list[tuple[int, int]]


async def fetch(session: IMAPSession, command: cmd.Command) -> Response:
    """FETCH and UID FETCH."""
    assert isinstance(command, cmd.Fetch)
    view = session.selected
    assert view is not None
    if command.vanished and "QRESYNC" not in session.enabled:
        return Tagged(command.tag, "BAD", "VANISHED needs ENABLE QRESYNC (RFC 7162 3.2.6)")
    try:
        targets = resolve(session, view, command.sequence_set, command.uid)
    except (SequenceRangeError, ValueError) as exc:
        return Tagged(command.tag, "BAD", f"Invalid sequence set: {exc}")
    options = _options(session, command)
    if options.modseq_implied:
        enable_condstore(session)
    writer = PacedWriter(session)
    try:
        if command.vanished:
            await _report_vanished(session, view, command, writer)
        if command.changed_since is not None:
            targets = _changed_since(view, targets, command.changed_since)
        seen_now = await _mark_seen(session, view, command, targets)
        return await _send(session, view, command, options, targets, seen_now, writer)
    except StoreError:
        return Tagged(command.tag, "NO", "Cannot read messages now", "UNAVAILABLE")


def _options(session: IMAPSession, command: cmd.Fetch) -> FetchOptions:
    modseq_implied = (command.changed_since is not None
                      or FetchItem("MODSEQ") in command.attributes)
    return FetchOptions(
        attributes=command.attributes,
        uid_command=command.uid,
        modseq_implied=modseq_implied,
        condstore=session.options.condstore or modseq_implied,
        qresync=session.options.qresync,
        utf8=session.utf8,
        # IMAP4rev1's grammar knows no MESSAGE/GLOBAL body (RFC 3501 §9).
        message_global="IMAP4REV2" in session.enabled,
        recent=session.selected.recent if session.selected is not None else frozenset(),
    )


async def _report_vanished(session: IMAPSession, view: SelectedMailbox, command: cmd.Fetch,
                           writer: PacedWriter) -> None:
    """RFC 7162 §3.2.6: ``* VANISHED (EARLIER)`` for the set's UIDs expunged since then."""
    assert command.changed_since is not None
    changes = await session.store.changes_since(view.info.id, command.changed_since)
    # "*" reaches the highest UID ever assigned: the set may name UIDs above every message
    # still present. UIDs still in the view are announced by the end-of-command catch-up
    # (as VANISHED without EARLIER); reporting them here too would confuse the numbering.
    wanted = uid_intervals(session, view, command.sequence_set,
                           max(view.highest_uid, view.uidnext - 1))
    gone = sorted(uid for uid in changes.expunged
                  if uid in wanted and uid not in view.messages)
    if gone:
        await writer.write(rsp.vanished(IntervalSet.from_numbers(gone), earlier=True))


def _changed_since(view: SelectedMailbox, targets: Targets, modseq: int) -> Targets:
    return [(msn, uid) for msn, uid in targets if view.meta(uid).modseq > modseq]


async def _mark_seen(session: IMAPSession, view: SelectedMailbox, command: cmd.Fetch,
                     targets: Targets) -> set[int]:
    """Set \\Seen where a body fetch implies it; returns the UIDs whose flags changed."""
    if view.readonly or not any(sets_seen(att) for att in command.attributes):
        return set()
    unseen = [uid for _, uid in targets
              if not view.is_ghost(uid) and SEEN not in view.meta(uid).flags]
    if not unseen:
        return set()
    update = await session.store.store_flags(view.info.id, unseen, FlagMode.ADD,
                                             frozenset({SEEN}))
    view.apply_own_update(update.changed)
    return {meta.uid for meta in update.changed}


async def _send(session: IMAPSession, view: SelectedMailbox, command: cmd.Fetch,
                options: FetchOptions, targets: Targets, seen_now: set[int],
                writer: PacedWriter) -> Response:
    missing = undecodable = False
    for msn, uid in targets:
        source = MessageSource(session.store.blobs, view.meta(uid), MESSAGE_CACHE)
        try:
            items = await render_items(options, source, uid in seen_now)
            await writer.message(msn, items)
        except NotFound:
            missing = True  # expunged elsewhere and its body already deleted
        except UnknownTransferEncoding:
            undecodable = True
        finally:
            source.close()
    if undecodable:
        return Tagged(command.tag, "NO", "Cannot decode the Content-Transfer-Encoding",
                      "UNKNOWN-CTE")
    if missing:
        return Tagged(command.tag, "NO", "Some messages were expunged", "EXPUNGEISSUED")
    return Tagged(command.tag, "OK", f"{command.name} completed")


HANDLERS: dict[type[cmd.Command], Handler] = {
    cmd.Fetch: fetch,
    cmd.Store: fetch_store.store,
}
# BINARY: RFC 3516 (APPEND literal8 is the parser's); OBJECTID: EMAILID and THREADID here,
# MAILBOXID in SELECT/STATUS.
CAPABILITIES: tuple[str, ...] = ("BINARY", "CONDSTORE", "QRESYNC", "OBJECTID")
