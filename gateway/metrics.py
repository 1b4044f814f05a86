"""Prometheus metrics: every series the gateway exports, defined once (docs/metrics.md).

Labels never carry ids, keys or anything a consumer controls beyond the method name, so the
series count stays bounded and no secret can leak into a label. The ``consumer`` label is a
consumer *name* from the credentials store (chosen by the operator), one of at most
``CONSUMER_LABEL_CAP`` names; a consumer past the cap is ``other``, a call without one
``anonymous``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

from gateway import native_heap

REGISTRY = CollectorRegistry(auto_describe=True)
# The process's own series (CPU, memory, file descriptors, GC, Python version), from the
# client library's collectors: process_*, python_gc_*, python_info.
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_collector)

#: Consumers with a label of their own; the rest are ``other``.
CONSUMER_LABEL_CAP = 100
ANONYMOUS = "anonymous"
OTHER = "other"
_labelled: frozenset[str] = frozenset()


_on_change: list[Callable[[], None]] = []


def set_consumer_names(names: Iterable[str]) -> None:
    """The store's consumer names (at each load): the first ``CONSUMER_LABEL_CAP`` in sorted
    order get a label of their own, so the choice is the same on every replica."""
    global _labelled
    labelled = frozenset(sorted(names)[:CONSUMER_LABEL_CAP])
    if labelled != _labelled:
        _labelled = labelled
        for hook in _on_change:
            hook()


def on_consumer_names_change(hook: Callable[[], None]) -> None:
    """Call ``hook`` when the labelled names change: a cache of metric children keyed by
    consumer name clears itself, so the hot path never maps a name to its label."""
    _on_change.append(hook)


def consumer_label(consumer: str | None) -> str:
    """The ``consumer`` label of a call: its name, ``anonymous`` or ``other``."""
    if not consumer:
        return ANONYMOUS
    return consumer if consumer in _labelled else OTHER


_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

CALLS = Counter("gateway_calls_total",
                "Consumer calls by face, method, status code, consumer and profile.",
                ("face", "method", "code", "consumer", "profile"), registry=REGISTRY)
CALL_LATENCY = Histogram("gateway_call_duration_seconds", "Consumer call duration.",
                         ("face", "method"), buckets=_LATENCY_BUCKETS, registry=REGISTRY)
UPSTREAM_REQUESTS = Counter("gateway_upstream_requests_total",
                            "Upstream HTTP exchanges by operation and HTTP status (or 'error').",
                            ("operation", "status"), registry=REGISTRY)
UPSTREAM_LATENCY = Histogram("gateway_upstream_duration_seconds", "Upstream exchange duration.",
                             ("operation",), buckets=_LATENCY_BUCKETS, registry=REGISTRY)
UPSTREAM_RETRIES = Counter("gateway_upstream_retries_total", "Upstream retries by reason.",
                           ("reason",), registry=REGISTRY)
# multiprocess_mode: how the supervisor merges the workers' values (gateway/supervisor.py);
# without workers it is ignored.
CIRCUIT_STATE = Gauge("gateway_circuit_open", "1 while the upstream circuit of a profile is open "
                      "(in any worker).", ("profile",), registry=REGISTRY,
                      multiprocess_mode="livemax")
STREAM_ITEMS = Counter("gateway_stream_items_total", "Items sent on server streams.",
                       ("method",), registry=REGISTRY)
STREAM_PAGES = Counter("gateway_stream_pages_total", "Pages sent on server streams.",
                       ("method",), registry=REGISTRY)
CACHE_EVENTS = Counter("gateway_cache_events_total",
                       "Cache events: eviction, singleflight_join, error, invalidation_failed.",
                       ("backend", "event"), registry=REGISTRY)
CACHE_LOOKUPS = Counter("gateway_cache_lookups_total",
                        "Cache look-ups of reads by outcome (hit, miss, bypass), consumer and "
                        "profile.", ("backend", "outcome", "consumer", "profile"),
                        registry=REGISTRY)
CACHE_BYTES = Gauge("gateway_cache_bytes", "Bytes held by the in-process cache (every worker's).",
                    registry=REGISTRY, multiprocess_mode="livesum")
AUTH_FAILURES = Counter("gateway_auth_failures_total", "Rejected consumer authentications.",
                        ("reason",), registry=REGISTRY)
RATE_LIMITED = Counter("gateway_rate_limited_total",
                       "Calls refused by a consumer limit (rate, streams), by consumer and "
                       "profile.", ("limit", "consumer", "profile"), registry=REGISTRY)
STREAMS_OPEN = Gauge("gateway_streams_open", "Server streams open now, by face and method.",
                     ("face", "method"), registry=REGISTRY, multiprocess_mode="livesum")
STREAM_PAGES_IN_FLIGHT = Gauge("gateway_stream_pages_in_flight",
                               "Stream pages being fetched from the upstream now (the one page "
                               "of prefetch included).", registry=REGISTRY,
                               multiprocess_mode="livesum")
RETRY_BUDGET = Gauge("gateway_upstream_retry_budget_tokens",
                     "Retries a profile's retry budget holds now (each retry spends one).",
                     ("profile",), registry=REGISTRY, multiprocess_mode="livesum")
UPSTREAM_RETRIES_DENIED = Counter("gateway_upstream_retries_denied_total",
                                  "Retryable upstream failures not retried, by why "
                                  "(budget, deadline, attempts, retry_after_too_long).",
                                  ("why",), registry=REGISTRY)
# Read at scrape time from the metrics thread (asyncio.all_tasks retries a set changed meanwhile):
# the soak's task-leak gate, and a slow climb in production is a leak.
EVENT_LOOP_TASKS = Gauge("gateway_event_loop_tasks",
                         "asyncio tasks not yet done on the gateway's event loop.",
                         registry=REGISTRY, multiprocess_mode="livesum")
# The process's native heap (gateway/native_heap.py), read at scrape time: a climb that RSS
# hides in the allocator's slack, or blames on it.
NATIVE_HEAP = Gauge("gateway_malloc_in_use_bytes",
                    "Bytes glibc's malloc has allocated and not had back (native code's "
                    "included); 0 without mallinfo2.", registry=REGISTRY,
                    multiprocess_mode="livesum")
NATIVE_HEAP.set_function(lambda: native_heap.in_use() or 0)
ADMISSION_REJECTED = Counter("gateway_admission_rejected_total",
                             "Upstream requests refused because too many were in flight.",
                             registry=REGISTRY)
UPSTREAM_TOLERATED = Counter("gateway_upstream_tolerated_total",
                             "Upstream values outside the schema passed on in a documented form, "
                             "by kind (metadata_value, content_part_type, role).", ("kind",),
                             registry=REGISTRY)
IDEMPOTENT_REPLAYS = Counter("gateway_idempotent_replays_total",
                             "Creates answered from an earlier call with the same key, by how "
                             "(stored, awaited, recovered).", ("how",), registry=REGISTRY)
IDEMPOTENCY_FALLBACKS = Counter("gateway_idempotency_fallbacks_total",
                                "Keyed creates the shared (Redis) idempotency window could not "
                                "serve (answered by the in-process window and the upstream marker "
                                "look-up) or record, by why (redis_error, breaker_open, "
                                "pool_full, finish_failed).", ("why",), registry=REGISTRY)
CALLS_REFUSED = Counter("gateway_calls_refused_total",
                        "gRPC calls refused before they were served, by reason (request_timeout, "
                        "pending_evicted, concurrency, no_request, undecodable_request).",
                        ("reason",), registry=REGISTRY)
UPSTREAM_KEY_MISSING = Gauge("gateway_upstream_key_missing",
                             "1 while a profile has no upstream key (the consumer service is "
                             "NOT_SERVING meanwhile).", ("profile",), registry=REGISTRY,
                             multiprocess_mode="livemax")
HTTP_CONNECTIONS_CLOSED = Counter("gateway_http_connections_closed_total",
                                  "HTTP connections closed by a bound, by reason (header_timeout, "
                                  "body_timeout, evicted, connection_limit, headers_too_large).", ("reason",),
                                  registry=REGISTRY)
HTTP_REQUESTS_REFUSED = Counter("gateway_http_requests_refused_total",
                                "HTTP requests refused at the concurrent request limit.",
                                registry=REGISTRY)
LIMIT_BACKEND_ERRORS = Counter("gateway_limit_backend_errors_total",
                               "Limit checks admitted because the shared limit backend (Redis) "
                               "failed.", registry=REGISTRY)
UPSTREAM_KEY_REJECTED = Counter("gateway_upstream_key_rejected_total",
                                "Upstream answers 401/403: the gateway's own upstream key "
                                "refused (consumers get INTERNAL), by profile.", ("profile",),
                                registry=REGISTRY)
EVENT_LOOP_LAG = Histogram("gateway_event_loop_lag_seconds",
                           "How much later than asked the event loop woke a sleeping task "
                           "(sampled ten times a second; a blocking call shows here).",
                           buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                                    2.5), registry=REGISTRY)
CREDENTIALS_RELOADS = Counter("gateway_credentials_reloads_total", "Credentials store loads.",
                              registry=REGISTRY)
CREDENTIALS_RELOAD_ERRORS = Counter("gateway_credentials_reload_errors_total",
                                    "Credentials store loads refused (the previous snapshot "
                                    "stays).", registry=REGISTRY)
