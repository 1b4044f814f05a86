"""``make demo``: emulator + gateway as real processes, and a small consumer talking gRPC to them.

Everything runs on loopback ports chosen at random; both processes are stopped with SIGTERM at the
end (the gateway drains gracefully) whatever happens in between.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from contextlib import ExitStack

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb

DEMO_UPSTREAM_KEY = "sk-demo-upstream-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(args: list[str], env: dict[str, str], stack: ExitStack) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "gateway", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()

    stack.callback(stop)
    return proc


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"emulator exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("emulator did not start")


async def wait_serving(target: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    async with grpc.aio.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < end:
            if proc.poll() is not None:
                raise SystemExit(
                    f"gateway exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            try:
                reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("gateway did not become SERVING")


def consumer(target: str) -> str:
    """What an internal service does over gRPC with the typed client: make a thread, write,
    page, stream, read (no upstream key anywhere). Returns the thread's id."""
    from messages_gateway_client import MessagesGatewayClient, NotFoundError, BadRequestError

    with MessagesGatewayClient(target, timeout=10) as client:
        thread_id = client.threads.create(metadata={"source": "demo"}).id
        print(f"CreateThread: {thread_id} (through the gateway, no upstream key)")
        for i in range(25):
            client.messages.create(thread_id, role="user", content=f"message number {i}",
                                   metadata={"n": str(i)})
        print(f"created 25 messages in {thread_id} through the gateway")

        page = client.messages.list_page(thread_id, limit=5, order="asc")
        print(f"ListMessages(limit=5, asc): {[m.content[0].text.value for m in page.data]}"
              f" has_more={page.has_more}")

        stream = client.messages.list(thread_id, limit=10, order="asc")
        items = 0
        for streamed in stream.pages():
            items += len(streamed.data)
            print(f"  stream page {streamed.page_index}: {len(streamed.data)} messages,"
                  f" resume_after={streamed.resume_after}")
        print(f"StreamMessages: {items} messages in one call")

        first = page.data[0]
        raw = client.messages.with_raw_response.retrieve(first.id, thread_id=thread_id)
        message = raw.parse()
        print(f"GetMessage({first.id}): role={pb.Role.Name(message.role)}"
              f" content={message.content[0].text.value!r}"
              f" upstream x-request-id={raw.headers.get('x-request-id')}")

        updated = client.messages.update(first.id, thread_id=thread_id,
                                         metadata={"reviewed": "yes"})
        print(f"UpdateMessage: metadata={dict(updated.metadata.entries)}")

        try:
            client.messages.retrieve("msg_nope", thread_id=thread_id)
        except NotFoundError as err:
            print(f"GetMessage(msg_nope): NOT_FOUND: {err}")
        try:
            client.messages.list_page(thread_id, limit=500)
        except BadRequestError as err:
            print(f"ListMessages(limit=500): INVALID_ARGUMENT: {err}")
    return thread_id


def sdk_consumer(http_base: str, thread_id: str) -> None:
    """An existing OpenAI SDK user: only the base URL changed (the REST face)."""
    import openai

    with httpx.Client() as http:
        sdk = openai.OpenAI(api_key="unused-without-auth", base_url=http_base, http_client=http)
        ids = [m.id for m in sdk.beta.threads.messages.list(thread_id, limit=7, order="asc")]
        print(f"openai SDK via the REST face: auto-paginated {len(ids)} messages (pages of 7)")
        deleted = sdk.beta.threads.delete(thread_id)
        print(f"openai SDK: threads.delete -> deleted={deleted.deleted}")


def main() -> int:
    emulator_port, grpc_port, http_port = free_port(), free_port(), free_port()
    env = dict(os.environ, EMULATOR_API_KEYS=DEMO_UPSTREAM_KEY, OPENAI_API_KEY=DEMO_UPSTREAM_KEY,
               GATEWAY_LOGGING_FORMAT="console", GATEWAY_LOGGING_LEVEL="warning")
    base_url = f"http://127.0.0.1:{emulator_port}/v1"
    target = f"127.0.0.1:{grpc_port}"
    with ExitStack() as stack:
        emulator = start(["emulator", "--listen", f"127.0.0.1:{emulator_port}"], env, stack)
        wait_http(base_url.removesuffix("/v1") + "/_emulator/log", emulator)
        print(f"emulator listening on {base_url}")
        gateway = start(["serve", "--grpc-listen", target, "--upstream-url", base_url,
                         "--http-listen", f"127.0.0.1:{http_port}"], env, stack)
        asyncio.run(wait_serving(target, gateway))
        print(f"gateway serving gRPC on {target} and HTTP/JSON on 127.0.0.1:{http_port}")
        thread_id = consumer(target)
        sdk_consumer(f"http://127.0.0.1:{http_port}/v1", thread_id)
        requests = httpx.get(base_url.removesuffix("/v1") + "/_emulator/log").json()
        print(f"the emulator saw {len(requests.get('entries', requests))} upstream requests")
    print("gateway and emulator stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
