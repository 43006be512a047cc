"""The mailbox commands: CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, NAMESPACE, and the
dispatch table entries for LIST, LSUB, STATUS and QUOTA whose code lives in the
``mailbox_*`` helper modules (RFC 9051 §6.3.4-6.3.11, RFC 5258, RFC 5819, RFC 6154,
RFC 2342, RFC 9208).

Theory of operation
-------------------
The store keeps one row per existing mailbox and a separate subscription list; it does
one name at a time and knows nothing of IMAP's special cases. This module adds them:

* **CREATE** strips one trailing delimiter (``foo/`` declares intent, §6.3.4), refuses
  INBOX, then creates the mailbox and afterwards any missing superior (``a/b/c`` also
  makes ``a`` and ``a/b``, the §6.3.4 SHOULD). The mailbox itself is created first so
  that an invalid or existing name fails before anything changes. ``USE (\\Sent)``
  (CREATE-SPECIAL-USE, RFC 6154 §3) sets one special use; the store keeps one per
  mailbox, so several uses, or the virtual ``\\All`` and ``\\Flagged`` that this server
  does not implement, are ``NO [USEATTR]``. The OK carries ``[MAILBOXID (...)]``
  (RFC 8474 §4.1).
* **DELETE** removes one mailbox and never its inferiors (§6.3.5); a level that does not
  exist is ``NO [NONEXISTENT]``, which is also what §6.3.5 asks for a ``\\Noselect``
  name. If the session had the mailbox selected it goes back to the authenticated state
  with ``* OK [CLOSED]``, since no command can work on a mailbox that is gone.
* **RENAME** moves the subtree (the store does it in one transaction, §6.3.6) and then
  creates missing superiors of the new name. Renaming a level that does not exist but has
  mailboxes below it (the §6.3.6 example renames such a ``\\Noselect`` ``foo``) renames
  each topmost existing mailbox below it. Renaming INBOX creates the new mailbox and moves
  every INBOX message into it, leaving INBOX empty and its inferiors untouched.
* **SUBSCRIBE/UNSUBSCRIBE** store the name whether or not a mailbox has it (§6.3.7).
* **NAMESPACE** (RFC 2342): one personal namespace, prefix ``""``, delimiter ``/``.

Store errors become tagged NO responses with RFC 5530 codes in
:func:`.mailbox_names.store_failure`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from mailpost.imap import commands as cmd
from mailpost.imap import responses as rsp
from mailpost.imap.handlers import mailbox_list, mailbox_quota, mailbox_status
from mailpost.imap.handlers.mailbox_names import (
    DELIMITER,
    INBOX,
    account_id,
    answers_store_errors,
    is_inferior,
    mailbox_object_id,
    strip_trailing_delimiter,
    superiors,
)
from mailpost.imap.responses import Response, Tagged
from mailpost.store.errors import AlreadyExists, InvalidName, NotFound, StoreError
from mailpost.store.types import MailboxInfo

if TYPE_CHECKING:
    from mailpost.imap.session import Handler, IMAPSession

# RFC 6154 §2 uses this server can honour; \All and \Flagged describe virtual mailboxes.
SUPPORTED_USES = frozenset({"\\Archive", "\\Drafts", "\\Junk", "\\Sent", "\\Trash"})


# --- CREATE --------------------------------------------------------------------------------


def _use_problem(uses: tuple[str, ...]) -> str | None:
    """Why a CREATE ``USE`` list cannot be honoured, or None (RFC 6154 §3)."""
    if len(uses) > 1:
        return "Only one special use per mailbox"
    if uses and uses[0] not in SUPPORTED_USES:
        return "Special use not supported"
    return None


async def create_superiors(session: IMAPSession, owner: int, name: str) -> None:
    """Create the missing superior levels of ``name``, top first (RFC 9051 §6.3.4)."""
    for parent in reversed(list(superiors(name))):
        try:
            await session.store.create_mailbox(owner, parent)
        except AlreadyExists:
            continue


@answers_store_errors
async def create(session: IMAPSession, command: cmd.Command) -> Response:
    assert isinstance(command, cmd.Create)
    name = strip_trailing_delimiter(command.mailbox)
    if name.upper() == INBOX:
        return Tagged(command.tag, "NO", "INBOX always exists", "ALREADYEXISTS")
    problem = _use_problem(command.special_use)
    if problem is not None:
        return Tagged(command.tag, "NO", problem, "USEATTR")
    owner = account_id(session)
    use = command.special_use[0] if command.special_use else None
    info = await session.store.create_mailbox(owner, name, use)
    await create_superiors(session, owner, info.name)
    return Tagged(command.tag, "OK", "CREATE completed",
                  f"MAILBOXID ({mailbox_object_id(info.id)})")


# --- DELETE --------------------------------------------------------------------------------


def _leave_if_selected(session: IMAPSession, mailbox_id: int) -> None:
    from mailpost.imap.session import SessionState
    view = session.selected
    if view is None or view.info.id != mailbox_id:
        return
    session.selected = None
    session.state = SessionState.AUTHENTICATED
    session.write(rsp.untagged(b"OK [CLOSED] The selected mailbox was deleted"))


@answers_store_errors
async def delete(session: IMAPSession, command: cmd.Command) -> Response:
    assert isinstance(command, cmd.Delete)
    if command.mailbox == INBOX:
        return Tagged(command.tag, "NO", "INBOX cannot be deleted", "CANNOT")
    owner = account_id(session)
    info = await session.store.get_mailbox(owner, command.mailbox)
    if info is None:
        return Tagged(command.tag, "NO", "No such mailbox", "NONEXISTENT")
    await session.store.delete_mailbox(owner, info.name)
    _leave_if_selected(session, info.id)
    return Tagged(command.tag, "OK", "DELETE completed")


# --- RENAME --------------------------------------------------------------------------------


async def _rename_inbox(session: IMAPSession, owner: int, new: str) -> None:
    """RFC 9051 §6.3.6: move every INBOX message to a new mailbox; INBOX stays, empty."""
    store = session.store
    target = await store.create_mailbox(owner, new)
    inbox = await store.get_mailbox(owner, INBOX)
    if inbox is None:
        raise NotFound("no INBOX")
    uids = [meta.uid for meta in await store.messages(inbox.id)]
    if not uids:
        return
    try:
        await store.move(inbox.id, uids, target.id)
    except StoreError:
        await _discard(session, owner, target)
        raise


async def _discard(session: IMAPSession, owner: int, mailbox: MailboxInfo) -> None:
    """Undo the create of a failed INBOX rename, as well as a failing store allows."""
    try:
        await session.store.delete_mailbox(owner, mailbox.name)
    except StoreError:
        return


async def _topmost_below(session: IMAPSession, owner: int, level: str) -> list[str]:
    """Existing mailboxes below ``level`` with no existing mailbox between them and it."""
    names = {info.name for info in await session.store.list_mailboxes(owner)}
    return sorted(name for name in names if is_inferior(name, level)
                  and not any(parent in names for parent in superiors(name)
                              if is_inferior(parent, level)))


async def _rename_level(session: IMAPSession, owner: int, old: str, new: str) -> None:
    """Rename a level that is not a mailbox itself by renaming what is below it."""
    roots = await _topmost_below(session, owner, old)
    if not roots:
        raise NotFound("no such mailbox")
    if new == old or is_inferior(new, old):
        raise InvalidName("cannot rename a level into itself")
    if await session.store.get_mailbox(owner, new) is not None:
        raise AlreadyExists("target exists")
    for root in roots:
        await session.store.rename_mailbox(owner, root, new + root[len(old):])


def _follow_rename(session: IMAPSession, old: str, new: str) -> None:
    """Keep this session's selected view named after its mailbox (the id is unchanged)."""
    view = session.selected
    if view is not None and (view.info.name == old or is_inferior(view.info.name, old)):
        view.info = dataclasses.replace(view.info, name=new + view.info.name[len(old):])


@answers_store_errors
async def rename(session: IMAPSession, command: cmd.Command) -> Response:
    assert isinstance(command, cmd.Rename)
    old, new = command.mailbox, command.new_mailbox
    if new.upper() == INBOX:
        return Tagged(command.tag, "NO", "INBOX always exists", "ALREADYEXISTS")
    owner = account_id(session)
    if old == INBOX:
        await _rename_inbox(session, owner, new)
    else:
        try:
            await session.store.rename_mailbox(owner, old, new)
        except NotFound:
            await _rename_level(session, owner, old, new)
        _follow_rename(session, old, new)
    await create_superiors(session, owner, new)
    return Tagged(command.tag, "OK", "RENAME completed")


# --- subscriptions and namespaces ------------------------------------------------------------


@answers_store_errors
async def subscribe(session: IMAPSession, command: cmd.Command) -> Response:
    assert isinstance(command, cmd.Subscribe)
    await session.store.set_subscribed(account_id(session), command.mailbox, True)
    return Tagged(command.tag, "OK", "SUBSCRIBE completed")


@answers_store_errors
async def unsubscribe(session: IMAPSession, command: cmd.Command) -> Response:
    assert isinstance(command, cmd.Unsubscribe)
    await session.store.set_subscribed(account_id(session), command.mailbox, False)
    return Tagged(command.tag, "OK", "UNSUBSCRIBE completed")


async def namespace(session: IMAPSession, command: cmd.Command) -> Response:
    """RFC 2342 §5 / RFC 9051 §6.3.10: ``* NAMESPACE (("" "/")) NIL NIL``."""
    session.write(rsp.namespace((("", DELIMITER),), utf8=session.utf8))
    return Tagged(command.tag, "OK", "NAMESPACE completed")


HANDLERS: dict[type[cmd.Command], Handler] = {
    cmd.Create: create,
    cmd.Delete: delete,
    cmd.Rename: rename,
    cmd.Subscribe: subscribe,
    cmd.Unsubscribe: unsubscribe,
    cmd.List: mailbox_list.list_mailboxes,
    cmd.Lsub: mailbox_list.lsub,
    cmd.Namespace: namespace,
    cmd.Status: mailbox_status.status,
    cmd.GetQuota: mailbox_quota.getquota,
    cmd.GetQuotaRoot: mailbox_quota.getquotaroot,
    cmd.SetQuota: mailbox_quota.setquota,
}
CAPABILITIES: tuple[str, ...] = (
    "NAMESPACE", "CHILDREN", "LIST-EXTENDED", "LIST-STATUS", "SPECIAL-USE",
    "CREATE-SPECIAL-USE", "STATUS=SIZE", "QUOTA", "QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE",
)
