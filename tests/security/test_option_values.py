"""Case 9 (options): client mistakes in the per-call options are INVALID_ARGUMENT naming the
field, before any upstream request: a pass-through header value that is not ASCII (httpx raised
UnicodeEncodeError, INTERNAL) and a 100 KB ``extra_query`` value (INTERNAL), on both faces."""

from __future__ import annotations

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway.app import start_gateway
from gateway.emulator.server import EmulatorServer
from tests.conftest import gateway_settings
from tests.rest.conftest import new_thread

TAG = "x-trace-tag"


def _field(err: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(err)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            return bad.field_violations[0].field
    raise AssertionError("no BadRequest detail")


@pytest.mark.parametrize("options", [
    pb.RequestOptions(extra_headers={TAG: "caf\u00e9"}),
    pb.RequestOptions(extra_headers={TAG: "line\nbreak"}),
    pb.RequestOptions(extra_query={"q": "x" * 100_000}),
    pb.RequestOptions(extra_query={f"k{i}": "v" for i in range(40)}),
], ids=["non-ascii header", "control character", "100 KB query value", "40 query params"])
async def test_bad_option_values_are_invalid_argument_naming_the_field(
    emulator: EmulatorServer, options: pb.RequestOptions
) -> None:
    settings = gateway_settings(emulator).replace("upstream", allowed_extra_headers=(TAG,))
    settings = settings.replace("server", http_listen="127.0.0.1:0")
    gateway = await start_gateway(settings)
    try:
        thread_id = await new_thread(emulator)
        emulator.log.clear()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
            stub = pb_grpc.MessagesServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.ListMessages(pb.ListMessagesRequest(thread_id=thread_id,
                                                               options=options), timeout=5)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert _field(caught.value).startswith(("options.extra_headers", "options.extra_query"))
        assert emulator.log.count() == 0
        # The same mistakes over REST: a raw non-ASCII header value, a long query value.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}/v1",
                                     headers={"openai-beta": "assistants=v1"}) as http:
            header = await http.get(f"/threads/{thread_id}/messages",
                                    headers=[(TAG.encode(), "caf\u00e9".encode())])
            query = await http.get(f"/threads/{thread_id}/messages", params={"q": "x" * 3000})
        assert (header.status_code, header.json()["error"]["param"]) == (400, TAG)
        assert query.status_code == 400 and "q" in query.json()["error"]["param"]
        assert emulator.log.count() == 0
    finally:
        await gateway.stop(grace=0.5)
