"""The native heap: bytes glibc's malloc has handed out and not had back (``mallinfo2``).

RSS blurs a leak with the allocator's own bookkeeping (freed memory that glibc keeps, pages
Python's arenas hold); this is the allocations themselves, native code's included: gRPC core,
aiohttp's and uvloop's buffers, and Python objects over 512 bytes. ``None`` where the C library
has no ``mallinfo2`` (glibc before 2.33, musl): the gauge then reads 0.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

__all__ = ["in_use", "keep_freed"]


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _mallinfo2() -> Callable[[], _MallInfo2] | None:
    try:
        function = ctypes.CDLL(None).mallinfo2
    except (AttributeError, OSError):
        return None
    function.restype = _MallInfo2
    function.argtypes = []
    return function  # type: ignore[no-any-return]


_MALLINFO2 = _mallinfo2()


def in_use() -> int | None:
    """Bytes in use: allocated from the arenas (every arena's) plus mmap'd blocks."""
    if _MALLINFO2 is None:
        return None
    info = _MALLINFO2()
    return int(info.uordblks + info.hblkhd)


#: mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: glibc's largest mmap threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX): blocks up to this size
#: come from the heap, where freed memory can be reused.
_MMAP_THRESHOLD_MAX = 32 << 20


def keep_freed(trim_bytes: int) -> bool:
    """Keep up to ``trim_bytes`` of freed heap for reuse instead of handing it back at once.

    glibc maps each block over its mmap threshold afresh and unmaps it when freed, and trims the
    heap's free top past twice that threshold, so every large body's decode and parse (one
    body's size each, gateway/upstream/outcomes.py) touched new pages: one fault each, paid on
    the loop's CPU, measured 2-13 µs a page on this VM kind (15 MiB: 3,840 faults, 8-50 ms in
    one loop step). With blocks up to 32 MiB served from the heap and its top trimmed only past
    ``trim_bytes``, the next large body reuses the pages the last one freed (0 faults; the
    decode of 15 MiB 11 -> 0.8 ms, measured). RSS then keeps up to ``trim_bytes`` more after a
    burst of large bodies. ``False`` where the C library has no ``mallopt`` (musl)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return False
    mallopt.restype = ctypes.c_int
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
                and mallopt(_M_TRIM_THRESHOLD, min(trim_bytes, 2**31 - 1)))
