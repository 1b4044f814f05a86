"""Keyword arguments (the SDK's shape) → the contract's request messages, shared by both clients."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from google.protobuf import struct_pb2

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb

Order = Literal["asc", "desc"]
Role = Literal["user", "assistant"]

_ORDERS = {None: pb.ORDER_UNSPECIFIED, "asc": pb.ORDER_ASC, "desc": pb.ORDER_DESC}
_ROLES = {"user": pb.ROLE_USER, "assistant": pb.ROLE_ASSISTANT}


def order_value(order: str | None) -> int:
    try:
        return _ORDERS[order]
    except KeyError:
        raise ValueError("order must be 'asc' or 'desc'") from None


def role_value(role: str) -> int:
    try:
        return _ROLES[role]
    except KeyError:
        raise ValueError("role must be 'user' or 'assistant'") from None


def options(
    extra_query: Mapping[str, str] | None,
    extra_body: Mapping[str, Any] | None,
    extra_headers: Mapping[str, str] | None,
) -> pb.RequestOptions | None:
    if not (extra_query or extra_body or extra_headers):
        return None
    opts = pb.RequestOptions(extra_query=dict(extra_query or {}),
                             extra_headers=dict(extra_headers or {}))
    if extra_body:
        body = struct_pb2.Struct()
        body.update(dict(extra_body))
        opts.extra_body.CopyFrom(body)
    return opts


def metadata_message(metadata: Mapping[str, str] | None) -> pb.Metadata | None:
    return None if metadata is None else pb.Metadata(entries=dict(metadata))


def create(
    thread_id: str, *, content: str, role: str, file_ids: Sequence[str],
    metadata: Mapping[str, str] | None, request_id: str, opts: pb.RequestOptions | None,
) -> pb.CreateMessageRequest:
    return pb.CreateMessageRequest(
        thread_id=thread_id, role=role_value(role), content=content, file_ids=list(file_ids),
        metadata=metadata_message(metadata), request_id=request_id, options=opts,
    )


def stream_messages(
    thread_id: str, *, limit: int, order: str | None, after: str, before: str, run_id: str,
    max_items: int, opts: pb.RequestOptions | None,
) -> pb.StreamMessagesRequest:
    return pb.StreamMessagesRequest(
        thread_id=thread_id, limit=limit, order=order_value(order), after=after, before=before,
        run_id=run_id, max_items=max_items, options=opts,
    )


def list_messages(
    thread_id: str, *, limit: int, order: str | None, after: str, before: str, run_id: str,
    opts: pb.RequestOptions | None,
) -> pb.ListMessagesRequest:
    return pb.ListMessagesRequest(
        thread_id=thread_id, limit=limit, order=order_value(order), after=after, before=before,
        run_id=run_id, options=opts,
    )


def stream_files(
    thread_id: str, message_id: str, *, limit: int, order: str | None, after: str, before: str,
    max_items: int, opts: pb.RequestOptions | None,
) -> pb.StreamMessageFilesRequest:
    return pb.StreamMessageFilesRequest(
        thread_id=thread_id, message_id=message_id, limit=limit, order=order_value(order),
        after=after, before=before, max_items=max_items, options=opts,
    )


def list_files(
    thread_id: str, message_id: str, *, limit: int, order: str | None, after: str, before: str,
    opts: pb.RequestOptions | None,
) -> pb.ListMessageFilesRequest:
    return pb.ListMessageFilesRequest(
        thread_id=thread_id, message_id=message_id, limit=limit, order=order_value(order),
        after=after, before=before, options=opts,
    )
