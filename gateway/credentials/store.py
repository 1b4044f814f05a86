"""The credentials store: one JSON file of consumers and their key records.

    {"version": 1,
     "consumers": {
       "billing": {"scopes": ["read", "write"], "profile": "default",
                   "rate_per_second": null, "burst": null, "max_streams": null,
                   "keys": [{"key_id": "0f3a…", "hash": "<sha256 hex>", "created": 1700000000.0,
                             "expires": null, "revoked": null}]}}}

Only hashes are stored. ``expires`` (Unix seconds) ends a key, which is how ``rotate`` gives the
old key a grace period; ``revoked`` ends it at once. Writes go to a temporary file in the same
directory, are fsynced, then ``os.replace``d over the store, so a reader (the gateway's reloader)
sees the old file or the new one, never half of one. Writers (the CLI) serialise on a lock file.

A ``Snapshot`` is the immutable, indexed form the authenticator reads; reloading swaps one whole
snapshot for another, so a call never sees a half-applied change.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from gateway.credentials.keys import is_key_id

STORE_VERSION = 1
SCOPES = frozenset({"read", "write", "admin"})
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HASH_RE = re.compile(r"[0-9a-f]{64}")


class StoreError(ValueError):
    """The store file is unreadable or invalid; the message names the place."""


def check_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise StoreError(f"{what} must be 1-64 letters, digits, '.', '_' or '-', got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class KeyRecord:
    key_id: str
    hash: str
    created: float
    expires: float | None = None
    revoked: float | None = None

    def valid_at(self, now: float) -> bool:
        return self.revoked is None and (self.expires is None or now < self.expires)

    def state(self, now: float) -> str:
        if self.revoked is not None:
            return "revoked"
        if self.expires is not None:
            return "expired" if now >= self.expires else "expiring"
        return "active"


@dataclass(frozen=True, slots=True)
class Consumer:
    id: str
    scopes: frozenset[str]
    profile: str = "default"
    keys: tuple[KeyRecord, ...] = ()
    #: Per-consumer overrides of the [auth] defaults; None = the default.
    rate_per_second: float | None = None
    burst: int | None = None
    max_streams: int | None = None


@dataclass(frozen=True, slots=True)
class StoreData:
    consumers: dict[str, Consumer] = field(default_factory=dict)

    def with_consumer(self, consumer: Consumer) -> StoreData:
        consumers = dict(self.consumers)
        consumers[consumer.id] = consumer
        return StoreData(consumers)

    def key_owner(self, key_id: str) -> tuple[Consumer, KeyRecord] | None:
        for consumer in self.consumers.values():
            for record in consumer.keys:
                if record.key_id == key_id:
                    return consumer, record
        return None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the authenticator reads: key id → (consumer, record), built once per load."""

    data: StoreData
    by_key_id: Mapping[str, tuple[Consumer, KeyRecord]]
    loaded_at: float

    @classmethod
    def of(cls, data: StoreData) -> Snapshot:
        index = {r.key_id: (c, r) for c in data.consumers.values() for r in c.keys}
        return cls(data, index, time.monotonic())


EMPTY = Snapshot.of(StoreData())


# -- parsing --------------------------------------------------------------------------------------


def _number(value: Any, where: str, *, optional: bool = True) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StoreError(f"{where} must be a number")
    if not math.isfinite(value):  # json reads NaN and Infinity; NaN passes every range check
        raise StoreError(f"{where} must be a finite number")
    return float(value)


def _key(raw: Any, where: str) -> KeyRecord:
    if not isinstance(raw, dict):
        raise StoreError(f"{where} must be an object")
    key_id, digest = raw.get("key_id"), raw.get("hash")
    if not isinstance(key_id, str) or not is_key_id(key_id):
        raise StoreError(f"{where}.key_id must be 16 lower-case hex characters")
    if not isinstance(digest, str) or not _HASH_RE.fullmatch(digest):
        raise StoreError(f"{where}.hash must be a SHA-256 hex digest")
    created = _number(raw.get("created"), f"{where}.created", optional=False)
    return KeyRecord(key_id, digest, created or 0.0,
                     _number(raw.get("expires"), f"{where}.expires"),
                     _number(raw.get("revoked"), f"{where}.revoked"))


def _consumer(name: str, raw: Any) -> Consumer:
    where = f"consumers.{name}"
    check_name(name, "consumer id")
    if not isinstance(raw, dict):
        raise StoreError(f"{where} must be an object")
    scopes = raw.get("scopes", [])
    if not isinstance(scopes, list) or not set(scopes) <= SCOPES:
        raise StoreError(f"{where}.scopes must be a list of 'read'/'write'/'admin'")
    profile = raw.get("profile", "default")
    check_name(profile, f"{where}.profile")
    keys = raw.get("keys", [])
    if not isinstance(keys, list):
        raise StoreError(f"{where}.keys must be a list")
    rate = _number(raw.get("rate_per_second"), f"{where}.rate_per_second")
    burst, streams = raw.get("burst"), raw.get("max_streams")
    for value, key in ((burst, "burst"), (streams, "max_streams")):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 0):
            raise StoreError(f"{where}.{key} must be a non-negative integer")
    return Consumer(name, frozenset(scopes), profile,
                    tuple(_key(k, f"{where}.keys[{i}]") for i, k in enumerate(keys)),
                    rate, burst, streams)


def parse(text: str) -> StoreData:
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise StoreError(f"the store is not valid JSON: {exc}") from None
    if not isinstance(raw, dict) or raw.get("version") != STORE_VERSION:
        raise StoreError(f"the store must be an object with \"version\": {STORE_VERSION}")
    consumers = raw.get("consumers", {})
    if not isinstance(consumers, dict):
        raise StoreError("consumers must be an object")
    data = StoreData({name: _consumer(name, c) for name, c in consumers.items()})
    seen: set[str] = set()
    for consumer in data.consumers.values():
        for record in consumer.keys:
            if record.key_id in seen:
                raise StoreError(f"key id {record.key_id} appears twice")
            seen.add(record.key_id)
    return data


def dumps(data: StoreData) -> str:
    consumers: dict[str, Any] = {}
    for consumer in sorted(data.consumers.values(), key=lambda c: c.id):
        raw = asdict(consumer)
        raw.pop("id")
        raw["scopes"] = sorted(consumer.scopes)
        consumers[consumer.id] = raw
    return json.dumps({"version": STORE_VERSION, "consumers": consumers}, indent=2) + "\n"


# -- the file -------------------------------------------------------------------------------------


def read(path: str | os.PathLike[str]) -> StoreData:
    """The store's contents; a missing file is an empty store."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return StoreData()
    except OSError as exc:
        raise StoreError(f"cannot read the store {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        # Not a store at all (a binary file, another encoding): refused like any broken store,
        # not a traceback at start or a 'credentials_reload_error' on every tick.
        raise StoreError(f"cannot read the store {path}: it is not UTF-8 text") from None
    return parse(text)


def write(path: str | os.PathLike[str], data: StoreData) -> None:
    """Atomic replace: temp file in the same directory, fsync, ``os.replace``, fsync the dir."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(dumps(data))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)  # hashes are not keys, but the file is nobody else's business
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def locked(path: str | os.PathLike[str]) -> Iterator[None]:
    """Serialise read-modify-write cycles of concurrent CLI runs on ``<store>.lock``."""
    lock = Path(f"{path}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def revoke_key(data: StoreData, key_id: str, now: float) -> StoreData:
    found = data.key_owner(key_id)
    if found is None:
        raise StoreError(f"no key with id {key_id}")
    consumer, _ = found
    keys = tuple(replace(r, revoked=now) if r.key_id == key_id and r.revoked is None else r
                 for r in consumer.keys)
    return data.with_consumer(replace(consumer, keys=keys))
