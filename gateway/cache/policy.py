"""What may be cached, for how long, and what the consumer asked for (``cache-control``).

Never cached: errors (nothing is stored unless the fetch returned), messages still
``in_progress`` and list pages holding one (their content is about to change), responses larger
than ``max_value_bytes``, and requests carrying ``extra_headers`` or ``extra_body`` (they may
change the upstream's answer in ways the key cannot see). Streams are not cached at all: see the
docs/caching.md.
"""

from __future__ import annotations

import enum

from google.protobuf.message import Message

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from gateway.config import CacheSettings

__all__ = [
    "GET_MESSAGE",
    "GET_MESSAGE_FILE",
    "LIST_MESSAGES",
    "LIST_MESSAGE_FILES",
    "CachePolicy",
    "Directive",
    "cacheable",
    "directive",
    "options_bypass",
]

GET_MESSAGE = "getMessage"
LIST_MESSAGES = "listMessages"
GET_MESSAGE_FILE = "getMessageFile"
LIST_MESSAGE_FILES = "listMessageFiles"


class Directive(enum.Enum):
    """What the consumer's ``cache-control`` metadata allows for one call."""

    USE = "use"
    #: ``no-cache``: skip the lookup, fetch from the upstream, store the fresh answer.
    REFRESH = "refresh"
    #: ``no-store``: neither read nor write the cache.
    BYPASS = "bypass"


def directive(cache_control: str) -> Directive:
    """Parse ``cache-control`` (comma-separated, case-insensitive); ``no-store`` wins."""
    if not cache_control:
        return Directive.USE  # the common case: no header at all
    tokens = {part.strip().split("=", 1)[0] for part in cache_control.lower().split(",")}
    if "no-store" in tokens:
        return Directive.BYPASS
    if "no-cache" in tokens:
        return Directive.REFRESH
    return Directive.USE


def options_bypass(options: pb.RequestOptions) -> bool:
    """Extra headers or body may change the answer invisibly to the key: never cache those."""
    return bool(options.extra_headers) or options.HasField("extra_body")


def _in_progress(message: pb.Message) -> bool:
    return message.HasField("status") and message.status == pb.MESSAGE_STATUS_IN_PROGRESS


def cacheable(response: Message) -> bool:
    """Whether an upstream answer is final enough to be reused."""
    if isinstance(response, pb.Message):
        return not _in_progress(response)
    if isinstance(response, pb.ListMessagesResponse):
        return not any(_in_progress(m) for m in response.data)
    return True


class CachePolicy:
    """TTLs per operation, from the ``[cache]`` settings (0 = that operation is not cached)."""

    def __init__(self, settings: CacheSettings) -> None:
        self._ttl = {
            GET_MESSAGE: settings.get_message_ttl_seconds,
            LIST_MESSAGES: settings.list_messages_ttl_seconds,
            GET_MESSAGE_FILE: settings.get_message_file_ttl_seconds,
            LIST_MESSAGE_FILES: settings.list_message_files_ttl_seconds,
        }
        self.max_value_bytes = settings.max_value_bytes

    def ttl(self, operation: str) -> float:
        return self._ttl[operation]

    @property
    def max_ttl(self) -> float:
        return max(self._ttl.values())
