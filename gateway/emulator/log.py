"""The request log: what the emulator was asked, how it answered, and who hung up.

Tests assert on it ("exactly one upstream call", "the gateway's cancel reached upstream", "no
request left in flight"), so every ``/v1`` request is recorded when it arrives and completed when
its handler ends, including requests the client abandoned (``disconnected``) and those a fault
aborted (``status`` None: no status line was ever sent). Admin requests are not recorded.

Entries are kept in a bounded deque (soak tests run for minutes); per-operation counts are kept
separately and never truncated, so :meth:`RequestLog.count` stays exact after the deque wraps.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["LogEntry", "RequestLog"]


@dataclass(slots=True)
class LogEntry:
    """One request. ``status`` is None while in flight or when no status line was sent."""

    request_id: str
    operation: str | None
    method: str
    path: str
    query: dict[str, str]
    #: The request's headers (lower-case names), less the credentials (authorization, cookie).
    headers: dict[str, str] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    status: int | None = None
    disconnected: bool = False
    fault: str | None = None
    #: Which key the request carried (``Emulator.key_id``; None without one), never the key.
    key_id: str | None = None
    duration_ms: float | None = None
    finished: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class RequestLog:
    """Thread-safe record of requests; see the module docstring."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._entries: deque[LogEntry] = deque(maxlen=max_entries)
        self._counts: Counter[str | None] = Counter()
        self._total = 0
        self._in_flight = 0

    # -- recording (used by the app) --------------------------------------------------------

    def start(
        self, request_id: str, operation: str | None, method: str, path: str,
        query: dict[str, str], headers: dict[str, str] | None = None,
    ) -> LogEntry:
        entry = LogEntry(request_id, operation, method, path, query, dict(headers or {}))
        with self._lock:
            self._entries.append(entry)
            self._counts[operation] += 1
            self._total += 1
            self._in_flight += 1
        return entry

    def finish(self, entry: LogEntry) -> None:
        with self._lock:
            if entry.finished:
                return
            entry.finished = True
            entry.duration_ms = round((time.time() - entry.started_at) * 1000, 3)
            self._in_flight -= 1

    # -- querying (tests) -------------------------------------------------------------------

    @property
    def entries(self) -> list[LogEntry]:
        """A snapshot, oldest first (the newest ``max_entries`` only)."""
        with self._lock:
            return list(self._entries)

    @property
    def in_flight(self) -> int:
        """Requests whose handler has not finished yet."""
        with self._lock:
            return self._in_flight

    def count(self, operation: str | None = None) -> int:
        """Requests received since the last clear, for one operation id or all of them."""
        with self._lock:
            return self._total if operation is None else self._counts[operation]

    def clear(self) -> None:
        """Forget entries and counts (requests in flight are still counted in ``in_flight``)."""
        with self._lock:
            self._entries.clear()
            self._counts.clear()
            self._total = 0

    async def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until nothing is in flight; False on timeout. Handlers finish on the server's loop
        a moment after the client sees the connection drop, so tests poll rather than assume."""
        deadline = time.monotonic() + timeout
        while self.in_flight:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    def wait_idle_sync(self, timeout: float = 5.0) -> bool:
        """:meth:`wait_idle` for a thread that is not the server's (sync SDK tests)."""
        deadline = time.monotonic() + timeout
        while self.in_flight:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True
