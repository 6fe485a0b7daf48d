"""Labels move only on evidence: a version whose pinned suites did not pass, every gate
evaluated, on error-free runs of the same suite content, is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from lockgate.registry import GateRefused, InvalidInput, LineageEdge, Registry
from lockgate.registry.gates import SuitePin, suite_digest
from lockgate.registry.tables import GatePolicy

ACCURACY = SuitePin("qa-accuracy", suite_digest({"name": "qa-accuracy"}, "sha256:data"))
SAFETY = SuitePin("qa-safety", suite_digest({"name": "qa-safety"}, "sha256:data"))
ABSOLUTE = {"gate": "accuracy >= 0.9", "kind": "absolute", "verdict": "pass", "reason": "0.95"}
RELATIVE = {"gate": "accuracy: no significant regression vs baseline", "kind": "relative",
            "verdict": "pass", "reason": "no regression"}  # fmt: skip
WAIVED = {**RELATIVE, "verdict": "skipped", "reason": "waived: production unset", "waived": True}


def _eval_run(
    reg: Registry, pin: SuitePin, ref: str, verdict: str = "pass", *,
    gates: list[dict[str, Any]] | None = None, errors: float = 0, digest: str | None = None,
    baseline_run: str | None = None, shard: str | None = None,
) -> str:  # fmt: skip
    run = reg.runs.create(
        "eval", name=pin.name, lineage=[LineageEdge("prompt", ref, "input")],
        params={"suite_digest": pin.digest if digest is None else digest, "shard": shard},
    )  # fmt: skip
    reg.runs.set_status(run.id, "succeeded", metrics={"accuracy": 0.9, "eval.errors": errors})
    if gates is None:
        gates = [{**ABSOLUTE, "verdict": verdict, "reason": f"accuracy {verdict}"}]
    reg.runs.tag(run.id, {"verdict": verdict, "gates": gates, "baseline_run": baseline_run,
                         "baseline": f"run {baseline_run}" if baseline_run else None})  # fmt: skip
    return run.id


@pytest.fixture
def gated(registry: Registry) -> Registry:
    for text in ("good {{ q }}", "worse {{ q }}", "fixed {{ q }}"):
        registry.prompts.push("qa", text)
    registry.gates.set_policy("prompt", "qa", "production", [ACCURACY, SAFETY])
    return registry


def _refusal(reg: Registry, version: int, label: str = "production") -> str:
    with pytest.raises(GateRefused) as refused:
        reg.labels.set("prompt", "qa", label, version)
    assert reg.labels.of("prompt", "qa").get(label) != version
    return "\n".join(refused.value.reasons)


def test_move_refused_with_one_reason_per_unmet_suite(gated: Registry) -> None:
    run = _eval_run(gated, ACCURACY, "qa@2", "fail")
    with pytest.raises(GateRefused) as refused:
        gated.labels.set("prompt", "qa", "production", 2)
    reasons = refused.value.reasons
    assert reasons[0] == f"suite 'qa-accuracy' run {run}: fail (accuracy >= 0.9: accuracy fail)"
    assert reasons[1].startswith("suite 'qa-safety' (sha256:")
    assert "no eval run on prompt qa@2" in reasons[1]
    assert refused.value.exit_code == 1
    assert "production" not in gated.labels.of("prompt", "qa")


def test_move_allowed_once_every_suite_passes_on_that_version(gated: Registry) -> None:
    _eval_run(gated, ACCURACY, "qa@3")
    _eval_run(gated, SAFETY, "qa@3")
    _eval_run(gated, SAFETY, "qa@2")  # another version's pass does not count
    assert gated.gates.check_promotion("prompt", "qa", "production", 3) == []
    gated.labels.set("prompt", "qa", "production", 3)
    assert gated.prompts.get("qa@production").version == 3
    assert gated.gates.check_promotion("prompt", "qa", "production", 2) != []


def test_the_latest_run_of_a_suite_decides(gated: Registry) -> None:
    _eval_run(gated, ACCURACY, "qa@1")
    _eval_run(gated, SAFETY, "qa@1")
    _eval_run(gated, ACCURACY, "qa@1", "inconclusive")
    assert "inconclusive" in _refusal(gated, 1)


def test_skipped_no_gates_and_errored_runs_are_not_evidence(gated: Registry) -> None:
    _eval_run(gated, SAFETY, "qa@1")
    skipped = {**RELATIVE, "verdict": "skipped", "reason": "skipped: no baseline given"}
    _eval_run(gated, ACCURACY, "qa@1", "skipped", gates=[ABSOLUTE, skipped])
    assert "skipped" in _refusal(gated, 1)
    _eval_run(gated, ACCURACY, "qa@1", "pass", gates=[ABSOLUTE, skipped])  # a forged "pass"
    assert "skipped: accuracy: no significant regression" in _refusal(gated, 1)
    _eval_run(gated, ACCURACY, "qa@1", "skipped", gates=[])
    assert "no gates" in _refusal(gated, 1)
    _eval_run(gated, ACCURACY, "qa@1", "pass", gates=[])
    assert "no gates" in _refusal(gated, 1)
    _eval_run(gated, ACCURACY, "qa@1", "pass", errors=3)
    assert "3 of its calls errored" in _refusal(gated, 1)
    _eval_run(gated, ACCURACY, "qa@1", "pass", shard="1/2")  # a shard never counts
    assert "errored" in _refusal(gated, 1)
    _eval_run(gated, ACCURACY, "qa@1")
    gated.labels.set("prompt", "qa", "production", 1)


def test_a_suite_of_the_same_name_with_other_content_does_not_count(gated: Registry) -> None:
    _eval_run(gated, SAFETY, "qa@1")
    other = _eval_run(gated, ACCURACY, "qa@1", digest=suite_digest({"name": "x"}, "sha256:y"))
    reason = _refusal(gated, 1)
    assert "no eval run of this suite content" in reason and f"run {other}" in reason
    assert "other content" in reason
    _eval_run(gated, ACCURACY, "qa@1")
    gated.labels.set("prompt", "qa", "production", 1)


def test_a_first_version_is_judged_by_its_absolute_gates(gated: Registry) -> None:
    gated.gates.set_policy("prompt", "qa", "production", [ACCURACY])
    _eval_run(gated, ACCURACY, "qa@1", gates=[WAIVED])  # waived, nothing absolute
    assert "this suite has none" in _refusal(gated, 1)
    first = _eval_run(gated, ACCURACY, "qa@1", gates=[ABSOLUTE, WAIVED])
    gated.labels.set("prompt", "qa", "production", 1)

    # the label now holds v1: a waived relative gate no longer counts
    _eval_run(gated, ACCURACY, "qa@2", gates=[ABSOLUTE, WAIVED])
    assert "qa@1 holds it now" in _refusal(gated, 2)
    # a relative gate must have compared the candidate with the holder, in the registry
    _eval_run(gated, ACCURACY, "qa@2", gates=[ABSOLUTE, RELATIVE], baseline_run=None)
    assert "not with an error-free run of this suite on prompt qa@1" in _refusal(gated, 2)
    stale = _eval_run(gated, ACCURACY, "qa@1", digest=SAFETY.digest)  # other suite content
    _eval_run(gated, ACCURACY, "qa@2", gates=[ABSOLUTE, RELATIVE], baseline_run=stale)
    assert "--baseline label:production" in _refusal(gated, 2)
    _eval_run(gated, ACCURACY, "qa@2", gates=[ABSOLUTE, RELATIVE], baseline_run=first)
    gated.labels.set("prompt", "qa", "production", 2)
    # compared with v1, but v2 holds it now
    _eval_run(gated, ACCURACY, "qa@3", gates=[ABSOLUTE, RELATIVE], baseline_run=first)
    assert "qa@2" in _refusal(gated, 3)


def test_required_suites_gate_a_label_without_a_policy(registry: Registry) -> None:
    registry.prompts.push("qa", "good {{ q }}")
    with pytest.raises(GateRefused, match="no eval run on prompt qa@1"):
        registry.labels.set("prompt", "qa", "production", 1, require=[ACCURACY])
    _eval_run(registry, ACCURACY, "qa@1")
    registry.labels.set("prompt", "qa", "production", 1, require=[ACCURACY])


def test_forced_move_is_recorded_and_needs_a_reason(gated: Registry) -> None:
    with pytest.raises(InvalidInput, match="needs a reason"):
        gated.labels.set("prompt", "qa", "production", 2, force=True)
    gated.labels.set("prompt", "qa", "production", 2, force=True, reason="hotfix, evals down")
    move = gated.labels.history("prompt", "qa", "production")[-1]
    assert (move.to_version, move.forced, move.reason) == (2, True, "hotfix, evals down")


def test_other_labels_and_cleared_policies_are_ungated(gated: Registry) -> None:
    gated.labels.set("prompt", "qa", "staging", 2)
    gated.gates.set_policy("prompt", "qa", "production", [])
    gated.labels.set("prompt", "qa", "production", 2)
    assert gated.gates.policies("prompt", "qa") == []


def test_a_policy_pins_suites_by_content(gated: Registry, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="pins each suite by its content"):
        gated.gates.set_policy("prompt", "qa", "production", ["qa-accuracy"])  # type: ignore[list-item]
    (tmp_path / "data.jsonl").write_text('{"q": "1+1", "a": "2"}\n')
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: qa-accuracy\ndataset: data.jsonl\ntarget: {model: prompt:qa@1}\n")
    pin = gated.gates.pin_suite(suite)
    assert pin.name == "qa-accuracy" and pin.digest.startswith("sha256:")
    suite.write_text("name: qa-accuracy\ndataset: data.jsonl\ntarget: {model: prompt:qa@3}\n")
    assert gated.gates.pin_suite(suite) == pin  # the version it targets is not pinned
    (tmp_path / "data.jsonl").write_text('{"q": "1+1", "a": "3"}\n')
    assert gated.gates.pin_suite(suite) != pin  # its data is
    with pytest.raises(InvalidInput, match="does not exist"):
        suite.write_text("name: qa-accuracy\ndataset: missing.jsonl\n")
        gated.gates.pin_suite(suite)
    with pytest.raises(InvalidInput, match="cannot read the suite file"):
        gated.gates.pin_suite(tmp_path / "qa-accuracy")


def test_a_policy_from_before_pinning_refuses_until_pinned(gated: Registry) -> None:
    with gated.db.write() as session:
        session.execute(update(GatePolicy).values(suites=["qa-accuracy"]))
    _eval_run(gated, ACCURACY, "qa@1")
    assert "named without its content" in _refusal(gated, 1)
    assert [str(p) for p in gated.gates.policies("prompt", "qa")[0].suites] == [
        "qa-accuracy (not pinned)"
    ]
