"""``python -m gateway keys``: the store it writes and what it prints."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.__main__ import _parser
from gateway.credentials import cli, store
from gateway.credentials.keys import hash_key, parse_key_id


def keys(path: Path, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.run(_parser().parse_args(["keys", "--store", str(path), *args]), out, err)
    return code, out.getvalue(), err.getvalue()


def test_cli_create_prints_key_once_and_stores_only_its_hash(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    code, out, _ = keys(path, "create", "--consumer", "billing", "--scopes", "read,write")
    assert code == 0
    key = out.strip()
    key_id = parse_key_id(key)
    assert key_id is not None
    text = path.read_text()
    assert key not in text and hash_key(key) in text
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    record = store.read(path).consumers["billing"]
    assert record.scopes == frozenset({"read", "write"}) and record.keys[0].key_id == key_id
    code, out, err = keys(path, "list")
    assert code == 0 and key_id in out
    assert key not in out + err and hash_key(key) not in out + err
    assert hash_key(key)[:16] not in out  # not even a prefix of the hash


def test_cli_rotate_sets_grace_on_old_key_and_adds_new(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    _, first, _ = keys(path, "create", "--consumer", "svc")
    code, second, _ = keys(path, "rotate", "--consumer", "svc", "--grace", "120")
    assert code == 0 and second.strip() != first.strip()
    old, new = store.read(path).consumers["svc"].keys
    assert old.expires is not None and 119 <= old.expires - new.created <= 121
    assert new.expires is None
    _, out, _ = keys(path, "list")
    assert "expiring" in out and "active" in out


def test_cli_revoke_by_key_id_and_by_consumer(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    _, a, _ = keys(path, "create", "--consumer", "svc")
    keys(path, "create", "--consumer", "svc")
    assert keys(path, "revoke", "--key-id", parse_key_id(a.strip()) or "")[0] == 0
    states = [r.revoked is not None for r in store.read(path).consumers["svc"].keys]
    assert states == [True, False]
    assert keys(path, "revoke", "--consumer", "svc")[0] == 0
    assert all(r.revoked for r in store.read(path).consumers["svc"].keys)


@pytest.mark.parametrize("args", [
    ("create", "--consumer", "bad name"),
    ("create", "--consumer", "ok", "--scopes", "superuser"),
    ("create", "--consumer", "ok", "--profile", "../etc"),
    ("revoke", "--key-id", "not-hex"),
    ("revoke", "--consumer", "nobody"),
    ("rotate", "--consumer", "nobody"),
    ("rotate", "--consumer", "x", "--grace", "-1"),
])
def test_cli_bad_arguments_exit_2_without_writing(tmp_path: Path, args: tuple[str, ...]) -> None:
    path = tmp_path / "s.json"
    keys(path, "create", "--consumer", "x")
    before = path.read_text()
    code, out, err = keys(path, *args)
    assert code == 2 and out == "" and err.startswith("gateway keys:")
    assert path.read_text() == before


def test_cli_corrupt_store_exit_2_naming_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"version": 1, "consumers": {"a": {"keys": [{"key_id": "zz"}]}}}))
    code, _, err = keys(path, "list")
    assert code == 2 and "consumers.a.keys[0].key_id" in err


def test_cli_store_path_from_config_file_in_real_process(tmp_path: Path) -> None:
    config = tmp_path / "g.toml"
    store_path = tmp_path / "creds" / "s.json"
    config.write_text(f'[auth]\nstore_path = "{store_path}"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "keys", "--config", str(config), "create",
         "--consumer", "svc"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    assert parse_key_id(proc.stdout.strip()) is not None
    assert "svc" in store.read(store_path).consumers
