from __future__ import annotations

import pytest
from google.protobuf import struct_pb2

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from gateway.cache.policy import CachePolicy, Directive, cacheable, directive, options_bypass
from gateway.config import CacheSettings


@pytest.mark.parametrize(("header", "expected"), [
    ("", Directive.USE),
    ("max-age=5", Directive.USE),
    ("no-cache", Directive.REFRESH),
    ("No-Cache", Directive.REFRESH),
    ("no-store", Directive.BYPASS),
    ("no-cache, no-store", Directive.BYPASS),
    (" max-age=0 ,no-cache", Directive.REFRESH),
])
def test_directive_parses_cache_control(header: str, expected: Directive) -> None:
    assert directive(header) is expected


def test_cacheable_in_progress_message_is_false() -> None:
    assert not cacheable(pb.Message(id="m", status=pb.MESSAGE_STATUS_IN_PROGRESS))
    assert cacheable(pb.Message(id="m", status=pb.MESSAGE_STATUS_COMPLETED))
    assert cacheable(pb.Message(id="m"))  # v1-era, no status: final


def test_cacheable_list_page_holding_in_progress_message_is_false() -> None:
    done = pb.Message(id="a", status=pb.MESSAGE_STATUS_COMPLETED)
    running = pb.Message(id="b", status=pb.MESSAGE_STATUS_IN_PROGRESS)
    assert cacheable(pb.ListMessagesResponse(data=[done]))
    assert not cacheable(pb.ListMessagesResponse(data=[done, running]))


def test_options_bypass_extra_headers_or_body() -> None:
    assert not options_bypass(pb.RequestOptions(extra_query={"a": "b"}))
    assert options_bypass(pb.RequestOptions(extra_headers={"x-a": "b"}))
    assert options_bypass(pb.RequestOptions(extra_body=struct_pb2.Struct()))


def test_policy_ttls_come_from_settings() -> None:
    policy = CachePolicy(CacheSettings(get_message_ttl_seconds=7, list_messages_ttl_seconds=0))
    assert policy.ttl("getMessage") == 7
    assert policy.ttl("listMessages") == 0
    assert policy.max_ttl == CacheSettings().get_message_file_ttl_seconds
