"""``with_raw_response``: the parsed result together with the call's response metadata.

The wrappers keep each method's signature (ParamSpec), and ask the method for its metadata
through a context variable, so every method is written once and both shapes stay in step.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Generic, ParamSpec, TypeVar

from messages_gateway_client._errors import GATEWAY_REQUEST_ID_KEY

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


class RawStream(Generic[T]):
    """``with_raw_response.list(...)``: the stream (``parse()``) and, once it has been iterated
    to its end, the response metadata of the call that finished it (``headers``: the first
    page's upstream headers and the gateway's request id). gRPC sends them as trailers, after
    the last page, so ``headers`` before the end raises; a stream left early has none."""

    def __init__(self, stream: T) -> None:
        self._stream = stream

    @classmethod
    def wrap(cls, method: Callable[P, T]) -> Callable[P, RawStream[T]]:
        @functools.wraps(method)
        def wrapped(*args: P.args, **kwargs: P.kwargs) -> RawStream[T]:
            return cls(method(*args, **kwargs))

        return wrapped

    def parse(self) -> T:
        return self._stream

    def _response(self) -> RawResponse[T]:
        metadata = getattr(self._stream, "response_metadata", None)
        if metadata is None:
            raise RuntimeError("a stream's headers arrive with its end (gRPC trailers): "
                               "iterate parse() to the end first")
        return RawResponse(self._stream, *metadata)

    @property
    def headers(self) -> dict[str, str]:
        return self._response().headers

    @property
    def request_id(self) -> str | None:
        return self._response().request_id

    @property
    def gateway_request_id(self) -> str | None:
        return self._response().gateway_request_id


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
