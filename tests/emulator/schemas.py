"""Validate emulator answers against the spec documents it ships (``$ref``s resolved in place).

Two documents: the messages extract (``SPEC_PATH``) and the threads extract
(``THREADS_SPEC_PATH``). Each is registered under its own URI; ``spec=`` picks one (default: the
messages one, whose schemas the older tests name).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from gateway.emulator import SPEC_PATH, THREADS_SPEC_PATH

SPECS: dict[str, tuple[Path, str]] = {
    "messages": (SPEC_PATH, "urn:emulator:openapi-messages-v1"),
    "threads": (THREADS_SPEC_PATH, "urn:emulator:openapi-threads-v1"),
}

# The response schema of each operation's 200, by operation id: (spec, schema name).
RESPONSE_SCHEMAS = {
    "createThread": ("threads", "ThreadObject"),
    "getThread": ("threads", "ThreadObject"),
    "modifyThread": ("threads", "ThreadObject"),
    "deleteThread": ("threads", "DeleteThreadResponse"),
    "createMessage": ("messages", "MessageObject"),
    "getMessage": ("messages", "MessageObject"),
    "modifyMessage": ("messages", "MessageObject"),
    "listMessages": ("messages", "ListMessagesResponse"),
    "listMessageFiles": ("messages", "ListMessageFilesResponse"),
    "getMessageFile": ("messages", "MessageFileObject"),
}

# Objects the emulator always builds itself: their keys are exactly the schema's properties
# (the spec does not forbid extra keys, the real service sent none).
EXACT_KEYS = frozenset({"ThreadObject", "DeleteThreadResponse"})


@functools.cache
def spec(name: str = "messages") -> dict[str, Any]:
    with open(SPECS[name][0], encoding="utf-8") as f:
        return yaml.safe_load(f)


@functools.cache
def _registry() -> Registry:
    registry = Registry()
    for name, (_, uri) in SPECS.items():
        registry = registry.with_resource(uri, Resource.from_contents(spec(name), default_specification=DRAFT4))
    return registry


@functools.cache
def _validator(spec_name: str, name: str) -> OAS30Validator:
    uri = SPECS[spec_name][1]
    return OAS30Validator({"$ref": f"{uri}#/components/schemas/{name}"}, registry=_registry())


def schema(name: str, spec_name: str = "messages") -> dict[str, Any]:
    """components/schemas/<name> of one document, as written (no ``$ref`` resolution)."""
    return spec(spec_name)["components"]["schemas"][name]


def validate(instance: Any, schema_name: str, spec: str = "messages") -> None:
    """Raise jsonschema.ValidationError unless ``instance`` matches components/schemas/<name>."""
    _validator(spec, schema_name).validate(instance)


def validate_response(operation: str, status: int, body: Any) -> None:
    """A 200 must match the operation's response schema, anything else the ErrorResponse."""
    spec_name, name = RESPONSE_SCHEMAS[operation]
    if status != 200:
        validate(body, "ErrorResponse", spec_name)
        return
    validate(body, name, spec_name)
    if name in EXACT_KEYS:
        assert set(body) == set(schema(name, spec_name)["properties"]), body


def operation_ids(spec_name: str = "messages") -> dict[tuple[str, str], str]:
    """(METHOD, spec path) -> operationId, straight from the document."""
    result = {}
    for path, item in spec(spec_name)["paths"].items():
        for method, op in item.items():
            result[(method.upper(), path)] = op["operationId"]
    return result
