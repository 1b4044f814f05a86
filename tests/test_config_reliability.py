"""The [reliability] settings section: environment overrides and validation naming the key."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, load_settings


def test_reliability_env_override_and_defaults() -> None:
    settings = load_settings(environ={"GATEWAY_RELIABILITY_MAX_ATTEMPTS": "2"})
    assert settings.reliability.max_attempts == 2
    assert settings.reliability.retry_budget_ratio == 0.2


@pytest.mark.parametrize(("key", "value", "named"), [
    ("MAX_ATTEMPTS", "9", "reliability.max_attempts"),
    ("CIRCUIT_OPEN_SECONDS", "0", "reliability.circuit_open_seconds"),
    ("RETRY_BUDGET_RATIO", "-1", "reliability.retry_budget_ratio"),
])
def test_reliability_invalid_value_names_the_key(key: str, value: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(environ={f"GATEWAY_RELIABILITY_{key}": value})
