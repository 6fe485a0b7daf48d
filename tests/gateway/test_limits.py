"""Per-key limits and budgets, in process and shared through the machine's Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from lockgate.gateway.clock import ManualClock
from lockgate.gateway.limits import (
    KeyLimits,
    Limiter,
    MemoryLimiter,
    RedisLimiter,
    SpendLoader,
)

REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_reason() -> str | None:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
        return None
    except Exception as exc:  # any failure: skip and say why
        return f"Redis not reachable at {REDIS_URL}: {exc}"


async def _spend_zero(key_id: str) -> float:
    return 0.0


class Limiters:
    """Makes limiters of one kind. The in-process ones read :attr:`clock`, which the test
    advances; the Redis ones read the Redis server's clock (every replica's), which it
    cannot, so a test waits for that one by polling."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.clock = ManualClock()
        self.made: list[Limiter] = []
        self._prefix = f"lockgate-test-{uuid.uuid4().hex[:8]}"

    def __call__(
        self, load_spend: SpendLoader = _spend_zero, stale_after_s: float = 600.0
    ) -> Limiter:
        limiter: Limiter
        if self.kind == "memory":
            limiter = MemoryLimiter(load_spend, stale_after_s=stale_after_s, clock=self.clock)
        else:
            limiter = RedisLimiter(
                REDIS_URL, load_spend, prefix=self._prefix, stale_after_s=stale_after_s
            )
        self.made.append(limiter)
        return limiter


@pytest.fixture(params=["memory", "redis"])
async def make_limiter(request: pytest.FixtureRequest) -> AsyncIterator[Limiters]:
    if request.param == "redis" and (reason := _redis_reason()):
        pytest.skip(reason)
    limiters = Limiters(request.param)
    yield limiters
    for limiter in limiters.made:
        await limiter.close()


def _key(**limits: float) -> KeyLimits:
    return KeyLimits(key_id=uuid.uuid4().hex, **limits)  # type: ignore[arg-type]


async def test_rpm_admits_exactly_the_limit_with_retry_after(make_limiter: Limiters) -> None:
    limiter, key = make_limiter(), _key(rpm=5)
    decisions = [await limiter.acquire(key, f"r{i}") for i in range(8)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 3
    refused = decisions[-1]
    assert refused.reason == "rpm" and 1 <= (refused.retry_after_s or 0) <= 60
    assert "limit of 5 requests per minute" in refused.message("ci")


async def test_two_replicas_share_one_limit() -> None:
    """Two limiters on one Redis (two gateway replicas) admit the limit once, not twice."""
    if reason := _redis_reason():
        pytest.skip(reason)
    prefix = f"lockgate-test-{uuid.uuid4().hex[:8]}"
    a = RedisLimiter(REDIS_URL, _spend_zero, prefix=prefix)
    b = RedisLimiter(REDIS_URL, _spend_zero, prefix=prefix)
    key = _key(rpm=10)
    results = await asyncio.gather(*[(a if i % 2 else b).acquire(key, f"r{i}") for i in range(40)])
    assert sum(d.allowed for d in results) == 10
    await a.close()
    await b.close()


async def test_tokens_per_minute(make_limiter: Limiters) -> None:
    limiter, key = make_limiter(), _key(tpm=250)
    for i in range(3):
        assert (await limiter.acquire(key, f"r{i}")).allowed
        await limiter.release(key, f"r{i}", tokens=100, cost_usd=0.0)
    refused = await limiter.acquire(key, "r3")
    assert (refused.allowed, refused.reason) == (False, "tpm")


async def test_concurrency_slots_free_on_release(make_limiter: Limiters) -> None:
    limiter, key = make_limiter(), _key(max_parallel=2)
    assert (await limiter.acquire(key, "a")).allowed
    assert (await limiter.acquire(key, "b")).allowed
    third = await limiter.acquire(key, "c")
    assert (third.allowed, third.reason) == (False, "parallel")
    await limiter.release(key, "a", tokens=0, cost_usd=0.0)
    assert (await limiter.acquire(key, "c")).allowed


async def test_stale_slots_expire(make_limiter: Limiters) -> None:
    limiter, key = make_limiter(stale_after_s=0.2), _key(max_parallel=1)
    assert (await limiter.acquire(key, "crashed")).allowed
    assert not (await limiter.acquire(key, "next")).allowed
    if make_limiter.kind == "memory":
        make_limiter.clock.advance(0.15)
        assert not (await limiter.acquire(key, "next")).allowed  # not stale yet
        make_limiter.clock.advance(0.1)
        assert (await limiter.acquire(key, "next")).allowed
        return
    deadline = time.monotonic() + 5  # the Redis server's clock: wait for it
    while not (await limiter.acquire(key, "next")).allowed:
        assert time.monotonic() < deadline, "a stale slot was never dropped"
        await asyncio.sleep(0.02)


async def test_budget_starts_from_recorded_spend(make_limiter: Limiters) -> None:
    loaded: list[str] = []

    async def spend(key_id: str) -> float:
        loaded.append(key_id)
        return 0.9

    limiter, key = make_limiter(load_spend=spend), _key(budget_usd=1.0)
    assert (await limiter.acquire(key, "a")).allowed
    await limiter.release(key, "a", tokens=10, cost_usd=0.15)
    refused = await limiter.acquire(key, "b")
    assert (refused.allowed, refused.reason) == (False, "budget")
    assert "budget of $1 is spent" in refused.message("ci")
    assert loaded == [key.key_id]  # read from the records once, then counted


async def test_unlimited_keys_cost_nothing(make_limiter: Limiters) -> None:
    limiter = make_limiter()
    key = _key()
    assert all([(await limiter.acquire(key, f"r{i}")).allowed for i in range(100)])


# -- the sliding window, in process: a minute passes on the manual clock ------------------------


async def test_the_rpm_window_slides_after_sixty_seconds() -> None:
    clock = ManualClock()
    limiter, key = MemoryLimiter(_spend_zero, clock=clock), _key(rpm=2)
    assert (await limiter.acquire(key, "a")).allowed
    clock.advance(30)
    assert (await limiter.acquire(key, "b")).allowed
    refused = await limiter.acquire(key, "c")
    assert (refused.allowed, refused.reason, refused.retry_after_s) == (False, "rpm", 30)
    clock.advance(29)
    assert (await limiter.acquire(key, "c")).retry_after_s == 1  # "a" is 59 s old
    clock.advance(1)
    assert (await limiter.acquire(key, "c")).allowed  # "a" has left the window
    refused = await limiter.acquire(key, "d")  # "b" and "c" are in it
    assert (refused.allowed, refused.retry_after_s) == (False, 30)


async def test_tokens_leave_the_window_after_sixty_seconds() -> None:
    clock = ManualClock()
    limiter, key = MemoryLimiter(_spend_zero, clock=clock), _key(tpm=100)
    assert (await limiter.acquire(key, "a")).allowed
    clock.advance(10)
    await limiter.release(key, "a", tokens=100, cost_usd=0.0)  # counted when the call ends
    clock.advance(49)
    refused = await limiter.acquire(key, "b")  # 60 s after the tokens came, not the request
    assert (refused.allowed, refused.reason, refused.retry_after_s) == (False, "tpm", 11)
    clock.advance(10)
    assert (await limiter.acquire(key, "b")).retry_after_s == 1
    clock.advance(1)
    assert (await limiter.acquire(key, "b")).allowed


async def test_a_budget_does_not_refill_with_time() -> None:
    clock = ManualClock()
    limiter, key = MemoryLimiter(_spend_zero, clock=clock), _key(budget_usd=1.0)
    assert (await limiter.acquire(key, "a")).allowed
    await limiter.release(key, "a", tokens=0, cost_usd=1.0)
    clock.advance(86_400)
    refused = await limiter.acquire(key, "b")
    assert (refused.allowed, refused.reason) == (False, "budget")
