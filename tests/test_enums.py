"""gateway.enums: every contract enum and tagged union has its wire strings, both ways, once."""

from __future__ import annotations

import pytest

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from gateway import enums
from gateway.enums import WireNames

ENUM_TABLES = [
    (enums.ROLE, pb.Role),
    (enums.ORDER, pb.Order),
    (enums.MESSAGE_STATUS, pb.MessageStatus),
    (enums.INCOMPLETE_REASON, pb.IncompleteReason),
]
UNION_TABLES = [
    (enums.CONTENT_PART_TYPE, pb.MessageContent, "part"),
    (enums.ANNOTATION_TYPE, pb.TextAnnotation, "kind"),
]


@pytest.mark.parametrize(("table", "enum"), ENUM_TABLES, ids=lambda t: getattr(t, "what", ""))
def test_enum_table_names_every_value_but_the_zero_one(table: WireNames[int], enum: object) -> None:
    values = {v.number for v in enum.DESCRIPTOR.values}  # type: ignore[attr-defined]
    assert set(table.to_wire) == values - {0}


@pytest.mark.parametrize(("table", "message", "oneof"), UNION_TABLES,
                         ids=lambda t: getattr(t, "what", ""))
def test_union_table_names_oneof_members(
    table: WireNames[str], message: object, oneof: str
) -> None:
    descriptor = message.DESCRIPTOR  # type: ignore[attr-defined]
    members = {f.name for f in descriptor.oneofs_by_name[oneof].fields}
    assert set(table.to_wire) <= members
    assert set(table.to_wire), "a union with no known member"


@pytest.mark.parametrize("table", [t for t, *_ in ENUM_TABLES + UNION_TABLES],
                         ids=lambda t: t.what)
def test_both_directions_come_from_one_definition(table: WireNames[object]) -> None:
    assert {v: k for k, v in table.from_wire.items()} == dict(table.to_wire)
    assert all(type(name) is str and name for name in table.from_wire)


def test_known_wire_strings() -> None:
    assert enums.ROLE.from_wire == {"user": pb.ROLE_USER, "assistant": pb.ROLE_ASSISTANT}
    assert enums.ORDER.to_wire == {pb.ORDER_ASC: "asc", pb.ORDER_DESC: "desc"}
    assert enums.MESSAGE_STATUS.from_wire["in_progress"] == pb.MESSAGE_STATUS_IN_PROGRESS
    assert enums.INCOMPLETE_REASON.to_wire[pb.INCOMPLETE_REASON_RUN_FAILED] == "run_failed"


def test_a_wire_string_used_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="share a wire string"):
        WireNames.of("colour", {1: "red", 2: "red"})
