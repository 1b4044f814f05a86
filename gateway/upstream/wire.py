"""Upstream JSON <-> protobuf conversion for messages, message files and their list pages.

Pure functions over already-parsed JSON (``dict``/``list``/``str``/``int``/``bool``/``None``):

* ``message_from_json`` / ``message_to_json``                (``thread.message`` <-> ``pb.Message``)
* ``message_file_from_json`` / ``message_file_to_json``      (``thread.message.file`` <-> ``pb.MessageFile``)
* ``message_list_from_json`` / ``message_list_to_json``      (``pb.ListMessagesResponse``)
* ``message_file_list_from_json`` / ``message_file_list_to_json`` (``pb.ListMessageFilesResponse``)
* ``message_page_from_json`` / ``message_file_page_from_json``  (a stream's ``pb.MessagePage`` /
  ``pb.MessageFilePage``, items built in place)

Rules:

* JSON that does not fit the spec schema (missing required field, wrong JSON type -- ``bool`` is not
  an integer --, unknown enum value or part/annotation type, non-object where an object is
  required, negative ``start_index``/``end_index``, an integer outside int64, a string protobuf
  cannot hold) raises ``WireFormatError``. Its message names the JSON path
  (``data[3].content[0].type``) and the JSON *type* seen, never a value: values can be user content.
  Metadata keys are user content too, so metadata errors stop at ``metadata``.
* Unknown extra keys are tolerated and dropped.
* ``object`` strings are kept as sent (not checked against ``thread.message`` etc.).
* v1-era messages (before 2024-03-27) have no ``status``, ``incomplete_details``, ``completed_at``,
  ``incomplete_at``: those are tri-state (absent / null / value) on the proto and stay absent.
* ``*_to_json`` emits keys in the spec's schema property order, omits absent tri-state fields and
  emits ``null`` for null ones, so ``to_json(from_json(x)) == x`` for schema-valid ``x``, with the
  same key order when ``x`` follows the schema order. Exception: protobuf maps do not keep insertion
  order, so ``metadata`` keys come out sorted.
* ``MessageFile.file_id`` is not in the schema (only in the spec's example object): kept when it is
  a string, dropped when null.

Hot path: direct, in-place construction of the messages (``add()`` into repeated fields, no
``json_format``, no per-field reflection); type checks are inline ``type(v) is T`` tests; error
paths are only assembled when something is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clients.generated.messages_gateway.v1 import messages_pb2 as pb
from gateway.enums import INCOMPLETE_REASON, MESSAGE_STATUS, ROLE

__all__ = [
    "WireFormatError",
    "message_file_from_json",
    "message_file_list_from_json",
    "message_file_list_to_json",
    "message_file_to_json",
    "message_from_json",
    "message_list_from_json",
    "message_list_to_json",
    "message_page_from_json",
    "message_file_page_from_json",
    "message_to_json",
]


class WireFormatError(ValueError):
    """Upstream JSON (or a proto being rendered to JSON) does not fit the schema.

    ``path`` is the JSON path of the offending field (``""`` for the document itself) and
    ``reason`` a value-free description. ``str(err)`` is ``"<path>: <reason>"``.
    """

    def __init__(self, reason: str, *path: str | int) -> None:
        super().__init__(reason)
        self.reason = reason
        # Innermost segment first: callers add their own segments while the error unwinds.
        self._rpath: list[str | int] = list(reversed(path))

    def _within(self, *segments: str | int) -> WireFormatError:
        self._rpath.extend(reversed(segments))
        return self

    @property
    def path(self) -> str:
        out: list[str] = []
        for seg in reversed(self._rpath):
            if type(seg) is int:
                out.append(f"[{seg}]")
            else:
                if out:
                    out.append(".")
                out.append(seg)  # type: ignore[arg-type]
        return "".join(out)

    def __str__(self) -> str:
        return f"{self.path or '<document>'}: {self.reason}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_error, (self.reason, tuple(reversed(self._rpath))))


def _rebuild_error(reason: str, path: tuple[str | int, ...]) -> WireFormatError:
    return WireFormatError(reason, *path)


# ---------------------------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------------------------

_MISSING: Any = object()

_STATUS_FROM = MESSAGE_STATUS.from_wire
_STATUS_TO = MESSAGE_STATUS.to_wire
_ROLE_FROM = ROLE.from_wire
_ROLE_TO = ROLE.to_wire
_REASON_FROM = INCOMPLETE_REASON.from_wire
_REASON_TO = INCOMPLETE_REASON.to_wire

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

_MESSAGE_REQUIRED = (
    "id", "object", "created_at", "thread_id", "role", "content",
    "assistant_id", "run_id", "file_ids", "metadata",
)  # fmt: skip
_MESSAGE_SCALARS = (
    "id", "object", "created_at", "thread_id", "completed_at", "incomplete_at",
    "assistant_id", "run_id", "file_ids", "metadata",
)  # fmt: skip
_FILE_REQUIRED = ("id", "object", "created_at", "message_id")
_FILE_SCALARS = ("id", "object", "created_at", "message_id", "file_id")
_LIST_REQUIRED = ("object", "data", "first_id", "last_id", "has_more")
_LIST_SCALARS = ("object", "first_id", "last_id")
_CITATION_REQUIRED = ("file_id", "quote")
_ANNOTATION_REQUIRED = ("text", "start_index", "end_index")
_TEXT_REQUIRED = ("value", "annotations")


# ---------------------------------------------------------------------------------------------
# Error helpers (cold path only)
# ---------------------------------------------------------------------------------------------


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return "non-JSON value"


def _expected(what: str, value: Any, *path: str | int) -> WireFormatError:
    return WireFormatError(f"expected {what}, got {_json_type(value)}", *path)


def _missing(obj: Mapping[str, Any], required: tuple[str, ...], *prefix: str | int) -> WireFormatError:
    for key in required:
        if key not in obj:
            return WireFormatError("missing required field", *prefix, key)
    return WireFormatError("missing required field", *prefix)  # pragma: no cover - defensive


def _unknown(what: str, value: Any, *path: str | int) -> WireFormatError:
    if type(value) is not str:
        return _expected("a string", value, *path)
    return WireFormatError(f"unknown {what}", *path)


def _find_unrepresentable(value: Any) -> tuple[str, tuple[str | int, ...]] | None:
    """The first string or integer inside ``value`` that protobuf cannot hold, with its path."""
    if type(value) is str:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "string is not valid Unicode (lone surrogate)", ()
        return None
    if type(value) is int:
        if not _INT64_MIN <= value <= _INT64_MAX:
            return "integer out of the int64 range", ()
        return None
    if isinstance(value, Mapping):
        for k, v in value.items():
            found = _find_unrepresentable(k) or _find_unrepresentable(v)
            if found:
                return found[0], (k, *found[1])
        return None
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found = _find_unrepresentable(v)
            if found:
                return found[0], (i, *found[1])
    return None


def _unrepresentable(obj: Mapping[str, Any], keys: tuple[str, ...], *prefix: str | int) -> WireFormatError:
    for key in keys:
        found = _find_unrepresentable(obj.get(key))
        if found:
            reason, sub = found
            if key == "metadata":  # metadata keys are user content: stop the path here
                sub = ()
            return WireFormatError(reason, *prefix, key, *sub)
    return WireFormatError("value not representable", *prefix)  # pragma: no cover - defensive


# ---------------------------------------------------------------------------------------------
# JSON -> proto
# ---------------------------------------------------------------------------------------------


def _object_field(o: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """The required JSON object under ``key`` (a content part's or annotation's payload)."""
    sub = o.get(key, _MISSING)
    if sub is _MISSING:
        raise WireFormatError("missing required field", key)
    if type(sub) is not dict and not isinstance(sub, Mapping):
        raise _expected("an object", sub, key)
    return sub  # type: ignore[no-any-return]


def _fill_file_ref(target: Any, o: Mapping[str, Any], key: str) -> None:
    """``{key: {"file_id": str}}`` into ``target.file_id`` (file_path and image_file alike)."""
    sub = _object_field(o, key)
    file_id = sub.get("file_id", _MISSING)
    if file_id is _MISSING:
        raise WireFormatError("missing required field", key, "file_id")
    if type(file_id) is not str:
        raise _expected("a string", file_id, key, "file_id")
    try:
        target.file_id = file_id
    except ValueError:
        raise _unrepresentable(sub, ("file_id",), key) from None
    if not file_id:
        target.SetInParent()


def _fill_annotation(a: pb.TextAnnotation, o: Any) -> None:
    if type(o) is not dict and not isinstance(o, Mapping):
        raise _expected("an object", o)
    kind = o.get("type", _MISSING)
    if kind == "file_citation":
        sub = _object_field(o, "file_citation")
        try:
            file_id = sub["file_id"]
            quote = sub["quote"]
        except KeyError:
            raise _missing(sub, _CITATION_REQUIRED, "file_citation") from None
        if type(file_id) is not str:
            raise _expected("a string", file_id, "file_citation", "file_id")
        if type(quote) is not str:
            raise _expected("a string", quote, "file_citation", "quote")
        target = a.file_citation
        try:
            target.file_id = file_id
            target.quote = quote
        except ValueError:
            raise _unrepresentable(sub, _CITATION_REQUIRED, "file_citation") from None
        if not file_id and not quote:
            a.file_citation.SetInParent()
    elif kind == "file_path":
        _fill_file_ref(a.file_path, o, "file_path")
    elif kind is _MISSING:
        raise WireFormatError("missing required field", "type")
    else:
        raise _unknown("annotation type", kind, "type")
    try:
        text = o["text"]
        start = o["start_index"]
        end = o["end_index"]
    except KeyError:
        raise _missing(o, _ANNOTATION_REQUIRED) from None
    if type(text) is not str:
        raise _expected("a string", text, "text")
    if type(start) is not int:
        raise _expected("an integer", start, "start_index")
    if type(end) is not int:
        raise _expected("an integer", end, "end_index")
    if start < 0:
        raise WireFormatError("must be >= 0", "start_index")
    if end < 0:
        raise WireFormatError("must be >= 0", "end_index")
    try:
        a.text = text
        a.start_index = start
        a.end_index = end
    except ValueError:
        raise _unrepresentable(o, _ANNOTATION_REQUIRED) from None


def _fill_content(c: pb.MessageContent, o: Any) -> None:
    if type(o) is not dict and not isinstance(o, Mapping):
        raise _expected("an object", o)
    kind = o.get("type", _MISSING)
    if kind == "text":
        sub = _object_field(o, "text")
        try:
            value = sub["value"]
            annotations = sub["annotations"]
        except KeyError:
            raise _missing(sub, _TEXT_REQUIRED, "text") from None
        if type(value) is not str:
            raise _expected("a string", value, "text", "value")
        if type(annotations) is not list and not isinstance(annotations, (list, tuple)):
            raise _expected("an array", annotations, "text", "annotations")
        text = c.text
        try:
            text.value = value
        except ValueError:
            raise _unrepresentable(sub, ("value",), "text") from None
        if annotations:
            add = text.annotations.add
            for i, ann in enumerate(annotations):
                try:
                    _fill_annotation(add(), ann)
                except WireFormatError as e:
                    raise e._within("text", "annotations", i) from None
        elif not value:
            c.text.SetInParent()
    elif kind == "image_file":
        _fill_file_ref(c.image_file, o, "image_file")
    elif kind is _MISSING:
        raise WireFormatError("missing required field", "type")
    else:
        raise _unknown("content part type", kind, "type")


def _fill_message(m: pb.Message, o: Any) -> None:
    if type(o) is not dict and not isinstance(o, Mapping):
        raise _expected("an object", o)
    try:
        id_ = o["id"]
        object_ = o["object"]
        created_at = o["created_at"]
        thread_id = o["thread_id"]
        role = o["role"]
        content = o["content"]
        assistant_id = o["assistant_id"]
        run_id = o["run_id"]
        file_ids = o["file_ids"]
        metadata = o["metadata"]
    except KeyError:
        raise _missing(o, _MESSAGE_REQUIRED) from None
    if type(id_) is not str:
        raise _expected("a string", id_, "id")
    if type(object_) is not str:
        raise _expected("a string", object_, "object")
    if type(created_at) is not int:
        raise _expected("an integer", created_at, "created_at")
    if type(thread_id) is not str:
        raise _expected("a string", thread_id, "thread_id")
    role_value = _ROLE_FROM.get(role) if type(role) is str else None
    if role_value is None:
        raise _unknown("role", role, "role")
    if type(content) is not list and not isinstance(content, (list, tuple)):
        raise _expected("an array", content, "content")
    if assistant_id is not None and type(assistant_id) is not str:
        raise _expected("a string or null", assistant_id, "assistant_id")
    if run_id is not None and type(run_id) is not str:
        raise _expected("a string or null", run_id, "run_id")
    if type(file_ids) is not list and not isinstance(file_ids, (list, tuple)):
        raise _expected("an array", file_ids, "file_ids")
    for i, file_id in enumerate(file_ids):
        if type(file_id) is not str:
            raise _expected("a string", file_id, "file_ids", i)
    if metadata is not None:
        if type(metadata) is not dict and not isinstance(metadata, Mapping):
            raise _expected("an object or null", metadata, "metadata")
        for k, v in metadata.items():
            if type(v) is not str or type(k) is not str:
                raise WireFormatError("metadata keys and values must be strings", "metadata")

    try:
        m.id = id_
        m.object = object_
        m.created_at = created_at
        m.thread_id = thread_id

        status = o.get("status", _MISSING)
        if status is not _MISSING:
            status_value = _STATUS_FROM.get(status) if type(status) is str else None
            if status_value is None:
                raise _unknown("status", status, "status")
            m.status = status_value

        details = o.get("incomplete_details", _MISSING)
        if details is None:
            m.incomplete_details_null = 0
        elif details is not _MISSING:
            if type(details) is not dict and not isinstance(details, Mapping):
                raise _expected("an object or null", details, "incomplete_details")
            reason = details.get("reason", _MISSING)
            if reason is _MISSING:
                raise WireFormatError("missing required field", "incomplete_details", "reason")
            reason_value = _REASON_FROM.get(reason) if type(reason) is str else None
            if reason_value is None:
                raise _unknown("incomplete reason", reason, "incomplete_details", "reason")
            m.incomplete_details.reason = reason_value

        completed_at = o.get("completed_at", _MISSING)
        if completed_at is None:
            m.completed_at_null = 0
        elif completed_at is not _MISSING:
            if type(completed_at) is not int:
                raise _expected("an integer or null", completed_at, "completed_at")
            m.completed_at = completed_at

        incomplete_at = o.get("incomplete_at", _MISSING)
        if incomplete_at is None:
            m.incomplete_at_null = 0
        elif incomplete_at is not _MISSING:
            if type(incomplete_at) is not int:
                raise _expected("an integer or null", incomplete_at, "incomplete_at")
            m.incomplete_at = incomplete_at

        m.role = role_value
        if assistant_id is not None:
            m.assistant_id = assistant_id
        if run_id is not None:
            m.run_id = run_id
        if file_ids:
            m.file_ids.extend(file_ids)
        if metadata is not None:
            if metadata:
                m.metadata.entries.update(metadata)
            else:
                m.metadata.SetInParent()
    except WireFormatError:
        raise
    except ValueError:  # a lone surrogate in a string, an integer beyond int64
        raise _unrepresentable(o, _MESSAGE_SCALARS) from None

    if content:
        add = m.content.add
        for i, part in enumerate(content):
            try:
                _fill_content(add(), part)
            except WireFormatError as e:
                raise e._within("content", i) from None


def _fill_file(f: pb.MessageFile, o: Any) -> None:
    if type(o) is not dict and not isinstance(o, Mapping):
        raise _expected("an object", o)
    try:
        id_ = o["id"]
        object_ = o["object"]
        created_at = o["created_at"]
        message_id = o["message_id"]
    except KeyError:
        raise _missing(o, _FILE_REQUIRED) from None
    if type(id_) is not str:
        raise _expected("a string", id_, "id")
    if type(object_) is not str:
        raise _expected("a string", object_, "object")
    if type(created_at) is not int:
        raise _expected("an integer", created_at, "created_at")
    if type(message_id) is not str:
        raise _expected("a string", message_id, "message_id")
    file_id = o.get("file_id")
    if file_id is not None and type(file_id) is not str:
        raise _expected("a string or null", file_id, "file_id")
    try:
        f.id = id_
        f.object = object_
        f.created_at = created_at
        f.message_id = message_id
        if file_id is not None:
            f.file_id = file_id
    except ValueError:
        raise _unrepresentable(o, _FILE_SCALARS) from None


def _fill_list_envelope(r: Any, o: Any) -> list[Any] | tuple[Any, ...]:
    if type(o) is not dict and not isinstance(o, Mapping):
        raise _expected("an object", o)
    try:
        object_ = o["object"]
        data = o["data"]
        first_id = o["first_id"]
        last_id = o["last_id"]
        has_more = o["has_more"]
    except KeyError:
        raise _missing(o, _LIST_REQUIRED) from None
    if type(object_) is not str:
        raise _expected("a string", object_, "object")
    if type(data) is not list and not isinstance(data, (list, tuple)):
        raise _expected("an array", data, "data")
    if first_id is not None and type(first_id) is not str:
        raise _expected("a string or null", first_id, "first_id")
    if last_id is not None and type(last_id) is not str:
        raise _expected("a string or null", last_id, "last_id")
    if type(has_more) is not bool:
        raise _expected("a boolean", has_more, "has_more")
    try:
        r.object = object_
        if first_id is not None:
            r.first_id = first_id
        if last_id is not None:
            r.last_id = last_id
    except ValueError:
        raise _unrepresentable(o, _LIST_SCALARS) from None
    r.has_more = has_more
    return data


def message_from_json(obj: Mapping[str, Any]) -> pb.Message:
    """Convert an upstream ``thread.message`` object to ``pb.Message``."""
    m = pb.Message()
    _fill_message(m, obj)
    return m


def message_file_from_json(obj: Mapping[str, Any]) -> pb.MessageFile:
    """Convert an upstream ``thread.message.file`` object to ``pb.MessageFile``."""
    f = pb.MessageFile()
    _fill_file(f, obj)
    return f


def _fill_messages(repeated: Any, data: list[Any] | tuple[Any, ...]) -> None:
    add = repeated.add
    for i, item in enumerate(data):
        try:
            _fill_message(add(), item)
        except WireFormatError as e:
            raise e._within("data", i) from None


def _fill_files(repeated: Any, data: list[Any] | tuple[Any, ...]) -> None:
    add = repeated.add
    for i, item in enumerate(data):
        try:
            _fill_file(add(), item)
        except WireFormatError as e:
            raise e._within("data", i) from None


def message_list_from_json(obj: Mapping[str, Any]) -> pb.ListMessagesResponse:
    """Convert an upstream page of messages (``object: "list"``) to ``pb.ListMessagesResponse``."""
    r = pb.ListMessagesResponse()
    _fill_messages(r.data, _fill_list_envelope(r, obj))
    return r


def message_file_list_from_json(obj: Mapping[str, Any]) -> pb.ListMessageFilesResponse:
    """Convert an upstream page of message files to ``pb.ListMessageFilesResponse``."""
    r = pb.ListMessageFilesResponse()
    _fill_files(r.data, _fill_list_envelope(r, obj))
    return r


def message_page_from_json(obj: Mapping[str, Any]) -> pb.MessagePage:
    """Convert an upstream page of messages to a stream's ``pb.MessagePage``.

    The envelope is checked exactly as ``message_list_from_json`` checks it (same errors); the
    items are built in place in the page, never copied into it from a list response.
    """
    page = pb.MessagePage()
    _fill_messages(page.data, _fill_list_envelope(pb.ListMessagesResponse(), obj))
    return page


def message_file_page_from_json(obj: Mapping[str, Any]) -> pb.MessageFilePage:
    """Convert an upstream page of message files to a stream's ``pb.MessageFilePage``."""
    page = pb.MessageFilePage()
    _fill_files(page.data, _fill_list_envelope(pb.ListMessageFilesResponse(), obj))
    return page


# ---------------------------------------------------------------------------------------------
# proto -> JSON
# ---------------------------------------------------------------------------------------------


def _annotation_to_json(a: pb.TextAnnotation) -> dict[str, Any]:
    kind = a.WhichOneof("kind")
    if kind == "file_citation":
        c = a.file_citation
        return {
            "type": "file_citation",
            "text": a.text,
            "file_citation": {"file_id": c.file_id, "quote": c.quote},
            "start_index": a.start_index,
            "end_index": a.end_index,
        }
    if kind == "file_path":
        return {
            "type": "file_path",
            "text": a.text,
            "file_path": {"file_id": a.file_path.file_id},
            "start_index": a.start_index,
            "end_index": a.end_index,
        }
    raise WireFormatError("annotation kind not set", "kind")


def _content_to_json(c: pb.MessageContent) -> dict[str, Any]:
    kind = c.WhichOneof("part")
    if kind == "text":
        t = c.text
        annotations = t.annotations
        return {
            "type": "text",
            "text": {
                "value": t.value,
                "annotations": _annotations_to_json(annotations) if annotations else [],
            },
        }
    if kind == "image_file":
        return {"type": "image_file", "image_file": {"file_id": c.image_file.file_id}}
    raise WireFormatError("content part kind not set", "type")


def _annotations_to_json(annotations: Any) -> list[dict[str, Any]]:
    try:
        return [_annotation_to_json(a) for a in annotations]
    except WireFormatError:
        for i, a in enumerate(annotations):
            try:
                _annotation_to_json(a)
            except WireFormatError as e:
                raise e._within("text", "annotations", i) from None
        raise  # pragma: no cover - defensive


def _contents_to_json(content: Any) -> list[dict[str, Any]]:
    try:
        return [_content_to_json(c) for c in content]
    except WireFormatError:
        for i, c in enumerate(content):
            try:
                _content_to_json(c)
            except WireFormatError as e:
                raise e._within("content", i) from None
        raise  # pragma: no cover - defensive


def message_to_json(msg: pb.Message) -> dict[str, Any]:
    """Render ``pb.Message`` as the upstream ``thread.message`` JSON object (schema key order)."""
    d: dict[str, Any] = {
        "id": msg.id,
        "object": msg.object,
        "created_at": msg.created_at,
        "thread_id": msg.thread_id,
    }
    if msg.HasField("status"):
        status = _STATUS_TO.get(msg.status)
        if status is None:
            raise WireFormatError("status not set or unknown", "status")
        d["status"] = status
    state = msg.WhichOneof("incomplete_details_state")
    if state is not None:
        if state == "incomplete_details":
            reason = _REASON_TO.get(msg.incomplete_details.reason)
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
    role = _ROLE_TO.get(msg.role)
    if role is None:
        raise WireFormatError("role not set or unknown", "role")
    d["role"] = role
    content = msg.content
    d["content"] = _contents_to_json(content) if content else []
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


def message_list_to_json(r: pb.ListMessagesResponse) -> dict[str, Any]:
    """Render ``pb.ListMessagesResponse`` as the upstream list page."""
    data = []
    for i, m in enumerate(r.data):
        try:
            data.append(message_to_json(m))
        except WireFormatError as e:
            raise e._within("data", i) from None
    return {
        "object": r.object,
        "data": data,
        "first_id": r.first_id if r.HasField("first_id") else None,
        "last_id": r.last_id if r.HasField("last_id") else None,
        "has_more": r.has_more,
    }


def message_file_list_to_json(r: pb.ListMessageFilesResponse) -> dict[str, Any]:
    """Render ``pb.ListMessageFilesResponse`` as the upstream list page."""
    return {
        "object": r.object,
        "data": [message_file_to_json(f) for f in r.data],
        "first_id": r.first_id if r.HasField("first_id") else None,
        "last_id": r.last_id if r.HasField("last_id") else None,
        "has_more": r.has_more,
    }
