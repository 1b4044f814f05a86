"""The gRPC face of the operations: one line per RPC, nothing else.

Errors are not handled here; ``gateway.rpc.interceptor`` maps them for every method alike.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc

from clients.generated.messages_gateway.v1 import messages_pb2 as pb
from clients.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway.operations.messages import MessageOperations


class MessagesServicer(pb_grpc.MessagesServiceServicer):
    def __init__(self, operations: MessageOperations) -> None:
        self._ops = operations

    async def CreateMessage(  # noqa: N802 - names come from the proto
        self, request: pb.CreateMessageRequest, context: grpc.aio.ServicerContext
    ) -> pb.Message:
        return await self._ops.create_message(request)

    async def GetMessage(  # noqa: N802
        self, request: pb.GetMessageRequest, context: grpc.aio.ServicerContext
    ) -> pb.Message:
        return await self._ops.get_message(request)

    async def UpdateMessage(  # noqa: N802
        self, request: pb.UpdateMessageRequest, context: grpc.aio.ServicerContext
    ) -> pb.Message:
        return await self._ops.update_message(request)

    async def ListMessages(  # noqa: N802
        self, request: pb.ListMessagesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMessagesResponse:
        return await self._ops.list_messages(request)

    async def StreamMessages(  # noqa: N802
        self, request: pb.StreamMessagesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.MessagePage]:
        async with contextlib.aclosing(self._ops.stream_messages(request)) as pages:
            async for page in pages:
                yield page

    async def GetMessageFile(  # noqa: N802
        self, request: pb.GetMessageFileRequest, context: grpc.aio.ServicerContext
    ) -> pb.MessageFile:
        return await self._ops.get_message_file(request)

    async def ListMessageFiles(  # noqa: N802
        self, request: pb.ListMessageFilesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMessageFilesResponse:
        return await self._ops.list_message_files(request)

    async def StreamMessageFiles(  # noqa: N802
        self, request: pb.StreamMessageFilesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.MessageFilePage]:
        async with contextlib.aclosing(self._ops.stream_message_files(request)) as pages:
            async for page in pages:
                yield page
