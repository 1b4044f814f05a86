"""Tests for gateway.upstream.wire: upstream JSON <-> protobuf, exactly."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_schema_validator import OAS30Validator

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from gateway.enums import INCOMPLETE_REASON
from gateway.upstream import wire
from gateway.upstream.wire import WireFormatError
from gateway.upstream.wire import schema as wire_schema

SPEC_PATH = Path(__file__).resolve().parents[2] / "gateway" / "emulator" / "openapi-messages-v1.yaml"
SPEC = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
SCHEMAS = SPEC["components"]["schemas"]

# schema name -> (from_json, to_json)
CONVERTERS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], dict[str, Any]]]] = {
    "MessageObject": (wire.message_from_json, wire.message_to_json),
    "MessageFileObject": (wire.message_file_from_json, wire.message_file_to_json),
    "ListMessagesResponse": (wire.message_list_from_json, wire.message_list_to_json),
    "ListMessageFilesResponse": (wire.message_file_list_from_json, wire.message_file_list_to_json),
}

# The four fields v1-era objects (before 2024-03-27) leave out.
TRI_STATE = ("status", "incomplete_details", "completed_at", "incomplete_at")


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = SCHEMAS[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def spec_ordered(value: Any, schema: dict[str, Any]) -> Any:
    """``value`` with every object's keys in the schema's property order (extra keys last).

    Metadata (a map) comes out with sorted keys: protobuf maps do not keep insertion order, and
    ``wire`` renders them sorted.
    """
    schema = _resolve(schema)
    if "oneOf" in schema:
        for option in schema["oneOf"]:
            option = _resolve(option)
            if option["properties"]["type"]["enum"] == [value.get("type")]:
                return spec_ordered(value, option)
        raise AssertionError("no oneOf option matches")
    if isinstance(value, dict):
        if schema.get("x-oaiTypeLabel") == "map":
            return dict(sorted(value.items()))
        props = schema.get("properties", {})
        out = {k: spec_ordered(value[k], props[k]) for k in props if k in value}
        out.update((k, v) for k, v in value.items() if k not in props)
        return out
    if isinstance(value, list):
        return [spec_ordered(v, schema.get("items", {})) for v in value]
    return value


def key_orders(value: Any) -> Any:
    """The nested structure of key lists, to compare key order recursively."""
    if isinstance(value, dict):
        return [(k, key_orders(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [key_orders(v) for v in value]
    return None


def assert_round_trip(name: str, value: dict[str, Any], *, expect_order: bool = True) -> Any:
    from_json, to_json = CONVERTERS[name]
    proto = from_json(value)
    out = to_json(proto)
    assert out == value
    assert json.loads(json.dumps(out)) == out
    if expect_order:
        assert key_orders(out) == key_orders(spec_ordered(value, SCHEMAS[name]))
    # The proto survives the binary wire too.
    again = type(proto).FromString(proto.SerializeToString())
    assert again == proto
    assert to_json(again) == value
    return proto


def _validator(name: str) -> OAS30Validator:
    # Accept v1-era objects: the four tri-state fields may be absent (NOTES.md).
    components = copy.deepcopy(SPEC["components"])
    msg = components["schemas"]["MessageObject"]
    msg["required"] = [f for f in msg["required"] if f not in TRI_STATE]
    return OAS30Validator({"$ref": f"#/components/schemas/{name}", "components": components})


VALIDATORS = {name: _validator(name) for name in CONVERTERS}


def assert_valid(name: str, value: Any) -> None:
    errors = list(VALIDATORS[name].iter_errors(value))
    assert not errors, errors


# ---------------------------------------------------------------------------------------------
# Spec examples
# ---------------------------------------------------------------------------------------------


def _spec_examples() -> list[Any]:
    found = []
    for path, ops in SPEC["paths"].items():
        for method, op in ops.items():
            example = op.get("x-oaiMeta", {}).get("examples", {}).get("response")
            if example is None:
                continue
            ref = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
            name = ref.rsplit("/", 1)[1]
            found.append(pytest.param(name, json.loads(example), id=f"{method} {path}"))
    for name, schema in SCHEMAS.items():
        example = schema.get("x-oaiMeta", {}).get("example")
        if example is not None:
            found.append(pytest.param(name, json.loads(example), id=f"schema {name}"))
    return found


SPEC_EXAMPLES = _spec_examples()


def test_spec_has_the_expected_examples() -> None:
    # 6 operations + the message object + the message file object.
    assert len(SPEC_EXAMPLES) == 8
    assert {p.values[0] for p in SPEC_EXAMPLES} == set(CONVERTERS)


@pytest.mark.parametrize(("name", "example"), SPEC_EXAMPLES)
def test_spec_example_round_trips(name: str, example: dict[str, Any]) -> None:
    proto = assert_round_trip(name, example)
    messages = []
    if name == "MessageObject":
        messages = [proto]
    elif name == "ListMessagesResponse":
        messages = list(proto.data)
    for m in messages:  # v1-era: the tri-state fields stay absent
        assert not m.HasField("status")
        assert m.WhichOneof("incomplete_details_state") is None
        assert m.WhichOneof("completed_at_state") is None
        assert m.WhichOneof("incomplete_at_state") is None


def test_spec_example_key_order_is_schema_order_not_example_order() -> None:
    # The spec's examples list file_ids before assistant_id; wire emits the schema order.
    example = json.loads(SCHEMAS["MessageObject"]["x-oaiMeta"]["example"])
    out = wire.message_to_json(wire.message_from_json(example))
    assert list(out) == [
        "id", "object", "created_at", "thread_id", "role", "content",
        "assistant_id", "run_id", "file_ids", "metadata",
    ]  # fmt: skip


def test_message_file_example_keeps_file_id() -> None:
    example = json.loads(SCHEMAS["MessageFileObject"]["x-oaiMeta"]["example"])
    f = wire.message_file_from_json(example)
    assert f.HasField("file_id") and f.file_id == "file-abc123"
    bare = {k: v for k, v in example.items() if k != "file_id"}
    f = wire.message_file_from_json(bare)
    assert not f.HasField("file_id")
    assert list(wire.message_file_to_json(f)) == ["id", "object", "created_at", "message_id"]


# ---------------------------------------------------------------------------------------------
# Hand-built cases
# ---------------------------------------------------------------------------------------------


def full_message(**overrides: Any) -> dict[str, Any]:
    m: dict[str, Any] = {
        "id": "msg_1",
        "object": "thread.message",
        "created_at": 1712000000,
        "thread_id": "thread_1",
        "status": "completed",
        "incomplete_details": None,
        "completed_at": 1712000005,
        "incomplete_at": None,
        "role": "assistant",
        "content": [
            {
                "type": "text",
                "text": {
                    "value": "See 【0†source】 and sandbox:/mnt/data/out.csv",
                    "annotations": [
                        {
                            "type": "file_citation",
                            "text": "【0†source】",
                            "file_citation": {"file_id": "file-cite", "quote": "a quote"},
                            "start_index": 4,
                            "end_index": 14,
                        },
                        {
                            "type": "file_path",
                            "text": "sandbox:/mnt/data/out.csv",
                            "file_path": {"file_id": "file-out"},
                            "start_index": 19,
                            "end_index": 44,
                        },
                    ],
                },
            },
            {"type": "image_file", "image_file": {"file_id": "file-img"}},
        ],
        "assistant_id": "asst_1",
        "run_id": "run_1",
        "file_ids": ["file-a", "file-b"],
        "metadata": {"a": "1", "b": "2"},
    }
    m.update(overrides)
    return m


def test_every_part_and_annotation_kind() -> None:
    value = full_message()
    assert_valid("MessageObject", value)
    m = assert_round_trip("MessageObject", value)
    assert [c.WhichOneof("part") for c in m.content] == ["text", "image_file"]
    anns = m.content[0].text.annotations
    assert [a.WhichOneof("kind") for a in anns] == ["file_citation", "file_path"]
    assert anns[0].file_citation.quote == "a quote"
    assert anns[1].file_path.file_id == "file-out"
    assert (anns[1].start_index, anns[1].end_index) == (19, 44)
    assert m.content[1].image_file.file_id == "file-img"
    assert m.status == pb.MESSAGE_STATUS_COMPLETED
    assert m.role == pb.ROLE_ASSISTANT
    assert m.assistant_id == "asst_1" and m.run_id == "run_1"
    assert list(m.file_ids) == ["file-a", "file-b"]
    assert dict(m.metadata.entries) == {"a": "1", "b": "2"}


def test_empty_strings_and_empty_parts_keep_their_kind() -> None:
    value = full_message(
        content=[
            {"type": "text", "text": {"value": "", "annotations": []}},
            {"type": "image_file", "image_file": {"file_id": ""}},
            {
                "type": "text",
                "text": {
                    "value": "",
                    "annotations": [
                        {
                            "type": "file_citation",
                            "text": "",
                            "file_citation": {"file_id": "", "quote": ""},
                            "start_index": 0,
                            "end_index": 0,
                        },
                        {
                            "type": "file_path",
                            "text": "",
                            "file_path": {"file_id": ""},
                            "start_index": 0,
                            "end_index": 0,
                        },
                    ],
                },
            },
        ],
        id="",
        created_at=0,
    )
    m = assert_round_trip("MessageObject", value)
    assert [c.WhichOneof("part") for c in m.content] == ["text", "image_file", "text"]


@pytest.mark.parametrize(
    ("reason", "enum"),
    [
        ("content_filter", pb.INCOMPLETE_REASON_CONTENT_FILTER),
        ("max_tokens", pb.INCOMPLETE_REASON_MAX_TOKENS),
        ("run_cancelled", pb.INCOMPLETE_REASON_RUN_CANCELLED),
        ("run_expired", pb.INCOMPLETE_REASON_RUN_EXPIRED),
        ("run_failed", pb.INCOMPLETE_REASON_RUN_FAILED),
    ],
)
def test_incomplete_with_details(reason: str, enum: int) -> None:
    value = full_message(
        status="incomplete",
        incomplete_details={"reason": reason},
        completed_at=None,
        incomplete_at=1712000009,
    )
    assert_valid("MessageObject", value)
    m = assert_round_trip("MessageObject", value)
    assert m.status == pb.MESSAGE_STATUS_INCOMPLETE
    assert m.WhichOneof("incomplete_details_state") == "incomplete_details"
    assert m.incomplete_details.reason == enum
    assert m.WhichOneof("completed_at_state") == "completed_at_null"
    assert m.WhichOneof("incomplete_at_state") == "incomplete_at"
    assert m.incomplete_at == 1712000009


def test_in_progress_all_nulls() -> None:
    value = full_message(
        status="in_progress", incomplete_details=None, completed_at=None, incomplete_at=None,
        role="user", assistant_id=None, run_id=None, file_ids=[], metadata=None,
    )  # fmt: skip
    m = assert_round_trip("MessageObject", value)
    assert m.status == pb.MESSAGE_STATUS_IN_PROGRESS
    assert m.WhichOneof("incomplete_details_state") == "incomplete_details_null"
    assert m.WhichOneof("completed_at_state") == "completed_at_null"
    assert m.WhichOneof("incomplete_at_state") == "incomplete_at_null"
    assert not m.HasField("assistant_id") and not m.HasField("run_id")
    assert not m.HasField("metadata")


def test_absent_vs_null_vs_value_are_distinct() -> None:
    absent = full_message()
    for f in TRI_STATE:
        del absent[f]
    m_absent = assert_round_trip("MessageObject", absent)
    assert not m_absent.HasField("status")
    for f in ("incomplete_details", "completed_at", "incomplete_at"):
        assert m_absent.WhichOneof(f"{f}_state") is None
    assert list(wire.message_to_json(m_absent))[:5] == ["id", "object", "created_at", "thread_id", "role"]

    nulls = full_message(incomplete_details=None, completed_at=None, incomplete_at=None)
    m_null = assert_round_trip("MessageObject", nulls)
    for f in ("incomplete_details", "completed_at", "incomplete_at"):
        assert m_null.WhichOneof(f"{f}_state") == f"{f}_null"

    # completed_at = 0 is a value, not null and not absent.
    zero = full_message(completed_at=0, incomplete_at=0)
    m_zero = assert_round_trip("MessageObject", zero)
    assert m_zero.WhichOneof("completed_at_state") == "completed_at"
    assert m_zero.WhichOneof("incomplete_at_state") == "incomplete_at"

    assert len({m_absent.SerializeToString(), m_null.SerializeToString(), m_zero.SerializeToString()}) == 3


@pytest.mark.parametrize("only", TRI_STATE)
def test_each_tri_state_field_alone_can_be_absent(only: str) -> None:
    value = full_message()
    del value[only]
    assert_round_trip("MessageObject", value)


def test_metadata_null_vs_empty() -> None:
    m_null = assert_round_trip("MessageObject", full_message(metadata=None))
    m_empty = assert_round_trip("MessageObject", full_message(metadata={}))
    assert not m_null.HasField("metadata")
    assert m_empty.HasField("metadata") and len(m_empty.metadata.entries) == 0
    assert wire.message_to_json(m_null)["metadata"] is None
    assert wire.message_to_json(m_empty)["metadata"] == {}


def test_metadata_keys_come_out_sorted() -> None:
    value = full_message(metadata={"zeta": "1", "alpha": "2", "mid": "3"})
    out = wire.message_to_json(wire.message_from_json(value))
    assert out == value
    assert list(out["metadata"]) == ["alpha", "mid", "zeta"]


def test_object_strings_are_kept_as_sent() -> None:
    value = full_message(object="thread.message.v9")
    m = assert_round_trip("MessageObject", value)
    assert m.object == "thread.message.v9"
    page = {"object": "page", "data": [], "first_id": None, "last_id": None, "has_more": False}
    assert wire.message_list_to_json(wire.message_list_from_json(page)) == page


def test_empty_lists_with_null_cursors() -> None:
    page = {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}
    r = assert_round_trip("ListMessagesResponse", page)
    assert not r.HasField("first_id") and not r.HasField("last_id")
    rf = assert_round_trip("ListMessageFilesResponse", dict(page))
    assert not rf.HasField("first_id") and not rf.HasField("last_id")
    # An empty-string cursor is a value, not null.
    page2 = dict(page, first_id="", last_id="", has_more=True)
    r2 = assert_round_trip("ListMessagesResponse", page2)
    assert r2.HasField("first_id") and r2.has_more


def test_message_list_with_mixed_eras() -> None:
    v1_era = full_message(id="msg_old")
    for f in TRI_STATE:
        del v1_era[f]
    page = {
        "object": "list",
        "data": [full_message(), v1_era, full_message(id="msg_3", metadata=None)],
        "first_id": "msg_1",
        "last_id": "msg_3",
        "has_more": True,
    }
    assert_valid("ListMessagesResponse", page)
    r = assert_round_trip("ListMessagesResponse", page)
    assert [m.id for m in r.data] == ["msg_1", "msg_old", "msg_3"]


def test_unknown_extra_keys_are_dropped() -> None:
    value = full_message()
    noisy = copy.deepcopy(value)
    noisy["attachments"] = [{"file_id": "x"}]
    noisy["extra"] = {"nested": True}
    noisy["content"][0]["extra"] = 1
    noisy["content"][0]["text"]["extra"] = None
    noisy["content"][0]["text"]["annotations"][0]["file_citation"]["extra"] = "x"
    noisy["content"][0]["text"]["annotations"][1]["extra"] = [1]
    noisy["content"][1]["image_file"]["detail"] = "auto"
    noisy["incomplete_details"] = None
    out = wire.message_to_json(wire.message_from_json(noisy))
    assert out == value
    assert key_orders(out) == key_orders(value)

    f = {"id": "file-1", "object": "thread.message.file", "created_at": 1, "message_id": "m", "x": 1}
    assert wire.message_file_to_json(wire.message_file_from_json(f)) == {
        "id": "file-1", "object": "thread.message.file", "created_at": 1, "message_id": "m",
    }  # fmt: skip
    page = {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False, "x": 2}
    assert "x" not in wire.message_list_to_json(wire.message_list_from_json(page))


def test_message_file_null_file_id_is_dropped() -> None:
    f = {"id": "file-1", "object": "thread.message.file", "created_at": 1, "message_id": "m", "file_id": None}
    assert "file_id" not in wire.message_file_to_json(wire.message_file_from_json(f))


def test_int64_bounds_and_unicode() -> None:
    value = full_message(
        created_at=-(2**63),
        completed_at=2**63 - 1,
        content=[{"type": "text", "text": {"value": "héllo 🌍 \u0000 \U0010ffff", "annotations": []}}],
        metadata={"ключ": "значение 🙂"},
    )
    assert_round_trip("MessageObject", value)


def test_inputs_are_not_mutated() -> None:
    value = full_message()
    snapshot = copy.deepcopy(value)
    wire.message_from_json(value)
    assert value == snapshot


def test_mapping_inputs_are_accepted() -> None:
    from types import MappingProxyType

    value = full_message()
    proxied = MappingProxyType({**value, "content": [MappingProxyType(value["content"][1])]})
    m = wire.message_from_json(proxied)
    assert m.content[0].image_file.file_id == "file-img"


def test_to_json_of_fresh_protos_are_fresh_objects() -> None:
    m = wire.message_from_json(full_message())
    a, b = wire.message_to_json(m), wire.message_to_json(m)
    a["content"][0]["text"]["annotations"].append("x")
    a["metadata"]["new"] = "x"
    a["file_ids"].append("x")
    assert b == full_message()


# ---------------------------------------------------------------------------------------------
# Property tests
# ---------------------------------------------------------------------------------------------

# st.text() never yields lone surrogates, which JSON parsers can produce but protobuf cannot hold.
texts = st.text(max_size=30)
int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
index = st.integers(min_value=0, max_value=2**63 - 1)


@st.composite
def annotations(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):
        return {
            "type": "file_citation",
            "text": draw(texts),
            "file_citation": {"file_id": draw(texts), "quote": draw(texts)},
            "start_index": draw(index),
            "end_index": draw(index),
        }
    return {
        "type": "file_path",
        "text": draw(texts),
        "file_path": {"file_id": draw(texts)},
        "start_index": draw(index),
        "end_index": draw(index),
    }


content_parts = st.one_of(
    st.builds(
        lambda value, anns: {"type": "text", "text": {"value": value, "annotations": anns}},
        st.text(max_size=200),
        st.lists(annotations(), max_size=3),
    ),
    st.builds(lambda fid: {"type": "image_file", "image_file": {"file_id": fid}}, texts),
)

ABSENT: Any = object()


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    def tri(values: st.SearchStrategy[Any]) -> Any:
        return draw(st.one_of(st.just(ABSENT), st.none(), values))

    fields: list[tuple[str, Any]] = [
        ("id", draw(texts)),
        ("object", "thread.message"),
        ("created_at", draw(int64)),
        ("thread_id", draw(texts)),
        ("status", draw(st.one_of(st.just(ABSENT), st.sampled_from(["in_progress", "incomplete", "completed"])))),
        ("incomplete_details", tri(st.builds(lambda r: {"reason": r}, st.sampled_from(sorted(INCOMPLETE_REASON.from_wire))))),
        ("completed_at", tri(int64)),
        ("incomplete_at", tri(int64)),
        ("role", draw(st.sampled_from(["user", "assistant"]))),
        ("content", draw(st.lists(content_parts, max_size=4))),
        ("assistant_id", draw(st.none() | texts)),
        ("run_id", draw(st.none() | texts)),
        ("file_ids", draw(st.lists(texts, max_size=10))),
        (
            "metadata",
            draw(st.none() | st.dictionaries(st.text(max_size=64), st.text(max_size=512), max_size=16)),
        ),
    ]
    return {k: v for k, v in fields if v is not ABSENT}


message_files = st.builds(
    lambda id_, ca, mid, fid: {
        "id": id_, "object": "thread.message.file", "created_at": ca, "message_id": mid,
        **({} if fid is ABSENT else {"file_id": fid}),
    },
    texts, int64, texts, st.one_of(st.just(ABSENT), texts),
)  # fmt: skip


def pages(items: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda data, more: {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": more,
        },
        st.lists(items, max_size=4),
        st.booleans(),
    )


PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(messages())
def test_property_message_round_trip(value: dict[str, Any]) -> None:
    assert_valid("MessageObject", value)
    assert_round_trip("MessageObject", value)
    # The JSON text is identical too (apart from metadata order, which is sorted).
    canonical = spec_ordered(value, SCHEMAS["MessageObject"])
    out = wire.message_to_json(wire.message_from_json(value))
    assert json.dumps(out, ensure_ascii=False) == json.dumps(canonical, ensure_ascii=False)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pages(messages()))
def test_property_message_list_round_trip(value: dict[str, Any]) -> None:
    assert_round_trip("ListMessagesResponse", value)


@PROPERTY_SETTINGS
@given(pages(message_files))
def test_property_message_file_list_round_trip(value: dict[str, Any]) -> None:
    assert_valid("ListMessageFilesResponse", value)
    assert_round_trip("ListMessageFilesResponse", value)


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------

SECRET = "SECRET-7f3a"  # every string value below carries it; no error message may contain it
SECRET_INT = 987654321987


def secret_message() -> dict[str, Any]:
    return {
        "id": f"msg_{SECRET}",
        "object": f"thread.message{SECRET}",
        "created_at": SECRET_INT,
        "thread_id": f"thread_{SECRET}",
        "status": "incomplete",
        "incomplete_details": {"reason": "max_tokens"},
        "completed_at": None,
        "incomplete_at": SECRET_INT,
        "role": "user",
        "content": [
            {"type": "image_file", "image_file": {"file_id": f"file-{SECRET}"}},
            {
                "type": "text",
                "text": {
                    "value": f"text {SECRET}",
                    "annotations": [
                        {
                            "type": "file_citation",
                            "text": SECRET,
                            "file_citation": {"file_id": SECRET, "quote": SECRET},
                            "start_index": SECRET_INT,
                            "end_index": SECRET_INT,
                        },
                        {
                            "type": "file_path",
                            "text": SECRET,
                            "file_path": {"file_id": SECRET},
                            "start_index": SECRET_INT,
                            "end_index": SECRET_INT,
                        },
                    ],
                },
            },
        ],
        "assistant_id": SECRET,
        "run_id": SECRET,
        "file_ids": [SECRET, SECRET],
        "metadata": {SECRET: SECRET},
    }


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutator setting (or, with value=DELETE, removing) the field at a dotted/indexed path."""

    def mutate(doc: dict[str, Any]) -> None:
        parts: list[Any] = []
        for token in path.replace("[", ".[").split("."):
            parts.append(int(token[1:-1]) if token.startswith("[") else token)
        target: Any = doc
        for p in parts[:-1]:
            target = target[p]
        if value is DELETE:
            del target[parts[-1]]
        else:
            target[parts[-1]] = value

    return mutate


DELETE: Any = object()

# (mutation path, bad value, expected error path)
MESSAGE_ERRORS = [
    # missing required fields
    *[(f, DELETE, f) for f in wire_schema.MESSAGE.required],
    ("content[0].type", DELETE, "content[0].type"),
    ("content[0].image_file", DELETE, "content[0].image_file"),
    ("content[0].image_file.file_id", DELETE, "content[0].image_file.file_id"),
    ("content[1].text", DELETE, "content[1].text"),
    ("content[1].text.value", DELETE, "content[1].text.value"),
    ("content[1].text.annotations", DELETE, "content[1].text.annotations"),
    ("content[1].text.annotations[0].type", DELETE, "content[1].text.annotations[0].type"),
    ("content[1].text.annotations[0].text", DELETE, "content[1].text.annotations[0].text"),
    ("content[1].text.annotations[0].file_citation", DELETE, "content[1].text.annotations[0].file_citation"),
    (
        "content[1].text.annotations[0].file_citation.quote",
        DELETE,
        "content[1].text.annotations[0].file_citation.quote",
    ),
    (
        "content[1].text.annotations[0].file_citation.file_id",
        DELETE,
        "content[1].text.annotations[0].file_citation.file_id",
    ),
    ("content[1].text.annotations[1].file_path", DELETE, "content[1].text.annotations[1].file_path"),
    ("content[1].text.annotations[1].file_path.file_id", DELETE, "content[1].text.annotations[1].file_path.file_id"),
    ("content[1].text.annotations[1].start_index", DELETE, "content[1].text.annotations[1].start_index"),
    ("content[1].text.annotations[1].end_index", DELETE, "content[1].text.annotations[1].end_index"),
    ("incomplete_details.reason", DELETE, "incomplete_details.reason"),
    # wrong JSON types (bool is not an integer, float is not an integer)
    ("id", 12345, "id"),
    ("id", None, "id"),
    ("object", [SECRET], "object"),
    ("created_at", True, "created_at"),
    ("created_at", 1699016383.0, "created_at"),
    ("created_at", str(SECRET_INT), "created_at"),
    ("thread_id", {"x": SECRET}, "thread_id"),
    ("status", None, "status"),
    ("status", 3, "status"),
    ("incomplete_details", SECRET, "incomplete_details"),
    ("incomplete_details", [], "incomplete_details"),
    ("incomplete_details.reason", None, "incomplete_details.reason"),
    ("completed_at", False, "completed_at"),
    ("completed_at", "1712000000", "completed_at"),
    ("incomplete_at", 1.5, "incomplete_at"),
    ("role", None, "role"),
    ("role", 1, "role"),
    ("content", {"type": "text"}, "content"),
    ("content", SECRET, "content"),
    ("content[0]", SECRET, "content[0]"),
    ("content[0]", [SECRET], "content[0]"),
    ("content[0].type", 7, "content[0].type"),
    ("content[0].image_file", SECRET, "content[0].image_file"),
    ("content[0].image_file.file_id", None, "content[0].image_file.file_id"),
    ("content[1].text", SECRET, "content[1].text"),
    ("content[1].text.value", None, "content[1].text.value"),
    ("content[1].text.annotations", SECRET, "content[1].text.annotations"),
    ("content[1].text.annotations", None, "content[1].text.annotations"),
    ("content[1].text.annotations[1]", SECRET, "content[1].text.annotations[1]"),
    ("content[1].text.annotations[0].text", 5, "content[1].text.annotations[0].text"),
    ("content[1].text.annotations[0].file_citation", None, "content[1].text.annotations[0].file_citation"),
    (
        "content[1].text.annotations[0].file_citation.quote",
        7,
        "content[1].text.annotations[0].file_citation.quote",
    ),
    ("content[1].text.annotations[1].file_path", [SECRET], "content[1].text.annotations[1].file_path"),
    ("content[1].text.annotations[1].file_path.file_id", 1, "content[1].text.annotations[1].file_path.file_id"),
    ("content[1].text.annotations[1].start_index", True, "content[1].text.annotations[1].start_index"),
    ("content[1].text.annotations[1].end_index", "4", "content[1].text.annotations[1].end_index"),
    ("content[1].text.annotations[1].start_index", -1, "content[1].text.annotations[1].start_index"),
    ("content[1].text.annotations[0].end_index", -SECRET_INT, "content[1].text.annotations[0].end_index"),
    ("assistant_id", 5, "assistant_id"),
    ("run_id", [SECRET], "run_id"),
    ("file_ids", None, "file_ids"),
    ("file_ids", SECRET, "file_ids"),
    ("file_ids[1]", None, "file_ids[1]"),
    ("file_ids[1]", 42, "file_ids[1]"),
    ("metadata", [SECRET], "metadata"),
    ("metadata", SECRET, "metadata"),
    # (a value of another JSON type stands for its JSON text: test_wire_tolerance.py)
    (f"metadata.{SECRET}", float("nan"), "metadata"),
    (f"metadata.{SECRET}", [f"{SECRET}\ud800"], "metadata"),
    # unknown enum values and kinds
    ("status", f"done{SECRET}", "status"),
    ("status", "", "status"),
    ("incomplete_details.reason", f"bored{SECRET}", "incomplete_details.reason"),
    # (a role or content part type the contract does not know passes: test_wire_tolerance.py)
    ("role", "", "role"),
    ("content[0].type", "", "content[0].type"),
    ("content[1].type", None, "content[1].type"),
    ("content[1].text.annotations[0].type", f"url_citation{SECRET}", "content[1].text.annotations[0].type"),
    # values protobuf cannot hold
    ("created_at", 2**63, "created_at"),
    ("completed_at", -(2**63) - 1, "completed_at"),
    ("content[1].text.annotations[0].start_index", 2**64, "content[1].text.annotations[0].start_index"),
    ("id", f"{SECRET}\ud800", "id"),
    ("run_id", f"\udfff{SECRET}", "run_id"),
    ("file_ids[1]", f"{SECRET}\ud800", "file_ids[1]"),
    ("content[1].text.value", f"{SECRET}\ud83d", "content[1].text.value"),
    ("content[0].image_file.file_id", f"{SECRET}\ud83d", "content[0].image_file.file_id"),
    (
        "content[1].text.annotations[0].file_citation.quote",
        f"\ud800{SECRET}",
        "content[1].text.annotations[0].file_citation.quote",
    ),
    ("content[1].text.annotations[1].text", f"\ud800{SECRET}", "content[1].text.annotations[1].text"),
    (f"metadata.{SECRET}", f"\ud800{SECRET}", "metadata"),
]


def assert_error(exc: WireFormatError, path: str) -> None:
    assert isinstance(exc, ValueError)
    assert exc.path == path
    text = str(exc)
    assert text.startswith(f"{path}: ") if path else text.startswith("<document>: ")
    assert SECRET not in text and str(SECRET_INT) not in text
    assert SECRET not in repr(exc) and str(SECRET_INT) not in repr(exc)
    assert "\ud800" not in text and "\udfff" not in text and "\ud83d" not in text
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__  # no chained exception shows a value


@pytest.mark.parametrize(
    ("where", "bad", "path"),
    MESSAGE_ERRORS,
    ids=[f"{w}={'DELETE' if b is DELETE else type(b).__name__}" for w, b, _ in MESSAGE_ERRORS],
)
def test_message_errors_name_the_path(where: str, bad: Any, path: str) -> None:
    doc = secret_message()
    wire.message_from_json(doc)  # the base document is valid
    _set(where, bad)(doc)
    with pytest.raises(WireFormatError) as info:
        wire.message_from_json(doc)
    assert_error(info.value, path)

    # The same error inside a list page is prefixed with data[i].
    page = {"object": "list", "data": [secret_message(), doc], "first_id": "a", "last_id": "b", "has_more": False}
    with pytest.raises(WireFormatError) as info:
        wire.message_list_from_json(page)
    assert_error(info.value, f"data[1].{path}" if not path.startswith("[") else f"data[1]{path}")


@pytest.mark.parametrize("bad", [None, SECRET, [SECRET], 5, True])
def test_non_object_documents(bad: Any) -> None:
    for convert in (
        wire.message_from_json,
        wire.message_file_from_json,
        wire.message_list_from_json,
        wire.message_file_list_from_json,
    ):
        with pytest.raises(WireFormatError) as info:
            convert(bad)
        assert_error(info.value, "")


def test_error_path_deep_in_a_list() -> None:
    page = {
        "object": "list",
        "data": [full_message(id=f"m{i}") for i in range(5)],
        "first_id": "m0",
        "last_id": "m4",
        "has_more": True,
    }
    page["data"][3]["content"][0]["type"] = ""
    with pytest.raises(WireFormatError, match=r"^data\[3\]\.content\[0\]\.type: unknown content part type$"):
        wire.message_list_from_json(page)
    page["data"][3] = SECRET
    with pytest.raises(WireFormatError, match=r"^data\[3\]: expected an object, got string$"):
        wire.message_list_from_json(page)


def secret_file() -> dict[str, Any]:
    return {
        "id": f"file-{SECRET}",
        "object": "thread.message.file",
        "created_at": SECRET_INT,
        "message_id": f"msg_{SECRET}",
        "file_id": f"file-{SECRET}",
    }


FILE_ERRORS = [
    *[(f, DELETE, f) for f in wire_schema.MESSAGE_FILE.required],
    ("id", None, "id"),
    ("object", 1, "object"),
    ("created_at", True, "created_at"),
    ("created_at", 1.0, "created_at"),
    ("created_at", 2**63, "created_at"),
    ("message_id", [SECRET], "message_id"),
    ("message_id", f"{SECRET}\ud800", "message_id"),
    ("file_id", 5, "file_id"),
    ("file_id", f"{SECRET}\ud800", "file_id"),
]


@pytest.mark.parametrize(("where", "bad", "path"), FILE_ERRORS)
def test_message_file_errors(where: str, bad: Any, path: str) -> None:
    doc = secret_file()
    _set(where, bad)(doc)
    with pytest.raises(WireFormatError) as info:
        wire.message_file_from_json(doc)
    assert_error(info.value, path)
    page = {"object": "list", "data": [secret_file(), doc], "first_id": None, "last_id": None, "has_more": True}
    with pytest.raises(WireFormatError) as info:
        wire.message_file_list_from_json(page)
    assert_error(info.value, f"data[1].{path}")


LIST_ERRORS = [
    *[(f, DELETE, f) for f in wire_schema.MESSAGE_LIST.required],
    ("object", None, "object"),
    ("data", None, "data"),
    ("data", {"0": SECRET}, "data"),
    ("data", SECRET, "data"),
    ("first_id", 5, "first_id"),
    ("last_id", [SECRET], "last_id"),
    ("last_id", f"{SECRET}\ud800", "last_id"),
    ("has_more", 0, "has_more"),
    ("has_more", None, "has_more"),
    ("has_more", "false", "has_more"),
]


@pytest.mark.parametrize(("where", "bad", "path"), LIST_ERRORS)
@pytest.mark.parametrize("convert", [wire.message_list_from_json, wire.message_file_list_from_json])
def test_list_envelope_errors(where: str, bad: Any, path: str, convert: Callable[[Any], Any]) -> None:
    doc = {"object": "list", "data": [], "first_id": f"x{SECRET}", "last_id": f"y{SECRET}", "has_more": False}
    _set(where, bad)(doc)
    with pytest.raises(WireFormatError) as info:
        convert(doc)
    assert_error(info.value, path)


def test_error_is_picklable() -> None:
    err = WireFormatError("unknown role", "data", 2, "role")
    again = pickle.loads(pickle.dumps(err))
    assert isinstance(again, WireFormatError)
    assert str(again) == str(err) == "data[2].role: unknown role"


def test_to_json_rejects_protos_outside_the_schema() -> None:
    m = wire.message_from_json(full_message())
    m.role = pb.ROLE_UNSPECIFIED
    with pytest.raises(WireFormatError, match=r"^role: "):
        wire.message_to_json(m)

    m = wire.message_from_json(full_message())
    m.content.add()
    with pytest.raises(WireFormatError, match=r"^content\[2\]\.type: "):
        wire.message_to_json(m)

    m = wire.message_from_json(full_message())
    m.content[0].text.annotations.add()
    page = pb.ListMessagesResponse(data=[m])
    with pytest.raises(WireFormatError, match=r"^data\[0\]\.content\[0\]\.text\.annotations\[2\]\.kind: "):
        wire.message_list_to_json(page)

    m = wire.message_from_json(full_message())
    m.status = pb.MESSAGE_STATUS_UNSPECIFIED
    with pytest.raises(WireFormatError, match=r"^status: "):
        wire.message_to_json(m)

    m = wire.message_from_json(full_message(incomplete_details={"reason": "max_tokens"}))
    m.incomplete_details.reason = pb.INCOMPLETE_REASON_UNSPECIFIED
    with pytest.raises(WireFormatError, match=r"^incomplete_details\.reason: "):
        wire.message_to_json(m)
