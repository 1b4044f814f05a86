"""Reading an upstream body within ``upstream.max_body_bytes``, decoded bytes counted.

The gateway asks for ``gzip, deflate`` (headers.py) and its transports decompress nothing
(transport_h1.py, transport.py), so bodies are decoded here, in steps of ``DECODE_STEP`` output bytes: zlib's
``max_length`` keeps the compressed rest for the next step. httpx's decoders inflate a whole
received chunk at once, and one 64 KiB chunk of a gzip bomb is ~64 MiB: the cap was checked only
after that allocation (a 1 MiB cap peaked at 141 MiB of heap for one call, and the inflating
blocked the event loop; tests/reliability/test_slow_and_huge.py). Here the heap holds at most the
cap, one step and one received chunk.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Callable

import httpx

from gateway.upstream.outcomes import too_large

__all__ = ["DECODE_STEP", "decodes", "read_capped"]

#: Decoded bytes per inflate step: large enough that a normal page takes a handful of steps,
#: small against any cap (the default is 16 MiB).
DECODE_STEP = 256 * 1024

#: ``Content-Encoding`` → zlib ``wbits`` (gzip framing, zlib framing; raw deflate is tried when
#: a "deflate" body has no zlib header, as servers commonly send it).
_WBITS = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}
_IDENTITY = frozenset({"", "identity"})


def decodes(encoding: str) -> bool:
    """Whether ``read_capped`` decodes this ``Content-Encoding`` itself."""
    return encoding in _WBITS


async def _inflated(chunks: AsyncIterable[bytes], encoding: str) -> AsyncIterator[bytes]:
    inflater = zlib.decompressobj(_WBITS[encoding])
    first = True
    async for chunk in chunks:
        data = chunk
        while data:
            try:
                piece = inflater.decompress(data, DECODE_STEP)
            except zlib.error as exc:
                if first and encoding == "deflate":  # no zlib header: raw deflate
                    inflater, first = zlib.decompressobj(-zlib.MAX_WBITS), False
                    continue
                raise httpx.DecodingError(f"the {encoding} body does not decode") from exc
            first = False
            if piece:
                yield piece
            data = inflater.unconsumed_tail
            if inflater.eof:
                return  # trailing bytes after the stream are not part of the body
            if data:
                # More of this chunk to inflate: let the loop run between steps. One 64 KiB chunk
                # of a bomb inflates to 64 MiB, ~60 ms of CPU up to the cap in one loop step
                # otherwise (tests/reliability/test_loop_lag.py).
                await asyncio.sleep(0)
    try:
        rest = inflater.flush()
    except zlib.error as exc:  # pragma: no cover - flush after a complete stream
        raise httpx.DecodingError(f"the {encoding} body does not decode") from exc
    if rest:
        yield rest


async def read_capped(chunks: AsyncIterable[bytes], encoding: str, cap: int,
                      fallback: Callable[[], AsyncIterable[bytes]] | None = None
                      ) -> bytearray:
    """The whole body, decoded; ``too_large()`` as soon as more than ``cap`` decoded bytes
    arrived. ``encoding`` is the lower-case ``Content-Encoding``; one this module does not
    decode is read from ``fallback`` (httpx's decoders, e.g. brotli when installed)."""
    if encoding in _IDENTITY:
        source: AsyncIterable[bytes] = chunks
    elif encoding in _WBITS:
        source = _inflated(chunks, encoding)
    else:
        source = fallback() if fallback is not None else chunks
    # Grown in place as chunks arrive: a join at the end copied the whole body in one step on
    # the loop (~20 ms for 15 MiB on a loaded machine, next to the parse; tests/reliability/
    # test_loop_lag.py). Both JSON parsers take a bytearray.
    body = bytearray()
    async for part in source:
        if len(body) + len(part) > cap:
            raise too_large()
        body += part
    return body
