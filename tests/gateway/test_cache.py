"""The request path's TTL cache on a manual clock: a hit until the TTL passes, then one load
however many ask at once; errors are not kept."""

from __future__ import annotations

import asyncio
import threading

import pytest

from lockgate.gateway.cache import TTLCache
from lockgate.gateway.clock import ManualClock

TTL_S = 5.0


class Source:
    """A registry stand-in: counts its loads, and holds them until ``gate`` is set."""

    def __init__(self) -> None:
        self.value = "v1"
        self.loads = 0
        self.gate = threading.Event()
        self.gate.set()

    def load(self) -> str:
        assert self.gate.wait(5), "the test never let the load finish"
        self.loads += 1
        return self.value


async def test_an_entry_is_served_until_its_ttl_passes() -> None:
    clock, source = ManualClock(), Source()
    cache: TTLCache[str] = TTLCache(TTL_S, clock=clock)
    assert await cache.get("k", source.load) == "v1"
    source.value = "v2"  # a label moved in the registry
    clock.advance(TTL_S - 0.01)
    assert await cache.get("k", source.load) == "v1"
    assert source.loads == 1
    clock.advance(0.01)
    assert await cache.get("k", source.load) == "v2"
    assert source.loads == 2


async def test_concurrent_misses_share_one_load() -> None:
    clock, source = ManualClock(), Source()
    cache: TTLCache[str] = TTLCache(TTL_S, clock=clock)
    source.gate.clear()
    waiters = [asyncio.create_task(cache.get("k", source.load)) for _ in range(16)]
    await asyncio.sleep(0)  # every waiter is in
    source.gate.set()
    assert await asyncio.gather(*waiters) == ["v1"] * 16
    assert source.loads == 1


async def test_errors_are_not_cached() -> None:
    clock = ManualClock()
    cache: TTLCache[str] = TTLCache(TTL_S, clock=clock)
    calls: list[int] = []

    def unknown() -> str:
        calls.append(1)
        raise LookupError("no prompt 'x'")

    for _ in range(2):
        with pytest.raises(LookupError):
            await cache.get("x", unknown)
    assert len(calls) == 2  # asked again, no time having passed


async def test_the_ttl_starts_when_the_load_ends() -> None:
    """A slow load does not eat into its entry's lifetime."""
    clock, source = ManualClock(), Source()
    cache: TTLCache[str] = TTLCache(TTL_S, clock=clock)
    source.gate.clear()
    pending = asyncio.create_task(cache.get("k", source.load))
    await asyncio.sleep(0)
    clock.advance(TTL_S * 2)  # the registry was slow to answer
    source.gate.set()
    assert await pending == "v1"
    clock.advance(TTL_S - 0.01)
    assert await cache.get("k", source.load) == "v1"
    assert source.loads == 1
