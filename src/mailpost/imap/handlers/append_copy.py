"""COPY, UID COPY, MOVE and UID MOVE (RFC 9051 §6.4.7, §6.4.8, §6.4.9; RFC 6851; RFC 4315).

Theory of operation
-------------------
The sequence set is resolved against the session's view of the selected mailbox, never the
store's newer state: message sequence numbers mean what the client was last told (RFC 9051
§5.5). A number beyond the mailbox is ``BAD`` (security catalogue I6); ``$`` is the saved
SEARCH result (RFC 5182), kept by the session as UIDs.

Then, in order: MOVE needs a read-write selection (``NO [READ-ONLY]``; COPY only reads the
source, so EXAMINE is enough); the target must exist (``NO [TRYCREATE]``, never created); the
store copies or moves all the messages in one transaction. COPY counts against the quota
(``NO [OVERQUOTA]``); MOVE does not, the messages stay in the account (RFC 6851 §4.1). The
answer carries ``COPYUID uidvalidity source-uids target-uids`` (RFC 4315 §3), or no code when
nothing was copied (RFC 9051 §6.3.12 example ``A005``). Copying or moving into the selected
mailbox itself is allowed (RFC 6851 §3.3); the new messages reach the client as ``EXISTS``
through the catch-up that follows every command.

**Messages expunged by another session** that this session has not been told about yet
(ghosts, or an expunge the bus has not delivered) are treated per RFC 2180 §4.4.1, which lets
a server refuse the COPY while expunged messages are pending; here only when the command
names one of them:

* by sequence number (``COPY``/``MOVE``) the client names messages it believes exist, and
  COPY must be all or nothing (RFC 9051 §6.4.7). So the command fails with
  ``NO [EXPUNGEISSUED]`` (RFC 5530) and copies nothing; the catch-up after the command sends
  the pending ``EXPUNGE`` responses, so a retry works. If the expunge lands between the check
  and the copy, the copies already made are expunged from the target again. A MOVE that
  loses that race has moved the other messages (RFC 6851 §3.3 allows a ``NO`` after a
  partial move: each message is moved or unaffected) and says so in its untagged responses;
* by UID (``UID COPY``/``UID MOVE``) a UID that no longer exists is simply not there
  (RFC 9051 §6.4.9: non-existent UIDs are ignored) and COPYUID tells exactly what was done.

**MOVE's responses** (RFC 6851 §4.3, RFC 9051 §6.4.8): the COPYUID code travels in an
untagged ``OK`` *before* the ``* n EXPUNGE`` responses (``VANISHED`` under QRESYNC, RFC 6851
§4.4) that announce the moved messages in this session, then the tagged ``OK`` follows, with
``HIGHESTMODSEQ`` when CONDSTORE is on (RFC 6851 §4.4).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from mailpost.imap import commands as cmd
from mailpost.imap import responses as rsp
from mailpost.imap.errors import SequenceRangeError
from mailpost.imap.handlers.append_commit import TRYCREATE, refusal_for
from mailpost.imap.handlers.append_stage import Refusal
from mailpost.imap.responses import Response, Tagged
from mailpost.imap.selected import SelectedMailbox
from mailpost.store.errors import StoreError
from mailpost.store.types import MailboxInfo

if TYPE_CHECKING:
    from mailpost.imap.session import IMAPSession

EXPUNGE_ISSUED = Refusal("Some of the messages were expunged meanwhile; nothing was done",
                         "EXPUNGEISSUED")
READ_ONLY = Refusal("The mailbox is selected read-only", "READ-ONLY")


async def copy_or_move(session: IMAPSession, command: cmd.Command) -> Response:
    """The handler of COPY, UID COPY, MOVE and UID MOVE."""
    assert isinstance(command, (cmd.Copy, cmd.Move))
    view = session.selected
    assert view is not None and session.account is not None
    try:
        uids = _resolve(session, view, command)
    except SequenceRangeError as exc:
        return Tagged(command.tag, "BAD", str(exc) or "Invalid sequence set")
    moving = isinstance(command, cmd.Move)
    if moving and view.readonly:
        return READ_ONLY.response(command.tag)
    try:
        target = await session.store.get_mailbox(session.account.id, command.mailbox)
        if target is None:
            return TRYCREATE.response(command.tag)
        if not command.uid and await _expunged_meanwhile(session, view, uids):
            return EXPUNGE_ISSUED.response(command.tag)
        if moving:
            return await _move(session, view, command, uids, target)
        return await _copy(session, view, command, uids, target)
    except StoreError as exc:
        return refusal_for(exc).response(command.tag)


def _resolve(session: IMAPSession, view: SelectedMailbox,
             command: cmd.Copy | cmd.Move) -> list[int]:
    """The UIDs the set names, in ascending order; by UID, known ghosts are left out."""
    saved = session.saved_set(command.uid)
    if command.uid:
        pairs = command.sequence_set.select_by_uid(view.uids, saved)
        return [uid for _, uid in pairs if not view.is_ghost(uid)]
    return [uid for _, uid in command.sequence_set.select_by_msn(view.uids, saved)]


async def _expunged_meanwhile(session: IMAPSession, view: SelectedMailbox,
                              uids: Sequence[int]) -> bool:
    """True if a message named by sequence number is gone from the store (see above)."""
    if not uids:
        return False
    if any(view.is_ghost(uid) for uid in uids):
        return True
    changes = await session.store.changes_since(view.info.id, view.modseq)
    wanted = set(uids)
    return any(uid in wanted for uid in changes.expunged)


async def _copy(session: IMAPSession, view: SelectedMailbox, command: cmd.Copy | cmd.Move,
                uids: list[int], target: MailboxInfo) -> Response:
    if not uids:
        return Tagged(command.tag, "OK", "No messages copied")
    pairs = await session.store.copy(view.info.id, uids, target.id, enforce_quota=True)
    if not command.uid and len(pairs) < len(uids):
        await _undo_copy(session, target, pairs)
        return EXPUNGE_ISSUED.response(command.tag)
    if not pairs:
        return Tagged(command.tag, "OK", "No messages copied")
    return Tagged(command.tag, "OK", "COPY completed", _copyuid(target, pairs))


async def _undo_copy(session: IMAPSession, target: MailboxInfo,
                     pairs: list[tuple[int, int]]) -> None:
    """Take back a COPY that lost a race with an expunge (all or nothing, RFC 9051 §6.4.7);
    the spent UIDs stay spent, which §6.4.7 allows."""
    if pairs:
        await session.store.expunge(target.id, [new for _, new in pairs])


async def _move(session: IMAPSession, view: SelectedMailbox, command: cmd.Copy | cmd.Move,
                uids: list[int], target: MailboxInfo) -> Response:
    if not uids:
        return Tagged(command.tag, "OK", "No messages moved")
    pairs = await session.store.move(view.info.id, uids, target.id)
    if pairs:
        session.write(rsp.untagged(f"OK [{_copyuid(target, pairs)}] Moved".encode()))
        for line in view.remove_now([source for source, _ in pairs], session.options):
            session.write(line)
    if not command.uid and len(pairs) < len(uids):
        return Tagged(command.tag, "NO", "Some of the messages were expunged meanwhile; "
                      "the others were moved", "EXPUNGEISSUED")
    if not pairs:
        return Tagged(command.tag, "OK", "No messages moved")
    return Tagged(command.tag, "OK", "MOVE completed", await _highest_modseq(session, view))


async def _highest_modseq(session: IMAPSession, view: SelectedMailbox) -> str | None:
    """RFC 6851 §4.4: with CONDSTORE on, the OK of a MOVE carries the new HIGHESTMODSEQ."""
    if not session.options.condstore:
        return None
    changes = await session.store.changes_since(view.info.id, view.modseq)
    return f"HIGHESTMODSEQ {changes.highest_modseq}"


def _copyuid(target: MailboxInfo, pairs: list[tuple[int, int]]) -> str:
    return rsp.code_copyuid(target.uidvalidity, [source for source, _ in pairs],
                            [new for _, new in pairs])
