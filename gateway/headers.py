"""Every header and metadata name the gateway reads or writes, and their limits: defined once.

gRPC metadata keys and HTTP header names are the same lower-case strings, so both faces read a
call's inputs through one table (``gateway.pipeline.opening``) and write the same outputs.
"""

from __future__ import annotations

# -- read from the consumer ----------------------------------------------------------------------

#: ``Bearer <gateway key>``.
AUTHORIZATION = "authorization"
#: The consumer's own correlation id (kept when printable, cut at ``MAX_VALUE_CHARS``).
REQUEST_ID = "x-request-id"
#: Idempotency key for creates (CreateMessage's ``request_id`` field alike).
IDEMPOTENCY_KEY = "idempotency-key"
#: ``no-cache`` (fetch fresh, store) or ``no-store`` (neither read nor write the cache).
CACHE_CONTROL = "cache-control"
#: The consumer's timeout in seconds; gRPC consumers usually send a deadline instead.
TIMEOUT = "x-gateway-timeout"
#: The REST face's required ``OpenAI-Beta`` header, and the value the v1 contract requires.
OPENAI_BETA = "openai-beta"
BETA_VALUE = "assistants=v1"

#: W3C Trace Context (tracing on): continued by the call's span, passed on upstream as the
#: upstream attempt's own. A repeated ``traceparent`` is ambiguous: the call starts a new trace.
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
#: The longest tracestate the W3C allows (32 members); a longer one is dropped whole.
MAX_TRACESTATE_CHARS = 512

#: Longest request id and cache-control value kept; longer ones are cut.
MAX_VALUE_CHARS = 128

# -- written to the consumer ---------------------------------------------------------------------

#: The gateway's own id for the call.
GATEWAY_REQUEST_ID = "x-gateway-request-id"
#: ``hit``, ``miss`` or ``bypass``, and the age in seconds of a cached answer.
X_CACHE = "x-cache"
AGE = "age"
#: Where a failed stream resumes: the last id it delivered (forward walks: after=<it>; backward
#: walks: before=<it>). gRPC trailing metadata; the REST face's last NDJSON line says the same
#: as ``resume_after`` / ``resume_before``.
RESUME_AFTER = "resume-after"
RESUME_BEFORE = "resume-before"
#: Client-side retry pushback (gRFC A6) when the gateway knows how long to wait.
RETRY_PUSHBACK = "grpc-retry-pushback-ms"
#: The REST face's retry hint in milliseconds (the OpenAI SDK reads it).
RETRY_AFTER_MS = "retry-after-ms"

# -- to and from the upstream --------------------------------------------------------------------

#: Upstream response headers worth handing to the consumer (the rest are the edge's business).
FORWARDED_PREFIXES = ("x-ratelimit-",)
FORWARDED = frozenset(
    {"x-request-id", "openai-processing-ms", "openai-version", "openai-organization",
     "retry-after", "retry-after-ms", "x-should-retry"}
)

#: Sent on every upstream request (before the request's own headers).
USER_AGENT = "messages-gateway/0.1"
UPSTREAM_BASE_HEADERS: tuple[tuple[str, str], ...] = (
    ("accept", "application/json"),
    # What httpx's ``Response.aiter_bytes`` decodes without optional packages.
    ("accept-encoding", "gzip, deflate"),
    ("user-agent", USER_AGENT),
)

#: Headers a consumer may never set on the upstream request, whatever the configuration says.
FORBIDDEN_EXTRA = frozenset(
    {"authorization", "openai-organization", "openai-project", "host", "openai-beta",
     "content-length", "content-type", "transfer-encoding", "connection", "cookie"}
)
#: Longest value of a header a consumer passes through to the upstream.
MAX_EXTRA_HEADER_CHARS = 8192


def forwardable(name: str) -> bool:
    """Whether an upstream response header goes back to the consumer."""
    lower = name.lower()
    return lower in FORWARDED or lower.startswith(FORWARDED_PREFIXES)
