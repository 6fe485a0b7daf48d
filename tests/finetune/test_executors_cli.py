"""Executors (the torchrun command, the Kubernetes manifest) and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from lockgate.finetune import submit_job
from lockgate.finetune.cli import finetune_app
from lockgate.finetune.executors import (
    ExecutorSettings,
    KubernetesExecutor,
    TorchrunExecutor,
    TrainRequest,
    make_executor,
)
from lockgate.finetune.spec import parse_spec
from lockgate.finetune.trainer import NullHooks, TrainInputs
from lockgate.finetune.worker import Worker, WorkerSettings
from lockgate.registry import Registry, RegistrySettings
from tests.finetune.conftest import chat_rows, write_jsonl

ROOT = Path(__file__).resolve().parents[2]


def _request(tmp_path: Path, gpus: int) -> TrainRequest:
    spec = parse_spec(
        {"base_model": "b", "training_file": "file-x", "output_model": "m", "gpus": gpus}
    )
    inputs = TrainInputs(
        spec, "/models/b", tmp_path / "t.jsonl", None, tmp_path / "out", tmp_path / "ckpt"
    )
    return TrainRequest("ftjob-abc", "w-1", "run1", inputs, gpus, {"data_dir": str(tmp_path)})


def test_torchrun_command_for_n_gpus(tmp_path: Path) -> None:
    executor = make_executor("torchrun")
    assert isinstance(executor, TorchrunExecutor)
    request_file = tmp_path / "request.json"
    assert executor.command(_request(tmp_path, 4), request_file) == [
        "torchrun",
        "--standalone",
        "--nproc_per_node=4",
        "-m",
        "lockgate.finetune.launch",
        str(request_file),
    ]


def test_kubernetes_manifest_and_kubectl_apply(tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    kubectl = tmp_path / "kubectl"
    kubectl.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    kubectl.chmod(0o755)
    settings = ExecutorSettings(
        image="registry.local/lockgate:1.2",
        namespace="ml",
        kubectl=str(kubectl),
        kubectl_apply=True,
        node_selector={"gpu": "h100"},
    )
    executor = KubernetesExecutor(settings)
    request = _request(tmp_path, 2)
    assert executor.run(request, NullHooks()) is None  # handed over
    written = tmp_path / "out" / "k8s-job.yaml"
    doc = yaml.safe_load(written.read_text())
    assert doc == executor.manifest(request)
    assert (doc["apiVersion"], doc["kind"], doc["metadata"]["namespace"]) == (
        "batch/v1",
        "Job",
        "ml",
    )
    pod = doc["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "registry.local/lockgate:1.2"
    assert container["command"] == [
        "lockgate",
        "finetune",
        "run",
        "ftjob-abc",
        "--worker-id",
        "w-1",
        "--gpus",
        "2",
    ]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    assert container["envFrom"] == [{"secretRef": {"name": "lockgate-registry"}}]
    assert pod["restartPolicy"] == "Never" and pod["nodeSelector"] == {"gpu": "h100"}
    assert calls.read_text().strip() == f"apply -f {written}"


def test_kubernetes_worker_hands_the_claim_over(
    registry: Registry, tiny_model: Path, tmp_path: Path
) -> None:
    train = write_jsonl(tmp_path / "t.jsonl", chat_rows())
    spec = {
        "base_model": str(tiny_model),
        "training_file": str(train),
        "output_model": "m",
        "gpus": 1,
        "executor": "kubernetes",
    }
    job, _ = submit_job(registry, spec)  # no local GPU check for kubernetes
    done = Worker(registry, WorkerSettings(work_dir=tmp_path / "w"), worker_id="disp").poll_once()
    assert done is not None and done.status == "running" and done.worker_id == "disp"
    manifest = tmp_path / "w" / "jobs" / job.id / "output" / "k8s-job.yaml"
    assert "nvidia.com/gpu" in manifest.read_text()
    assert any("handed over" in e.message for e in registry.jobs.events(job.id))


class _State:
    def __init__(self, settings: RegistrySettings, finetune: WorkerSettings | None = None) -> None:
        self.registry_settings = settings
        self.finetune_settings = finetune or WorkerSettings()
        self._registry = Registry(settings)

    def registry(self) -> Registry:
        return self._registry


def _cli(settings: RegistrySettings, *args: str) -> Any:
    app = typer.Typer()
    app.add_typer(finetune_app, name="finetune")
    return CliRunner().invoke(app, ["finetune", *args], obj=_State(settings))


def test_cli_submit_list_status_logs_cancel(
    registry_settings: RegistrySettings, tiny_model: Path, tmp_path: Path
) -> None:
    train = write_jsonl(tmp_path / "t.jsonl", chat_rows())
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "base_model": str(tiny_model),
                "training_file": "t.jsonl",
                "output_model": "bot",
                "gpus": 0,
            }
        )
    )
    out = _cli(
        registry_settings,
        "submit",
        str(spec),
        "--epochs",
        "2",
        "--json",
        "--idempotency-key",
        "abc",
    )
    assert out.exit_code == 0, out.output
    job = json.loads(out.output)
    assert job["created"] and job["spec"]["training"]["epochs"] == 2
    assert job["spec"]["training_file"].startswith("file-") and train.exists()
    listed = _cli(registry_settings, "list", "--json")
    assert [j["id"] for j in json.loads(listed.output)] == [job["id"]]
    assert "queued" in _cli(registry_settings, "status", job["id"]).output
    assert "files validated" in _cli(registry_settings, "logs", job["id"]).output
    assert "cancelled" in _cli(registry_settings, "cancel", job["id"]).output

    bad = write_jsonl(tmp_path / "bad.jsonl", [{"messages": "nope"}])
    failed = _cli(
        registry_settings,
        "submit",
        "--base-model",
        str(tiny_model),
        "--training-file",
        str(bad),
        "--output-model",
        "bot",
        "--gpus",
        "0",
    )
    assert failed.exit_code != 0
    assert "line 1" in failed.exception.message and failed.exception.exit_code == 2


def test_cli_import_does_not_load_torch() -> None:
    code = "import sys, finetune, finetune.cli; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    )
    assert out.stdout.strip() == "False"


def test_missing_extra_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from lockgate.finetune import _torch
    from lockgate.registry.errors import MissingExtra

    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(MissingExtra, match=r"pip install 'lockgate\[finetune\]'"):
        _torch.require_stack()
