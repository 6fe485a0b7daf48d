"""LoRA fine-tuning jobs: spec and data validation, the queue and worker, the PEFT trainer,
checkpoints and resume, executors (local, torchrun, Kubernetes), registering the adapter;
and retraining jobs of scikit-learn models (``submit_retrain``, :mod:`finetune.command`).

Typical use::

    from lockgate.finetune import submit_job, Worker, WorkerSettings

    job, created = submit_job(registry, {"base_model": "registry:tiny@production",
                                         "training_file": "train.jsonl",
                                         "output_model": "support-bot"})
    Worker(registry, WorkerSettings(work_dir=Path("/tmp/ft"))).run(once=True)

Nothing here imports torch until training or inference actually starts, so ``import
finetune`` stays cheap for the CLI and the gateway.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lockgate.finetune.errors import (
    BaseModelNotFound,
    FinetuneError,
    RowProblem,
    SettingImpossible,
    SpecInvalid,
    TrainingDataInvalid,
    TrainingFailed,
)
from lockgate.registry._lazy import lazy_exports

if TYPE_CHECKING:
    from lockgate.finetune.base_model import BaseModel, resolve_base_model
    from lockgate.finetune.command import CommandResult, CommandSpec, submit_retrain
    from lockgate.finetune.command_worker import execute_command_job
    from lockgate.finetune.data import DataReport, Example, load_examples, scan_file
    from lockgate.finetune.executors import EXECUTORS, Executor, TrainRequest, register_executor
    from lockgate.finetune.settings import ExecutorSettings, WorkerSettings
    from lockgate.finetune.spec import (
        EvalParams,
        JobSpec,
        LoraParams,
        TrainingParams,
        load_spec,
        parse_spec,
        spec_from_openai,
    )
    from lockgate.finetune.submit import check_job, job_spec, submit_job
    from lockgate.finetune.trainer import TrainHooks, TrainResult, train
    from lockgate.finetune.worker import Worker, execute_job

_LAZY = {
    "CommandResult": "lockgate.finetune.command",
    "CommandSpec": "lockgate.finetune.command",
    "submit_retrain": "lockgate.finetune.command",
    "execute_command_job": "lockgate.finetune.command_worker",
    "BaseModel": "lockgate.finetune.base_model",
    "resolve_base_model": "lockgate.finetune.base_model",
    "DataReport": "lockgate.finetune.data",
    "Example": "lockgate.finetune.data",
    "load_examples": "lockgate.finetune.data",
    "scan_file": "lockgate.finetune.data",
    "EXECUTORS": "lockgate.finetune.executors",
    "Executor": "lockgate.finetune.executors",
    "TrainRequest": "lockgate.finetune.executors",
    "register_executor": "lockgate.finetune.executors",
    "EvalParams": "lockgate.finetune.spec",
    "JobSpec": "lockgate.finetune.spec",
    "LoraParams": "lockgate.finetune.spec",
    "TrainingParams": "lockgate.finetune.spec",
    "load_spec": "lockgate.finetune.spec",
    "parse_spec": "lockgate.finetune.spec",
    "spec_from_openai": "lockgate.finetune.spec",
    "check_job": "lockgate.finetune.submit",
    "job_spec": "lockgate.finetune.submit",
    "submit_job": "lockgate.finetune.submit",
    "TrainHooks": "lockgate.finetune.trainer",
    "TrainResult": "lockgate.finetune.trainer",
    "train": "lockgate.finetune.trainer",
    "Worker": "lockgate.finetune.worker",
    "ExecutorSettings": "lockgate.finetune.settings",
    "WorkerSettings": "lockgate.finetune.settings",
    "execute_job": "lockgate.finetune.worker",
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "EXECUTORS",
    "BaseModel",
    "BaseModelNotFound",
    "CommandResult",
    "CommandSpec",
    "DataReport",
    "EvalParams",
    "Example",
    "Executor",
    "ExecutorSettings",
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
    "execute_command_job",
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
    "submit_retrain",
    "train",
]
