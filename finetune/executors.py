"""Executors: where a claimed job's training runs. One seam, three built-ins.

==========  =================================================================================
local       in this process (``train()``), stopped through the hooks on cancel
torchrun    ``torchrun --standalone --nproc_per_node N -m lockgate.finetune.launch REQUEST`` (DDP on
            one node); metrics are reported by rank 0, a cancel writes a ``STOP`` file
kubernetes  writes a ``batch/v1`` Job manifest (GPU requests, the lockgate image, the
            ``lockgate finetune run JOB --worker-id W`` command) and, when asked, applies it
            with ``kubectl apply -f``; the pod takes over the claim and its heartbeats
==========  =================================================================================

Add one with ``@register_executor("name")`` on a class taking :class:`ExecutorSettings`
(``finetune.executors`` in ``lockgate.yaml``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from lockgate.finetune.errors import SettingImpossible, TrainingFailed
from lockgate.finetune.settings import ExecutorSettings as ExecutorSettings  # also exported here
from lockgate.finetune.trainer import TrainHooks, TrainingStopped, TrainInputs, TrainResult


@dataclass(frozen=True)
class TrainRequest:
    job_id: str
    worker_id: str
    run_id: str
    inputs: TrainInputs
    gpus: int
    registry_settings: dict[str, Any]  # RegistrySettings as JSON, for processes we launch
    upload_checkpoints: bool = True

    def to_json(self) -> dict[str, Any]:
        i = self.inputs
        return {
            "job_id": self.job_id,
            "worker_id": self.worker_id,
            "run_id": self.run_id,
            "gpus": self.gpus,
            "registry_settings": self.registry_settings,
            "upload_checkpoints": self.upload_checkpoints,
            "spec": i.spec.model_dump(mode="json"),
            "base_model": i.base_model,
            "train_path": str(i.train_path),
            "val_path": str(i.val_path) if i.val_path else None,
            "output_dir": str(i.output_dir),
            "checkpoint_dir": str(i.checkpoint_dir),
        }


class Executor(Protocol):
    name: str

    def run(self, request: TrainRequest, hooks: TrainHooks) -> TrainResult | None:
        """Train and return the result, or None when the job was handed to another runner."""
        ...


EXECUTORS: dict[str, Callable[[ExecutorSettings], Executor]] = {}


def register_executor(name: str) -> Callable[[type[Any]], type[Any]]:
    def deco(cls: type[Any]) -> type[Any]:
        cls.name = name
        EXECUTORS[name] = cls
        return cls

    return deco


def make_executor(name: str, settings: ExecutorSettings | None = None) -> Executor:
    factory = EXECUTORS.get(name)
    if factory is None:
        raise SettingImpossible(
            f"unknown executor {name!r}; use one of {', '.join(sorted(EXECUTORS))}",
            param="executor",
        )
    return factory(settings or ExecutorSettings())


@register_executor("local")
class LocalExecutor:
    name = "local"

    def __init__(self, settings: ExecutorSettings) -> None:
        self.settings = settings

    def run(self, request: TrainRequest, hooks: TrainHooks) -> TrainResult | None:
        from lockgate.finetune.trainer import train

        return train(request.inputs, hooks)


def write_request(request: TrainRequest) -> Path:
    """The request file a launched process reads (0600: it holds the database URL)."""
    path = request.inputs.output_dir / "request.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(json.dumps(request.to_json()), encoding="utf-8")
    return path


@register_executor("torchrun")
class TorchrunExecutor:
    name = "torchrun"

    def __init__(self, settings: ExecutorSettings) -> None:
        self.settings = settings

    def command(self, request: TrainRequest, request_path: Path) -> list[str]:
        return [
            self.settings.torchrun,
            "--standalone",
            f"--nproc_per_node={max(request.gpus, 1)}",
            "-m",
            "lockgate.finetune.launch",
            str(request_path),
        ]

    def run(self, request: TrainRequest, hooks: TrainHooks) -> TrainResult | None:
        if shutil.which(self.settings.torchrun) is None:
            raise SettingImpossible(
                f"{self.settings.torchrun!r} is not on PATH; install "
                "lockgate[finetune] in this environment"
            )
        out = request.inputs.output_dir
        (out / "STOP").unlink(missing_ok=True)
        (out / "result.json").unlink(missing_ok=True)
        cmd = self.command(request, write_request(request))
        with (out / "launch.log").open("ab") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=Path.cwd())
            return self._wait(proc, out, hooks)

    def _wait(self, proc: subprocess.Popen[bytes], out: Path, hooks: TrainHooks) -> TrainResult:
        while proc.poll() is None:
            if hooks.should_stop():
                (out / "STOP").touch()
            time.sleep(self.settings.poll_interval_s)
        if (out / "STOP").exists() and proc.returncode == 3:
            raise TrainingStopped("stopped by request")
        if proc.returncode != 0 or not (out / "result.json").is_file():
            tail = (out / "launch.log").read_text(errors="replace")[-2000:]
            raise TrainingFailed(f"torchrun exited with {proc.returncode}:\n{tail}")
        return read_result(out / "result.json")


def read_result(path: Path) -> TrainResult:
    data = json.loads(path.read_text(encoding="utf-8"))
    return TrainResult(
        Path(data["adapter_dir"]),
        data["steps"],
        data["total_steps"],
        data["resumed_from"],
        data["tokens_seen"],
        data["metrics"],
    )


@register_executor("kubernetes")
class KubernetesExecutor:
    name = "kubernetes"

    def __init__(self, settings: ExecutorSettings) -> None:
        self.settings = settings

    def manifest(self, request: TrainRequest) -> dict[str, Any]:
        s, gpus = self.settings, max(request.gpus, 0)
        name = f"lockgate-{request.job_id}".lower().replace("_", "-")[:63]
        resources: dict[str, Any] = {"requests": {"cpu": "4", "memory": "16Gi"}}
        if gpus:
            resources["requests"]["nvidia.com/gpu"] = str(gpus)
            resources["limits"] = {"nvidia.com/gpu": str(gpus)}
        command = [
            "lockgate",
            "finetune",
            "run",
            request.job_id,
            "--worker-id",
            request.worker_id,
            "--gpus",
            str(gpus),
        ]
        pod: dict[str, Any] = {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "finetune",
                    "image": s.image,
                    "command": command,
                    "envFrom": [{"secretRef": {"name": s.registry_secret}}],
                    "env": [{"name": "LOCKGATE_DATA_DIR", "value": "/work"}],
                    "resources": resources,
                    "volumeMounts": [
                        {"name": "work", "mountPath": "/work"},
                        {"name": "shm", "mountPath": "/dev/shm"},
                    ],
                }
            ],
            "volumes": [
                {"name": "work", "emptyDir": {}},
                {"name": "shm", "emptyDir": {"medium": "Memory"}},
            ],
        }
        if s.service_account:
            pod["serviceAccountName"] = s.service_account
        if s.node_selector:
            pod["nodeSelector"] = dict(s.node_selector)
        labels = {
            "app.kubernetes.io/name": "lockgate",
            "app.kubernetes.io/component": "finetune",
            "lockgate.dev/job-id": request.job_id,
        }
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "namespace": s.namespace, "labels": labels},
            "spec": {
                "backoffLimit": 0,
                "ttlSecondsAfterFinished": 86400,
                "template": {"metadata": {"labels": labels}, "spec": pod},
            },
        }

    def run(self, request: TrainRequest, hooks: TrainHooks) -> TrainResult | None:
        path = request.inputs.output_dir / "k8s-job.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.manifest(request), sort_keys=False), encoding="utf-8")
        if not self.settings.kubectl_apply:
            return None
        if shutil.which(self.settings.kubectl) is None:
            raise SettingImpossible(f"{self.settings.kubectl!r} is not on PATH")
        done = subprocess.run(
            [self.settings.kubectl, "apply", "-f", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise TrainingFailed(f"kubectl apply failed: {done.stderr.strip()}")
        return None
