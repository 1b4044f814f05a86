"""S3 at scale: a hypothesis state machine over random consumers of two tenants (each tenant on an
upstream of its own), with different scopes, making, reading, writing and deleting random
threads, with list parameters that make different cache keys, reads with and without
``cache-control: no-cache``, a warm-then-cross rule (the owner fills the cache, then a consumer of
another tenant asks for the same thing with the same parameters) and cache flushes, on four
gateways: the memory and the Redis cache backends, each under ``thread_access`` ``tenant``,
``consumer`` and ``open``.

Calls run in-process through the gateway's pipeline and operations (``Pipeline.unary`` /
``.stream``, the key as metadata: authentication, scopes, ownership, cache and upstream as a face
runs them), on a loop in a background thread. A consumer not entitled to a thread gets NOT_FOUND
(PERMISSION_DENIED for a write without the scope), never data; every text, metadata value and
file id carries its tenant's tag, and another tenant's tag in an answer is a leak. Entitled
consumers see exactly the model's messages (writes through the gateway are visible at once).
Leaks: 0 of N; steps and calls per second are printed. ``make stress``: at least 10,000 steps.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import structlog
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (Bundle, RuleBasedStateMachine, initialize, multiple,
                                 precondition, rule)

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from gateway.app import Gateway, start_gateway
from gateway.config import CacheSettings, ProfileSettings
from gateway.credentials import store
from gateway.credentials.store import StoreData
from gateway.emulator.server import EmulatorServer
from gateway.errors import GatewayError
from gateway.operations.threads import ThreadOperations
from gateway.rpc.face import operation_name
from tests.conftest import EMULATOR_KEY
from tests.credentials.helpers import add_consumer, auth_settings
from tests.reliability.conftest import scale

#: consumer → (tenant, may write)
CONSUMERS = {"a_owner": ("default", True), "a_mate": ("default", True),
             "a_reader": ("default", False), "b_owner": ("tenant-b", True),
             "b_reader": ("tenant-b", False)}
#: (cache backend, thread access) of the gateways the machine runs against.
GATEWAYS = (("memory", "tenant"), ("redis", "consumer"), ("memory", "open"), ("redis", "open"))
EXAMPLES, STEPS = scale(400, 60), 50
#: Checked calls at least (a run's count varies with the steps hypothesis draws).
MIN_STEPS = scale(10_000, 2_000)
PEER = "ipv4:127.0.0.1:40000"


class Tenants:
    """Two upstreams, one store of consumers, the four gateways; on a loop of their own."""

    def __init__(self, tmp: Path, redis_url: str, prefix: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.upstreams = {"default": EmulatorServer(api_keys={EMULATOR_KEY}),
                          "tenant-b": EmulatorServer(api_keys={EMULATOR_KEY})}
        for upstream in self.upstreams.values():
            self.run(upstream.start("127.0.0.1", 0))
        path = tmp / "credentials.json"
        store.write(path, StoreData())
        self.keys = {name: add_consumer(path, name, {"read", "write"} if write else {"read"},
                                        profile=tenant)
                     for name, (tenant, write) in CONSUMERS.items()}
        self.gateways: dict[tuple[str, str], tuple[Gateway, ThreadOperations]] = {}
        for backend, access in GATEWAYS:
            base = auth_settings(self.upstreams["default"], path, thread_access=access)
            settings = dataclasses.replace(
                base, profiles=(ProfileSettings(name="tenant-b", api_key=EMULATOR_KEY,
                                                base_url=self.upstreams["tenant-b"].base_url),),
                cache=CacheSettings(backend=backend, redis_url=redis_url,
                                    redis_key_prefix=f"{prefix}{access}:",
                                    redis_op_timeout_seconds=0.5, list_messages_ttl_seconds=60.0))
            gw = self.run(start_gateway(settings))
            self.gateways[(backend, access)] = (gw, ThreadOperations(gw.operations))

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(20.0)

    def close(self) -> None:
        for gw, _ in self.gateways.values():
            self.run(gw.stop(grace=0.2))
        for upstream in self.upstreams.values():
            self.run(upstream.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10.0)
        self.loop.close()


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory,
            redis_address: tuple[str, int]) -> Iterator[Tenants]:
    host, port = redis_address
    prefix = f"mgw-s3-{uuid.uuid4().hex[:10]}:"
    env = Tenants(tmp_path_factory.mktemp("s3"), f"redis://{host}:{port}/0", prefix)
    try:
        yield env
    finally:
        env.close()
        client = redis.Redis(host=host, port=port)
        try:
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


@dataclasses.dataclass
class ThreadModel:
    tenant: str
    creator: str
    #: message id → (text, metadata value or None, file ids), in creation order.
    messages: dict[str, tuple[str, str | None, tuple[str, ...]]] = dataclasses.field(
        default_factory=dict)
    deleted: bool = False


def texts_of(answer: Any) -> list[str]:
    """Every tenant-tagged string an answer holds: texts, metadata values, file ids."""
    found: list[str] = []
    messages = (answer.data if hasattr(answer, "data") else
                [answer] if isinstance(answer, pb.Message) else [])
    for m in messages:
        if isinstance(m, pb.MessageFile):
            found.append(m.id)
            continue
        found += [c.text.value for c in m.content] + list(m.metadata.entries.values())
        found += list(m.file_ids)
    if isinstance(answer, pb.MessageFile):
        found.append(answer.id)
    if isinstance(answer, pb.Thread):
        found += list(answer.metadata.entries.values())
    return found


def test_no_tenant_ever_gets_another_tenants_data(tenants: Tenants,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    # Writers twice as often: more threads and messages for everyone else to try.
    consumers = st.sampled_from(sorted(CONSUMERS) + ["a_owner", "a_mate", "b_owner"])
    counter = itertools.count()
    #: rules: state-machine steps run; steps: gateway calls whose answer was checked.
    totals = {"rules": 0, "steps": 0, "leaks": 0, "denied": 0, "served": 0}

    def counted(body: Any) -> Any:
        """A rule's runs are its steps; another rule calls ``body.__wrapped__``, uncounted."""
        @functools.wraps(body)
        def step(self: Any, *args: Any, **kwargs: Any) -> Any:
            totals["rules"] += 1
            return body(self, *args, **kwargs)

        return step

    class Isolation(RuleBasedStateMachine):
        threads = Bundle("threads")

        @initialize(gateway=st.sampled_from(GATEWAYS))
        def choose(self, gateway: tuple[str, str]) -> None:
            self.gw, self.thread_ops = tenants.gateways[gateway]
            self.access = gateway[1]
            self.model: dict[str, ThreadModel] = {}

        # -- calling through the pipeline ------------------------------------------------------

        @staticmethod
        def _metadata(consumer: str, no_cache: bool) -> list[tuple[str, str]]:
            """The call's metadata, as the gRPC face hands it over."""
            metadata = [("authorization", f"Bearer {tenants.keys[consumer]}")]
            if no_cache:
                metadata.append(("cache-control", "no-cache"))
            return metadata

        def call(self, method: str, consumer: str, request: Any, no_cache: bool = False
                 ) -> tuple[str, Any]:
            ops = self.thread_ops if method.endswith("Thread") else self.gw.operations
            operation = getattr(ops, operation_name(method))
            ctx = self.gw.pipeline.open(
                method, "grpc", self._metadata(consumer, no_cache), peer=PEER,
                thread_id=request.thread_id if hasattr(request, "thread_id") else "",
                message_id=getattr(request, "message_id", ""))

            async def unary() -> Any:
                return await self.gw.pipeline.unary(ctx, operation, request)

            async def stream() -> Any:
                pages = [p async for p in self.gw.pipeline.stream(ctx, operation, request)]
                return pb.ListMessagesResponse(data=[m for p in pages for m in p.data])

            try:
                answer = tenants.run(stream() if method.startswith("Stream") else unary())
            except GatewayError as exc:
                return exc.grpc_code.name, None
            return "OK", answer

        def entitled(self, consumer: str, thread_id: str) -> bool:
            thread = self.model[thread_id]
            if thread.deleted:
                return False
            if self.access == "consumer":
                return consumer == thread.creator
            return CONSUMERS[consumer][0] == thread.tenant

        def expect(self, consumer: str, thread_id: str, code: str, answer: Any, *,
                   write: bool = False) -> bool:
            """Checks one answer; True when the caller was served."""
            totals["steps"] += 1
            tenant = CONSUMERS[consumer][0]
            foreign = [t for t in texts_of(answer) if not t.startswith(f"{tenant}:")]
            if foreign:
                totals["leaks"] += 1
            assert not foreign, f"{consumer} received another tenant's data: {foreign}"
            if write and not CONSUMERS[consumer][1]:
                assert code == "PERMISSION_DENIED", code
                return False
            if self.entitled(consumer, thread_id):
                assert code == "OK", (consumer, thread_id, code, self.access)
                totals["served"] += 1
                return True
            if code == "OK":
                totals["leaks"] += 1
            assert code == "NOT_FOUND", (consumer, thread_id, code, self.access)
            totals["denied"] += 1
            return False

        def tag(self, consumer: str) -> str:
            return f"{CONSUMERS[consumer][0]}:{consumer}:{next(counter)}"  # a valid id, too

        # -- rules -------------------------------------------------------------------------------

        @rule(target=threads, consumer=consumers)
        @counted
        def create_thread(self, consumer: str) -> Any:
            code, thread = self.call("CreateThread", consumer, pb.CreateThreadRequest(
                metadata=pb.Metadata(entries={"t": self.tag(consumer)})))
            totals["steps"] += 1
            if not CONSUMERS[consumer][1]:
                assert code == "PERMISSION_DENIED", code
                return multiple()  # nothing for the bundle
            assert code == "OK", code
            self.model[thread.id] = ThreadModel(CONSUMERS[consumer][0], consumer)
            return thread.id

        def _live(self, thread_id: str | None) -> bool:
            return thread_id is not None and thread_id in self.model

        @rule(consumer=consumers, thread_id=threads, files=st.booleans(),
              meta=st.booleans())
        @counted
        def create_message(self, consumer: str, thread_id: str | None, files: bool,
                           meta: bool) -> None:
            if not self._live(thread_id):
                return
            text, value = self.tag(consumer), self.tag(consumer) if meta else None
            file_ids = (self.tag(consumer),) if files else ()
            code, made = self.call("CreateMessage", consumer, pb.CreateMessageRequest(
                thread_id=thread_id, role=pb.ROLE_USER, content=text, file_ids=file_ids,
                metadata=pb.Metadata(entries={"v": value}) if value else None))
            if self.expect(consumer, thread_id, code, made, write=True):
                self.model[thread_id].messages[made.id] = (text, value, file_ids)

        @rule(consumer=consumers, thread_id=threads)
        @counted
        def update_message(self, consumer: str, thread_id: str | None) -> None:
            if not self._live(thread_id):
                return
            if not self.model[thread_id].messages:
                return type(self).create_message.__wrapped__(self, consumer, thread_id, False, True)
            message_id = next(iter(self.model[thread_id].messages))
            value = self.tag(consumer)
            code, answer = self.call("UpdateMessage", consumer, pb.UpdateMessageRequest(
                thread_id=thread_id, message_id=message_id,
                metadata=pb.Metadata(entries={"v": value})))
            if self.expect(consumer, thread_id, code, answer, write=True):
                text, _, files = self.model[thread_id].messages[message_id]
                self.model[thread_id].messages[message_id] = (text, value, files)

        @rule(consumer=consumers, thread_id=threads, limit=st.sampled_from([0, 1, 2, 100]),
              order=st.sampled_from([pb.ORDER_UNSPECIFIED, pb.ORDER_ASC, pb.ORDER_DESC]),
              stream=st.booleans(), no_cache=st.booleans())
        @counted
        def list_messages(self, consumer: str, thread_id: str | None, limit: int, order: int,
                          stream: bool, no_cache: bool) -> None:
            if not self._live(thread_id):
                return
            method = "StreamMessages" if stream else "ListMessages"
            request = getattr(pb, f"{method}Request")(thread_id=thread_id, limit=limit,
                                                      order=order)
            code, answer = self.call(method, consumer, request, no_cache)
            if self.expect(consumer, thread_id, code, answer):
                want = list(self.model[thread_id].messages)
                if order != pb.ORDER_ASC:
                    want.reverse()
                if not stream:
                    want = want[:limit or 20]
                assert [m.id for m in answer.data] == want
                for m in answer.data:
                    text, value, files = self.model[thread_id].messages[m.id]
                    assert m.content[0].text.value == text
                    assert m.metadata.entries.get("v") == value
                    assert tuple(m.file_ids) == files

        @rule(consumer=consumers, thread_id=threads, no_cache=st.booleans())
        @counted
        def get_message_and_file(self, consumer: str, thread_id: str | None,
                                 no_cache: bool) -> None:
            if not self._live(thread_id):
                return
            if not self.model[thread_id].messages:
                return type(self).get_thread.__wrapped__(self, consumer, thread_id)
            for message_id, (text, value, files) in list(
                    self.model[thread_id].messages.items())[-2:]:
                code, got = self.call("GetMessage", consumer, pb.GetMessageRequest(
                    thread_id=thread_id, message_id=message_id), no_cache)
                if self.expect(consumer, thread_id, code, got):
                    assert (got.content[0].text.value, got.metadata.entries.get("v")) == (
                        text, value)
                for file_id in files:
                    code, got = self.call("GetMessageFile", consumer, pb.GetMessageFileRequest(
                        thread_id=thread_id, message_id=message_id, file_id=file_id), no_cache)
                    if self.expect(consumer, thread_id, code, got):
                        assert got.id == file_id
                    code, got = self.call("ListMessageFiles", consumer,
                                          pb.ListMessageFilesRequest(
                                              thread_id=thread_id, message_id=message_id))
                    if self.expect(consumer, thread_id, code, got):
                        assert [f.id for f in got.data] == list(files)

        @rule(consumer=consumers, thread_id=threads)
        @counted
        def get_thread(self, consumer: str, thread_id: str | None) -> None:
            if self._live(thread_id):
                code, got = self.call("GetThread", consumer, pb.GetThreadRequest(
                    thread_id=thread_id))
                if self.expect(consumer, thread_id, code, got):
                    assert got.id == thread_id and "gateway_owner" not in got.metadata.entries

        @rule(thread_id=threads, data=st.data())
        @counted
        def warm_then_cross(self, thread_id: str | None, data: Any) -> None:
            """The owner fills the cache; a consumer not entitled asks for exactly the same."""
            if not self._live(thread_id):
                return
            strangers = [c for c in sorted(CONSUMERS) if not self.entitled(c, thread_id)]
            stranger = data.draw(st.sampled_from(strangers))
            thread = self.model[thread_id]
            requests = [("ListMessages", pb.ListMessagesRequest(thread_id=thread_id)),
                        ("GetThread", pb.GetThreadRequest(thread_id=thread_id))]
            for message_id, (_, _, files) in list(thread.messages.items())[-1:]:
                requests.append(("GetMessage", pb.GetMessageRequest(
                    thread_id=thread_id, message_id=message_id)))
                requests += [("GetMessageFile", pb.GetMessageFileRequest(
                    thread_id=thread_id, message_id=message_id, file_id=f)) for f in files]
            method, request = data.draw(st.sampled_from(requests))
            owner_code, _ = self.call(method, thread.creator, request)
            code, answer = self.call(method, stranger, request)
            if not thread.deleted:
                assert owner_code == "OK", owner_code
            self.expect(stranger, thread_id, code, answer)

        @rule(consumer=consumers, thread_id=threads)
        @counted
        def delete_thread(self, consumer: str, thread_id: str | None) -> None:
            if self._live(thread_id):
                code, answer = self.call("DeleteThread", consumer, pb.DeleteThreadRequest(
                    thread_id=thread_id))
                if self.expect(consumer, thread_id, code, None, write=True):
                    self.model[thread_id].deleted = True

        @precondition(lambda self: self.gw.settings.cache.backend == "redis")
        @rule()
        @counted
        def flush_cache(self) -> None:
            """A cold cache: the Redis entries (and generations) gone, as after a restart."""
            backend = self.gw.settings.cache
            client = redis.Redis.from_url(backend.redis_url)
            try:
                keys = list(client.scan_iter(match=f"{backend.redis_key_prefix}*", count=1000))
                if keys:
                    client.delete(*keys)
            finally:
                client.close()

    run = settings(max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
                   derandomize=True,
                   suppress_health_check=list(HealthCheck))(Isolation)
    started = time.monotonic()
    # The call and audit lines of thousands of calls, kept as dicts instead of rendered.
    with structlog.testing.capture_logs():
        run.TestCase().runTest()
    seconds = time.monotonic() - started
    with capsys.disabled():
        print(f"\nS3 tenant isolation: {totals['rules']} steps, {totals['steps']} checked calls "
              f"({totals['served']} served, {totals['denied']} refused NOT_FOUND) in "
              f"{seconds:.1f} s, {totals['steps'] / seconds:.0f} calls/s; "
              f"leaks {totals['leaks']} of {totals['steps']}")
    assert totals["leaks"] == 0
    assert totals["rules"] >= MIN_STEPS and totals["steps"] >= MIN_STEPS // 2, totals
    assert totals["denied"] > MIN_STEPS // 20, totals  # the cross-tenant paths really ran
