"""What is set once per client: target, gateway key, TLS, default timeout, retries.

Retries are the client's own (``_retry``: the idempotent methods, UNAVAILABLE and
RESOURCE_EXHAUSTED with RetryInfo, ``max_retries``), so the channel's service config carries no
retry policy unless one is passed to ``service_config`` (for callers who build their own
channel); it sets round_robin and client-side health checking (a replica reporting NOT_SERVING,
e.g. draining, gets no new calls). A stream that has delivered a page is never replayed from its
start; the clients resume it from the last id instead (``_resume``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from messages_gateway_client._retry import IDEMPOTENT_METHODS

PACKAGE = "messages_gateway.v1"

RETRY_POLICY: dict[str, Any] = {
    "maxAttempts": 4,
    "initialBackoff": "0.1s",
    "maxBackoff": "2s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}


def service_config(retry_policy: dict[str, Any] | None = None) -> str:
    """The ``grpc.service_config`` JSON: round_robin over every address the target resolves to
    (``dns:///gateway-headless:50051`` spreads calls over the replicas; a single address behaves
    as pick_first), and, only when ``retry_policy`` is given (e.g. ``RETRY_POLICY``), gRPC's own
    retries on the idempotent methods, for channels made without these clients."""
    config: dict[str, Any] = {
        "loadBalancingConfig": [{"round_robin": {}}],
        # Client-side health checking: an address whose gateway reports NOT_SERVING (draining,
        # or no upstream key) gets no new calls, so a rolling restart's drain delay moves every
        # call to the other replicas before the draining one stops accepting.
        "healthCheckConfig": {"serviceName": f"{PACKAGE}.MessagesService"},
    }
    if retry_policy is not None:
        config["methodConfig"] = [{
            "name": [{"service": f"{PACKAGE}.{_service(m)}", "method": m}
                     for m in IDEMPOTENT_METHODS],
            "retryPolicy": retry_policy,
        }]
    return json.dumps(config)


def _service(method: str) -> str:
    return "ThreadsService" if method.endswith("Thread") else "MessagesService"


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """The per-client settings; built once by the client constructors."""

    target: str
    api_key: str | None = None
    #: Seconds each call (each whole ``list()`` iteration, resumes included) may take.
    timeout: float | None = 60.0
    tls: bool = False
    root_certificates: bytes | None = None
    private_key: bytes | None = None
    certificate_chain: bytes | None = None
    #: How many times one ``list()`` iteration resumes a broken stream before giving up.
    max_resumes: int = 10
    #: How many times an idempotent call is retried (``messages_gateway_client._retry``).
    max_retries: int = 3
    channel_options: Sequence[tuple[str, Any]] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.target:
            raise ValueError("target must be HOST:PORT")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError("timeout must be greater than 0 (or None for no deadline)")
        if self.max_resumes < 0:
            raise ValueError("max_resumes must be >= 0")
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) \
                or self.max_retries < 0:
            raise ValueError("max_retries must be an int >= 0")
        if self.api_key is not None and not self.api_key.isprintable():
            raise ValueError("api_key must be printable text")

    def __repr__(self) -> str:
        # The key must never show up in a log line or a traceback.
        return (f"ClientConfig(target={self.target!r}, tls={self.secure}, "
                f"api_key={'<set>' if self.api_key else None}, timeout={self.timeout})")

    def with_options(self, *, timeout: float | None | object, max_retries: int | object,
                     max_resumes: int | object) -> ClientConfig:
        """A copy with the given settings changed (NOT_GIVEN: kept), validated again."""
        changes = {name: value for name, value in (
            ("timeout", timeout), ("max_retries", max_retries), ("max_resumes", max_resumes))
            if value is not NOT_GIVEN}
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def secure(self) -> bool:
        return bool(self.tls or self.root_certificates or self.private_key
                    or self.certificate_chain)

    def credentials(self) -> grpc.ChannelCredentials | None:
        if not self.secure:
            return None
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
        )

    def options(self) -> list[tuple[str, Any]]:
        return [
            ("grpc.enable_retries", 1),
            ("grpc.service_config", service_config()),
            ("grpc.max_receive_message_length", 16 * 1024 * 1024),
            *self.channel_options,
        ]

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.api_key}"),) if self.api_key else ()

    def call_timeout(self, timeout: float | None | object) -> float | None:
        """The deadline of one call: the per-call value, else the client's."""
        if timeout is NOT_GIVEN:
            return self.timeout
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
            raise ValueError("timeout must be a positive number of seconds or None")
        return timeout  # type: ignore[return-value]


class _NotGiven:
    """Marks an argument left out, so ``timeout=None`` (no deadline) stays expressible."""

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __bool__(self) -> bool:
        return False


NOT_GIVEN: Any = _NotGiven()
