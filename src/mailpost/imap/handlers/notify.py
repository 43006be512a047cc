"""NOTIFY (RFC 5465): the command, each session's notification state, and the hooks by which
the session loop delivers notifications at any time.

Theory of operation
-------------------
**Who owns the bus.** Every logged-in session has a bounded bus subscription for its
account (:mod:`mailpost.bus`); without NOTIFY the session's ``catch_up`` takes what it
queued at the end of each command and in IDLE, and looks only at the selected mailbox. Once
a session has used NOTIFY, this module takes the queue instead (the session's ``catch_up``
delegates to :func:`catch_up`), because a batch of changes now matters for other mailboxes
too, and because changes must be delivered between commands as well.

**When notifications go out.** RFC 5465 §3.1: after NOTIFY "the client listens for event
notifications all the time (even when no command is in progress)". So:

* in IDLE, at once: IDLE waits for input *or* the subscription's bell and then calls
  ``catch_up``, which lands here;
* at the end of every command, through the same ``catch_up``;
* between commands, at once: while the session loop waits for the client's next bytes it
  calls :func:`read_input`, which waits for input *or* the bell, and on the bell renders
  and flushes the pending notifications (:func:`push`) and goes back to waiting, without
  ever losing the pending read.

Nothing polls: a session sleeps until its own subscription rings, and a publish rings only
the subscriptions of the account concerned. The bus is only a doorbell; every response is
computed from the store (:mod:`.notify_mailboxes`, :mod:`.notify_selected`), so the same code
works when the bus spans processes (PostgreSQL ``LISTEN/NOTIFY`` behind the ``ChangeBus``
protocol), where notifications may be coalesced.

**The selected mailbox** (§5, §6.1). Between commands it is synchronised only if the client
asked for message events with SELECTED or SELECTED-DELAYED. Expunges go out between commands
only with SELECTED and MessageExpunge (such a client has given up message numbers, §5.3);
with SELECTED-DELAYED they wait for a command that allows EXPUNGE (§6.1.2), like plain IMAP.
Changes taken between commands but not shown leave the mailbox marked *dirty*, so the next
command's catch-up synchronises it. :mod:`.notify_selected` describes what is filtered.

**NOTIFY NONE and overflow.** NOTIFY NONE keeps the state with no plan: nothing is sent for
other mailboxes and nothing between commands, and the selected mailbox behaves as in plain
IMAP (flag changes included), i.e. as "until the NOTIFY command is used for the first time"
(§3.1) minus any registered event. A subscription that overflowed (a burst of more than its
1024 queued changes, or a client too slow to read what it asked for), or a wake-up with
more than :data:`~.notify_selected.MAX_NEW_FETCH` new messages to FETCH, is reported once
as ``* OK [NOTIFICATIONOVERFLOW]`` and then treated as NOTIFY NONE (§5.8); the selected
mailbox is resynchronised from the store at the next opportunity, as always.

**Slow clients.** The publisher never waits for a session: the queue is bounded and
overflows instead. A session's own writes are paced by its connection's write deadline
(``imap.write_timeout``), which only ever blocks that session.

**Own changes** (§5: "SHOULD omit notifying the client if the event is caused by this
client"). The session reports each event to :func:`note_event` before handling it; the names
a command will create, rename, delete or (un)subscribe, and the targets of its APPEND, COPY
or MOVE, are skipped in the next batch (the watch is updated silently).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mailpost.imap import commands as cmd
from mailpost.imap import events as ev
from mailpost.imap import responses as rsp
from mailpost.imap.handlers.connection import IdleWakeup
from mailpost.imap.handlers.fetch_output import PacedWriter
from mailpost.imap.handlers.mailbox_names import superiors
from mailpost.imap.handlers.notify_mailboxes import (
    Context,
    MailboxWatch,
    OwnActions,
    initial_status,
    mailbox_notifications,
)
from mailpost.imap.handlers.notify_plan import (
    NotifyPlan,
    NotifyRejected,
    canonical_name,
    plan_notify,
)
from mailpost.imap.handlers.notify_selected import MAX_NEW_FETCH, send_new_messages, sync_view
from mailpost.imap.responses import Response, Tagged
from mailpost.store.errors import StoreError

if TYPE_CHECKING:
    from mailpost.imap.session import Handler, IMAPSession

log = logging.getLogger(__name__)

CAPABILITIES: tuple[str, ...] = ("NOTIFY",)


@dataclass
class NotifyState:
    """One session's NOTIFY registration; ``plan`` None after NOTIFY NONE or an overflow."""

    plan: NotifyPlan | None
    watch: MailboxWatch
    own: OwnActions = field(default_factory=OwnActions)
    own_new_in_selected: bool = False
    dirty_selected: int | None = None  # selected mailbox id with changes not yet synced


# Sessions that have used NOTIFY. Weak keys: the state goes with its session.
_STATES: weakref.WeakKeyDictionary[IMAPSession, NotifyState] = weakref.WeakKeyDictionary()


# --- hooks called by the session ---------------------------------------------------------------


def active(session: IMAPSession) -> bool:
    """True once the session has used NOTIFY: this module then owns its bus queue."""
    return session in _STATES


def wants_push(session: IMAPSession) -> bool:
    """True when notifications must go out between commands (a NOTIFY SET is in force)."""
    state = _STATES.get(session)
    return state is not None and state.plan is not None and session.subscription is not None


async def catch_up(session: IMAPSession, allow_expunge: bool) -> bool:
    """The session's end-of-command (and IDLE) catch-up under NOTIFY. False when the session
    cannot go on (its mailbox was deleted; a BYE has been sent)."""
    state = _STATES.get(session)
    if state is None or session.subscription is None:
        return True
    return await _drain(session, state, in_command=True, allow_expunge=allow_expunge)


async def read_input(session: IMAPSession, timeout: float) -> bytes:
    """The session's next input; meanwhile, push notifications as they happen (RFC 5465 §3.1).

    Returns ``b""`` (end of input) if a push had to end the session with BYE.
    """
    if not wants_push(session):
        return await session.read_input(timeout)
    reader = asyncio.ensure_future(session.read_input(timeout))
    wakeup = IdleWakeup()  # the same single-future wait as IDLE's
    reader.add_done_callback(wakeup.ring)
    try:
        while wants_push(session) and not await wakeup.input_or_change(reader,
                                                                        session.subscription):
            await push(session)
            if session.closing:
                return b""
        return await reader
    finally:
        if not reader.done():
            reader.cancel()


async def push(session: IMAPSession) -> None:
    """Render and send what is pending, with no command in progress."""
    state = _STATES.get(session)
    if state is not None and session.subscription is not None:
        await _drain(session, state, in_command=False, allow_expunge=False)
    await session.flush()


def note_event(session: IMAPSession, event: object) -> None:
    """Remember what the session's own command is about to change (see the docstring)."""
    state = _STATES.get(session)
    if state is None:
        return
    if isinstance(event, (cmd.Create, cmd.Delete, cmd.Subscribe, cmd.Unsubscribe)):
        _note_names(state.own, event.mailbox)
    elif isinstance(event, cmd.Rename):
        _note_names(state.own, event.mailbox, subtree=True)
        _note_names(state.own, event.new_mailbox, subtree=True)
    elif isinstance(event, (cmd.Copy, cmd.Move, ev.AppendDone)):
        target = canonical_name(event.mailbox)
        state.own.targets.add(target)
        view = session.selected
        if view is not None and view.info.name == target:
            state.own_new_in_selected = True


def _note_names(own: OwnActions, name: str, subtree: bool = False) -> None:
    canonical = canonical_name(name)
    own.names.add(canonical)
    own.names.update(superiors(canonical))  # created with it, or its parent
    if subtree:
        own.subtrees.add(canonical)


# --- one batch ----------------------------------------------------------------------------------


async def _drain(session: IMAPSession, state: NotifyState, *, in_command: bool,
                 allow_expunge: bool) -> bool:
    assert session.subscription is not None
    changes, overflowed = session.subscription.take()
    if overflowed:
        _overflow(session, state, "Too many changes at once")
    view = session.selected
    if view is not None and (overflowed or any(c.mailbox_id == view.info.id for c in changes)):
        state.dirty_selected = view.info.id
    if not await _selected(session, state, in_command=in_command, allow_expunge=allow_expunge):
        return False
    if state.plan is not None and changes:
        try:
            lines = await mailbox_notifications(_context(session, state.plan), state.watch,
                                                changes, state.own)
        except StoreError:
            # The store could not be read: these notifications are lost, but the watch is
            # unchanged, so the next change to each mailbox reports the full difference.
            log.warning("NOTIFY: store unavailable, notifications skipped")
            lines = []
        for line in lines:
            session.write(line)
    state.own.clear()
    state.own_new_in_selected = False
    return True


async def _selected(session: IMAPSession, state: NotifyState, *, in_command: bool,
                    allow_expunge: bool) -> bool:
    """Synchronise the selected mailbox if this is a moment to (see the module docstring)."""
    view = session.selected
    if view is None:
        return True
    plan = state.plan
    dirty = state.dirty_selected == view.info.id
    if in_command:
        if not dirty and not (allow_expunge and view.ghosts):
            return True
    elif plan is None or not plan.watches_selected or not dirty:
        return True
    else:
        allow_expunge = plan.immediate_expunge
    state.dirty_selected = None
    new = await sync_view(session, view, allow_expunge=allow_expunge,
                          show_flags=plan is None or plan.shows_flags)
    if new is None:
        return False
    if plan is not None and plan.fetch_attributes and new and not state.own_new_in_selected:
        if len(new) > MAX_NEW_FETCH:
            _overflow(session, state, "Too many new messages to fetch")
        else:
            await send_new_messages(session, view, new, plan.fetch_attributes)
    return True


def _overflow(session: IMAPSession, state: NotifyState, text: str) -> None:
    """RFC 5465 §5.8: say NOTIFICATIONOVERFLOW and "behave as if a NOTIFY NONE command had
    just been received"."""
    if state.plan is not None:
        session.write(rsp.untagged(b"OK [NOTIFICATIONOVERFLOW] " + text.encode("ascii")))
        state.plan = None


def _context(session: IMAPSession, plan: NotifyPlan) -> Context:
    assert session.account is not None
    view = session.selected
    return Context(session.store, session.account.id, plan,
                   None if view is None else view.info.id,
                   session.options.condstore, session.utf8)


# --- the command ----------------------------------------------------------------------------


async def notify(session: IMAPSession, command: cmd.Command) -> Response | None:
    """NOTIFY SET [STATUS] groups, or NOTIFY NONE (RFC 5465 §3.1)."""
    assert isinstance(command, cmd.Notify) and session.account is not None
    if command.groups is None:
        state = _STATES.get(session)
        if state is not None:
            state.plan = None
        return Tagged(command.tag, "OK", "NOTIFY completed")
    try:
        plan = plan_notify(command.groups)
    except NotifyRejected as rejected:
        return rejected.response(command.tag)
    # A successful NOTIFY SET "implies an implicit NOOP" (§3.1): what accumulated so far is
    # reported now, under the rules that were in force when it happened.
    if not await session.catch_up(allow_expunge=True):
        return None
    try:
        listing = await session.store.list_mailboxes(session.account.id)
        subscriptions = await session.store.subscriptions(session.account.id)
    except StoreError:
        return Tagged(command.tag, "NO", "Mail store temporarily unavailable", "UNAVAILABLE")
    state = NotifyState(plan, MailboxWatch.of(listing, subscriptions))
    _STATES[session] = state
    if command.status:
        writer = PacedWriter(session)
        for line in initial_status(_context(session, plan), state.watch, listing):
            await writer.write(line)
    return Tagged(command.tag, "OK", "NOTIFY completed")


HANDLERS: dict[type[cmd.Command], Handler] = {
    cmd.Notify: notify,
}
