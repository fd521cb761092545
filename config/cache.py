"""The embedded cache: diskcache's SQLite files, shared by every process on the host."""

from __future__ import annotations

from typing import Any

from diskcache import DjangoCache


class HostCache(DjangoCache):
    """diskcache's Django backend with its connections kept open between requests.

    Django closes every cache when a request ends. For these files that made the last connection to a shard
    checkpoint its write-ahead log, and the next request open it again and reread its settings: 3-4 ms on every
    throttled request. A connection belongs to its thread and is opened again after a fork (diskcache checks the
    process id), so keeping it is safe; Django keeps a cache object per thread, and one of a thread that has ended
    is closed when the garbage collector takes it.
    """

    def close(self, **kwargs: Any) -> None:
        return None

    def disconnect(self) -> None:
        """Close this thread's connections now (a test that swaps the cache folder leaves its cache for good)."""
        super().close()
