"""STORE and UID STORE (RFC 9051 §6.4.6, §6.4.9; RFC 7162 §3.1.3 UNCHANGEDSINCE/MODIFIED).

Theory of operation
-------------------
1. A read-only mailbox refuses with ``NO [READ-ONLY]``. ``\\Recent`` in the flag list is
   dropped rather than refused ("This flag can not be altered by the client", RFC 3501
   §2.3.2; RFC 9051 no longer has it, and clients still echo it back in FLAGS lists they
   got from older servers) and any other unknown ``\\``-flag is BAD (only the system flags of
   RFC 9051 §2.3.2 exist; keywords were already checked by the parser).
2. The sequence set is resolved against the view (BAD beyond it, catalogue I6), then the
   session catches up with the store *without* EXPUNGE (RFC 9051 §7.5.1), so the view knows
   which messages were expunged meanwhile and has their current flags before we compare.
3. One ``store_flags`` call changes every message that is still there; the store gives
   the ones that changed (with their new modseq) and the ones that failed UNCHANGEDSINCE.
   The changes are recorded in the view (``apply_own_update``) so the end-of-command
   catch-up stays silent about them: the client hears about its own change once.
4. Responses:

   * without ``.SILENT``, ``* n FETCH (FLAGS ...)`` for every message of the set that still
     exists, "as if a FETCH of those flags was done" (RFC 9051 §6.4.6), with MODSEQ under
     CONDSTORE (RFC 7162 §3.1.3) and UID for UID STORE or under QRESYNC (§3.2.4);
   * with ``.SILENT``, nothing, except under CONDSTORE, where "an untagged FETCH response
     MUST be sent, even if the .SILENT suffix is specified, and the response MUST include
     the MODSEQ message data item" for every message the STORE changed (RFC 7162 §3.1.3;
     its Example 14 shows the same for a STORE without UNCHANGEDSINCE);
   * for messages that failed UNCHANGEDSINCE, their current FLAGS and MODSEQ, which
     RFC 7162 §3.1.3 recommends ("It is RECOMMENDED that the server avoids the need for
     the client to do that by sending an unsolicited FETCH response"), and the tagged
     ``OK [MODIFIED set] Conditional STORE failed`` with message numbers for STORE and
     UIDs for UID STORE.

Messages expunged by another session but not yet announced (ghosts) cannot be changed any
more. Following RFC 2180 §4.2 (the practice RFC 7162 §3.1.3 Example 11 builds on), the
STORE is applied to the other messages, their FETCH responses are sent, and the command
ends ``NO [EXPUNGEISSUED] Some of the messages no longer exist`` (``NO [MODIFIED ...]`` if
some also failed UNCHANGEDSINCE), telling the client to issue NOOP to learn what vanished.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailpost.imap import commands as cmd
from mailpost.imap import responses as rsp
from mailpost.imap.errors import SequenceRangeError
from mailpost.imap.handlers.fetch_common import enable_condstore, resolve, wants_uid
from mailpost.imap.responses import Response, Tagged
from mailpost.imap.selected import SelectedMailbox
from mailpost.imap.seqset import IntervalSet
from mailpost.store.errors import StoreError
from mailpost.store.types import FlagUpdate, MessageMeta

if TYPE_CHECKING:
    from mailpost.imap.session import IMAPSession

SYSTEM_FLAGS = frozenset({"\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"})
RECENT = "\\Recent"
Targets = list[tuple[int, int]]


class UnknownSystemFlag(ValueError):
    """A ``\\``-flag that RFC 9051 §2.3.2 does not define."""


def storable_flags(flags: tuple[str, ...]) -> frozenset[str]:
    """The flags a STORE may set: ``\\Recent`` dropped, unknown system flags refused.

    Raises:
        UnknownSystemFlag: for ``\\Foo``.
    """
    kept = set()
    for flag in flags:
        if flag == RECENT:
            continue
        if flag.startswith("\\") and flag not in SYSTEM_FLAGS:
            raise UnknownSystemFlag(flag)
        kept.add(flag)
    return frozenset(kept)


async def store(session: IMAPSession, command: cmd.Command) -> Response:
    """STORE and UID STORE."""
    assert isinstance(command, cmd.Store)
    view = session.selected
    assert view is not None
    if view.readonly:
        return Tagged(command.tag, "NO", "Mailbox is read-only", "READ-ONLY")
    try:
        flags = storable_flags(command.flags)
        targets = resolve(session, view, command.sequence_set, command.uid)
    except UnknownSystemFlag as exc:
        return Tagged(command.tag, "BAD", f"Unknown system flag {str(exc)[:40]}")
    except (SequenceRangeError, ValueError) as exc:
        return Tagged(command.tag, "BAD", f"Invalid sequence set: {exc}")
    if command.unchanged_since is not None:
        enable_condstore(session)
    try:
        # Learn of expunges and other sessions' flag changes first (EXPUNGE must wait).
        await session.catch_up(allow_expunge=False)
        live = [(msn, uid) for msn, uid in targets if not view.is_ghost(uid)]
        update = await _apply(session, view, command, live, flags)
    except StoreError:
        return Tagged(command.tag, "NO", "Cannot store flags now", "UNAVAILABLE")
    _report(session, view, command, live, update)
    return _completion(command, targets, update, expunged=len(live) < len(targets))


async def _apply(session: IMAPSession, view: SelectedMailbox, command: cmd.Store,
                 live: Targets, flags: frozenset[str]) -> FlagUpdate:
    if not live:
        return FlagUpdate(())
    update = await session.store.store_flags(view.info.id, [uid for _, uid in live],
                                             command.mode, flags, command.unchanged_since)
    view.apply_own_update(update.changed)
    return update


def _report(session: IMAPSession, view: SelectedMailbox, command: cmd.Store, live: Targets,
            update: FlagUpdate) -> None:
    changed = {meta.uid for meta in update.changed}
    failed = set(update.failed_unchanged_since)
    include_uid = wants_uid(session, command.uid)
    condstore = session.options.condstore
    for msn, uid in live:
        meta = view.meta(uid)
        if uid in failed or not command.silent:
            session.write(view.flags_line(meta, session.options, include_uid))
        elif uid in changed and condstore:
            session.write(_modseq_line(msn, meta, include_uid))


def _modseq_line(msn: int, meta: MessageMeta, include_uid: bool) -> bytes:
    items: list[tuple[str, bytes]] = [("UID", b"%d" % meta.uid)] if include_uid else []
    items.append(("MODSEQ", b"(%d)" % meta.modseq))
    return rsp.fetch(msn, items)


def _completion(command: cmd.Store, targets: Targets, update: FlagUpdate,
                expunged: bool) -> Response:
    status = "NO" if expunged else "OK"
    if update.failed_unchanged_since:
        failed = set(update.failed_unchanged_since)
        numbers = [uid if command.uid else msn for msn, uid in targets if uid in failed]
        code = f"MODIFIED {IntervalSet.from_numbers(numbers)}"
        text = "Some of the messages no longer exist" if expunged else \
            "Conditional STORE failed"
        return Tagged(command.tag, status, text, code)
    if expunged:
        return Tagged(command.tag, status, "Some of the messages no longer exist",
                      "EXPUNGEISSUED")
    return Tagged(command.tag, status, f"{command.name} completed")
