"""Gate policies beside eval suites: drift against the label holder's reference (from drift
runs) and service limits from call records over a window; every check's verdict is shown,
and a forced move records the verdicts it overrode (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from lockgate.registry import GateRefused, InvalidInput, LineageEdge, Registry
from lockgate.registry.calls import NewCall
from lockgate.registry.gate_limits import nearest_rank
from lockgate.registry.tables import utcnow

DRIFT = {"max_share_drifted": 0.3}
SERVICE = {"window_s": 3600, "p99_latency_ms": 800, "max_error_rate": 0.02, "min_calls": 50}


def _dataset(reg: Registry, tmp_path: Path, name: str, shift: float) -> str:
    path = tmp_path / f"{name}-{shift}.csv"
    rows = ["age,income,churned"] + [f"{i % 70 + shift},{i * 10},{i % 2}" for i in range(40)]
    path.write_text("\n".join(rows) + "\n")
    version, _ = reg.datasets.add(name, path)
    return f"{version.name}@{version.version}"


@pytest.fixture
def churn(registry: Registry, tmp_path: Path) -> Registry:
    """churn@1 (reference churn-ref@1) holds production; churn@2 (reference churn-ref@2) is
    the candidate."""
    est = LogisticRegression().fit(np.array([[1.0, 2.0], [2.0, 1.0], [3.0, 0.5]]), [0, 1, 0])
    first = _dataset(registry, tmp_path, "churn-ref", 0)
    registry.models.register_sklearn("churn", est, reference=first, target="churned")
    second = _dataset(registry, tmp_path, "churn-ref", 5)
    est2 = LogisticRegression(C=0.5).fit(np.array([[1.0, 2.0], [2.0, 1.0], [3.0, 0.4]]), [0, 1, 0])
    registry.models.register_sklearn("churn", est2, reference=second, target="churned")
    registry.labels.set("model", "churn", "production", 1)
    return registry


def _digest(reg: Registry, ref: str) -> str:
    return reg.datasets.get(ref).digest


def _drift_run(
    reg: Registry, subject: str, reference_digest: str, share: float, *,
    columns: dict[str, bool] | None = None, tmp_path: Path | None = None,
) -> str:  # fmt: skip
    run = reg.runs.create(
        "drift", name="drift",
        params={"reference": "model:churn@production#reference", "current": "file:x.csv",
                "reference_digest": reference_digest, "subject": subject},
        lineage=[LineageEdge(subject.split(":")[0], subject.split(":")[1], "input")],
    )  # fmt: skip
    if columns is not None:
        assert tmp_path is not None
        report = tmp_path / f"{run.id}.json"
        report.write_text(json.dumps({
            "columns": [{"column": c, "drifted": d} for c, d in columns.items()],
        }))  # fmt: skip
        reg.runs.log_artifact(run.id, "drift.json", report)
    reg.runs.set_status(run.id, "succeeded", metrics={"share_drifted": share})
    return run.id


def _refused(reg: Registry, subject: str, name: str, version: int) -> GateRefused:
    with pytest.raises(GateRefused) as refused:
        reg.labels.set(subject, name, "production", version)  # type: ignore[arg-type]
    return refused.value


def test_drift_within_the_limit_against_the_holders_reference_passes(churn: Registry) -> None:
    churn.gates.set_policy("model", "churn", "production", [], drift=DRIFT)
    holder_ref = _digest(churn, "churn-ref@1")
    run = _drift_run(churn, "model:churn@2", holder_ref, 0.25)
    checks = churn.gates.promotion_checks("model", "churn", "production", 2)
    assert [(c.name, c.verdict, c.run_id) for c in checks] == [("drift", "pass", run)]
    assert "0.25 <= max 0.3" in checks[0].reason and "churn-ref@1" in checks[0].reason
    move = churn.labels.set("model", "churn", "production", 2)
    assert move.to_version == 2 and [c.verdict for c in move.checks] == ["pass"]
    assert churn.labels.history("model", "churn", "production")[-1].checks[0].run_id == run


def test_drift_over_the_limit_fails(churn: Registry) -> None:
    churn.gates.set_policy("model", "churn", "production", [], drift=DRIFT)
    run = _drift_run(churn, "model:churn@2", _digest(churn, "churn-ref@1"), 0.5)
    refused = _refused(churn, "model", "churn", 2)
    assert refused.checks[0].verdict == "fail" and refused.checks[0].run_id == run
    assert refused.reasons == [refused.checks[0].reason]
    assert f"drift run {run} against churn-ref@1: share drifted 0.5 > max 0.3" in str(refused)
    assert churn.labels.of("model", "churn")["production"] == 1


def test_a_drift_run_against_another_reference_is_no_evidence(churn: Registry) -> None:
    churn.gates.set_policy("model", "churn", "production", [], drift=DRIFT)
    # the candidate's own reference (churn-ref@2), not the holder's (churn-ref@1)
    other = _drift_run(churn, "model:churn@2", _digest(churn, "churn-ref@2"), 0.0)
    _drift_run(churn, "model:churn@1", _digest(churn, "churn-ref@1"), 0.0)  # another version
    check = _refused(churn, "model", "churn", 2).checks[0]
    assert check.verdict == "inconclusive" and check.run_id == other
    assert f"drift run {other} compared model:churn@2 with" in check.reason
    assert "not with churn-ref@1" in check.reason and "--subject model:churn@2" in check.reason


def test_a_missing_drift_run_is_refused_with_the_command_to_run(churn: Registry) -> None:
    churn.gates.set_policy("model", "churn", "production", [], drift=DRIFT)
    _drift_run(churn, "model:churn@1", _digest(churn, "churn-ref@1"), 0.0)
    refused = _refused(churn, "model", "churn", 2)
    assert refused.checks[0].verdict == "inconclusive"
    assert refused.reasons[0] == (
        "no drift run for model:churn@2 against churn-ref@1; run `lockgate drift check "
        "--reference dataset:churn-ref@1 --current CURRENT --subject model:churn@2`"
    )


def test_drift_columns_age_and_a_first_version(churn: Registry, tmp_path: Path) -> None:
    churn.gates.set_policy(
        "model", "churn", "production", [],
        drift={"max_share_drifted": 0.0, "columns": ["age"], "max_age_s": 3600},
    )  # fmt: skip
    digest = _digest(churn, "churn-ref@1")
    run = _drift_run(churn, "model:churn@2", digest, 0.5,
                     columns={"age": False, "income": True}, tmp_path=tmp_path)  # fmt: skip
    check = churn.gates.promotion_checks("model", "churn", "production", 2)[0]
    assert check.verdict == "pass" and "of columns age 0 <= max 0" in check.reason, check
    _drift_run(churn, "model:churn@2", digest, 0.0, columns={"income": False}, tmp_path=tmp_path)
    check = churn.gates.promotion_checks("model", "churn", "production", 2)[0]
    assert check.verdict == "inconclusive" and "did not check column(s) age" in check.reason
    assert run != check.run_id
    # a first version (label unset) is judged against its own recorded reference
    churn.gates.set_policy("model", "churn", "staging", [], drift=DRIFT)
    _drift_run(churn, "model:churn@2", _digest(churn, "churn-ref@2"), 0.1)
    assert [c.verdict for c in churn.gates.promotion_checks("model", "churn", "staging", 2)] == [
        "pass"
    ]


def test_a_prompt_names_its_drift_reference(registry: Registry, tmp_path: Path) -> None:
    registry.prompts.push("qa", "one {{ q }}")
    with pytest.raises(InvalidInput, match=r"drift\.reference"):
        registry.gates.set_policy("prompt", "qa", "production", [], drift=DRIFT)
    ref = _dataset(registry, tmp_path, "qa-traffic", 0)
    policy = registry.gates.set_policy(
        "prompt", "qa", "production", [], drift={**DRIFT, "reference": "qa-traffic"}
    )
    assert policy is not None and policy.drift == {**DRIFT, "reference": ref}  # pinned
    _drift_run(registry, "prompt:qa@1", _digest(registry, ref), 0.0)
    registry.labels.set("prompt", "qa", "production", 1)


def _calls(reg: Registry, ref: str, latencies: list[float], *, status: int = 200,
           age_s: float = 60, predict: bool = True) -> None:  # fmt: skip
    now = utcnow()
    reg.calls.record([
        NewCall(
            request_id=f"r{i}-{status}-{age_s}", operation="predict" if predict else "chat",
            status_code=status, latency_ms=latency, created_at=now - timedelta(seconds=age_s),
            model=ref if predict else "gpt-x", deployment=None if predict else ref,
        )
        for i, latency in enumerate(latencies)
    ])  # fmt: skip


def test_service_p99_latency_is_the_nearest_rank_percentile(churn: Registry) -> None:
    churn.gates.set_policy(
        "model", "churn", "production", [],
        service={"window_s": 3600, "p99_latency_ms": 150, "min_calls": 100},
    )  # fmt: skip
    latencies = [float(x) for x in np.random.default_rng(7).permutation(np.arange(1, 201))]
    _calls(churn, "churn@2", latencies)
    _calls(churn, "churn@1", [5000.0] * 10)  # another version's calls
    _calls(churn, "churn@2", [9000.0] * 10, age_s=7200)  # outside the window
    _calls(churn, "churn@2", [9000.0] * 10, status=400)  # client errors are left out
    expected = float(np.percentile(latencies, 99, method="inverted_cdf"))
    assert expected == 198.0 and nearest_rank(200) == 198 and nearest_rank(100) == 99
    refused = _refused(churn, "model", "churn", 2)
    check = refused.checks[0]
    assert (check.name, check.verdict) == ("service p99_latency_ms", "fail")
    assert "p99 latency 198.0 ms over 200 calls" in check.reason and "> 150" in check.reason
    churn.gates.set_policy(
        "model", "churn", "production", [],
        service={"window_s": 3600, "p99_latency_ms": 198, "min_calls": 100},
    )  # fmt: skip
    churn.labels.set("model", "churn", "production", 2)


def test_service_error_rate_and_too_few_calls(churn: Registry) -> None:
    churn.gates.set_policy("model", "churn", "production", [], service=SERVICE)
    _calls(churn, "churn@2", [100.0] * 30, predict=False)  # an LLM deployment's calls
    checks = churn.gates.promotion_checks("model", "churn", "production", 2)
    assert [(c.name, c.verdict) for c in checks] == [
        ("service p99_latency_ms", "inconclusive"), ("service max_error_rate", "inconclusive"),
    ]  # fmt: skip
    assert "30 calls of model churn@2 in the last 3600 s" in checks[0].reason
    assert "fewer than min_calls 50" in checks[0].reason
    _calls(churn, "churn@2", [100.0] * 67)
    _calls(churn, "churn@2", [100.0] * 3, status=502)
    checks = churn.gates.promotion_checks("model", "churn", "production", 2)
    assert [c.verdict for c in checks] == ["pass", "fail"]
    assert "error rate 0.0300 (3 5xx) over 100 calls" in checks[1].reason
    _calls(churn, "churn@2", [100.0] * 50)
    assert [c.verdict for c in churn.gates.promotion_checks("model", "churn", "production", 2)] == [
        "pass", "pass",
    ]  # fmt: skip


def test_prompt_service_limits_read_the_prompt_versions_calls(registry: Registry) -> None:
    registry.prompts.push("qa", "one {{ q }}")
    registry.gates.set_policy(
        "prompt", "qa", "production", [], service={"max_error_rate": 0, "min_calls": 2}
    )
    now = utcnow()
    registry.calls.record([
        NewCall(request_id=f"p{i}", operation="chat", status_code=200, latency_ms=10.0,
                prompt_name="qa", prompt_version=1, created_at=now)
        for i in range(2)
    ])  # fmt: skip
    move = registry.labels.set("prompt", "qa", "production", 1)
    assert [(c.name, c.verdict) for c in move.checks] == [("service max_error_rate", "pass")]


def test_every_failing_check_is_listed_and_a_forced_move_records_them(churn: Registry) -> None:
    churn.gates.set_policy("model", "churn", "production", [], drift=DRIFT, service=SERVICE)
    run = _drift_run(churn, "model:churn@2", _digest(churn, "churn-ref@1"), 0.1)
    refused = _refused(churn, "model", "churn", 2)
    assert [(c.name, c.verdict) for c in refused.checks] == [
        ("drift", "pass"), ("service p99_latency_ms", "inconclusive"),
        ("service max_error_rate", "inconclusive"),
    ]  # fmt: skip
    assert len(refused.reasons) == 2 and "min_calls" in str(refused)
    move = churn.labels.set("model", "churn", "production", 2, force=True, reason="canary later")
    assert move.forced and move.reason == "canary later"
    recorded = churn.labels.history("model", "churn", "production")[-1]
    assert recorded.forced and recorded.reason == "canary later"
    assert [(c.name, c.verdict, c.run_id) for c in recorded.checks] == [
        ("drift", "pass", run), ("service p99_latency_ms", "inconclusive", None),
        ("service max_error_rate", "inconclusive", None),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"drift": {"max_share_drifted": 0.3, "max_shares": 1}}, "unknown key 'drift.max_shares'"),
        ({"service": {"p99_latency": 800}}, "unknown key 'service.p99_latency'"),
        ({"service": {"window_s": 60}}, "names p99_latency_ms, max_error_rate or both"),
        ({"drift": {"max_share_drifted": 1.5}}, "drift.max_share_drifted"),
        ({"drift": {"max_share_drifted": "lots"}}, "drift.max_share_drifted"),
        ({"service": {"max_error_rate": 0.1, "min_calls": 0}}, "service.min_calls"),
    ],
)
def test_a_policy_with_an_unknown_key_or_bad_value_is_rejected(
    churn: Registry, limits: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message.replace(".", r"\.").replace("(", r"\(")):
        churn.gates.set_policy("model", "churn", "production", [], **limits)
    assert churn.gates.policies("model", "churn") == []


def test_a_policy_file_through_the_gate_commands(churn: Registry, tmp_path: Path) -> None:
    policy = tmp_path / "gate.yaml"
    policy.write_text("drift: {max_share_drifted: 0.3}\nservise: {min_calls: 5}\n")
    with pytest.raises(InvalidInput, match="unknown key 'servise'"):
        churn.gates.read_policy(policy)
    policy.write_text("drift: {max_share_drifted: 0.3, reference: churn-ref@1}\n")
    pins, limits = churn.gates.read_policy(policy)
    assert pins == [] and limits.drift is not None and limits.service is None


def test_the_cli_sets_a_policy_file_and_prints_every_check(  # type: ignore[no-untyped-def]
    cli, churn: Registry, tmp_path: Path
) -> None:
    policy = tmp_path / "gate.yaml"
    policy.write_text(
        "drift: {max_share_drifted: 0.3}\nservice: {max_error_rate: 0.1, mincalls: 5}\n"
    )
    code, _, err = cli("model", "gate", "churn", "production", "--policy", str(policy))
    assert code == 2 and "unknown key 'service.mincalls'" in err
    policy.write_text(
        "drift: {max_share_drifted: 0.3}\nservice: {max_error_rate: 0.1, min_calls: 5}\n"
    )
    code, out, _ = cli("model", "gate", "churn", "production", "--policy", str(policy))
    assert code == 0 and "drift share <= 0.3 against the holder's reference" in out, out
    assert "error rate <= 0.1 over the last 3600 s (at least 5 calls)" in out
    run = _drift_run(churn, "model:churn@2", _digest(churn, "churn-ref@1"), 0.0)
    code, out, _ = cli("model", "gate", "churn", "production", "--check", "2")
    assert code == 1 and f"pass         drift run {run}" in out, out
    assert "inconclusive service max_error_rate: 0 calls" in out
    code, _, err = cli("model", "label", "churn", "2", "production")
    assert code == 1 and f"pass         drift run {run}" in err and "min_calls 5" in err
    _calls(churn, "churn@2", [10.0] * 5)
    code, out, _ = cli("model", "gate", "churn", "production", "--check", "2", "--json")
    assert code == 0 and [c["verdict"] for c in json.loads(out)["checks"]] == ["pass", "pass"]
    # --suite alone keeps the limits; a forced move shows what it overrode in the history
    code, out, _ = cli("model", "gate", "churn", "staging", "--policy", str(policy))
    code, out, _ = cli("model", "label", "churn", "2", "staging", "--force", "--reason", "demo")
    assert code == 0 and "forced past its gate:" in out and "inconclusive" in out
    code, out, _ = cli("model", "history", "churn", "--label", "staging", "--json")
    (move,) = json.loads(out)
    assert move["forced"] and move["reason"] == "demo"
    assert [(c["name"], c["verdict"]) for c in move["checks"]] == [
        ("drift", "inconclusive"), ("service max_error_rate", "pass"),
    ]  # fmt: skip
    code, out, _ = cli("model", "history", "churn", "--label", "staging")
    assert "forced: demo (overrode:" in out, out
