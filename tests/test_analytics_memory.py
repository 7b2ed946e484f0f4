"""Freed memory handed back to the system between roll-up stages (`analytics.memory`)."""

from __future__ import annotations

import sys

import pytest

from analytics import memory


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS line")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and glibc's allocator")
def test_freed_heap_memory_goes_back_to_the_system() -> None:
    # Blocks below glibc's mmap threshold come from the heap; keeping every 16th one alive leaves
    # holes that freeing alone never returns (the heap's top is still in use).
    blocks = [bytearray(96 * 1024) for _ in range(2048)]
    for block in blocks:
        block[::4096] = b"x" * len(block[::4096])  # touch every page
    kept = blocks[::16]
    del blocks
    before = _rss_kib()
    memory.return_freed_memory()
    after = _rss_kib()
    assert memory._malloc_trim() is not None
    # About 180 MiB were freed in holes; most of it must be gone from the process.
    assert before - after > 100 * 1024, (before, after)
    assert len(kept) == 128
