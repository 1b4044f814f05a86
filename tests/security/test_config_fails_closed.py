"""Issue 19, case 7: configuration that failed open or silently.

``GATEWAY_AUTH_ENABLED=enabled`` (or ``y``, ``t``, ``true # comment``) turned auth *off*;
misspelt ``GATEWAY_*`` names were ignored; auth on with a store file that does not exist started
with 0 consumers at info level; NaN and infinity were accepted (``rate_per_second=nan`` admitted
every call). Each is now refused at start-up with an error naming the key.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.app import start_gateway
from gateway.config import ConfigError, load_settings
from gateway.credentials import store
from gateway.credentials.store import StoreData
from gateway.emulator.server import EmulatorServer
from tests.credentials.helpers import auth_settings


def _store(tmp_path: Path) -> str:
    path = tmp_path / "credentials.json"
    store.write(path, StoreData())
    return str(path)


@pytest.mark.parametrize("text", ["enabled", "y", "t", "true # comment", "on", "yes", "1",
                                  "TRUE ", "", "disabled", "nope"])
def test_ambiguous_boolean_in_env_is_refused_naming_the_key(tmp_path: Path, text: str) -> None:
    env = {"GATEWAY_AUTH_ENABLED": text, "GATEWAY_AUTH_STORE_PATH": _store(tmp_path)}
    with pytest.raises(ConfigError, match="auth.enabled"):
        load_settings(None, environ=env)


@pytest.mark.parametrize(("text", "enabled"), [("true", True), ("false", False)])
def test_booleans_in_env_are_spelt_as_in_toml(tmp_path: Path, text: str, enabled: bool) -> None:
    env = {"GATEWAY_AUTH_ENABLED": text, "GATEWAY_AUTH_STORE_PATH": _store(tmp_path)}
    assert load_settings(None, environ=env).auth.enabled is enabled


@pytest.mark.parametrize("name", ["GATEWAY_AUTH_ENABLE", "GATEWAY_AUTHENABLED",
                                  "GATEWAY_UPSTREAM_APIKEY", "GATEWAY_SERVR_GRPC_LISTEN",
                                  "GATEWAY_PROFILES_X_BASE_URL"])
def test_unknown_gateway_variable_is_refused_naming_it(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings(None, environ={name: "true"})


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "infinity", "1e999"])
@pytest.mark.parametrize("key", ["AUTH_RATE_PER_SECOND", "SERVER_GRACE_SECONDS",
                                 "CACHE_GET_MESSAGE_TTL_SECONDS"])
def test_non_finite_numbers_in_env_are_refused(key: str, text: str) -> None:
    with pytest.raises(ConfigError, match=key.lower().replace("_", ".", 1)):
        load_settings(None, environ={f"GATEWAY_{key}": text})


@pytest.mark.parametrize("literal", ["nan", "inf", "-inf", "+inf"])
def test_non_finite_numbers_in_toml_are_refused(tmp_path: Path, literal: str) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(f"[auth]\nrate_per_second = {literal}\n")
    with pytest.raises(ConfigError, match="auth.rate_per_second"):
        load_settings(path, environ={})


async def test_gateway_with_auth_and_a_missing_store_does_not_start(
        emulator: EmulatorServer, tmp_path: Path) -> None:
    settings = auth_settings(emulator, tmp_path / "nope.json")
    with pytest.raises(ConfigError, match="auth.store_path"):
        gw = await start_gateway(settings)
        await gw.stop(grace=0.1)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_in_the_credentials_store_are_refused(literal: str) -> None:
    text = store.dumps(StoreData()).replace('"consumers": {}', (
        '"consumers": {"c": {"scopes": ["read"], "profile": "default", "keys": [], '
        f'"rate_per_second": {literal}}}}}'))
    with pytest.raises(store.StoreError, match="rate_per_second"):
        store.parse(text)


async def test_gateway_with_auth_and_an_unreadable_store_does_not_start(
        emulator: EmulatorServer, tmp_path: Path) -> None:
    broken = tmp_path / "credentials.json"
    broken.write_text('{"version": 1, "consumers": ')
    with pytest.raises(ConfigError, match="auth.store_path"):
        gw = await start_gateway(auth_settings(emulator, broken))
        await gw.stop(grace=0.1)


def test_serve_with_auth_and_a_missing_store_exits_2_with_one_error_line(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "OPENAI_API_KEY": "sk-test", "GATEWAY_AUTH_ENABLED": "true",
           "GATEWAY_AUTH_STORE_PATH": str(tmp_path / "nope.json"),
           "GATEWAY_SERVER_GRPC_LISTEN": "127.0.0.1:0"}
    proc = subprocess.run([sys.executable, "-m", "gateway", "serve"], env=env, timeout=30,
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "auth.store_path" in proc.stderr and "Traceback" not in proc.stderr
