"""The store file: atomic replace, strict parsing, hashes only."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from gateway.credentials import store
from gateway.credentials.keys import generate_key
from gateway.credentials.store import Consumer, KeyRecord, StoreData, StoreError


def test_store_write_replaces_atomically_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    key = generate_key()
    data = StoreData({"a": Consumer("a", frozenset({"read"}), "p", (
        KeyRecord(key.key_id, key.hash, 1.0, expires=2.0),), rate_per_second=3.0)})
    store.write(path, data)
    inode = path.stat().st_ino
    store.write(path, data)
    assert path.stat().st_ino != inode  # a new file renamed over the old one, never edited
    assert store.read(path) == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]  # no temp file left behind
    assert key.secret not in path.read_text()


def test_store_missing_file_is_empty(tmp_path: Path) -> None:
    assert store.read(tmp_path / "none.json") == StoreData()


@pytest.mark.parametrize(("raw", "named"), [
    ("[]", "version"),
    ('{"version": 2}', "version"),
    ('{"version": 1, "consumers": {"a b": {}}}', "consumer id"),
    ('{"version": 1, "consumers": {"a": {"scopes": ["superuser"]}}}', "consumers.a.scopes"),
    ('{"version": 1, "consumers": {"a": {"burst": -1}}}', "consumers.a.burst"),
    ('{"version": 1, "consumers": {"a": {"keys": [{"key_id": "0123456789abcdef", '
     '"hash": "xyz", "created": 1}]}}}', "consumers.a.keys[0].hash"),
])
def test_store_invalid_content_error_names_the_place(raw: str, named: str) -> None:
    with pytest.raises(StoreError) as caught:
        store.parse(raw)
    assert named in str(caught.value)


def test_store_duplicate_key_id_refused() -> None:
    key = generate_key()
    record = {"key_id": key.key_id, "hash": key.hash, "created": time.time()}
    raw = {"version": 1, "consumers": {"a": {"keys": [record]}, "b": {"keys": [record]}}}
    with pytest.raises(StoreError, match="twice"):
        store.parse(json.dumps(raw))
