"""Errors raised by fine-tuning.

Hierarchy::

    LockgateError (registry.errors)
    └── FinetuneError               base of every fine-tuning error (exit code 2: bad input)
        ├── SpecInvalid             (400) a job spec field is missing, unknown or out of range
        ├── TrainingDataInvalid     (400) rows of a training/validation file are malformed;
        │                                 carries every problem with its line number
        │       (both are also ``registry.errors.InvalidInput``: lockgate's one name for
        │        bad input, as evals' ``SuiteInvalid`` is)
        ├── BaseModelNotFound       (400) the base model is not a local model directory, an
        │                                 existing registry ``hf`` model, or a reachable hub id
        ├── SettingImpossible       (400) the machine cannot do what was asked (``--gpus 2``
        │                                 without two CUDA devices, an executor without its tool)
        └── TrainingFailed          (500) the trainer or its launcher failed while running a job

Each error carries ``status_code``, ``code``, ``param`` and ``exit_code`` like every
lockgate error; the CLI root prints ``error: <message>`` and exits with ``exit_code``.
"""

from __future__ import annotations

from dataclasses import dataclass

from lockgate.registry.errors import InvalidInput, LockgateError


class FinetuneError(LockgateError):
    code = "finetune_error"


class SpecInvalid(FinetuneError, InvalidInput):
    code = "invalid_finetune_spec"


@dataclass(frozen=True)
class RowProblem:
    """One bad row: the file as given, its 1-based line number, and what is wrong."""

    file: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "file"
        return f"{self.file}, {where}: {self.reason}"


class TrainingDataInvalid(FinetuneError, InvalidInput):
    code = "invalid_training_file"
    shown = 20

    def __init__(self, problems: list[RowProblem], *, param: str = "training_file") -> None:
        lines = [str(p) for p in problems[: self.shown]]
        more = len(problems) - len(lines)
        if more > 0:
            lines.append(f"… and {more} more")
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(
            f"{len(problems)} {noun} in the training data; nothing was queued:\n  "
            + "\n  ".join(lines),
            param=param,
        )
        self.problems = problems


class BaseModelNotFound(FinetuneError):
    code = "base_model_not_found"


class SettingImpossible(FinetuneError):
    code = "setting_impossible"


class TrainingFailed(FinetuneError):
    code = "training_failed"
    status_code = 500
    error_type = "server_error"
    exit_code = 1
