"""Typed settings of the ``finetune`` section of ``lockgate.yaml``: how a worker runs jobs
and how its executors launch them.

```yaml
finetune:
  work_dir: /var/lib/lockgate/finetune   # default: the registry's data_dir/finetune
  poll_interval_s: 5
  heartbeat_interval_s: 10
  stale_after_s: 120                     # requeue a job whose worker is silent this long
  command_timeout_s: 3600                # a retraining (command) job's entry point, per attempt
  executors:
    image: registry.example.com/lockgate:1.4   # the Kubernetes Job's image
    namespace: ml-jobs
    node_selector: {nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}
```

Light on purpose (pydantic only): the configuration loader imports it on every command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lockgate.registry.settings import reject_renamed

DEFAULT_IMAGE = "ghcr.io/lockgate/lockgate-worker:latest"


class ExecutorSettings(BaseModel):
    """How executors launch work (``finetune.executors``): the torchrun launcher, and the
    Kubernetes Job's image, namespace, service account and node selector."""

    model_config = ConfigDict(extra="forbid")

    torchrun: str = Field("torchrun", description="The torchrun launcher to call.")
    kubectl: str = Field("kubectl", description="The kubectl to apply Jobs with.")
    kubectl_apply: bool = Field(False, description="Apply the Job manifest (else only write it).")
    image: str = Field(
        DEFAULT_IMAGE, description="Image with lockgate[finetune] (deploy/Dockerfile.worker)."
    )
    namespace: str = Field("default", description="Kubernetes namespace of the Jobs.")
    service_account: str | None = Field(None, description="The Jobs' pods run as this account.")
    registry_secret: str = Field(
        "lockgate-registry", description="Secret with LOCKGATE_DATABASE_URL/ARTIFACT_URL."
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node labels the Jobs' pods must match."
    )
    poll_interval_s: float = Field(
        1.0, gt=0, description="How often a torchrun launch is checked (and told to stop)."
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        return reject_renamed(data, {"poll_interval": "poll_interval_s"})


class WorkerSettings(BaseModel):
    """How a worker claims and runs fine-tuning jobs (the ``finetune`` section).

    ``lockgate finetune worker`` starts from this section; its options override it."""

    model_config = ConfigDict(extra="forbid")

    work_dir: Path | None = Field(
        None,
        description="Data, base models, checkpoints and adapters per job; default: the "
        "registry's data_dir/finetune.",
    )
    gpus: int | None = Field(None, ge=0, description="GPUs for jobs whose spec leaves it open.")
    executor: str | None = Field(
        None, description="Force an executor for every job (local, torchrun, kubernetes)."
    )
    poll_interval_s: float = Field(5.0, gt=0, description="Wait between polls of an empty queue.")
    heartbeat_interval_s: float = Field(
        10.0, gt=0, description="How often a running job's worker says it is alive."
    )
    stale_after_s: float = Field(
        120.0, gt=0, description="Requeue a running job whose worker is silent this long."
    )
    executors: ExecutorSettings = Field(default_factory=ExecutorSettings)
    command_timeout_s: float = Field(
        3600.0,
        gt=0,
        description="Stop a retraining (command) job's entry point after this "
        "long, per attempt, and fail the job.",
    )
    command_log_lines: int = Field(
        500,
        ge=0,
        description="Output lines of a command job's entry point kept as job "
        "events; the rest are counted.",
    )
    upload_checkpoints: bool = Field(
        True,
        description="Copy each checkpoint to the artifact store, so that a job requeued to "
        "another machine resumes from it instead of starting over.",
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        return reject_renamed(
            data,
            {
                "poll_interval": "poll_interval_s",
                "heartbeat_interval": "heartbeat_interval_s",
                "stale_after": "stale_after_s",
            },
        )

    def resolved_work_dir(self, data_dir: Path) -> Path:
        """``work_dir``, else ``data_dir/finetune`` (``data_dir``: the registry's)."""
        return self.work_dir if self.work_dir is not None else data_dir / "finetune"
