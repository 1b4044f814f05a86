"""The clients' JSON rendering of contract messages, the CLI's output."""

from __future__ import annotations

import json

from messages_gateway_client._json import message_json
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb


def test_message_json_renders_a_new_part_type_and_role_as_the_upstream_sent_them() -> None:
    part = {"type": "image_url", "image_url": {"url": "https://example.test/a.png"}}
    m = pb.Message(id="msg_1", object="thread.message", role=pb.ROLE_UNSPECIFIED,
                   unknown_role="developer")
    m.content.add().text.value = "hi"
    m.content.add().unknown.CopyFrom(pb.UnknownContent(type="image_url", json=json.dumps(part)))
    out = message_json(m)
    assert out["role"] == "developer"
    assert out["content"] == [{"type": "text", "text": {"value": "hi", "annotations": []}}, part]


def test_message_json_known_role() -> None:
    assert message_json(pb.Message(role=pb.ROLE_USER))["role"] == "user"
    assert message_json(pb.Message())["role"] is None
