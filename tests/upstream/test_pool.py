"""Upstream profiles: each consumer's calls go to its profile's upstream with its key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import grpc
import pytest

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway.app import start_gateway
from gateway.config import CacheSettings, ConfigError, ProfileSettings, load_settings
from gateway.emulator.server import EmulatorServer
from tests.credentials.helpers import add_consumer, auth_settings, bearer
from tests.rpc.test_messages_service import details, new_thread

OTHER_KEY = "sk-other-profile-key"


async def test_profiles_consumer_calls_reach_only_its_profile_upstream(
    emulator, tmp_path: Path
) -> None:
    other = EmulatorServer(api_keys={OTHER_KEY}, beta="assistants=v1")
    await other.start("127.0.0.1", 0)
    path = tmp_path / "s.json"
    default_key = add_consumer(path, "a", {"read", "write"})
    other_key = add_consumer(path, "b", {"read", "write"}, profile="other")
    settings = dataclasses.replace(
        auth_settings(emulator, path),
        profiles=(ProfileSettings(name="other", base_url=other.base_url, api_key=OTHER_KEY,
                                  organization="org-b", project="proj-b"),))
    gw = await start_gateway(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as channel:
            stub = pb_grpc.MessagesServiceStub(channel)
            thread_a = await new_thread(emulator)
            emulator.log.clear()
            await stub.CreateMessage(pb.CreateMessageRequest(
                thread_id=thread_a, role=pb.ROLE_USER, content="a"), metadata=bearer(default_key))
            assert emulator.log.count("createMessage") == 1 and other.log.count() == 0
            # b's profile is another upstream: a's thread does not exist there.
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.ListMessages(pb.ListMessagesRequest(thread_id=thread_a),
                                        metadata=bearer(other_key))
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
            assert other.log.count("listMessages") == 1
            assert emulator.log.count("listMessages") == 0
    finally:
        await gw.stop(grace=0.5)
        await other.stop()


async def test_profiles_unconfigured_profile_is_internal_not_upstream(
    emulator, tmp_path: Path
) -> None:
    path = tmp_path / "s.json"
    key = add_consumer(path, "lost", {"read"}, profile="nowhere")
    gw = await start_gateway(auth_settings(emulator, path))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as channel:
            before = emulator.log.count()
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await pb_grpc.MessagesServiceStub(channel).ListMessages(
                    pb.ListMessagesRequest(thread_id="thread_x"), metadata=bearer(key))
            assert caught.value.code() == grpc.StatusCode.INTERNAL
            assert details(caught.value)["ErrorInfo"].reason == "PROFILE_NOT_CONFIGURED"
            assert emulator.log.count() == before
    finally:
        await gw.stop(grace=0.5)


async def test_profiles_rotated_key_file_reread_once_on_upstream_401(
    emulator, tmp_path: Path
) -> None:
    """F14/S1: the Secret's key changes and the old key is revoked upstream at the same moment;
    the first call gets a 401, re-reads the file once, and succeeds with the new key."""
    key_file = tmp_path / "upstream.key"
    key_file.write_text("sk-rotating-old\n")
    emulator.emulator.api_keys.add("sk-rotating-old")
    path = tmp_path / "s.json"
    consumer_key = add_consumer(path, "c", {"read"}, profile="rot")
    settings = dataclasses.replace(
        auth_settings(emulator, path),
        profiles=(ProfileSettings(name="rot", base_url=emulator.base_url,
                                  api_key_file=str(key_file)),),
        cache=CacheSettings(backend="off"))  # every get must reach the upstream
    gw = await start_gateway(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as channel:
            stub = pb_grpc.MessagesServiceStub(channel)
            thread_id = await new_thread(emulator)
            await stub.ListMessages(pb.ListMessagesRequest(thread_id=thread_id),
                                    metadata=bearer(consumer_key))
            key_file.write_text("sk-rotating-new\n")
            emulator.emulator.api_keys.discard("sk-rotating-old")
            emulator.emulator.api_keys.add("sk-rotating-new")
            emulator.log.clear()
            reply = await stub.ListMessages(pb.ListMessagesRequest(thread_id=thread_id),
                                            metadata=bearer(consumer_key))
            assert list(reply.data) == []
            assert [e.status for e in emulator.log.entries] == [401, 200]
            # A key that is wrong in the file too: one re-read, then INTERNAL, never
            # UNAUTHENTICATED (the consumer did nothing wrong).
            emulator.emulator.api_keys.discard("sk-rotating-new")
            emulator.log.clear()
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.ListMessages(pb.ListMessagesRequest(thread_id=thread_id),
                                        metadata=bearer(consumer_key))
            assert caught.value.code() == grpc.StatusCode.INTERNAL
            assert [e.status for e in emulator.log.entries] == [401]
    finally:
        await gw.stop(grace=0.5)


def test_profiles_tables_load_from_toml(tmp_path: Path) -> None:
    config = tmp_path / "g.toml"
    config.write_text(
        '[auth]\nenabled = true\nstore_path = "/tmp/s.json"\n'
        '[profiles.team-b]\nbase_url = "https://api.example.com/v1"\n'
        'api_key_file = "/run/secrets/b"\norganization = "org-b"\n')
    settings = load_settings(config, environ={})
    assert settings.auth.enabled
    assert settings.profiles == (ProfileSettings(
        name="team-b", base_url="https://api.example.com/v1", api_key_file="/run/secrets/b",
        organization="org-b"),)


@pytest.mark.parametrize(("text", "names"), [
    ('[profiles.default]\nbase_url = "http://x/v1"\napi_key_env = "K"\n', "profiles.default"),
    ('[profiles.b]\nbase_url = "ftp://x"\napi_key_env = "K"\n', "profiles.b.base_url"),
    ('[profiles.b]\nbase_url = "http://x/v1"\n', "profiles.b"),
    ('[profiles.b]\nbase_url = "http://x/v1"\napi_key_env = "K"\nbogus = 1\n',
     "profiles.b.bogus"),
    ('[auth]\nenabled = true\n', "auth.store_path"),
    ('[auth]\nlimits_backend = "memcached"\n', "auth.limits_backend"),
    ('[server]\ntls_cert = "c.pem"\n', "server.tls_key"),
    ('[server]\ntls_client_ca = "ca.pem"\n', "server.tls_client_ca"),
])
def test_profiles_and_auth_config_errors_name_the_key(tmp_path: Path, text: str,
                                                      names: str) -> None:
    config = tmp_path / "g.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ={})
    assert names in str(caught.value)
