"""glibc malloc's bytes in use: what the soak's native-growth gate and the
gateway_malloc_in_use_bytes gauge read."""

from __future__ import annotations

import ctypes
import subprocess
import sys

from gateway import native_heap

MIB = 1 << 20


def _value() -> float:
    from gateway import metrics
    return metrics.REGISTRY.get_sample_value("gateway_malloc_in_use_bytes") or 0.0


def test_in_use_follows_native_allocations() -> None:
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    before = native_heap.in_use()
    assert before is not None and before > 0
    blocks = [libc.malloc(4 * MIB) for _ in range(10)]  # what a C extension's leak looks like
    try:
        assert all(blocks)
        held = native_heap.in_use()
        assert held is not None and held - before >= 38 * MIB  # 40 held, less what other threads freed
        # The gauge reads the same figure (give or take what other threads freed meanwhile).
        assert abs(_value() - held) < 4 * MIB
    finally:
        for block in blocks:
            libc.free(block)
    after = native_heap.in_use()
    assert after is not None and after - before < 4 * MIB


_LARGE_BODIES = """
import resource, sys
from gateway import native_heap
MiB = 1 << 20
if sys.argv[1] == "keep":
    assert native_heap.keep_freed(64 * MiB)
faults = []
for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    text = (b"x" * (15 * MiB)).decode()  # a large body's bytes and its text, as a parse holds them
    del text
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(" ".join(map(str, faults)))
"""


def _faults_per_large_body(policy: str) -> list[int]:
    """Page faults of four 15 MiB bodies in turn, in a fresh process (mallopt is for good)."""
    out = subprocess.run([sys.executable, "-c", _LARGE_BODIES, policy], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    return [int(n) for n in out.split()]


def test_keep_freed_lets_the_next_large_body_reuse_the_last_ones_pages() -> None:
    """Under glibc's own policy every 15 MiB body and its text fault in ~7,700 new pages (each
    paid on the loop's CPU); kept, only the first does."""
    default = _faults_per_large_body("default")
    kept = _faults_per_large_body("keep")
    assert min(default[1:]) > 7000
    assert kept[0] > 7000 and max(kept[1:]) < 500
