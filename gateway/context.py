"""The call context: what one consumer call is allowed and what it did, passed explicitly.

A face opens one per call (``gateway.pipeline.opening``); the pipeline fills in who the caller is,
and every layer below takes it as a parameter, as python-api-core passes ``timeout=`` and
``metadata=``: the operations, the cache and the upstream client read the deadline, tenant,
consumer, cache directive and idempotency key from it and write what happened (upstream status,
request id, headers to hand back, cache outcome). Nothing finds it implicitly; the log's
contextvar carries only the fields of log lines (``gateway.log``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.errors import DeadlineExceeded, GatewayError
from gateway.headers import forwardable

if TYPE_CHECKING:  # pragma: no cover
    from gateway.tracing import CallTrace


def _request_id() -> str:
    # A correlation id, not a secret: 128 random bits from the process's PRNG (os.urandom was a
    # system call on every call of the hot path).
    return f"{random.getrandbits(128):032x}"


@dataclass(slots=True)
class CallContext:
    """One consumer call, from its face to the upstream and back."""

    method: str
    #: Which face opened the call ("grpc", "rest"; "internal" for scripts and lower-layer tests).
    face: str = "internal"
    request_id: str = field(default_factory=_request_id)
    #: Absolute ``time.monotonic()`` by which the call must be answered.
    deadline: float | None = None
    started: float = field(default_factory=time.monotonic)
    #: The consumer's network address, or a callable giving it (gRPC's ``context.peer`` is only
    #: asked for when some peer is blocked or the call fails).
    peer: str | Callable[[], str] = ""
    consumer: str | None = None
    key_id: str | None = None
    #: The upstream profile the call runs under: cache entries and limits never cross tenants.
    tenant: str = "default"
    #: The consumer's ``idempotency-key`` (validated by the create operation).
    idempotency_key: str | None = None
    #: The consumer's ``cache-control`` (lower-case), e.g. "no-cache" or "no-store".
    cache_control: str = ""
    #: The consumer's ``authorization`` value, taken (set back to None) by the pipeline before
    #: any other work; "" when it is not exactly one string. Never in a repr.
    authorization: str | None = field(default=None, repr=False)
    #: Allow-listed request headers (or metadata) to pass through to the upstream.
    forward_headers: dict[str, str] = field(default_factory=dict)
    #: The ids the request names, as sent, for its lines (``records`` bounds them there).
    thread_id: str = ""
    message_id: str = ""
    #: An input the face's pass over the headers refused (e.g. a bad timeout); the pipeline
    #: raises it after authentication, so the error is logged and audited like any other.
    rejected: GatewayError | None = None
    upstream_status: int | None = None
    upstream_request_id: str | None = None
    upstream_calls: int = 0
    cache: str | None = None
    #: Upstream headers (and the cache's) to return as response metadata (lower-case names).
    response_headers: dict[str, str] = field(default_factory=dict)
    #: The consumer's ``traceparent`` / ``tracestate``, when it sent either (else None).
    trace_carrier: dict[str, str] | None = None
    #: The call's spans while tracing is on (``gateway.tracing``); None when it is off.
    trace: CallTrace | None = None

    @classmethod
    def internal(cls, method: str = "internal", timeout: float | None = None) -> CallContext:
        """A context for work no consumer asked for (scripts, tests of lower layers)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        return cls(method=method, face="internal", deadline=deadline)

    def remaining(self) -> float | None:
        """Seconds left before the deadline, or None without one."""
        if self.deadline is None:
            return None
        return self.deadline - time.monotonic()

    def require_time(self) -> float | None:
        """Seconds left; raises DeadlineExceeded when none are."""
        left = self.remaining()
        if left is not None and left <= 0:
            raise DeadlineExceeded("the call's deadline passed")
        return left

    def record_upstream(self, status: int, headers: dict[str, str]) -> None:
        self.upstream_calls += 1
        self.upstream_status = status
        self.upstream_request_id = headers.get("x-request-id", self.upstream_request_id)
        for name, value in headers.items():
            if forwardable(name):
                self.response_headers[name] = value

    def flight_copy(self) -> CallContext:
        """A copy for work done on the call's behalf and maybe shared (a single-flight fetch):
        the same identity, deadline and inputs, with its own upstream outcome. By hand, not
        ``dataclasses.replace`` (which re-validates every field: ~5 % of a miss's own work)."""
        return CallContext(  # every field; tests/test_context.py checks none is left out
            method=self.method, face=self.face, request_id=self.request_id,
            deadline=self.deadline, started=self.started, peer=self.peer,
            consumer=self.consumer, key_id=self.key_id, tenant=self.tenant,
            idempotency_key=self.idempotency_key, cache_control=self.cache_control,
            authorization=self.authorization, forward_headers=self.forward_headers,
            thread_id=self.thread_id, message_id=self.message_id, rejected=self.rejected,
            upstream_status=None, upstream_request_id=None, upstream_calls=0, cache=self.cache,
            response_headers={}, trace_carrier=self.trace_carrier, trace=self.trace)

    def peer_address(self) -> str:
        peer = self.peer
        return peer if isinstance(peer, str) else peer()

