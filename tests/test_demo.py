"""`lockgate demo` runs the whole loop that exists, offline, and ends where it should."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lockgate.registry import Registry, RegistrySettings


def test_demo_runs_the_loop(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKGATE_")}
    done = subprocess.run(
        [sys.executable, "-m", "lockgate.gateway.cli", "demo",
         "--data-dir", str(tmp_path / "demo")],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout + done.stderr
    assert "pushed support@2" in out
    assert "POST /v1/chat/completions model=support-bot -> 200" in out
    assert "refused by its gate policy" in out  # the planted regression is stopped
    assert "support: production 2 -> 4" in out  # the good version ships
    assert (tmp_path / "demo" / "summary.md").read_text().count("fail") >= 1
    # a tiny model fine-tuned, gated against its base, labelled and served in process
    assert "label moved: production" in out
    assert (
        "model=registry:support-lm@production 'How long does a refund take?' -> 200: "
        "Refunds reach your card within 5 business days" in out
    )
    # LLM traffic drift: longer prompts on another topic are reported, the policy re-runs evals
    assert "$ lockgate drift traffic --model support-bot" in out
    assert "support-traffic: fired — column 'input_tokens' drifted" in out
    assert "eval: ok — suite support-faq" in out
    # the classic model: served, drift seen, retrained by the policy's job, gated, labelled
    assert "POST /v1/models/churn@production:predict x15" in out
    assert "churn-drift: fired" in out and "retrain: ok — retraining job" in out
    assert "label 'production' moved to churn@2" in out
    assert (tmp_path / "demo" / "churn" / "drift.html").is_file()
    reg = Registry(RegistrySettings(data_dir=tmp_path / "demo"), actor="check")
    try:
        drifts = {r.params["current"]: r for r in reg.runs.list("drift", limit=20)}
        assert drifts["model:churn@production:1h"].metrics["dataset_drift"] == 1
        assert drifts["model:churn@production:1h"].params["subject"] == "model:churn@1"
        traffic = [r for c, r in drifts.items() if c.startswith("calls:model=support-bot")]
        assert traffic and traffic[0].metrics["dataset_drift"] == 1
        assert reg.labels.of("model", "churn")["production"] == 2
        moves = [(m.label, m.from_version, m.to_version)
                 for m in reg.labels.history("model", "churn")]  # fmt: skip
        assert ("production", 1, 2) in moves
        assert reg.models.get("churn@2").spec["reference"] == "churn-train@2"
        [job] = reg.jobs.list("command", limit=5)
        assert job.status == "succeeded" and job.result["promoted"] is True
        fired = reg.runs.list("monitor", limit=5)
        assert {r.name for r in fired if r.tags.get("decision") == "fired"} == {
            "support-traffic", "churn-drift"}  # fmt: skip
    finally:
        reg.close()
