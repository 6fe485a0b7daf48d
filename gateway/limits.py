"""Per-key rate limits, concurrency limits and budgets.

Two interchangeable backends behind the :class:`Limiter` protocol:

* :class:`MemoryLimiter` — in process, for a single gateway process;
* :class:`RedisLimiter` — shared by every replica: each decision is one Lua script run
  atomically on the Redis server, timed by the server's clock, so N replicas together
  admit no more than the limit (not N times it).

Requests per minute and tokens per minute are counted in one-second buckets over a sliding
60-second window: at most ``rpm`` requests are admitted in any 60 whole seconds. Tokens are
known only after a call, so ``tpm`` refuses new requests once the window's tokens reach the
limit. ``max_parallel`` counts in-flight requests by their ``slot``: a number the gateway
draws for each request, never one the client chose (one ``x-request-id`` sent six times holds
six slots); an entry older than ``stale_after_s`` is dropped, so a crashed replica cannot
hold slots forever. The budget compares the key's spend (initialised from its call records,
then incremented by each call's cost) with its ``budget_usd``.

:class:`MemoryLimiter` reads the time from the ``clock`` it is given (:mod:`gateway.clock`;
the system's by default), so a test passes a minute by advancing a
:class:`~gateway.clock.ManualClock`. :class:`RedisLimiter` takes none: its scripts read the
Redis server's clock, the one every replica shares.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from lockgate.gateway.clock import SYSTEM_CLOCK, Clock

WINDOW_S = 60


@dataclass(frozen=True)
class KeyLimits:
    key_id: str
    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None
    budget_usd: float | None = None

    @property
    def unlimited(self) -> bool:
        return (
            self.rpm is None
            and self.tpm is None
            and self.max_parallel is None
            and (self.budget_usd is None)
        )


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str | None = None  # "budget" | "rpm" | "tpm" | "parallel"
    retry_after_s: int | None = None
    limit: float | None = None

    def message(self, key_name: str) -> str:
        what = {
            "budget": f"budget of ${self.limit:g} is spent",
            "rpm": f"limit of {self.limit:g} requests per minute is reached",
            "tpm": f"limit of {self.limit:g} tokens per minute is reached",
            "parallel": f"limit of {self.limit:g} concurrent requests is reached",
        }[self.reason or "rpm"]
        retry = f"; retry after {self.retry_after_s} s" if self.retry_after_s else ""
        return f"key {key_name!r}: the {what}{retry}"


ALLOWED = Decision(True)
SpendLoader = Callable[[str], Awaitable[float]]
BudgetHook = Callable[[str, float, float, float], Awaitable[None]]
"""Told ``(key_id, share, spent_usd, budget_usd)`` once when a call's cost takes a key's spend
across ``share`` of its budget (the gateway writes a ``budget.threshold`` event)."""
BUDGET_THRESHOLDS = (0.5, 0.8, 1.0)


def crossed_shares(
    before: float, after: float, budget: float, shares: Sequence[float]
) -> list[float]:
    """The shares of ``budget`` that a spend going from ``before`` to ``after`` crossed."""
    return [s for s in shares if before < s * budget <= after]


class Limiter(Protocol):
    async def acquire(self, limits: KeyLimits, slot: str) -> Decision: ...

    async def release(
        self, limits: KeyLimits, slot: str, *, tokens: int, cost_usd: float
    ) -> None: ...

    async def close(self) -> None: ...


class _Window:
    """Amounts by whole second over the last :data:`WINDOW_S` seconds, with their running
    total: adding and asking cost O(1) except when the oldest second falls out."""

    __slots__ = ("buckets", "sum")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}  # seconds in the order first seen (oldest first)
        self.sum = 0

    def _expire(self, now: int) -> None:
        buckets = self.buckets
        cutoff = now - WINDOW_S
        if buckets and next(iter(buckets)) <= cutoff:
            for sec in [s for s in buckets if s <= cutoff]:
                self.sum -= buckets.pop(sec)

    def total(self, now: int) -> int:
        self._expire(now)
        return self.sum

    def oldest(self) -> int | None:
        return min(self.buckets, default=None)

    def add(self, now: int, amount: int) -> None:
        self._expire(now)
        self.buckets[now] = self.buckets.get(now, 0) + amount
        self.sum += amount


class MemoryLimiter:
    """Limits for one process (no Redis configured)."""

    def __init__(
        self, load_spend: SpendLoader, *, stale_after_s: float = 600.0, clock: Clock = SYSTEM_CLOCK,
        on_budget: BudgetHook | None = None, budget_thresholds: Sequence[float] = BUDGET_THRESHOLDS,
    ) -> None:  # fmt: skip
        self._load_spend = load_spend
        self._on_budget = on_budget
        self._shares = tuple(budget_thresholds)
        self._stale_after_s = stale_after_s
        self._now = clock.time
        self._requests: dict[str, _Window] = {}
        self._tokens: dict[str, _Window] = {}
        self._inflight: dict[str, dict[str, float]] = {}
        self._spend: dict[str, float] = {}

    async def acquire(self, limits: KeyLimits, slot: str) -> Decision:
        if limits.unlimited:
            return ALLOWED
        key = limits.key_id
        if limits.budget_usd is not None:
            if key not in self._spend:
                self._spend[key] = await self._load_spend(key)
            if self._spend[key] >= limits.budget_usd:
                return Decision(False, "budget", None, limits.budget_usd)
        now_f = self._now()
        now = int(now_f)
        requests = self._requests.get(key)
        if requests is None:
            requests = self._requests[key] = _Window()
        if limits.rpm is not None and requests.total(now) >= limits.rpm:
            return Decision(False, "rpm", _retry(requests.oldest(), now), limits.rpm)
        if limits.tpm is not None:
            tokens = self._tokens.get(key)
            used = tokens.total(now) if tokens is not None else 0
            if used >= limits.tpm:
                oldest = tokens.oldest() if tokens is not None else None
                return Decision(False, "tpm", _retry(oldest, now), limits.tpm)
        inflight = self._inflight.get(key)
        if inflight is None:
            inflight = self._inflight[key] = {}
        if limits.max_parallel is not None and len(inflight) >= limits.max_parallel:
            # entries past stale_after_s (a release that never came) only matter at the limit
            for rid in [r for r, t in inflight.items() if t < now_f - self._stale_after_s]:
                del inflight[rid]
            if len(inflight) >= limits.max_parallel:
                return Decision(False, "parallel", 1, limits.max_parallel)
        requests.add(now, 1)
        inflight[slot] = now_f
        return ALLOWED

    async def release(self, limits: KeyLimits, slot: str, *, tokens: int, cost_usd: float) -> None:
        if limits.unlimited:
            return
        key = limits.key_id
        self._inflight.get(key, {}).pop(slot, None)
        if tokens:
            window = self._tokens.get(key)
            if window is None:
                window = self._tokens[key] = _Window()
            window.add(int(self._now()), tokens)
        if cost_usd and key in self._spend:
            before = self._spend[key]
            self._spend[key] += cost_usd
            if self._on_budget is not None and limits.budget_usd:
                for share in crossed_shares(
                    before, self._spend[key], limits.budget_usd, self._shares
                ):
                    await self._on_budget(key, share, self._spend[key], limits.budget_usd)

    async def close(self) -> None:
        return None


def _retry(oldest: int | None, now: int) -> int:
    return max(1, (oldest + WINDOW_S - now) if oldest is not None else 1)


# One atomic decision. KEYS: requests hash, tokens hash, in-flight zset, spend string.
# ARGV: rpm, tpm, max_parallel, budget (-1 = none), slot, stale ms.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1])
local now_ms = now * 1000 + math.floor(tonumber(t[2]) / 1000)
local rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])
local par, budget = tonumber(ARGV[3]), tonumber(ARGV[4])
local function window(key)
  local vals = redis.call('HGETALL', key)
  local total, oldest = 0, nil
  for i = 1, #vals, 2 do
    local sec = tonumber(vals[i])
    if sec <= now - 60 then
      redis.call('HDEL', key, vals[i])
    else
      total = total + tonumber(vals[i + 1])
      if oldest == nil or sec < oldest then oldest = sec end
    end
  end
  local retry = 1
  if oldest ~= nil then retry = math.max(1, oldest + 60 - now) end
  return total, retry
end
if budget >= 0 then
  local spent = tonumber(redis.call('GET', KEYS[4]) or '0')
  if spent >= budget then return {'budget', 0} end
end
if rpm >= 0 then
  local count, retry = window(KEYS[1])
  if count >= rpm then return {'rpm', retry} end
end
if tpm >= 0 then
  local used, retry = window(KEYS[2])
  if used >= tpm then return {'tpm', retry} end
end
if par >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now_ms - tonumber(ARGV[6]))
  if redis.call('ZCARD', KEYS[3]) >= par then return {'parallel', 1} end
  redis.call('ZADD', KEYS[3], now_ms, ARGV[5])
  redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[6]))
end
redis.call('HINCRBY', KEYS[1], now, 1)
redis.call('EXPIRE', KEYS[1], 120)
return {'ok', 0}
"""

# KEYS: tokens hash, in-flight zset, spend string. ARGV: slot, tokens, cost.
_RELEASE = """
redis.call('ZREM', KEYS[2], ARGV[1])
local tokens = tonumber(ARGV[2])
if tokens > 0 then
  local now = tonumber(redis.call('TIME')[1])
  redis.call('HINCRBY', KEYS[1], now, tokens)
  redis.call('EXPIRE', KEYS[1], 120)
end
local cost = tonumber(ARGV[3])
if cost > 0 and redis.call('EXISTS', KEYS[3]) == 1 then
  return redis.call('INCRBYFLOAT', KEYS[3], ARGV[3])
end
return '-1'
"""


class RedisLimiter:
    """Limits shared by every gateway replica through one Redis."""

    def __init__(
        self,
        url: str,
        load_spend: SpendLoader,
        *,
        prefix: str = "lockgate",
        stale_after_s: float = 600.0,
        on_budget: BudgetHook | None = None,
        budget_thresholds: Sequence[float] = BUDGET_THRESHOLDS,
    ) -> None:
        self._on_budget = on_budget
        self._shares = tuple(budget_thresholds)
        from lockgate.registry._extras import require

        redis_asyncio = require("redis.asyncio", feature="Redis-backed limits", extra="redis")
        self._redis: Any = redis_asyncio.from_url(url)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._release = self._redis.register_script(_RELEASE)
        self._load_spend = load_spend
        self._prefix = prefix
        self._stale_ms = int(stale_after_s * 1000)

    def _keys(self, key_id: str) -> tuple[str, str, str, str]:
        base = f"{self._prefix}:{{{key_id}}}"  # one hash slot per key on a Redis Cluster
        return f"{base}:rpm", f"{base}:tpm", f"{base}:inflight", f"{base}:spend"

    async def acquire(self, limits: KeyLimits, slot: str) -> Decision:
        if limits.unlimited:
            return ALLOWED
        keys = self._keys(limits.key_id)
        if limits.budget_usd is not None and not await self._redis.exists(keys[3]):
            await self._redis.set(keys[3], await self._load_spend(limits.key_id), nx=True)
        reason, retry = await self._acquire(
            keys=list(keys),
            args=[
                _arg(limits.rpm), _arg(limits.tpm), _arg(limits.max_parallel),
                _arg(limits.budget_usd), slot, self._stale_ms,
            ],
        )  # fmt: skip
        reason = reason.decode() if isinstance(reason, bytes) else reason
        if reason == "ok":
            return ALLOWED
        limit = {"budget": limits.budget_usd, "rpm": limits.rpm, "tpm": limits.tpm,
                 "parallel": limits.max_parallel}[reason]  # fmt: skip
        return Decision(False, reason, int(retry) or None, limit)

    async def release(self, limits: KeyLimits, slot: str, *, tokens: int, cost_usd: float) -> None:
        if limits.unlimited:
            return
        _, tpm_key, inflight, spend = self._keys(limits.key_id)
        spent = await self._release(
            keys=[tpm_key, inflight, spend], args=[slot, int(tokens), repr(float(cost_usd))]
        )
        after = float(spent.decode() if isinstance(spent, bytes) else spent)
        if after >= 0 and self._on_budget is not None and limits.budget_usd:
            # the increment is atomic: exactly one replica sees each crossing
            for share in crossed_shares(after - cost_usd, after, limits.budget_usd, self._shares):
                await self._on_budget(limits.key_id, share, after, limits.budget_usd)

    async def close(self) -> None:
        await self._redis.aclose()


def _arg(value: float | None) -> str:
    if value is None:
        return "-1"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


__all__ = ["BudgetHook", "Decision", "KeyLimits", "Limiter", "MemoryLimiter", "RedisLimiter"]
