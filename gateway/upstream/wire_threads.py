"""Upstream thread JSON ↔ the contract's ``Thread`` and ``DeleteThreadResponse``.

A thread is four fields (``id``, ``object``, ``created_at``, ``metadata``: an object of strings,
or null). Conversion is strict the same way message conversion is (``gateway.upstream.wire``):
a body that breaks the schema raises ``WireFormatError`` naming the field. Reserved metadata keys
(the gateway's owner stamp) are removed by the caller before conversion, never here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from gateway.upstream.wire import WireFormatError


def _text(o: Mapping[str, Any], key: str) -> str:
    value = o.get(key)
    if not isinstance(value, str):
        raise WireFormatError(f"expected a string at {key}", key)
    return value


def _object(obj: Any, expected: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise WireFormatError("expected an object")
    if obj.get("object") != expected:
        raise WireFormatError(f"expected object {expected!r}", "object")
    return obj


def thread_from_json(obj: Any) -> pb.Thread:
    o = _object(obj, "thread")
    created = o.get("created_at")
    if type(created) is not int:
        raise WireFormatError("expected an integer at created_at", "created_at")
    thread = pb.Thread(id=_text(o, "id"), object="thread", created_at=created)
    metadata = o.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise WireFormatError("expected an object or null at metadata", "metadata")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise WireFormatError("metadata keys and values must be strings", "metadata")
        thread.metadata.entries.update(metadata)
        thread.metadata.SetInParent()
    return thread


def thread_to_json(thread: pb.Thread) -> dict[str, Any]:
    metadata = (dict(sorted(thread.metadata.entries.items()))
                if thread.HasField("metadata") else None)
    return {"id": thread.id, "object": "thread", "created_at": thread.created_at,
            "metadata": metadata}


def thread_deleted_from_json(obj: Any) -> pb.DeleteThreadResponse:
    o = _object(obj, "thread.deleted")
    if o.get("deleted") is not True:
        raise WireFormatError("expected deleted: true", "deleted")
    return pb.DeleteThreadResponse(id=_text(o, "id"), object="thread.deleted", deleted=True)


def thread_deleted_to_json(answer: pb.DeleteThreadResponse) -> dict[str, Any]:
    return {"id": answer.id, "object": "thread.deleted", "deleted": answer.deleted}
