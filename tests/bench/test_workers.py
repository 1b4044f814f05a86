"""The workers bench's own pieces: the gRPC frame h2load sends and its summary parsed."""

from __future__ import annotations

import struct

import pytest

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from tests.bench.workers import SHAPES, frame, parse_h2load

SUMMARY = """
finished in 3.00s, 2504.33 req/s, 3.11MB/s
requests: 7513 total, 7577 started, 7513 done, 7513 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 7513 2xx, 0 3xx, 0 4xx, 0 5xx
"""


def test_frame_is_one_uncompressed_length_prefixed_request() -> None:
    data = frame()
    assert data[0] == 0
    (length,) = struct.unpack(">I", data[1:5])
    assert length == len(data) - 5
    request = pb.GetMessageRequest.FromString(data[5:])
    assert request.thread_id.startswith("thread_") and request.message_id.startswith("msg_")


def test_h2load_summary_is_parsed_and_nonsense_refused() -> None:
    assert parse_h2load(SUMMARY) == {"rps": 2504.33, "done": 7513, "failed": 0}
    with pytest.raises(RuntimeError, match="not understood"):
        parse_h2load("connect: Connection refused")


def test_every_shape_has_64_calls_in_flight_over_at_least_4_connections() -> None:
    assert all(c * m == 64 and c >= 4 for c, m in SHAPES)
