"""The in-process floor of the gateway's logic runs real calls and reports each case."""

from __future__ import annotations

import asyncio

import pytest

from tests.bench import gateway_logic


def test_gateway_logic_measures_successful_hits_and_misses(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    # Enough calls that one round's warm-up or collection cannot outweigh a miss's exchange (20
    # calls x 2 rounds once read a hit dearer than a miss; this is ~0.5 s).
    monkeypatch.setattr(gateway_logic, "CALLS", 200)
    monkeypatch.setattr(gateway_logic, "ROUNDS", 3)
    # The suite sets the process's logging to warning, as the bench's servers run; here that
    # would outlive the test (structlog's configuration is global) and hide later tests' lines.
    monkeypatch.setattr("gateway.log.configure_logging", lambda *_args, **_kwargs: None)
    rows = asyncio.run(gateway_logic.run())
    figures = {row["case"].split(":")[0]: row["cpu_us_per_call"] for row in rows}
    assert set(figures) == {"GetMessage hit", "GetMessage miss (no-cache)",
                            "the instant transport alone (its httpx.Response and body read)"}
    assert all(value > 0 for value in figures.values())
    # A miss does everything a hit does and the upstream exchange besides.
    assert figures["GetMessage miss (no-cache)"] > figures["GetMessage hit"]
