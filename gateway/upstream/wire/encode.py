"""Protobuf -> the upstream's JSON, keys in the spec's schema property order.

A proto outside the schema (a part or annotation kind not set, an enum without a wire string)
raises ``WireFormatError`` naming the path; the path is only assembled once something failed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from gateway.enums import (
    ANNOTATION_TYPE,
    CONTENT_PART_TYPE,
    INCOMPLETE_REASON,
    MESSAGE_STATUS,
    ROLE,
)
from gateway.upstream.wire.errors import WireFormatError

T = TypeVar("T")

_STATUS = MESSAGE_STATUS.to_wire
_ROLE = ROLE.to_wire
_REASON = INCOMPLETE_REASON.to_wire
_ANNOTATION_TYPE = ANNOTATION_TYPE.to_wire
_PART_TYPE = CONTENT_PART_TYPE.to_wire


def _items(render: Callable[[T], dict[str, Any]], items: Iterable[T],
           path: tuple[str, ...]) -> list[dict[str, Any]]:
    """``[render(x) for x in items]``; a failing item's error gets ``path`` and its index."""
    try:
        return list(map(render, items))
    except WireFormatError:
        for i, x in enumerate(items):
            try:
                render(x)
            except WireFormatError as e:
                raise e._within(*path, i) from None
        raise  # pragma: no cover - defensive


_CITATION = _ANNOTATION_TYPE["file_citation"]
_FILE_PATH = _ANNOTATION_TYPE["file_path"]
_TEXT = _PART_TYPE["text"]
_IMAGE_FILE = _PART_TYPE["image_file"]


def _annotation(a: pb.TextAnnotation) -> dict[str, Any]:
    kind = a.WhichOneof("kind")
    if kind == "file_citation":
        c = a.file_citation
        return {"type": _CITATION, "text": a.text,
                _CITATION: {"file_id": c.file_id, "quote": c.quote},
                "start_index": a.start_index, "end_index": a.end_index}
    if kind == "file_path":
        return {"type": _FILE_PATH, "text": a.text, _FILE_PATH: {"file_id": a.file_path.file_id},
                "start_index": a.start_index, "end_index": a.end_index}
    raise WireFormatError("annotation kind not set", "kind")


def _content(c: pb.MessageContent) -> dict[str, Any]:
    kind = c.WhichOneof("part")
    if kind == "text":
        t = c.text
        annotations = t.annotations
        return {"type": _TEXT, _TEXT: {
            "value": t.value,
            "annotations": _items(_annotation, annotations, ("text", "annotations"))
            if annotations else [],
        }}
    if kind == "image_file":
        return {"type": _IMAGE_FILE, _IMAGE_FILE: {"file_id": c.image_file.file_id}}
    if kind == "unknown":
        return _unknown_part(c.unknown)
    raise WireFormatError("content part kind not set", "type")


def _unknown_part(unknown: pb.UnknownContent) -> dict[str, Any]:
    """A part the contract does not know, exactly as the upstream sent it."""
    try:
        part = json.loads(unknown.json)
    except ValueError:
        part = None
    if type(part) is not dict:
        raise WireFormatError("expected the JSON text of an object", "unknown", "json")
    return part  # type: ignore[no-any-return]


def message_to_json(msg: pb.Message) -> dict[str, Any]:
    """Render ``pb.Message`` as the upstream ``thread.message`` JSON object (schema key order)."""
    d: dict[str, Any] = {
        "id": msg.id,
        "object": msg.object,
        "created_at": msg.created_at,
        "thread_id": msg.thread_id,
    }
    if msg.HasField("status"):
        status = _STATUS.get(msg.status)
        if status is None:
            raise WireFormatError("status not set or unknown", "status")
        d["status"] = status
    state = msg.WhichOneof("incomplete_details_state")
    if state is not None:
        if state == "incomplete_details":
            reason = _REASON.get(msg.incomplete_details.reason)
            if reason is None:
                raise WireFormatError("reason not set or unknown", "incomplete_details", "reason")
            d["incomplete_details"] = {"reason": reason}
        else:
            d["incomplete_details"] = None
    state = msg.WhichOneof("completed_at_state")
    if state is not None:
        d["completed_at"] = msg.completed_at if state == "completed_at" else None
    state = msg.WhichOneof("incomplete_at_state")
    if state is not None:
        d["incomplete_at"] = msg.incomplete_at if state == "incomplete_at" else None
    role = _ROLE.get(msg.role) or msg.unknown_role
    if not role:
        raise WireFormatError("role not set or unknown", "role")
    d["role"] = role
    content = msg.content
    d["content"] = _items(_content, content, ("content",)) if content else []
    d["assistant_id"] = msg.assistant_id if msg.HasField("assistant_id") else None
    d["run_id"] = msg.run_id if msg.HasField("run_id") else None
    file_ids = msg.file_ids
    d["file_ids"] = list(file_ids) if file_ids else []
    if msg.HasField("metadata"):
        entries = msg.metadata.entries
        d["metadata"] = dict(sorted(entries.items())) if entries else {}
    else:
        d["metadata"] = None
    return d


def message_file_to_json(f: pb.MessageFile) -> dict[str, Any]:
    """Render ``pb.MessageFile`` as the upstream ``thread.message.file`` JSON object."""
    d: dict[str, Any] = {
        "id": f.id,
        "object": f.object,
        "created_at": f.created_at,
        "message_id": f.message_id,
    }
    if f.HasField("file_id"):
        d["file_id"] = f.file_id
    return d


def page_to_json(r: pb.ListMessagesResponse | pb.ListMessageFilesResponse,
                 render: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """A list response as the upstream's list page, each item rendered by ``render``."""
    return {
        "object": r.object,
        "data": _items(render, r.data, ("data",)),
        "first_id": r.first_id if r.HasField("first_id") else None,
        "last_id": r.last_id if r.HasField("last_id") else None,
        "has_more": r.has_more,
    }
