"""LoRA fine-tuning jobs: spec and data validation, the queue and worker, the PEFT trainer,
checkpoints and resume, executors (local, torchrun, Kubernetes), registering the adapter.

Typical use::

    from finetune import submit_job, Worker, WorkerSettings

    job, created = submit_job(registry, {"base_model": "registry:tiny@production",
                                         "training_file": "train.jsonl",
                                         "output_model": "support-bot"})
    Worker(registry, WorkerSettings(work_dir=Path("/tmp/ft"))).run(once=True)

Nothing here imports torch until training or inference actually starts, so ``import
finetune`` stays cheap for the CLI and the gateway.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from finetune.errors import (
    BaseModelNotFound,
    FinetuneError,
    RowProblem,
    SettingImpossible,
    SpecInvalid,
    TrainingDataInvalid,
    TrainingFailed,
)
from registry._lazy import lazy_exports

if TYPE_CHECKING:
    from finetune.base_model import BaseModel, resolve_base_model
    from finetune.data import DataReport, Example, load_examples, scan_file
    from finetune.executors import EXECUTORS, Executor, TrainRequest, register_executor
    from finetune.spec import (
        EvalParams,
        JobSpec,
        LoraParams,
        TrainingParams,
        load_spec,
        parse_spec,
        spec_from_openai,
    )
    from finetune.submit import check_job, job_spec, submit_job
    from finetune.trainer import TrainHooks, TrainResult, train
    from finetune.worker import Worker, WorkerSettings, execute_job

_LAZY = {
    "BaseModel": "finetune.base_model",
    "resolve_base_model": "finetune.base_model",
    "DataReport": "finetune.data",
    "Example": "finetune.data",
    "load_examples": "finetune.data",
    "scan_file": "finetune.data",
    "EXECUTORS": "finetune.executors",
    "Executor": "finetune.executors",
    "TrainRequest": "finetune.executors",
    "register_executor": "finetune.executors",
    "EvalParams": "finetune.spec",
    "JobSpec": "finetune.spec",
    "LoraParams": "finetune.spec",
    "TrainingParams": "finetune.spec",
    "load_spec": "finetune.spec",
    "parse_spec": "finetune.spec",
    "spec_from_openai": "finetune.spec",
    "check_job": "finetune.submit",
    "job_spec": "finetune.submit",
    "submit_job": "finetune.submit",
    "TrainHooks": "finetune.trainer",
    "TrainResult": "finetune.trainer",
    "train": "finetune.trainer",
    "Worker": "finetune.worker",
    "WorkerSettings": "finetune.worker",
    "execute_job": "finetune.worker",
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "EXECUTORS",
    "BaseModel",
    "BaseModelNotFound",
    "DataReport",
    "EvalParams",
    "Example",
    "Executor",
    "FinetuneError",
    "JobSpec",
    "LoraParams",
    "RowProblem",
    "SettingImpossible",
    "SpecInvalid",
    "TrainHooks",
    "TrainRequest",
    "TrainResult",
    "TrainingDataInvalid",
    "TrainingFailed",
    "TrainingParams",
    "Worker",
    "WorkerSettings",
    "check_job",
    "execute_job",
    "job_spec",
    "load_examples",
    "load_spec",
    "parse_spec",
    "register_executor",
    "resolve_base_model",
    "scan_file",
    "spec_from_openai",
    "submit_job",
    "train",
]
