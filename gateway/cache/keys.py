"""Cache keys: who asked (tenant), what (operation, path ids, every query parameter).

A key names one upstream answer exactly: two requests share an entry only when the upstream would
receive the same request under the same profile. ``scopes`` name the generations the entry depends
on; a write bumps a scope's generation and every entry stored under the older one stops matching
(see ``gateway/cache/__init__.py`` for why generations rather than deletes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlencode

__all__ = ["CacheKey", "list_scope", "make_key", "message_scope"]


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

    @property
    def text(self) -> str:
        """The tenant-free part, unambiguous: every component is percent-encoded whole."""
        path = "/".join(quote(part, safe="") for part in self.path)
        return f"{self.operation}/{path}?{urlencode(self.query)}"


def make_key(
    tenant: str,
    operation: str,
    path: tuple[str, ...],
    query: Mapping[str, str],
    scopes: tuple[str, ...] = (),
) -> CacheKey:
    return CacheKey(tenant, operation, path, tuple(sorted(query.items())), scopes)


def list_scope(thread_id: str) -> str:
    """The generation of a thread's message list pages (bumped by every write to the thread)."""
    return "list/" + quote(thread_id, safe="")


def message_scope(thread_id: str, message_id: str) -> str:
    """The generation of one message (bumped by UpdateMessage)."""
    return "message/" + quote(thread_id, safe="") + "/" + quote(message_id, safe="")
