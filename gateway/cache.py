"""A small in-process TTL cache for registry look-ups on the request path.

A hit costs one dict look-up and a clock read; a miss runs the (blocking) registry query in
a worker thread. A label moved in the registry is seen once the entry expires, so the TTL
(``gateway.prompt_cache_ttl_s``, 5 s by default) bounds how stale an answer can be.
Errors are not cached: an unknown prompt is asked again next time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import anyio.to_thread

V = TypeVar("V")


class TTLCache(Generic[V]):
    def __init__(self, ttl_s: float, *, max_entries: int = 4096) -> None:
        self._ttl = ttl_s
        self._max = max_entries
        self._entries: dict[Hashable, tuple[float, V]] = {}

    async def get(self, key: Hashable, load: Callable[[], V]) -> V:
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        value = await anyio.to_thread.run_sync(load)
        if len(self._entries) >= self._max:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + self._ttl, value)
        return value

    def clear(self) -> None:
        self._entries.clear()
