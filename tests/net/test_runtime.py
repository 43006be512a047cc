"""Process-wide settings (mailpost.runtime): glibc's mmap threshold, frozen start-up objects,
spaced-out full collections; each safe where it does not apply."""

from __future__ import annotations

import ctypes
import gc
import json
import os
import subprocess
import sys
from typing import Any

import pytest

from mailpost import runtime

# Runs in a fresh interpreter, since the threshold is process-wide and, once fixed, stays
# fixed: prints, for three 8 MiB blocks in turn and then a 64 KiB one, whether each was mapped
# (so that free returns it to the system). Unfixed, glibc raises its threshold when the first
# mapped block is freed, and the next ones come from the heap (and stay there once freed).
_PROBE = """
import ctypes, json, sys
from mailpost.runtime import return_large_blocks_to_system

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.restype, libc.free.argtypes = None, (ctypes.c_void_p,)
libc.mallinfo2.restype = MallInfo2

def mapped(size):
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(size)
    held = libc.mallinfo2().hblkhd
    libc.free(block)
    return held - before >= size

threshold = return_large_blocks_to_system() if sys.argv[1] == "fixed" else None
print(json.dumps({"threshold": threshold,
                  "mapped": [mapped(8 << 20) for _ in range(3)] + [mapped(64 << 10)]}))
"""


def _probe(mode: str) -> dict[str, Any]:
    # glibc's own environment knobs would fix the threshold before the probe could see it.
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    done = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True,
                          timeout=60, check=True, env=env)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _has_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL(None), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(runtime.glibc_version() is None or not _has_mallinfo2(),
                    reason="glibc 2.33 or later only")
def test_large_blocks_are_mapped_and_returned_once_the_threshold_is_fixed() -> None:
    assert _probe("default") == {"threshold": None, "mapped": [True, False, False, False]}
    assert _probe("fixed") == {"threshold": runtime.LARGE_BLOCK,
                               "mapped": [True, True, True, False]}


def test_glibc_version_is_read_from_the_running_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "confstr", lambda name: "glibc 2.36")
    assert runtime.glibc_version() == "2.36"
    monkeypatch.setattr(os, "confstr", lambda name: None)
    assert runtime.glibc_version() is None


def _no_confstr(name: str) -> str:
    raise ValueError("unrecognized configuration name")  # what musl and the BSDs answer


def _no_c_library(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the C library must not be touched off glibc")


def test_off_glibc_nothing_is_touched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "confstr", _no_confstr)
    monkeypatch.setattr(ctypes, "CDLL", _no_c_library)
    assert runtime.glibc_version() is None
    assert runtime.return_large_blocks_to_system() is None


class _RefusingLibc:
    """A C library whose mallopt says no (returns 0), recording what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []
        self.mallopt = self._mallopt

    def _mallopt(self, parameter: int, value: int) -> int:
        self.calls.append((parameter, value))
        return 0


def test_a_refused_setting_reports_nothing_done(monkeypatch: pytest.MonkeyPatch) -> None:
    libc = _RefusingLibc()
    monkeypatch.setattr(os, "confstr", lambda name: "glibc 2.36")
    monkeypatch.setattr(ctypes, "CDLL", lambda name: libc)
    assert runtime.return_large_blocks_to_system(4 << 20) is None
    assert libc.calls == [(-3, 4 << 20)]  # M_MMAP_THRESHOLD


def test_a_library_without_mallopt_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "confstr", lambda name: "glibc 2.36")
    monkeypatch.setattr(ctypes, "CDLL", lambda name: object())
    assert runtime.return_large_blocks_to_system() is None


def test_start_up_objects_are_frozen_out_of_collections() -> None:
    class StartUp:
        pass

    survivor = StartUp()
    try:
        frozen = runtime.freeze_startup_objects()
        assert frozen == gc.get_freeze_count() > 0
        # Frozen objects are in no generation, so no collection walks them.
        assert not any(obj is survivor for obj in gc.get_objects())
    finally:
        gc.unfreeze()
    assert any(obj is survivor for obj in gc.get_objects())


def test_full_collections_are_spaced_out_keeping_the_young_thresholds() -> None:
    saved = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        assert runtime.space_out_full_collections() == (700, 10, runtime.FULL_COLLECTION_EVERY)
        assert gc.get_threshold() == (700, 10, 100)
    finally:
        gc.set_threshold(*saved)
