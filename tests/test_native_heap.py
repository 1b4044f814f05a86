"""glibc malloc's bytes in use: what the soak's native-growth gate and the
gateway_malloc_in_use_bytes gauge read."""

from __future__ import annotations

import ctypes

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
