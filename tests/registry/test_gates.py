"""Labels move only through gates: a version whose gated suites did not pass is refused."""

from __future__ import annotations

import pytest

from registry import GateRefused, InvalidInput, LineageEdge, Registry


def _eval_run(reg: Registry, suite: str, ref: str, verdict: str, reason: str = "") -> str:
    run = reg.create_run("eval", name=suite, lineage=[LineageEdge("prompt", ref, "input")])
    reg.set_run_status(run.id, "succeeded", metrics={"accuracy": 0.9})
    reg.tag_run(
        run.id,
        {
            "verdict": verdict,
            "gates": [{"gate": "accuracy >= 0.9", "verdict": verdict, "reason": reason}],
        },
    )
    return run.id


@pytest.fixture
def gated(registry: Registry) -> Registry:
    for text in ("good {{ q }}", "worse {{ q }}", "fixed {{ q }}"):
        registry.push_prompt("qa", text)
    registry.set_gate_policy("prompt", "qa", "production", ["qa-accuracy", "qa-safety"])
    return registry


def test_move_refused_with_one_reason_per_unmet_suite(gated: Registry) -> None:
    run = _eval_run(gated, "qa-accuracy", "qa@2", "fail", "accuracy 0.61 < 0.9")
    with pytest.raises(GateRefused) as refused:
        gated.set_label("prompt", "qa", "production", 2)
    reasons = refused.value.reasons
    assert (
        reasons[0] == f"suite 'qa-accuracy' run {run}: fail (accuracy >= 0.9: accuracy 0.61 < 0.9)"
    )
    assert reasons[1].startswith("suite 'qa-safety': no eval run on prompt qa@2")
    assert refused.value.exit_code == 1
    assert "production" not in gated.labels_of("prompt", "qa")


def test_move_allowed_once_every_suite_passes_on_that_version(gated: Registry) -> None:
    _eval_run(gated, "qa-accuracy", "qa@3", "pass")
    _eval_run(gated, "qa-safety", "qa@3", "pass")
    _eval_run(gated, "qa-safety", "qa@2", "pass")  # another version's pass does not count
    assert gated.check_promotion("prompt", "qa", "production", 3) == []
    gated.set_label("prompt", "qa", "production", 3)
    assert gated.resolve_prompt("qa", "production").version == 3
    assert gated.check_promotion("prompt", "qa", "production", 2) != []


def test_the_latest_run_of_a_suite_decides(gated: Registry) -> None:
    _eval_run(gated, "qa-accuracy", "qa@1", "pass")
    _eval_run(gated, "qa-safety", "qa@1", "pass")
    _eval_run(gated, "qa-accuracy", "qa@1", "inconclusive", "need 120 examples, have 3")
    with pytest.raises(GateRefused, match="inconclusive"):
        gated.set_label("prompt", "qa", "production", 1)


def test_forced_move_is_recorded_and_needs_a_reason(gated: Registry) -> None:
    with pytest.raises(InvalidInput, match="needs a reason"):
        gated.set_label("prompt", "qa", "production", 2, force=True)
    gated.set_label("prompt", "qa", "production", 2, force=True, reason="hotfix, evals down")
    move = gated.label_history("prompt", "qa", "production")[-1]
    assert (move.to_version, move.forced, move.reason) == (2, True, "hotfix, evals down")


def test_other_labels_and_cleared_policies_are_ungated(gated: Registry) -> None:
    gated.set_label("prompt", "qa", "staging", 2)
    gated.set_gate_policy("prompt", "qa", "production", [])
    gated.set_label("prompt", "qa", "production", 2)
    assert gated.gate_policies("prompt", "qa") == []
