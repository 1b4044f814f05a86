"""gateway/upstream/body.py: bodies decoded in bounded steps, the cap on decoded bytes."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.errors import ResourceExhausted
from gateway.upstream.body import DECODE_STEP, read_capped

MiB = 1024 * 1024


async def chunks(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


DOC = b'{"object":"list","data":[],"has_more":false,"padding":"' + b"y" * 300_000 + b'"}'


@pytest.mark.parametrize("encoding, encoded", [
    ("", DOC),
    ("identity", DOC),
    ("gzip", gzip.compress(DOC)),
    ("x-gzip", gzip.compress(DOC)),
    ("deflate", zlib.compress(DOC)),
    ("deflate", zlib.compress(DOC, wbits=-zlib.MAX_WBITS)),
], ids=["none", "identity", "gzip", "x-gzip", "deflate-zlib", "deflate-raw"])
async def test_read_capped_decodes_every_framing(encoding: str, encoded: bytes) -> None:
    assert await read_capped(chunks(encoded), encoding, 1 * MiB) == DOC


async def test_read_capped_gzip_bomb_stops_at_the_cap_with_the_heap_bounded() -> None:
    bomb = gzip.compress(b"x" * (128 * MiB), compresslevel=6)  # ~130 KiB on the wire
    cap = 1 * MiB
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        with pytest.raises(ResourceExhausted):
            await read_capped(chunks(bomb, 256 * 1024), "gzip", cap)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    # The cap, one step and one received chunk (httpx's decoder: the whole ~128 MiB at once).
    assert peak < cap + DECODE_STEP + 2 * 256 * 1024 + MiB


async def test_read_capped_identity_over_the_cap_refused() -> None:
    with pytest.raises(ResourceExhausted):
        await read_capped(chunks(b"x" * (MiB + 1)), "", MiB)
    assert len(await read_capped(chunks(b"x" * MiB), "", MiB)) == MiB  # the cap itself passes


async def test_read_capped_corrupt_gzip_is_a_decoding_error() -> None:
    broken = bytearray(gzip.compress(DOC))
    broken[20:40] = b"\xff" * 20
    with pytest.raises(httpx.DecodingError):
        await read_capped(chunks(bytes(broken)), "gzip", MiB)


async def test_read_capped_bytes_after_the_gzip_stream_are_not_body() -> None:
    assert await read_capped(chunks(gzip.compress(DOC) + b"junk"), "gzip", MiB) == DOC


async def test_read_capped_other_encodings_use_the_fallback() -> None:
    async def fallback() -> AsyncIterator[bytes]:
        yield b"decoded"

    assert await read_capped(chunks(b"raw"), "br", MiB, fallback=fallback) == b"decoded"
