"""Cache keys: who asked (tenant), what (operation, path ids, every query parameter).

A key names one upstream answer exactly: two requests share an entry only when the upstream would
receive the same request under the same profile. ``scopes`` name the generations the entry depends
on; a write bumps a scope's generation and every entry stored under the older one stops matching
(see ``gateway/cache/__init__.py`` for why generations rather than deletes).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlencode

__all__ = ["CacheKey", "list_scope", "make_key", "message_scope", "thread_scope"]


@dataclass(frozen=True, slots=True)
class CacheKey:
    tenant: str
    operation: str
    #: Path ids in URL order (thread, message, file).
    path: tuple[str, ...]
    #: Every query parameter the upstream receives, sorted by name.
    query: tuple[tuple[str, str], ...]
    #: Generation scopes the entry depends on (empty for immutable resources).
    scopes: tuple[str, ...] = ()
    #: The tenant-free part, unambiguous: every component is percent-encoded whole. Computed
    #: once in ``make_key``: every lookup and store reads it.
    text: str = ""


@functools.lru_cache(maxsize=8192)
def _quote(part: str) -> str:
    """One id percent-encoded whole; hot ids repeat on every hit, so the encoding is kept."""
    return quote(part, safe="")


def make_key(
    tenant: str,
    operation: str,
    path: tuple[str, ...],
    query: Mapping[str, str],
    scopes: tuple[str, ...] = (),
) -> CacheKey:
    ordered = tuple(sorted(query.items())) if query else ()
    text = "/".join([_quote(part) for part in path])
    # Gets have no query: urlencode's type checks are skipped on that hot path.
    encoded = urlencode(ordered) if ordered else ""
    return CacheKey(tenant, operation, path, ordered, scopes, f"{operation}/{text}?{encoded}")


def list_scope(thread_id: str) -> str:
    """The generation of a thread's message list pages (bumped by every write to the thread)."""
    return "list/" + _quote(thread_id)


def message_scope(thread_id: str, message_id: str) -> str:
    """The generation of one message (bumped by UpdateMessage)."""
    return "message/" + _quote(thread_id) + "/" + _quote(message_id)


def thread_scope(thread_id: str) -> str:
    """The generation of everything cached about a thread (bumped by DeleteThread)."""
    return "thread/" + _quote(thread_id)
