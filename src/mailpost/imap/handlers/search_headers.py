"""Parsed message headers for SEARCH, SORT and THREAD, cached per body.

Theory of operation
-------------------
Header keys (``FROM``, ``HEADER``, ``SENTON`` ...), SORT and THREAD need the top-level header
of each candidate message, never its body. :func:`load_headers` reads only the start of each
body (:data:`HEADER_PROBE` octets, more only when the blank line ending the header is further
away), keeps the header block, and wraps it in a :class:`HeaderInfo` that parses lazily:

* the field index (``name -> raw unfolded values``, every occurrence kept because
  ``HEADER Received x`` must look at all ``Received`` fields) is built on first use;
* decoded values (RFC 2047 via :func:`mailpost.mime.decode_words`, RFC 9051 §6.4.4: "[MIME-HDRS]
  strings ... MUST be decoded before comparing text") are memoised per field;
* the values SORT and THREAD need (base subject, sent date, first address, Message-ID,
  references) are computed once per body.

Bodies are immutable and a body id is never reused for other octets, so one module-level LRU
(:data:`CACHE`) keyed by body id serves every session; it is bounded both in entries and in the
octets it holds. The cache is only touched on the event loop thread; the lazily computed values
inside a :class:`HeaderInfo` may be filled in from a worker thread, which is harmless because
computing one twice gives the same result.

Message-IDs (RFC 5256 §3, REFERENCES) are normalised: comments and white space inside the angle
brackets are dropped and a quoted local part is unquoted, so ``<"01KF8JCEOCBS0045PS"@xxx.yyy.com>``
and ``<01KF8JCEOCBS0045PS@xxx.yyy.com>`` are the same id, as the RFC requires. Only
``<local@domain>`` forms count as valid; comparison is case-sensitive.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections import OrderedDict
from collections.abc import Sequence
from email.utils import parsedate_tz
from functools import cached_property

from mailpost.imap.handlers.search_subject import BaseSubject, base_subject, collation_key
from mailpost.mime import decode_words
from mailpost.mime.address import MISSING_MAILBOX, parse_address_list
from mailpost.mime.headers import MAX_MATCHES, MAX_VALUE, find_header_end, unfold
from mailpost.store.errors import NotFound
from mailpost.store.interface import BlobStore
from mailpost.store.types import MessageMeta

HEADER_PROBE = 32 * 1024
MAX_HEADER = 512 * 1024  # a header longer than this is cut (security catalogue M2)
READ_BATCH = 32  # concurrent reads per step: keeps the read pool busy without flooding it
_FIELD_START = re.compile(rb"^([^\x00-\x20\x7f:]+)[ \t]*:", re.MULTILINE)
_ANGLE = re.compile(r"<([^<>]*)>")
_COMMENT = re.compile(r"\([^()]*\)")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_ESCAPE = re.compile(r"\\(.)")
_MAX_REFERENCES = 1000


class HeaderInfo:
    """The top-level header block of one stored message and what is derived from it."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._decoded: dict[str, list[str]] = {}

    @property
    def cost(self) -> int:
        """Approximate memory held, for the cache budget (raw octets plus derived text)."""
        return 2 * len(self.raw) + 256

    @cached_property
    def fields(self) -> dict[str, list[bytes]]:
        """Lower-case field name -> unfolded raw values, in header order."""
        found: dict[str, list[bytes]] = {}
        starts = list(_FIELD_START.finditer(self.raw))[:MAX_MATCHES]
        for index, match in enumerate(starts):
            stop = starts[index + 1].start() if index + 1 < len(starts) else len(self.raw)
            value = unfold(self.raw[match.end():min(stop, match.end() + MAX_VALUE)])
            name = match.group(1).decode("ascii", "replace").lower()
            found.setdefault(name, []).append(value)
        return found

    def raw_values(self, name: str) -> list[bytes]:
        return self.fields.get(name.lower(), [])

    def values(self, name: str) -> list[str]:
        """Every value of field ``name``, RFC 2047-decoded (memoised)."""
        key = name.lower()
        decoded = self._decoded.get(key)
        if decoded is None:
            decoded = [decode_words(raw) for raw in self.raw_values(key)]
            self._decoded[key] = decoded
        return decoded

    def first(self, name: str) -> bytes | None:
        values = self.raw_values(name)
        return values[0] if values else None

    @cached_property
    def text(self) -> str:
        """The whole header as decoded text, one field per line (for SEARCH TEXT)."""
        lines = []
        for name, raws in self.fields.items():
            for raw in raws:
                value = decode_words(raw) if b"=?" in raw else raw.decode("utf-8", "replace")
                lines.append(f"{name}: {value}")
        return "\n".join(lines)

    # -- what SORT and THREAD use ----------------------------------------------------------

    @cached_property
    def subject(self) -> BaseSubject:
        return base_subject(self.first("subject"))

    @cached_property
    def subject_key(self) -> str:
        return collation_key(self.subject.text)

    @cached_property
    def sent(self) -> SentDate | None:
        raw = self.first("date")
        return None if raw is None else parse_sent_date(raw.decode("utf-8", "replace"))

    def address_key(self, name: str) -> str:
        """RFC 5256 §3: the ``addr-mailbox`` of the first address of field ``name``."""
        raw = self.first(name)
        if raw is None:
            return ""
        for address in parse_address_list(raw.decode("utf-8", "replace")):
            if address.host is not None:  # group markers have no host
                mailbox = address.mailbox or ""
                return "" if mailbox == MISSING_MAILBOX else collation_key(mailbox)
        return ""

    @cached_property
    def message_id(self) -> str | None:
        raw = self.first("message-id")
        ids = message_ids(raw.decode("utf-8", "replace")) if raw is not None else []
        return ids[0] if ids else None

    @cached_property
    def references(self) -> list[str]:
        """RFC 5256 §4: References ids, else the first In-Reply-To id, else none."""
        raw = self.first("references")
        ids = message_ids(raw.decode("utf-8", "replace")) if raw is not None else []
        if ids:
            return ids[-_MAX_REFERENCES:]
        reply_to = self.first("in-reply-to")
        ids = message_ids(reply_to.decode("utf-8", "replace")) if reply_to is not None else []
        return ids[:1]


class SentDate:
    """A parsed Date: header: the calendar date as written (SEARCH SENT*, RFC 9051 §6.4.4
    "disregarding time and timezone") and the instant in UTC (SORT DATE, RFC 5256 §2.2)."""

    __slots__ = ("day", "instant")

    def __init__(self, day: dt.date, instant: float) -> None:
        self.day = day
        self.instant = instant


def parse_sent_date(value: str) -> SentDate | None:
    """RFC 5256 §2.2: a missing or invalid zone counts as UTC, an invalid time as midnight;
    None when there is no usable date at all (callers fall back to INTERNALDATE)."""
    try:
        parts = parsedate_tz(value[:256])
    except (ValueError, IndexError, TypeError):  # the stdlib parser on hostile input
        return None
    if parts is None:
        return None
    year, month, day, hour, minute, second = parts[:6]
    offset = parts[9] or 0
    try:
        date = dt.date(year, month, day)
    except (ValueError, OverflowError):
        return None
    try:
        moment = dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)
    except (ValueError, OverflowError):
        moment = dt.datetime(year, month, day, tzinfo=dt.UTC)
    return SentDate(date, moment.timestamp() - offset)


def message_ids(value: str) -> list[str]:
    """The valid msg-ids in ``value``, normalised (see the module docstring)."""
    found = []
    for match in _ANGLE.finditer(value[:MAX_VALUE]):
        normalised = _normalise_id(match.group(1))
        if normalised is not None:
            found.append(normalised)
    return found


def _normalise_id(inner: str) -> str | None:
    text = _COMMENT.sub("", inner)
    text = _QUOTED.sub(lambda m: _ESCAPE.sub(r"\1", m.group(1)), text)
    text = "".join(text.split())
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        return None
    return text


# --- loading and caching -------------------------------------------------------------------


class HeaderCache:
    """A bounded LRU of :class:`HeaderInfo` by body id (entries and approximate octets)."""

    def __init__(self, max_entries: int = 50_000, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, HeaderInfo] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, blob_id: str) -> HeaderInfo | None:
        info = self._items.get(blob_id)
        if info is not None:
            self._items.move_to_end(blob_id)
        return info

    def put(self, blob_id: str, info: HeaderInfo) -> None:
        old = self._items.pop(blob_id, None)
        if old is not None:
            self._bytes -= old.cost
        self._items[blob_id] = info
        self._bytes += info.cost
        while self._items and (len(self._items) > self.max_entries
                               or self._bytes > self.max_bytes):
            _, evicted = self._items.popitem(last=False)
            self._bytes -= evicted.cost

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0


CACHE = HeaderCache()


async def load_headers(blobs: BlobStore,
                       metas: Sequence[MessageMeta]) -> dict[str, HeaderInfo | None]:
    """Header info for each message's body id; None for a body that is gone (expunged
    elsewhere and swept: RFC 2180 §4.1 lets such a message simply not match)."""
    result: dict[str, HeaderInfo | None] = {}
    missing: list[MessageMeta] = []
    for meta in metas:
        if meta.blob_id in result:
            continue
        cached = CACHE.get(meta.blob_id)
        result[meta.blob_id] = cached
        if cached is None:
            missing.append(meta)
    for start in range(0, len(missing), READ_BATCH):
        batch = missing[start:start + READ_BATCH]
        infos = await asyncio.gather(*(_read_header(blobs, meta) for meta in batch))
        for meta, info in zip(batch, infos, strict=True):
            result[meta.blob_id] = info
            if info is not None:
                CACHE.put(meta.blob_id, info)
    return result


async def _read_header(blobs: BlobStore, meta: MessageMeta) -> HeaderInfo | None:
    try:
        data = await blobs.read(meta.blob_id, 0, HEADER_PROBE)
        bounds = find_header_end(data, 0, len(data))
        if bounds is None and len(data) < meta.size and len(data) >= HEADER_PROBE:
            data = await blobs.read(meta.blob_id, 0, MAX_HEADER)
            bounds = find_header_end(data, 0, len(data))
    except NotFound:
        return None
    return HeaderInfo(data if bounds is None else data[:bounds[0]])
