"""The operations' tests share the real Redis fixtures of the cache tests."""

from tests.cache.conftest import (  # noqa: F401 - fixtures
    redis_address,
    redis_prefix,
    redis_sync,
    redis_url,
)
