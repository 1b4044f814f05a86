"""Retries of the idempotent methods, done by the client, bounded by the call's timeout.

What is retried, at most ``max_retries`` times (the SDK's knob, per client or per
``with_options``):

* UNAVAILABLE (the gateway draining or restarting, the upstream down, a broken connection):
  after the ``RetryInfo`` delay if the gateway sent one, else a jittered exponential backoff;
* RESOURCE_EXHAUSTED *with* ``RetryInfo`` (the upstream's 429 or the gateway's own rate limit,
  which say when to come back): after exactly that delay. Without ``RetryInfo`` (a body too
  large, a quota spent) the same call would fail again, so it is raised.

Only the methods in ``IDEMPOTENT_METHODS``: never CreateMessage, UpdateMessage, CreateThread,
UpdateThread, AdoptThread (pass ``request_id`` to make a create safe to retry yourself). A retry
whose pause would end past the call's deadline is not made: the error is raised at once instead
of a DEADLINE_EXCEEDED later. Done here rather than by the channel's service config because gRPC
neither reads ``RetryInfo`` nor lets ``max_retries`` differ per client over one channel.

Streams use the same rule for a failure before their first page; once a page has arrived they
resume instead (``messages_gateway_client._resume``), counted by ``max_resumes``.
"""

from __future__ import annotations

import random
import time

import grpc

from messages_gateway_client._errors import GatewayError

#: Methods that only read: safe to send again.
IDEMPOTENT_METHODS = (
    "GetMessage", "ListMessages", "StreamMessages",
    "GetMessageFile", "ListMessageFiles", "StreamMessageFiles",
    "GetThread",
)  # fmt: skip

#: Backoff before the n-th retry (0-based) without RetryInfo: full jitter over
#: min(BACKOFF_CAP, BACKOFF_BASE * 2**n).
BACKOFF_BASE = 0.1
BACKOFF_CAP = 2.0
#: A RetryInfo delay longer than this is not waited for, even without a deadline (the SDK's
#: bound for ``retry-after``): the error is raised with ``retry_after`` set.
MAX_RETRY_AFTER = 60.0


def retry_pause(error: GatewayError, retry: int) -> float | None:
    """Seconds to wait before retry number ``retry`` (0-based), or None: not retryable."""
    if error.code == grpc.StatusCode.UNAVAILABLE:
        if error.retry_after is not None:
            return error.retry_after if error.retry_after <= MAX_RETRY_AFTER else None
        return random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**retry))
    if error.code == grpc.StatusCode.RESOURCE_EXHAUSTED and error.retry_after is not None:
        return error.retry_after if error.retry_after <= MAX_RETRY_AFTER else None
    return None


class Attempts:
    """One call's attempts: its deadline, and whether (and after how long) to try again."""

    __slots__ = ("deadline", "max_retries", "retries")

    def __init__(self, rpc: str, timeout: float | None, max_retries: int) -> None:
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.max_retries = max_retries if rpc in IDEMPOTENT_METHODS else 0
        self.retries = 0

    def remaining(self) -> float | None:
        """The next attempt's timeout: what is left of the call's."""
        if self.deadline is None:
            return None
        return max(self.deadline - time.monotonic(), 0.001)

    def pause(self, error: GatewayError) -> float | None:
        """How long to wait before trying again, or None: raise ``error``."""
        if self.retries >= self.max_retries:
            return None
        pause = retry_pause(error, self.retries)
        if pause is None:
            return None
        if self.deadline is not None and time.monotonic() + pause >= self.deadline:
            return None
        self.retries += 1
        return pause


__all__ = ["Attempts", "IDEMPOTENT_METHODS", "MAX_RETRY_AFTER", "retry_pause"]
