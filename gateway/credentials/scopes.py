"""Which scope a method needs: the one policy every face applies (through the call pipeline)."""

from __future__ import annotations

READ = "read"
WRITE = "write"
ADMIN = "admin"
#: Methods that only read; every other method (including ones added later) needs "write".
READ_PREFIXES = ("Get", "List", "Stream")
#: Methods for the gateway's administrators only.
ADMIN_METHODS = frozenset({"AdoptThread"})


def scope_for(method: str) -> str:
    """``admin`` for the administrators' methods, ``read`` for Get*/List*/Stream* methods,
    ``write`` for everything else."""
    name = method.rsplit("/", 1)[-1]
    if name in ADMIN_METHODS:
        return ADMIN
    return READ if name.startswith(READ_PREFIXES) else WRITE
