"""The embedded cache keeps its SQLite connections open from one request to the next."""

from __future__ import annotations

from typing import Any

from django.core.cache import caches, close_caches

from config.cache import HostCache


def _connections(cache: Any) -> list[Any]:
    return [getattr(shard._local, "con", None) for shard in cache._cache._shards]


def test_the_end_of_a_request_leaves_the_cache_connections_open(settings: Any, tmp_path: Any) -> None:
    settings.CACHES = {"default": {"BACKEND": "config.cache.HostCache", "LOCATION": str(tmp_path / "cache")}}
    cache = caches["default"]
    assert isinstance(cache, HostCache)
    for n in range(32):  # reaches every shard
        cache.set(f"key-{n}", n)
    opened = _connections(cache)

    close_caches()  # what Django does when a request ends

    assert all(con is not None for con in opened)
    assert _connections(cache) == opened
    assert [cache.get(f"key-{n}") for n in range(32)] == list(range(32))
    assert _connections(cache) == opened


def test_a_cache_left_for_good_closes_its_connections(settings: Any, tmp_path: Any) -> None:
    settings.CACHES = {"default": {"BACKEND": "config.cache.HostCache", "LOCATION": str(tmp_path / "cache")}}
    cache = caches["default"]
    assert isinstance(cache, HostCache)
    cache.set("key", 1)

    cache.disconnect()

    assert all(con is None for con in _connections(cache))
    assert cache.get("key") == 1  # opened again when used
