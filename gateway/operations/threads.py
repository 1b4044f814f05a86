"""The thread operations both faces call: create (with initial messages), get, update, delete,
and the administrator's adopt. They share the message operations' upstream exchange, cache and
owner checks (``gateway.operations.ownership``).

* Create stamps the new thread with the caller's owner stamp (unless thread access is open).
* Get, update and delete answer NOT_FOUND for a thread of another owner, exactly as for a missing
  one; update keeps the stamp (the upstream replaces metadata wholesale).
* Delete forgets the owner and invalidates every cached page and message of the thread, on every
  replica when the cache is Redis (a thread-wide generation).
* Threads are returned without the gateway's reserved metadata keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from gateway.context import CallContext
from gateway.errors import FieldViolation, InvalidArgument
from gateway.operations import thread_validation as check
from gateway.operations.idempotency import MARKER_KEY, MAX_METADATA_PAIRS
from gateway.operations.messages import MessageOperations, convert
from gateway.errors import NotFound
from gateway.operations.ownership import OWNER_KEY, metadata_of, refuse, refuse_reserved
from gateway.operations.validation import ROLE_NAMES
from gateway.upstream import wire_threads

log = structlog.get_logger("gateway.threads")


def _visible(raw: Any) -> Any:
    """The upstream thread without the gateway's owner stamp."""
    metadata = raw.get("metadata") if isinstance(raw, Mapping) else None
    if isinstance(metadata, Mapping) and OWNER_KEY in metadata:
        raw = {**raw, "metadata": {k: v for k, v in metadata.items() if k != OWNER_KEY}}
    return raw


def _message_body(message: pb.ThreadMessage) -> dict[str, Any]:
    body: dict[str, Any] = {"role": ROLE_NAMES[message.role], "content": message.content}
    if message.file_ids:
        body["file_ids"] = list(message.file_ids)
    if message.HasField("metadata"):
        body["metadata"] = dict(message.metadata.entries)
    return body


class ThreadOperations:
    """Every thread operation, as the faces see it."""

    def __init__(self, messages: MessageOperations) -> None:
        self._messages = messages
        self._ownership = messages.ownership
        self._allowed_headers = messages.allowed_headers

    def _with_stamp(self, ctx: CallContext, field: str, metadata: Mapping[str, str]
                    ) -> dict[str, str]:
        refuse_reserved(field, metadata, (OWNER_KEY,))
        if not self._ownership.enforced:
            return dict(metadata)
        if len(metadata) >= MAX_METADATA_PAIRS:
            raise InvalidArgument.for_fields([FieldViolation(
                field, f"may have at most {MAX_METADATA_PAIRS - 1} pairs (the gateway keeps "
                       "the thread's owner in one)")])
        return {**metadata, OWNER_KEY: self._ownership.stamp(ctx)}

    def _thread(self, ctx: CallContext, raw: Any) -> pb.Thread:
        return convert(wire_threads.thread_from_json, _visible(raw))

    async def create_thread(self, req: pb.CreateThreadRequest, ctx: CallContext) -> pb.Thread:
        check.check_create_thread(req, self._allowed_headers)
        body: dict[str, Any] = {}
        if req.messages:
            for i, message in enumerate(req.messages):
                if message.HasField("metadata"):
                    refuse_reserved(f"messages[{i}].metadata", message.metadata.entries,
                                    (MARKER_KEY,))
            body["messages"] = [_message_body(m) for m in req.messages]
        metadata = dict(req.metadata.entries) if req.HasField("metadata") else {}
        if req.HasField("metadata") or self._ownership.enforced:
            body["metadata"] = self._with_stamp(ctx, "metadata", metadata)
        # Sent once: a create is re-sent only if it provably never reached the upstream.
        raw = await self._messages.upstream_call(ctx, "POST", ["threads"], req.options,
                                                 body=body)
        thread = self._thread(ctx, raw)
        self._ownership.remember(ctx, thread.id, metadata_of(raw))
        return thread

    async def get_thread(self, req: pb.GetThreadRequest, ctx: CallContext) -> pb.Thread:
        check.check_thread(req, self._allowed_headers)
        try:
            raw = await self._messages.upstream_call(ctx, "GET", ["threads", req.thread_id],
                                                     req.options)
        except NotFound:
            if self._ownership.enforced:
                raise refuse(ctx, req.thread_id) from None
            raise
        found = self._ownership.remember(ctx, req.thread_id, metadata_of(raw))
        if not self._ownership.allows(ctx, found):
            raise refuse(ctx, req.thread_id)
        return self._thread(ctx, raw)

    async def update_thread(self, req: pb.UpdateThreadRequest, ctx: CallContext) -> pb.Thread:
        check.check_update_thread(req, self._allowed_headers)
        body: dict[str, Any] = {}
        if req.HasField("metadata"):
            # Replaced wholesale upstream: the owner stamp goes back in with the new pairs.
            body["metadata"] = self._with_stamp(ctx, "metadata", req.metadata.entries)
        await self._messages.owned(ctx, req.thread_id)
        raw = await self._messages.upstream_call(ctx, "POST", ["threads", req.thread_id],
                                                 req.options, body=body, idempotent=True)
        return self._thread(ctx, raw)

    async def delete_thread(self, req: pb.DeleteThreadRequest, ctx: CallContext
                            ) -> pb.DeleteThreadResponse:
        check.check_thread(req, self._allowed_headers)
        await self._messages.owned(ctx, req.thread_id)
        try:
            raw = await self._messages.upstream_call(ctx, "DELETE", ["threads", req.thread_id],
                                                     req.options)
        finally:
            # Even a failed delete may have landed upstream (an answer lost on the way back).
            self._ownership.forget(ctx, req.thread_id)
            await self._messages.cache.invalidate_thread(req.thread_id)
        return convert(wire_threads.thread_deleted_from_json, raw)

    async def adopt_thread(self, req: pb.AdoptThreadRequest, ctx: CallContext) -> pb.Thread:
        """Stamp a thread that carries no owner with the caller's (``admin`` scope)."""
        check.check_thread(req, self._allowed_headers)
        raw = await self._messages.fetch_thread(ctx, req.thread_id)
        metadata = metadata_of(raw) or {}
        found = metadata.get(OWNER_KEY)
        if found is not None:
            # Owned already: the owner's own adoption changes nothing; anyone else's is refused
            # as if the thread were not there.
            self._ownership.remember(ctx, req.thread_id, metadata)
            if not self._ownership.allows(ctx, found):
                raise refuse(ctx, req.thread_id)
            return self._thread(ctx, raw)
        if len(metadata) >= MAX_METADATA_PAIRS:
            raise InvalidArgument.for_fields([FieldViolation(
                "thread_id", f"the thread's metadata holds {MAX_METADATA_PAIRS} pairs: remove "
                             "one so that the gateway can keep the owner in it")])
        stamped = {**metadata, OWNER_KEY: self._ownership.stamp(ctx)}
        raw = await self._messages.upstream_call(ctx, "POST", ["threads", req.thread_id],
                                                 req.options, body={"metadata": stamped},
                                                 idempotent=True)
        self._ownership.remember(ctx, req.thread_id, metadata_of(raw))
        log.warning("thread_adopted", thread_id=req.thread_id, consumer=ctx.consumer,
                    key_id=ctx.key_id, profile=ctx.tenant, access=self._ownership.mode)
        return self._thread(ctx, raw)
