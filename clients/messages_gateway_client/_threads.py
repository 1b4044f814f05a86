"""``client.threads``: create (with initial messages), retrieve, update, delete, as the SDK's
``client.beta.threads`` does; the blocking and the asyncio flavour share the request builders."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from messages_gateway_client import _requests as build
from messages_gateway_client._channel import NOT_GIVEN
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb

#: One initial message: ``{"role": "user", "content": "…", "file_ids": [...], "metadata": {}}``.
ThreadMessage = Mapping[str, Any]


def create_request(messages: Sequence[ThreadMessage], metadata: Mapping[str, str] | None,
                   opts: pb.RequestOptions | None) -> pb.CreateThreadRequest:
    request = pb.CreateThreadRequest(metadata=build.metadata_message(metadata), options=opts)
    for message in messages:
        request.messages.add(
            role=build.role_value(message["role"]), content=message["content"],
            file_ids=list(message.get("file_ids", ())),
            metadata=build.metadata_message(message.get("metadata")))
    return request


class _Unary(Protocol):
    def _unary(self, rpc: str, request: Any, timeout: object) -> Any: ...


class Threads:
    """The blocking client's threads."""

    def __init__(self, client: _Unary) -> None:
        self._client = client

    def create(self, *, messages: Sequence[ThreadMessage] = (),
               metadata: Mapping[str, str] | None = None,
               extra_query: Mapping[str, str] | None = None,
               extra_headers: Mapping[str, str] | None = None,
               timeout: float | None = NOT_GIVEN) -> pb.Thread:
        """Create a thread. Never retried automatically (a retry could make two)."""
        request = create_request(messages, metadata,
                                 build.options(extra_query, None, extra_headers))
        return self._client._unary("CreateThread", request, timeout)  # type: ignore[no-any-return]

    def retrieve(self, thread_id: str, *, extra_query: Mapping[str, str] | None = None,
                 extra_headers: Mapping[str, str] | None = None,
                 timeout: float | None = NOT_GIVEN) -> pb.Thread:
        request = pb.GetThreadRequest(thread_id=thread_id,
                                      options=build.options(extra_query, None, extra_headers))
        return self._client._unary("GetThread", request, timeout)  # type: ignore[no-any-return]

    def update(self, thread_id: str, *, metadata: Mapping[str, str] | None = None,
               extra_query: Mapping[str, str] | None = None,
               extra_headers: Mapping[str, str] | None = None,
               timeout: float | None = NOT_GIVEN) -> pb.Thread:
        request = pb.UpdateThreadRequest(thread_id=thread_id,
                                         metadata=build.metadata_message(metadata),
                                         options=build.options(extra_query, None, extra_headers))
        return self._client._unary("UpdateThread", request, timeout)  # type: ignore[no-any-return]

    def delete(self, thread_id: str, *, extra_query: Mapping[str, str] | None = None,
               extra_headers: Mapping[str, str] | None = None,
               timeout: float | None = NOT_GIVEN) -> pb.DeleteThreadResponse:
        request = pb.DeleteThreadRequest(thread_id=thread_id,
                                         options=build.options(extra_query, None, extra_headers))
        return self._client._unary("DeleteThread", request, timeout)  # type: ignore[no-any-return]


class AsyncThreads(Threads):
    """The asyncio client's threads: the same methods, awaited (its ``_unary`` is a
    coroutine function, so each method returns the awaitable)."""


__all__ = ["AsyncThreads", "ThreadMessage", "Threads"]
