"""The upstream's JSON schema as tables, and the walker that names where a document breaks it.

``decode`` builds protos straight from the JSON and lets protobuf refuse wrong scalar types; only
when that fails does it ask ``violation`` for the field and the reason. These tables are therefore
the one statement of what a valid document is: every rule (required keys, JSON types, enum
values, ranges, representable strings and integers) is written here once, and the error messages
come from here. Rules never put a value into a message, only JSON types and field names.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.enums import (
    ANNOTATION_TYPE,
    CONTENT_PART_TYPE,
    INCOMPLETE_REASON,
    MESSAGE_STATUS,
    ROLE,
    WireNames,
)
from gateway.upstream.wire.drift import json_text
from gateway.upstream.wire.errors import INT64_MAX, INT64_MIN, WireFormatError, expected

Path = tuple[str | int, ...]

_MISSING: Any = object()


def is_object(value: Any) -> bool:
    return type(value) is dict or isinstance(value, Mapping)


def is_array(value: Any) -> bool:
    return type(value) is list or isinstance(value, (list, tuple))


class Rule(ABC):
    """What one JSON value must be. ``expected`` names the JSON type(s) it accepts."""

    expected: str = ""

    def check(self, value: Any, path: Path) -> None:
        """Raise ``WireFormatError`` at ``path`` unless ``value`` fits."""
        if not self.is_type(value):
            raise expected(self.expected, value, *path)
        self.check_value(value, path)

    @abstractmethod
    def is_type(self, value: Any) -> bool:
        """Whether ``value`` has the JSON type this rule accepts."""

    def check_value(self, value: Any, path: Path) -> None:
        """Constraints beyond the JSON type (``value`` has the right type)."""


class String(Rule):
    expected = "a string"

    def is_type(self, value: Any) -> bool:
        return type(value) is str

    def check_value(self, value: Any, path: Path) -> None:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise WireFormatError("string is not valid Unicode (lone surrogate)", *path) from None


class Integer(Rule):
    """An int64 (``bool`` is not an integer, nor is ``1.0``), at least ``minimum`` if given."""

    expected = "an integer"

    def __init__(self, minimum: int | None = None) -> None:
        self.minimum = minimum

    def is_type(self, value: Any) -> bool:
        return type(value) is int

    def check_value(self, value: Any, path: Path) -> None:
        if not INT64_MIN <= value <= INT64_MAX:
            raise WireFormatError("integer out of the int64 range", *path)
        if self.minimum is not None and value < self.minimum:
            raise WireFormatError(f"must be >= {self.minimum}", *path)


class Boolean(Rule):
    expected = "a boolean"

    def is_type(self, value: Any) -> bool:
        return type(value) is bool


class Nullable(Rule):
    """``null``, or what ``inner`` accepts."""

    def __init__(self, inner: Rule) -> None:
        self.inner = inner
        self.expected = f"{inner.expected} or null"

    def is_type(self, value: Any) -> bool:
        return value is None or self.inner.is_type(value)

    def check_value(self, value: Any, path: Path) -> None:
        if value is not None:
            self.inner.check_value(value, path)


class Enum(String):
    """One of a table's wire strings; with ``open_ended``, any other non-empty string too (a value
    added upstream after the contract, passed on as sent)."""

    def __init__(self, names: WireNames[Any], *, open_ended: bool = False) -> None:
        self.names = names
        self.open_ended = open_ended

    def check_value(self, value: Any, path: Path) -> None:
        if value not in self.names.from_wire:
            if not (self.open_ended and value):
                raise WireFormatError(f"unknown {self.names.what}", *path)
            super().check_value(value, path)


class Array(Rule):
    expected = "an array"

    def __init__(self, item: Rule) -> None:
        self.item = item

    def is_type(self, value: Any) -> bool:
        return is_array(value)

    def check_value(self, value: Any, path: Path) -> None:
        check = self.item.check
        for i, item in enumerate(value):
            check(item, (*path, i))


@dataclass(frozen=True, slots=True)
class Field:
    key: str
    rule: Rule
    #: False: the key may be absent (v1-era messages lack the tri-state fields).
    required: bool = True


class Object(Rule):
    """A JSON object with these fields; other keys are tolerated (and dropped by ``decode``)."""

    expected = "an object"

    def __init__(self, *fields: Field) -> None:
        self.fields = fields

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(f.key for f in self.fields if f.required)

    def is_type(self, value: Any) -> bool:
        return is_object(value)

    def check_value(self, value: Any, path: Path) -> None:
        for key in self.required:
            if key not in value:
                raise WireFormatError("missing required field", *path, key)
        for f in self.fields:
            item = value.get(f.key, _MISSING)
            if item is not _MISSING:
                f.rule.check(item, (*path, f.key))


class Tagged(Object):
    """An object whose ``"type"`` picks one of ``variants`` (keyed by the union's oneof member).

    With ``open_ended``, an object of any other non-empty type is accepted whole, as JSON text: it
    must have one that protobuf can hold.
    """

    def __init__(self, names: WireNames[str], variants: Mapping[str, Object], *,
                 open_ended: bool = False) -> None:
        super().__init__()
        self.names = names
        self.variants = {names.to_wire[member]: shape for member, shape in variants.items()}
        self.open_ended = open_ended

    def check_value(self, value: Any, path: Path) -> None:
        kind = value.get("type", _MISSING)
        if kind is _MISSING:
            raise WireFormatError("missing required field", *path, "type")
        if type(kind) is not str:
            raise expected("a string", kind, *path, "type")
        shape = self.variants.get(kind)
        if shape is not None:
            shape.check_value(value, path)
        elif self.open_ended and kind:
            _json_text_held(value, path)
        else:
            raise WireFormatError(f"unknown {self.names.what}", *path, "type")


def _json_text_held(value: Any, path: Path) -> None:
    """``value`` has JSON text, and protobuf can hold it."""
    try:
        text = json_text(value)
    except ValueError:
        raise WireFormatError("value has no JSON text", *path) from None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise WireFormatError("string is not valid Unicode (lone surrogate)", *path) from None


class Metadata(Rule):
    """A map of strings; a value of another JSON type stands for its JSON text (``drift``).

    Keys are user content too, so every error stops at the map's path.
    """

    expected = "an object"

    def is_type(self, value: Any) -> bool:
        return is_object(value)

    def check_value(self, value: Any, path: Path) -> None:
        for key, item in value.items():
            if type(key) is not str:
                raise WireFormatError("metadata keys must be strings", *path)
            STRING.check_value(key, path)
            if type(item) is str:
                STRING.check_value(item, path)
            else:
                _json_text_held(item, path)


STRING = String()
INTEGER = Integer()
INDEX = Integer(minimum=0)
BOOLEAN = Boolean()
NULLABLE_STRING = Nullable(STRING)

FILE_REF = Object(Field("file_id", STRING))


def _annotation(payload: str, shape: Object) -> Object:
    return Object(Field(payload, shape), Field("text", STRING), Field("start_index", INDEX),
                  Field("end_index", INDEX))


ANNOTATION = Tagged(ANNOTATION_TYPE, {
    "file_citation": _annotation("file_citation", Object(Field("file_id", STRING),
                                                         Field("quote", STRING))),
    "file_path": _annotation("file_path", FILE_REF),
})

CONTENT_PART = Tagged(CONTENT_PART_TYPE, {
    "text": Object(Field("text", Object(Field("value", STRING),
                                        Field("annotations", Array(ANNOTATION))))),
    "image_file": Object(Field("image_file", FILE_REF)),
}, open_ended=True)

MESSAGE = Object(
    Field("id", STRING),
    Field("object", STRING),
    Field("created_at", INTEGER),
    Field("thread_id", STRING),
    Field("status", Enum(MESSAGE_STATUS), required=False),
    Field("incomplete_details", Nullable(Object(Field("reason", Enum(INCOMPLETE_REASON)))),
          required=False),
    Field("completed_at", Nullable(INTEGER), required=False),
    Field("incomplete_at", Nullable(INTEGER), required=False),
    Field("role", Enum(ROLE, open_ended=True)),
    Field("content", Array(CONTENT_PART)),
    Field("assistant_id", NULLABLE_STRING),
    Field("run_id", NULLABLE_STRING),
    Field("file_ids", Array(STRING)),
    Field("metadata", Nullable(Metadata())),
)

#: ``file_id`` is not in the schema, only in the spec's example object: kept when present.
MESSAGE_FILE = Object(
    Field("id", STRING),
    Field("object", STRING),
    Field("created_at", INTEGER),
    Field("message_id", STRING),
    Field("file_id", NULLABLE_STRING, required=False),
)


def _page(item: Rule) -> Object:
    return Object(Field("object", STRING), Field("data", Array(item)),
                  Field("first_id", NULLABLE_STRING), Field("last_id", NULLABLE_STRING),
                  Field("has_more", BOOLEAN))


MESSAGE_LIST = _page(MESSAGE)
MESSAGE_FILE_LIST = _page(MESSAGE_FILE)


def violation(rule: Rule, document: Any) -> WireFormatError | None:
    """The first place ``document`` breaks ``rule`` (in table order), or None if it fits."""
    try:
        rule.check(document, ())
    except WireFormatError as exc:
        return exc
    return None
