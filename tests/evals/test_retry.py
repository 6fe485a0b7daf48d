"""The one retry policy (evals.retry), as the eval client follows it against a real upstream
on loopback, and as the gateway's dispatch decides with it."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest

from lockgate.evals.client import CallFailed, TargetClient
from lockgate.evals.retry import RetryTiming, retry_delay, retryable_status
from tests.evals.upstream import Fault, Upstream

CHAT = {"model": "stub", "messages": [{"role": "user", "content": "What is 2+3?"}]}
FAST = RetryTiming(backoff_base_s=0.01, backoff_max_s=0.05, max_retry_after_s=2.0)


def call(upstream: Upstream, path: str = "/chat/completions", **options: Any) -> Any:
    settings: dict[str, Any] = {"timeout": 5.0, "retries": 2, "timing": FAST, **options}

    async def go() -> Any:
        client = TargetClient(upstream.base_url, concurrency=4, **settings)
        try:
            return await client.call(path, CHAT)
        finally:
            await client.close()

    return asyncio.run(go())


def test_retry_after_is_honoured(upstream: Upstream) -> None:
    upstream.state.faults.append(Fault(429, {"retry-after": "0.5"}))
    result = call(upstream)
    assert result.data["choices"][0]["message"]["content"] == "5"
    first, second = upstream.state.arrivals
    assert second - first >= 0.5  # backoff alone would have waited under 0.05 s


def test_retry_after_in_milliseconds_is_honoured(upstream: Upstream) -> None:
    upstream.state.faults.append(Fault(503, {"retry-after-ms": "400"}))
    call(upstream)
    first, second = upstream.state.arrivals
    assert second - first >= 0.4


def test_a_retry_after_longer_than_an_eval_waits_fails_the_call_at_once(
    upstream: Upstream,
) -> None:
    upstream.state.faults.append(Fault(429, {"retry-after": "120"}))
    started = time.monotonic()
    with pytest.raises(CallFailed, match=r"retried after 120 s, longer than an eval waits"):
        call(upstream)
    assert time.monotonic() - started < 2 and len(upstream.state.arrivals) == 1


@pytest.mark.parametrize("status", [400, 401, 404, 409, 422])
def test_a_4xx_is_never_retried(upstream: Upstream, status: int) -> None:
    upstream.state.faults.append(Fault(status))
    with pytest.raises(CallFailed, match=f"HTTP {status}"):
        call(upstream)
    assert len(upstream.state.arrivals) == 1


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_busy_or_failing_answers_to_inference_are_retried(upstream: Upstream, status: int) -> None:
    upstream.state.faults.append(Fault(status))
    assert call(upstream).data["choices"]
    assert len(upstream.state.arrivals) == 2


def test_retries_run_out(upstream: Upstream) -> None:
    upstream.state.faults.extend([Fault(502)] * 3)
    with pytest.raises(CallFailed, match=r"after 3 attempt\(s\): HTTP 502"):
        call(upstream)
    assert len(upstream.state.arrivals) == 3


def test_a_timed_out_inference_call_is_sent_again(upstream: Upstream) -> None:
    upstream.state.faults.append(Fault(stall=1.5))
    assert call(upstream, timeout=0.5).data["choices"]
    assert len(upstream.state.arrivals) == 2


def test_a_timed_out_call_that_is_not_inference_is_not_sent_again(upstream: Upstream) -> None:
    upstream.state.faults.append(Fault(stall=1.5))
    with pytest.raises(CallFailed, match=r"not retried: /files is not idempotent"):
        call(upstream, "/files", timeout=0.5)
    assert len(upstream.state.arrivals) == 1


@pytest.mark.parametrize(("status", "attempts"), [(500, 1), (502, 1), (503, 2), (429, 2)])
def test_a_call_that_is_not_inference_is_retried_only_when_it_was_not_done(
    upstream: Upstream, status: int, attempts: int
) -> None:
    upstream.state.faults.append(Fault(status))
    if attempts == 1:
        with pytest.raises(CallFailed, match=f"HTTP {status}"):
            call(upstream, "/files")
    else:
        assert call(upstream, "/files").data["object"] == "file"
    assert len(upstream.state.arrivals) == attempts


def test_backoff_is_exponential_with_jitter() -> None:
    timing = RetryTiming(backoff_base_s=0.2, backoff_max_s=1.0, max_retry_after_s=10.0)
    rng = random.Random(7)
    for retry, ceiling in [(1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0), (9, 1.0)]:
        waits = [retry_delay(timing, retry, None, rng) for _ in range(50)]
        assert all(w is not None and ceiling / 2 <= w <= ceiling for w in waits)
        assert len(set(waits)) == 50  # jittered: no two clients wait alike
    assert retry_delay(timing, 1, 3.0, rng) == 3.0  # Retry-After wins over backoff
    assert retry_delay(timing, 1, 11.0, rng) is None  # longer than we wait


def test_the_gateway_dispatch_decides_by_the_same_policy() -> None:
    from lockgate.gateway.dispatch import retryable
    from lockgate.gateway.errors import UpstreamError

    for status in (400, 401, 403, 404, 408, 409, 413, 422, 425, 429, 500, 502, 503, 504):
        assert retryable(UpstreamError(status, "x")) == retryable_status(status, idempotent=True)
    assert not retryable(UpstreamError(409, "conflict"))
