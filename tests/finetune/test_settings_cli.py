"""The ``finetune`` section of lockgate.yaml reaches the worker the CLI starts: the
Kubernetes Job's image, namespace and node selector, and the worker's own settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lockgate.finetune import submit_job
from lockgate.gateway.cli import app
from lockgate.registry import Registry, RegistrySettings
from tests.finetune.conftest import chat_rows, write_jsonl


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("LOCKGATE_")]:
        monkeypatch.delenv(key)


def test_worker_takes_the_kubernetes_job_settings_from_the_config(
    registry: Registry, registry_settings: RegistrySettings, tiny_model: Path, tmp_path: Path
) -> None:
    train = write_jsonl(tmp_path / "t.jsonl", chat_rows())
    spec = {"base_model": str(tiny_model), "training_file": str(train), "output_model": "m",
            "gpus": 1, "executor": "kubernetes"}  # fmt: skip
    job, _ = submit_job(registry, spec)
    config = tmp_path / "lockgate.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "registry": registry_settings.model_dump(mode="json"),
                "finetune": {
                    "work_dir": str(tmp_path / "work"),
                    "heartbeat_interval_s": 0.5,
                    "executors": {
                        "image": "registry.example.com/lockgate:1.4",
                        "namespace": "ml-jobs",
                        "node_selector": {"nvidia.com/gpu.product": "H100"},
                        "service_account": "trainer",
                    },
                },
            }
        )
    )

    done = CliRunner().invoke(app, ["--config", str(config), "finetune", "worker", "--once"])
    assert done.exit_code == 0, done.output

    manifest = tmp_path / "work" / "jobs" / job.id / "output" / "k8s-job.yaml"
    doc = yaml.safe_load(manifest.read_text())
    pod = doc["spec"]["template"]["spec"]
    assert doc["metadata"]["namespace"] == "ml-jobs"
    assert pod["containers"][0]["image"] == "registry.example.com/lockgate:1.4"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "H100"}
    assert pod["serviceAccountName"] == "trainer"
    assert registry.jobs.get(job.id).status == "running"  # handed over to the pod


def test_worker_options_override_the_config() -> None:
    """An option given on the command line wins; one not given leaves the file's value."""
    from lockgate.finetune.cli import _worker_settings
    from lockgate.finetune.settings import WorkerSettings

    class State:
        finetune_settings = WorkerSettings.model_validate(
            {"poll_interval_s": 9, "upload_checkpoints": False,
             "executors": {"namespace": "ml", "kubectl_apply": False}}
        )  # fmt: skip

    class Ctx:
        obj = State()

    settings = _worker_settings(
        Ctx(),  # type: ignore[arg-type]
        poll_interval_s=None, upload_checkpoints=None, gpus=2, executors={"kubectl_apply": True},
    )  # fmt: skip
    assert (settings.poll_interval_s, settings.upload_checkpoints, settings.gpus) == (9, False, 2)
    assert (settings.executors.namespace, settings.executors.kubectl_apply) == ("ml", True)
