"""SEARCH, UID SEARCH, SORT and THREAD: answering (RFC 9051 §6.4.4, RFC 3501 §6.4.4,
RFC 4731 ESEARCH, RFC 5182 SEARCHRES, RFC 5256 SORT/THREAD, RFC 5267 §3 ESORT, RFC 7162
§3.1.5 MODSEQ).

Theory of operation
-------------------
Every command first *searches* (:func:`.search_eval.evaluate` gives the matching UIDs), then
shapes the answer:

* ``SEARCH`` without ``RETURN``: the IMAP4rev1 ``* SEARCH n...`` line, ascending. A client that
  did ``ENABLE IMAP4rev2`` gets ``* ESEARCH (TAG "t") [UID] ALL set`` instead, since in
  IMAP4rev2 "If no result option is specified ..., ALL is assumed" and the only search response
  is ESEARCH (RFC 9051 §6.4.4, §7.3.4).
* ``RETURN (...)``: one ESEARCH line with the requested MIN/MAX/ALL/COUNT (RFC 4731 §3.1); MIN,
  MAX and ALL are left out when nothing matched, COUNT never is; ``RETURN (SAVE)`` alone sends
  no ESEARCH at all (RFC 9051 §6.4.4).
* ``MODSEQ`` in the criteria: ``(MODSEQ n)`` after a non-empty SEARCH or SORT response, or the
  ESEARCH ``MODSEQ`` item chosen as RFC 4731 §3.2 says; it is a CONDSTORE enabling command, so
  the first one also sends ``* OK [HIGHESTMODSEQ n]`` (RFC 7162 §3.1).
* ``SORT``: ``* SORT`` in sorted order; with ``RETURN`` (ESORT, RFC 5267 §3) an ESEARCH whose
  MIN/MAX are the first/last in sort order and whose ALL keeps the sort order, using ``a:b``
  only for ascending runs (§3.2).
* ``THREAD``: ``* THREAD`` built by :mod:`.search_sort` (ORDEREDSUBJECT) or
  :mod:`.search_thread` (REFERENCES); MODSEQ does not change it (RFC 7162 §3.1.9).

The saved result ``$`` (RFC 5182, RFC 9051 §6.4.4.1) is kept as UIDs in
``session.saved_search`` so it survives other sessions' expunges and is mapped to sequence
numbers only when used (``IMAPSession.saved_set``). It is set by a successful search with SAVE (only
the MIN/MAX messages when those are the sole other options, Table 4), emptied by a search with
SAVE that answers NO, and untouched otherwise. It belongs to the selected mailbox: it is
remembered together with the view it was computed on, and reads as empty for any other view, so
a new SELECT never sees the previous mailbox's result.

EXPUNGE (RFC 9051 §7.5.1): the dispatcher holds EXPUNGE responses during SEARCH; the UID forms
may report them, so they leave out messages already known to be expunged elsewhere.

CPU work that grows with the mailbox (header tests, body matching, sorting, threading) runs in
worker threads; the event loop only moves candidate sets around.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mailpost.imap import commands as cmd
from mailpost.imap import responses as rsp
from mailpost.imap.errors import SequenceRangeError
from mailpost.imap.handlers.search_eval import SearchScope, evaluate
from mailpost.imap.handlers.search_headers import load_headers
from mailpost.imap.handlers.search_sort import (
    HEADER_CRITERIA,
    Entry,
    ordered_subject,
    sort_entries,
)
from mailpost.imap.handlers.search_thread import references
from mailpost.imap.responses import Response, Tagged
from mailpost.imap.search import SearchKey, uses_modseq
from mailpost.imap.selected import SelectedMailbox
from mailpost.imap.seqset import IntervalSet, SequenceSet
from mailpost.store.errors import StoreUnavailable

if TYPE_CHECKING:
    from mailpost.imap.session import Handler, IMAPSession

CAPABILITIES: tuple[str, ...] = (
    "ESEARCH", "SEARCHRES", "SORT", "ESORT", "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES",
)
THREAD_ALGORITHMS = frozenset({"ORDEREDSUBJECT", "REFERENCES"})


class _SearchFailed(Exception):
    """The search could not complete; carries the tagged response to send."""

    def __init__(self, response: Tagged) -> None:
        super().__init__(response.text)
        self.response = response


# --- the saved result "$" ----------------------------------------------------------------------


def saved_uids(session: IMAPSession) -> list[int]:
    """The saved search result as UIDs; empty if none (leaving the mailbox clears it)."""
    return session.saved_search or []


def _save(session: IMAPSession, uids: list[int]) -> None:
    session.saved_search = uids


def _to_save(options: Sequence[str], found: list[int]) -> list[int]:
    """RFC 5182 §2.4 Table: SAVE with only MIN and/or MAX keeps just those messages."""
    if not found or {"ALL", "COUNT"} & set(options) or not {"MIN", "MAX"} & set(options):
        return found
    picked = ([found[0]] if "MIN" in options else []) + ([found[-1]] if "MAX" in options else [])
    return sorted(set(picked))


# --- shared steps ----------------------------------------------------------------------------


async def _search(session: IMAPSession, command: cmd.Command, key: SearchKey,
                  uid: bool) -> list[int]:
    """The matching UIDs, ascending; raises _SearchFailed with the response to give."""
    view = session.selected
    assert view is not None
    scope = SearchScope(view, session.store.blobs, saved_uids(session), uid)
    try:
        found = sorted(await evaluate(key, scope))
    except SequenceRangeError as exc:
        raise _SearchFailed(Tagged(command.tag, "BAD", str(exc))) from exc
    except StoreUnavailable as exc:
        raise _SearchFailed(Tagged(command.tag, "NO", "Cannot search now",
                                   "UNAVAILABLE")) from exc
    if uses_modseq(key):
        _enable_condstore(session, view)
    return found


def _enable_condstore(session: IMAPSession, view: SelectedMailbox) -> None:
    """RFC 7162 §3.1: SEARCH MODSEQ is a CONDSTORE enabling command; the first one with a
    mailbox selected reports HIGHESTMODSEQ."""
    if "CONDSTORE" in session.enabled:
        return
    session.enabled.add("CONDSTORE")
    session.options.condstore = True
    session.write(rsp.untagged(f"OK [HIGHESTMODSEQ {view.modseq}] Highest".encode()))


def _numbers(view: SelectedMailbox, uids: Sequence[int], uid: bool) -> list[int]:
    if uid:
        return list(uids)
    return [msn for msn in map(view.msn_of, uids) if msn is not None]


def _highest_modseq(view: SelectedMailbox, uids: Sequence[int]) -> int | None:
    return max((view.messages[u].modseq for u in uids), default=None)


def _esearch(session: IMAPSession, command: cmd.Command, options: Sequence[str],
             numbers: list[int], uids: list[int], *, modseq: bool, ordered: bool) -> bytes:
    """One ESEARCH line; ``numbers`` in result order and ``uids`` the same messages.

    ``ordered`` (ESORT): ALL keeps the given order and MIN/MAX are first/last."""
    view = session.selected
    assert view is not None
    low = high = None
    if numbers:
        low, high = (numbers[0], numbers[-1]) if ordered else (min(numbers), max(numbers))
    every: IntervalSet | SequenceSet | None = None
    if "ALL" in options and numbers:
        every = _runs(numbers) if ordered else IntervalSet.from_numbers(numbers)
    return rsp.esearch(
        tag=command.tag, uid=getattr(command, "uid", False),
        minimum=low if "MIN" in options else None,
        maximum=high if "MAX" in options else None,
        all=every, count=len(numbers) if "COUNT" in options else None,
        modseq=_esearch_modseq(view, options, uids) if modseq else None)


def _esearch_modseq(view: SelectedMailbox, options: Sequence[str],
                    uids: list[int]) -> int | None:
    """RFC 4731 §3.2: the MIN/MAX message's modseq when those are all that is returned."""
    if uids and not {"ALL", "COUNT"} & set(options) and {"MIN", "MAX"} & set(options):
        picked = ([uids[0]] if "MIN" in options else []) + ([uids[-1]] if "MAX" in options else [])
        return _highest_modseq(view, picked)
    return _highest_modseq(view, uids)


def _runs(numbers: Sequence[int]) -> SequenceSet:
    """Numbers in the given order, ascending neighbours joined as ``a:b`` (RFC 5267 §3.2)."""
    runs: list[tuple[int, int]] = []
    for number in numbers:
        if runs and number == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], number)
        else:
            runs.append((number, number))
    return SequenceSet(tuple(runs))


def _with_save(session: IMAPSession, options: Sequence[str] | None,
               failure: _SearchFailed) -> None:
    """RFC 9051 §6.4.4.1: a search with SAVE that fails with NO empties ``$`` (a BAD one
    leaves it alone)."""
    if options and "SAVE" in options and failure.response.status == "NO":
        _save(session, [])


# --- SEARCH ----------------------------------------------------------------------------------


async def search(session: IMAPSession, command: cmd.Command) -> Response:
    assert isinstance(command, cmd.Search)
    view = session.selected
    assert view is not None
    if command.charset is not None and "UTF8=ACCEPT" in session.enabled:
        # RFC 6855 §3: after ENABLE UTF8=ACCEPT a charset label conflicts.
        return Tagged(command.tag, "BAD", "No CHARSET after ENABLE UTF8=ACCEPT")
    options = command.return_options
    try:
        found = await _search(session, command, command.key, command.uid)
    except _SearchFailed as failure:
        _with_save(session, options, failure)
        return failure.response
    modseq = uses_modseq(command.key)
    numbers = _numbers(view, found, command.uid)
    if options is None and "IMAP4REV2" in session.enabled:
        options = ("ALL",)
    if options is None:
        session.write(rsp.search(numbers, modseq=_highest_modseq(view, found) if modseq else None))
    else:
        if "SAVE" in options:
            _save(session, _to_save(options, found))
        if set(options) - {"SAVE"}:
            session.write(_esearch(session, command, options, numbers, found,
                                   modseq=modseq, ordered=False))
    return Tagged(command.tag, "OK", f"{command.name} completed")


# --- SORT and THREAD ---------------------------------------------------------------------------


async def _entries(session: IMAPSession, command: cmd.Command, uids: list[int], uid: bool,
                   need_headers: bool) -> list[Entry]:
    """SORT/THREAD inputs; raises _SearchFailed (NO) when headers cannot be read now."""
    view = session.selected
    assert view is not None
    metas = [view.messages[u] for u in uids]
    try:
        infos = await load_headers(session.store.blobs, metas) if need_headers else {}
    except StoreUnavailable as exc:
        raise _SearchFailed(Tagged(command.tag, "NO", f"Cannot {command.name} now",
                                   "UNAVAILABLE")) from exc
    return [Entry(u if uid else view.msn_of(u) or 0, view.msn_of(u) or 0, meta,
                  infos.get(meta.blob_id)) for u, meta in zip(uids, metas, strict=True)]


async def sort(session: IMAPSession, command: cmd.Command) -> Response:
    assert isinstance(command, cmd.Sort)
    view = session.selected
    assert view is not None
    options = command.return_options
    try:
        found = await _search(session, command, command.key, command.uid)
        need_headers = any(c.key in HEADER_CRITERIA for c in command.criteria)
        entries = await _entries(session, command, found, command.uid, need_headers)
    except _SearchFailed as failure:
        _with_save(session, options, failure)
        return failure.response
    criteria = [(c.key, c.reverse) for c in command.criteria]
    ordered = await asyncio.to_thread(sort_entries, entries, criteria)
    numbers = [entry.number for entry in ordered]
    sorted_uids = [entry.meta.uid for entry in ordered]
    modseq = uses_modseq(command.key)
    if options is None:
        session.write(rsp.sort(numbers, modseq=_highest_modseq(view, found) if modseq else None))
    else:
        if "SAVE" in options:
            _save(session, sorted(_to_save(options, sorted_uids)))
        if set(options) - {"SAVE"}:
            session.write(_esearch(session, command, options, numbers, sorted_uids,
                                   modseq=modseq, ordered=True))
    return Tagged(command.tag, "OK", f"{command.name} completed")


async def thread(session: IMAPSession, command: cmd.Command) -> Response:
    assert isinstance(command, cmd.Thread)
    if command.algorithm not in THREAD_ALGORITHMS:
        return Tagged(command.tag, "NO", f"Unsupported threading algorithm "
                                         f"{command.algorithm[:40]}")
    try:
        found = await _search(session, command, command.key, command.uid)
        entries = await _entries(session, command, found, command.uid, need_headers=True)
    except _SearchFailed as failure:
        return failure.response
    build = ordered_subject if command.algorithm == "ORDEREDSUBJECT" else references
    threads = await asyncio.to_thread(build, entries)
    session.write(rsp.thread(threads))
    return Tagged(command.tag, "OK", f"{command.name} completed")


HANDLERS: dict[type[cmd.Command], Handler] = {
    cmd.Search: search,
    cmd.Sort: sort,
    cmd.Thread: thread,
}
