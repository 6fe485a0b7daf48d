"""Monitoring policies: validation, persistence, cooldown, every signal and action, and the
decision runs they leave. Each decision is given its ``now``, so windows pass without sleeping.
Every registry test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from lockgate.gateway.monitor import PolicyInvalid, load_policy, parse_policy, run_policy
from lockgate.gateway.monitor.errors import SignalUnavailable
from lockgate.registry import Registry
from lockgate.registry.calls import NewCall
from lockgate.registry.predictions import NewSample
from tests.conftest import Cli

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _policy(**over: Any) -> Any:
    data: dict[str, Any] = {
        "name": "gpt-errors", "target": "route:gpt", "window": "1h",
        "signal": {"kind": "error_rate", "above": 0.1}, "min_samples": 10,
    }  # fmt: skip
    data.update(over)
    return parse_policy(data)


def _calls(registry: Registry, at: datetime, *, ok: int, failed: int, route: str = "gpt",
           latency_ms: float = 100.0) -> None:  # fmt: skip
    registry.calls.record([
        NewCall(request_id=uuid.uuid4().hex, operation="chat", route=route,
                status_code=200 if i < ok else 502, latency_ms=latency_ms + i,
                created_at=at - timedelta(minutes=1 + i % 50))
        for i in range(ok + failed)
    ])  # fmt: skip


# --- the policy file -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patch", "key"),
    [
        ({"signal": {"kind": "drift", "max_share_drifted": 1.5}}, "signal.max_share_drifted"),
        ({"signal": {"kind": "error_rate", "abov": 0.1}}, "signal.abov"),
        ({"signal": {"kind": "loudness"}}, "signal"),
        ({"window": "5 parsecs"}, "window"),
        ({"windw": "1h"}, "windw"),
        ({"persistence": 0}, "persistence"),
        ({"target": "churn"}, "target"),
        (
            {"actions": [{"kind": "alert"}, {"kind": "retrain", "dataset": "d", "entry": []}]},
            "actions[1].entry",
        ),
        ({"actions": [{"kind": "page-someone"}]}, "actions[0]"),
        ({"actions": [{"kind": "retrain", "dataset": "d", "entry": ["x"]}]}, "actions[0]"),
        ({"name": "../etc"}, "name"),
    ],
)
def test_policy_errors_name_the_key(patch: dict[str, Any], key: str) -> None:
    with pytest.raises(PolicyInvalid) as raised:
        _policy(**patch)
    assert f"{key}:" in raised.value.message, raised.value.message
    assert raised.value.exit_code == 2


def test_policy_file_is_data_only(tmp_path: Path) -> None:
    evil = tmp_path / "evil.yaml"
    evil.write_text("target: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(PolicyInvalid, match="not valid YAML"):
        load_policy(evil)
    assert not (tmp_path / "pwned").exists()
    good = tmp_path / "churn drift.yaml"
    good.write_text(yaml.safe_dump({
        "target": "churn@production", "signal": {"kind": "schedule", "every": "7d"},
        "actions": [{"kind": "eval", "suite": "suites/churn.yaml"}],
    }))  # fmt: skip
    policy = load_policy(good)
    assert policy.name == "churn-drift" and str(policy.target) == "model:churn@production"
    assert policy.actions[0].suite == tmp_path / "suites/churn.yaml"  # type: ignore[union-attr]


# --- persistence, cooldown, min_samples ------------------------------------------------


def test_fires_only_after_n_consecutive_windows(registry: Registry) -> None:
    policy = _policy(persistence=3)
    decisions = []
    for k, failed in enumerate([5, 5, 0, 5, 5, 5]):  # a quiet window breaks the streak
        now = T0 + k * HOUR
        _calls(registry, now, ok=20, failed=failed)
        decisions.append(run_policy(registry, policy, now=now))
    assert [d.decision for d in decisions] == [
        "pending", "pending", "quiet", "pending", "pending", "fired"]  # fmt: skip
    assert [d.consecutive for d in decisions] == [1, 2, 0, 1, 2, 3]
    assert decisions[0].measurement is not None
    assert decisions[0].measurement.value == pytest.approx(5 / 25)


def test_cooldown_holds_back_a_repeat(registry: Registry) -> None:
    policy = _policy(cooldown="3h")
    decisions = []
    for k in range(5):
        now = T0 + k * HOUR
        _calls(registry, now, ok=10, failed=10)
        decisions.append(run_policy(registry, policy, now=now).decision)
    assert decisions == ["fired", "cooldown", "cooldown", "fired", "cooldown"]


def test_too_few_samples_is_no_verdict(registry: Registry) -> None:
    _calls(registry, T0, ok=0, failed=5)
    decision = run_policy(registry, _policy(), now=T0)
    assert decision.decision == "insufficient" and not decision.fired
    assert "fewer than min_samples 10" in decision.reason


def test_every_decision_is_a_monitor_run(registry: Registry) -> None:
    _calls(registry, T0, ok=18, failed=2)
    quiet = run_policy(registry, _policy(), now=T0)
    _calls(registry, T0 + HOUR, ok=10, failed=10)
    fired = run_policy(registry, _policy(), now=T0 + HOUR)
    runs = registry.runs.list("monitor")
    assert [r.id for r in runs] == [fired.run_id, quiet.run_id]
    run = registry.runs.get(quiet.run_id)
    assert run.kind == "monitor" and run.name == "gpt-errors" and run.status == "succeeded"
    assert run.metrics["error_rate"] == pytest.approx(0.1)
    assert run.metrics["fired"] == 0.0 and run.metrics["calls"] == 20.0
    assert run.tags["decision"] == "quiet" and "error rate 0.100" in run.tags["reason"]
    assert run.params["target"] == "route:gpt" and run.params["window_s"] == 3600
    fired_run = registry.runs.get(fired.run_id)
    assert fired_run.tags["decision"] == "fired" and fired_run.metrics["fired"] == 1.0
    assert fired_run.tags["last_fired_at"] == (T0 + HOUR).isoformat()
    assert fired_run.tags["actions"][0]["kind"] == "alert"
    assert fired_run.tags["alert"].startswith("gpt-errors: error rate 0.500")


def test_latency_p99_of_a_prompt_version(registry: Registry) -> None:
    registry.prompts.push("support", "Answer {{ q }}")
    registry.labels.set("prompt", "support", "production", 1)
    registry.calls.record([
        NewCall(request_id=f"r{i}", operation="chat", status_code=200, prompt_name="support",
                prompt_version=1, latency_ms=100.0 if i < 95 else 2000.0,
                created_at=T0 - timedelta(minutes=5))
        for i in range(100)
    ])  # fmt: skip
    policy = parse_policy({"name": "support-latency", "target": "prompt:support@production",
                           "signal": {"kind": "latency_p99", "above_ms": 800},
                           "window": "1h", "min_samples": 50})  # fmt: skip
    decision = run_policy(registry, policy, now=T0)
    assert decision.fired and decision.measurement is not None
    assert decision.measurement.value == 2000.0 and decision.measurement.samples == 100
    edges = registry.runs.get(decision.run_id).lineage
    assert [(e.subject_type, e.subject_ref) for e in edges] == [("prompt", "support@1")]


def test_missing_target_is_a_failed_decision(registry: Registry) -> None:
    policy = parse_policy({"name": "ghost", "target": "prompt:ghost@production",
                           "signal": {"kind": "latency_p99", "above_ms": 1}})  # fmt: skip
    with pytest.raises(SignalUnavailable, match="ghost"):
        run_policy(registry, policy, now=T0)
    [run] = registry.runs.list("monitor")
    assert run.status == "failed" and "ghost" in (run.error or "")


# --- the other signals -----------------------------------------------------------------


def test_data_volume_counts_rows_since_it_last_fired(registry: Registry, tmp_path: Path) -> None:
    policy = parse_policy({"name": "new-labels", "target": "route:gpt",
                           "signal": {"kind": "data_volume", "dataset": "labelled",
                                      "min_rows": 4}})  # fmt: skip

    def add(rows: int) -> None:
        path = tmp_path / f"{uuid.uuid4().hex}.jsonl"
        path.write_text("".join(json.dumps({"x": i, "tag": path.name}) + "\n"
                                for i in range(rows)))  # fmt: skip
        registry.datasets.add("labelled", path)

    add(3)
    now = datetime.now(UTC)
    assert run_policy(registry, policy, now=now).decision == "quiet"
    add(4)
    fired = run_policy(registry, policy, now=datetime.now(UTC))
    assert fired.fired and fired.measurement is not None and fired.measurement.value == 4.0
    assert "versions @2" in fired.reason
    add(2)  # counted from the firing: 2 rows, not 6
    after = run_policy(registry, policy, now=datetime.now(UTC))
    assert after.decision == "quiet" and after.measurement is not None
    assert after.measurement.value == 2.0


def test_eval_metric_from_the_newest_run_in_the_window(registry: Registry) -> None:
    def eval_run(accuracy: float) -> None:
        run = registry.runs.create("eval", name="qa", params={"suite": "qa"})
        registry.runs.set_status(run.id, "succeeded",
                                 metrics={"accuracy": accuracy, "eval.examples": 200})  # fmt: skip

    policy = parse_policy({"name": "qa-quality", "target": "route:gpt", "min_samples": 100,
                           "signal": {"kind": "eval_metric", "suite": "qa",
                                      "metric": "accuracy", "below": 0.8}})  # fmt: skip
    assert run_policy(registry, policy).decision == "insufficient"  # no run yet
    eval_run(0.9)
    assert run_policy(registry, policy).decision == "quiet"
    eval_run(0.7)
    decision = run_policy(registry, policy)
    assert decision.fired and decision.measurement is not None
    assert decision.measurement.value == pytest.approx(0.7)


def test_schedule_fires_every_interval(registry: Registry) -> None:
    policy = parse_policy({"name": "weekly", "target": "route:gpt",
                           "signal": {"kind": "schedule", "every": "7d"}})  # fmt: skip
    days = [0, 1, 6, 7, 8, 14]
    fired = [run_policy(registry, policy, now=T0 + timedelta(days=d)).fired for d in days]
    assert fired == [True, False, False, True, False, True]


# --- a classic model: drift, eval and retrain actions ----------------------------------


@pytest.fixture
def churn(registry: Registry, tmp_path: Path) -> dict[str, Path]:
    """churn@1 on churn-train@1 (its reference) holding ``production``, an eval suite, a
    training script, and :predict samples of shifted inputs over the last hour."""
    pytest.importorskip("sklearn")
    pytest.importorskip("skops")
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 2))
    first = pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "y": (x.sum(axis=1) > 0).astype(int)})
    first.to_csv(tmp_path / "train1.csv", index=False)
    registry.datasets.add("churn-train", tmp_path / "train1.csv")
    model = LogisticRegression().fit(first[["x1", "x2"]], first["y"])
    registry.models.register_sklearn("churn", model, reference="churn-train@1", target="y")
    registry.labels.set("model", "churn", "production", 1)
    shifted = rng.normal(loc=3.0, size=(200, 2))
    now = datetime.now(UTC)
    registry.predictions.record([
        NewSample(request_id=f"r{i}", model="churn", version=1,
                  inputs={"x1": float(a), "x2": float(b)}, prediction=1,
                  created_at=now - timedelta(minutes=10))
        for i, (a, b) in enumerate(shifted)
    ])  # fmt: skip
    rows = first.head(60).to_dict(orient="records")
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump({
        "name": "churn-accuracy", "dataset": "eval.jsonl", "reference": "y",
        "target": {"kind": "sklearn", "model": "registry:churn@production",
                   "features": ["x1", "x2"]},
        "scorers": ["accuracy"], "gates": ["accuracy >= 0.8"],
    }))  # fmt: skip
    (tmp_path / "train.py").write_text("raise SystemExit(0)\n")
    return {"suite": tmp_path / "suite.yaml", "script": tmp_path / "train.py"}


def test_drift_fires_and_runs_eval_and_retrain(
    registry: Registry, churn: dict[str, Path], tmp_path: Path
) -> None:
    pytest.importorskip("scipy")
    policy = parse_policy({
        "name": "churn-drift", "target": "churn@production", "window": "1h",
        "min_samples": 100, "signal": {"kind": "drift", "max_share_drifted": 0.5},
        "actions": [
            {"kind": "alert"}, {"kind": "webhook"},
            {"kind": "eval", "suite": str(churn["suite"])},
            {"kind": "retrain", "dataset": "churn-train",
             "entry": [sys.executable, str(churn["script"])], "label": "production",
             "suite": str(churn["suite"])},
        ],
    })  # fmt: skip
    decision = run_policy(registry, policy)
    assert decision.fired, decision.reason
    assert decision.measurement is not None and decision.measurement.value == 1.0
    assert [(a.kind, a.ok) for a in decision.actions] == [
        ("alert", True), ("webhook", True), ("eval", True), ("retrain", True)]  # fmt: skip
    run = registry.runs.get(decision.run_id)
    drift_run = run.tags["drift_run"]
    assert registry.runs.get(drift_run).kind == "drift"
    assert ("run", drift_run, "input") in [(e.subject_type, e.subject_ref, e.role)
                                           for e in run.lineage]  # fmt: skip
    [event] = registry.events.list(types=["monitor.fired"])
    assert event.subject == "monitor:churn-drift"
    assert event.payload["decision_run"] == decision.run_id
    assert event.payload["figures"]["share_drifted"] == 1.0
    eval_run = registry.runs.get(decision.actions[2].refs["eval_run"])
    assert eval_run.kind == "eval" and eval_run.tags["verdict"] in ("pass", "fail")
    job = registry.jobs.get(decision.actions[3].refs["job"])
    assert job.kind == "command" and job.idempotency_key == f"monitor:{decision.run_id}:3"


def test_a_failing_action_is_recorded_and_the_rest_still_run(
    registry: Registry, tmp_path: Path
) -> None:
    _calls(registry, T0, ok=0, failed=20)
    missing = {"kind": "eval", "suite": str(tmp_path / "missing.yaml")}
    policy = _policy(actions=[missing, {"kind": "webhook"}])
    decision = run_policy(registry, policy, now=T0)
    assert decision.fired and not decision.ok
    assert [(a.kind, a.ok) for a in decision.actions] == [("eval", False), ("webhook", True)]
    run = registry.runs.get(decision.run_id)
    assert run.status == "failed" and "eval:" in (run.error or "")


def test_finetune_action_submits_once_per_decision(registry: Registry, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tests.finetune.conftest import build_tiny_model, chat_rows, write_jsonl

    model = build_tiny_model(tmp_path / "tiny")
    write_jsonl(tmp_path / "train.jsonl", chat_rows(4))
    (tmp_path / "job.yaml").write_text(yaml.safe_dump({
        "base_model": str(model), "training_file": "train.jsonl", "output_model": "support-lora",
    }))  # fmt: skip
    _calls(registry, T0, ok=0, failed=20)
    decision = run_policy(registry, _policy(actions=[
        {"kind": "finetune", "spec": str(tmp_path / "job.yaml")}]), now=T0)  # fmt: skip
    [action] = decision.actions
    assert action.ok, action.detail
    job = registry.jobs.get(action.refs["job"])
    assert job.kind == "finetune" and job.idempotency_key == f"monitor:{decision.run_id}:0"


# --- the CLI -----------------------------------------------------------------------------


def test_cli_exit_codes_and_json(cli: Cli, registry: Registry, tmp_path: Path) -> None:
    policy = tmp_path / "weekly.yaml"
    policy.write_text(yaml.safe_dump({"target": "route:gpt",
                                      "signal": {"kind": "schedule", "every": "7d"}}))  # fmt: skip
    code, out, err = cli("monitor", "run", str(policy), "--json")
    assert code == 1, err  # fired
    doc = json.loads(out)
    [decision] = doc["decisions"]
    assert decision["policy"] == "weekly" and decision["decision"] == "fired"
    code, out, _ = cli("monitor", "run", str(policy))
    assert code == 0 and "weekly: quiet" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("target: route:gpt\nsignal: {kind: schedule, evry: 7d}\n")
    code, _, err = cli("monitor", "run", str(bad))
    assert code == 2 and "signal.evry" in err
    code, _, err = cli("monitor", "run", str(policy), "--every", "soon")
    assert code == 2 and "--every" in err


def test_traffic_drift_of_a_prompt_fires(registry: Registry) -> None:
    """Longer prompts in the last hour than over the week before: the policy fires."""
    pytest.importorskip("scipy")
    registry.prompts.push("support", "Answer {{ q }}")
    registry.labels.set("prompt", "support", "production", 1)

    def calls(hours_ago: float, n: int, tokens: int) -> list[NewCall]:
        return [
            NewCall(request_id=uuid.uuid4().hex, operation="chat", status_code=200,
                    route="gpt", prompt_name="support", prompt_version=1,
                    latency_ms=100.0 + i % 7, input_tokens=tokens + i % 11, output_tokens=40,
                    created_at=T0 - timedelta(hours=hours_ago, minutes=i % 50))
            for i in range(n)
        ]  # fmt: skip

    registry.calls.record([c for day in range(1, 7) for c in calls(24 * day, 40, 100)])
    registry.calls.record(calls(0, 120, 900))
    policy = parse_policy({"name": "support-traffic", "target": "prompt:support@production",
                           "window": "1h", "min_samples": 100,
                           "signal": {"kind": "drift", "column": "input_tokens"}})  # fmt: skip
    decision = run_policy(registry, policy, now=T0)
    assert decision.fired, decision.reason
    assert "input_tokens" in decision.reason
    assert registry.runs.get(decision.measurement.params["drift_run"]).kind == "drift"  # type: ignore[union-attr]
