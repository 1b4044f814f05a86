"""What the wire tolerates from the upstream beyond the schema, and in which documented form."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from structlog.testing import capture_logs

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from gateway import metrics
from gateway.upstream import wire
from gateway.upstream.wire import drift
from tests.upstream.test_wire import full_message


def page_of(*messages: dict[str, Any]) -> dict[str, Any]:
    return {"object": "list", "data": list(messages), "first_id": messages[0]["id"],
            "last_id": messages[-1]["id"], "has_more": False}


def tolerated(kind: str) -> float:
    return metrics.REGISTRY.get_sample_value("gateway_upstream_tolerated_total",
                                             {"kind": kind}) or 0.0


# -- metadata values that are not strings ----------------------------------------------------------


def test_non_string_metadata_values_become_their_json_text_and_the_page_survives() -> None:
    odd = full_message(id="msg_odd", metadata={
        "s": "text", "n": 123, "neg": -7, "f": 1.5, "t": True, "no": False, "z": None,
        "big": 2**70, "o": {"k": [1, "two", None]}, "a": ["é"],
    })
    before = tolerated("metadata_value")
    page = wire.message_list_from_json(page_of(full_message(id="msg_a"), odd,
                                               full_message(id="msg_c")))
    assert [m.id for m in page.data] == ["msg_a", "msg_odd", "msg_c"]
    assert dict(page.data[1].metadata.entries) == {
        "s": "text", "n": "123", "neg": "-7", "f": "1.5", "t": "true", "no": "false",
        "z": "null", "big": str(2**70), "o": '{"k":[1,"two",null]}', "a": '["é"]',
    }
    assert dict(page.data[0].metadata.entries) == {"a": "1", "b": "2"}
    assert tolerated("metadata_value") == before + 9
    # Rendered back they are strings: the contract's metadata is a map of strings.
    assert wire.message_to_json(page.data[1])["metadata"]["n"] == "123"


@pytest.mark.parametrize("convert", [wire.message_from_json, wire.message_page_from_json])
def test_non_string_metadata_value_alone(convert: Any) -> None:
    doc = full_message(metadata={"k": 123})
    if convert is wire.message_page_from_json:
        doc = page_of(doc)
    out = convert(doc)
    message = out.data[0] if convert is wire.message_page_from_json else out
    assert dict(message.metadata.entries) == {"k": "123"}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "\ud800", {"k": "\udfff"}])
def test_metadata_values_with_no_json_text_are_still_refused(value: Any) -> None:
    doc = page_of(full_message(), full_message(id="msg_bad", metadata={"k": value}))
    with pytest.raises(wire.WireFormatError) as info:
        wire.message_list_from_json(doc)
    assert info.value.path == "data[1].metadata"


def test_metadata_non_string_keys_are_still_refused() -> None:
    # JSON keys are always strings; a Mapping handed in directly may hold others.
    with pytest.raises(wire.WireFormatError) as info:
        wire.message_from_json(full_message(metadata={1: "x"}))
    assert info.value.path == "metadata"


def test_input_with_non_string_metadata_is_not_mutated() -> None:
    doc = full_message(metadata={"k": [1, 2]})
    snapshot = copy.deepcopy(doc)
    wire.message_from_json(doc)
    assert doc == snapshot


# -- reporting -------------------------------------------------------------------------------------


def test_drift_is_counted_every_time_and_logged_once_per_kind_and_name() -> None:
    before = tolerated("test_kind")
    with capture_logs() as logs:
        for _ in range(3):
            drift.tolerated("test_kind", "once_only")
        drift.tolerated("test_kind", "not a schema word: SECRET")
        drift.tolerated("test_kind", "x" * 65)
    assert tolerated("test_kind") == before + 5
    assert [(e["log_level"], e["kind"], e["name"]) for e in logs] == [
        ("warning", "test_kind", "once_only"), ("warning", "test_kind", "<other>")]


# -- content part types and roles the contract does not know (F10) --------------------------------

NEW_PART = {"type": "image_url", "image_url": {"url": "https://example.test/a.png",
                                               "detail": "auto"}, "extra": [1, None, "é"]}


def test_unknown_content_part_type_passes_through_and_renders_back_unchanged() -> None:
    value = full_message(content=[full_message()["content"][0], NEW_PART,
                                  full_message()["content"][1]])
    before = tolerated("content_part_type")
    m = wire.message_from_json(value)
    assert [c.WhichOneof("part") for c in m.content] == ["text", "unknown", "image_file"]
    unknown = m.content[1].unknown
    assert unknown.type == "image_url"
    assert json.loads(unknown.json) == NEW_PART
    assert list(json.loads(unknown.json)) == list(NEW_PART)  # the upstream's key order
    out = wire.message_to_json(m)
    assert out == value and list(out["content"][1]) == list(NEW_PART)
    assert out["content"][1]["image_url"] == NEW_PART["image_url"]
    again = type(m).FromString(m.SerializeToString())
    assert wire.message_to_json(again) == value
    assert tolerated("content_part_type") == before + 1


def test_unknown_role_passes_through_and_renders_back_unchanged() -> None:
    before = tolerated("role")
    m = wire.message_from_json(full_message(role="system"))
    assert m.role == pb.ROLE_UNSPECIFIED and m.unknown_role == "system"
    assert wire.message_to_json(m)["role"] == "system"
    assert wire.message_from_json(full_message(role="user")).unknown_role == ""
    assert tolerated("role") == before + 1


def test_a_page_with_new_types_and_roles_keeps_every_message() -> None:
    drifted = full_message(id="msg_new", role="developer",
                           content=[{"type": "refusal", "refusal": "no"}, NEW_PART])
    doc = page_of(full_message(id="msg_a"), drifted, full_message(id="msg_c"))
    for convert in (wire.message_list_from_json, wire.message_page_from_json):
        page = convert(doc)
        assert [m.id for m in page.data] == ["msg_a", "msg_new", "msg_c"]
        assert page.data[1].unknown_role == "developer"
        assert [c.unknown.type for c in page.data[1].content] == ["refusal", "image_url"]
        assert page.data[2] == wire.message_from_json(full_message(id="msg_c"))
    assert wire.message_list_to_json(wire.message_list_from_json(doc)) == doc


@pytest.mark.parametrize(("where", "bad", "path"), [
    ("role", "", "role"),
    ("role", 1, "role"),
    ("role", None, "role"),
    ("role", "sys\ud800", "role"),
    ("content", [{"type": ""}], "content[0].type"),
    ("content", [{"type": 5}], "content[0].type"),
    ("content", [{"image_url": {}}], "content[0].type"),
    ("content", [{"type": "image_url", "image_url": float("nan")}], "content[0]"),
    ("content", [{"type": "image_url", "image_url": "\ud800"}], "content[0]"),
    # Annotations stay strict: a new kind fails its message (the rest of a text part would have to
    # be rendered without it).
    ("content", [{"type": "text", "text": {"value": "v", "annotations": [
        {"type": "url_citation", "text": "", "start_index": 0, "end_index": 0}]}}],
     "content[0].text.annotations[0].type"),
])
def test_what_is_still_refused(where: str, bad: Any, path: str) -> None:
    with pytest.raises(wire.WireFormatError) as info:
        wire.message_list_from_json(page_of(full_message(), full_message(**{where: bad})))
    assert info.value.path == f"data[1].{path}"


def test_to_json_of_an_unknown_part_that_is_not_a_json_object_fails() -> None:
    m = wire.message_from_json(full_message())
    m.content.add().unknown.json = "[1, 2]"
    with pytest.raises(wire.WireFormatError, match=r"^content\[2\]\.unknown\.json: "):
        wire.message_to_json(m)
