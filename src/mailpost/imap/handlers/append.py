"""APPEND (with MULTIAPPEND, UIDPLUS, APPENDLIMIT, BINARY and UTF8 data), COPY and MOVE.

Theory of operation
-------------------
APPEND is not a command like the others: the protocol machine streams it
(:mod:`mailpost.imap.events`). For each message it first asks, through an ``AppendMessage``
event, whether the message is welcome - *before any octet of it arrives* - and then hands the
octets over as ``AppendData`` chunks; the command ends with ``AppendDone``. The dispatcher
routes these events to :func:`on_message` and :func:`on_event`.

**Deciding** (:func:`on_message`, RFC 9051 §6.3.12). The first message of a command opens an
:class:`~.append_stage.AppendStage` (looking the target mailbox up once). Each message is then
checked, cheapest first: size within APPENDLIMIT (``NO [TOOBIG]``, RFC 7889 §4), target
exists (``NO [TRYCREATE]``), flags valid, quota for everything staged so far plus this message
(``NO [OVERQUOTA]``, RFC 9208). A synchronising literal that fails is rejected at once: the
client never gets ``+`` and never sends the octets (security catalogue I1). A
non-synchronising literal is on its way already (RFC 7888 §4): if it is over APPENDLIMIT it
is rejected and the machine skips it (or, beyond what it can afford to skip, says ``BYE``);
otherwise it is *drained*: accepted, dropped octet by octet, and the command ends with the
``NO`` - so a client that overran its quota keeps its connection.

**Receiving** (:func:`on_event`). Octets go straight into the message's blob writer, which
keeps memory bounded by spilling large bodies to disk; when the next message or the end
arrives, the body is finished (made durable). 8-bit octets in the header section are watched
for when the client may not send them (RFC 6855 §4, :mod:`.append_headers`). Binary
(``~{n}``, RFC 3516 §4.4) and ``UTF8 (~{n})`` (RFC 6855 §4) messages are stored exactly as
received, like every other: no line-ending or encoding is rewritten.

**Committing** (``AppendDone``, :mod:`.append_commit`). All messages of the command are
appended together, all or none (RFC 3502 §3), each with ``enforce_quota=True``; the answer is
``OK [APPENDUID uidvalidity uid-set]`` (RFC 4315 §3). If the target is the selected mailbox
the session catches up before the tagged OK, so the client sees ``* n EXISTS`` right away
(RFC 9051 §6.3.12 "SHOULD notify the client immediately").

**Abandoning.** A command cut short by a ``BadCommand`` (e.g. a NUL in a non-binary literal)
or by the connection closing never reaches ``AppendDone``, so nothing of it is ever stored;
:func:`on_abort` drops its staged bodies, and an abandoned stage is also dropped when the next
APPEND begins or the session goes away.

COPY and MOVE live in :mod:`.append_copy`.
"""

from __future__ import annotations

import weakref
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from mailpost.config import Config
from mailpost.imap import commands as cmd
from mailpost.imap import events as ev
from mailpost.imap.handlers import append_copy
from mailpost.imap.handlers.append_commit import (
    TRYCREATE,
    commit,
    discard,
    quota_refusal,
)
from mailpost.imap.handlers.append_headers import HeaderScanner
from mailpost.imap.handlers.append_stage import UNAVAILABLE, AppendStage, Refusal, StagedMessage
from mailpost.imap.responses import Tagged
from mailpost.store.errors import StoreError

if TYPE_CHECKING:
    from mailpost.imap.session import Handler, IMAPSession

# APPENDLIMIT=<n> depends on the configuration, so handlers.capabilities() adds it (see
# appendlimit_capability); UTF8=ACCEPT also needs mailbox-name support from LIST and friends.
CAPABILITIES: tuple[str, ...] = ("MULTIAPPEND", "UIDPLUS", "MOVE")

HANDLERS: dict[type[cmd.Command], Handler] = {
    cmd.Copy: append_copy.copy_or_move,
    cmd.Move: append_copy.copy_or_move,
}

# System flags a client may set (RFC 9051 §2.3.2); \Recent is silently ignored (RFC 9051
# removed it and RFC 3501 §2.3.2 never let clients set it).
SETTABLE_SYSTEM_FLAGS = frozenset({"\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"})
RECENT = "\\Recent"

TOO_BIG = Refusal("Message exceeds APPENDLIMIT", "TOOBIG")

# One open APPEND per session (the machine serialises commands). Weak keys: a session that
# goes away takes its entry with it; the stage's own finalizer aborts what it held.
_STAGES: weakref.WeakKeyDictionary[IMAPSession, AppendStage] = weakref.WeakKeyDictionary()


def appendlimit_capability(config: Config) -> str:
    """``APPENDLIMIT=<n>`` for the CAPABILITY list (RFC 7889 §2 (a): one limit for all
    mailboxes)."""
    return f"APPENDLIMIT={config.append_limit}"


# -- AppendMessage ----------------------------------------------------------------------------


async def on_message(session: IMAPSession, event: ev.AppendMessage) -> None:
    """Decide about one message before its octets arrive (see the module docstring)."""
    if session.account is None:
        # The machine parses APPEND in any state; RFC 9051 §6.3.12 is an authenticated-state
        # command, and nothing may be stored for an anonymous client.
        _reject(session, Tagged(event.tag, "BAD", "APPEND is not allowed before login"))
        return
    stage = await _stage_for(session, event)
    if stage is None:  # pragma: no cover - a later message always follows an accepted one
        _reject(session, Tagged(event.tag, "NO", "APPEND failed"))
        return
    await stage.finish_current()
    refusal = stage.refusal or await _check(session, stage, event)
    if refusal is None:
        stage.begin(_new_message(session, stage, event))
        session.write(session.proto.accept_literal())
    elif event.synchronizing or event.size > session.config.append_limit:
        await _end(session, stage)
        _reject(session, refusal.response(event.tag))
    else:
        stage.refuse(refusal)
        stage.drain()
        session.write(session.proto.accept_literal())


async def _stage_for(session: IMAPSession, event: ev.AppendMessage) -> AppendStage | None:
    """The stage of this command; the first message opens it (and drops an abandoned one).
    None if a later message has no stage to join: storing it alone would break atomicity."""
    stage = _STAGES.get(session)
    if event.index > 0:
        return stage if stage is not None and stage.tag == event.tag else None
    if stage is not None:
        await _end(session, stage)
    assert session.account is not None
    try:
        account = await session.store.get_account_by_id(session.account.id) or session.account
        mailbox = await session.store.get_mailbox(account.id, event.mailbox)
    except StoreError:
        stage = AppendStage(event.tag, session.account, None, check_headers=False)
        stage.refuse(UNAVAILABLE)
    else:
        stage = AppendStage(event.tag, account, mailbox, _must_check_headers(session))
    stage.guard(session)
    _STAGES[session] = stage
    return stage


async def _check(session: IMAPSession, stage: AppendStage,
                 event: ev.AppendMessage) -> Refusal | None:
    """Why this message cannot be accepted, or None. Cheap checks first; no octet has come."""
    if event.size > session.config.append_limit:
        return TOO_BIG
    if stage.mailbox is None:
        return TRYCREATE
    unknown = [flag for flag in event.flags
               if flag.startswith("\\") and flag not in SETTABLE_SYSTEM_FLAGS | {RECENT}]
    if unknown:
        # RFC 9051 §6.3.12 "NO - ... error in flags": a server must not invent flag-extension
        # flags (RFC 9051 §2.3.2), so it cannot store one either.
        return Refusal(f"Unknown system flag {unknown[0]}")
    try:
        return await quota_refusal(session.store, stage.account,
                                   stage.staged_bytes + event.size, stage.staged_count + 1)
    except StoreError:
        return UNAVAILABLE


def _new_message(session: IMAPSession, stage: AppendStage,
                 event: ev.AppendMessage) -> StagedMessage:
    flags = frozenset(flag for flag in event.flags if flag != RECENT)
    # RFC 9051 §6.3.12: without a date-time the internal date is "the current date and time".
    when = event.internal_date or datetime.now(UTC).replace(microsecond=0)
    scanner = HeaderScanner() if stage.check_headers else None
    return StagedMessage(session.store.blobs.writer(), flags, when, event.size, scanner)


def _must_check_headers(session: IMAPSession) -> bool:
    """RFC 6855 §4: a server offering UTF8=ACCEPT must refuse 8-bit header fields from a
    client that enabled neither UTF8=ACCEPT nor IMAP4rev2 (RFC 9051 §6.3.12 allows them)."""
    from mailpost.imap.handlers import capabilities
    return not session.utf8 and "UTF8=ACCEPT" in capabilities(session)


def _reject(session: IMAPSession, response: Tagged) -> None:
    session.write(session.proto.reject_literal(response))


# -- AppendData / AppendDone ------------------------------------------------------------------


async def on_event(session: IMAPSession, event: ev.AppendData | ev.AppendDone) -> None:
    """Stream octets into the current message; commit everything at the end of the command."""
    stage = _STAGES.get(session)
    if isinstance(event, ev.AppendData):
        if stage is not None and stage.tag == event.tag:
            stage.write(event.data)
        return
    if stage is None or stage.tag != event.tag:  # pragma: no cover - the machine prevents it
        session.respond(Tagged(event.tag, "NO", "APPEND failed"))
        return
    del _STAGES[session]
    await stage.finish_current()
    if stage.refusal is not None:
        await discard(session.store, stage)
        session.respond(stage.refusal.response(event.tag))
        return
    response = await commit(session.store, stage)
    if response.status == "OK":
        await session.catch_up(allow_expunge=True)
    session.respond(response)


async def on_abort(session: IMAPSession) -> None:
    """The open APPEND (if any) ended without ``AppendDone``: a ``BadCommand`` or ``Fatal``
    cut it short, or the connection closed. Nothing of it is stored."""
    stage = _STAGES.pop(session, None)
    if stage is not None:
        await discard(session.store, stage)


async def _end(session: IMAPSession, stage: AppendStage) -> None:
    if _STAGES.get(session) is stage:
        del _STAGES[session]
    await discard(session.store, stage)
