"""Every RPC through a real grpc.aio gateway to a real emulator, both on loopback."""

from __future__ import annotations

import grpc
import httpx
import pytest
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from gateway.emulator.server import EmulatorServer
from tests.conftest import EMULATOR_KEY, gateway_settings, gateway_stub

UPSTREAM_HEADERS = {"authorization": f"Bearer {EMULATOR_KEY}", "openai-beta": "assistants=v1"}


async def new_thread(emulator: EmulatorServer) -> str:
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{emulator.base_url}/threads", json={},
                                   headers=UPSTREAM_HEADERS)
    response.raise_for_status()
    return str(response.json()["id"])


async def fill(stub, thread_id: str, count: int) -> list[pb.Message]:  # type: ignore[no-untyped-def]
    return [
        await stub.CreateMessage(pb.CreateMessageRequest(
            thread_id=thread_id, role=pb.ROLE_USER, content=f"m{i}"))
        for i in range(count)
    ]


def details(err: grpc.aio.AioRpcError) -> dict[str, object]:
    """The google.rpc details of a failed call, by type name."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    found: dict[str, object] = {}
    if status is None:
        return found
    for any_detail in status.details:
        for cls in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest,
                    error_details_pb2.RetryInfo):
            if any_detail.Is(cls.DESCRIPTOR):
                value = cls()
                any_detail.Unpack(value)
                found[cls.DESCRIPTOR.name] = value
    return found


# -- happy paths ---------------------------------------------------------------------------------


async def test_create_message_returns_every_field(stub, emulator) -> None:
    thread_id = await new_thread(emulator)
    created = await stub.CreateMessage(pb.CreateMessageRequest(
        thread_id=thread_id, role=pb.ROLE_ASSISTANT, content="hello",
        metadata=pb.Metadata(entries={"k": "v"})))
    assert created.id.startswith("msg_")
    assert created.object == "thread.message"
    assert created.thread_id == thread_id
    assert created.role == pb.ROLE_ASSISTANT
    assert created.content[0].text.value == "hello"
    assert dict(created.metadata.entries) == {"k": "v"}
    assert created.HasField("status")
    assert not created.HasField("assistant_id")  # JSON null
    assert emulator.log.count("createMessage") == 1


async def test_create_message_with_file_ids_then_files_rpcs(stub, emulator) -> None:
    thread_id = await new_thread(emulator)
    created = await stub.CreateMessage(pb.CreateMessageRequest(
        thread_id=thread_id, role=pb.ROLE_USER, content="with files",
        file_ids=["file-aaa", "file-bbb", "file-ccc"]))
    assert list(created.file_ids) == ["file-aaa", "file-bbb", "file-ccc"]
    page = await stub.ListMessageFiles(pb.ListMessageFilesRequest(
        thread_id=thread_id, message_id=created.id, limit=2, order=pb.ORDER_ASC))
    assert len(page.data) == 2 and page.has_more
    assert all(f.message_id == created.id for f in page.data)
    one = await stub.GetMessageFile(pb.GetMessageFileRequest(
        thread_id=thread_id, message_id=created.id, file_id=page.data[0].id))
    assert one.id == page.data[0].id and one.object == "thread.message.file"
    streamed = [f.id async for p in stub.StreamMessageFiles(pb.StreamMessageFilesRequest(
        thread_id=thread_id, message_id=created.id, limit=1, order=pb.ORDER_ASC)) for f in p.data]
    assert sorted(streamed) == ["file-aaa", "file-bbb", "file-ccc"]
    assert len(streamed) == 3


async def test_get_and_update_message(stub, emulator) -> None:
    thread_id = await new_thread(emulator)
    (created,) = await fill(stub, thread_id, 1)
    got = await stub.GetMessage(pb.GetMessageRequest(thread_id=thread_id, message_id=created.id))
    assert got == created
    updated = await stub.UpdateMessage(pb.UpdateMessageRequest(
        thread_id=thread_id, message_id=created.id, metadata=pb.Metadata(entries={"a": "1"})))
    assert dict(updated.metadata.entries) == {"a": "1"}
    unchanged = await stub.UpdateMessage(pb.UpdateMessageRequest(
        thread_id=thread_id, message_id=created.id))
    assert dict(unchanged.metadata.entries) == {"a": "1"}
    assert emulator.log.count("modifyMessage") == 2


async def test_list_messages_one_page_with_cursor(stub, emulator) -> None:
    thread_id = await new_thread(emulator)
    created = await fill(stub, thread_id, 7)
    first = await stub.ListMessages(pb.ListMessagesRequest(
        thread_id=thread_id, limit=3, order=pb.ORDER_ASC))
    assert [m.id for m in first.data] == [m.id for m in created[:3]]
    assert first.has_more and first.first_id == created[0].id and first.last_id == created[2].id
    second = await stub.ListMessages(pb.ListMessagesRequest(
        thread_id=thread_id, limit=3, order=pb.ORDER_ASC, after=first.last_id))
    assert [m.id for m in second.data] == [m.id for m in created[3:6]]
    default = await stub.ListMessages(pb.ListMessagesRequest(thread_id=thread_id))
    assert [m.id for m in default.data] == [m.id for m in reversed(created)]  # desc default


async def test_list_messages_empty_page_has_null_cursors(stub, emulator) -> None:
    thread_id = await new_thread(emulator)
    page = await stub.ListMessages(pb.ListMessagesRequest(thread_id=thread_id))
    assert list(page.data) == [] and not page.has_more
    assert not page.HasField("first_id") and not page.HasField("last_id")


async def test_stream_messages_streams_every_page_in_order(stub, emulator) -> None:
    thread_id = await new_thread(emulator)
    created = await fill(stub, thread_id, 23)
    emulator.log.clear()
    pages = [p async for p in stub.StreamMessages(pb.StreamMessagesRequest(
        thread_id=thread_id, limit=5, order=pb.ORDER_ASC))]
    assert [len(p.data) for p in pages] == [5, 5, 5, 5, 3]
    assert [m.id for p in pages for m in p.data] == [m.id for m in created]
    assert [p.resume_after for p in pages] == [p.data[-1].id for p in pages]
    assert emulator.log.count("listMessages") == 5


async def test_stream_messages_desc_with_max_items(stub, emulator) -> None:
    thread_id = await new_thread(emulator)
    created = await fill(stub, thread_id, 12)
    ids = [m.id async for p in stub.StreamMessages(pb.StreamMessagesRequest(
        thread_id=thread_id, limit=5, max_items=7)) for m in p.data]
    assert ids == [m.id for m in reversed(created)][:7]


async def test_unary_response_metadata_carries_upstream_headers(stub, emulator) -> None:
    thread_id = await new_thread(emulator)
    (created,) = await fill(stub, thread_id, 1)
    call = stub.GetMessage(pb.GetMessageRequest(thread_id=thread_id, message_id=created.id))
    await call
    # Unary calls carry response metadata in the trailers (one grpc batch with the status).
    assert not dict(await call.initial_metadata())
    metadata = dict(await call.trailing_metadata())
    assert metadata["x-request-id"].startswith("req_")
    assert "openai-processing-ms" in metadata
    assert any(k.startswith("x-ratelimit-") for k in metadata)
    assert metadata["x-gateway-request-id"]


async def test_stream_response_metadata_arrives_as_trailers(stub, emulator) -> None:
    thread_id = await new_thread(emulator)
    await fill(stub, thread_id, 3)
    call = stub.StreamMessages(pb.StreamMessagesRequest(thread_id=thread_id, limit=2),
                               metadata=(("x-request-id", "trace-stream"),))
    pages = [page async for page in call]
    assert sum(len(p.data) for p in pages) == 3
    metadata = dict(await call.trailing_metadata())
    assert metadata["x-gateway-request-id"] == "trace-stream"
    assert metadata["x-request-id"].startswith("req_")  # the first page's upstream request


async def test_extra_query_and_extra_body_reach_the_upstream(stub, emulator) -> None:
    thread_id = await new_thread(emulator)
    await fill(stub, thread_id, 2)
    emulator.log.clear()
    await stub.ListMessages(pb.ListMessagesRequest(
        thread_id=thread_id, options=pb.RequestOptions(extra_query={"trace": "abc"})))
    assert emulator.log.entries[-1].query["trace"] == "abc"
    body = struct_pb2.Struct()
    body.update({"surprise": 1})
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateMessage(pb.CreateMessageRequest(
            thread_id=thread_id, role=pb.ROLE_USER, content="x",
            options=pb.RequestOptions(extra_body=body)))
    # The emulator rejects unknown body fields like the real service: proof the field was sent.
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "surprise" in err.value.details()


# -- validation: INVALID_ARGUMENT naming the field, before any upstream call ----------------------

BAD_REQUESTS = [
    ("GetMessage", pb.GetMessageRequest(thread_id="", message_id="msg_1"), "thread_id"),
    ("GetMessage", pb.GetMessageRequest(thread_id="t/../x", message_id="msg_1"), "thread_id"),
    ("GetMessage", pb.GetMessageRequest(thread_id="thread_1", message_id="a/b"), "message_id"),
    ("GetMessage", pb.GetMessageRequest(thread_id="thread_1", message_id=".."), "message_id"),
    ("GetMessage", pb.GetMessageRequest(thread_id="thread_\n1", message_id="m"), "thread_id"),
    ("GetMessage", pb.GetMessageRequest(thread_id="t" * 257, message_id="m"), "thread_id"),
    ("GetMessage", pb.GetMessageRequest(thread_id="thread_1", message_id="m?x=1"), "message_id"),
    ("ListMessages", pb.ListMessagesRequest(thread_id="thread_1", limit=101), "limit"),
    ("ListMessages", pb.ListMessagesRequest(thread_id="thread_1", limit=-1), "limit"),
    ("ListMessages", pb.ListMessagesRequest(thread_id="thread_1", order=7), "order"),
    ("ListMessages", pb.ListMessagesRequest(thread_id="thread_1", after="a/b"), "after"),
    ("ListMessages", pb.ListMessagesRequest(thread_id="thread_1", before="a b"), "before"),
    ("ListMessages", pb.ListMessagesRequest(thread_id="thread_1", run_id="r#1"), "run_id"),
    ("StreamMessages", pb.StreamMessagesRequest(thread_id="thread_1", max_items=-1), "max_items"),
    ("StreamMessages", pb.StreamMessagesRequest(thread_id="thread_1", limit=1000), "limit"),
    ("CreateMessage", pb.CreateMessageRequest(thread_id="thread_1", content="x"), "role"),
    ("CreateMessage", pb.CreateMessageRequest(thread_id="thread_1", role=9, content="x"), "role"),
    ("CreateMessage", pb.CreateMessageRequest(thread_id="thread_1", role=pb.ROLE_USER), "content"),
    ("CreateMessage", pb.CreateMessageRequest(
        thread_id="thread_1", role=pb.ROLE_USER, content="x" * 256_001), "content"),
    ("CreateMessage", pb.CreateMessageRequest(
        thread_id="thread_1", role=pb.ROLE_USER, content="x",
        file_ids=[f"file-{i}" for i in range(11)]), "file_ids"),
    ("CreateMessage", pb.CreateMessageRequest(
        thread_id="thread_1", role=pb.ROLE_USER, content="x",
        metadata=pb.Metadata(entries={str(i): "v" for i in range(17)})), "metadata"),
    ("CreateMessage", pb.CreateMessageRequest(
        thread_id="thread_1", role=pb.ROLE_USER, content="x",
        metadata=pb.Metadata(entries={"k" * 65: "v"})), "metadata"),
    ("UpdateMessage", pb.UpdateMessageRequest(
        thread_id="thread_1", message_id="msg_1",
        metadata=pb.Metadata(entries={"k": "v" * 513})), "metadata"),
    ("GetMessage", pb.GetMessageRequest(
        thread_id="thread_1", message_id="msg_1",
        options=pb.RequestOptions(extra_headers={"Authorization": "Bearer x"})),
     "options.extra_headers"),
    ("GetMessage", pb.GetMessageRequest(
        thread_id="thread_1", message_id="msg_1",
        options=pb.RequestOptions(extra_headers={"x-custom": "1"})), "options.extra_headers"),
    ("ListMessages", pb.ListMessagesRequest(
        thread_id="thread_1", options=pb.RequestOptions(extra_query={"limit": "5"})),
     "options.extra_query"),
    ("GetMessageFile", pb.GetMessageFileRequest(thread_id="thread_1", message_id="msg_1"),
     "file_id"),
    ("ListMessageFiles", pb.ListMessageFilesRequest(thread_id="thread_1"), "message_id"),
    ("StreamMessageFiles", pb.StreamMessageFilesRequest(
        thread_id="thread_1", message_id="msg_1", order=5), "order"),
]


@pytest.mark.parametrize(("method", "request_", "field"), BAD_REQUESTS,
                         ids=[f"{m}-{f}-{i}" for i, (m, _, f) in enumerate(BAD_REQUESTS)])
async def test_invalid_request_is_invalid_argument_naming_the_field(
    stub, emulator, method: str, request_: object, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        call = getattr(stub, method)(request_)
        if method.startswith("Stream"):
            async for _ in call:
                pass
        else:
            await call
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in err.value.details()
    bad_request = details(err.value)["BadRequest"]
    assert any(v.field.startswith(field) for v in bad_request.field_violations)  # type: ignore[attr-defined]
    assert emulator.log.count() == 0


# -- upstream errors: one mapping ----------------------------------------------------------------


async def test_upstream_404_is_not_found_with_error_info(stub, emulator) -> None:
    thread_id = await new_thread(emulator)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetMessage(pb.GetMessageRequest(thread_id=thread_id, message_id="msg_missing"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "msg_missing" in err.value.details()
    info = details(err.value)["ErrorInfo"]
    assert info.reason == "UPSTREAM_NOT_FOUND"  # type: ignore[attr-defined]
    assert info.metadata["upstream_type"] == "invalid_request_error"  # type: ignore[attr-defined]
    assert info.metadata["upstream_request_id"].startswith("req_")  # type: ignore[attr-defined]


STATUS_MAPPING = [
    (400, grpc.StatusCode.INVALID_ARGUMENT),
    (404, grpc.StatusCode.NOT_FOUND),
    (409, grpc.StatusCode.ABORTED),
    (429, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (500, grpc.StatusCode.UNAVAILABLE),
    (502, grpc.StatusCode.UNAVAILABLE),
    (503, grpc.StatusCode.UNAVAILABLE),
    (401, grpc.StatusCode.INTERNAL),
    (403, grpc.StatusCode.INTERNAL),
]


@pytest.mark.parametrize(("upstream_status", "code"), STATUS_MAPPING)
async def test_upstream_status_maps_to_grpc_code(stub, emulator, upstream_status, code) -> None:
    thread_id = await new_thread(emulator)
    emulator.faults.add("getMessage", "status", status=upstream_status, times=10)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetMessage(pb.GetMessageRequest(thread_id=thread_id, message_id="msg_x"))
    assert err.value.code() == code
    assert err.value.code() != grpc.StatusCode.UNAUTHENTICATED


async def test_upstream_429_carries_retry_info(stub, emulator) -> None:
    thread_id = await new_thread(emulator)
    emulator.faults.add("getMessage", "status", status=429, retry_after_ms=1500, times=10)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetMessage(pb.GetMessageRequest(thread_id=thread_id, message_id="msg_x"))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    retry = details(err.value)["RetryInfo"]
    assert retry.retry_delay.seconds == 1 and retry.retry_delay.nanos == 500_000_000  # type: ignore[attr-defined]


async def test_rejected_upstream_key_is_internal_not_unauthenticated(emulator) -> None:
    settings = gateway_settings(emulator).replace("upstream", api_key="sk-wrong")
    async with gateway_stub(settings) as custom:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await custom.GetMessage(pb.GetMessageRequest(thread_id="thread_1", message_id="m"))
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert "sk-wrong" not in err.value.details()
    assert "sk-wrong" not in str(err.value.trailing_metadata())


@pytest.mark.parametrize(("fault", "params", "code"), [
    ("reset", {}, grpc.StatusCode.UNAVAILABLE),
    ("truncated_json", {}, grpc.StatusCode.INTERNAL),
    ("non_json", {}, grpc.StatusCode.INTERNAL),
    ("redirect", {}, grpc.StatusCode.INTERNAL),
])
async def test_broken_upstream_answers_map_to_honest_statuses(stub, emulator, fault, params, code):
    thread_id = await new_thread(emulator)
    (created,) = await fill(stub, thread_id, 1)
    emulator.faults.add("getMessage", fault, times=10, **params)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetMessage(pb.GetMessageRequest(thread_id=thread_id, message_id=created.id),
                              timeout=5)
    assert err.value.code() == code


async def test_connection_refused_is_unavailable(emulator) -> None:
    settings = gateway_settings(emulator).replace("upstream", base_url="http://127.0.0.1:9/v1")
    async with gateway_stub(settings) as custom:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await custom.GetMessage(pb.GetMessageRequest(thread_id="thread_1", message_id="m"),
                                    timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_deadline_shorter_than_upstream_latency_is_deadline_exceeded(stub, emulator) -> None:
    thread_id = await new_thread(emulator)
    emulator.faults.add("getMessage", "latency", seconds=2.0, times=1)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetMessage(pb.GetMessageRequest(thread_id=thread_id, message_id="msg_x"),
                              timeout=0.3)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_slow_drip_body_is_bounded_by_the_deadline(stub, emulator) -> None:
    import time

    thread_id = await new_thread(emulator)
    (created,) = await fill(stub, thread_id, 1)
    emulator.faults.add("getMessage", "slow_body", times=1)
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetMessage(pb.GetMessageRequest(thread_id=thread_id, message_id=created.id),
                              timeout=0.5)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 1.5


async def test_stream_failure_mid_way_names_the_last_id_sent(stub, emulator) -> None:
    thread_id = await new_thread(emulator)
    created = await fill(stub, thread_id, 12)
    received: list[str] = []
    # The first page's request goes through (a no-op rule takes it); every later one fails.
    # Armed before the call: added after the first page arrived, a loaded machine could have
    # streamed every page by then.
    emulator.faults.add("listMessages", "slow_headers", times=1, seconds=0.0)
    emulator.faults.add("listMessages", "status", status=500, times=100)
    call = stub.StreamMessages(pb.StreamMessagesRequest(
        thread_id=thread_id, limit=4, order=pb.ORDER_ASC))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for page in call:
            received.extend(m.id for m in page.data)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert received == [m.id for m in created[:4]]
    assert dict(err.value.trailing_metadata())["resume-after"] == received[-1]
