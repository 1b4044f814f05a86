"""Named upstream profiles and the pool of upstream clients serving them.

A profile is a base URL, a key (from an environment variable or a file re-read when it changes),
an organization, a project and an ``OpenAI-Beta`` value. ``[upstream]`` is the profile "default";
``[profiles.NAME]`` tables add more. Every consumer in the credentials store is bound to one
profile by name, and the authenticated call's context carries it as ``ctx.tenant``.

All profiles share one httpx client (one connection pool per process): the credentials go on each
request, so one profile's key can never ride on another profile's request.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import httpx

from gateway import metrics
from gateway.context import CallContext
from gateway.config import ProfileSettings, Settings, UpstreamSettings
from gateway.errors import Internal, Unavailable
from gateway.upstream.admission import Admission, admission_limit
from gateway.upstream.client import UpstreamClient, UpstreamResponse
from gateway.upstream.http import UpstreamHTTP

DEFAULT_PROFILE = "default"


def profile_settings(base: UpstreamSettings, profile: ProfileSettings) -> UpstreamSettings:
    """The full upstream settings of a profile: its own identity, the shared connection knobs."""
    return dataclasses.replace(
        base,
        base_url=profile.base_url,
        api_key=profile.api_key,
        api_key_env=profile.api_key_env,
        api_key_file=profile.api_key_file,
        beta=profile.beta,
        organization=profile.organization,
        project=profile.project,
    )


def all_profiles(settings: Settings) -> dict[str, UpstreamSettings]:
    profiles = {DEFAULT_PROFILE: settings.upstream}
    for profile in settings.profiles:
        profiles[profile.name] = profile_settings(settings.upstream, profile)
    return profiles


class UpstreamPool:
    """Profile name → UpstreamClient; ``request`` uses the profile of the call's context.

    It answers ``request`` and ``settings`` like a single ``UpstreamClient``, so the operations
    take either one.
    """

    def __init__(
        self,
        settings: Settings,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings.upstream
        self._http = UpstreamHTTP(settings.upstream, transport)
        r = settings.reliability
        self.admission = Admission(
            admission_limit(r.max_upstream_concurrency, settings.upstream.max_connections),
            r.admission_wait_seconds)
        self.clients: dict[str, UpstreamClient] = {
            name: UpstreamClient(profile, default_timeout=settings.server.default_timeout_seconds,
                                 reliability=r, http=self._http, admission=self.admission)
            for name, profile in all_profiles(settings).items()
        }
        for name, client in self.clients.items():
            # Read at scrape time: nothing per request.
            metrics.RETRY_BUDGET.labels(name).set_function(lambda b=client.budget: b.tokens)

        #: Profiles with no upstream key (kept by the start-up key watch): their calls are refused
        #: before any upstream request, instead of going out without a key.
        self.keys_missing: frozenset[str] = frozenset()

    def set_keys_missing(self, profiles: frozenset[str]) -> None:
        self.keys_missing = profiles

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.clients)

    def client(self, profile: str) -> UpstreamClient:
        try:
            return self.clients[profile]
        except KeyError:
            # The store names a profile this process was not configured with: our mistake.
            raise Internal("the consumer's upstream profile is not configured",
                           reason="PROFILE_NOT_CONFIGURED") from None

    async def request(
        self,
        ctx: CallContext,
        method: str,
        segments: Sequence[str],
        *,
        query: Mapping[str, str] | None = None,
        json_body: Any = None,
        extra_headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        recover: Callable[[], Awaitable[Any | None]] | None = None,
    ) -> UpstreamResponse:
        if self.keys_missing and ctx.tenant in self.keys_missing:
            raise Unavailable("the gateway has no upstream key configured yet; retry later",
                              reason="UPSTREAM_KEY_MISSING", retry_after=5.0)
        return await self.client(ctx.tenant).request(
            ctx, method, segments, query=query, json_body=json_body, extra_headers=extra_headers,
            idempotent=idempotent, recover=recover,
        )

    async def aclose(self) -> None:
        await self._http.aclose()
