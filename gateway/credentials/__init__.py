"""Centralized credentials: consumer keys, scopes, upstream profiles, limits, hot reload.

    keys.py           key format, generation, hashing, constant-time check
    store.py          the credentials store file (JSON, atomic writes) and its immutable snapshot
    reloader.py       file polling + SIGHUP → a new snapshot, within a stated bound
    scopes.py         which scope a method needs (read or write)
    limits.py         token buckets, concurrent streams, failed-auth per peer (local or Redis)
    authenticator.py  ``authenticate(authorization, peer, scope) -> Principal`` for every face
    cli.py            ``python -m gateway keys create|list|revoke|rotate``
"""
