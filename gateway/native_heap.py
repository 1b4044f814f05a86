"""The native heap: bytes glibc's malloc has handed out and not had back (``mallinfo2``).

RSS blurs a leak with the allocator's own bookkeeping (freed memory that glibc keeps, pages
Python's arenas hold); this is the allocations themselves, native code's included: gRPC core,
aiohttp's and uvloop's buffers, and Python objects over 512 bytes. ``None`` where the C library
has no ``mallinfo2`` (glibc before 2.33, musl): the gauge then reads 0.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

__all__ = ["in_use"]


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
