"""HTTP request → the contract's protobuf request: JSON bodies, query strings, headers.

This module only translates shapes (JSON types, enum names, integer syntax); the rules about
values (ranges, lengths, id syntax, required fields) stay in ``gateway.operations.validation``,
which runs on the resulting message exactly as it does for gRPC. Every error here is a 400
``invalid_request_error`` whose ``param`` names the field, like the upstream's own.

What the SDK's per-call options become:
* ``extra_query`` – query parameters the route does not model pass through to the upstream, on
  every route (GETs and POSTs alike);
* ``extra_body`` – refused (400 ``unknown_parameter`` naming the field), as the upstream refuses
  unknown fields; the gRPC face refuses ``options.extra_body`` the same way;
* ``extra_headers`` – headers named in ``upstream.allowed_extra_headers`` pass through; that is
  the call pipeline's header pass (``gateway.pipeline.opening``), the same for gRPC metadata.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from starlette.requests import ClientDisconnect, Request

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from gateway.enums import ORDER, ROLE
from gateway.errors import Cancelled, FieldViolation, InvalidArgument
from gateway.headers import BETA_VALUE, OPENAI_BETA

#: Largest request body read. A maximal create (256,000 characters, each escaped as ``\\uXXXX``,
#: plus 10 file ids and 16 metadata pairs) stays below it.
MAX_BODY_BYTES = 2 * 1024 * 1024
#: Largest value an int32 request field holds.
_INT32_MAX = 2**31 - 1

_INTEGER = re.compile(r"-?[0-9]{1,12}")
_ORDERS = ORDER.from_wire
_ROLES = ROLE.from_wire
_CREATE_FIELDS = ("role", "content", "file_ids", "metadata")
_UPDATE_FIELDS = ("metadata",)
_LIST_FIELDS = frozenset({"limit", "order", "after", "before", "run_id"})
_STREAM_FIELDS = frozenset({"max_items"})
_JSON_TYPES = ((type(None), "null"), (bool, "a boolean"), (int, "an integer"),
               (float, "a decimal"), (str, "a string"), (list, "an array"), (dict, "an object"))


def _bad(param: str | None, message: str, code: str) -> InvalidArgument:
    violations = [FieldViolation(param, message)] if param else []
    return InvalidArgument(message, reason=code.upper(), field_violations=violations)


def _json_type(value: Any) -> str:
    for cls, name in _JSON_TYPES:
        if isinstance(value, cls):
            return name
    return "an unknown type"  # pragma: no cover - json.loads produces only the types above


def _type_error(param: str, expected: str, value: Any) -> InvalidArgument:
    return _bad(param, f"Invalid type for '{param}': expected {expected}, but got "
                       f"{_json_type(value)} instead.", "invalid_type")


# -- headers -------------------------------------------------------------------------------------


def check_beta(headers: Mapping[str, str]) -> None:
    """400 ``invalid_beta`` unless ``OpenAI-Beta`` lists ``assistants=v1`` (as the upstream)."""
    value = headers.get(OPENAI_BETA)
    if not value:
        raise _bad(None, "You must provide the 'OpenAI-Beta' header to access the Assistants "
                         f"API. Please try again by setting the header 'OpenAI-Beta: "
                         f"{BETA_VALUE}'.", "invalid_beta")
    if BETA_VALUE not in {token.strip() for token in value.split(",")}:
        raise _bad(None, f"Invalid 'OpenAI-Beta' header value. This gateway accepts "
                         f"'OpenAI-Beta: {BETA_VALUE}'.", "invalid_beta")


def _options(query: Iterable[tuple[str, str]] = (),
             modelled: Collection[str] = ()) -> pb.RequestOptions:
    """Query parameters the route does not model, as ``options.extra_query``."""
    options = pb.RequestOptions()
    for name, value in query:
        if name not in modelled:
            options.extra_query[name] = value
    return options


# -- bodies --------------------------------------------------------------------------------------

_BAD_JSON = ("We could not parse the JSON body of your request. The gateway expects a JSON "
             "object, but what was sent was not valid JSON.")


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


async def read_json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object. An empty body is ``{}``; anything else must be
    ``application/json`` and at most ``MAX_BODY_BYTES``, read no further than that."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large()
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise _too_large()
            chunks.append(chunk)
    except ClientDisconnect:
        # Gone mid-body (or its body timed out): nobody to answer; not the gateway's failure.
        raise Cancelled("the client disconnected before its request body arrived") from None
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise _bad(None, "The request body must be JSON, sent with 'Content-Type: "
                         "application/json'.", "invalid_content_type")
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _bad(None, _BAD_JSON, "invalid_json") from None
    if not isinstance(body, dict):
        raise _bad(None, "Invalid type for request body: expected an object, but got "
                         f"{_json_type(body)} instead.", "invalid_type")
    return body


def _too_large() -> InvalidArgument:
    return _bad(None, f"The request body is larger than {MAX_BODY_BYTES} bytes.",
                "request_too_large")


def _reject_unknown(body: Mapping[str, Any], known: Collection[str]) -> None:
    for name in body:
        if name not in known:
            shown = name[:64]
            raise _bad(shown, f"Unknown parameter: '{shown}'.", "unknown_parameter")


def _text(param: str, value: Any, expected: str = "a string") -> str:
    """A JSON string protobuf can hold (JSON may spell lone surrogates, which it cannot)."""
    if not isinstance(value, str):
        raise _type_error(param, expected, value)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad(param, f"Invalid '{param}': the string is not valid Unicode.",
                   "invalid_value") from None
    return value


def _metadata(value: Any, target: pb.Metadata) -> None:
    if value is None:
        # The spec allows null, the contract cannot carry it (unset = not sent): refused rather
        # than dropped, so no request goes upstream other than the one the consumer wrote.
        raise _bad("metadata", "Invalid type for 'metadata': expected an object, but got null "
                               "instead. Leave 'metadata' out to send none.", "invalid_type")
    if not isinstance(value, dict):
        raise _type_error("metadata", "an object", value)
    for key, item in value.items():
        # Keys are user content: the param stops at "metadata".
        _text("metadata", key, "an object of strings")
        _text("metadata", item, "an object of strings")
    target.entries.update(value)
    target.SetInParent()


def create_message_request(
    thread_id: str, body: Mapping[str, Any], query: Iterable[tuple[str, str]] = (),
) -> pb.CreateMessageRequest:
    _reject_unknown(body, _CREATE_FIELDS)
    req = pb.CreateMessageRequest(thread_id=thread_id, options=_options(query))
    if "role" in body:
        role = body["role"]
        if not isinstance(role, str):
            raise _type_error("role", "a string", role)
        if role not in _ROLES:
            raise _bad("role", f"Invalid value: '{role[:64]}'. Supported values are: 'user' and "
                               "'assistant'.", "invalid_value")
        req.role = _ROLES[role]
    if "content" in body:
        req.content = _text("content", body["content"])
    if "file_ids" in body:
        # Refused here, as the upstream refuses them: the proto cannot carry an empty array (an
        # empty repeated field is no field), and null is not a value of the schema's array.
        file_ids = body["file_ids"]
        if not isinstance(file_ids, list):
            raise _type_error("file_ids", "an array of strings", file_ids)
        if not file_ids:
            raise _bad("file_ids", "Invalid 'file_ids': empty array. Expected an array with "
                                   "minimum length 1, but got an empty array instead.",
                       "empty_array")
        req.file_ids.extend(_text(f"file_ids[{i}]", f) for i, f in enumerate(file_ids))
    if "metadata" in body:
        _metadata(body["metadata"], req.metadata)
    return req


def update_message_request(
    thread_id: str, message_id: str, body: Mapping[str, Any],
    query: Iterable[tuple[str, str]] = (),
) -> pb.UpdateMessageRequest:
    _reject_unknown(body, _UPDATE_FIELDS)
    req = pb.UpdateMessageRequest(thread_id=thread_id, message_id=message_id,
                                  options=_options(query))
    if "metadata" in body:
        _metadata(body["metadata"], req.metadata)
    return req


def get_message_request(
    thread_id: str, message_id: str, query: Iterable[tuple[str, str]] = (),
) -> pb.GetMessageRequest:
    return pb.GetMessageRequest(thread_id=thread_id, message_id=message_id,
                                options=_options(query))


def get_message_file_request(
    thread_id: str, message_id: str, file_id: str, query: Iterable[tuple[str, str]] = (),
) -> pb.GetMessageFileRequest:
    return pb.GetMessageFileRequest(thread_id=thread_id, message_id=message_id, file_id=file_id,
                                    options=_options(query))


# -- list queries --------------------------------------------------------------------------------


def _positive_int(query: Mapping[str, str], name: str) -> int:
    """A query integer of at least 1; 0 is refused because the contract reads 0 as "unset"."""
    raw = query[name]
    if not _INTEGER.fullmatch(raw):
        raise _bad(name, f"Invalid type for '{name}': expected an integer, but got a string "
                         "instead.", "invalid_type")
    value = int(raw)
    if value < 1:
        raise _bad(name, f"Invalid '{name}': integer below minimum value. Expected a value >= 1, "
                         f"but got {value} instead.", "integer_below_min_value")
    # Above int32 the proto cannot hold it; the shared validation reports any value over 100.
    return min(value, _INT32_MAX)


def _page_fields(query: Mapping[str, str], fields: dict[str, Any]) -> None:
    if "limit" in query:
        fields["limit"] = _positive_int(query, "limit")
    if "order" in query:
        order = query["order"]
        if order not in _ORDERS:
            raise _bad("order", f"Invalid value: '{order[:64]}'. Supported values are: 'asc' and "
                                "'desc'.", "invalid_value")
        fields["order"] = _ORDERS[order]
    for name in ("after", "before"):
        if name in query:
            fields[name] = query[name]


def list_messages_request(
    thread_id: str, query: Mapping[str, str], items: Iterable[tuple[str, str]], *, stream: bool,
) -> pb.ListMessagesRequest | pb.StreamMessagesRequest:
    fields: dict[str, Any] = {"thread_id": thread_id}
    _page_fields(query, fields)
    if "run_id" in query:
        fields["run_id"] = query["run_id"]
    modelled: Collection[str] = _LIST_FIELDS
    if stream:
        modelled = _LIST_FIELDS | _STREAM_FIELDS
        if "max_items" in query:
            fields["max_items"] = _positive_int(query, "max_items")
    options = _options(items, modelled)
    cls = pb.StreamMessagesRequest if stream else pb.ListMessagesRequest
    return cls(options=options, **fields)


def list_message_files_request(
    thread_id: str, message_id: str, query: Mapping[str, str], items: Iterable[tuple[str, str]],
    *, stream: bool,
) -> pb.ListMessageFilesRequest | pb.StreamMessageFilesRequest:
    fields: dict[str, Any] = {"thread_id": thread_id, "message_id": message_id}
    _page_fields(query, fields)
    # run_id is not a filter of files; the upstream ignores it, and so does the gateway.
    modelled: Collection[str] = _LIST_FIELDS
    if stream:
        modelled = _LIST_FIELDS | _STREAM_FIELDS
        if "max_items" in query:
            fields["max_items"] = _positive_int(query, "max_items")
    options = _options(items, modelled)
    cls = pb.StreamMessageFilesRequest if stream else pb.ListMessageFilesRequest
    return cls(options=options, **fields)


# -- threads -------------------------------------------------------------------------------------

_THREAD_FIELDS = ("messages", "metadata")


def create_thread_request(
    body: Mapping[str, Any], query: Iterable[tuple[str, str]] = (),
) -> pb.CreateThreadRequest:
    _reject_unknown(body, _THREAD_FIELDS)
    req = pb.CreateThreadRequest(options=_options(query))
    messages = body.get("messages")
    if messages is not None:
        if not isinstance(messages, list):
            raise _type_error("messages", "an array of objects", messages)
        for i, item in enumerate(messages):
            if not isinstance(item, dict):
                raise _type_error(f"messages[{i}]", "an object", item)
            try:
                one = create_message_request("", item)
            except InvalidArgument as exc:
                raise _prefixed(exc, f"messages[{i}]") from None
            req.messages.add(role=one.role, content=one.content, file_ids=one.file_ids,
                             metadata=one.metadata if one.HasField("metadata") else None)
    if "metadata" in body:
        _metadata(body["metadata"], req.metadata)
    return req


def _prefixed(exc: InvalidArgument, prefix: str) -> InvalidArgument:
    """An error of one of CreateThread's messages, naming ``messages[i].<field>``."""
    violations = [FieldViolation(f"{prefix}.{v.field}", v.description)
                  for v in exc.details.field_violations]
    return InvalidArgument(f"{prefix}: {exc.message}", reason=exc.details.reason,
                           field_violations=violations or [FieldViolation(prefix, exc.message)])


def update_thread_request(
    thread_id: str, body: Mapping[str, Any], query: Iterable[tuple[str, str]] = (),
) -> pb.UpdateThreadRequest:
    _reject_unknown(body, ("metadata",))
    req = pb.UpdateThreadRequest(thread_id=thread_id, options=_options(query))
    if "metadata" in body:
        _metadata(body["metadata"], req.metadata)
    return req


def thread_request(
    cls: type[Any], thread_id: str, query: Iterable[tuple[str, str]] = (),
) -> Any:
    """GetThread, DeleteThread or AdoptThread: the id and pass-through query parameters."""
    return cls(thread_id=thread_id, options=_options(query))
