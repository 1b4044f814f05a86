"""The contract's enums and tagged unions next to the upstream's wire strings, each table once.

Every table is written once, as ``{contract value: wire string}``; ``to_wire`` and ``from_wire``
are both derived from that one definition, so the two directions cannot drift apart. The contract
value is a proto enum number, or, for the tagged unions (content parts, annotations), the name of
the oneof member that carries the payload the upstream tags with ``"type"``.

Zero values (``*_UNSPECIFIED``) have no wire string: they mean "not sent" or "not set", and what
that implies is the caller's business (``gateway.operations.validation`` reads an unspecified
order as the upstream default).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb

K = TypeVar("K", int, str)

__all__ = [
    "ANNOTATION_TYPE",
    "CONTENT_PART_TYPE",
    "INCOMPLETE_REASON",
    "MESSAGE_STATUS",
    "ORDER",
    "ROLE",
    "WireNames",
]


@dataclass(frozen=True, slots=True)
class WireNames(Generic[K]):
    """One contract value <-> wire string table; ``what`` names it in error messages."""

    what: str
    to_wire: Mapping[K, str]
    from_wire: Mapping[str, K]

    @classmethod
    def of(cls, what: str, pairs: Mapping[K, str]) -> WireNames[K]:
        to_wire = dict(pairs)
        from_wire = {name: value for value, name in to_wire.items()}
        if len(from_wire) != len(to_wire):
            raise ValueError(f"{what}: two contract values share a wire string")
        # Plain dicts: the wire conversion looks them up on its hot path.
        return cls(what, to_wire, from_wire)


ROLE: WireNames[int] = WireNames.of("role", {
    pb.ROLE_USER: "user",
    pb.ROLE_ASSISTANT: "assistant",
})

ORDER: WireNames[int] = WireNames.of("order", {
    pb.ORDER_ASC: "asc",
    pb.ORDER_DESC: "desc",
})

MESSAGE_STATUS: WireNames[int] = WireNames.of("status", {
    pb.MESSAGE_STATUS_IN_PROGRESS: "in_progress",
    pb.MESSAGE_STATUS_INCOMPLETE: "incomplete",
    pb.MESSAGE_STATUS_COMPLETED: "completed",
})

INCOMPLETE_REASON: WireNames[int] = WireNames.of("incomplete reason", {
    pb.INCOMPLETE_REASON_CONTENT_FILTER: "content_filter",
    pb.INCOMPLETE_REASON_MAX_TOKENS: "max_tokens",
    pb.INCOMPLETE_REASON_RUN_CANCELLED: "run_cancelled",
    pb.INCOMPLETE_REASON_RUN_EXPIRED: "run_expired",
    pb.INCOMPLETE_REASON_RUN_FAILED: "run_failed",
})

#: ``MessageContent.part`` oneof member -> the content part's ``"type"``.
CONTENT_PART_TYPE: WireNames[str] = WireNames.of("content part type", {
    "image_file": "image_file",
    "text": "text",
})

#: ``TextAnnotation.kind`` oneof member -> the annotation's ``"type"``.
ANNOTATION_TYPE: WireNames[str] = WireNames.of("annotation type", {
    "file_citation": "file_citation",
    "file_path": "file_path",
})
