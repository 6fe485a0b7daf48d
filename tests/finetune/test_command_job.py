"""Retraining a scikit-learn model as a ``command`` job (issue 12, contract C).

A real training script (LogisticRegression on a CSV dataset version) is run by a real worker
loop (and, once, by ``lockgate finetune worker`` as a process): the new version is registered
with lineage and gated, the label moves only on a pass, and a crash, a timeout, a missing or
refused output, or a bad entry point fails the job with its reason. Every test runs on SQLite
and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from lockgate.finetune import Worker, WorkerSettings
from lockgate.finetune.command import COMMAND_KIND, CommandSpec, submit_retrain
from lockgate.finetune.errors import SpecInvalid
from lockgate.registry import Registry, RegistrySettings

pytest.importorskip("sklearn")
pytest.importorskip("skops")
pd = pytest.importorskip("pandas")

TRAIN = """
import csv, json, os, pickle, sys, time
mode = sys.argv[1] if len(sys.argv) > 1 else "good"
print("env:", ",".join(sorted(k for k in os.environ if k.startswith("LOCKGATE_"))))
print("cwd empty:", os.listdir(".") == [])
if mode == "sleep":
    time.sleep(300)
if mode == "crash":
    print("boom: column churn is missing", file=sys.stderr)
    sys.exit(3)
if mode == "nooutput":
    sys.exit(0)
if mode == "chatty":
    for i in range(50):
        print("line", i)
if mode == "pickle":
    class Payload:
        def __reduce__(self):
            return (open, (sys.argv[2], "w"))
    with open(os.environ["LOCKGATE_OUTPUT"], "wb") as f:
        pickle.dump(Payload(), f)
    sys.exit(0)
import pandas as pd
import skops.io as sio
from sklearn.linear_model import LogisticRegression
frame = pd.read_csv(os.environ["LOCKGATE_DATASET"])
model = LogisticRegression().fit(frame[["x1", "x2"]], frame["y"])
if mode == "system":
    sio.dump({"model": model, "hook": os.system}, os.environ["LOCKGATE_OUTPUT"])
    sys.exit(0)
sio.dump(model, os.environ["LOCKGATE_OUTPUT"])
with open(os.environ["LOCKGATE_META"], "w") as f:
    json.dump({"metrics": {"train_accuracy": model.score(frame[["x1", "x2"]], frame["y"])}}, f)
print("trained on", len(frame), "rows")
"""

JOB_VARIABLES = ("LOCKGATE_DATASET,LOCKGATE_DATASET_REF,LOCKGATE_JOB_ID,LOCKGATE_META,"
                 "LOCKGATE_MODEL,LOCKGATE_OUTPUT,LOCKGATE_PARENT,LOCKGATE_RUN_ID")  # fmt: skip


def frame(n: int, seed: int, *, flipped: bool = False) -> Any:
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    y = ((x[:, 0] + x[:, 1]) > 0).astype(int)
    return pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "y": 1 - y if flipped else y})


@pytest.fixture
def churn(registry: Registry, tmp_path: Path) -> dict[str, Path]:
    """churn@1 (on churn-train@1, its reference) holding ``production``; a training script,
    churn-train@2 (more rows) and @3 (labels flipped), and an eval suite gating accuracy."""
    from sklearn.linear_model import LogisticRegression

    first = frame(120, 1)
    first.to_csv(tmp_path / "train1.csv", index=False)
    registry.datasets.add("churn-train", tmp_path / "train1.csv")
    model = LogisticRegression().fit(first[["x1", "x2"]], first["y"])
    registry.models.register_sklearn("churn", model, reference="churn-train@1", target="y",
                                     spec={"task": "classification"})  # fmt: skip
    registry.labels.set("model", "churn", "production", 1)
    frame(300, 2).to_csv(tmp_path / "train2.csv", index=False)
    registry.datasets.add("churn-train", tmp_path / "train2.csv")
    frame(300, 3, flipped=True).to_csv(tmp_path / "train3.csv", index=False)
    registry.datasets.add("churn-train", tmp_path / "train3.csv")
    rows = frame(60, 4).to_dict(orient="records")
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump({
        "name": "churn-accuracy", "dataset": "eval.jsonl", "reference": "y",
        "target": {"kind": "sklearn", "model": "registry:churn@production",
                   "features": ["x1", "x2"]},
        "scorers": ["accuracy"], "gates": ["accuracy >= 0.8"],
    }))  # fmt: skip
    (tmp_path / "train.py").write_text(TRAIN)
    return {"suite": tmp_path / "suite.yaml", "script": tmp_path / "train.py"}


def settings(tmp_path: Path, **over: Any) -> WorkerSettings:
    return WorkerSettings(work_dir=tmp_path / "work", heartbeat_interval_s=0.2, **over)


def work(registry: Registry, tmp_path: Path, **over: Any) -> int:
    return Worker(registry, settings(tmp_path, **over)).run(once=True)


def entry(script: Path, *args: str) -> list[str]:
    return [sys.executable, str(script), *args]


def messages(registry: Registry, job_id: str) -> list[str]:
    return [e.message for e in registry.jobs.events(job_id)]


def test_a_pass_registers_a_version_with_lineage_and_moves_the_label(
    registry: Registry, churn: dict[str, Path], tmp_path: Path
) -> None:
    job = submit_retrain(registry, "churn", dataset="churn-train@2", entry=entry(churn["script"]),
                         label="production", suite=churn["suite"])  # fmt: skip
    assert job.kind == COMMAND_KIND and job.status == "queued"
    spec = CommandSpec.model_validate(job.spec)
    assert spec.dataset == "churn-train@2" and spec.parent == "churn@1"
    assert spec.suite_digest and spec.suite_digest.startswith("sha256:")
    assert spec.submitted_by.via == "cli"

    assert work(registry, tmp_path) == 1
    done = registry.jobs.get(job.id)
    assert done.status == "succeeded", done.error
    assert done.result["model"] == "churn@2" and done.result["promoted"] is True
    assert done.result["eval"]["verdict"] == "pass"
    assert registry.models.get("churn@production").version == 2
    new, old = registry.models.get("churn@2"), registry.models.get("churn@1")
    # the reference, target and so the input schema are the parent's
    assert new.spec["reference"] == "churn-train@1" and new.spec["target"] == "y"
    assert new.spec["input_schema"] == old.spec["input_schema"]
    assert new.spec["task"] == "classification" and new.spec["dataset"] == "churn-train@2"
    run = registry.runs.get(done.result["run_id"])
    assert run.kind == "retrain" and run.status == "succeeded"
    assert run.metrics["train_accuracy"] > 0.9
    edges = {(e.subject_type, e.subject_ref, e.role) for e in run.lineage}
    assert edges == {("dataset", "churn-train@2", "input"), ("model", "churn@1", "input"),
                     ("model", "churn@2", "output")}  # fmt: skip
    seen = messages(registry, job.id)
    assert f"env: {JOB_VARIABLES}" in seen  # the worker's LOCKGATE_* settings are not passed
    assert "cwd empty: True" in seen and "trained on 300 rows" in seen
    assert "label 'production' moved to churn@2" in seen
    assert registry.models.load_sklearn("churn@production").predict(
        pd.DataFrame({"x1": [2.0], "x2": [1.0]}))[0] == 1  # fmt: skip


def test_a_failed_gate_keeps_the_label_and_records_why(
    registry: Registry, churn: dict[str, Path], tmp_path: Path
) -> None:
    job = submit_retrain(registry, "churn", dataset="churn-train@3", entry=entry(churn["script"]),
                         label="production", suite=churn["suite"])  # fmt: skip
    work(registry, tmp_path)
    done = registry.jobs.get(job.id)
    assert done.status == "succeeded", done.error  # registered, not promoted
    assert done.result["model"] == "churn@2" and done.result["promoted"] is False
    evaluation = done.result["eval"]
    assert evaluation["verdict"] == "fail" and evaluation["labelled"] is False
    assert any("accuracy" in reason for reason in evaluation["refused"])
    assert registry.models.get("churn@production").version == 1
    assert any(m.startswith("label 'production' not moved") for m in messages(registry, job.id))
    assert "not promoted" in messages(registry, job.id)[-1]


def test_a_protected_label_waits_for_an_approver_after_a_passing_gate(
    registry: Registry, churn: dict[str, Path], tmp_path: Path
) -> None:
    """The approval rule binds jobs as it binds the API and the CLI: the gate passes, the
    version is registered, and the move becomes a request an approver decides on."""
    registry.labels.protect("model", "churn", "production", 1)
    job = submit_retrain(registry, "churn", dataset="churn-train@2", entry=entry(churn["script"]),
                         label="production", suite=churn["suite"])  # fmt: skip
    work(registry, tmp_path)
    done = registry.jobs.get(job.id)
    assert done.status == "succeeded", done.error
    assert done.result["promoted"] is False and done.result["eval"]["verdict"] == "pass"
    [request] = registry.labels.requests("model", "churn", "production")
    assert request.to_version == 2 and done.result["eval"]["approval_request"] == request.id
    assert registry.models.get("churn@production").version == 1
    said = [m for m in messages(registry, job.id) if "not moved" in m]
    assert said and "waits for 1 approver" in said[0] and "eval failed" not in " ".join(said)
    registry.labels.approve("model", "churn", "production", request.id, actor="reviewer")
    assert registry.models.get("churn@production").version == 2


def test_an_edited_suite_is_not_the_pinned_one(
    registry: Registry, churn: dict[str, Path], tmp_path: Path
) -> None:
    job = submit_retrain(registry, "churn", dataset="churn-train@2", entry=entry(churn["script"]),
                         label="production", suite=churn["suite"])  # fmt: skip
    doc = yaml.safe_load(churn["suite"].read_text())
    churn["suite"].write_text(yaml.safe_dump({**doc, "gates": ["accuracy >= 0.1"]}))
    work(registry, tmp_path)
    done = registry.jobs.get(job.id)
    assert done.status == "succeeded" and done.result["promoted"] is False
    assert "changed since the job was submitted" in done.result["eval"]["refused"][0]
    assert registry.models.get("churn@production").version == 1


def test_a_label_without_a_suite_or_policy_is_refused_at_submit(
    registry: Registry, churn: dict[str, Path]
) -> None:
    with pytest.raises(SpecInvalid, match="needs --suite, or a gate policy"):
        submit_retrain(registry, "churn", dataset="churn-train@2",
                       entry=entry(churn["script"]), label="production")  # fmt: skip
    assert registry.jobs.list(COMMAND_KIND) == []


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("crash", "exited with status 3: boom: column churn is missing"),
        ("nooutput", "exited 0 but wrote no model"),
        ("system", "holds types lockgate will not load: posix.system"),
    ],
)
def test_a_failed_entry_point_fails_the_job_with_its_reason(
    registry: Registry, churn: dict[str, Path], tmp_path: Path, mode: str, reason: str
) -> None:
    job = submit_retrain(registry, "churn", dataset="churn-train@2",
                         entry=entry(churn["script"], mode), label="production",
                         suite=churn["suite"])  # fmt: skip
    work(registry, tmp_path)
    done = registry.jobs.get(job.id)
    assert done.status == "failed" and reason in (done.error or "")
    assert registry.runs.get(done.run_id or "").status == "failed"
    assert [v.version for v in registry.models.versions("churn")] == [1]
    assert registry.models.get("churn@production").version == 1


def test_a_pickle_payload_is_refused_without_being_loaded(
    registry: Registry, churn: dict[str, Path], tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    job = submit_retrain(registry, "churn", dataset="churn-train@2",
                         entry=entry(churn["script"], "pickle", str(marker)))  # fmt: skip
    work(registry, tmp_path)
    done = registry.jobs.get(job.id)
    assert done.status == "failed" and "not a readable skops file" in (done.error or "")
    assert not marker.exists()
    assert [v.version for v in registry.models.versions("churn")] == [1]


def test_a_timeout_stops_the_entry_point_and_fails_the_job(
    registry: Registry, churn: dict[str, Path], tmp_path: Path
) -> None:
    job = submit_retrain(registry, "churn", dataset="churn-train@2",
                         entry=entry(churn["script"], "sleep"))  # fmt: skip
    work(registry, tmp_path, command_timeout_s=1.0)
    done = registry.jobs.get(job.id)
    assert done.status == "failed"
    assert "timed out after 1 s (finetune.command_timeout_s)" in (done.error or "")


def test_output_lines_are_kept_as_events_up_to_the_bound(
    registry: Registry, churn: dict[str, Path], tmp_path: Path
) -> None:
    job = submit_retrain(registry, "churn", dataset="churn-train@2",
                         entry=entry(churn["script"], "chatty"))  # fmt: skip
    work(registry, tmp_path, command_log_lines=10)
    done = registry.jobs.get(job.id)
    assert done.status == "succeeded", done.error
    output = [e for e in registry.jobs.events(job.id) if e.data.get("stream") == "stdout"]
    assert len(output) == 10
    assert "… 43 more output line(s) not kept" in messages(registry, job.id)


def test_a_bad_entry_point_is_refused_at_submit_or_fails_the_job(
    registry: Registry, churn: dict[str, Path], tmp_path: Path
) -> None:
    bad: list[Any] = [["no-such-program-here", "x"], "python train.py", [], ["./missing.py"]]
    for argv in bad:
        with pytest.raises(SpecInvalid, match="entry"):
            submit_retrain(registry, "churn", dataset="churn-train@2", entry=argv)
    with pytest.raises(SpecInvalid, match="dataset"):
        submit_retrain(registry, "churn", dataset="nope@1", entry=entry(churn["script"]))
    program = tmp_path / "train-prog"
    program.write_text(f"#!{sys.executable}\n" + TRAIN)
    program.chmod(0o755)
    job = submit_retrain(registry, "churn", dataset="churn-train@2", entry=[str(program)])
    program.unlink()  # gone by the time a worker runs it
    work(registry, tmp_path)
    done = registry.jobs.get(job.id)
    assert done.status == "failed" and "could not start" in (done.error or "")


def test_a_command_job_not_queued_by_the_local_user_is_not_run(
    registry: Registry, churn: dict[str, Path], tmp_path: Path
) -> None:
    job = submit_retrain(registry, "churn", dataset="churn-train@2", entry=entry(churn["script"]))
    forged = {**job.spec, "submitted_by": {"via": "http", "principal": "key-1", "name": "ci",
                                           "holds_label_scope": True}}  # fmt: skip
    registry.jobs.cancel(job.id)
    other, _ = registry.jobs.create(COMMAND_KIND, forged)
    work(registry, tmp_path)
    done = registry.jobs.get(other.id)
    assert done.status == "failed" and "not one submitted via http" in (done.error or "")
    assert [v.version for v in registry.models.versions("churn")] == [1]


def test_a_job_whose_worker_died_is_claimed_again(
    registry: Registry, churn: dict[str, Path], tmp_path: Path
) -> None:
    job = submit_retrain(registry, "churn", dataset="churn-train@2", entry=entry(churn["script"]))
    claimed = registry.jobs.claim("dead-worker", COMMAND_KIND)
    assert claimed is not None and claimed.id == job.id
    time.sleep(0.05)  # the dead worker's last heartbeat is now older than stale_after_s
    assert work(registry, tmp_path, stale_after_s=0.01) == 1
    done = registry.jobs.get(job.id)
    assert done.status == "succeeded" and done.attempts == 2 and done.result["model"] == "churn@2"
    assert any("stopped heartbeating; requeued" in m for m in messages(registry, job.id))


def _cli_env(registry_settings: RegistrySettings, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKGATE_")}
    env.update({"LOCKGATE_DATA_DIR": str(registry_settings.data_dir), "HOME": str(home)})
    if registry_settings.database_url:
        env["LOCKGATE_DATABASE_URL"] = registry_settings.database_url
    return env


def test_the_cli_queues_a_worker_process_runs_and_status_reports(
    registry: Registry, registry_settings: RegistrySettings, churn: dict[str, Path],
    tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)  # train.py and suite.yaml given relative to here
    code, out, err = cli("finetune", "retrain", "churn", "--dataset", "churn-train@3",
                         "--suite", "suite.yaml", "--label", "production", "--json",
                         "--", sys.executable, "train.py")  # fmt: skip
    assert code == 0, err
    job_id = json.loads(out)["id"]
    assert json.loads(out)["spec"]["entry"] == [sys.executable, str(churn["script"])]
    (tmp_path / "home").mkdir()
    worker = subprocess.run(
        [sys.executable, "-m", "lockgate.gateway.cli", "finetune", "worker", "--once",
         "--kind", "command", "--work-dir", str(tmp_path / "w")],
        cwd=tmp_path / "home", env=_cli_env(registry_settings, tmp_path / "home"),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert worker.returncode == 0, worker.stderr
    assert "1 job(s) handled" in worker.stderr
    code, out, err = cli("finetune", "status", job_id[:12])
    assert code == 0, err
    assert "churn-train@3" in out and "churn@2" in out
    assert "label 'production' not moved" in out
    code, out, _ = cli("finetune", "list", "--kind", "command", "--json")
    assert [j["id"] for j in json.loads(out)] == [job_id]
    code, out, err = cli("finetune", "retrain", "churn", "--dataset", "churn-train@2",
                         "--", "no-such-program-here")  # fmt: skip
    assert code == 2 and "not a program on PATH" in (out + err)
