"""Thread ownership's cost: cached GetMessage with ``thread_access`` "tenant" against "open",
both arms authenticated, in one gateway process (the auth bench's method, ``tests.bench.auth``).
``python -m tests.bench.ownership`` runs it alone; target ≤ 1.05."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.bench import auth


async def run() -> list[dict[str, Any]]:
    return await auth.run(mode="ownership")


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run()), indent=2))
