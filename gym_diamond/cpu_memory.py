"""Keep freed CPU memory inside the process, so the dream's big activations reuse it.

glibc's malloc serves large blocks (above a threshold of at most 32 MB) with fresh ``mmap`` pages and
returns them to the OS when freed. A U-Net step allocates and frees its activations every time, so
every step page-faults them in anew: on the 2-core benchmark machine that was a fifth of the paper
model's time at batch 16 and a quarter of the light model's at batch 64 (benchmarks/README.md). Turning
mmap off and never trimming the heap makes freed blocks stay and be reused, like torch's CUDA caching
allocator does on a GPU; the price is that the process keeps its peak memory. ``LD_PRELOAD``-ing
jemalloc or tcmalloc does the same job; ``GYM_DIAMOND_MALLOC=system`` leaves malloc alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_MAX = -4
OPT_OUT = "GYM_DIAMOND_MALLOC"

_state: bool | None = None


def keep_freed_memory() -> bool:
    """Make glibc keep and reuse freed memory (once per process); True if it is in effect.

    A no-op returning False off Linux, with a C library that has no ``mallopt`` (musl), or when the
    environment variable ``GYM_DIAMOND_MALLOC`` is ``system``.
    """
    global _state
    if _state is None:
        _state = _apply()
    return _state


def _apply() -> bool:
    if not sys.platform.startswith("linux") or os.environ.get(OPT_OUT, "").lower() == "system":
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
