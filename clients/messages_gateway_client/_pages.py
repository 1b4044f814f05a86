"""``list_page`` results: one upstream page with the SDK's paging helpers.

``Page`` (and ``AsyncPage``) wrap the contract's ``ListMessagesResponse`` /
``ListMessageFilesResponse`` (``.response``) and read like the SDK's ``SyncCursorPage``:
``data``, ``first_id``, ``last_id``, ``has_more``, iteration over the items,
``has_next_page()``, ``next_page_params()`` and ``get_next_page()``, which fetches the following
page with the same arguments: ``after=<last id>``, or, for a page asked for with ``before`` only
(a backward walk), ``before=<first id>``. ``to_dict()`` / ``to_json()`` give the upstream's list
object.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Generic, TypeVar

from messages_gateway_client._json import list_json, to_json
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb

ItemT = TypeVar("ItemT", pb.Message, pb.MessageFile)
Response = pb.ListMessagesResponse | pb.ListMessageFilesResponse


class _BasePage(Generic[ItemT]):
    def __init__(self, response: Response, params: dict[str, Any],
                 fetch: Callable[..., Any]) -> None:
        self.response = response
        self._params = params
        self._fetch = fetch

    @property
    def object(self) -> str:
        return self.response.object

    @property
    def data(self) -> list[ItemT]:
        return list(self.response.data)  # type: ignore[arg-type]

    @property
    def first_id(self) -> str | None:
        return self.response.first_id if self.response.HasField("first_id") else None

    @property
    def last_id(self) -> str | None:
        return self.response.last_id if self.response.HasField("last_id") else None

    @property
    def has_more(self) -> bool:
        return self.response.has_more

    def __iter__(self) -> Iterator[ItemT]:
        return iter(self.response.data)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.response.data)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({len(self)} items, first_id={self.first_id!r}, "
                f"last_id={self.last_id!r}, has_more={self.has_more})")

    @property
    def _backwards(self) -> bool:
        return bool(self._params.get("before")) and not self._params.get("after")

    def has_next_page(self) -> bool:
        """Whether the upstream says more items follow (and this page gives a cursor)."""
        return self.has_more and len(self.response.data) > 0

    def next_page_params(self) -> dict[str, str] | None:
        """The cursor of the next page, or None on the last one."""
        if not self.has_next_page():
            return None
        if self._backwards:
            return {"before": self.response.data[0].id}
        return {"after": self.response.data[-1].id}

    def _next_arguments(self) -> dict[str, Any]:
        cursor = self.next_page_params()
        if cursor is None:
            raise RuntimeError("no next page: check has_next_page() first")
        return {**self._params, **cursor}

    def to_dict(self) -> dict[str, Any]:
        return list_json(self.response)

    def to_json(self, *, indent: int | None = 2) -> str:
        return to_json(self.response, indent=indent)


class Page(_BasePage[ItemT]):
    """One page from the blocking client's ``list_page``."""

    def get_next_page(self) -> Page[ItemT]:
        """The following page, fetched with the same arguments and the next cursor."""
        return self._fetch(**self._next_arguments())  # type: ignore[no-any-return]


class AsyncPage(_BasePage[ItemT]):
    """One page from the asyncio client's ``list_page``."""

    async def get_next_page(self) -> AsyncPage[ItemT]:
        fetch: Callable[..., Awaitable[AsyncPage[ItemT]]] = self._fetch
        return await fetch(**self._next_arguments())


__all__ = ["AsyncPage", "Page"]
