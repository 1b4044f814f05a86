"""Property tests: any request field of any RPC, and any spec-shaped upstream JSON.

The gateway and the emulator run on a background event loop (hypothesis drives sync tests);
examples are bounded, and every call carries a deadline so a hang fails the test instead of
hanging it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf import descriptor as d
from google.protobuf import struct_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway.app import start_gateway
from gateway.emulator import SPEC_PATH
from gateway.emulator.server import EmulatorServer
from tests.reliability.conftest import TEST_RELIABILITY

KEY = "sk-fuzz"
REQUEST_OK = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
              grpc.StatusCode.RESOURCE_EXHAUSTED}
SERVICE = pb.DESCRIPTOR.services_by_name["MessagesService"]
FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])


class Stack:
    """Emulator + gateway on their own loop in a daemon thread."""

    def __init__(self) -> None:
        from gateway.config import ReliabilitySettings, ServerSettings, Settings, UpstreamSettings

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.emulator = EmulatorServer(api_keys={KEY})
        self.run(self.emulator.start("127.0.0.1", 0))
        self.gateway = self.run(start_gateway(Settings(
            server=ServerSettings(grpc_listen="127.0.0.1:0"),
            upstream=UpstreamSettings(base_url=self.emulator.base_url, api_key=KEY),
            reliability=ReliabilitySettings(**TEST_RELIABILITY, circuit_failure_threshold=10**6),
        )))
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.gateway.grpc_port}")
        self.stub = pb_grpc.MessagesServiceStub(self.channel)
        thread = self.emulator.store.create_thread()
        self.thread_id = thread["id"]
        self.message_ids = self.emulator.store.seed_messages(self.thread_id, 5)

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self.channel.close()
        self.run(self.gateway.stop(grace=0.5))
        self.run(self.emulator.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        # An unclosed loop (and its self-pipe sockets) is garbage that a later test's
        # gc.collect() reports as ResourceWarning - failing that test, not this one.
        self.loop.close()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    s = Stack()
    try:
        yield s
    finally:
        s.close()


# -- requests: a strategy for every field of every request message, from the descriptors ---------

TEXT = st.one_of(st.text(max_size=40), st.text(alphabet="./%#?\r\n\x00 é😀", max_size=12),
                 st.sampled_from(["", " ", "../x", "%2e%2e", "a" * 300, "http://127.0.0.2/"]))


def field_value(f: d.FieldDescriptor, ids: list[str], depth: int) -> st.SearchStrategy[Any]:
    if f.type == f.TYPE_STRING:
        return st.one_of(TEXT, st.sampled_from(ids)) if f.name.endswith("id") else TEXT
    if f.type in (f.TYPE_INT32, f.TYPE_SINT32, f.TYPE_SFIXED32):
        return st.integers(-(2**31), 2**31 - 1)
    if f.type in (f.TYPE_INT64, f.TYPE_SINT64, f.TYPE_SFIXED64):
        return st.integers(-(2**63), 2**63 - 1)
    if f.type in (f.TYPE_UINT32, f.TYPE_FIXED32):
        return st.integers(0, 2**32 - 1)
    if f.type in (f.TYPE_UINT64, f.TYPE_FIXED64):
        return st.integers(0, 2**64 - 1)
    if f.type == f.TYPE_BOOL:
        return st.booleans()
    if f.type == f.TYPE_ENUM:
        return st.integers(-3, 12)  # unknown values included
    if f.type == f.TYPE_MESSAGE:
        return message_strategy(f.message_type, ids, depth + 1)
    return st.nothing()


@functools.cache
def _struct() -> st.SearchStrategy[struct_pb2.Struct]:
    def build(values: dict[str, Any]) -> struct_pb2.Struct:
        s = struct_pb2.Struct()
        s.update(values)
        return s

    scalars = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False), TEXT)
    return st.dictionaries(TEXT, scalars, max_size=4).map(build)


def message_strategy(desc: d.Descriptor, ids: list[str], depth: int = 0
                     ) -> st.SearchStrategy[Any]:
    if desc.full_name == "google.protobuf.Struct":
        return _struct()
    if depth > 3:
        return st.just(None)
    parts: dict[str, st.SearchStrategy[Any]] = {}
    for f in desc.fields:
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            key_f, value_f = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
            parts[f.name] = st.dictionaries(field_value(key_f, ids, depth),
                                            field_value(value_f, ids, depth), max_size=18)
        elif f.is_repeated:
            parts[f.name] = st.lists(field_value(f, ids, depth), max_size=12)
        else:
            parts[f.name] = st.one_of(st.none(), field_value(f, ids, depth))
    cls = pb.__dict__.get(desc.name) if desc.file is pb.DESCRIPTOR else None

    def build(values: dict[str, Any]) -> Any:
        from google.protobuf import message_factory

        msg = (cls or message_factory.GetMessageClass(desc))()
        for name, value in values.items():
            if value is None:
                continue
            f = desc.fields_by_name[name]
            target = getattr(msg, name)
            if f.message_type is not None and f.message_type.GetOptions().map_entry:
                for k, v in value.items():
                    if f.message_type.fields_by_name["value"].message_type is None:
                        target[k] = v
            elif f.is_repeated:
                if f.message_type is None:
                    target.extend(value)
                else:
                    for item in value:
                        if item is not None:
                            target.add().CopyFrom(item)
            elif f.message_type is not None:
                target.CopyFrom(value)
            else:
                setattr(msg, name, value)
        return msg

    return st.fixed_dictionaries({}, optional=parts).map(build)


def call(stack: Stack, method: d.MethodDescriptor, request: Any) -> grpc.StatusCode:
    rpc = getattr(stack.stub, method.name)
    try:
        if method.server_streaming:
            for _ in rpc(request, timeout=10):
                pass
        else:
            rpc(request, timeout=10)
    except grpc.RpcError as err:
        return err.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


@pytest.mark.parametrize("method_name", [m.name for m in SERVICE.methods])
def test_fuzz_every_request_field_only_documented_statuses(stack: Stack, method_name: str) -> None:
    method = SERVICE.methods_by_name[method_name]
    ids = [stack.thread_id, *stack.message_ids, "file-abc"]
    seen: set[grpc.StatusCode] = set()

    @FUZZ
    @given(request=message_strategy(method.input_type, ids))
    def check(request: Any) -> None:
        code = call(stack, method, request)
        seen.add(code)
        assert code in REQUEST_OK, f"{method_name} answered {code.name} to {request!r}"

    check()
    assert seen <= REQUEST_OK


# -- upstream JSON from the spec's schemas ---------------------------------------------------------


@functools.cache
def spec_schema(name: str) -> dict[str, Any]:
    components = yaml.safe_load(SPEC_PATH.read_text())["components"]["schemas"]

    def convert(node: Any) -> Any:
        if isinstance(node, list):
            return [convert(n) for n in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            return convert(components[node["$ref"].rsplit("/", 1)[-1]])
        out = {k: convert(v) for k, v in node.items()
               if not k.startswith("x-") and k not in ("nullable", "example", "format",
                                                        "description", "title", "deprecated")}
        if node.get("nullable"):
            return {"anyOf": [out, {"type": "null"}]}
        return out

    return convert(components[name])  # type: ignore[no-any-return]


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Instances of the spec's JSON-schema subset (hypothesis-jsonschema 0.23.1, the last
    release, fails on hypothesis 6.170's internals: ``'many' object has no attribute 'more'``)."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            return st.one_of([from_schema(s) for s in schema[combinator]])
    kind = schema.get("type") or ("object" if "properties" in schema else None)
    if kind == "object":
        props = {k: from_schema(v) for k, v in schema.get("properties", {}).items()}
        required = set(schema.get("required", ()))
        extra = (st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8),
                                 max_size=2)
                 if schema.get("additionalProperties", True) is not False or not props
                 else st.just({}))
        fixed = st.fixed_dictionaries({k: v for k, v in props.items() if k in required},
                                      optional={k: v for k, v in props.items()
                                                if k not in required})
        return st.tuples(extra, fixed).map(lambda pair: {**pair[0], **pair[1]})
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {})),
                        max_size=min(schema.get("maxItems", 4), 4))
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True)
        return st.text(max_size=30)
    if kind == "integer":
        return st.integers(-(2**63), 2**63)
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return st.none() | st.booleans() | st.integers() | st.text(max_size=8)


UPSTREAM_OK = {grpc.StatusCode.OK, grpc.StatusCode.INTERNAL}


@pytest.mark.parametrize(("schema", "method_name"), [
    ("ListMessagesResponse", "ListMessages"),
    ("MessageObject", "GetMessage"),
    ("ListMessageFilesResponse", "ListMessageFiles"),
    ("MessageFileObject", "GetMessageFile"),
])
def test_fuzz_upstream_json_from_the_spec_ok_or_internal(
        stack: Stack, schema: str, method_name: str) -> None:
    method = SERVICE.methods_by_name[method_name]
    request = method.input_type._concrete_class(
        thread_id=stack.thread_id, **({"message_id": stack.message_ids[0]}
                                      if "message_id" in method.input_type.fields_by_name else {}),
        **({"file_id": "file-abc"} if "file_id" in method.input_type.fields_by_name else {}))
    operation = {"ListMessages": "listMessages", "GetMessage": "getMessage",
                 "ListMessageFiles": "listMessageFiles", "GetMessageFile": "getMessageFile"}
    seen: set[grpc.StatusCode] = set()

    @settings(FUZZ, max_examples=30)
    @given(body=st.one_of(from_schema(spec_schema(schema)),
                          from_schema(spec_schema(schema)).map(lambda b: {"wrapped": [b] * 3})))
    def check(body: Any) -> None:
        stack.emulator.faults.clear()
        stack.emulator.faults.add(operation[method_name], "non_json", status=200,
                                  body=json.dumps(body))
        try:
            code = call(stack, method, request)
        finally:
            stack.emulator.faults.clear()
        seen.add(code)
        assert code in UPSTREAM_OK, f"{method_name} answered {code.name} to {body!r}"

    check()
    assert grpc.StatusCode.OK in seen  # the generator produced bodies the gateway accepted
