"""The runner's guarantees: checks before any call, cache hits, resume, errors, targets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lockgate.evals import RunOptions, parse_suite, run_suite
from lockgate.evals.errors import ColumnMissing, TargetFailed
from lockgate.registry import Registry
from lockgate.registry.errors import DatasetFormatError
from tests.evals.conftest import arithmetic_rows, run_cli, write_jsonl
from tests.evals.upstream import Upstream

MESSAGES = [{"role": "user", "content": "{{ question }}"}]


def suite_for(tmp: Path, base_url: str, **extra: Any) -> Any:
    data: dict[str, Any] = {
        "name": "arith",
        "dataset": "data.jsonl",
        "target": {"base_url": base_url, "model": "stub", "messages": MESSAGES},
        "reference": "answer",
        "scorers": ["exact_match"],
        "concurrency": 4,
        **extra,
    }
    return parse_suite(data, base_dir=tmp)


def test_malformed_row_is_reported_with_its_row_number(
    registry: Registry, upstream: Upstream, tmp_path: Path
) -> None:
    rows = [json.dumps(r) for r in arithmetic_rows(5)]
    rows[2] = '{"question": "What is 1+1?", "answer": '
    (tmp_path / "data.jsonl").write_text("\n".join(rows) + "\n")
    suite = tmp_path / "s.yaml"
    suite.write_text(
        json.dumps(
            {
                "name": "arith",
                "dataset": "data.jsonl",
                "reference": "answer",
                "target": {"base_url": upstream.base_url, "model": "stub", "messages": MESSAGES},
                "scorers": ["exact_match"],
            }
        )
    )
    res = run_cli(registry, ["run", str(suite), "--cache-dir", str(tmp_path / "c")])
    assert res.exit_code == 2
    assert "data.jsonl, line 3: not valid JSON" in res.error
    assert upstream.state.chat_calls == 0
    with pytest.raises(DatasetFormatError) as info:
        run_suite(suite_for(tmp_path, upstream.base_url))
    assert info.value.line == 3


def test_missing_column_fails_before_any_model_call(upstream: Upstream, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data.jsonl", arithmetic_rows(5))
    suite = suite_for(
        tmp_path,
        upstream.base_url,
        target={
            "base_url": upstream.base_url,
            "model": "stub",
            "messages": MESSAGES,
            "variables": {"question": "prompt"},
        },
    )
    with pytest.raises(
        ColumnMissing, match=r"target\.variables\.question names the column 'prompt'"
    ):
        run_suite(suite, options=RunOptions(cache_dir=tmp_path / "c"))
    with pytest.raises(ColumnMissing, match="reference names the column 'gold'"):
        run_suite(
            suite_for(tmp_path, upstream.base_url, reference="gold"),
            options=RunOptions(cache_dir=tmp_path / "c"),
        )
    assert upstream.state.requests == []


def test_unreachable_target_exits_2_with_the_url(registry: Registry, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data.jsonl", arithmetic_rows(3))
    url = "http://127.0.0.1:9/v1"
    suite = tmp_path / "s.yaml"
    suite.write_text(
        json.dumps(
            {
                "name": "arith",
                "dataset": "data.jsonl",
                "retries": 1,
                "reference": "answer",
                "target": {"base_url": url, "model": "stub", "messages": MESSAGES},
                "scorers": ["exact_match"],
            }
        )
    )
    res = run_cli(registry, ["run", str(suite), "--cache-dir", str(tmp_path / "c")])
    assert res.exit_code == 2
    assert url in res.error and "cannot reach" in res.error
    failed = registry.runs.list(kind="eval")[0]
    assert failed.status == "failed" and url in (failed.error or "")


def test_rerun_is_answered_from_the_cache(upstream: Upstream, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data.jsonl", arithmetic_rows(20))
    suite = suite_for(tmp_path, upstream.base_url, epochs=2)
    opts = RunOptions(cache_dir=tmp_path / "c")
    first = run_suite(suite, options=opts)
    assert (first.calls, first.cache_hits) == (40, 0)
    assert upstream.state.chat_calls == 40
    again = run_suite(suite, options=opts)
    assert (again.calls, again.cache_hits) == (0, 40)
    assert upstream.state.chat_calls == 40
    assert again.summaries["exact_match"].value == first.summaries["exact_match"].value == 1.0
    assert all(r.cached for r in again.results)
    # a changed parameter is a different target: no hits
    changed = suite_for(
        tmp_path,
        upstream.base_url,
        epochs=2,
        target={
            "base_url": upstream.base_url,
            "model": "stub",
            "messages": MESSAGES,
            "params": {"temperature": 0.5},
        },
    )
    third = run_suite(changed, options=opts)
    assert (third.calls, third.cache_hits) == (40, 0)


def test_interrupted_run_resumes_where_it_stopped(
    registry: Registry, upstream: Upstream, tmp_path: Path
) -> None:
    write_jsonl(tmp_path / "data.jsonl", arithmetic_rows(25))
    suite = suite_for(tmp_path, upstream.base_url, retries=0, concurrency=1)
    opts = RunOptions(cache_dir=tmp_path / "c")
    upstream.state.fail_after = 10
    with pytest.raises(TargetFailed, match="rerun to resume"):
        run_suite(suite, registry=registry, options=opts)
    assert upstream.state.chat_calls == 11  # ten answered, the eleventh failed: stop
    assert registry.runs.list(kind="eval")[0].status == "failed"
    upstream.state.reset()
    run = run_suite(suite, registry=registry, options=opts)
    assert upstream.state.chat_calls == 15  # only the examples that had not finished
    assert run.resumed == 10 and run.calls == 15
    assert sorted(r.index for r in run.results) == list(range(25))
    assert run.summaries["exact_match"].value == 1.0
    assert registry.runs.get(run.run_id or "").status == "succeeded"


@pytest.mark.parametrize(("on_error", "value", "n"), [("skip", 1.0, 6), ("score_zero", 0.6, 10)])
def test_on_error(upstream: Upstream, tmp_path: Path, on_error: str, value: float, n: int) -> None:
    write_jsonl(tmp_path / "data.jsonl", arithmetic_rows(10))
    upstream.state.fail_after = 6
    run = run_suite(
        suite_for(tmp_path, upstream.base_url, retries=0, concurrency=1, on_error=on_error),
        options=RunOptions(cache_dir=tmp_path / "c"),
    )
    assert run.errors == 4
    assert run.summaries["exact_match"].value == pytest.approx(value)
    assert run.summaries["exact_match"].n == n


def test_model_based_scorers_call_the_target(
    registry: Registry, upstream: Upstream, tmp_path: Path
) -> None:
    write_jsonl(tmp_path / "data.jsonl", arithmetic_rows(4))
    registry.prompts.push(
        "rubric",
        [
            {"role": "system", "content": "You are a JUDGE. Score 1-5 as JSON."},
            {"role": "user", "content": "Q: {{ input }}\nA: {{ output }}\nGold: {{ reference }}"},
        ],
        {"model": "judge-model"},
    )
    registry.labels.set("prompt", "rubric", "production", 1)
    suite = suite_for(
        tmp_path,
        upstream.base_url,
        scorers=[
            {
                "llm_judge": {
                    "prompt": "rubric@production",
                    "scale": [1, 5],
                    "variables": {
                        "input": "question",
                        "output": "output",
                        "reference": "reference",
                    },
                }
            },
            {"embedding_similarity": {"model": "embed"}},
            {"cost": {"input_per_1m": 1000, "output_per_1m": 2000}},
        ],
    )
    run = run_suite(suite, registry=registry, options=RunOptions(cache_dir=tmp_path / "c"))
    assert run.summaries["llm_judge"].value == pytest.approx(0.75)
    detail = run.results[0].scores["llm_judge"].detail or {}
    assert detail["raw"] == '{"score": 4, "why": "mostly right"}' and detail["raw_score"] == 4
    judged = [r for r in upstream.state.requests if r.get("model") == "judge-model"]
    assert len(judged) == 4 and "Gold: " in judged[0]["messages"][1]["content"]
    assert run.summaries["embedding_similarity"].value == pytest.approx(0.0)  # digits only
    assert run.summaries["cost"].value == pytest.approx((10 * 1000 + 2 * 2000) / 1e6)


def test_sklearn_target_is_predicted_in_process(registry: Registry, tmp_path: Path) -> None:
    from sklearn import metrics
    from sklearn.linear_model import LogisticRegression

    rows = [
        {"x1": i / 10, "x2": (i * 7 % 5) / 5, "y": int(i % 3 == 0 or i > 30)} for i in range(40)
    ]
    x = [[r["x1"], r["x2"]] for r in rows]
    y = [r["y"] for r in rows]
    model = LogisticRegression().fit(x, y)
    registry.models.register_sklearn("clf", model)
    registry.labels.set("model", "clf", "production", 1)
    write_jsonl(tmp_path / "data.jsonl", rows)
    suite = parse_suite(
        {
            "name": "clf-eval",
            "dataset": "data.jsonl",
            "target": {
                "kind": "sklearn",
                "model": "registry:clf@production",
                "features": ["x1", "x2"],
            },
            "reference": "y",
            "scorers": ["accuracy", "f1", "roc_auc", "log_loss"],
        },
        base_dir=tmp_path,
    )
    run = run_suite(suite, registry=registry, options=RunOptions(cache_dir=tmp_path / "c"))
    pred, proba = model.predict(x), model.predict_proba(x)[:, 1]
    assert run.summaries["accuracy"].value == pytest.approx(metrics.accuracy_score(y, pred))
    assert run.summaries["f1"].value == pytest.approx(metrics.f1_score(y, pred))
    assert run.summaries["roc_auc"].value == pytest.approx(metrics.roc_auc_score(y, proba))
    assert run.summaries["log_loss"].value == pytest.approx(
        metrics.log_loss(y, model.predict_proba(x))
    )
    assert ("model", "clf@1") in {(e.subject_type, e.subject_ref) for e in run.lineage}


def test_registered_dataset_is_fetched_and_versioned(
    registry: Registry, upstream: Upstream, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "source.jsonl", arithmetic_rows(6))
    info, _ = registry.datasets.add("arith-set", path)
    suite = suite_for(tmp_path, upstream.base_url, dataset="registry:arith-set@1")
    run = run_suite(suite, registry=registry, options=RunOptions(cache_dir=tmp_path / "c"))
    assert run.dataset_digest == info.digest and len(run.results) == 6
    assert ("dataset", "arith-set@1") in {(e.subject_type, e.subject_ref) for e in run.lineage}
