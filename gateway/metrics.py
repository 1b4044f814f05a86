"""Prometheus metrics: every series the gateway exports, defined once.

Labels never carry ids, keys or anything a consumer controls beyond the method name, so the
series count stays bounded and no secret can leak into a label.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

CALLS = Counter("gateway_calls_total", "Consumer calls by face, method and status code.",
                ("face", "method", "code"), registry=REGISTRY)
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
                       "Cache outcomes: hit, miss, bypass, eviction, singleflight_join, error.",
                       ("backend", "event"), registry=REGISTRY)
CACHE_BYTES = Gauge("gateway_cache_bytes", "Bytes held by the in-process cache (every worker's).",
                    registry=REGISTRY, multiprocess_mode="livesum")
AUTH_FAILURES = Counter("gateway_auth_failures_total", "Rejected consumer authentications.",
                        ("reason",), registry=REGISTRY)
RATE_LIMITED = Counter("gateway_rate_limited_total", "Calls refused by a consumer limit.",
                       ("limit",), registry=REGISTRY)
UPSTREAM_RETRIES_DENIED = Counter("gateway_upstream_retries_denied_total",
                                  "Retryable upstream failures not retried, by why "
                                  "(budget, deadline, attempts, retry_after_too_long).",
                                  ("why",), registry=REGISTRY)
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
