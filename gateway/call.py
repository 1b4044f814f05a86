"""The per-call record shared by the faces, the operations and the upstream client.

A face opens a ``Call`` when a request arrives; code below it reads the deadline from it and
writes what happened (upstream status, request id, headers to hand back, cache outcome). The face
turns the record into one log line and into response metadata. Held in a contextvar so that the
upstream client needs no extra parameters threaded through every layer.
"""

from __future__ import annotations

import contextvars
import random
import time
from dataclasses import dataclass, field

from gateway.errors import DeadlineExceeded

#: Upstream response headers worth handing to the consumer (the rest are the edge's business).
FORWARDED_HEADER_PREFIXES = ("x-ratelimit-",)
FORWARDED_HEADERS = frozenset(
    {"x-request-id", "openai-processing-ms", "openai-version", "openai-organization",
     "retry-after", "retry-after-ms", "x-should-retry"}
)


def forwardable(name: str) -> bool:
    """Whether an upstream response header goes back to the consumer."""
    lower = name.lower()
    return lower in FORWARDED_HEADERS or lower.startswith(FORWARDED_HEADER_PREFIXES)


@dataclass(slots=True)
class Call:
    """What one consumer call is allowed and what it did."""

    method: str
    #: A correlation id, not a secret: 128 random bits from the process's PRNG (os.urandom was
    #: a system call on every call of the hot path).
    request_id: str = field(default_factory=lambda: f"{random.getrandbits(128):032x}")
    #: Which face opened the call ("grpc", "rest"; "internal" for a detached record).
    face: str = "grpc"
    #: Absolute ``time.monotonic()`` by which the call must be answered.
    deadline: float | None = None
    started: float = field(default_factory=time.monotonic)
    #: The consumer's network address as the face saw it (failed-auth limits are per peer).
    peer: str = ""
    consumer: str | None = None
    key_id: str | None = None
    #: The upstream profile the call runs under: cache entries and limits never cross tenants.
    tenant: str = "default"
    upstream_status: int | None = None
    upstream_request_id: str | None = None
    upstream_calls: int = 0
    cache: str | None = None
    #: The consumer's ``idempotency-key`` metadata (CreateMessage's ``request_id`` is the other
    #: way to send it); validated by the operation, not here.
    idempotency_key: str | None = None
    #: The consumer's ``cache-control`` metadata (lower-case), e.g. "no-cache" or "no-store".
    cache_control: str = ""
    #: The consumer's ``authorization`` value, picked up in the face's one pass over the request
    #: metadata and taken (set back to None) by authentication before any other work. "" when
    #: the value is not one string (several headers, a binary value). Never in a repr.
    authorization: str | None = field(default=None, repr=False)
    #: Upstream headers to return as response metadata (lower-case names).
    response_headers: dict[str, str] = field(default_factory=dict)

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


_current: contextvars.ContextVar[Call | None] = contextvars.ContextVar("gateway_call", default=None)


def current_call() -> Call:
    """The call being served; a detached one when none is (scripts, tests of lower layers)."""
    call = _current.get()
    if call is None:
        call = Call(method="internal", face="internal")
        _current.set(call)
    return call


def bound_call() -> Call | None:
    """The call a face bound in this context, if any (never creates one)."""
    return _current.get()


def bind_call(call: Call) -> contextvars.Token[Call | None]:
    return _current.set(call)


def unbind_call(token: contextvars.Token[Call | None]) -> None:
    _current.reset(token)
