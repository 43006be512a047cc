"""Process-wide settings for a long-running server: the C allocator and the garbage collector.

Theory of operation
-------------------
``mailpost serve`` is one process holding thousands of idle connections (every IMAP client
in IDLE), so what one connection costs in memory, and what a garbage collection costs in
latency, is multiplied by thousands. Three process-wide defaults work against that; each is
adjusted once, by :mod:`mailpost.app`, and nowhere else.

**Large blocks go back to the system** (:func:`return_large_blocks_to_system`). Every login
verifies an argon2id hash, whose working memory (19 MiB, see ``auth.passwords``) is one
``malloc`` in a worker thread. glibc serves a block that large with ``mmap`` and unmaps it on
``free``, but its *dynamic* threshold then rises to the size of the freed block, so from the
second login on the same 19 MiB come from the thread's heap arena and, once freed, stay there:
resident, and split up by the small allocations that later land in them. Each worker thread's
arena keeps its own. Fixing ``M_MMAP_THRESHOLD`` (mallopt(3)) turns the dynamic adjustment off:
blocks of 1 MiB or more are always mapped and always returned. Smaller blocks stay in the heap
as before: a connection's buffers, and the 256 KiB that every TLS read asks for and at once
mostly gives back (mapped, each read would cost two system calls). Other C libraries have
neither the behaviour nor the knob: the call is skipped there.

**Start-up objects leave the collector's view** (:func:`freeze_startup_objects`). A full
collection walks every tracked container; the modules, classes and functions loaded at start-up
live as long as the process, yet each full collection would walk them again, and its pause
stalls every session at once (an IDLE fan-out to a thousand clients waits for it).
``gc.freeze()`` moves everything alive at that point to a permanent generation that is never
scanned; reference counting still frees such objects normally. It is called once the
listeners are up, after one collection so that no start-up garbage is kept forever.

**Full collections are spaced out** (:func:`space_out_full_collections`). CPython (3.11)
starts a full collection once the middle generation has been collected ``threshold2`` times
(default 10) *and* the objects promoted to the old generation since the last full one exceed a
quarter of it. Sessions are the old generation, and whatever a burst of wake-ups keeps alive
across two young collections (a thousand sessions awaiting one store query) is promoted, so
with the default a fan-out to a large mailbox ran a full collection every few deliveries, each
walking every session: with ten thousand idle sessions that is hundreds of milliseconds during
which no session answers. Requiring 100 middle collections makes them ten times rarer; the
quarter rule still ties them to the amount of promoted objects. The price is that garbage
cycles which reached the old generation wait longer to be freed (young garbage, the bulk, is
collected as before).
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os

log = logging.getLogger(__name__)

# mallopt(3) parameter number of M_MMAP_THRESHOLD in glibc's <malloc.h>.
_M_MMAP_THRESHOLD = -3
# Far below argon2's working memory, and above any per-connection buffer (uvloop's TLS read
# buffer is 256 KiB, mostly untouched): a mapping of its own for each would cost a kernel map
# entry per connection, and the kernel's default limit is about 65,000 of them.
LARGE_BLOCK = 1024 * 1024
# Middle-generation collections between two full ones (CPython's default: 10).
FULL_COLLECTION_EVERY = 100


def glibc_version() -> str | None:
    """The running glibc's version ("2.36"), or None on another C library."""
    try:
        described = os.confstr("CS_GNU_LIBC_VERSION")  # "glibc 2.36"
    except (AttributeError, ValueError, OSError):
        return None
    if not described or not described.startswith("glibc "):
        return None
    return described.split(" ", 1)[1]


def return_large_blocks_to_system(threshold: int = LARGE_BLOCK) -> int | None:
    """Serve allocations of ``threshold`` bytes or more with ``mmap`` and unmap them on free.

    Returns the threshold now in force, or None when nothing was changed (not glibc, or the
    C library refused)."""
    if glibc_version() is None:
        log.debug("not running on glibc: malloc thresholds left alone")
        return None
    try:
        libc = ctypes.CDLL(None)  # the C library the interpreter is already linked with
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    # Both arguments and the result are C ints, ctypes' default for Python ints.
    if mallopt(_M_MMAP_THRESHOLD, threshold) != 1:  # mallopt returns 1 on success
        log.warning("mallopt(M_MMAP_THRESHOLD, %d) refused", threshold)
        return None
    return threshold


def freeze_startup_objects() -> int:
    """Collect once, then exempt every object alive now from later collections; returns how
    many objects were frozen (all of them so far, if called again)."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def space_out_full_collections(every: int = FULL_COLLECTION_EVERY) -> tuple[int, int, int]:
    """Let a full collection start only after ``every`` collections of the middle generation;
    the young thresholds are kept. Returns the thresholds now in force."""
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, every)
    return gc.get_threshold()
