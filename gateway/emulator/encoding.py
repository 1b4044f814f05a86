"""JSON encoding of answers, byte-identical to ``json.dumps`` but fast for list pages.

The live API sent JSON indented by two spaces. ``json.dumps(indent=2)`` falls back to the
pure-Python encoder (about 2 ms for a page of 100 messages), which would make the emulator, not
the gateway, the bottleneck of the streaming benchmarks. Store objects are never mutated after
they are handed out (a modify replaces the dict), so each object's encoding is computed once and
cached by id, checked by identity; a page is then a join of cached fragments. The output equals
``json.dumps(obj, indent=2, ensure_ascii=False)`` (or the compact form) exactly; the tests check it.
"""

from __future__ import annotations

import json
import threading
from typing import Any

__all__ = ["Encoder"]

_LIST_KEYS = ("object", "data", "first_id", "last_id", "has_more")


class Encoder:
    """Encodes answers; ``pretty`` selects the live API's two-space indentation."""

    def __init__(self, pretty: bool = True, max_cached: int = 200_000) -> None:
        self.pretty = pretty
        self._max_cached = max_cached
        self._lock = threading.Lock()
        # object id -> (the object, its encoding as an element of a list's "data")
        self._cache: dict[str, tuple[dict[str, Any], bytes]] = {}

    def _dumps(self, obj: Any) -> str:
        if self.pretty:
            return json.dumps(obj, indent=2, ensure_ascii=False)
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)

    def _element(self, obj: dict[str, Any]) -> bytes:
        """``obj`` encoded at the nesting depth of a list envelope's ``data`` items."""
        key = obj.get("id")
        if not isinstance(key, str):
            return self._encode_element(obj)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[0] is obj:
            return cached[1]
        encoded = self._encode_element(obj)
        with self._lock:
            if len(self._cache) >= self._max_cached:
                self._cache.clear()  # amortised O(1); a soak test must not grow without bound
            self._cache[key] = (obj, encoded)
        return encoded

    def _encode_element(self, obj: dict[str, Any]) -> bytes:
        text = self._dumps(obj)
        if self.pretty:
            # JSON strings never contain a raw newline, so re-indenting line by line is safe.
            text = "\n".join("    " + line for line in text.split("\n"))
        return text.encode()

    def encode(self, payload: Any) -> bytes:
        """Encode any answer; list envelopes take the cached fast path."""
        if not (isinstance(payload, dict) and tuple(payload) == _LIST_KEYS and payload["data"]):
            return self._dumps(payload).encode()
        elements = [self._element(item) for item in payload["data"]]
        tail = {k: payload[k] for k in _LIST_KEYS[2:]}
        head_object = json.dumps(payload["object"], ensure_ascii=False).encode()
        if self.pretty:
            rest = ",\n".join(
                f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in tail.items()
            )
            return b"".join(
                (
                    b'{\n  "object": ',
                    head_object,
                    b',\n  "data": [\n',
                    b",\n".join(elements),
                    b"\n  ],\n",
                    rest.encode(),
                    b"\n}",
                )
            )
        rest = ",".join(f"{json.dumps(k)}:{json.dumps(v, ensure_ascii=False)}" for k, v in tail.items())
        return b"".join(
            (b'{"object":', head_object, b',"data":[', b",".join(elements), b"],", rest.encode(), b"}")
        )
