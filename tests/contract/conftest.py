"""Contract fixtures: the project's pinned buf (tools/, `make tools`) and the googleapis copy
(`make buf-deps`). Without them the tests fail under CI (``CI=true``) and are skipped with a
loud message elsewhere, as the Redis tests are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / "tools" / "node_modules" / ".bin" / "buf"
BUF_DEPS = ROOT / ".buf-deps" / "googleapis"
BASELINE = ROOT / "protos" / "baseline.binpb"
DESCRIPTOR_SET = (ROOT / "clients" / "messages_gateway_client" / "generated"
                  / "messages_gateway.binpb")


def require(paths: list[Path], hint: str) -> None:
    missing = [str(p.relative_to(ROOT)) for p in paths if not p.exists()]
    if not missing:
        return
    message = f"{', '.join(missing)} missing: run `{hint}` (make test does)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def buf() -> Path:
    require([BUF, BUF_DEPS / ".copied"], "make tools buf-deps")
    return BUF
