"""``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

import contextlib
import time

import httpx
import openai

from tests.gateway.conftest import Gateway


def test_health_and_readiness(gateway: Gateway) -> None:
    assert httpx.get(gateway.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(gateway.url + "/readyz")
    deadline = time.monotonic() + 300  # routes through litellm: ready once it is loaded
    while ready.json() == {"status": "unavailable", "reason": "warming up: litellm"}:
        assert time.monotonic() < deadline
        time.sleep(0.1)
        ready = httpx.get(gateway.url + "/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}


def test_metrics(gateway: Gateway, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="gpt-test", messages=[])
    list(client.chat.completions.create(model="gpt-test", messages=[], stream=True))
    with contextlib.suppress(openai.RateLimitError):
        client.chat.completions.create(model="fail-429", messages=[])
    text = httpx.get(gateway.url + "/metrics").text
    assert 'lockgate_requests_total{operation="chat",route="gpt-test",status="200"}' in text
    assert 'lockgate_request_duration_seconds_count{operation="chat",route="gpt-test"}' in text
    assert 'lockgate_time_to_first_token_seconds_count{operation="chat",route="gpt-test"}' in text
    assert 'lockgate_tokens_total{operation="chat",route="gpt-test",type="output"}' in text
    assert (
        'lockgate_errors_total{error_type="429",operation="chat",route="fail-429",status="429"}'
        in text
    )
    assert 'lockgate_call_records_dropped_total{reason="queue_full"} 0.0' in text
    assert "lockgate_call_records_queue_depth" in text
