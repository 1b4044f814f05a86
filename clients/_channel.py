"""What is set once per client: target, gateway key, TLS, default timeout, retry policy.

Retries live in the channel's service config (gRFC A6), so gRPC itself retries, with jittered
backoff, only the idempotent methods and only on UNAVAILABLE - never CreateMessage, whose retry
could create a message twice (pass ``request_id`` to make a create safe to retry yourself).
gRPC retries a call only until response headers arrive, so a stream that has delivered a page is
never replayed from its start; the clients resume it from the last id instead (``_resume``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

SERVICE = "messages_gateway.v1.MessagesService"
#: Methods that read only: safe to send again.
IDEMPOTENT_METHODS = (
    "GetMessage", "ListMessages", "StreamMessages",
    "GetMessageFile", "ListMessageFiles", "StreamMessageFiles",
)  # fmt: skip

RETRY_POLICY: dict[str, Any] = {
    "maxAttempts": 4,
    "initialBackoff": "0.1s",
    "maxBackoff": "2s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}


def service_config(retry_policy: dict[str, Any] | None = None) -> str:
    """The ``grpc.service_config`` JSON: the retry policy on the idempotent methods only, and
    round_robin over every address the target resolves to (``dns:///gateway-headless:50051``
    spreads calls over the replicas; a single address behaves as pick_first)."""
    return json.dumps({
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [{
            "name": [{"service": SERVICE, "method": m} for m in IDEMPOTENT_METHODS],
            "retryPolicy": retry_policy or RETRY_POLICY,
        }],
    })


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
    channel_options: Sequence[tuple[str, Any]] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.target:
            raise ValueError("target must be HOST:PORT")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError("timeout must be greater than 0 (or None for no deadline)")
        if self.max_resumes < 0:
            raise ValueError("max_resumes must be >= 0")
        if self.api_key is not None and not self.api_key.isprintable():
            raise ValueError("api_key must be printable text")

    def __repr__(self) -> str:
        # The key must never show up in a log line or a traceback.
        return (f"ClientConfig(target={self.target!r}, tls={self.secure}, "
                f"api_key={'<set>' if self.api_key else None}, timeout={self.timeout})")

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
