"""Request validation, run before any cache or upstream work.

Every rule names the request field it checks, so both faces can answer INVALID_ARGUMENT / HTTP 400
with a ``BadRequest`` field violation. All violations of a request are collected, not just the
first one.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from gateway.enums import ORDER, ROLE
from gateway.errors import FieldViolation, InvalidArgument
from gateway.headers import FORBIDDEN_EXTRA, MAX_EXTRA_HEADER_CHARS

MAX_ID_LENGTH = 256
MAX_LIMIT = 100
MAX_CONTENT_CHARS = 256_000
MAX_FILE_IDS = 10
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512
#: Pass-through query parameters: how many, and how long a name and a value may be.
MAX_EXTRA_QUERY_PARAMS = 16
MAX_EXTRA_QUERY_NAME_CHARS = 64
MAX_EXTRA_QUERY_VALUE_CHARS = 2048

# Upstream ids are opaque but always made of these characters (thread_…, msg_…, file-…). An
# allow-list keeps slashes, dots-only segments, control characters, '%', '?', '#', whitespace and
# Unicode look-alikes out of the URL path before percent-encoding even runs.
_ID_CHARS = re.compile(r"[A-Za-z0-9_.:\-]+")


def valid_id(value: str) -> bool:
    """``check_id``'s rules for a present id at a glance (1 to MAX_ID_LENGTH allowed characters,
    not only dots, no ".."): a read of valid ids passes on this, while a request it refuses takes
    the field-by-field checks, which say what is wrong. The length is checked first, so only
    ids of a valid length are kept (a kept id of megabytes would be a memory leak to order)."""
    return 0 < len(value) <= MAX_ID_LENGTH and _valid_chars(value)


@functools.lru_cache(maxsize=8192)
def _valid_chars(value: str) -> bool:
    """Kept per id: hot ids repeat on every read, and the look-up is a hash of the id where the
    checks cost a regex scan (hit path, hot loop: 4.0 µs for ``check_get`` through the field
    checks, ~1 µs through this). Bounded: 8,192 ids of at most MAX_ID_LENGTH, ~2.5 MiB."""
    return _ID_CHARS.fullmatch(value) is not None and ".." not in value and bool(value.strip("."))


_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~\-]+")

#: Metadata key of the idempotency marker keyed creates carry upstream (see idempotency.py). It
#: is reserved on every write: a marker set by anyone but the gateway's keyed create could make
#: another consumer's recovery look-up take the marked message for its own.
MARKER_KEY = "gateway_idempotency_key"

#: Unspecified is the upstream default: no ``order`` parameter is sent.
ORDER_NAMES = {pb.ORDER_UNSPECIFIED: None, **ORDER.to_wire}
ROLE_NAMES = ROLE.to_wire


class Violations:
    """Collects field violations and raises them as one InvalidArgument."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.items.append(FieldViolation(field, description))

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgument.for_fields(self.items)


def check_id(v: Violations, field: str, value: str, *, required: bool = True) -> None:
    if not value:
        if required:
            v.add(field, "is required")
        return
    if len(value) > MAX_ID_LENGTH:
        v.add(field, f"must be at most {MAX_ID_LENGTH} characters")
    elif not value.strip("."):
        # '.' and '..' are path segments, not ids: the URL they are put in would resolve them
        # away (an update of message '.' became a create on the thread).
        v.add(field, "must not be only dots")
    elif ".." in value or not _ID_CHARS.fullmatch(value):
        v.add(field, "must contain only letters, digits, '_', '-', '.' or ':' (and no '..')")


def check_page(
    v: Violations, *, limit: int, order: int, after: str, before: str, run_id: str | None = None
) -> None:
    if not 0 <= limit <= MAX_LIMIT:
        v.add("limit", f"must be between 1 and {MAX_LIMIT}, or 0 for the default")
    if order not in ORDER_NAMES:
        v.add("order", "must be ORDER_ASC or ORDER_DESC (or unspecified for the default)")
    check_id(v, "after", after, required=False)
    check_id(v, "before", before, required=False)
    if run_id is not None:
        check_id(v, "run_id", run_id, required=False)


def check_metadata(v: Violations, field: str, metadata: Mapping[str, str]) -> None:
    if len(metadata) > MAX_METADATA_PAIRS:
        v.add(field, f"may have at most {MAX_METADATA_PAIRS} pairs")
    for key, value in metadata.items():
        if not key or len(key) > MAX_METADATA_KEY_CHARS:
            v.add(f"{field}[{key[:MAX_METADATA_KEY_CHARS]!r}]",
                  f"keys must be 1 to {MAX_METADATA_KEY_CHARS} characters")
        if len(value) > MAX_METADATA_VALUE_CHARS:
            v.add(f"{field}[{key[:MAX_METADATA_KEY_CHARS]!r}]",
                  f"values must be at most {MAX_METADATA_VALUE_CHARS} characters")


def check_options(
    v: Violations,
    options: pb.RequestOptions,
    *,
    allowed_headers: Iterable[str],
    modelled_query: Iterable[str] = (),
    modelled_body: Iterable[str] | None = None,
) -> None:
    """Per-call options; ``modelled_body`` None means the operation sends no body.

    ``extra_body`` is refused whatever it holds, naming the field: a field the request models
    belongs in that field, and the upstream refuses fields it does not know (so forwarding one
    would only cost an upstream round trip to learn the same). The REST face refuses unknown
    body fields with the same words (``gateway.rest.requests``)."""
    if not options.ByteSize():
        return  # the usual case: no options at all (an empty message encodes to 0 bytes)
    allowed = {h.lower() for h in allowed_headers} - FORBIDDEN_EXTRA
    for name, value in options.extra_headers.items():
        field = f"options.extra_headers[{name[:64]!r}]"
        if not _HEADER_NAME.fullmatch(name):
            v.add(field, "is not a valid header name")
        elif name.lower() not in allowed:
            v.add(field, "is not a header the gateway lets consumers set")
        else:
            check_header_value(v, field, value)
    if len(options.extra_query) > MAX_EXTRA_QUERY_PARAMS:
        v.add("options.extra_query", f"may have at most {MAX_EXTRA_QUERY_PARAMS} parameters")
    for name, value in options.extra_query.items():
        field = f"options.extra_query[{name[:64]!r}]"
        if name in modelled_query:
            v.add(field, "duplicates a request field; set that")
        elif not name:
            v.add("options.extra_query", "keys must not be empty")
        elif len(name) > MAX_EXTRA_QUERY_NAME_CHARS:
            v.add(field, f"names must be at most {MAX_EXTRA_QUERY_NAME_CHARS} characters")
        elif len(value) > MAX_EXTRA_QUERY_VALUE_CHARS:
            v.add(field, f"values must be at most {MAX_EXTRA_QUERY_VALUE_CHARS} characters")
    if options.HasField("extra_body"):
        if modelled_body is None:
            v.add("options.extra_body", "this operation sends no request body")
        for name in options.extra_body.fields:
            shown = f"options.extra_body[{name[:64]!r}]"
            if modelled_body is not None and name in modelled_body:
                v.add(shown, "duplicates a request field; set that")
            elif modelled_body is not None:
                v.add(shown, "is not a parameter of this operation (unknown parameter)")


def check_header_value(v: Violations, field: str, value: str) -> None:
    """A header value the upstream request can carry: visible ASCII and spaces, bounded."""
    if len(value) > MAX_EXTRA_HEADER_CHARS:
        v.add(field, f"must be at most {MAX_EXTRA_HEADER_CHARS} characters")
    elif not (value.isascii() and value.isprintable()):
        v.add(field, "must be printable ASCII (no control characters)")


def check_message_body(
    v: Violations, prefix: str, req: pb.CreateMessageRequest | pb.ThreadMessage
) -> None:
    """The fields of a message to create (CreateMessage, or one of CreateThread's messages,
    whose fields are named ``messages[i].<field>``)."""
    if req.role == pb.ROLE_UNSPECIFIED:
        v.add(prefix + "role", "is required: ROLE_USER or ROLE_ASSISTANT")
    elif req.role not in ROLE_NAMES:
        v.add(prefix + "role", "must be ROLE_USER or ROLE_ASSISTANT")
    if not req.content:
        v.add(prefix + "content", "is required and must not be empty")
    elif len(req.content) > MAX_CONTENT_CHARS:
        v.add(prefix + "content", f"must be at most {MAX_CONTENT_CHARS} characters")
    if len(req.file_ids) > MAX_FILE_IDS:
        v.add(prefix + "file_ids", f"may have at most {MAX_FILE_IDS} entries")
    for i, file_id in enumerate(req.file_ids):
        check_id(v, f"{prefix}file_ids[{i}]", file_id)
    if req.HasField("metadata"):
        check_metadata(v, prefix + "metadata", req.metadata.entries)


def check_create(req: pb.CreateMessageRequest, allowed_headers: Iterable[str]) -> None:
    v = Violations()
    check_id(v, "thread_id", req.thread_id)
    check_message_body(v, "", req)
    if req.request_id and (len(req.request_id) > MAX_ID_LENGTH or not req.request_id.isprintable()):
        v.add("request_id", f"must be printable and at most {MAX_ID_LENGTH} characters")
    check_options(v, req.options, allowed_headers=allowed_headers,
                  modelled_body=("role", "content", "file_ids", "metadata"))
    v.raise_if_any()


def check_get(req: pb.GetMessageRequest, allowed_headers: Iterable[str]) -> None:
    if valid_id(req.thread_id) and valid_id(req.message_id) and not req.HasField("options"):
        return  # the usual request: the checks below would find nothing
    v = Violations()
    check_id(v, "thread_id", req.thread_id)
    check_id(v, "message_id", req.message_id)
    check_options(v, req.options, allowed_headers=allowed_headers)
    v.raise_if_any()


def check_update(req: pb.UpdateMessageRequest, allowed_headers: Iterable[str]) -> None:
    v = Violations()
    check_id(v, "thread_id", req.thread_id)
    check_id(v, "message_id", req.message_id)
    if req.HasField("metadata"):
        check_metadata(v, "metadata", req.metadata.entries)
        if MARKER_KEY in req.metadata.entries:
            v.add(f"metadata.{MARKER_KEY}", "is reserved by the gateway")
    check_options(v, req.options, allowed_headers=allowed_headers, modelled_body=("metadata",))
    v.raise_if_any()


LIST_QUERY = ("limit", "order", "after", "before", "run_id")


def check_list_messages(
    req: pb.ListMessagesRequest | pb.StreamMessagesRequest, allowed_headers: Iterable[str]
) -> None:
    v = Violations()
    check_id(v, "thread_id", req.thread_id)
    check_page(v, limit=req.limit, order=req.order, after=req.after, before=req.before,
               run_id=req.run_id)
    if isinstance(req, pb.StreamMessagesRequest) and req.max_items < 0:
        v.add("max_items", "must be 0 (no cap) or more")
    check_options(v, req.options, allowed_headers=allowed_headers, modelled_query=LIST_QUERY)
    v.raise_if_any()


def check_get_file(req: pb.GetMessageFileRequest, allowed_headers: Iterable[str]) -> None:
    if (valid_id(req.thread_id) and valid_id(req.message_id) and valid_id(req.file_id)
            and not req.HasField("options")):
        return
    v = Violations()
    check_id(v, "thread_id", req.thread_id)
    check_id(v, "message_id", req.message_id)
    check_id(v, "file_id", req.file_id)
    check_options(v, req.options, allowed_headers=allowed_headers)
    v.raise_if_any()


def check_list_files(
    req: pb.ListMessageFilesRequest | pb.StreamMessageFilesRequest, allowed_headers: Iterable[str]
) -> None:
    v = Violations()
    check_id(v, "thread_id", req.thread_id)
    check_id(v, "message_id", req.message_id)
    check_page(v, limit=req.limit, order=req.order, after=req.after, before=req.before)
    if isinstance(req, pb.StreamMessageFilesRequest) and req.max_items < 0:
        v.add("max_items", "must be 0 (no cap) or more")
    check_options(v, req.options, allowed_headers=allowed_headers, modelled_query=LIST_QUERY)
    v.raise_if_any()
