"""Upstream JSON -> protobuf: the hot path.

Each message is built in place (``add()`` into repeated fields, no ``json_format``, no per-field
reflection) straight from the parsed JSON, optimistically: protobuf itself refuses a wrong scalar
type (a non-string for a string, ``bool``/``float``/``str`` for an integer, an integer beyond int64,
a lone surrogate), a missing key or a non-object fails its subscript, and only what protobuf would
let through is tested here (arrays, booleans, negative indexes). Whatever fails, the document is
handed to ``schema.violation``, which walks the schema tables and names the field and the reason;
nothing on the way assembles a path or an error while the document is valid.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from gateway.enums import (
    ANNOTATION_TYPE,
    CONTENT_PART_TYPE,
    INCOMPLETE_REASON,
    MESSAGE_STATUS,
    ROLE,
    WireNames,
)
from gateway.upstream.wire import drift, schema
from gateway.upstream.wire.drift import json_text
from gateway.upstream.wire.errors import WireFormatError, json_type

_MISSING: Any = object()
_STATUS = MESSAGE_STATUS.from_wire
_ROLE = ROLE.from_wire
_REASON = INCOMPLETE_REASON.from_wire


class _Mismatch(Exception):
    """Something protobuf would have accepted does not fit the schema (the walker says what)."""


#: How a document that does not fit shows on the fast path.
_FAILED = (KeyError, TypeError, ValueError, AttributeError, _Mismatch)


def _array(value: Any) -> None:
    """Pass a JSON array through (lists are tested inline first); anything else does not fit."""
    if not isinstance(value, (list, tuple)):
        raise _Mismatch


def _file_ref(target: Any, payload: Any) -> None:
    """``{"file_id": str}`` into ``target`` (image_file and file_path alike)."""
    file_id = payload["file_id"]
    target.file_id = file_id
    if not file_id:
        target.SetInParent()


def _citation(a: pb.TextAnnotation, o: Any) -> None:
    payload = o["file_citation"]
    file_id = payload["file_id"]
    quote = payload["quote"]
    target = a.file_citation
    target.file_id = file_id
    target.quote = quote
    if not file_id and not quote:
        target.SetInParent()


def _file_path(a: pb.TextAnnotation, o: Any) -> None:
    _file_ref(a.file_path, o["file_path"])


def _by_wire_type(names: WireNames[str], fills: Mapping[str, Callable[[Any, Any], None]]
                  ) -> dict[str, Callable[[Any, Any], None]]:
    """A union's fill functions keyed by the upstream's ``"type"`` (from the enums table)."""
    return {names.to_wire[member]: fill for member, fill in fills.items()}


_ANNOTATION = _by_wire_type(ANNOTATION_TYPE, {"file_citation": _citation, "file_path": _file_path})


def _annotation(a: pb.TextAnnotation, o: Any) -> None:
    _ANNOTATION[o["type"]](a, o)
    a.text = o["text"]
    start = o["start_index"]
    end = o["end_index"]
    a.start_index = start
    a.end_index = end
    if start < 0 or end < 0:
        raise _Mismatch


def _text(c: pb.MessageContent, o: Any) -> None:
    payload = o["text"]
    value = payload["value"]
    annotations = payload["annotations"]
    if type(annotations) is not list:
        _array(annotations)
    text = c.text
    text.value = value
    if annotations:
        add = text.annotations.add
        for ann in annotations:
            _annotation(add(), ann)
    elif not value:
        text.SetInParent()


def _image_file(c: pb.MessageContent, o: Any) -> None:
    _file_ref(c.image_file, o["image_file"])


_PART = _by_wire_type(CONTENT_PART_TYPE, {"text": _text, "image_file": _image_file})


def _new_part(c: pb.MessageContent, o: Any) -> None:
    """A part of a type the contract does not know: its type and the whole part as JSON text."""
    kind = o["type"]
    if type(kind) is not str or not kind:
        raise _Mismatch
    unknown = c.unknown
    unknown.type = kind
    unknown.json = json_text(o)
    drift.tolerated("content_part_type", kind)


def _new_role(m: pb.Message, role: Any) -> None:
    """A role the contract does not know: ``role`` stays unspecified, ``unknown_role`` has it."""
    if type(role) is not str or not role:
        raise _Mismatch
    m.unknown_role = role
    drift.tolerated("role", role)


def _metadata_text(key: Any, value: Any) -> str:
    """A metadata value that is not a string, as its JSON text (a key must still be a string)."""
    if type(key) is not str:
        raise _Mismatch
    text = json_text(value)
    text.encode("utf-8")  # a lone surrogate inside: refused like any other string
    drift.tolerated("metadata_value", json_type(value))
    return text


def fill_message(m: pb.Message, o: Any) -> None:
    m.id = o["id"]
    m.object = o["object"]
    m.created_at = o["created_at"]
    m.thread_id = o["thread_id"]

    status = o.get("status", _MISSING)
    if status is not _MISSING:
        m.status = _STATUS[status]
    details = o.get("incomplete_details", _MISSING)
    if details is None:
        m.incomplete_details_null = 0
    elif details is not _MISSING:
        m.incomplete_details.reason = _REASON[details["reason"]]
    completed_at = o.get("completed_at", _MISSING)
    if completed_at is None:
        m.completed_at_null = 0
    elif completed_at is not _MISSING:
        m.completed_at = completed_at
    incomplete_at = o.get("incomplete_at", _MISSING)
    if incomplete_at is None:
        m.incomplete_at_null = 0
    elif incomplete_at is not _MISSING:
        m.incomplete_at = incomplete_at

    role = o["role"]
    try:
        m.role = _ROLE[role]
    except KeyError:
        _new_role(m, role)
    content = o["content"]
    if type(content) is not list:
        _array(content)
    if content:
        add = m.content.add
        for part in content:
            _PART.get(part["type"], _new_part)(add(), part)
    assistant_id = o["assistant_id"]
    if assistant_id is not None:
        m.assistant_id = assistant_id
    run_id = o["run_id"]
    if run_id is not None:
        m.run_id = run_id
    file_ids = o["file_ids"]
    if type(file_ids) is not list:
        _array(file_ids)
    if file_ids:
        m.file_ids.extend(file_ids)
    metadata = o["metadata"]
    if metadata is not None:
        pairs = metadata.items()
        if pairs:
            # Item by item: faster than ``update`` (which converts the mapping first).
            entries = m.metadata.entries
            for key, value in pairs:
                try:
                    entries[key] = value
                except TypeError:
                    entries[key] = _metadata_text(key, value)
        else:
            m.metadata.SetInParent()


def fill_message_file(f: pb.MessageFile, o: Any) -> None:
    f.id = o["id"]
    f.object = o["object"]
    f.created_at = o["created_at"]
    f.message_id = o["message_id"]
    file_id = o.get("file_id")
    if file_id is not None:
        f.file_id = file_id


def fill_page(envelope: Any, o: Any, items: Any, fill: Callable[[Any, Any], None]) -> None:
    """A list page: its envelope into ``envelope``, each of its ``data`` into ``items``.

    ``envelope`` is the list response itself, or (for a stream's page, which keeps only the items)
    a scratch one that protobuf checks the envelope's types against.
    """
    envelope.object = o["object"]
    first_id = o["first_id"]
    if first_id is not None:
        envelope.first_id = first_id
    last_id = o["last_id"]
    if last_id is not None:
        envelope.last_id = last_id
    has_more = o["has_more"]
    if type(has_more) is not bool:
        raise _Mismatch
    envelope.has_more = has_more
    data = o["data"]
    if type(data) is not list:
        _array(data)
    add = items.add
    for item in data:
        fill(add(), item)


def decode_into(rule: schema.Rule, obj: Any, fill: Callable[..., None], target: Any,
                *extra: Any) -> None:
    """``fill(target, obj, *extra)``; if ``obj`` does not fit ``rule``, the walker's error."""
    try:
        fill(target, obj, *extra)
    except _FAILED:
        error = schema.violation(rule, obj)
        if error is None:  # pragma: no cover - the tables and the fast path disagree: a bug
            error = WireFormatError("document could not be converted")
        raise error from None
