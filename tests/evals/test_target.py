"""Targets: one class per kind, chosen once from the suite; the in-process path; the column
of true values is the suite's ``reference`` for every kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from lockgate.evals import RunOptions, parse_suite, run_suite
from lockgate.evals.chat_target import InProcessGateway, RemoteEndpoint
from lockgate.evals.errors import EvalError, SuiteInvalid
from lockgate.evals.sklearn_target import SklearnModel
from lockgate.evals.target import TargetOptions, resolve_target
from lockgate.registry import Registry
from lockgate.registry.errors import InvalidInput
from tests.evals.conftest import arithmetic_rows, write_jsonl
from tests.evals.upstream import Upstream, UpstreamState, build_app

MESSAGES = [{"role": "user", "content": "{{ question }}"}]


def chat_suite(tmp: Path, target: dict[str, Any]) -> Any:
    return parse_suite(
        {"name": "arith", "dataset": "data.jsonl", "reference": "answer",
         "target": {"model": "stub", "messages": MESSAGES, **target},
         "scorers": ["exact_match"], "concurrency": 4},
        base_dir=tmp,
    )  # fmt: skip


def in_process(state: UpstreamState) -> httpx.AsyncBaseTransport:
    return httpx.ASGITransport(app=build_app(state))


def test_the_kind_chooses_the_class_once(registry: Registry, tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    remote = resolve_target(chat_suite(tmp_path, {"base_url": "http://127.0.0.1:9/v1"}), None)
    assert isinstance(remote, RemoteEndpoint) and remote.name == "stub"
    local = resolve_target(
        chat_suite(tmp_path, {}),
        None,
        TargetOptions(in_process=lambda: in_process(UpstreamState())),
    )
    assert isinstance(local, InProcessGateway) and local.epochs == 1
    registry.models.register_sklearn("clf", LogisticRegression().fit([[0.0], [1.0]], [0, 1]))
    suite = parse_suite(
        {"name": "clf", "dataset": "d.jsonl", "reference": "y", "scorers": ["accuracy"],
         "target": {"kind": "sklearn", "model": "registry:clf@1", "features": ["x"]},
         "epochs": 3},
        base_dir=tmp_path,
    )  # fmt: skip
    model = resolve_target(suite, registry)
    assert isinstance(model, SklearnModel) and model.name == "registry:clf@1"
    assert model.epochs == 1  # deterministic: one prediction per example whatever epochs says
    assert model.open() is None  # no calls: model-based scorers have nothing to call through


def test_the_in_process_gateway_is_reached_without_a_server(
    registry: Registry, tmp_path: Path
) -> None:
    write_jsonl(tmp_path / "data.jsonl", arithmetic_rows(6))
    state = UpstreamState()
    options = RunOptions(cache_dir=tmp_path / "c", transport_factory=lambda: in_process(state))
    run = run_suite(chat_suite(tmp_path, {}), registry=registry, options=options)
    assert run.summaries["exact_match"].value == 1.0 and run.calls == 6
    assert state.chat_calls == 6


def test_no_base_url_and_no_in_process_gateway_stops_before_the_run_is_recorded(
    registry: Registry, tmp_path: Path
) -> None:
    write_jsonl(tmp_path / "data.jsonl", arithmetic_rows(3))
    with pytest.raises(EvalError, match=r"target\.base_url is not set"):
        run_suite(chat_suite(tmp_path, {}), registry=registry,
                  options=RunOptions(cache_dir=tmp_path / "c"))  # fmt: skip
    assert registry.runs.list(kind="eval") == []


def test_a_remote_endpoint_sends_through_an_injected_transport(
    upstream: Upstream, tmp_path: Path
) -> None:
    write_jsonl(tmp_path / "data.jsonl", arithmetic_rows(4))
    sent: list[str] = []

    class Recording(httpx.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            sent.append(str(request.url))
            return await super().handle_async_request(request)

    options = RunOptions(cache_dir=tmp_path / "c", network_transport=Recording)
    run = run_suite(chat_suite(tmp_path, {"base_url": upstream.base_url}), options=options)
    assert run.summaries["exact_match"].value == 1.0
    assert sent == [f"{upstream.base_url}/chat/completions"] * 4


def test_sklearn_true_values_are_the_suite_reference(tmp_path: Path) -> None:
    target = {"kind": "sklearn", "model": "registry:churn@candidate", "features": ["tenure"]}
    base = {"name": "churn", "dataset": "d.jsonl", "scorers": ["accuracy"], "target": target}
    with pytest.raises(SuiteInvalid, match="needs `reference`"):
        parse_suite(base, base_dir=tmp_path)
    old = {**base, "target": {**target, "label": "churned"}}
    with pytest.raises(SuiteInvalid, match=r"target.label: was renamed.*`reference: churned`"):
        parse_suite(old, base_dir=tmp_path)
    assert parse_suite({**base, "reference": "churned"}, base_dir=tmp_path).reference == "churned"


def test_bad_input_is_one_kind_of_error_across_packages() -> None:
    from lockgate.evals.errors import ColumnMissing, ResultsInvalid
    from lockgate.finetune.errors import SpecInvalid, TrainingDataInvalid
    from lockgate.gateway.errors import InvalidRequest

    kinds = (SuiteInvalid, ColumnMissing, ResultsInvalid, SpecInvalid, TrainingDataInvalid,
             InvalidRequest)  # fmt: skip
    for kind in kinds:
        assert issubclass(kind, InvalidInput) and kind.status_code == 400 and kind.exit_code == 2
