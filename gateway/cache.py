"""A small in-process TTL cache for registry look-ups on the request path.

A hit costs one dict look-up and a clock read; a miss runs the (blocking) registry query in
a worker thread, once however many requests ask for the same key meanwhile (without that,
every request in flight when an entry expires ran the query: 64 of them at concurrency 64,
every TTL). A label moved in the registry is seen once the entry expires, so the TTL
(``gateway.prompt_cache_ttl_s``, 5 s by default) bounds how stale an answer can be.
Errors are not cached: an unknown prompt is asked again next time. Expiry is read from the
``clock`` given (:mod:`gateway.clock`; the system's monotonic clock by default).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import anyio.to_thread

from lockgate.gateway.clock import SYSTEM_CLOCK, Clock

V = TypeVar("V")


class TTLCache(Generic[V]):
    def __init__(
        self, ttl_s: float, *, max_entries: int = 4096, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._ttl = ttl_s
        self._now = clock.monotonic
        self._max = max_entries
        self._entries: dict[Hashable, tuple[float, V]] = {}
        self._loading: dict[Hashable, asyncio.Future[V]] = {}

    async def get(self, key: Hashable, load: Callable[[], V]) -> V:
        hit = self._entries.get(key)
        if hit is not None and hit[0] > self._now():
            return hit[1]
        loading = self._loading.get(key)
        if loading is None:
            loading = self._loading[key] = asyncio.ensure_future(self._load(key, load))
            loading.add_done_callback(lambda done: self._loaded(key, done))
        return await asyncio.shield(loading)  # one waiter cancelled does not cancel the rest

    async def _load(self, key: Hashable, load: Callable[[], V]) -> V:
        value = await anyio.to_thread.run_sync(load)
        if len(self._entries) >= self._max:
            self._entries.clear()
        self._entries[key] = (self._now() + self._ttl, value)
        return value

    def _loaded(self, key: Hashable, done: asyncio.Future[V]) -> None:
        self._loading.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved: the waiters re-raise it

    def clear(self) -> None:
        self._entries.clear()
