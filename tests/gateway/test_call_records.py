"""Call records land in the registry for every request, failures included (SQLite and
PostgreSQL); the writer never blocks a request when the database is slow or down."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import openai
import pytest

from gateway.call_records import CallRecorder
from gateway.metrics import Metrics
from gateway.settings import CallRecordSettings
from registry import Registry, RegistrySettings
from tests.gateway.conftest import StartGateway


def _wait_calls(registry: Registry, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        calls = registry.list_calls(limit=100)
        if len(calls) >= count or time.monotonic() > deadline:
            return calls
        time.sleep(0.05)


def test_every_request_is_recorded(
    start_gateway: StartGateway, registry_settings: RegistrySettings
) -> None:
    gw = start_gateway(registry_settings)
    gw.registry.push_prompt("greet", [{"role": "user", "content": "hi {{ name }}"}])
    client = gw.client()
    client.chat.completions.create(
        model="gpt-test",
        messages=[],
        extra_body={"prompt": {"name": "greet", "variables": {"name": "A"}}},
        extra_headers={"x-request-id": "req-1"},
    )
    list(client.chat.completions.create(model="gpt-test", messages=[], stream=True))
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="fail-429", messages=[])
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[])
    client.embeddings.create(model="gpt-test", input="x")
    calls = {c["request_id"]: c for c in _wait_calls(gw.registry, 5)}
    assert len(calls) == 5
    first = calls["req-1"]
    assert first["operation"] == "chat" and first["route"] == "gpt-test"
    assert (first["model"], first["provider"], first["deployment"]) == (
        "stub-model",
        "openai",
        "openai/stub-model",
    )
    assert (first["prompt_name"], first["prompt_version"]) == ("greet", 1)
    assert (first["status_code"], first["error_type"], first["stream"]) == (200, None, False)
    assert (first["input_tokens"], first["output_tokens"]) == (7, 2)
    assert first["latency_ms"] > 0 and first["trace_id"] and len(first["trace_id"]) == 32
    by_status = sorted((c["status_code"], c["error_type"], c["stream"]) for c in calls.values())
    assert by_status == [
        (200, None, False),
        (200, None, False),
        (200, None, True),
        (404, "model_not_found", False),
        (429, "429", False),
    ]
    streamed = next(c for c in calls.values() if c["stream"])
    assert streamed["ttft_ms"] is not None and streamed["output_tokens"] == 2
    deadline = time.monotonic() + 5  # the counter moves just after the rows commit
    while "lockgate_call_records_written_total 5.0" not in httpx.get(gw.url + "/metrics").text:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_a_known_model_gets_a_cost(start_gateway: StartGateway, upstream: Any) -> None:
    deployment = {"provider": "openai", "model": "gpt-4o-mini", "api_base": upstream.url + "/v1"}
    gw = start_gateway(routes={"priced": {"deployments": [deployment]}})
    assert gw.state.costs.ready.wait(30)
    gw.client().chat.completions.create(model="priced", messages=[])
    (call,) = _wait_calls(gw.registry, 1)
    assert call["model"] == "gpt-4o-mini"
    assert call["cost_usd"] == pytest.approx(7 * 0.15e-6 + 2 * 0.6e-6)


class _SlowSink:
    def __init__(self, delay: float, fail: bool = False) -> None:
        self.delay, self.fail, self.batches = delay, fail, 0

    def record_calls(self, records: Sequence[Mapping[str, Any]]) -> int:
        time.sleep(self.delay)
        self.batches += 1
        if self.fail:
            raise ConnectionError("database is down")
        return len(records)


def _value(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_a_slow_database_never_blocks_and_drops_are_counted() -> None:
    metrics = Metrics()
    settings = CallRecordSettings(queue_size=5, batch_size=2, flush_interval_s=0.01)
    recorder = CallRecorder(_SlowSink(0.5), settings, metrics)
    recorder.start()
    started = time.perf_counter()
    for i in range(50):
        recorder.submit({"request_id": str(i)})
    assert time.perf_counter() - started < 0.05
    dropped = _value(metrics, "lockgate_call_records_dropped_total", reason="queue_full")
    assert dropped >= 40
    recorder.close(timeout_s=0.1)


def test_a_failing_database_is_counted_and_survived() -> None:
    metrics = Metrics()
    sink = _SlowSink(0.0, fail=True)
    recorder = CallRecorder(sink, CallRecordSettings(flush_interval_s=0.01), metrics)
    recorder.start()
    for i in range(3):
        recorder.submit({"request_id": str(i)})
    recorder.close()
    assert sink.batches >= 1
    assert _value(metrics, "lockgate_call_records_dropped_total", reason="write_failed") == 3
