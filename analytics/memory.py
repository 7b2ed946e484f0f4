"""Giving memory a roll-up stage freed back to the system before the next stage starts.

Arrow's allocator and glibc's both keep freed memory for reuse. After a day's export that is a few
hundred MB the figures (Polars, with an allocator of its own) can never reuse: returned, the peak of a
roll-up is the larger of its stages rather than their sum (BENCHMARKS.md, "Figure 3").
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable

import pyarrow as pa


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None where the C library has none (musl, macOS)."""
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return None
    return trim


def return_freed_memory() -> None:
    """Hand the memory Arrow's pool and the C heap hold unused back to the operating system."""
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
