"""One driver per face, speaking the same calls, answering the same ``Outcome``.

A scenario written once against ``Driver`` runs over gRPC (grpc.aio stub, metadata) and over REST
(httpx, headers, NDJSON), so the parity test can assert that both faces give a consumer the same
answer: status (gRPC code ↔ HTTP status through the gateway's own error table), reason, the field
named, the ids delivered, the resume point and the cache outcome.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
import abc
import dataclasses
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway import errors
from gateway.app import Gateway
from gateway.headers import BETA_VALUE
from gateway.rest import ROUTES

#: HTTP status → gRPC code name, from the gateway's own error classes (one table).
HTTP_TO_CODE = {200: "OK", **{int(cls.http_status): cls.grpc_code.name
                              for cls in errors.GatewayError.__subclasses__()}}
_ROLES = {"user": pb.ROLE_USER, "assistant": pb.ROLE_ASSISTANT}
_ORDERS = {"asc": pb.ORDER_ASC, "desc": pb.ORDER_DESC}


def _last_name(field_path: str | None) -> str | None:
    """``options.extra_body['foo']`` and ``foo`` both name ``foo``."""
    if not field_path:
        return None
    return re.findall(r"[A-Za-z0-9_\-]+", field_path)[-1]


@dataclass
class Outcome:
    code: str
    reason: str | None = None
    field: str | None = None
    ids: list[str] = dataclasses.field(default_factory=list)
    resume: tuple[str, str] | None = None
    cache: str | None = None
    #: Scenario figures: upstream request counts, log fields, per-method results.
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclass
class Call:
    """One consumer call, face-neutral."""

    rpc: str
    ids: dict[str, str]
    body: dict[str, Any] | None = None
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    key: str | None = None
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    extra_query: dict[str, str] = dataclasses.field(default_factory=dict)
    extra_body: dict[str, Any] = dataclasses.field(default_factory=dict)
    extra_headers: dict[str, str] = dataclasses.field(default_factory=dict)


class Driver(abc.ABC):
    face: str

    @abc.abstractmethod
    async def call(self, call: Call) -> Outcome:
        """One unary call."""

    @abc.abstractmethod
    async def stream(self, call: Call,
                     after_first: Callable[[], Awaitable[None]] | None = None) -> Outcome:
        """Read a stream; ``after_first`` runs once the first item arrived."""


def _metadata(call: Call) -> list[tuple[str, str]]:
    metadata = list(call.headers)
    if call.key is not None:
        metadata.append(("authorization", f"Bearer {call.key}"))
    return metadata


class GrpcDriver(Driver):
    face = "grpc"

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._messages = pb_grpc.MessagesServiceStub(channel)
        self._threads = pb_grpc.ThreadsServiceStub(channel)

    def _method(self, rpc: str) -> Any:
        return getattr(self._threads if rpc.endswith("Thread") else self._messages, rpc)

    def _request(self, call: Call) -> Any:
        fields: dict[str, Any] = dict(call.ids)
        for name, value in {**(call.body or {}), **call.params}.items():
            if name == "role":
                value = _ROLES[value]
            elif name == "order":
                value = _ORDERS[value]
            elif name == "metadata":
                value = pb.Metadata(entries=value)
            elif name == "messages":
                value = [pb.ThreadMessage(
                    role=_ROLES[m["role"]], content=m["content"], file_ids=m.get("file_ids", ()),
                    metadata=pb.Metadata(entries=m["metadata"]) if "metadata" in m else None)
                    for m in value]
            fields[name] = value
        options = pb.RequestOptions(extra_query=call.extra_query,
                                    extra_headers=call.extra_headers)
        if call.extra_body:
            body = struct_pb2.Struct()
            body.update(call.extra_body)
            options.extra_body.CopyFrom(body)
        return getattr(pb, f"{call.rpc}Request")(options=options, **fields)

    @staticmethod
    def _failure(exc: grpc.aio.AioRpcError, outcome: Outcome) -> Outcome:
        outcome.code = exc.code().name
        trailing = dict(exc.trailing_metadata() or ())
        status = rpc_status.from_call(exc)
        for detail in status.details if status else ():
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                outcome.reason = info.reason
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                outcome.field = _last_name(bad.field_violations[0].field)
        for direction in ("after", "before"):
            if f"resume-{direction}" in trailing:
                outcome.resume = (direction, trailing[f"resume-{direction}"])
        return outcome

    async def call(self, call: Call) -> Outcome:
        method = self._method(call.rpc)
        rpc = method(self._request(call), metadata=_metadata(call), timeout=10)
        try:
            response = await rpc
        except grpc.aio.AioRpcError as exc:
            return self._failure(exc, Outcome(""))
        trailing = dict(await rpc.trailing_metadata())
        ids = [response.id] if getattr(response, "id", "") else [m.id for m in response.data]
        return Outcome("OK", ids=ids, cache=trailing.get("x-cache"))

    async def stream(self, call: Call,
                     after_first: Callable[[], Awaitable[None]] | None = None) -> Outcome:
        method = self._method(call.rpc)
        rpc = method(self._request(call), metadata=_metadata(call), timeout=20)
        outcome = Outcome("OK")
        try:
            while (page := await rpc.read()) is not grpc.aio.EOF:
                outcome.ids.extend(item.id for item in page.data)
                if after_first is not None:
                    await after_first()
                    after_first = None
        except grpc.aio.AioRpcError as exc:
            return self._failure(exc, outcome)
        return outcome


class RestDriver(Driver):
    face = "rest"

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._http = client

    def _request(self, call: Call) -> httpx.Request:
        verb, path = next((m, p) for name, m, p in ROUTES if name == call.rpc)
        url = path.format(**call.ids)
        # Extra headers as raw bytes: a consumer's HTTP client may send any octets (httpx
        # refuses to encode non-ASCII text itself).
        headers: list[tuple[str, str | bytes]] = [
            ("openai-beta", BETA_VALUE), *_metadata(call),
            *((k, v.encode()) for k, v in call.extra_headers.items())]
        params = {**{k: str(v) for k, v in call.params.items()}, **call.extra_query}
        body = None
        if verb == "POST":
            body = json.dumps({**(call.body or {}), **call.extra_body}).encode()
            headers.append(("content-type", "application/json"))
        return self._http.build_request(verb, url, params=params, headers=headers, content=body)

    @staticmethod
    def _error(body: dict[str, Any], status: int, outcome: Outcome) -> Outcome:
        error = body["error"]
        outcome.code = HTTP_TO_CODE[status]
        outcome.reason = error["code"].upper() if error.get("code") else None
        outcome.field = _last_name(error.get("param"))
        for direction in ("after", "before"):
            if f"resume_{direction}" in body:
                outcome.resume = (direction, body[f"resume_{direction}"])
        return outcome

    async def call(self, call: Call) -> Outcome:
        response = await self._http.send(self._request(call))
        body = response.json()
        if response.status_code != 200:
            return self._error(body, response.status_code, Outcome(""))
        ids = [body["id"]] if "id" in body else [m["id"] for m in body["data"]]
        return Outcome("OK", ids=ids, cache=response.headers.get("x-cache"))

    async def stream(self, call: Call,
                     after_first: Callable[[], Awaitable[None]] | None = None) -> Outcome:
        response = await self._http.send(self._request(call), stream=True)
        try:
            if response.status_code != 200:
                await response.aread()
                return self._error(response.json(), response.status_code, Outcome(""))
            outcome = Outcome("OK")
            async for line in response.aiter_lines():
                item = json.loads(line)
                if "error" in item:  # the last line of a stream that failed after its first
                    return self._error(item, item["status"], outcome)
                outcome.ids.append(item["id"])
                if after_first is not None:
                    await after_first()
                    after_first = None
            return outcome
        finally:
            await response.aclose()


def drivers(gateway: Gateway, channel: grpc.aio.Channel,
            client: httpx.AsyncClient) -> dict[str, Driver]:
    return {"grpc": GrpcDriver(channel), "rest": RestDriver(client)}
