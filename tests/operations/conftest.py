"""The operations' tests share the real Redis fixtures of the cache tests."""

from tests.cache.conftest import redis_address, redis_prefix, redis_url  # noqa: F401 - fixtures
