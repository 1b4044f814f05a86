"""Request checks per the spec schemas and NOTES.md limits, as OpenAI error envelopes.

Every 400 names the offending ``param`` the way the live API did (``role``, ``content``,
``file_ids``, ``metadata``, ``metadata.<key>`` for a bad value, ``messages[0].role`` inside a
thread create, ``limit``, ``order``, ``after``, ``before``) with the live API's ``code`` values
(``missing_required_parameter``, ``unknown_parameter``, ``invalid_type``, ``invalid_value``,
``empty_string``, ``string_above_max_length``, ``empty_array``, ``array_above_max_length``,
``object_above_max_properties``, ``integer_below_min_value``, ``integer_above_max_value``).

The checks are hand-written rather than driven by a JSON-schema engine because the error a
consumer sees (which ``param``, which message) is part of the contract being emulated; the
tests validate both sides against the spec document instead.

Authentication never echoes the presented key, not even masked: a rejected key in a response
body ends up in client logs, and the reliability plan (S6) forbids canary keys appearing anywhere.
Unknown *query* parameters are ignored (the SDK's ``extra_query`` passes through); unknown *body*
fields are rejected, as the live API did.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ApiError",
    "CreateMessage",
    "ListQuery",
    "check_auth",
    "check_beta",
    "error_body",
    "parse_json_body",
    "parse_list_query",
    "validate_create_message",
    "validate_create_thread",
    "validate_modify_message",
    "validate_modify_thread",
]

CONTENT_MAX = 256_000
FILE_IDS_MAX = 10
METADATA_MAX_PAIRS = 16
METADATA_KEY_MAX = 64
METADATA_VALUE_MAX = 512
LIMIT_MIN, LIMIT_MAX, LIMIT_DEFAULT = 1, 100, 20
_INTEGER_RE = re.compile(r"-?[0-9]{1,18}")

_BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
    "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not "
    "valid JSON. If you have trouble figuring out how to fix this, please contact us through our "
    "help center at help.openai.com.)"
)


def error_body(message: str, type_: str, param: str | None, code: str | None) -> dict[str, Any]:
    """The OpenAI error envelope."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


@dataclass
class ApiError(Exception):
    """An error answer: HTTP status plus the envelope fields."""

    status: int
    message: str
    param: str | None = None
    code: str | None = None
    type: str = "invalid_request_error"
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)


def _bad(param: str | None, message: str, code: str | None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _type_error(param: str, expected: str, value: Any) -> ApiError:
    return _bad(
        param,
        f"Invalid type for '{param}': expected {expected}, but got {_json_type(value)} instead.",
        "invalid_type",
    )


# ---------------------------------------------------------------------- headers


def check_auth(authorization: str | None, api_keys: Collection[str]) -> None:
    """401 unless ``Authorization: Bearer <key>`` carries one of ``api_keys``."""
    if not authorization or not authorization.startswith("Bearer ") or not authorization[7:].strip():
        raise ApiError(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization "
            "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password "
            "field (with blank username) if you're accessing the API from your browser and are "
            "prompted for a username and password. You can obtain an API key from "
            "https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )
    presented = authorization[7:].strip().encode()
    # Compare against every key without short-circuiting, so timing does not reveal which matched.
    matched = False
    for key in api_keys:
        matched |= hmac.compare_digest(presented, key.encode())
    if not matched:
        raise ApiError(
            401,
            "Incorrect API key provided. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )


def check_beta(header: str | None, beta: str) -> None:
    """400 ``invalid_beta`` unless the ``OpenAI-Beta`` header lists ``beta``."""
    if not header:
        raise _bad(
            None,
            "You must provide the 'OpenAI-Beta' header to access the Assistants API. Please try "
            f"again by setting the header 'OpenAI-Beta: {beta}'.",
            "invalid_beta",
        )
    if beta not in {token.strip() for token in header.split(",")}:
        raise _bad(
            None,
            f"Invalid 'OpenAI-Beta' header value. This server accepts 'OpenAI-Beta: {beta}'.",
            "invalid_beta",
        )


# ---------------------------------------------------------------------- bodies


def parse_json_body(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object; an empty body is ``{}`` (all bodies here are optional
    objects or have required fields reported individually)."""
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _bad(None, _BAD_JSON, None) from None
    if not isinstance(body, dict):
        raise _bad(
            None,
            f"Invalid type for request body: expected an object, but got {_json_type(body)} instead.",
            "invalid_type",
        )
    return body


def _reject_unknown(body: Mapping[str, Any], allowed: Collection[str], prefix: str) -> None:
    for name in body:
        if name not in allowed:
            raise _bad(f"{prefix}{name}", f"Unknown parameter: '{prefix}{name}'.", "unknown_parameter")


def _validate_metadata(value: Any, param: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _type_error(param, "an object", value)
    if len(value) > METADATA_MAX_PAIRS:
        raise _bad(
            param,
            f"Invalid '{param}': too many properties. Expected an object with at most "
            f"{METADATA_MAX_PAIRS} properties, but got an object with {len(value)} properties instead.",
            "object_above_max_properties",
        )
    for key, item in value.items():
        if len(key) > METADATA_KEY_MAX:
            raise _bad(
                param,
                f"Invalid '{param}': metadata key too long. Expected keys with maximum length "
                f"{METADATA_KEY_MAX}, but got a key with length {len(key)} instead.",
                "string_above_max_length",
            )
        item_param = f"{param}.{key}"
        if not isinstance(item, str):
            raise _type_error(item_param, "a string", item)
        if len(item) > METADATA_VALUE_MAX:
            raise _bad(
                item_param,
                f"Invalid '{item_param}': string too long. Expected a string with maximum length "
                f"{METADATA_VALUE_MAX}, but got a string with length {len(item)} instead.",
                "string_above_max_length",
            )
    return dict(value)


@dataclass(frozen=True, slots=True)
class CreateMessage:
    """A validated create-message body."""

    role: str
    content: str
    file_ids: list[str] | None
    metadata: dict[str, str] | None


_CREATE_FIELDS = ("role", "content", "file_ids", "metadata")


def validate_create_message(body: Mapping[str, Any], prefix: str = "") -> CreateMessage:
    """Check a CreateMessageRequest; ``prefix`` (``messages[0].``) when nested in a thread create."""
    _reject_unknown(body, _CREATE_FIELDS, prefix)
    for name in ("role", "content"):
        if name not in body:
            raise _bad(
                f"{prefix}{name}",
                f"Missing required parameter: '{prefix}{name}'.",
                "missing_required_parameter",
            )
    role = body["role"]
    if not isinstance(role, str):
        raise _type_error(f"{prefix}role", "a string", role)
    if role not in ("user", "assistant"):
        raise _bad(
            f"{prefix}role",
            f"Invalid value: '{role[:64]}'. Supported values are: 'user' and 'assistant'.",
            "invalid_value",
        )
    content = body["content"]
    param = f"{prefix}content"
    if not isinstance(content, str):
        raise _type_error(param, "a string", content)
    if not content:
        raise _bad(
            param,
            f"Invalid '{param}': empty string. Expected a string with minimum length 1, but got "
            "an empty string instead.",
            "empty_string",
        )
    if len(content) > CONTENT_MAX:
        raise _bad(
            param,
            f"Invalid '{param}': string too long. Expected a string with maximum length "
            f"{CONTENT_MAX}, but got a string with length {len(content)} instead.",
            "string_above_max_length",
        )
    file_ids = body.get("file_ids")
    param = f"{prefix}file_ids"
    if "file_ids" in body:
        if not isinstance(file_ids, list):
            raise _type_error(param, "an array", file_ids)
        if not file_ids:
            raise _bad(
                param,
                f"Invalid '{param}': empty array. Expected an array with minimum length 1, but got "
                "an empty array instead.",
                "empty_array",
            )
        if len(file_ids) > FILE_IDS_MAX:
            raise _bad(
                param,
                f"Invalid '{param}': array too long. Expected an array with maximum length "
                f"{FILE_IDS_MAX}, but got an array with length {len(file_ids)} instead.",
                "array_above_max_length",
            )
        for i, file_id in enumerate(file_ids):
            if not isinstance(file_id, str):
                raise _type_error(f"{param}[{i}]", "a string", file_id)
    metadata = _validate_metadata(body.get("metadata"), f"{prefix}metadata")
    return CreateMessage(role=role, content=content, file_ids=file_ids, metadata=metadata)


def validate_modify_message(body: Mapping[str, Any]) -> dict[str, str] | None:
    """Check a ModifyMessageRequest; ``None`` means leave the metadata unchanged."""
    _reject_unknown(body, ("metadata",), "")
    return _validate_metadata(body.get("metadata"), "metadata")


def validate_create_thread(
    body: Mapping[str, Any],
) -> tuple[list[CreateMessage], dict[str, str] | None]:
    """Check a v1 CreateThreadRequest (``messages``, ``metadata``); every message is checked
    before anything is created, so a bad ``messages[i]`` creates nothing. ``messages`` is not
    nullable in the spec (``metadata`` is), so ``"messages": null`` is an ``invalid_type``."""
    _reject_unknown(body, ("messages", "metadata"), "")
    raw_messages = body.get("messages")
    messages: list[CreateMessage] = []
    if "messages" in body:
        if not isinstance(raw_messages, list):
            raise _type_error("messages", "an array", raw_messages)
        for i, item in enumerate(raw_messages):
            if not isinstance(item, dict):
                raise _type_error(f"messages[{i}]", "an object", item)
            messages.append(validate_create_message(item, prefix=f"messages[{i}]."))
    return messages, _validate_metadata(body.get("metadata"), "metadata")


def validate_modify_thread(body: Mapping[str, Any]) -> dict[str, str] | None:
    """Check a ModifyThreadRequest (only ``metadata``); ``None`` means leave it unchanged."""
    _reject_unknown(body, ("metadata",), "")
    return _validate_metadata(body.get("metadata"), "metadata")


# ---------------------------------------------------------------------- list queries


@dataclass(frozen=True, slots=True)
class ListQuery:
    """Validated list parameters."""

    limit: int = LIMIT_DEFAULT
    order: str = "desc"
    after: str | None = None
    before: str | None = None
    run_id: str | None = None


def parse_list_query(query: Mapping[str, str], *, allow_run_id: bool) -> ListQuery:
    """Check ``limit`` (integer 1..100), ``order`` (asc|desc); pass the cursors through."""
    limit = LIMIT_DEFAULT
    if "limit" in query:
        raw = query["limit"]
        # Strict digits: Python's int() would also accept " 5", "+5" and "1_0".
        if not _INTEGER_RE.fullmatch(raw):
            raise _bad(
                "limit",
                "Invalid type for 'limit': expected an integer, but got a string instead.",
                "invalid_type",
            )
        limit = int(raw)
        if limit < LIMIT_MIN:
            raise _bad(
                "limit",
                f"Invalid 'limit': integer below minimum value. Expected a value >= {LIMIT_MIN}, "
                f"but got {limit} instead.",
                "integer_below_min_value",
            )
        if limit > LIMIT_MAX:
            raise _bad(
                "limit",
                f"Invalid 'limit': integer above maximum value. Expected a value <= {LIMIT_MAX}, "
                f"but got {limit} instead.",
                "integer_above_max_value",
            )
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise _bad(
            "order",
            f"Invalid value: '{order[:64]}'. Supported values are: 'asc' and 'desc'.",
            "invalid_value",
        )
    return ListQuery(
        limit=limit,
        order=order,
        after=query.get("after"),
        before=query.get("before"),
        run_id=query.get("run_id") if allow_run_id else None,
    )
