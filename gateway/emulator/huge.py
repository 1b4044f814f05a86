"""The ``huge_body`` fault's bodies: a list envelope with a long padding string, as plain pieces
(never the whole body in memory) or as one gzip stream (a compression bomb, built in a few
milliseconds whatever its decoded size)."""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Iterator

__all__ = ["gzip_body", "plain_pieces", "plain_size"]

HEAD = b'{"object":"list","data":[],"first_id":null,"last_id":null,"has_more":false,"padding":"'
TAIL = b'"}'
#: Bytes per write, and per block of the padding.
BLOCK = 65536
_GZIP_BLOCK = 1 << 20


def _padding(size: int) -> int:
    return max(0, size - len(HEAD) - len(TAIL))


def plain_size(size: int) -> int:
    """The body's real length (at least the envelope's)."""
    return len(HEAD) + _padding(size) + len(TAIL)


def plain_pieces(size: int) -> Iterator[bytes]:
    yield HEAD
    padding = _padding(size)
    block = b"x" * BLOCK
    while padding > 0:
        piece = block if padding >= BLOCK else block[:padding]
        yield piece
        padding -= len(piece)
    yield TAIL


@functools.lru_cache(maxsize=4)
def gzip_body(size: int) -> bytes:
    """The same body gzip-compressed. After a full flush deflate refers to nothing before it, so
    one compressed 1 MiB block of padding stands for every other one: the stream is assembled,
    not computed (a 1 GiB body takes a CRC pass over the padding, ~1 MiB of output)."""
    padding = _padding(size)
    blocks, rest = divmod(padding, _GZIP_BLOCK)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [compressor.compress(HEAD), compressor.flush(zlib.Z_FULL_FLUSH)]
    block = b"x" * _GZIP_BLOCK
    crc = zlib.crc32(HEAD)
    if blocks:
        parts.append(compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH))
        parts.extend([parts[-1]] * (blocks - 1))
        for _ in range(blocks):
            crc = zlib.crc32(block, crc)
    crc = zlib.crc32(TAIL, zlib.crc32(block[:rest], crc))
    parts += [compressor.compress(block[:rest] + TAIL), compressor.flush()]
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", crc & 0xFFFFFFFF, plain_size(size) & 0xFFFFFFFF)
    return header + b"".join(parts) + trailer
