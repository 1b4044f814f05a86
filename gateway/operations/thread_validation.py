"""Validation of the thread requests, run before any cache or upstream work (the rules and
limits are ``gateway.operations.validation``'s, shared with the message requests)."""

from __future__ import annotations

from collections.abc import Iterable

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from gateway.operations.validation import (
    Violations,
    check_id,
    check_message_body,
    check_metadata,
    check_options,
)

#: Initial messages one CreateThread may carry (the upstream sets no bound; the gateway does,
#: so one request stays within the REST face's body limit and one upstream write).
MAX_THREAD_MESSAGES = 32


def check_create_thread(req: pb.CreateThreadRequest, allowed_headers: Iterable[str]) -> None:
    v = Violations()
    if len(req.messages) > MAX_THREAD_MESSAGES:
        v.add("messages", f"may have at most {MAX_THREAD_MESSAGES} entries")
    for i, message in enumerate(req.messages[:MAX_THREAD_MESSAGES]):
        check_message_body(v, f"messages[{i}].", message)
    if req.HasField("metadata"):
        check_metadata(v, "metadata", req.metadata.entries)
    check_options(v, req.options, allowed_headers=allowed_headers,
                  modelled_body=("messages", "metadata"))
    v.raise_if_any()


def check_thread(
    req: pb.GetThreadRequest | pb.DeleteThreadRequest | pb.AdoptThreadRequest,
    allowed_headers: Iterable[str],
) -> None:
    v = Violations()
    check_id(v, "thread_id", req.thread_id)
    # Adopt sends a body of the gateway's own; get and delete send none.
    check_options(v, req.options, allowed_headers=allowed_headers)
    v.raise_if_any()


def check_update_thread(req: pb.UpdateThreadRequest, allowed_headers: Iterable[str]) -> None:
    v = Violations()
    check_id(v, "thread_id", req.thread_id)
    if req.HasField("metadata"):
        check_metadata(v, "metadata", req.metadata.entries)
    check_options(v, req.options, allowed_headers=allowed_headers, modelled_body=("metadata",))
    v.raise_if_any()
