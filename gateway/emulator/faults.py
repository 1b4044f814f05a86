"""Fault rules: which request gets which misbehaviour (docs/reliability.md, "Tests and soak").

A rule targets one operation id (the specs' operationIds: ``createThread``, ``getThread``,
``modifyThread``, ``deleteThread``, ``createMessage``, ``listMessages``, ...; ``"*"`` = every
operation) and fires either a fixed number of ``times`` or with a ``probability`` drawn from a
seeded RNG (so a flaky run can be replayed), or both. Kinds and their parameters (defaults):

==================  ==================================================================
``latency``         ``seconds`` (0.1) added before the request is handled; stacks
``status``          ``status`` (500), ``retry_after`` / ``retry_after_ms`` (header
                    values, sent verbatim so tests can send garbage), ``should_retry``
                    (bool -> ``x-should-retry``), ``headers`` (extra), ``message``,
                    ``type``, ``code`` (envelope; defaults follow the status),
                    ``run_handler`` (False; True = the operation is applied first, e.g.
                    a create that succeeded but whose answer was lost)
``reset``           TCP RST before any response byte; ``run_handler`` (False)
``reset_mid_body``  headers (true ``Content-Length``) + ``fraction`` (0.4) of the body,
                    then RST
``slow_headers``    ``seconds`` (1.0) of silence after handling, before the status line
``slow_body``       headers, then the body in ``chunk_size`` (1) byte pieces every
                    ``delay`` (0.1) seconds
``truncated_json``  a complete HTTP answer whose JSON body is cut at ``fraction`` (0.5)
``non_json``        ``status`` (200) with ``content_type`` (``text/html; charset=utf-8``)
                    and ``body`` (text, or bytes sent as they are: invalid UTF-8)
``huge_body``       ``size`` bytes (10 MiB) of syntactically plausible JSON, streamed;
                    ``chunked`` (False: a true ``Content-Length``), ``content_length``
                    (None; a larger value is a lying header, the connection then closes;
                    a smaller one is a lying header too: the whole body follows it),
                    ``gzip`` (False; True: the body is sent gzip-compressed with
                    ``Content-Encoding: gzip``, ``size`` counting the decoded bytes, so a
                    large size is a compression bomb: ~1 KiB on the wire per MiB)
``redirect``        ``status`` (302) with ``location`` (default: same path and query on
                    ``http://127.0.0.2:<port>``, i.e. another host)
``stale_cursor``    list operations only: cursors are ignored and the first page comes
                    back with ``has_more: true``, so pagination never advances
``endless_pages``   ``listMessages`` only: the page has fresh message ids and ``has_more:
                    true``, so the cursor advances but the list never ends; a cursor
                    taken from such a page keeps the list endless without a rule
==================  ==================================================================

``latency`` rules stack with each other and are *added* before the request is handled. The
per-operation latency setting (:meth:`Faults.set_latency`, the benchmarks' "20 ms per list page")
is the upstream's *response time* instead, stacked after them: the operation runs when handling
starts and the answer leaves no earlier than that many seconds later, so the emulator's own work (a
page of 100 messages takes a few milliseconds) happens inside the stated latency, as a real
service's does, and a 20 ms page is a 20 ms page. Of the other rules the first matching one that
fires wins and later ones are not consulted (their counts and RNG draws are not consumed).
"""

from __future__ import annotations

import itertools
import random
import threading
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FaultDecision",
    "FaultRule",
    "Faults",
    "KINDS",
    "LIST_OPERATIONS",
    "OPERATIONS",
]

OPERATIONS = (
    "createThread",
    "getThread",
    "modifyThread",
    "deleteThread",
    "createMessage",
    "listMessages",
    "getMessage",
    "modifyMessage",
    "listMessageFiles",
    "getMessageFile",
)
LIST_OPERATIONS = frozenset({"listMessages", "listMessageFiles"})

_DEFAULTS: dict[str, dict[str, Any]] = {
    "latency": {"seconds": 0.1},
    "status": {
        "status": 500,
        "retry_after": None,
        "retry_after_ms": None,
        "should_retry": None,
        "headers": {},
        "message": None,
        "type": None,
        "code": None,
        "run_handler": False,
    },
    "reset": {"run_handler": False},
    "reset_mid_body": {"fraction": 0.4},
    "slow_headers": {"seconds": 1.0},
    "slow_body": {"chunk_size": 1, "delay": 0.1},
    "truncated_json": {"fraction": 0.5},
    "non_json": {
        "status": 200,
        "content_type": "text/html; charset=utf-8",
        "body": "<html><head><title>502 Bad Gateway</title></head>"
        "<body><center><h1>502 Bad Gateway</h1></center><hr><center>cloudflare</center></body></html>",
    },
    "huge_body": {"size": 10 * 1024 * 1024, "chunked": False, "content_length": None,
                  "gzip": False},
    "redirect": {"status": 302, "location": None},
    "stale_cursor": {},
    "endless_pages": {},
}
KINDS = frozenset(_DEFAULTS)


@dataclass
class FaultRule:
    """One rule. ``times`` is the number of firings left (None = unlimited)."""

    id: int
    operation: str
    kind: str
    params: dict[str, Any]
    times: int | None = None
    probability: float = 1.0
    fired: int = 0

    def matches(self, operation: str | None) -> bool:
        if self.kind == "stale_cursor" and operation not in LIST_OPERATIONS:
            return False
        if self.kind == "endless_pages" and operation != "listMessages":
            return False
        return self.operation == "*" or self.operation == operation

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "operation": self.operation,
            "kind": self.kind,
            "times": self.times,
            "probability": self.probability,
            "fired": self.fired,
            **self.params,
        }


@dataclass(frozen=True)
class FaultDecision:
    """What to do to one request: added latency, response time and at most one other fault."""

    #: Seconds of ``latency`` rules, slept before the request is handled.
    latency: float = 0.0
    #: The per-operation response time: the answer leaves no earlier than this after handling
    #: starts (after ``latency``).
    response_time: float = 0.0
    fault: FaultRule | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str | None:
        return self.fault.kind if self.fault else None


class Faults:
    """The rule set. Thread-safe, so sync tests can arm faults while the loop thread serves."""

    def __init__(self, seed: int | None = 0) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._ids = itertools.count(1)
        self._rules: list[FaultRule] = []
        self._latency: dict[str, float] = {}

    def seed(self, seed: int | None) -> None:
        """Re-seed the probability RNG (replay a flaky run)."""
        with self._lock:
            self._rng.seed(seed)

    def add(
        self,
        operation: str,
        kind: str,
        *,
        times: int | None = None,
        probability: float = 1.0,
        **params: Any,
    ) -> FaultRule:
        """Arm a rule; unknown operation, kind or parameter is a ValueError (a typo in a test
        must not silently leave the fault unarmed)."""
        if operation != "*" and operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}; one of {OPERATIONS} or '*'")
        if kind not in _DEFAULTS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {sorted(KINDS)}")
        if kind == "stale_cursor" and operation not in LIST_OPERATIONS | {"*"}:
            raise ValueError("stale_cursor applies to listMessages/listMessageFiles only")
        if kind == "endless_pages" and operation not in ("listMessages", "*"):
            raise ValueError("endless_pages applies to listMessages only")
        unknown = set(params) - set(_DEFAULTS[kind])
        if unknown:
            raise ValueError(f"unknown parameter(s) {sorted(unknown)} for {kind!r}")
        if times is not None and times < 0:
            raise ValueError("times must be >= 0")
        if not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        merged = {**_DEFAULTS[kind], **params}
        fraction = merged.get("fraction")
        if fraction is not None and not 0.0 <= float(fraction) <= 1.0:
            raise ValueError("fraction must be within [0, 1]")
        if kind == "huge_body" and merged["content_length"] is not None and (
            merged["chunked"] or int(merged["content_length"]) < 0
        ):
            raise ValueError("content_length must be >= 0, and not with chunked")
        if kind == "slow_body" and int(merged["chunk_size"]) < 1:
            raise ValueError("chunk_size must be >= 1")
        with self._lock:
            rule = FaultRule(next(self._ids), operation, kind, merged, times, float(probability))
            self._rules.append(rule)
            return rule

    def remove(self, rule_id: int) -> bool:
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if r.id != rule_id]
            return len(self._rules) != before

    def clear(self, *, latency: bool = True) -> None:
        """Drop every rule and, unless ``latency=False``, the per-operation latency settings."""
        with self._lock:
            self._rules.clear()
            if latency:
                self._latency.clear()

    @property
    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def set_latency(self, operation: str, seconds: float) -> None:
        """Fixed response time for an operation (``"*"`` = all), e.g. 0.02 for every list page:
        the answer leaves ``seconds`` after handling starts, the emulator's own work included."""
        if operation != "*" and operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}")
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        with self._lock:
            if seconds:
                self._latency[operation] = float(seconds)
            else:
                self._latency.pop(operation, None)

    @property
    def latency(self) -> dict[str, float]:
        with self._lock:
            return dict(self._latency)

    def decide(self, operation: str | None) -> FaultDecision:
        """Consume the firings for one request and say what to do to it."""
        with self._lock:
            response_time = self._latency.get("*", 0.0)
            if operation is not None:
                response_time += self._latency.get(operation, 0.0)
            delay = 0.0
            chosen: FaultRule | None = None
            for rule in self._rules:
                if not rule.matches(operation):
                    continue
                if rule.kind != "latency" and chosen is not None:
                    continue
                if rule.times is not None and rule.times <= 0:
                    continue
                if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                    continue
                if rule.times is not None:
                    rule.times -= 1
                rule.fired += 1
                if rule.kind == "latency":
                    delay += float(rule.params["seconds"])
                else:
                    chosen = rule
            params = dict(chosen.params) if chosen else {}
            return FaultDecision(latency=delay, response_time=response_time, fault=chosen,
                                 params=params)
