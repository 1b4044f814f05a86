"""The four v1 thread operations (``openapi-threads-v1.yaml``): create, retrieve, modify, delete.

They run inside :meth:`Emulator._handle` like the message operations, under the operation ids of
the spec (``createThread``, ``getThread``, ``modifyThread``, ``deleteThread``), so the request log
counts them, fault and latency rules target them, and the same checks come first in the same order:
auth (401), the ``OpenAI-Beta`` header (400 ``invalid_beta``), the body (400 naming the ``param``,
unknown fields rejected), then the thread in the path (404 ``No thread found with id '…'.``).

Decisions where the contract is silent (NOTES, "Threads (v1)"):

* Create: the body is optional (no body, an empty body and ``{}`` all make an empty thread); every
  initial message is checked exactly as a create-message body, its errors named
  ``messages[i].<param>``, and all of them before anything is stored, so a rejected create leaves
  nothing behind. The thread and its messages are stored under one lock acquisition, so no reader
  sees a half-made thread; the messages share the thread's ``created_at`` and keep the order given
  (``run_id`` null). No maximum on the number of messages (the spec has none); the request size
  cap of every route (8 MiB, answered 413) still applies.
* The thread object has exactly ``id``, ``object`` (``"thread"``), ``created_at`` and
  ``metadata``: ``{}`` when none was given (the spec's examples), never absent; ``null`` only if
  seeded that way.
* Modify replaces ``metadata`` wholesale; ``{}`` or ``{"metadata": null}`` leaves it unchanged (the
  SDK sends ``{}`` when no metadata is given), as for messages.
* Delete removes the thread, its messages and their message file objects (the ``file_ids``
  associations). The files themselves belong to the Files API, which the emulator does not have.
  Afterwards every call on the thread or under it answers 404 ``No thread found with id '…'.``
  (the thread is looked up first), a second delete included.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway.emulator.store import Store
from gateway.emulator.validation import validate_create_thread, validate_modify_thread

__all__ = ["THREAD_OPERATIONS", "ThreadOperations", "thread_routes"]

#: The spec's operation ids, in the spec's order.
THREAD_OPERATIONS = ("createThread", "getThread", "modifyThread", "deleteThread")

Operation = Callable[[web.Request, bool], Awaitable[Any]]
BodyReader = Callable[[web.Request], Awaitable[dict[str, Any]]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ThreadOperations:
    """The thread operations of one emulator.

    ``store`` returns the emulator's current store (looked up per request, so the operations
    never hold on to a replaced one); ``read_body`` reads a request body as a JSON object with
    the emulator's own errors (400 bad JSON, 413 too large).
    """

    def __init__(self, store: Callable[[], Store], read_body: BodyReader) -> None:
        self._store = store
        self._read_body = read_body

    def operations(self) -> dict[str, Operation]:
        """Operation id -> operation, for the emulator's dispatch table."""
        return {
            "createThread": self.create,
            "getThread": self.get,
            "modifyThread": self.modify,
            "deleteThread": self.delete,
        }

    async def create(self, request: web.Request, stale: bool) -> Any:
        messages, metadata = validate_create_thread(await self._read_body(request))
        return self._store().create_thread(
            metadata=metadata,
            messages=[
                {
                    "role": message.role,
                    "content": message.content,
                    "file_ids": message.file_ids,
                    "metadata": message.metadata,
                }
                for message in messages
            ],
        )

    async def get(self, request: web.Request, stale: bool) -> Any:
        return self._store().get_thread(request.match_info["thread_id"])

    async def modify(self, request: web.Request, stale: bool) -> Any:
        metadata = validate_modify_thread(await self._read_body(request))
        return self._store().modify_thread(request.match_info["thread_id"], metadata)

    async def delete(self, request: web.Request, stale: bool) -> Any:
        # A body sent with a DELETE is not read, as for the GET routes.
        return self._store().delete_thread(request.match_info["thread_id"])


def thread_routes(route: Callable[[str], Handler]) -> list[web.RouteDef]:
    """The ``/v1`` routes of the thread operations; ``route(operation_id)`` makes the handler.

    They must be registered before the ``/v1`` catch-all (aiohttp tries routes in order).
    """
    thread = "/v1/threads/{thread_id}"
    return [
        web.post("/v1/threads", route("createThread")),
        web.get(thread, route("getThread"), allow_head=False),
        web.post(thread, route("modifyThread")),
        web.delete(thread, route("deleteThread")),
    ]
