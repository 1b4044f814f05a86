"""Which scope a method needs: the one policy every face applies (through the call pipeline)."""

from __future__ import annotations

READ = "read"
WRITE = "write"
#: Methods that only read; every other method (including ones added later) needs "write".
READ_PREFIXES = ("Get", "List", "Stream")


def scope_for(method: str) -> str:
    """``read`` for Get*/List*/Stream* methods, ``write`` for everything else."""
    name = method.rsplit("/", 1)[-1]
    return READ if name.startswith(READ_PREFIXES) else WRITE
