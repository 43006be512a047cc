"""Evaluating a SEARCH program against the selected mailbox (RFC 9051 §6.4.4, RFC 3501
§6.4.4, RFC 7162 §3.1.5, RFC 8474 §5).

Theory of operation
-------------------
The parsed :data:`~mailpost.imap.search.SearchKey` tree is evaluated *set-wise*: each node
receives the set of candidate UIDs still in play and returns the subset that matches. That
makes the cost model explicit:

* ``AND`` runs its operands cheapest first, each on what the previous ones left, so
  ``UNSEEN BODY "x"`` reads only the bodies of unseen messages;
* ``OR`` runs its cheaper side first and the other side only on the candidates it did not
  match; ``NOT`` is the candidates minus its operand's matches.

Every key falls in one of three cost classes (:func:`cost`):

0. *view keys*, answered from the session's view without any I/O: flags, RFC822.SIZE,
   INTERNALDATE, sequence numbers and UIDs, MODSEQ, EMAILID. A flag search over 10,000
   messages is one pass over a dict;
1. *header keys* (``FROM`` ... ``HEADER``, ``SENT*``): the headers of the candidates are
   loaded through the per-body cache (:mod:`.search_headers`) and tested in a worker thread;
2. *text keys* (``BODY``, ``TEXT``): bodies are read in batches bounded by count and octets
   and matched in a worker thread (:mod:`.search_text`). All plain text keys of one ``AND``
   share one pass over each body.

Semantics that are choices, each following the RFC text:

* ``BEFORE``/``ON``/``SINCE`` compare the calendar date of INTERNALDATE "disregarding time and
  timezone": the date as the stored INTERNALDATE (and so the FETCH INTERNALDATE response)
  writes it, in the zone it was recorded with.
* ``SENTBEFORE``/``SENTON``/``SENTSINCE`` compare the date written in the Date: header; a
  message without a parseable Date: header matches none of them (unlike SORT, RFC 5256 §2.2
  does not apply to SEARCH).
* ``RECENT``, ``NEW`` and ``OLD`` test the session's own recent set (:mod:`mailpost.imap.recent`;
  empty for IMAP4rev2 clients), not a stored flag.
* Keywords compare case-insensitively (as system flags do); ``THREADID`` matches nothing since
  no thread ids are assigned; ``MODSEQ`` ignores the entry name and type, as RFC 7162 §3.1.5
  requires of a server that keeps one mod-sequence per message.
* A message sequence number above the mailbox size is ``BAD`` (RFC 9051 §9 ``seq-number``),
  raised as :class:`~mailpost.imap.errors.SequenceRangeError`.

The tree's depth is bounded by the parser's nesting limit (security catalogue I4), so the
recursion here is bounded too.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mailpost.imap import search as sk
from mailpost.imap.handlers.search_headers import HeaderInfo, load_headers
from mailpost.imap.handlers.search_text import TextNeedle, matches_all, needle
from mailpost.imap.recent import RECENT
from mailpost.imap.selected import SelectedMailbox
from mailpost.imap.seqset import IntervalSet
from mailpost.store.errors import NotFound
from mailpost.store.interface import BlobStore
from mailpost.store.types import MessageMeta

BODY_BATCH_MESSAGES = 32
BODY_BATCH_BYTES = 8 * 1024 * 1024
HEADER_CHUNK = 2000
VIEW, HEADER, TEXT = 0, 1, 2

MetaTest = Callable[[MessageMeta], bool]
HeaderTest = Callable[[HeaderInfo], bool]


@dataclass
class SearchScope:
    """What a search runs against: the view, the body store and the saved ``$`` result."""

    view: SelectedMailbox
    blobs: BlobStore
    saved_uids: Sequence[int]
    uid_command: bool

    def universe(self) -> set[int]:
        """Every candidate UID. A UID command may announce EXPUNGE (RFC 9051 §7.5.1), so
        messages already known to be expunged elsewhere are left out of its results."""
        if self.uid_command:
            return {uid for uid in self.view.uids if uid not in self.view.ghosts}
        return set(self.view.uids)

    def saved(self, uid: bool) -> IntervalSet:
        """``$`` as UIDs or as message numbers (RFC 5182 §2.1 implementation note)."""
        if uid:
            return IntervalSet.from_numbers(self.saved_uids)
        msns = (self.view.msn_of(u) for u in self.saved_uids)
        return IntervalSet.from_numbers(n for n in msns if n is not None)


async def evaluate(key: sk.SearchKey, scope: SearchScope) -> set[int]:
    """The UIDs of the messages matching ``key`` (raises ``SequenceRangeError``)."""
    return await _Evaluator(scope).run(key, scope.universe())


def cost(key: sk.SearchKey) -> int:
    """The cost class of evaluating ``key`` (see the module docstring)."""
    if isinstance(key, sk.NotKey):
        return cost(key.key)
    if isinstance(key, sk.OrKey):
        return max(cost(key.left), cost(key.right))
    if isinstance(key, sk.AndKey):
        return max(cost(k) for k in key.keys)
    if isinstance(key, sk.TextKey):
        return TEXT if key.value else VIEW
    if isinstance(key, sk.HeaderKey) or (isinstance(key, sk.DateKey) and key.field == "SENT"):
        return HEADER
    return VIEW


class _Evaluator:
    def __init__(self, scope: SearchScope) -> None:
        self.scope = scope
        self.messages = scope.view.messages

    async def run(self, key: sk.SearchKey, candidates: set[int]) -> set[int]:
        if not candidates:
            return set()
        if isinstance(key, sk.AndKey):
            return await self._all_of(key.keys, candidates)
        if isinstance(key, sk.OrKey):
            first, second = sorted((key.left, key.right), key=cost)
            matched = await self.run(first, candidates)
            return matched | await self.run(second, candidates - matched)
        if isinstance(key, sk.NotKey):
            return candidates - await self.run(key.key, candidates)
        if isinstance(key, sk.TextKey):
            return await self._text([key], candidates)
        if isinstance(key, sk.HeaderKey):
            return await self._headers(_header_test(key), candidates)
        if isinstance(key, sk.DateKey) and key.field == "SENT":
            return await self._headers(_sent_test(key), candidates)
        if isinstance(key, sk.SequenceKey):
            return candidates & self._sequence(key)
        if isinstance(key, sk.FlagKey) and key.flag == RECENT:  # the session's, not stored
            recent = self.scope.view.recent
            return candidates & recent if key.present else candidates - recent
        test = _view_test(key)
        return {uid for uid in candidates if test(self.messages[uid])}

    async def _all_of(self, keys: Sequence[sk.SearchKey], candidates: set[int]) -> set[int]:
        """AND, cheapest first; the plain BODY/TEXT keys share one pass over the bodies."""
        plain_text = [k for k in keys if isinstance(k, sk.TextKey) and cost(k) == TEXT]
        batched = {id(k) for k in plain_text}
        others = sorted((k for k in keys if id(k) not in batched), key=cost)
        for key in others:
            if plain_text and cost(key) == TEXT:
                candidates = await self._text(plain_text, candidates)
                plain_text = []
            candidates = await self.run(key, candidates)
            if not candidates:
                return candidates
        if plain_text:
            candidates = await self._text(plain_text, candidates)
        return candidates

    def _sequence(self, key: sk.SequenceKey) -> set[int]:
        uids = self.scope.view.uids
        if key.uid:
            pairs = key.set.select_by_uid(uids, self.scope.saved(uid=True))
        else:
            pairs = key.set.select_by_msn(uids, self.scope.saved(uid=False))
        return {uid for _, uid in pairs}

    async def _headers(self, test: HeaderTest, candidates: set[int]) -> set[int]:
        metas = [self.messages[uid] for uid in sorted(candidates)]
        infos = await load_headers(self.scope.blobs, metas)
        matched: set[int] = set()
        for start in range(0, len(metas), HEADER_CHUNK):
            chunk = [(meta.uid, infos[meta.blob_id]) for meta in metas[start:start + HEADER_CHUNK]]
            matched |= await asyncio.to_thread(_test_headers, test, chunk)
        return matched

    async def _text(self, keys: Sequence[sk.TextKey], candidates: set[int]) -> set[int]:
        needles = [needle(k.where, k.value) for k in keys if k.value]
        if not needles:
            return candidates
        matched: set[int] = set()
        for batch in _body_batches([self.messages[uid] for uid in sorted(candidates)]):
            bodies = await asyncio.gather(*(self._read(meta) for meta in batch))
            hits = await asyncio.to_thread(_match_bodies, bodies, needles)
            matched.update(meta.uid for meta, hit in zip(batch, hits, strict=True) if hit)
        return matched

    async def _read(self, meta: MessageMeta) -> bytes | None:
        try:
            return await self.scope.blobs.read(meta.blob_id)
        except NotFound:  # expunged elsewhere and already swept (RFC 2180 §4.1)
            return None


def _body_batches(metas: list[MessageMeta]) -> list[list[MessageMeta]]:
    """Split into batches of at most BODY_BATCH_MESSAGES messages / BODY_BATCH_BYTES octets
    (a single larger message is a batch of its own)."""
    batches: list[list[MessageMeta]] = []
    current: list[MessageMeta] = []
    octets = 0
    for meta in metas:
        if current and (len(current) >= BODY_BATCH_MESSAGES
                        or octets + meta.size > BODY_BATCH_BYTES):
            batches.append(current)
            current, octets = [], 0
        current.append(meta)
        octets += meta.size
    if current:
        batches.append(current)
    return batches


def _match_bodies(bodies: Sequence[bytes | None], needles: Sequence[TextNeedle]) -> list[bool]:
    return [matches_all(body, needles) for body in bodies]


def _test_headers(test: HeaderTest, chunk: list[tuple[int, HeaderInfo | None]]) -> set[int]:
    return {uid for uid, info in chunk if info is not None and test(info)}


# --- header keys -----------------------------------------------------------------------------


def _header_test(key: sk.HeaderKey) -> HeaderTest:
    """Substring of any decoded value of the field; ``""`` tests presence (§6.4.4)."""
    folded = key.value.casefold()
    name = key.field

    def test(info: HeaderInfo) -> bool:
        if not folded:
            return bool(info.raw_values(name))
        return any(folded in value.casefold() for value in info.values(name))

    return test


def _sent_test(key: sk.DateKey) -> HeaderTest:
    compare = _date_compare(key)

    def test(info: HeaderInfo) -> bool:
        sent = info.sent
        return sent is not None and compare(sent.day)

    return test


def _date_compare(key: sk.DateKey) -> Callable[[dt.date], bool]:
    wanted = key.date
    if key.op == "BEFORE":
        return lambda day: day < wanted
    if key.op == "ON":
        return lambda day: day == wanted
    return lambda day: day >= wanted


# --- view keys -------------------------------------------------------------------------------


def _view_test(key: sk.SearchKey) -> MetaTest:
    """A predicate on MessageMeta for the keys that need no I/O."""
    if isinstance(key, sk.AllKey):
        return lambda meta: True
    if isinstance(key, sk.FlagKey):
        return _flag_test(key)
    if isinstance(key, sk.SizeKey):
        size = key.size
        if key.op == "LARGER":
            return lambda meta: meta.size > size
        return lambda meta: meta.size < size
    if isinstance(key, sk.DateKey):
        compare = _date_compare(key)
        return lambda meta: compare(meta.internal_date.date())
    if isinstance(key, sk.ModSeqKey):
        modseq = key.modseq
        return lambda meta: meta.modseq >= modseq
    if isinstance(key, sk.ObjectIdKey):
        if key.kind == "THREADID":
            return lambda meta: False
        email_id = key.value
        return lambda meta: bool(meta.email_id) and meta.email_id == email_id
    if isinstance(key, sk.TextKey):  # BODY "" / TEXT "": the empty string is in every text
        return lambda meta: True
    raise TypeError(f"not a view search key: {key!r}")


def _flag_test(key: sk.FlagKey) -> MetaTest:
    present = key.present
    flag = key.flag
    lowered = flag.lower()

    def has(meta: MessageMeta) -> bool:
        flags = meta.flags
        return flag in flags or any(f.lower() == lowered for f in flags)

    return (lambda meta: has(meta)) if present else (lambda meta: not has(meta))
