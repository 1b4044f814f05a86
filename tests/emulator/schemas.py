"""Validate emulator answers against the spec document it ships (``$ref``s resolved in place)."""

from __future__ import annotations

import functools
from typing import Any

import yaml
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from gateway.emulator import SPEC_PATH

SPEC_URI = "urn:emulator:openapi-messages-v1"

# The response schema of each operation's 200, by operation id.
RESPONSE_SCHEMAS = {
    "createMessage": "MessageObject",
    "getMessage": "MessageObject",
    "modifyMessage": "MessageObject",
    "listMessages": "ListMessagesResponse",
    "listMessageFiles": "ListMessageFilesResponse",
    "getMessageFile": "MessageFileObject",
}

# createThread is not in the extract; this is the v1 Thread object the SDK parses.
THREAD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "object", "created_at", "metadata"],
    "properties": {
        "id": {"type": "string", "pattern": "^thread_[A-Za-z0-9]{24}$"},
        "object": {"type": "string", "enum": ["thread"]},
        "created_at": {"type": "integer"},
        "metadata": {"type": "object", "nullable": True},
    },
}


@functools.cache
def spec() -> dict[str, Any]:
    with open(SPEC_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


@functools.cache
def _registry() -> Registry:
    return Registry().with_resource(SPEC_URI, Resource.from_contents(spec(), default_specification=DRAFT4))


@functools.cache
def _validator(name: str) -> OAS30Validator:
    return OAS30Validator({"$ref": f"{SPEC_URI}#/components/schemas/{name}"}, registry=_registry())


def validate(instance: Any, schema_name: str) -> None:
    """Raise jsonschema.ValidationError unless ``instance`` matches components/schemas/<name>."""
    _validator(schema_name).validate(instance)


def validate_response(operation: str, status: int, body: Any) -> None:
    """A 200 must match the operation's response schema, anything else the ErrorResponse."""
    if status != 200:
        validate(body, "ErrorResponse")
    elif operation == "createThread":
        OAS30Validator(THREAD_SCHEMA).validate(body)
    else:
        validate(body, RESPONSE_SCHEMAS[operation])


def operation_ids() -> dict[tuple[str, str], str]:
    """(METHOD, spec path) -> operationId, straight from the document."""
    result = {}
    for path, item in spec()["paths"].items():
        for method, op in item.items():
            result[(method.upper(), path)] = op["operationId"]
    return result
