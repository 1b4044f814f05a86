"""In-memory threads, messages and message files, with Stripe-style cursor pagination.

List order (NOTES.md, "Pagination"): by ``created_at`` (whole seconds), ties broken by creation
order. Each object therefore gets the sort key ``(created_at, seq)`` where ``seq`` is a store-wide
counter; keys are unique, so a cursor id names exactly one position.

Per thread the store keeps the keys of its messages in one sorted list (plus one per ``run_id`` for
the ``run_id`` filter) and a dict from id to key. A page is two bisections and a slice, so listing
is O(log n + limit) even for the 10,000-message threads the benchmarks stream. Messages created
through the API always append (their ``created_at`` never decreases); raw seeded messages with an
older ``created_at`` are inserted in place (O(n) memmove, only in tests).

Cursor semantics, for both list orders:

* ``after=X``: the items that come after X in list order, the first ``limit`` of them;
  ``has_more`` says whether more follow.
* ``before=X``: the ``limit`` items immediately before X, still in list order; ``has_more`` says
  whether more precede them (the direction of travel, as in Stripe).
* both: the window strictly between the two cursors; the page is taken next to ``before``.
* ``after=<last id>`` answers ``data: []`` so the v1 SDK's auto-pagination (which ignores
  ``has_more``) stops.

Unknown cursor (an id that is not an object of this list's parent - never existed, or belongs to
another thread or message): :class:`CursorNotFoundError`, answered by the app as 400
``invalid_request_error`` with ``param`` ``after``/``before``. Answering an empty page instead would
make a consumer's auto-pagination stop silently and look like the end of the thread (silent data
loss); answering from the start would duplicate items. A loud, non-retryable 400 is the only
answer that cannot corrupt a consumer's result. A message that exists in the thread but is
filtered out by ``run_id`` is a valid cursor: its position is still well defined by its key.

Returned dicts are shared snapshots: the store never mutates an object after handing it out (a
modify replaces the dict), and callers must not mutate them either. Every public method takes a
re-entrant lock, so tests may seed from another thread while the server's loop serves requests.
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.emulator import ids

__all__ = [
    "CursorNotFoundError",
    "NotFoundError",
    "Page",
    "Store",
]

JSONObject = dict[str, Any]
_Key = tuple[int, int]


class NotFoundError(Exception):
    """An object named in the path does not exist (answered 404)."""

    def __init__(self, kind: str, object_id: str) -> None:
        super().__init__(f"No {kind} found with id '{object_id}'.")
        self.kind = kind
        self.object_id = object_id


class CursorNotFoundError(Exception):
    """An ``after``/``before`` cursor that names no object of the list (answered 400)."""

    def __init__(self, param: str, object_id: str) -> None:
        super().__init__(
            f"Invalid '{param}': no object with id '{object_id}' in this list."
        )
        self.param = param
        self.object_id = object_id


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list answer."""

    data: list[JSONObject]
    has_more: bool

    @property
    def first_id(self) -> str | None:
        return self.data[0]["id"] if self.data else None

    @property
    def last_id(self) -> str | None:
        return self.data[-1]["id"] if self.data else None

    def to_json(self) -> JSONObject:
        """The list envelope; ``first_id``/``last_id`` are null for an empty page, like the live API."""
        return {
            "object": "list",
            "data": self.data,
            "first_id": self.first_id,
            "last_id": self.last_id,
            "has_more": self.has_more,
        }


class _OrderedIndex:
    """Object ids sorted by their unique ``(created_at, seq)`` key."""

    __slots__ = ("keys", "ids")

    def __init__(self) -> None:
        self.keys: list[_Key] = []
        self.ids: list[str] = []

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, key: _Key, object_id: str) -> None:
        if not self.keys or key > self.keys[-1]:
            self.keys.append(key)
            self.ids.append(object_id)
            return
        pos = bisect_left(self.keys, key)
        self.keys.insert(pos, key)
        self.ids.insert(pos, object_id)

    def page(
        self, limit: int, order: str, after: _Key | None, before: _Key | None
    ) -> tuple[list[str], bool]:
        """Ids of one page in list order, and ``has_more`` in the direction of travel.

        The window is computed in ascending index space ``[lo, hi)``; for ``desc`` the list
        order is the reverse, so ``after`` bounds the window from above and ``before`` from
        below. The page is taken at the window's edge nearest the cursor we travel from.
        """
        keys = self.keys
        lo, hi = 0, len(keys)
        if order == "asc":
            if after is not None:
                lo = bisect_right(keys, after)
            if before is not None:
                hi = bisect_left(keys, before)
            from_high_end = before is not None  # the items just before `before`
        else:
            if after is not None:
                hi = bisect_left(keys, after)
            if before is not None:
                lo = bisect_right(keys, before)
            # desc starts at the newest item (high end) unless walking back from `before`.
            from_high_end = before is None
        if hi <= lo:
            return [], False
        if from_high_end:
            start = max(lo, hi - limit)
            selected = self.ids[start:hi]
            if order == "desc":
                selected.reverse()
            return selected, start > lo
        end = min(hi, lo + limit)
        selected = self.ids[lo:end]
        has_more_high = end < hi
        if order == "desc":
            selected.reverse()
        return selected, has_more_high


class _MessageFiles:
    """The message file objects of one message."""

    __slots__ = ("objects", "keys", "index")

    def __init__(self) -> None:
        self.objects: dict[str, JSONObject] = {}
        self.keys: dict[str, _Key] = {}
        self.index = _OrderedIndex()


class _Thread:
    __slots__ = ("obj", "messages", "keys", "index", "by_run", "files")

    def __init__(self, obj: JSONObject) -> None:
        self.obj = obj
        self.messages: dict[str, JSONObject] = {}
        self.keys: dict[str, _Key] = {}
        self.index = _OrderedIndex()
        self.by_run: dict[str, _OrderedIndex] = {}
        self.files: dict[str, _MessageFiles] = {}


class Store:
    """All emulator state. Thread-safe; every method is synchronous and short."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        """``clock`` gives the current Unix time; tests pin it to force ``created_at`` ties."""
        self.clock = clock
        self._lock = threading.RLock()
        self._seq = itertools.count()
        self._threads: dict[str, _Thread] = {}

    # ------------------------------------------------------------------ helpers

    def now(self) -> int:
        return int(self.clock())

    def _thread(self, thread_id: str) -> _Thread:
        thread = self._threads.get(thread_id)
        if thread is None:
            raise NotFoundError("thread", thread_id)
        return thread

    def _message_files(self, thread: _Thread, message_id: str) -> _MessageFiles:
        if message_id not in thread.messages:
            raise NotFoundError("message", message_id)
        return thread.files.setdefault(message_id, _MessageFiles())

    def _add_message(self, thread: _Thread, message: JSONObject) -> None:
        """Index a fully built message and create its message file objects."""
        message_id = message["id"]
        created_at = int(message["created_at"])
        key = (created_at, next(self._seq))
        thread.messages[message_id] = message
        thread.keys[message_id] = key
        thread.index.add(key, message_id)
        run_id = message.get("run_id")
        if run_id is not None:
            thread.by_run.setdefault(run_id, _OrderedIndex()).add(key, message_id)
        file_ids = message.get("file_ids") or []
        if file_ids:
            files = thread.files.setdefault(message_id, _MessageFiles())
            for file_id in file_ids:
                if file_id in files.objects:
                    continue
                file_key = (created_at, next(self._seq))
                files.objects[file_id] = {
                    "id": file_id,
                    "object": "thread.message.file",
                    "created_at": created_at,
                    "message_id": message_id,
                }
                files.keys[file_id] = file_key
                files.index.add(file_key, file_id)

    @staticmethod
    def _cursor(keys: Mapping[str, _Key], param: str, object_id: str | None) -> _Key | None:
        if object_id is None:
            return None
        key = keys.get(object_id)
        if key is None:
            raise CursorNotFoundError(param, object_id)
        return key

    # ------------------------------------------------------------------ threads

    def create_thread(
        self,
        metadata: Mapping[str, str] | None = None,
        messages: Iterable[Mapping[str, Any]] | None = None,
        *,
        thread_id: str | None = None,
        created_at: int | None = None,
    ) -> JSONObject:
        """Create a thread, optionally with initial messages (``role``/``content``/...), all in
        one lock acquisition; the messages take the thread's ``created_at`` and the given order.

        ``thread_id`` lets benchmarks use fixed ids; it must not exist yet (ValueError).
        """
        with self._lock:
            if thread_id is None:
                thread_id = ids.thread_id()
            elif thread_id in self._threads:
                raise ValueError(f"thread {thread_id!r} already exists")
            obj: JSONObject = {
                "id": thread_id,
                "object": "thread",
                "created_at": self.now() if created_at is None else int(created_at),
                "metadata": dict(metadata) if metadata else {},
            }
            self._threads[thread_id] = _Thread(obj)
            for message in messages or ():
                self.create_message(
                    thread_id,
                    role=message["role"],
                    content=message["content"],
                    file_ids=message.get("file_ids"),
                    metadata=message.get("metadata"),
                    created_at=obj["created_at"],
                )
            return obj

    def get_thread(self, thread_id: str) -> JSONObject:
        with self._lock:
            return self._thread(thread_id).obj

    def modify_thread(self, thread_id: str, metadata: Mapping[str, str] | None) -> JSONObject:
        """Replace the metadata wholesale (``None`` = leave unchanged, the SDK's ``{}`` body).

        The thread dict is replaced, never mutated, so objects already handed out stay intact.
        """
        with self._lock:
            thread = self._thread(thread_id)
            if metadata is not None:
                thread.obj = {**thread.obj, "metadata": dict(metadata)}
            return thread.obj

    def delete_thread(self, thread_id: str) -> JSONObject:
        """Delete a thread with its messages and their message file objects; answer the
        deletion status. Later calls on the thread or anything under it find nothing (404)."""
        with self._lock:
            if self._threads.pop(thread_id, None) is None:
                raise NotFoundError("thread", thread_id)
            return {"id": thread_id, "object": "thread.deleted", "deleted": True}

    def has_thread(self, thread_id: str) -> bool:
        with self._lock:
            return thread_id in self._threads

    def reset(self) -> None:
        """Forget every thread (the admin ``DELETE /_emulator/store``)."""
        with self._lock:
            self._threads.clear()

    # ------------------------------------------------------------------ messages

    def create_message(
        self,
        thread_id: str,
        *,
        role: str,
        content: str,
        file_ids: Iterable[str] | None = None,
        metadata: Mapping[str, str] | None = None,
        created_at: int | None = None,
    ) -> JSONObject:
        """Create a message as ``POST /threads/{id}/messages`` does (input already validated).

        Field choices for messages created through the API (documented in the package docstring):
        ``status`` ``"completed"``, ``completed_at``/``incomplete_at``/``incomplete_details`` null,
        ``assistant_id``/``run_id`` null. Duplicate ``file_ids`` are kept once (first occurrence),
        so that each message file id, which doubles as a list cursor, names one object.
        """
        with self._lock:
            thread = self._thread(thread_id)
            unique_files = list(dict.fromkeys(file_ids or ()))
            message: JSONObject = {
                "id": ids.message_id(),
                "object": "thread.message",
                "created_at": self.now() if created_at is None else int(created_at),
                "thread_id": thread_id,
                "status": "completed",
                "incomplete_details": None,
                "completed_at": None,
                "incomplete_at": None,
                "role": role,
                "content": [{"type": "text", "text": {"value": content, "annotations": []}}],
                "assistant_id": None,
                "run_id": None,
                "file_ids": unique_files,
                "metadata": dict(metadata) if metadata else {},
            }
            self._add_message(thread, message)
            return message

    def insert_message(self, thread_id: str, raw: Mapping[str, Any]) -> JSONObject:
        """Insert a raw message object as given, for tests of shapes the API cannot create.

        Only ``id`` (minted when absent), ``object`` (default ``thread.message``),
        ``thread_id`` (always this thread) and ``created_at`` (default now) are filled in; any
        other field is stored exactly as given and absent fields stay absent (v1-era messages
        without ``status`` & co.). ``file_ids`` in the raw object create message file objects.
        """
        with self._lock:
            thread = self._thread(thread_id)
            message = copy.deepcopy(dict(raw))
            message.setdefault("id", ids.message_id())
            if message["id"] in thread.messages:
                raise ValueError(f"message {message['id']!r} already exists in {thread_id!r}")
            message.setdefault("object", "thread.message")
            message["thread_id"] = thread_id
            if message.get("created_at") is None:
                message["created_at"] = self.now()
            self._add_message(thread, message)
            return message

    def seed_messages(
        self,
        thread_id: str,
        count: int,
        *,
        role: str = "user",
        content: str = "Seed message {i}",
        run_id: str | None = None,
        created_at: int | None = None,
        spacing: int = 0,
    ) -> list[str]:
        """Bulk-create ``count`` simple messages fast; returns their ids in creation order.

        ``{i}`` in ``content`` is replaced by the message's 0-based index. ``created_at`` (default
        now) is the first message's timestamp and each next one is ``spacing`` seconds later
        (0 = all in the same second, the worst case for tie-breaking).
        """
        with self._lock:
            thread = self._thread(thread_id)
            base = self.now() if created_at is None else int(created_at)
            new_ids: list[str] = []
            for i in range(count):
                message: JSONObject = {
                    "id": ids.message_id(),
                    "object": "thread.message",
                    "created_at": base + i * spacing,
                    "thread_id": thread_id,
                    "status": "completed",
                    "incomplete_details": None,
                    "completed_at": None,
                    "incomplete_at": None,
                    "role": role,
                    "content": [
                        {
                            "type": "text",
                            "text": {"value": content.replace("{i}", str(i)), "annotations": []},
                        }
                    ],
                    "assistant_id": None,
                    "run_id": run_id,
                    "file_ids": [],
                    "metadata": {},
                }
                self._add_message(thread, message)
                new_ids.append(message["id"])
            return new_ids

    def get_message(self, thread_id: str, message_id: str) -> JSONObject:
        with self._lock:
            thread = self._thread(thread_id)
            message = thread.messages.get(message_id)
            if message is None:
                raise NotFoundError("message", message_id)
            return message

    def modify_message(
        self, thread_id: str, message_id: str, metadata: Mapping[str, str] | None
    ) -> JSONObject:
        """Replace the metadata (``None`` = leave unchanged, the SDK's ``{}`` body).

        The message dict is replaced, never mutated, so pages already handed out stay intact.
        """
        with self._lock:
            thread = self._thread(thread_id)
            message = thread.messages.get(message_id)
            if message is None:
                raise NotFoundError("message", message_id)
            if metadata is None:
                return message
            updated = {**message, "metadata": dict(metadata)}
            thread.messages[message_id] = updated
            return updated

    def list_messages(
        self,
        thread_id: str,
        *,
        limit: int = 20,
        order: str = "desc",
        after: str | None = None,
        before: str | None = None,
        run_id: str | None = None,
    ) -> Page:
        with self._lock:
            thread = self._thread(thread_id)
            after_key = self._cursor(thread.keys, "after", after)
            before_key = self._cursor(thread.keys, "before", before)
            if run_id is None:
                index = thread.index
            else:
                index = thread.by_run.get(run_id) or _OrderedIndex()
            page_ids, has_more = index.page(limit, order, after_key, before_key)
            return Page([thread.messages[i] for i in page_ids], has_more)

    def message_ids(self, thread_id: str, order: str = "asc") -> list[str]:
        """Every message id of a thread in list order (ground truth for tests)."""
        with self._lock:
            result = list(self._thread(thread_id).index.ids)
            if order == "desc":
                result.reverse()
            return result

    # ------------------------------------------------------------------ message files

    def list_message_files(
        self,
        thread_id: str,
        message_id: str,
        *,
        limit: int = 20,
        order: str = "desc",
        after: str | None = None,
        before: str | None = None,
    ) -> Page:
        with self._lock:
            files = self._message_files(self._thread(thread_id), message_id)
            after_key = self._cursor(files.keys, "after", after)
            before_key = self._cursor(files.keys, "before", before)
            page_ids, has_more = files.index.page(limit, order, after_key, before_key)
            return Page([files.objects[i] for i in page_ids], has_more)

    def get_message_file(self, thread_id: str, message_id: str, file_id: str) -> JSONObject:
        with self._lock:
            files = self._message_files(self._thread(thread_id), message_id)
            obj = files.objects.get(file_id)
            if obj is None:
                raise NotFoundError("file", file_id)
            return obj
