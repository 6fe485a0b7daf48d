"""Schemathesis against the gateway's own OpenAPI document, on a loopback server: whatever it
sends (valid and invalid bodies, odd strings, wrong types), no 5xx, and every error in the
OpenAI shape. Bounded: a few dozen examples per operation.

Authentication is on: every case carries a real key made through the registry, and the
files and jobs operations are sent once more without it (401 before any body is parsed).
Job POSTs queue real jobs; no worker runs here, so nothing trains."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

from tests.gateway.conftest import Gateway, StartGateway  # noqa: E402
from tests.gateway.upstream import Upstream  # noqa: E402

MAX_EXAMPLES = 25
HEADERS: dict[str, str] = {}  # the fuzzing key's Authorization header, set by ``fuzzed``
DEEP: dict[str, Any] = {}  # a real model and file id: fuzzed job fields then reach submission
MANAGEMENT = ("/v1/files", "/v1/fine_tuning/jobs")


@pytest.fixture(scope="module")
def fuzzed(
    start_gateway: StartGateway, upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Gateway:
    """``gpt-test`` answers whatever the fuzzed body says, so a 5xx could only be ours."""
    fixed = {"provider": "openai", "model": "fixed-model", "api_key": "sk-x",
             "api_base": upstream.url + "/v1"}  # type: ignore[attr-defined]  # fmt: skip
    gw = start_gateway(routes={"gpt-test": {"deployments": [fixed]}}, auth="required")
    reg = gw.registry
    reg.prompts.push("fuzz", [{"role": "user", "content": "say {{ x }}"}])
    key = reg.keys.create("fuzz", scopes=["inference", "registry:read", "registry:write"])
    HEADERS["Authorization"] = f"Bearer {key.secret}"
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "base").mkdir()
    (folder / "base" / "config.json").write_text('{"model_type": "llama"}')
    reg.models.register("fuzz-base", "hf", path=folder / "base")
    rows = [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    ]
    (folder / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    DEEP["model"] = "registry:fuzz-base@latest"
    DEEP["training_file"] = reg.files.create(Path(folder / "t.jsonl"), purpose="fine-tune").id
    _register_classifier(reg, folder)
    return gw


def _register_classifier(reg: Any, folder: Path) -> None:
    """A scikit-learn model with an input schema: fuzzed :predict bodies then reach it."""
    pd = pytest.importorskip("pandas")
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    rows = [{"x": float(i), "c": "ab"[i % 2], "y": i % 2} for i in range(10)]
    (folder / "ref.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    reg.datasets.add("fuzz-ref", folder / "ref.jsonl")
    prepare = ColumnTransformer([("c", OneHotEncoder(), ["c"])], remainder="passthrough")
    frame = pd.DataFrame(rows)
    model = Pipeline([("p", prepare), ("m", LogisticRegression())]).fit(frame[["x", "c"]], frame.y)
    reg.models.register_sklearn("fuzz-clf", model, reference="fuzz-ref", target="y")


@pytest.fixture(scope="module")
def api_schema(fuzzed: Gateway) -> Any:
    return schemathesis.openapi.from_url(fuzzed.url + "/openapi.json")


def _check(case: Any, headers: dict[str, str] | None = None) -> Any:
    response = case.call(timeout=10, headers=HEADERS if headers is None else headers)
    assert response.status_code < 500, (case.path, case.body, response.text[:500])
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"}, response.text[:500]
        assert {"message", "type", "param", "code"} <= set(body["error"]), response.text[:500]
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return response


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
        if case.path.startswith(MANAGEMENT):
            # without the key: refused before the body is looked at, whatever it holds
            assert _check(case, headers={}).status_code == 401
        if isinstance(case.body, dict) and case.path == "/v1/fine_tuning/jobs":
            # the same fuzzed fields again, with a model and a file that exist
            case.body = {**case.body, **DEEP}
            _check(case)
        elif case.path.endswith(":predict"):
            # the same fuzzed body again, on a scikit-learn model that exists
            case.path_parameters = {"model": "fuzz-clf@latest"}
            _check(case)
        elif isinstance(case.body, dict) and case.path.startswith("/v1/") and has_model:
            # the same fuzzed fields again, on a model that exists: the whole path runs
            case.body = {**case.body, "model": "gpt-test"}
            _check(case)

    run()


def test_no_server_errors_and_openai_shaped_errors(api_schema: Any, fuzzed: Gateway) -> None:
    """Each operation of the document, driven by hypothesis with schemathesis' strategies
    (schemathesis' own pytest plugin does not load under this pytest)."""
    seen = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        name = f"{operation.method.upper()} {operation.path}"
        seen.append(name)
        _fuzz(operation, "model" in str(operation.definition.raw))
    assert {"POST /v1/chat/completions", "POST /v1/embeddings", "GET /v1/models",
            "POST /v1/models/{model}:predict"} <= set(seen)  # fmt: skip
    assert {
        "POST /v1/files", "GET /v1/files", "GET /v1/files/{file_id}/content",
        "POST /v1/fine_tuning/jobs", "POST /v1/fine_tuning/jobs/{job_id}/cancel",
        "GET /v1/fine_tuning/jobs/{job_id}/events",
    } <= set(seen)  # fmt: skip
    # the fuzzed uploads and job requests reached the registry, not only the validation
    assert len(fuzzed.registry.files.list()) > 1 and fuzzed.registry.jobs.list()
    # and the fuzzed :predict bodies reached the model, past its loading
    assert fuzzed.registry.calls.list(model="fuzz-clf@1")
