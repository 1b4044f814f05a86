"""Start-up checks of the upstream: a missing key shows at start, not at the first consumer.

Without a key every call went upstream unauthenticated and came back INTERNAL
``UPSTREAM_CREDENTIALS_REJECTED`` while health said SERVING. Now each profile's key is resolved
at start; while one is missing the gateway logs ``upstream_misconfigured`` (error, naming the
profile and where the key was looked for, never a key), sets
``gateway_upstream_key_missing{profile}`` to 1 and reports the consumer service
(``messages_gateway.v1.MessagesService``) NOT_SERVING, so a readiness probe keeps consumers
away, and calls of that profile are refused UNAVAILABLE ``UPSTREAM_KEY_MISSING`` before any
upstream request (they went out without a key). The overall health (service "") stays SERVING:
the process is alive, and a liveness probe must not restart it over a Secret that has not been
mounted yet. The key is looked for again every ``KEY_RECHECK_SECONDS`` until every profile has
one (a file that appears, a Secret mounted late), then the consumer service turns SERVING.

The base URL's shape is checked with the settings (``gateway.config_checks``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

import structlog

from gateway import metrics
from gateway.cancellation import cancel_and_wait
from gateway.config import UpstreamSettings

log = structlog.get_logger("gateway.upstream")

#: How often a missing key is looked for again.
KEY_RECHECK_SECONDS = 5.0
REASON = "upstream_key_missing"


def key_source(settings: UpstreamSettings) -> str:
    """Where the key is read from, for the log line (a path or a variable name, not the key)."""
    if settings.api_key_file:
        return f"file {settings.api_key_file}"
    if settings.api_key:
        return "api_key"
    if settings.api_key_env:
        return f"environment variable {settings.api_key_env}"
    return "nowhere: set api_key_file or api_key_env"


def key_problem(settings: UpstreamSettings) -> str | None:
    """Why the profile has no key (the ``reason`` of its log line), or None when it has one."""
    try:
        key = settings.resolve_api_key()
    except FileNotFoundError:
        return "upstream_key_file_missing"
    except (OSError, UnicodeDecodeError):
        return "upstream_key_file_unreadable"
    return None if key else REASON


def key_present(settings: UpstreamSettings) -> bool:
    return key_problem(settings) is None


class UpstreamKeyWatch:
    """Checks every profile's key; ``on_ready(bool)`` hears whether all have one."""

    def __init__(self, profiles: Mapping[str, UpstreamSettings],
                 on_ready: Callable[[bool], Awaitable[None]],
                 on_missing: Callable[[frozenset[str]], None] | None = None) -> None:
        """``on_missing`` hears the profiles without a key after every check."""
        self._profiles = dict(profiles)
        self._on_ready = on_ready
        self._on_missing = on_missing
        self._task: asyncio.Task[None] | None = None
        self.missing: list[str] = []
        #: Why each profile without a key has none (``key_problem``); empty once all have one.
        self.problems: dict[str, str] = {}

    def _check(self) -> list[str]:
        missing = []
        problems = {}
        for name, settings in self._profiles.items():
            problem = key_problem(settings)
            metrics.UPSTREAM_KEY_MISSING.labels(name).set(0 if problem is None else 1)
            if problem is not None:
                missing.append(name)
                problems[name] = problem
        self.problems = problems  # one assignment: the metrics thread reads it (readiness)
        if self._on_missing is not None:
            self._on_missing(frozenset(missing))
        return missing

    async def start(self) -> None:
        """Check now; while a key is missing keep checking in the background."""
        self.missing = self._check()
        for name in self.missing:
            log.error("upstream_misconfigured", reason=self.problems[name], profile=name,
                      source=key_source(self._profiles[name]),
                      detail="no upstream key: the consumer service reports NOT_SERVING until "
                             "one is found")
        await self._on_ready(not self.missing)
        if self.missing:
            self._task = asyncio.get_running_loop().create_task(self._watch(),
                                                                name="upstream-key-watch")

    async def _watch(self) -> None:
        while self.missing:
            await asyncio.sleep(KEY_RECHECK_SECONDS)
            found = set(self.missing) - set(missing := self._check())
            for name in sorted(found):
                log.info("upstream_key_found", profile=name)
            self.missing = missing
        await self._on_ready(True)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
