"""STATUS (RFC 9051 §6.3.11) and the STATUS data items that LIST-STATUS reuses (RFC 5819).

Theory of operation
-------------------
Every value comes from the store at the time of the command, also for the selected
mailbox: RFC 9051 §6.3.11 requires STATUS to work on it, and the store is the truth (the
session's view may lag until its next catch-up). The items:

* MESSAGES, UIDNEXT, UIDVALIDITY, UNSEEN and SIZE (RFC 8438 STATUS=SIZE) come from the
  store's per-mailbox counters, so they cost one row;
* DELETED and DELETED-STORAGE (RFC 9208 §4.1.4, required by QUOTA=RES-MESSAGE and
  QUOTA=RES-STORAGE) need the message list; DELETED-STORAGE is the sum of the RFC822.SIZE
  of the ``\\Deleted`` messages, in octets, which §4.1.4 explicitly allows;
* RECENT counts the messages no session has claimed as ``\\Recent`` yet
  (:mod:`mailpost.imap.recent`), read from the message list only when UIDNEXT shows there
  can be some; it exists only for IMAP4rev1 clients: after ``ENABLE IMAP4rev2`` it is not in
  the grammar (RFC 9051 §9 ``status-att``), so asking for it is BAD;
* HIGHESTMODSEQ (RFC 7162 §3.1.7) is a CONDSTORE enabling command (§3.1): the first one
  turns on MODSEQ in unsolicited FETCH responses and, with a mailbox selected, announces
  its HIGHESTMODSEQ;
* APPENDLIMIT (RFC 7889 §3.1) is the server-wide limit, the same for every mailbox;
* MAILBOXID (RFC 8474 §4.3) is :func:`~.mailbox_names.mailbox_object_id`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from mailpost.imap import commands as cmd
from mailpost.imap import responses as rsp
from mailpost.imap.handlers.mailbox_names import (
    account_id,
    answers_store_errors,
    mailbox_object_id,
)
from mailpost.imap.responses import Response, Tagged
from mailpost.store.types import MailboxInfo

if TYPE_CHECKING:
    from mailpost.imap.session import IMAPSession

StatusValue = int | str | None
_NEEDS_MESSAGES = frozenset({"DELETED", "DELETED-STORAGE"})


def rev1_only_item(session: IMAPSession, items: Sequence[str]) -> bool:
    """True if RECENT is asked for after ENABLE IMAP4rev2 (not an IMAP4rev2 item)."""
    return "RECENT" in items and "IMAP4REV2" in session.enabled


def enable_condstore(session: IMAPSession) -> None:
    """STATUS (HIGHESTMODSEQ) is a CONDSTORE enabling command (RFC 7162 §3.1)."""
    if "CONDSTORE" in session.enabled:
        return
    session.enabled.add("CONDSTORE")
    session.options.condstore = True
    view = session.selected
    if view is not None:
        session.write(rsp.untagged(f"OK [HIGHESTMODSEQ {view.modseq}] Highest".encode()))


async def status_values(session: IMAPSession, info: MailboxInfo,
                        items: Sequence[str]) -> list[tuple[str, StatusValue]]:
    """The requested STATUS items of ``info``, in the order asked."""
    deleted_count = deleted_size = recent = 0
    first_recent = session.services.recent.first_unclaimed(info)
    count_recent = "RECENT" in items and info.uidnext > first_recent and info.messages > 0
    if count_recent or _NEEDS_MESSAGES.intersection(items):
        for meta in await session.store.messages(info.id):
            recent += meta.uid >= first_recent
            if "\\Deleted" in meta.flags:
                deleted_count += 1
                deleted_size += meta.size
    if "HIGHESTMODSEQ" in items:
        enable_condstore(session)
    values: dict[str, StatusValue] = {
        "MESSAGES": info.messages,
        "UIDNEXT": info.uidnext,
        "UIDVALIDITY": info.uidvalidity,
        "UNSEEN": info.unseen,
        "DELETED": deleted_count,
        "DELETED-STORAGE": deleted_size,
        "SIZE": info.size,
        "RECENT": recent,
        "HIGHESTMODSEQ": info.highest_modseq,
        "APPENDLIMIT": session.config.append_limit,
        "MAILBOXID": mailbox_object_id(info.id),
    }
    return [(item, values[item]) for item in items]


def status_line(session: IMAPSession, info: MailboxInfo,
                values: Sequence[tuple[str, StatusValue]]) -> bytes:
    return rsp.status_response(info.name, values, utf8=session.utf8)


@answers_store_errors
async def status(session: IMAPSession, command: cmd.Command) -> Response:
    assert isinstance(command, cmd.Status)
    if rev1_only_item(session, command.items):
        return Tagged(command.tag, "BAD", "RECENT is not an IMAP4rev2 STATUS item")
    info = await session.store.get_mailbox(account_id(session), command.mailbox)
    if info is None:
        return Tagged(command.tag, "NO", "No such mailbox", "NONEXISTENT")
    values = await status_values(session, info, command.items)
    session.write(status_line(session, info, values))
    return Tagged(command.tag, "OK", "STATUS completed")
