"""Per-key limits at the gateway: rpm, tpm, concurrency and budget answer 429 with
Retry-After in the OpenAI shape, slots come back after every call (streams included), and
with Redis the limit holds across two gateway processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import openai
import pytest

from tests.gateway.conftest import Gateway, StartGateway
from tests.gateway.test_call_records import _wait_calls
from tests.gateway.test_limits import REDIS_URL, _redis_reason
from tests.gateway.upstream import Upstream

HI = [{"role": "user", "content": "hi"}]
ROOT = Path(__file__).resolve().parents[2]


def _client(gw: Gateway, key: str | None) -> openai.OpenAI:
    assert key is not None
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)


def _ended(gw: Gateway, calls: int) -> None:
    """Wait (with a deadline) until ``calls`` calls have ended. A call's limiter release is
    queued on the gateway's loop as its span ends, so it runs before the next request is
    read: once the spans are there, its slot, tokens and cost are counted."""
    ended = gw.wait_spans(calls)
    assert len(ended) >= calls, f"{len(ended)} of {calls} calls ended"


def test_rpm_is_a_429_with_retry_after(start_gateway: StartGateway) -> None:
    gw = start_gateway()
    client = _client(gw, gw.registry.keys.create("ci", rpm=3).secret)
    for _ in range(3):
        client.chat.completions.create(model="gpt-test", messages=HI)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="gpt-test", messages=HI)
    error = info.value
    assert error.code == "rpm_limit" and "3 requests per minute" in error.message
    assert 1 <= int(error.response.headers["retry-after"]) <= 60
    assert error.response.json()["error"]["type"] == "rate_limit_error"
    records = _wait_calls(gw.registry, 4)
    assert sorted((r["status_code"], r["error_type"]) for r in records)[-1] == (429, "rpm_limit")


def test_parallel_slots_come_back_after_streams(start_gateway: StartGateway) -> None:
    gw = start_gateway()
    client = _client(gw, gw.registry.keys.create("one-at-a-time", max_parallel=1).secret)
    stream = client.chat.completions.create(model="slow", messages=HI, stream=True)
    next(iter(stream))  # the slow stream holds the slot
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="gpt-test", messages=HI)
    assert info.value.code == "parallel_limit"
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Hello world"
    _ended(gw, 2)  # the refused call, then the stream (released just after its last byte)
    assert client.chat.completions.create(model="gpt-test", messages=HI).choices
    # a client that walks away from a stream gives its slot back too
    abandoned = client.chat.completions.create(model="slow", messages=HI, stream=True)
    next(iter(abandoned))
    abandoned.close()
    deadline = time.monotonic() + 3
    while True:
        try:
            client.chat.completions.create(model="gpt-test", messages=HI)
            break
        except openai.RateLimitError:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_tpm_counts_the_tokens_of_each_call(start_gateway: StartGateway) -> None:
    gw = start_gateway()
    client = _client(gw, gw.registry.keys.create("tokens", tpm=10).secret)
    client.chat.completions.create(model="gpt-test", messages=HI)  # 9 tokens
    list(client.chat.completions.create(model="gpt-test", messages=HI, stream=True))  # 9 more
    _ended(gw, 2)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="gpt-test", messages=HI)
    assert info.value.code == "tpm_limit"


def test_budget_is_spent_from_call_costs(start_gateway: StartGateway, upstream: Upstream) -> None:
    deployment = {"provider": "openai", "model": "gpt-4o-mini",
                  "api_base": upstream.url + "/v1"}  # type: ignore[attr-defined]  # fmt: skip
    gw = start_gateway(routes={"priced": {"deployments": [deployment]}})
    assert gw.state.costs.ready.wait(30)
    key = gw.registry.keys.create("capped", budget_usd=0.000003)  # about one call
    client = _client(gw, key.secret)
    client.chat.completions.create(model="priced", messages=HI)  # $0.00000225
    _ended(gw, 1)
    client.chat.completions.create(model="priced", messages=HI)  # under budget before it
    _ended(gw, 2)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="priced", messages=HI)
    assert info.value.code == "budget_exceeded" and "budget of $3e-06" in info.value.message
    records = [r for r in _wait_calls(gw.registry, 3) if r["status_code"] == 200]
    assert all(r["key_id"] == key.id and r["cost_usd"] > 0 for r in records)
    assert gw.registry.keys.spend(key.id) == pytest.approx(2 * 0.00000225)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "lockgate.gateway.cli", "serve", "-c", str(config),
         "--port", str(port)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def _ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gateway exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"gateway did not start: {log.read_text()[-2000:]}")


@pytest.mark.slow
def test_two_replicas_share_one_limit_through_redis(
    upstream: Upstream, sqlite_template: Path, tmp_path: Path
) -> None:
    """Two `lockgate serve` processes on one Redis, hammered through one key with rpm=10:
    10 answers in all, not 10 each."""
    if reason := _redis_reason():
        pytest.skip(reason)
    import shutil

    from lockgate.registry import Registry, RegistrySettings

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(sqlite_template, data / "registry.db")
    with Registry(RegistrySettings(data_dir=data)) as registry:
        secret = registry.keys.create("shared", rpm=10).secret
    deployment = {"provider": "openai", "model": "stub-model",
                  "api_base": upstream.url + "/v1", "api_key": "sk-x"}  # type: ignore[attr-defined]  # fmt: skip
    config = tmp_path / "lockgate.yaml"
    config.write_text(json.dumps({
        "registry": {"data_dir": str(data)},
        "gateway": {"routes": {"gpt-test": {"deployments": [deployment]}},
                    "redis_url": REDIS_URL, "call_records": {"enabled": False}},
    }))  # fmt: skip
    ports = [_free_port(), _free_port()]
    logs = [tmp_path / f"gw{i}.log" for i in range(2)]
    procs = [_serve(config, port, log) for port, log in zip(ports, logs, strict=True)]
    try:
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        for url, proc, log in zip(urls, procs, logs, strict=True):
            _ready(url, proc, log)
        statuses: Counter[int] = Counter()
        lock = threading.Lock()

        def hammer(url: str) -> None:
            with httpx.Client(headers={"authorization": f"Bearer {secret}"}) as http:
                for _ in range(15):
                    status = http.post(
                        url + "/v1/chat/completions", json={"model": "gpt-test", "messages": HI}
                    ).status_code
                    with lock:
                        statuses[status] += 1

        threads = [threading.Thread(target=hammer, args=(urls[i % 2],)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses == {200: 10, 429: 50}, statuses
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(15)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once the socket closes


@pytest.mark.parametrize("failure", ["open", "closed"])
def test_a_limiter_that_cannot_be_reached_admits_or_refuses_as_configured(
    start_gateway: StartGateway, failure: str
) -> None:
    gw = start_gateway(redis_url=f"redis://127.0.0.1:{_closed_port()}/0", limiter_failure=failure)
    client = _client(gw, gw.registry.keys.create("limited", rpm=1).secret)
    if failure == "open":  # unlimited while Redis is away: rpm=1 does not hold
        for _ in range(3):
            assert client.chat.completions.create(model="gpt-test", messages=HI).choices
    else:
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(model="gpt-test", messages=HI)
        error = info.value
        assert error.status_code == 503 and error.code == "rate_limiter_unavailable"
        assert "limiter_failure: closed" in error.message
        assert error.response.headers["retry-after"] == "1"
        records = _wait_calls(gw.registry, 1)
        assert (records[0]["status_code"], records[0]["error_type"]) == (
            503,
            "rate_limiter_unavailable",
        )
    metrics = httpx.get(gw.url + "/metrics").text
    errors = [line for line in metrics.splitlines() if line.startswith("lockgate_limiter_errors")]
    assert errors and float(errors[0].split()[-1]) == (3 if failure == "open" else 1), errors
