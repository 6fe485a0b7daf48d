"""Schemathesis against the gateway's own OpenAPI document, on a loopback server: whatever it
sends (valid and invalid bodies, odd strings, wrong types), no 5xx, and every error in the
OpenAI shape. Bounded: a few dozen examples per operation."""

from __future__ import annotations

from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

from tests.gateway.conftest import Gateway, StartGateway  # noqa: E402
from tests.gateway.upstream import Upstream  # noqa: E402

MAX_EXAMPLES = 25
# The jobs API (issue 5) starts real work on a POST; fuzz its reads, not its writes.
SKIP = ("POST /v1/fine_tuning/jobs", "POST /v1/fine_tuning/jobs/{job_id}/cancel")


@pytest.fixture(scope="module")
def fuzzed(start_gateway: StartGateway, upstream: Upstream) -> Gateway:
    """``gpt-test`` answers whatever the fuzzed body says, so a 5xx could only be ours."""
    fixed = {"provider": "openai", "model": "fixed-model", "api_key": "sk-x",
             "api_base": upstream.url + "/v1"}  # type: ignore[attr-defined]  # fmt: skip
    gw = start_gateway(routes={"gpt-test": {"deployments": [fixed]}})
    gw.registry.push_prompt("fuzz", [{"role": "user", "content": "say {{ x }}"}])
    return gw


@pytest.fixture(scope="module")
def api_schema(fuzzed: Gateway) -> Any:
    return schemathesis.openapi.from_url(fuzzed.url + "/openapi.json")


def _check(case: Any) -> None:
    response = case.call(timeout=10)
    assert response.status_code < 500, (case.path, case.body, response.text[:500])
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"}, response.text[:500]
        assert {"message", "type", "param", "code"} <= set(body["error"]), response.text[:500]
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def _fuzz(operation: Any, has_model: bool) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: Any) -> None:
        _check(case)
        if isinstance(case.body, dict) and case.path.startswith("/v1/") and has_model:
            # the same fuzzed fields again, on a model that exists: the whole path runs
            case.body = {**case.body, "model": "gpt-test"}
            _check(case)

    run()


def test_no_server_errors_and_openai_shaped_errors(api_schema: Any) -> None:
    """Each operation of the document, driven by hypothesis with schemathesis' strategies
    (schemathesis' own pytest plugin does not load under this pytest)."""
    seen = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        name = f"{operation.method.upper()} {operation.path}"
        if name in SKIP:
            continue
        seen.append(name)

        _fuzz(operation, "model" in str(operation.definition.raw))
    assert {"POST /v1/chat/completions", "POST /v1/embeddings", "GET /v1/models"} <= set(seen)
