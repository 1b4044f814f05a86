"""``with_raw_response``: the parsed result together with the call's response metadata.

The wrappers keep each method's signature (ParamSpec), and ask the method for its metadata
through a context variable, so every method is written once and both shapes stay in step.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Generic, ParamSpec, TypeVar

from clients._errors import GATEWAY_REQUEST_ID_KEY

P = ParamSpec("P")
T = TypeVar("T")

MetadataPairs = Sequence[tuple[str, str | bytes]]

#: Set while a raw wrapper runs: the method appends (initial, trailing) metadata to it.
_CAPTURE: ContextVar[list[tuple[MetadataPairs, MetadataPairs]] | None] = ContextVar(
    "messages_gateway_raw_capture", default=None
)


def capture(initial: MetadataPairs | None, trailing: MetadataPairs | None) -> None:
    """Called by the clients after each unary call; free when no raw wrapper is waiting."""
    sink = _CAPTURE.get()
    if sink is not None:
        sink.append((tuple(initial or ()), tuple(trailing or ())))


def capturing() -> bool:
    return _CAPTURE.get() is not None


def _as_dict(pairs: MetadataPairs) -> dict[str, str]:
    return {k: v for k, v in pairs if isinstance(v, str)}


class RawResponse(Generic[T]):
    """A call's response metadata (``headers``: the upstream's ``x-request-id``,
    ``openai-processing-ms``, ``x-ratelimit-*``, the gateway's ``x-gateway-request-id``...) and
    its parsed result (``parse()``)."""

    def __init__(self, parsed: T, initial: MetadataPairs, trailing: MetadataPairs) -> None:
        self._parsed = parsed
        self.trailers: dict[str, str] = _as_dict(trailing)
        # The gateway sends its response metadata as trailers (one grpc batch with the status);
        # headers are initial and trailing metadata together, as HTTP would show them.
        self.headers: dict[str, str] = {**_as_dict(initial), **self.trailers}

    def parse(self) -> T:
        return self._parsed

    @property
    def request_id(self) -> str | None:
        """The upstream's ``x-request-id`` (what its support asks for)."""
        return self.headers.get("x-request-id")

    @property
    def gateway_request_id(self) -> str | None:
        return self.headers.get(GATEWAY_REQUEST_ID_KEY)

    def __repr__(self) -> str:
        return f"RawResponse({type(self._parsed).__name__}, headers={sorted(self.headers)})"


def to_raw(method: Callable[P, T]) -> Callable[P, RawResponse[T]]:
    @functools.wraps(method)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> RawResponse[T]:
        sink: list[tuple[MetadataPairs, MetadataPairs]] = []
        token = _CAPTURE.set(sink)
        try:
            parsed = method(*args, **kwargs)
        finally:
            _CAPTURE.reset(token)
        return RawResponse(parsed, *sink[-1])

    return wrapped


def to_async_raw(method: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[RawResponse[T]]]:
    @functools.wraps(method)
    async def wrapped(*args: P.args, **kwargs: P.kwargs) -> RawResponse[T]:
        sink: list[tuple[MetadataPairs, MetadataPairs]] = []
        token = _CAPTURE.set(sink)
        try:
            parsed = await method(*args, **kwargs)
        finally:
            _CAPTURE.reset(token)
        return RawResponse(parsed, *sink[-1])

    return wrapped
