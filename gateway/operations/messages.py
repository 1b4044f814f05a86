"""The operations both faces call: validate, call the upstream, convert.

Both faces reach these methods through the call pipeline (``gateway.pipeline``), so validation,
caching, credentials and the upstream exchange exist once. Requests arrive as the contract's
protobuf messages with the call's context (``gateway.context.CallContext``: deadline, tenant,
consumer, cache directive, idempotency key, where response headers go); results leave as protobuf
messages.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from gateway import metrics
from gateway import cache as cached
from gateway.cache import ResponseCache, build_cache
from gateway.config import CacheSettings
from gateway.context import CallContext
from gateway.errors import Internal
from gateway.operations import idempotency
from gateway.operations.idempotency import IdempotencyStore, IdempotencyWindow
from gateway.operations.ownership import Ownership
from gateway.operations import validation as check
from gateway.operations.validation import ORDER_NAMES, ROLE_NAMES
from gateway.upstream import wire
from gateway.upstream.client import Upstream
from gateway.upstream.pagination import walk_pages

T = TypeVar("T")
S = TypeVar("S", pb.MessagePage, pb.MessageFilePage)

#: Page size of a stream when the consumer leaves ``limit`` at 0.
STREAM_DEFAULT_LIMIT = 100


def convert(parse: Callable[[Any], T], body: Any) -> T:
    """Upstream JSON → proto; a body that breaks the schema is the upstream's fault."""
    try:
        return parse(body)
    except wire.WireFormatError as exc:
        raise Internal(
            "the upstream returned a response the gateway could not understand",
            reason="UPSTREAM_INVALID_RESPONSE",
        ) from exc


def page_query(
    *, limit: int, order: int, after: str, before: str, run_id: str = ""
) -> dict[str, str]:
    query: dict[str, str] = {}
    if limit:
        query["limit"] = str(limit)
    if ORDER_NAMES[order]:
        query["order"] = ORDER_NAMES[order]  # type: ignore[assignment]
    if after:
        query["after"] = after
    if before:
        query["before"] = before
    if run_id:
        query["run_id"] = run_id
    return query


class MessageOperations:
    """Every messages operation, as the faces see it."""

    def __init__(
        self,
        upstream: Upstream,
        idempotency_store: IdempotencyWindow | None = None,
        cache: ResponseCache | None = None,
        ownership: Ownership | None = None,
    ) -> None:
        self._upstream = upstream
        # ``is None``, not ``or``: a store has a length, so the empty one it starts as is falsy.
        self._idempotency: IdempotencyWindow = (
            idempotency_store if idempotency_store is not None else IdempotencyStore())
        self.allowed_headers = upstream.settings.allowed_extra_headers
        #: Reads go through it, writes invalidate it; in-process with default settings.
        self.cache = cache if cache is not None else build_cache(CacheSettings())
        #: Whose threads are whose; "open" (no checks) unless configured.
        self.ownership = ownership if ownership is not None else Ownership("open")
        self.owned = (self._check_owner if self.ownership.enforced else _anyone)

    async def _check_owner(self, ctx: CallContext, thread_id: str) -> None:
        await self.ownership.check(ctx, thread_id, self.fetch_thread)

    async def fetch_thread(self, ctx: CallContext, thread_id: str) -> Any:
        """The upstream's JSON of one thread (NOT_FOUND when there is none)."""
        return (await self._upstream.request(ctx, "GET", ["threads", thread_id])).body

    async def upstream_call(
        self,
        ctx: CallContext,
        method: str,
        segments: list[str],
        options: pb.RequestOptions,
        *,
        query: Mapping[str, str] | None = None,
        body: dict[str, Any] | None = None,
        idempotent: bool | None = None,
        recover: Callable[[], Awaitable[Any | None]] | None = None,
    ) -> Any:
        """One upstream request with the consumer's pass-through options: ``extra_query`` on
        every method, allow-listed headers (the call's own, then ``extra_headers``). Options are
        validated before this runs; ``extra_body`` is always refused there."""
        merged_query = dict(query or {})
        merged_query.update(options.extra_query)
        headers = ctx.forward_headers
        if options.extra_headers:
            headers = {**headers, **options.extra_headers}
        response = await self._upstream.request(
            ctx,
            method,
            segments,
            query=merged_query or None,
            json_body=body,
            extra_headers=headers or None,
            idempotent=idempotent,
            recover=recover,
        )
        return response.body

    # -- messages -------------------------------------------------------------------------------

    async def create_message(self, req: pb.CreateMessageRequest, ctx: CallContext) -> pb.Message:
        check.check_create(req, self.allowed_headers)
        key = idempotency.idempotency_key(req, ctx)
        await self.owned(ctx, req.thread_id)
        idempotency.check_marker_room(req, keyed=key is not None)
        body: dict[str, Any] = {"role": ROLE_NAMES[req.role], "content": req.content}
        if req.file_ids:
            body["file_ids"] = list(req.file_ids)
        if req.HasField("metadata"):
            body["metadata"] = dict(req.metadata.entries)
        try:
            if key is None:
                # No key: sent once; re-sent only if it provably never reached the upstream.
                raw = await self.upstream_call(ctx, "POST", ["threads", req.thread_id,
                                                             "messages"], req.options, body=body)
                return convert(wire.message_from_json, raw)
            consumer = ctx.consumer or "anonymous"
            mark = idempotency.marker(consumer, key)
            body["metadata"] = {**body.get("metadata", {}), idempotency.MARKER_KEY: mark}

            async def lookup() -> Any | None:
                query = {"order": "desc", "limit": str(idempotency.LOOKUP_PAGE)}
                page = await self._upstream.request(
                    ctx, "GET", ["threads", req.thread_id, "messages"], query=query)
                found = idempotency.find_marked(page.body, mark)
                if found is not None:
                    metrics.IDEMPOTENT_REPLAYS.labels("recovered").inc()
                return found

            async def create(recover: bool) -> pb.Message:
                found = await lookup() if recover else None
                if found is None:
                    found = await self.upstream_call(
                        ctx, "POST", ["threads", req.thread_id, "messages"], req.options,
                        body=body, idempotent=True, recover=lookup)
                return convert(wire.message_from_json, found)

            return await self._idempotency.run(consumer, key, idempotency.fingerprint(req), create,
                                               remaining=ctx.remaining)
        finally:
            # Even a failed write may have landed upstream (an answer lost on the way back).
            await self.cache.invalidate(req.thread_id)

    async def get_message(self, req: pb.GetMessageRequest, ctx: CallContext) -> pb.Message:
        check.check_get(req, self.allowed_headers)
        await self.owned(ctx, req.thread_id)

        async def fetch(ctx: CallContext) -> pb.Message:
            raw = await self.upstream_call(
                ctx, "GET", ["threads", req.thread_id, "messages", req.message_id], req.options
            )
            return convert(wire.message_from_json, raw)

        return await self.cache.read(ctx, cached.GET_MESSAGE, (req.thread_id, req.message_id), {},
                                     req.options, fetch, pb.Message)

    async def update_message(self, req: pb.UpdateMessageRequest, ctx: CallContext) -> pb.Message:
        check.check_update(req, self.allowed_headers)
        await self.owned(ctx, req.thread_id)
        body: dict[str, Any] = {}
        if req.HasField("metadata"):
            body["metadata"] = dict(req.metadata.entries)
        # Metadata is replaced wholesale, so sending the same update twice changes nothing.
        try:
            raw = await self.upstream_call(
                ctx, "POST", ["threads", req.thread_id, "messages", req.message_id], req.options,
                body=body, idempotent=True,
            )
        finally:
            await self.cache.invalidate(req.thread_id, req.message_id)
        return convert(wire.message_from_json, raw)

    async def list_messages(
        self, req: pb.ListMessagesRequest, ctx: CallContext
    ) -> pb.ListMessagesResponse:
        check.check_list_messages(req, self.allowed_headers)
        await self.owned(ctx, req.thread_id)
        query = page_query(limit=req.limit, order=req.order, after=req.after, before=req.before,
                           run_id=req.run_id)

        async def fetch(ctx: CallContext) -> pb.ListMessagesResponse:
            raw = await self.upstream_call(ctx, "GET", ["threads", req.thread_id, "messages"],
                                   req.options, query=query)
            return convert(wire.message_list_from_json, raw)

        return await self.cache.read(ctx, cached.LIST_MESSAGES, (req.thread_id,), query,
                                     req.options, fetch, pb.ListMessagesResponse)

    async def stream_messages(
        self, req: pb.StreamMessagesRequest, ctx: CallContext
    ) -> AsyncIterator[pb.MessagePage]:
        check.check_list_messages(req, self.allowed_headers)
        await self.owned(ctx, req.thread_id)
        limit = req.limit or STREAM_DEFAULT_LIMIT

        def fetch(after: str, before: str) -> Awaitable[Any]:
            query = page_query(limit=limit, order=req.order, after=after, before=before,
                               run_id=req.run_id)
            return self.upstream_call(ctx, "GET", ["threads", req.thread_id, "messages"], req.options,
                              query=query)

        parse = wire.message_page_from_json
        async with contextlib.aclosing(stream_pages(fetch, req, parse)) as pages:
            async for page in pages:
                yield page

    # -- message files --------------------------------------------------------------------------

    async def get_message_file(
        self, req: pb.GetMessageFileRequest, ctx: CallContext
    ) -> pb.MessageFile:
        check.check_get_file(req, self.allowed_headers)
        await self.owned(ctx, req.thread_id)

        async def fetch(ctx: CallContext) -> pb.MessageFile:
            raw = await self.upstream_call(
                ctx, "GET",
                ["threads", req.thread_id, "messages", req.message_id, "files", req.file_id],
                req.options,
            )
            return convert(wire.message_file_from_json, raw)

        return await self.cache.read(ctx, cached.GET_MESSAGE_FILE,
                                     (req.thread_id, req.message_id, req.file_id), {},
                                     req.options, fetch, pb.MessageFile)

    async def list_message_files(
        self, req: pb.ListMessageFilesRequest, ctx: CallContext
    ) -> pb.ListMessageFilesResponse:
        check.check_list_files(req, self.allowed_headers)
        await self.owned(ctx, req.thread_id)
        query = page_query(limit=req.limit, order=req.order, after=req.after, before=req.before)

        async def fetch(ctx: CallContext) -> pb.ListMessageFilesResponse:
            raw = await self.upstream_call(
                ctx, "GET", ["threads", req.thread_id, "messages", req.message_id, "files"],
                req.options, query=query)
            return convert(wire.message_file_list_from_json, raw)

        return await self.cache.read(ctx, cached.LIST_MESSAGE_FILES,
                                     (req.thread_id, req.message_id), query, req.options, fetch,
                                     pb.ListMessageFilesResponse)

    async def stream_message_files(
        self, req: pb.StreamMessageFilesRequest, ctx: CallContext
    ) -> AsyncIterator[pb.MessageFilePage]:
        check.check_list_files(req, self.allowed_headers)
        await self.owned(ctx, req.thread_id)
        limit = req.limit or STREAM_DEFAULT_LIMIT

        def fetch(after: str, before: str) -> Awaitable[Any]:
            query = page_query(limit=limit, order=req.order, after=after, before=before)
            return self.upstream_call(
                ctx, "GET", ["threads", req.thread_id, "messages", req.message_id, "files"],
                req.options, query=query,
            )

        parse = wire.message_file_page_from_json
        async with contextlib.aclosing(stream_pages(fetch, req, parse)) as pages:
            async for page in pages:
                yield page


async def _anyone(ctx: CallContext, thread_id: str) -> None:
    """The owner check when thread access is open."""


async def stream_pages(
    fetch: Callable[[str, str], Awaitable[Any]],
    req: pb.StreamMessagesRequest | pb.StreamMessageFilesRequest,
    parse: Callable[[Any], S],
) -> AsyncIterator[S]:
    """Walk a list for a stream request and give each page its resume cursor.

    ``fetch(after, before)`` returns the upstream's list envelope (parsed JSON) and ``parse``
    builds the stream page from it; the walker starts the next fetch before it parses, so the
    conversion overlaps the next upstream round trip.

    Without ``before`` the walk goes forwards from ``after``. With ``before`` it goes backwards,
    and ``after`` stays on every request as the window's far bound, so the walk stops there.
    """
    backwards = bool(req.before)
    floor = req.after

    def fetch_at(cursor: str | None) -> Awaitable[Any]:
        return fetch(floor, cursor or "") if backwards else fetch(cursor or "", "")

    def page_of(raw: Any) -> S:
        return convert(parse, raw)

    start = (req.before if backwards else req.after) or None
    walk = walk_pages(fetch_at, start=start, backwards=backwards, max_items=req.max_items,
                      convert=page_of)
    async with contextlib.aclosing(walk) as pages:
        index = 0
        async for page in pages:
            # The page is this stream's own message, built in place: no copy of its items.
            if backwards:
                page.resume_before = page.data[0].id
            else:
                page.resume_after = page.data[-1].id
            page.page_index = index
            yield page
            index += 1
