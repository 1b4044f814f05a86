"""Helpers for the security tests: an auth-on gateway in front of a real emulator, a valid
consumer, and probes that say whether that consumer and health still work during an attack."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway import metrics
from gateway.app import Gateway, start_gateway
from gateway.config import Settings
from gateway.credentials import store
from gateway.credentials.store import StoreData
from gateway.emulator.server import EmulatorServer
from tests.credentials.helpers import add_consumer, auth_settings, bearer

#: A channel of its own (its own TCP connection), as a separate client would have.
OWN_CONNECTION = (("grpc.use_local_subchannel_pool", 1),)


@dataclasses.dataclass
class Secured:
    emulator: EmulatorServer
    gateway: Gateway
    key: str
    channel: grpc.aio.Channel
    stub: pb_grpc.MessagesServiceStub
    thread_id: str
    message_id: str
    #: Keys of the further consumers asked for (read and write scopes), by name.
    keys: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.gateway.grpc_port}"

    async def consumer_ok(self, timeout: float = 2.0) -> bool:
        """A valid consumer's GetMessage (on a connection of its own) succeeds."""
        async with grpc.aio.insecure_channel(self.target, options=OWN_CONNECTION) as ch:
            got = await pb_grpc.MessagesServiceStub(ch).GetMessage(
                pb.GetMessageRequest(thread_id=self.thread_id, message_id=self.message_id),
                metadata=bearer(self.key), timeout=timeout)
        return bool(got.id == self.message_id)

    async def health_ok(self, timeout: float = 2.0) -> bool:
        async with grpc.aio.insecure_channel(self.target, options=OWN_CONNECTION) as ch:
            reply = await health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout)
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@contextlib.asynccontextmanager
async def secured(emulator: EmulatorServer, tmp_path: Path, *, settings: Settings | None = None,
                  consumers: tuple[str, ...] = (), **sections: dict[str, Any]
                  ) -> AsyncIterator[Secured]:
    """An auth-on gateway (changes per section, e.g. ``server={...}``) with one valid consumer
    and one seeded message it may read."""
    path = tmp_path / "credentials.json"
    store.write(path, StoreData())
    key = add_consumer(path, "valid", {"read", "write"})
    keys = {name: add_consumer(path, name, {"read", "write"}) for name in consumers}
    base = settings or auth_settings(emulator, path)
    for section, changes in sections.items():
        base = base.replace(section, **changes)
    thread = emulator.store.create_thread()
    emulator.store.seed_messages(thread["id"], 1)
    message_id = emulator.store.message_ids(thread["id"])[0]
    gw = await start_gateway(base)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as channel:
            yield Secured(emulator, gw, key, channel, pb_grpc.MessagesServiceStub(channel),
                          str(thread["id"]), message_id, keys)
    finally:
        await gw.stop(grace=0.2)


def metric(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


from tests.cache.conftest import redis_address  # noqa: E402,F401 - the real Redis fixture
