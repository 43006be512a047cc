"""NOTIFY for the selected mailbox: what catch-up sends, and the FETCH for new messages
(RFC 5465 §5.1-§5.3, §6.1).

Theory of operation
-------------------
The selected mailbox is brought up to date by the session's own machinery,
:meth:`SelectedMailbox.sync <mailpost.imap.selected.SelectedMailbox.sync>`, which returns
``EXPUNGE``/``VANISHED``, ``FETCH (FLAGS ...)`` and ``EXISTS`` lines in a valid order. NOTIFY
changes *when* that runs (see :mod:`.notify`) and filters *what* goes out:

* without FlagChange for the selected mailbox the flag FETCH lines are dropped: the view
  records the new flags all the same, so a later FETCH FLAGS answers the truth;
* EXISTS and EXPUNGE are never dropped when a sync runs. They keep the client's message
  numbers equal to the server's; withholding them would make a later ``FETCH 1:*`` name
  messages the client was never told about. Without MessageNew/MessageExpunge for the
  selected mailbox the sync simply does not run between commands, only at the end of a
  command, as in plain IMAP (RFC 9051 §7.4.1);
* with MessageNew and FETCH attributes, each new message gets an unsolicited FETCH after the
  EXISTS (§5.2: "an unsolicited EXISTS response, followed by an unsolicited FETCH
  response"), rendered by the FETCH family (:mod:`.fetch_items`) and written with its
  bounded-buffer writer. A body attribute never sets ``\\Seen`` here: the notification is
  not the client reading the message, and §5.2 asks clients not to request such attributes
  anyway. No FETCH is generated for messages this session appended, copied or moved into
  the mailbox itself (§5.2 "SHOULD NOT").

At most :data:`MAX_NEW_FETCH` new messages get a FETCH per wake-up; more than that (a bulk
import) is a notification overflow for the caller to report.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

from mailpost.imap.fetchatt import FetchAttribute
from mailpost.imap.handlers.fetch_cache import MESSAGE_CACHE
from mailpost.imap.handlers.fetch_items import FetchOptions, render_items
from mailpost.imap.handlers.fetch_output import PacedWriter
from mailpost.imap.handlers.fetch_source import MessageSource
from mailpost.imap.responses import Bye
from mailpost.imap.selected import SelectedMailbox
from mailpost.mime import UnknownTransferEncoding
from mailpost.store.errors import NotFound, StoreError

if TYPE_CHECKING:
    from mailpost.imap.session import IMAPSession

# New messages that get an unsolicited FETCH in one wake-up; beyond it, overflow.
MAX_NEW_FETCH = 500


def is_flag_fetch(line: bytes) -> bool:
    """``* n FETCH (...)``: the only FETCH responses ``SelectedMailbox.sync`` produces."""
    parts = line.split(b" ", 3)
    return len(parts) == 4 and parts[2] == b"FETCH"


async def sync_view(session: IMAPSession, view: SelectedMailbox, *, allow_expunge: bool,
                    show_flags: bool) -> list[int] | None:
    """Catch the view up and write what the client may see; returns the UIDs that are new
    to the view, or None when the mailbox is gone (a BYE has been sent, as the session's
    own catch-up does: RFC 9051 §7.1.5)."""
    highest = view.highest_uid
    try:
        lines = await view.sync(session.store, allow_expunge=allow_expunge,
                                options=session.options)
    except NotFound:
        session.respond(Bye("Selected mailbox was deleted"))
        return None
    for line in lines:
        if show_flags or not is_flag_fetch(line):
            session.write(line)
    return view.uids[bisect.bisect_right(view.uids, highest):]


async def send_new_messages(session: IMAPSession, view: SelectedMailbox, uids: list[int],
                            attributes: tuple[FetchAttribute, ...]) -> None:
    """One unsolicited FETCH per new message, with the attributes NOTIFY asked for."""
    options = FetchOptions(
        attributes=attributes,
        # RFC 7162 §3.2.4: under QRESYNC unsolicited FETCH responses carry the UID.
        uid_command=session.options.qresync,
        condstore=session.options.condstore,
        qresync=session.options.qresync,
        utf8=session.utf8,
        message_global="IMAP4REV2" in session.enabled,
        recent=view.recent,
    )
    writer = PacedWriter(session)
    for uid in uids:
        msn = view.msn_of(uid)
        if msn is None or view.is_ghost(uid):
            continue
        source = MessageSource(session.store.blobs, view.meta(uid), MESSAGE_CACHE)
        try:
            await writer.message(msn, await render_items(options, source, False))
        except (NotFound, UnknownTransferEncoding, StoreError):
            continue  # expunged meanwhile, or unreadable: the client can still FETCH it
        finally:
            source.close()
