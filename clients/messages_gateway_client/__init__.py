"""Typed Python clients for the Messages Gateway (distribution ``messages-gateway-client``).

Shaped like the SDK consumers know::

    from messages_gateway_client import MessagesGatewayClient

    with MessagesGatewayClient("gateway:50051", api_key=key) as client:
        msg = client.messages.create(thread_id, role="user", content="hi")
        for m in client.messages.list(thread_id, order="asc"):   # one stream, resumed if broken
            ...
        raw = client.messages.with_raw_response.retrieve(msg.id, thread_id=thread_id)
        print(raw.headers["x-request-id"], raw.parse().content)

``AsyncMessagesGatewayClient`` is the same with ``await`` / ``async for``. Results are the
contract's protobuf messages
(``messages_gateway_client.generated.messages_gateway.v1.messages_pb2``); ``to_dict(result)`` /
``to_json(result)`` give the upstream API's JSON shape; ``list_page`` returns a ``Page`` with
``get_next_page()``; failures raise ``GatewayError`` subclasses; idempotent calls are retried
(``max_retries``, ``with_options``). Depends on grpcio, protobuf and googleapis-common-protos
only.
"""

from __future__ import annotations

from messages_gateway_client._async import AsyncMessagesGatewayClient, AsyncStream
from messages_gateway_client._channel import NOT_GIVEN, RETRY_POLICY, service_config
from messages_gateway_client._errors import (
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    CancelledError,
    ConflictError,
    FieldViolation,
    GatewayError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UnavailableError,
)
from messages_gateway_client._json import to_dict, to_json
from messages_gateway_client._pages import AsyncPage, Page
from messages_gateway_client._raw import RawResponse
from messages_gateway_client._retry import IDEMPOTENT_METHODS
from messages_gateway_client._sync import MessagesGatewayClient, Stream

__all__ = [
    "APITimeoutError",
    "AsyncMessagesGatewayClient",
    "AsyncPage",
    "AsyncStream",
    "AuthenticationError",
    "BadRequestError",
    "CancelledError",
    "ConflictError",
    "FieldViolation",
    "GatewayError",
    "IDEMPOTENT_METHODS",
    "InternalServerError",
    "MessagesGatewayClient",
    "NOT_GIVEN",
    "NotFoundError",
    "Page",
    "PermissionDeniedError",
    "RETRY_POLICY",
    "RateLimitError",
    "RawResponse",
    "Stream",
    "UnavailableError",
    "service_config",
    "to_dict",
    "to_json",
]
