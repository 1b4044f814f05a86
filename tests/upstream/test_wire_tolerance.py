"""What the wire tolerates from the upstream beyond the schema, and in which documented form."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from structlog.testing import capture_logs

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
