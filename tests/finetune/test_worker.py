"""The worker end to end: claim, train, register with lineage; cancel; SIGKILL and resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from lockgate.finetune import Worker, WorkerSettings, submit_job
from lockgate.finetune.reporting import RegistryHooks
from lockgate.registry import Registry, RegistrySettings
from tests.finetune.conftest import chat_rows, write_jsonl

ROOT = Path(__file__).resolve().parents[2]


def _spec(model: Path, train: Path, **training: Any) -> dict[str, Any]:
    return {
        "base_model": str(model),
        "training_file": str(train),
        "validation_file": str(train),
        "output_model": "qa-bot",
        "gpus": 0,
        "lora": {"r": 8},
        "training": {
            "epochs": 2,
            "batch_size": 4,
            "learning_rate": 1e-2,
            "checkpoint_every": 2,
            **training,
        },
    }


def _settings(tmp_path: Path, **extra: Any) -> WorkerSettings:
    values: dict[str, Any] = {"heartbeat_interval_s": 0.1, "stale_after_s": 60, **extra}
    return WorkerSettings(work_dir=tmp_path / "work", **values)


def test_worker_trains_and_registers_with_lineage(
    registry: Registry, tiny_model: Path, tmp_path: Path
) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(2))
    registry.models.register("tiny", "hf", path=tiny_model)
    job, _ = submit_job(registry, _spec(Path("registry:tiny@latest"), train))
    # the claim is atomic: a second worker finds nothing while the first holds the job
    worker = Worker(registry, _settings(tmp_path), worker_id="w1")
    done = worker.poll_once()
    assert done is not None and done.status == "succeeded", done and done.error
    assert Worker(registry, _settings(tmp_path), worker_id="w2").poll_once() is None
    assert done.result["model"] == "qa-bot@1" and done.result["steps"] == 4
    version = registry.models.get("qa-bot@1")
    assert version.flavor == "lora" and version.spec["base_model"] == "registry:tiny@1"
    assert version.spec["hyperparameters"]["lora"]["r"] == 8
    run = registry.runs.get(done.run_id or "")
    edges = {(e.subject_type, e.subject_ref, e.role) for e in run.lineage}
    assert ("model", "tiny@1", "input") in edges
    assert ("model", "qa-bot@1", "output") in edges
    assert ("dataset", "qa-bot-training@1", "input") in edges
    assert run.status == "succeeded" and run.params["job"] == job.id
    assert {"loss", "val_loss", "steps"} <= set(run.metrics)
    steps = sorted({p.step for p in run.series if p.key == "loss"})
    assert steps == [1, 2, 3, 4]
    messages = [e.message for e in registry.jobs.events(job.id)]
    assert any(m.startswith("step 4/4: loss") for m in messages)
    assert any("registered qa-bot@1" in m for m in messages)
    with pytest.raises(Exception, match="adapter"):  # the artifact is a PEFT adapter
        registry.models.register("x", "lora", {"base_model": "b"}, path=tmp_path)
    adapter = registry.models.fetch("qa-bot@1", tmp_path / "adapter")
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 8


def test_two_workers_claim_different_jobs(
    registry: Registry, tiny_model: Path, tmp_path: Path
) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows())
    first, _ = submit_job(registry, _spec(tiny_model, train))
    second, _ = submit_job(registry, _spec(tiny_model, train))
    claims = [registry.jobs.claim(f"w{i}", "finetune") for i in range(3)]
    assert {c.id for c in claims if c} == {first.id, second.id}
    assert claims[2] is None


def test_cancel_stops_a_running_job(
    registry: Registry, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(2))
    job, _ = submit_job(registry, _spec(tiny_model, train, epochs=50))
    slow = RegistryHooks.on_step

    def on_step(self: RegistryHooks, step: int, total: int, metrics: dict[str, float]) -> None:
        slow(self, step, total, metrics)
        time.sleep(0.05)

    monkeypatch.setattr(RegistryHooks, "on_step", on_step)
    outcome: list[Any] = []
    worker = Worker(registry, _settings(tmp_path), worker_id="w1")
    thread = threading.Thread(target=lambda: outcome.append(worker.poll_once()))
    thread.start()
    deadline = time.monotonic() + 60
    while not any(e.message.startswith("step 2/") for e in registry.jobs.events(job.id)):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    registry.jobs.cancel(job.id)
    thread.join(timeout=60)
    final = registry.jobs.get(job.id)
    assert final.status == "cancelled" and outcome[0].status == "cancelled"
    assert registry.runs.get(final.run_id or "").status == "cancelled"
    assert len([e for e in registry.jobs.events(job.id) if e.message.startswith("step ")]) < 100
    assert registry.models.list() == [] or all(m.name != "qa-bot" for m in registry.models.list())


CHILD = """
import sys, time, torch
torch.set_num_threads(1)
from pathlib import Path
from lockgate.registry import Registry, RegistrySettings
from lockgate.finetune import Worker, WorkerSettings
from lockgate.finetune.reporting import RegistryHooks
slow = RegistryHooks.on_step
def on_step(self, step, total, metrics):
    slow(self, step, total, metrics); time.sleep(0.15)
RegistryHooks.on_step = on_step
registry = Registry(RegistrySettings.model_validate_json(sys.argv[1]))
Worker(registry, WorkerSettings(work_dir=Path(sys.argv[2]), heartbeat_interval_s=0.1),
       worker_id="doomed").poll_once()
"""


@pytest.mark.slow
def test_sigkilled_worker_resumes_from_checkpoint_with_same_steps(
    tiny_model: Path, tmp_path: Path, sqlite_template: Path
) -> None:
    """A worker is SIGKILLed after a checkpoint; a worker on another machine (another
    work_dir) takes the requeued job, fetches the checkpoint from the artifact store and ends
    on the same step and loss as an uninterrupted run. On SQLite only (claims and heartbeats
    run on both backends in the tests above)."""
    shutil.copy(sqlite_template, tmp_path / "registry.db")
    registry_settings = RegistrySettings(data_dir=tmp_path)
    registry = Registry(registry_settings, actor="tester")
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(2))
    spec = _spec(tiny_model, train, epochs=6)  # 2 steps per epoch -> 12 steps
    reference, _ = submit_job(registry, spec)
    ref_done = Worker(registry, _settings(tmp_path / "ref")).poll_once()
    assert ref_done is not None and ref_done.id == reference.id
    assert ref_done.status == "succeeded" and ref_done.result["steps"] == 12

    job, _ = submit_job(registry, spec)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, registry_settings.model_dump_json(), str(tmp_path / "work")],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    deadline = time.monotonic() + 90
    while not any(e.message == "checkpoint at step 4" for e in registry.jobs.events(job.id)):
        assert child.poll() is None, "the worker ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert registry.jobs.get(job.id).status == "running"  # nobody knows yet
    time.sleep(1.0)
    # another machine: its work_dir holds none of the dead worker's checkpoints
    elsewhere = _settings(tmp_path / "machine-b", stale_after_s=0.5)
    resumer = Worker(registry, elsewhere, worker_id="rescuer")
    done = resumer.poll_once()
    assert done is not None and done.id == job.id
    assert done.status == "succeeded", done.error
    assert done.attempts == 2
    assert 4 <= done.result["resumed_from"] < 12
    assert done.result["steps"] == done.result["total_steps"] == ref_done.result["steps"]
    assert done.result["metrics"]["loss"] == pytest.approx(
        ref_done.result["metrics"]["loss"], rel=1e-3
    )
    events = [e.message for e in registry.jobs.events(job.id)]
    assert any("stopped heartbeating; requeued" in m for m in events)
    assert any("resuming run" in m for m in events)
    resumed = done.result["resumed_from"]
    assert f"fetched the checkpoint at step {resumed} from the artifact store" in events
    registry.close()


def test_eval_hook_labels_or_refuses_without_failing_the_job(
    registry: Registry, tiny_model: Path, tmp_path: Path
) -> None:
    from lockgate.evals import SuiteInvalid

    train = write_jsonl(tmp_path / "train.jsonl", chat_rows())
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: qa\n")
    spec = {**_spec(tiny_model, train, epochs=1), "eval": {"suite": str(suite)}}
    seen: list[str] = []

    def passing(reg: Registry, job_spec: Any, version: Any) -> dict[str, Any]:
        seen.append(f"{version.name}@{version.version}")
        reg.labels.set("model", version.name, job_spec.eval.label, version.version, reason="ok")
        return {"verdict": "pass", "labelled": job_spec.eval.label}

    submit_job(registry, spec)
    done = Worker(registry, _settings(tmp_path), eval_hook=passing).poll_once()
    assert done is not None and done.status == "succeeded"
    assert done.result["eval"]["labelled"] == "production" and seen == ["qa-bot@1"]
    assert registry.models.get("qa-bot@production").version == 1

    def broken(reg: Registry, job_spec: Any, version: Any) -> dict[str, Any]:
        raise SuiteInvalid("the suite has no dataset")

    spec["training"]["epochs"] = 2
    submit_job(registry, spec)
    done = Worker(registry, _settings(tmp_path), eval_hook=broken).poll_once()
    assert done is not None and done.status == "succeeded"
    assert done.result["eval"] == {"labelled": False, "error": "the suite has no dataset"}
    assert registry.models.get("qa-bot@production").version == 1


def test_a_resumed_training_replaces_the_points_logged_after_its_checkpoint(
    registry: Registry, tiny_model: Path, tmp_path: Path
) -> None:
    """An attempt that dies after logging step 5 but checkpointing at 4 is resumed from 4:
    the run's series shows each step once, the values of the attempt that finished."""
    from lockgate.finetune.spec import parse_spec
    from lockgate.finetune.trainer import TrainingStopped, TrainInputs, train

    train_file = write_jsonl(tmp_path / "train.jsonl", chat_rows(2))
    spec_data = _spec(tiny_model, train_file, epochs=3, checkpoint_every=4)  # 6 steps
    job, _ = submit_job(registry, spec_data)
    run = registry.runs.create("finetune", name=job.id)
    inputs = TrainInputs(
        parse_spec(spec_data), str(tiny_model), train_file, None, tmp_path / "out", tmp_path / "ck"
    )
    seen: list[int] = []

    class Dying(RegistryHooks):
        def on_step(self, step: int, total: int, metrics: dict[str, float]) -> None:
            super().on_step(step, total, metrics)
            seen.append(step)

    with pytest.raises(TrainingStopped):
        train(inputs, Dying(registry, job.id, run.id, lambda: bool(seen) and seen[-1] >= 5))
    logged = [p.step for p in registry.runs.get(run.id).series if p.key == "loss"]
    assert logged == [1, 2, 3, 4, 5]  # step 5 is past the last checkpoint (4)

    result = train(inputs, RegistryHooks(registry, job.id, run.id, lambda: False))
    assert result.resumed_from == 4 and result.steps == 6
    series = registry.runs.get(run.id).series
    assert [p.step for p in series if p.key == "loss"] == [1, 2, 3, 4, 5, 6]
    for key in {p.key for p in series}:
        steps = [p.step for p in series if p.key == key]
        assert len(steps) == len(set(steps)), key
    [event] = [e for e in registry.jobs.events(job.id) if e.message.startswith("resuming from")]
    assert event.message.startswith("resuming from the checkpoint at step 4; ")
    assert event.data["discarded_points"] == len({p.key for p in series if p.step == 5})
