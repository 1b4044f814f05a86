"""``python -m gateway keys create|list|revoke|rotate``: manage the credentials store.

``create`` and ``rotate`` print the new key on stdout, once, alone on its line (so a script can
capture it); everything else goes to stderr. ``list`` shows key ids and states, never keys and never
hashes. Every change is a locked read-modify-write with an atomic replace, which a running
gateway picks up within ``auth.reload_seconds`` (or at once on SIGHUP).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import TextIO

from gateway.config import ConfigError, load_settings
from gateway.credentials import store
from gateway.credentials.keys import generate_key, is_key_id
from gateway.credentials.store import Consumer, KeyRecord, StoreError, check_name


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    keys = commands.add_parser("keys", help="manage consumer keys in the credentials store")
    keys.add_argument("--store", help="store file (default: auth.store_path of --config)")
    keys.add_argument("--config", help="TOML file (default: $GATEWAY_CONFIG)")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a consumer key (printed once)")
    create.add_argument("--consumer", required=True)
    create.add_argument("--scopes", default="read", help="comma-separated: read,write,admin")
    create.add_argument("--profile", help="upstream profile (default: 'default', or unchanged)")
    create.add_argument("--expires-in", type=float, help="seconds until the key expires")
    create.add_argument("--rate", type=float, help="requests per second for this consumer")
    create.add_argument("--burst", type=int, help="token bucket size for this consumer")
    create.add_argument("--max-streams", type=int, help="concurrent streams for this consumer")
    actions.add_parser("list", help="consumers and key ids (never keys or hashes)")
    revoke = actions.add_parser("revoke", help="revoke one key, or every key of a consumer")
    target = revoke.add_mutually_exclusive_group(required=True)
    target.add_argument("--key-id")
    target.add_argument("--consumer")
    rotate = actions.add_parser("rotate", help="new key; the old ones stay valid for --grace")
    rotate.add_argument("--consumer", required=True)
    rotate.add_argument("--grace", type=float, default=3600.0,
                        help="seconds the consumer's current keys stay valid (default 3600)")


def _store_path(args: argparse.Namespace) -> str:
    if args.store:
        return str(args.store)
    path = load_settings(args.config).auth.store_path
    if not path:
        raise ConfigError("no store: pass --store or set auth.store_path")
    return path


def _scopes(text: str) -> frozenset[str]:
    scopes = frozenset(s.strip() for s in text.split(",") if s.strip())
    if not scopes or not scopes <= store.SCOPES:
        raise StoreError("--scopes must be a comma-separated subset of read,write,admin")
    return scopes


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    try:
        path = _store_path(args)
        if args.action == "list":
            _list(store.read(path), out)
            return 0
        with store.locked(path):
            data = store.read(path)
            now = time.time()
            if args.action == "create":
                data, secret, key_id = _create(data, args, now)
            elif args.action == "rotate":
                data, secret, key_id = _rotate(data, args, now)
            else:
                data, secret, key_id = _revoke(data, args, now), None, None
            store.write(path, data)
    except (StoreError, ConfigError) as exc:
        print(f"gateway keys: {exc}", file=err)
        return 2
    if secret is not None:
        print(f"key id {key_id} for consumer {args.consumer}; the key is shown once:", file=err)
        print(secret, file=out)
    else:
        print("revoked", file=err)
    return 0


def _create(data: store.StoreData, args: argparse.Namespace,
            now: float) -> tuple[store.StoreData, str, str]:
    name = check_name(args.consumer, "--consumer")
    if args.expires_in is not None and args.expires_in <= 0:
        raise StoreError("--expires-in must be greater than 0")
    for flag, value in (("--rate", args.rate), ("--burst", args.burst),
                        ("--max-streams", args.max_streams)):
        if value is not None and value < 0:
            raise StoreError(f"{flag} must not be negative")
    key = generate_key()
    record = KeyRecord(key.key_id, key.hash, now,
                       now + args.expires_in if args.expires_in else None)
    existing = data.consumers.get(name)
    profile = check_name(args.profile, "--profile") if args.profile else None
    consumer = Consumer(
        name, _scopes(args.scopes),
        profile or (existing.profile if existing else "default"),
        (existing.keys if existing else ()) + (record,),
        args.rate if args.rate is not None else existing.rate_per_second if existing else None,
        args.burst if args.burst is not None else existing.burst if existing else None,
        args.max_streams if args.max_streams is not None
        else existing.max_streams if existing else None,
    )
    return data.with_consumer(consumer), key.secret, key.key_id


def _rotate(data: store.StoreData, args: argparse.Namespace,
            now: float) -> tuple[store.StoreData, str, str]:
    consumer = data.consumers.get(args.consumer)
    if consumer is None:
        raise StoreError(f"no consumer {args.consumer!r}")
    if args.grace < 0:
        raise StoreError("--grace must not be negative")
    until = now + args.grace
    # Current keys end after the grace period (sooner if they were due to end sooner).
    old = tuple(
        r if not r.valid_at(now) or (r.expires is not None and r.expires <= until)
        else replace(r, expires=until)
        for r in consumer.keys
    )
    key = generate_key()
    record = KeyRecord(key.key_id, key.hash, now)
    return data.with_consumer(replace(consumer, keys=old + (record,))), key.secret, key.key_id


def _revoke(data: store.StoreData, args: argparse.Namespace, now: float) -> store.StoreData:
    if args.key_id is not None:
        if not is_key_id(args.key_id):
            raise StoreError("--key-id must be 16 lower-case hex characters")
        return store.revoke_key(data, args.key_id, now)
    consumer = data.consumers.get(args.consumer)
    if consumer is None:
        raise StoreError(f"no consumer {args.consumer!r}")
    keys = tuple(r if r.revoked is not None else replace(r, revoked=now) for r in consumer.keys)
    return data.with_consumer(replace(consumer, keys=keys))


def _list(data: store.StoreData, out: TextIO) -> None:
    now = time.time()
    print(f"{'CONSUMER':<24} {'SCOPES':<11} {'PROFILE':<12} {'KEY ID':<17} {'STATE':<9} "
          f"{'CREATED':<21} {'EXPIRES':<21} REVOKED", file=out)
    for consumer in sorted(data.consumers.values(), key=lambda c: c.id):
        scopes = ",".join(sorted(consumer.scopes)) or "-"
        for r in consumer.keys or (None,):
            if r is None:
                print(f"{consumer.id:<24} {scopes:<11} {consumer.profile:<12} (no keys)", file=out)
                continue
            print(f"{consumer.id:<24} {scopes:<11} {consumer.profile:<12} {r.key_id:<17} "
                  f"{r.state(now):<9} {_when(r.created):<21} {_when(r.expires):<21} "
                  f"{_when(r.revoked)}", file=out)
