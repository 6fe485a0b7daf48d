"""Sending one request to the deployments of its :class:`~gateway.routing.Plan` until one answers.

Every candidate is tried once, in the plan's order (the deployment chosen by weight, the
route's other deployments, then its fallback routes'); ``retries.max_retries`` more attempts
go round the chain again. Retrying a deployment already tried waits first: its
``Retry-After`` when it sent one (up to ``retries.max_retry_after_s``; longer means move on),
else exponential backoff with jitter. Moving on to a fresh deployment does not wait.

What is retried and how long to wait is lockgate's one retry policy,
:mod:`evals.retry`, which the eval runner's client follows too. Every call dispatched here is
inference, which is idempotent, so: connection errors, timeouts, 408, 425, 429 and 5xx are
retried; anything else (a 4xx, 409 included: the request is wrong) is answered at once. A
deployment whose circuit is open is skipped.

This all happens before the client has been sent anything: a stream counts as answered
only once its first chunk has arrived (within ``timeouts.first_token_s``).

When everything failed: a single deployment's last error is passed on as it came (the
client sees the upstream's 429 or 5xx); several deployments give a 503 naming each one's
reason.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from lockgate.evals.retry import retry_delay, retryable_status
from lockgate.gateway.breaker import CircuitBreakers
from lockgate.gateway.errors import (
    AllDeploymentsFailed,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from lockgate.gateway.providers import UpstreamCall, UpstreamResponse
from lockgate.gateway.routing import Plan, Target

R = TypeVar("R")
UpstreamFailure = UpstreamError | UpstreamUnreachable | UpstreamTimeout
CallBuilder = Callable[[Target], UpstreamCall]


@dataclass(slots=True)
class OpenStream:
    """A stream whose first chunk has arrived; ``chunks`` yields the rest; ``deadline`` (loop
    time) ends the attempt's ``timeouts.total_s``."""

    first: bytes
    chunks: AsyncGenerator[bytes, None]
    deadline: float


def retryable(exc: UpstreamFailure) -> bool:
    """By :mod:`evals.retry` for an idempotent request (every dispatched call is inference)."""
    if isinstance(exc, UpstreamError):
        return retryable_status(exc.status_code, idempotent=True)
    return True


def unhealthy(exc: UpstreamFailure) -> bool:
    """Counts towards the circuit breaker (a 429 does not: busy is not broken)."""
    return not (isinstance(exc, UpstreamError) and exc.status_code < 500)


def describe(exc: UpstreamFailure) -> str:
    if isinstance(exc, UpstreamError):
        return f"HTTP {exc.status_code}: {exc.message}"[:200]
    return exc.message[:200]


class Dispatcher:
    def __init__(self, breakers: CircuitBreakers, rng: random.Random | None = None) -> None:
        self.breakers = breakers
        self._rng = rng or random.Random()

    async def complete(
        self, plan: Plan, build: CallBuilder, failures: list[str]
    ) -> tuple[Target, UpstreamResponse]:
        async def once(target: Target) -> UpstreamResponse:
            call = build(target)
            try:
                async with asyncio.timeout(target.timeouts.total_s):
                    return await target.provider.complete(call)
            except TimeoutError as exc:
                raise UpstreamTimeout(
                    f"upstream {target.deployment.label} did not answer within "
                    f"{target.timeouts.total_s:g} s"
                ) from exc

        return await self._run(plan, once, failures)

    async def stream(
        self, plan: Plan, build: CallBuilder, failures: list[str]
    ) -> tuple[Target, OpenStream]:
        async def once(target: Target) -> OpenStream:
            call = build(target)
            timeouts = target.timeouts
            wait = min(timeouts.first_token_s, timeouts.total_s)
            deadline = asyncio.get_running_loop().time() + timeouts.total_s
            chunks: AsyncGenerator[bytes, None] | None = None
            try:
                async with asyncio.timeout(wait):
                    chunks = await target.provider.stream(call)
                    first = await anext(chunks, b"")
            except TimeoutError as exc:
                if chunks is not None:
                    await chunks.aclose()
                raise UpstreamTimeout(
                    f"upstream {target.deployment.label} sent nothing within {wait:g} s"
                ) from exc
            except BaseException:
                if chunks is not None:
                    await chunks.aclose()
                raise
            return OpenStream(first, chunks, deadline)

        return await self._run(plan, once, failures)

    async def _run(
        self, plan: Plan, once: Callable[[Target], Awaitable[R]], failures: list[str]
    ) -> tuple[Target, R]:
        candidates = plan.candidates
        policy = plan.retries
        budget = len(candidates) + policy.max_retries
        breakers = self.breakers
        tried: dict[str, int] = {}
        last: dict[str, UpstreamFailure] = {}
        reasons: dict[str, str] = {}
        waits: list[float] = []
        attempts = 0
        for index in range(len(candidates) * (policy.max_retries + 1)):
            if attempts >= budget:
                break
            target = candidates[index % len(candidates)]
            key, label = target.key, target.deployment.label
            blocked = breakers.blocked_for(key)
            if blocked is not None:
                reasons[key] = f"{label}: circuit open (retry in {blocked:.0f} s)"
                waits.append(blocked)
                continue
            previous = tried.get(key, 0)
            if previous:
                error = last.get(key)
                after = error.retry_after_s if error is not None else None
                delay = retry_delay(policy, previous, after, self._rng)
                if delay is None:
                    continue  # its Retry-After is longer than we wait: move on
                if delay > 0:
                    await asyncio.sleep(delay)
            tried[key] = previous + 1
            attempts += 1
            breakers.attempt(key)
            try:
                result = await once(target)
            except (UpstreamError, UpstreamUnreachable, UpstreamTimeout) as exc:
                if not retryable(exc):
                    breakers.success(key)  # it answered; the request was at fault
                    raise
                if unhealthy(exc):
                    breakers.failure(key)
                else:
                    breakers.release(key)
                last[key], reasons[key] = exc, f"{label}: {describe(exc)}"
                if exc.retry_after_s is not None:
                    waits.append(exc.retry_after_s)
                failures.append(reasons[key])
                continue
            except BaseException:
                breakers.release(key)
                raise
            breakers.success(key)
            return target, result
        retry_after = min(waits) if waits else None
        if len(reasons) == 1 and last:
            error = next(iter(last.values()))
            if error.retry_after_s is None and retry_after is not None:
                error.retry_after_s = retry_after
            raise error
        raise AllDeploymentsFailed(plan.route, list(reasons.values()), retry_after)
