"""A bounded LRU cache of parsed messages for FETCH (MIME tree, ENVELOPE, BODYSTRUCTURE).

Theory of operation
-------------------
Clients repeat the same structural fetches all the time: a desktop client opening a mailbox
sends ``FETCH 1:* (ENVELOPE BODYSTRUCTURE ...)``, a phone does it again a minute later.
Parsing a message needs all of its octets, so without a cache every such command would read
and parse every body again. Bodies are immutable and their ids are never reused (RFC 9051
§2.3.1.1 makes the same promise for UIDs; the store makes it for body ids), so an entry keyed
by body id never goes stale and the cache needs no invalidation at all: it only has to stay
small.

Two bounds keep it small: the number of entries, and the total number of MIME parts held
(a message's *weight*), because one pathological message may carry thousands of parts while
an ordinary one has a handful. The least recently used entries are evicted until both bounds
hold. Next to the tree an entry keeps the rendered ENVELOPE and BODY/BODYSTRUCTURE bytes, one
per rendering variant (UTF-8 allowed or not, MESSAGE/GLOBAL known or not), so a repeated
structural fetch costs a dictionary lookup.

Sessions of one server run on one event loop, but a process may run several servers on
different threads (the test harness does), so the few dictionary operations take a lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from mailpost.mime import Part

DEFAULT_MAX_ENTRIES = 4096
DEFAULT_MAX_PARTS = 200_000

# A rendering variant: ("ENVELOPE" | "BODY" | "BODYSTRUCTURE", utf8, message_global).
RenderKey = tuple[str, bool, bool]


@dataclass(slots=True)
class ParsedMessage:
    """The parsed tree of one body and the structures already rendered from it."""

    tree: Part
    weight: int
    rendered: dict[RenderKey, bytes] = field(default_factory=dict)
    # The top-level header block (up to the body), when small: clients fetch header fields
    # of the same messages at every sync, and this spares a store read each time.
    header: bytes | None = None

    def render(self, key: RenderKey, make: Callable[[Part], bytes]) -> bytes:
        """The rendering ``key``, computed by ``make(tree)`` the first time only."""
        value = self.rendered.get(key)
        if value is None:
            value = self.rendered[key] = make(self.tree)
        return value


class MessageCache:
    """Body id → :class:`ParsedMessage`, least recently used evicted first."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES,
                 max_parts: int = DEFAULT_MAX_PARTS) -> None:
        self.max_entries = max_entries
        self.max_parts = max_parts
        self._entries: OrderedDict[str, ParsedMessage] = OrderedDict()
        self._weight = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def weight(self) -> int:
        """MIME parts currently held."""
        return self._weight

    def get(self, blob_id: str) -> ParsedMessage | None:
        with self._lock:
            entry = self._entries.get(blob_id)
            if entry is not None:
                self._entries.move_to_end(blob_id)
            return entry

    def put(self, blob_id: str, tree: Part) -> ParsedMessage:
        """Remember ``tree`` for ``blob_id`` and return its entry (also when not kept)."""
        entry = ParsedMessage(tree, sum(1 for _ in tree.walk()))
        with self._lock:
            old = self._entries.pop(blob_id, None)
            if old is not None:
                self._weight -= old.weight
            if entry.weight > self.max_parts:
                return entry  # would evict everything else for one message
            self._entries[blob_id] = entry
            self._weight += entry.weight
            self._evict()
        return entry

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._weight = 0

    def _evict(self) -> None:
        while len(self._entries) > self.max_entries or self._weight > self.max_parts:
            _, evicted = self._entries.popitem(last=False)
            self._weight -= evicted.weight


# One cache per process: body ids are random and never reused, so servers sharing it cannot
# see each other's entries by accident.
MESSAGE_CACHE = MessageCache()
