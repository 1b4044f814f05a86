"""The wire's fast path and its schema tables agree: one accepts exactly what the other does."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.upstream import wire
from gateway.upstream.wire import schema
from tests.upstream.test_wire import full_message, messages, pages, secret_message

DELETE: Any = object()

#: Values that confuse types: empty containers and strings, bool vs int, int64 edges, surrogates,
#: and the schema's own tag and enum strings in the wrong place.
EDGE_VALUES = [None, True, False, 0, 1, -1, 2**63, -(2**63) - 1, 1.0, 1.5, "", "x", "\ud800", [],
               {}, ["x"], [{}], {"x": "y"}, {"type": "text"}, "text", "image_file", "file_citation",
               "file_path", "user", "completed", "max_tokens"]
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                         st.text(max_size=5))
json_values = st.one_of(
    st.sampled_from(EDGE_VALUES),
    st.recursive(json_scalars,
                 lambda inner: st.lists(inner, max_size=2)
                 | st.dictionaries(st.text(max_size=3), inner, max_size=2),
                 max_leaves=4),
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path inside a JSON document."""
    found: list[tuple[Any, ...]] = []
    items = (value.items() if isinstance(value, dict)
             else enumerate(value) if isinstance(value, list) else ())
    for key, item in items:
        found.append((*prefix, key))
        found.extend(paths(item, (*prefix, key)))
    return found


@st.composite
def mutated(draw: st.DrawFn, documents: st.SearchStrategy[Any]) -> Any:
    doc = copy.deepcopy(draw(documents))
    for _ in range(draw(st.integers(min_value=1, max_value=2))):
        where = paths(doc)
        if not where:
            break
        path = draw(st.sampled_from(where))
        target = doc
        for key in path[:-1]:
            target = target[key]
        value = draw(st.one_of(st.just(DELETE), json_values))
        if value is DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = copy.deepcopy(value)  # the edge values are shared
    return doc


def assert_agree(rule: schema.Rule, convert: Callable[[Any], Any], doc: Any) -> None:
    expected = schema.violation(rule, doc)
    try:
        convert(doc)
    except wire.WireFormatError as exc:
        assert expected is not None, f"the fast path refused a valid document: {exc}"
        assert (exc.path, exc.reason) == (expected.path, expected.reason)
    else:
        assert expected is None, f"the fast path accepted an invalid document: {expected}"


def single_mutations(doc: Any) -> list[Any]:
    """``doc`` with each of its fields in turn deleted or replaced by each edge value."""
    out = []
    for path in paths(doc):
        for value in [DELETE, *EDGE_VALUES]:
            changed = copy.deepcopy(doc)
            target = changed
            for key in path[:-1]:
                target = target[key]
            if value is DELETE:
                del target[path[-1]]
            else:
                target[path[-1]] = copy.deepcopy(value)
            out.append(changed)
    return out


def test_every_single_mutation_agrees() -> None:
    """Exhaustive over one change at a time: every field of the richest documents, every edge."""
    v1_era = {k: v for k, v in full_message().items()
              if k not in ("status", "incomplete_details", "completed_at", "incomplete_at")}
    for doc in (full_message(), secret_message(), v1_era):
        for changed in single_mutations(doc):
            assert_agree(schema.MESSAGE, wire.message_from_json, changed)
    page = {"object": "list", "data": [full_message()], "first_id": "a", "last_id": None,
            "has_more": True}
    for changed in single_mutations(page):
        assert_agree(schema.MESSAGE_LIST, wire.message_list_from_json, changed)
        assert_agree(schema.MESSAGE_LIST, wire.message_page_from_json, changed)
    files = {"object": "list", "data": [{"id": "file-1", "object": "thread.message.file",
                                         "created_at": 1, "message_id": "msg_1",
                                         "file_id": "file-1"}],
             "first_id": "file-1", "last_id": "file-1", "has_more": False}
    for changed in single_mutations(files):
        assert_agree(schema.MESSAGE_FILE_LIST, wire.message_file_list_from_json, changed)
        assert_agree(schema.MESSAGE_FILE_LIST, wire.message_file_page_from_json, changed)


AGREEMENT = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@AGREEMENT
@given(mutated(messages() | st.builds(full_message) | st.builds(secret_message)))
def test_message_fast_path_and_schema_agree(doc: Any) -> None:
    assert_agree(schema.MESSAGE, wire.message_from_json, doc)


@AGREEMENT
@given(mutated(pages(messages())))
def test_message_page_fast_path_and_schema_agree(doc: Any) -> None:
    assert_agree(schema.MESSAGE_LIST, wire.message_list_from_json, doc)
    assert_agree(schema.MESSAGE_LIST, wire.message_page_from_json, doc)


message_files = st.builds(
    lambda i, fid: {"id": f"file-{i}", "object": "thread.message.file", "created_at": i,
                    "message_id": "msg_1", **({} if fid is None else {"file_id": fid})},
    st.integers(min_value=0, max_value=9), st.none() | st.text(max_size=3),
)


@AGREEMENT
@given(mutated(pages(message_files)))
def test_message_file_page_fast_path_and_schema_agree(doc: Any) -> None:
    assert_agree(schema.MESSAGE_FILE_LIST, wire.message_file_list_from_json, doc)
    assert_agree(schema.MESSAGE_FILE_LIST, wire.message_file_page_from_json, doc)
    data = doc.get("data") if isinstance(doc, dict) else None
    for item in data if isinstance(data, list) else ():
        assert_agree(schema.MESSAGE_FILE, wire.message_file_from_json, item)
