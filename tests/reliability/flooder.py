"""A flooding consumer in a process of its own (tests/reliability/test_overload.py, S12): its
client work must not share the gateway's loop, or the test would measure the client, not the
gateway. ``python -m tests.reliability.flooder TARGET KEY THREAD MESSAGE SECONDS WORKERS RATE``
(RATE: calls a second at most, all workers together) prints
``{"ok": N, "codes": {"RESOURCE_EXHAUSTED": M, ...}}``."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter

import grpc

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc

MAX_CALLS_PER_WORKER = 100_000


def main(target: str, key: str, thread_id: str, message_id: str, seconds: float,
         workers: int, rate: float) -> dict[str, object]:
    codes: Counter[str] = Counter()
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    request = pb.GetMessageRequest(thread_id=thread_id, message_id=message_id)
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.MessagesServiceStub(channel)

        def work() -> None:
            for _ in range(MAX_CALLS_PER_WORKER):
                if time.monotonic() >= stop_at:
                    return
                try:
                    stub.GetMessage(request, metadata=(("authorization", f"Bearer {key}"),),
                                    timeout=5)
                    code = "OK"
                except grpc.RpcError as err:
                    code = err.code().name  # type: ignore[attr-defined]
                with lock:
                    codes[code] += 1
                time.sleep(workers / rate)

        threads = [threading.Thread(target=work) for _ in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + 10)
    return {"ok": codes.pop("OK", 0), "codes": dict(codes)}


if __name__ == "__main__":
    a = sys.argv[1:]
    print(json.dumps(main(a[0], a[1], a[2], a[3], float(a[4]), int(a[5]), float(a[6]))))
