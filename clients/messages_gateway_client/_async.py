"""The asyncio client: ``AsyncMessagesGatewayClient(target)``, the same surface as the blocking
one with ``await`` (``async for`` over ``list()``). Build it inside the running event loop: a
grpc.aio channel belongs to the loop it was made in."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from functools import cached_property
from typing import Any, Generic, TypeVar

import grpc

from messages_gateway_client import _requests as build
from messages_gateway_client._channel import NOT_GIVEN, ClientConfig
from messages_gateway_client._errors import APITimeoutError, error_from_rpc
from messages_gateway_client._raw import (MetadataPairs, RawResponse, RawStream, capture,
                                         capturing, to_async_raw)
from messages_gateway_client._pages import AsyncPage
from messages_gateway_client._resume import Cursor
from messages_gateway_client._retry import Attempts
from messages_gateway_client._threads import AsyncThreads
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc

PageT = TypeVar("PageT", pb.MessagePage, pb.MessageFilePage)
ItemT = TypeVar("ItemT", pb.Message, pb.MessageFile)


class AsyncMessagesGatewayClient:
    """One channel to the gateway, with the key, TLS and default timeout set once.

    ``timeout`` is seconds per call (``None``: no deadline); every method also takes its own.
    TLS is on when ``tls=True`` (system roots) or any of the PEM byte strings is given
    (``root_certificates``; ``private_key`` + ``certificate_chain`` for a client certificate).
    """

    def __init__(
        self,
        target: str,
        *,
        api_key: str | None = None,
        timeout: float | None = 60.0,
        tls: bool = False,
        root_certificates: bytes | None = None,
        private_key: bytes | None = None,
        certificate_chain: bytes | None = None,
        max_resumes: int = 10,
        max_retries: int = 3,
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self._config = ClientConfig(
            target=target, api_key=api_key, timeout=timeout, tls=tls,
            root_certificates=root_certificates, private_key=private_key,
            certificate_chain=certificate_chain, max_resumes=max_resumes,
            max_retries=max_retries, channel_options=tuple(channel_options),
        )
        credentials = self._config.credentials()
        if credentials is None:
            self._channel = grpc.aio.insecure_channel(target, options=self._config.options())
        else:
            self._channel = grpc.aio.secure_channel(target, credentials,
                                                    options=self._config.options())
        self._stub = pb_grpc.MessagesServiceStub(self._channel)
        self._threads_stub = pb_grpc.ThreadsServiceStub(self._channel)
        # Built once: given a tuple, grpc.aio builds a Metadata from it on every call (~3 % of
        # a cached GetMessage's CPU, docs/benchmarks.md); it only reads the object it is given.
        self._metadata = grpc.aio.Metadata(*self._config.metadata())
        self.messages = AsyncMessages(self)
        self.threads = AsyncThreads(self)

    def __repr__(self) -> str:
        return f"AsyncMessagesGatewayClient({self._config!r})"

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncMessagesGatewayClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def with_options(self, *, timeout: float | None | object = NOT_GIVEN,
                     max_retries: int | object = NOT_GIVEN,
                     max_resumes: int | object = NOT_GIVEN) -> AsyncMessagesGatewayClient:
        """A client with other defaults over the same channel, as the SDK's ``with_options``:
        ``client.with_options(timeout=5, max_retries=0).messages.retrieve(...)``. Closing either
        closes the channel both use."""
        clone = copy.copy(self)
        clone._config = self._config.with_options(timeout=timeout, max_retries=max_retries,
                                                  max_resumes=max_resumes)
        clone.messages = AsyncMessages(clone)
        clone.threads = AsyncThreads(clone)
        return clone

    async def _unary(self, rpc: str, request: Any, timeout: object) -> Any:
        stub = self._threads_stub if rpc.endswith("Thread") else self._stub
        method = getattr(stub, rpc)
        config = self._config
        attempts = Attempts(rpc, config.call_timeout(timeout), config.max_retries)
        while True:
            call = method(request, timeout=attempts.remaining(), metadata=self._metadata)
            try:
                response = await call
                break
            except grpc.aio.AioRpcError as err:
                error = error_from_rpc(err)
                pause = attempts.pause(error)
                if pause is None:
                    raise error from err
            await asyncio.sleep(pause)
        if capturing():
            capture(await call.initial_metadata(), await call.trailing_metadata())
        return response


class AsyncStream(Generic[PageT, ItemT]):
    """A whole list over one server stream: iterate for items, ``pages()`` for pages.

    Broken streams resume by themselves from the last page received (see ``_resume``);
    ``resumes`` counts how often. The timeout covers the whole iteration, resumes included.
    A stream is iterated once; call ``list()`` again for a fresh one.
    """

    def __init__(self, client: AsyncMessagesGatewayClient, rpc: str, request: Any,
                 timeout: object) -> None:
        self._client = client
        self._rpc = rpc
        self._cursor: Cursor[Any] = Cursor(request)
        self._timeout = timeout
        self._started = False
        #: The response metadata (initial and trailing) of the call that ended the stream; None
        #: until the stream has been iterated to its end (gRPC sends them as trailers).
        self.response_metadata: tuple[MetadataPairs, MetadataPairs] | None = None

    @property
    def resumes(self) -> int:
        return self._cursor.resumes

    async def __aiter__(self) -> AsyncIterator[ItemT]:
        async for page in self.pages():
            for item in page.data:
                yield item  # type: ignore[misc]

    def pages(self) -> AsyncIterator[PageT]:
        if self._started:
            raise RuntimeError("a stream is iterated once; call list() again to start over")
        self._started = True
        return self._pages()

    async def _pages(self) -> AsyncIterator[PageT]:
        config = self._client._config
        timeout = config.call_timeout(self._timeout)
        attempts = Attempts(self._rpc, timeout, config.max_retries)
        deadline = attempts.deadline
        method = getattr(self._client._stub, self._rpc)
        cursor = self._cursor
        while (request := cursor.start()) is not None:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise APITimeoutError("the stream's deadline passed before it could resume")
            call = method(request, timeout=remaining, metadata=self._client._metadata)
            try:
                async for page in call:
                    page.page_index = cursor.advance(page.data, page.resume_after)
                    yield page
                self.response_metadata = (await call.initial_metadata(),
                                          await call.trailing_metadata())
                return
            except grpc.aio.AioRpcError as err:
                if cursor.progressed:  # a page arrived: resume after it
                    if not cursor.can_resume(err.code(), config.max_resumes):
                        raise error_from_rpc(err) from err
                    pause = cursor.backoff()
                    if deadline is not None:
                        pause = min(pause, max(0.0, deadline - time.monotonic()))
                else:  # nothing arrived: the same request again, as for a unary call
                    error = error_from_rpc(err)
                    retry = attempts.pause(error)
                    if retry is None:
                        raise error from err
                    pause = retry
                await asyncio.sleep(pause)
            finally:
                call.cancel()


class AsyncMessages:
    """``client.messages``: the thread messages API."""

    def __init__(self, client: AsyncMessagesGatewayClient) -> None:
        self._client = client
        self.files = AsyncFiles(client)

    @cached_property
    def with_raw_response(self) -> AsyncMessagesWithRawResponse:
        return AsyncMessagesWithRawResponse(self)

    async def create(
        self,
        thread_id: str,
        *,
        content: str,
        role: build.Role,
        file_ids: Sequence[str] = (),
        metadata: Mapping[str, str] | None = None,
        request_id: str = "",
        extra_query: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: float | None = NOT_GIVEN,
    ) -> pb.Message:
        """Create a message. Never retried automatically: pass ``request_id`` to retry safely."""
        request = build.create(
            thread_id, content=content, role=role, file_ids=file_ids, metadata=metadata,
            request_id=request_id, opts=build.options(extra_query, extra_body, extra_headers))
        result = await self._client._unary("CreateMessage", request, timeout)
        return result  # type: ignore[no-any-return]

    async def retrieve(
        self,
        message_id: str,
        *,
        thread_id: str,
        extra_query: Mapping[str, str] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: float | None = NOT_GIVEN,
    ) -> pb.Message:
        request = pb.GetMessageRequest(
            thread_id=thread_id, message_id=message_id,
            options=build.options(extra_query, None, extra_headers))
        result = await self._client._unary("GetMessage", request, timeout)
        return result  # type: ignore[no-any-return]

    async def update(
        self,
        message_id: str,
        *,
        thread_id: str,
        metadata: Mapping[str, str] | None = None,
        extra_query: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: float | None = NOT_GIVEN,
    ) -> pb.Message:
        request = pb.UpdateMessageRequest(
            thread_id=thread_id, message_id=message_id,
            metadata=build.metadata_message(metadata),
            options=build.options(extra_query, extra_body, extra_headers))
        result = await self._client._unary("UpdateMessage", request, timeout)
        return result  # type: ignore[no-any-return]

    def list(
        self,
        thread_id: str,
        *,
        limit: int = 0,
        order: build.Order | None = None,
        after: str = "",
        before: str = "",
        run_id: str = "",
        max_items: int = 0,
        extra_query: Mapping[str, str] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: float | None = NOT_GIVEN,
    ) -> AsyncStream[pb.MessagePage, pb.Message]:
        """Every message of the thread (``limit`` is the page size), over StreamMessages."""
        request = build.stream_messages(
            thread_id, limit=limit, order=order, after=after, before=before, run_id=run_id,
            max_items=max_items, opts=build.options(extra_query, None, extra_headers))
        return AsyncStream(self._client, "StreamMessages", request, timeout)

    async def list_page(
        self,
        thread_id: str,
        *,
        limit: int = 0,
        order: build.Order | None = None,
        after: str = "",
        before: str = "",
        run_id: str = "",
        extra_query: Mapping[str, str] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: float | None = NOT_GIVEN,
    ) -> AsyncPage[pb.Message]:
        """One upstream page (ListMessages): ``data``, ``has_more``, ``get_next_page()``."""
        request = build.list_messages(
            thread_id, limit=limit, order=order, after=after, before=before, run_id=run_id,
            opts=build.options(extra_query, None, extra_headers))
        result = await self._client._unary("ListMessages", request, timeout)
        return AsyncPage(result, dict(thread_id=thread_id, limit=limit, order=order, after=after,
                              before=before, run_id=run_id, extra_query=extra_query,
                              extra_headers=extra_headers, timeout=timeout), self.list_page)


class AsyncFiles:
    """``client.messages.files``: the files attached to a message."""

    def __init__(self, client: AsyncMessagesGatewayClient) -> None:
        self._client = client

    @cached_property
    def with_raw_response(self) -> AsyncFilesWithRawResponse:
        return AsyncFilesWithRawResponse(self)

    async def retrieve(
        self,
        file_id: str,
        *,
        thread_id: str,
        message_id: str,
        extra_query: Mapping[str, str] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: float | None = NOT_GIVEN,
    ) -> pb.MessageFile:
        request = pb.GetMessageFileRequest(
            thread_id=thread_id, message_id=message_id, file_id=file_id,
            options=build.options(extra_query, None, extra_headers))
        result = await self._client._unary("GetMessageFile", request, timeout)
        return result  # type: ignore[no-any-return]

    def list(
        self,
        message_id: str,
        *,
        thread_id: str,
        limit: int = 0,
        order: build.Order | None = None,
        after: str = "",
        before: str = "",
        max_items: int = 0,
        extra_query: Mapping[str, str] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: float | None = NOT_GIVEN,
    ) -> AsyncStream[pb.MessageFilePage, pb.MessageFile]:
        request = build.stream_files(
            thread_id, message_id, limit=limit, order=order, after=after, before=before,
            max_items=max_items, opts=build.options(extra_query, None, extra_headers))
        return AsyncStream(self._client, "StreamMessageFiles", request, timeout)

    async def list_page(
        self,
        message_id: str,
        *,
        thread_id: str,
        limit: int = 0,
        order: build.Order | None = None,
        after: str = "",
        before: str = "",
        extra_query: Mapping[str, str] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: float | None = NOT_GIVEN,
    ) -> AsyncPage[pb.MessageFile]:
        request = build.list_files(
            thread_id, message_id, limit=limit, order=order, after=after, before=before,
            opts=build.options(extra_query, None, extra_headers))
        result = await self._client._unary("ListMessageFiles", request, timeout)
        return AsyncPage(result, dict(message_id=message_id, thread_id=thread_id, limit=limit,
                              order=order, after=after, before=before, extra_query=extra_query,
                              extra_headers=extra_headers, timeout=timeout), self.list_page)


class AsyncMessagesWithRawResponse:
    """The same methods, returning ``RawResponse`` (``.headers``, ``.parse()``)."""

    def __init__(self, messages: AsyncMessages) -> None:
        self.create = to_async_raw(messages.create)
        self.retrieve = to_async_raw(messages.retrieve)
        self.update = to_async_raw(messages.update)
        self.list_page = to_async_raw(messages.list_page)
        self.list = RawStream.wrap(messages.list)


class AsyncFilesWithRawResponse:
    def __init__(self, files: AsyncFiles) -> None:
        self.retrieve = to_async_raw(files.retrieve)
        self.list_page = to_async_raw(files.list_page)
        self.list = RawStream.wrap(files.list)


__all__ = ["AsyncFiles", "AsyncMessages", "AsyncMessagesGatewayClient", "AsyncStream",
           "RawResponse"]
