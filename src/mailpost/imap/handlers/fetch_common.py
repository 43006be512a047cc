"""What FETCH and STORE share: resolving the sequence set, CONDSTORE enabling, date-time.

Theory of operation
-------------------
Both commands name messages by a sequence set, resolved against the session's view of the
mailbox (:mod:`mailpost.imap.selected`), never against the store: message sequence numbers
are the client's, and a message expunged elsewhere keeps its number until the session may
announce the expunge (RFC 9051 §7.5.1). :func:`resolve` returns ``(msn, uid)`` pairs;
a message number beyond the view raises ``SequenceRangeError`` (the handlers answer BAD,
security catalogue I6), UIDs that do not exist are skipped (RFC 9051 §6.4.9).

``$`` (RFC 5182 SEARCHRES) is the last ``SEARCH RETURN (SAVE)`` result, which the SEARCH
handler keeps on the session as a list of UIDs (``saved_search``); for message-number
commands it is turned into the numbers those UIDs have now. Without a saved result ``$``
is the empty list, which RFC 5182 §2.1 says "must be treated ... as a valid, but
non-matching list of messages" ("FETCH $" then answers OK with no FETCH responses).

RFC 7162 §3.1 lists the "CONDSTORE enabling commands": FETCH with MODSEQ or CHANGEDSINCE
and STORE with UNCHANGEDSINCE among them. :func:`enable_condstore` switches the session to
CONDSTORE-aware output (MODSEQ in every later FETCH response) and, the first time with a
mailbox selected, reports ``HIGHESTMODSEQ`` as that section requires.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from mailpost.imap import responses as rsp
from mailpost.imap.selected import SelectedMailbox
from mailpost.imap.seqset import IntervalSet, SequenceSet

if TYPE_CHECKING:
    from mailpost.imap.session import IMAPSession

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def resolve(session: IMAPSession, view: SelectedMailbox, sequence_set: SequenceSet,
            uid: bool) -> list[tuple[int, int]]:
    """The ``(msn, uid)`` pairs a FETCH/STORE names, in ascending order.

    Raises:
        SequenceRangeError: a message number (or ``*`` in an empty mailbox) lies beyond the
            view (answer BAD).
    """
    saved = session.saved_set(uid) if sequence_set.saved else None
    if uid:
        return sequence_set.select_by_uid(view.uids, saved)
    return sequence_set.select_by_msn(view.uids, saved)


def uid_intervals(session: IMAPSession, view: SelectedMailbox, sequence_set: SequenceSet,
                  largest: int) -> IntervalSet:
    """The UIDs a UID set names, ``*`` read as ``largest`` (for UIDs no longer in the view,
    such as those VANISHED reports)."""
    saved = session.saved_set(True) if sequence_set.saved else None
    return sequence_set.intervals(largest, saved)


def enable_condstore(session: IMAPSession) -> None:
    """A CONDSTORE enabling command ran (RFC 7162 §3.1)."""
    if session.options.condstore:
        return
    session.options.condstore = True
    session.enabled.add("CONDSTORE")
    view = session.selected
    if view is not None:
        # RFC 7162 §3.1: "A first CONDSTORE enabling command executed in the session with a
        # mailbox selected MUST cause the server to return HIGHESTMODSEQ".
        session.write(rsp.untagged(b"OK [HIGHESTMODSEQ %d] Highest" % view.modseq))


def wants_uid(session: IMAPSession, uid_command: bool) -> bool:
    """Whether FETCH responses caused by a flag change carry UID: always for the UID form,
    and under QRESYNC for every such response (RFC 7162 §3.2.4)."""
    return uid_command or session.options.qresync


def date_time(moment: datetime) -> bytes:
    """RFC 9051 §9 ``date-time``: ``"dd-Mon-yyyy hh:mm:ss +zzzz"`` with a space-padded day."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    offset = moment.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    text = (f'"{moment.day:2d}-{_MONTHS[moment.month - 1]}-{moment.year:04d} '
            f'{moment:%H:%M:%S} {sign}{hours:02d}{rest:02d}"')
    return text.encode("ascii")
