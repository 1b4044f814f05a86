"""A stateful property: random consumers of two tenants making, reading, writing and deleting
random threads through a real gateway never see another tenant's data, and always see their own.

The gateway and the emulator run on their own event loop in a thread; hypothesis drives a
blocking gRPC channel against them. The model is the owner of every thread and the messages of
each; every answer is checked against it.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway.app import Gateway, start_gateway
from gateway.emulator.server import EmulatorServer
from tests.conftest import EMULATOR_KEY
from tests.operations.test_ownership import make_keys, ownership_settings

#: Examples × steps: at least 2,000 operations per run.
EXAMPLES, STEPS = 60, 50
TENANT = {"owner": "default", "colleague": "default", "stranger": "tenant-b"}


class Running:
    """Emulator and gateway on a loop of their own, for the blocking client."""

    def __init__(self, store_path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.emulator = EmulatorServer(api_keys={EMULATOR_KEY})
        self.run(self.emulator.start("127.0.0.1", 0))
        self.keys = make_keys(store_path)

        async def build() -> Gateway:
            return await start_gateway(ownership_settings(self.emulator, store_path, "tenant"))

        self.gateway = self.run(build())
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.gateway.grpc_port}")
        self.messages = pb_grpc.MessagesServiceStub(self.channel)
        self.threads = pb_grpc.ThreadsServiceStub(self.channel)

    def run(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(20.0)

    def key(self, consumer: str) -> tuple[tuple[str, str]]:
        secret = {"owner": self.keys.owner, "colleague": self.keys.same_tenant,
                  "stranger": self.keys.other_tenant}[consumer]
        return (("authorization", f"Bearer {secret}"),)

    def stop(self) -> None:
        self.channel.close()
        self.run(self.gateway.stop(grace=0.5))
        self.run(self.emulator.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10.0)
        self.loop.close()


@pytest.fixture
def running(tmp_path: Path):  # type: ignore[no-untyped-def]
    env = Running(tmp_path / "credentials.json")
    try:
        yield env
    finally:
        env.stop()


def _code(call) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    try:
        call()
    except grpc.RpcError as err:
        return err.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_no_answer_ever_crosses_tenants(running: Running) -> None:
    consumers = st.sampled_from(sorted(TENANT))

    class Tenancy(RuleBasedStateMachine):
        threads = Bundle("threads")

        def __init__(self) -> None:
            super().__init__()
            #: thread id -> (owning tenant, message id -> content); deleted threads stay, empty.
            self.model: dict[str, tuple[str, dict[str, str]]] = {}
            self.deleted: set[str] = set()
            self.steps = 0

        def _owns(self, consumer: str, thread_id: str) -> bool:
            return (thread_id not in self.deleted
                    and self.model[thread_id][0] == TENANT[consumer])

        @rule(target=threads, consumer=consumers, text=st.text(min_size=1, max_size=20))
        def create_thread(self, consumer: str, text: str) -> str:
            thread = running.threads.CreateThread(pb.CreateThreadRequest(
                messages=[pb.ThreadMessage(role=pb.ROLE_USER, content=text)]),
                metadata=running.key(consumer), timeout=10)
            listed = running.messages.ListMessages(pb.ListMessagesRequest(
                thread_id=thread.id), metadata=running.key(consumer), timeout=10)
            self.model[thread.id] = (TENANT[consumer], {m.id: text for m in listed.data})
            self.steps += 1
            return thread.id

        @rule(consumer=consumers, thread_id=threads, text=st.text(min_size=1, max_size=20))
        def create_message(self, consumer: str, thread_id: str, text: str) -> None:
            request = pb.CreateMessageRequest(thread_id=thread_id, role=pb.ROLE_USER,
                                              content=text)
            if self._owns(consumer, thread_id):
                made = running.messages.CreateMessage(request, metadata=running.key(consumer),
                                                      timeout=10)
                assert made.thread_id == thread_id
                self.model[thread_id][1][made.id] = text
            else:
                assert _code(lambda: running.messages.CreateMessage(
                    request, metadata=running.key(consumer), timeout=10)) == (
                    grpc.StatusCode.NOT_FOUND)
            self.steps += 1

        @rule(consumer=consumers, thread_id=threads)
        def read(self, consumer: str, thread_id: str) -> None:
            request = pb.ListMessagesRequest(thread_id=thread_id, limit=100)
            if self._owns(consumer, thread_id):
                page = running.messages.ListMessages(request, metadata=running.key(consumer),
                                                     timeout=10)
                messages = self.model[thread_id][1]
                assert {m.id: m.content[0].text.value for m in page.data} == messages
                for message_id, text in list(messages.items())[:2]:
                    got = running.messages.GetMessage(pb.GetMessageRequest(
                        thread_id=thread_id, message_id=message_id),
                        metadata=running.key(consumer), timeout=10)
                    assert got.content[0].text.value == text
            else:
                assert _code(lambda: running.messages.ListMessages(
                    request, metadata=running.key(consumer), timeout=10)) == (
                    grpc.StatusCode.NOT_FOUND)
                for message_id in list(self.model[thread_id][1])[:1]:
                    assert _code(lambda: running.messages.GetMessage(pb.GetMessageRequest(
                        thread_id=thread_id, message_id=message_id),
                        metadata=running.key(consumer), timeout=10)) == (
                        grpc.StatusCode.NOT_FOUND)
            self.steps += 1

        @rule(consumer=consumers, thread_id=threads, value=st.text(max_size=10))
        def update_thread(self, consumer: str, thread_id: str, value: str) -> None:
            request = pb.UpdateThreadRequest(thread_id=thread_id,
                                             metadata=pb.Metadata(entries={"v": value}))
            want = (grpc.StatusCode.OK if self._owns(consumer, thread_id)
                    else grpc.StatusCode.NOT_FOUND)
            assert _code(lambda: running.threads.UpdateThread(
                request, metadata=running.key(consumer), timeout=10)) == want
            self.steps += 1

        @rule(consumer=consumers, thread_id=consumes(threads))
        def delete_thread(self, consumer: str, thread_id: str) -> None:
            owns = self._owns(consumer, thread_id)
            want = grpc.StatusCode.OK if owns else grpc.StatusCode.NOT_FOUND
            assert _code(lambda: running.threads.DeleteThread(pb.DeleteThreadRequest(
                thread_id=thread_id), metadata=running.key(consumer), timeout=10)) == want
            if owns:
                self.deleted.add(thread_id)
            self.steps += 1

        @invariant()
        def every_thread_answers_only_its_owner(self) -> None:
            for thread_id in list(self.model)[-2:]:
                for consumer in TENANT:
                    got = _code(lambda: running.threads.GetThread(pb.GetThreadRequest(
                        thread_id=thread_id), metadata=running.key(consumer), timeout=10))
                    assert (got == grpc.StatusCode.OK) == self._owns(consumer, thread_id)

    run = settings(max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
                   suppress_health_check=list(HealthCheck))(Tenancy)
    counted: list[int] = []
    original = Tenancy.teardown

    def teardown(self: Tenancy) -> None:
        counted.append(self.steps)
        original(self)

    Tenancy.teardown = teardown  # type: ignore[method-assign]
    run.TestCase().runTest()
    assert sum(counted) >= 2000, sum(counted)  # rules that ran, invariants aside
