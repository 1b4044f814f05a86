"""Contract messages → the upstream's JSON shape (what the SDK and the API docs show).

The CLI prints these, so its output reads like the API people know: ``"role": "user"``,
``"completed_at": null``, content parts with ``"type"``. Tri-state fields stay apart: absent
(v1-era objects) is left out, null is ``null``. Written here, not imported from the gateway,
because the client distribution must not depend on the server.
"""

from __future__ import annotations

import json
from typing import Any

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb

_STATUS = {pb.MESSAGE_STATUS_IN_PROGRESS: "in_progress", pb.MESSAGE_STATUS_INCOMPLETE: "incomplete",
           pb.MESSAGE_STATUS_COMPLETED: "completed"}
_ROLE = {pb.ROLE_USER: "user", pb.ROLE_ASSISTANT: "assistant"}
_REASON = {pb.INCOMPLETE_REASON_CONTENT_FILTER: "content_filter",
           pb.INCOMPLETE_REASON_MAX_TOKENS: "max_tokens",
           pb.INCOMPLETE_REASON_RUN_CANCELLED: "run_cancelled",
           pb.INCOMPLETE_REASON_RUN_EXPIRED: "run_expired",
           pb.INCOMPLETE_REASON_RUN_FAILED: "run_failed"}


def _annotation(a: pb.TextAnnotation) -> dict[str, Any]:
    kind = a.WhichOneof("kind")
    out: dict[str, Any] = {"type": kind, "text": a.text}
    if kind == "file_citation":
        out["file_citation"] = {"file_id": a.file_citation.file_id,
                                "quote": a.file_citation.quote}
    elif kind == "file_path":
        out["file_path"] = {"file_id": a.file_path.file_id}
    out["start_index"] = a.start_index
    out["end_index"] = a.end_index
    return out


def _content(c: pb.MessageContent) -> dict[str, Any]:
    kind = c.WhichOneof("part")
    if kind == "image_file":
        return {"type": "image_file", "image_file": {"file_id": c.image_file.file_id}}
    if kind == "unknown":  # a part type newer than the contract: the upstream's own JSON
        part: dict[str, Any] = json.loads(c.unknown.json)
        return part
    return {"type": "text", "text": {"value": c.text.value,
                                     "annotations": [_annotation(a) for a in c.text.annotations]}}


def _tri_state(msg: pb.Message, oneof: str, value_field: str, out: dict[str, Any],
               value: Any) -> None:
    state = msg.WhichOneof(oneof)
    if state is not None:
        out[value_field] = value if state == value_field else None


def message_json(m: pb.Message) -> dict[str, Any]:
    out: dict[str, Any] = {"id": m.id, "object": m.object, "created_at": m.created_at,
                           "thread_id": m.thread_id}
    if m.HasField("status"):
        out["status"] = _STATUS.get(m.status)
    _tri_state(m, "incomplete_details_state", "incomplete_details", out,
               {"reason": _REASON.get(m.incomplete_details.reason)})
    _tri_state(m, "completed_at_state", "completed_at", out, m.completed_at)
    _tri_state(m, "incomplete_at_state", "incomplete_at", out, m.incomplete_at)
    out["role"] = _ROLE.get(m.role) or m.unknown_role or None
    out["content"] = [_content(c) for c in m.content]
    out["assistant_id"] = m.assistant_id if m.HasField("assistant_id") else None
    out["run_id"] = m.run_id if m.HasField("run_id") else None
    out["file_ids"] = list(m.file_ids)
    out["metadata"] = dict(sorted(m.metadata.entries.items())) if m.HasField("metadata") else None
    return out


def message_file_json(f: pb.MessageFile) -> dict[str, Any]:
    out: dict[str, Any] = {"id": f.id, "object": f.object, "created_at": f.created_at,
                           "message_id": f.message_id}
    if f.HasField("file_id"):
        out["file_id"] = f.file_id
    return out


def list_json(r: pb.ListMessagesResponse | pb.ListMessageFilesResponse) -> dict[str, Any]:
    render = message_json if isinstance(r, pb.ListMessagesResponse) else message_file_json
    return {
        "object": r.object,
        "data": [render(x) for x in r.data],  # type: ignore[arg-type]
        "first_id": r.first_id if r.HasField("first_id") else None,
        "last_id": r.last_id if r.HasField("last_id") else None,
        "has_more": r.has_more,
    }


def thread_json(t: pb.Thread) -> dict[str, Any]:
    metadata = dict(sorted(t.metadata.entries.items())) if t.HasField("metadata") else None
    return {"id": t.id, "object": "thread", "created_at": t.created_at, "metadata": metadata}


def thread_deleted_json(d: pb.DeleteThreadResponse) -> dict[str, Any]:
    return {"id": d.id, "object": "thread.deleted", "deleted": d.deleted}


def page_json(p: pb.MessagePage | pb.MessageFilePage) -> dict[str, Any]:
    """A streamed page: its items and where the stream stands (a gateway object, no upstream
    equivalent)."""
    render = message_json if isinstance(p, pb.MessagePage) else message_file_json
    return {"data": [render(x) for x in p.data], "page_index": p.page_index,  # type: ignore[arg-type]
            "resume_after": p.resume_after or None, "resume_before": p.resume_before or None}


_RENDER: dict[type, Any] = {
    pb.Message: message_json,
    pb.MessageFile: message_file_json,
    pb.ListMessagesResponse: list_json,
    pb.ListMessageFilesResponse: list_json,
    pb.MessagePage: page_json,
    pb.MessageFilePage: page_json,
    pb.Thread: thread_json,
    pb.DeleteThreadResponse: thread_deleted_json,
}


def to_dict(result: Any) -> dict[str, Any]:
    """Any result of the clients as the upstream API's JSON object, the SDK's ``to_dict()``:
    enums as the API's strings (``"role": "user"``), metadata as a dict, ``null`` where the
    upstream says null, v1-era absent fields left out."""
    response = getattr(result, "response", result)  # a clients Page: its ListXxxResponse
    render = _RENDER.get(type(response))
    if render is None:
        raise TypeError(f"not a Messages Gateway result: {type(result).__name__}")
    return render(response)  # type: ignore[no-any-return]


def to_json(result: Any, *, indent: int | None = 2) -> str:
    """``to_dict(result)`` as JSON text, ``indent=2`` as the SDK's ``to_json()``."""
    return json.dumps(to_dict(result), indent=indent, ensure_ascii=False)
