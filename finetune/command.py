"""Retraining a classic (scikit-learn) model: a ``command`` job in the fine-tuning queue.

``submit_retrain`` checks everything it can, pins what may move, and queues a job of kind
``command`` whose spec (:class:`CommandSpec`) records:

* ``model``: the registered model the new version belongs to;
* ``dataset``: the training data, a registry dataset pinned to ``NAME@VERSION`` now;
* ``entry``: the training entry point as an argv list (``["python", "train.py"]``), never a
  shell string; it is run without a shell. An argument naming a file that exists relative to
  the submitting process's directory is made absolute, since the job runs in a clean
  directory of its own;
* ``parent``: the version the new one derives from (the label's holder, else the latest),
  pinned now; the new version keeps its reference dataset and target column;
* ``suite`` with ``suite_digest``: an eval suite file pinned by content (a worker refuses to
  gate with it once the file or its dataset changed), and ``label``: the label to move when
  the label's gate policy and that suite pass;
* ``submitted_by``: always the machine's own user. The command comes from the CLI, the
  Python API or a monitor policy file, never over HTTP: the OpenAI fine-tuning API creates
  ``finetune`` jobs only, and a worker refuses a ``command`` job whose spec says otherwise.

The worker side is :mod:`finetune.command_worker`.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lockgate.finetune.errors import SpecInvalid
from lockgate.finetune.spec import Submitter
from lockgate.finetune.submit import local_submitter
from lockgate.registry.errors import NotFound
from lockgate.registry.jobs import JobResult
from lockgate.registry.records import LATEST, check_label, check_name

if TYPE_CHECKING:
    from lockgate.registry.jobs import JobInfo
    from lockgate.registry.registry import Registry

COMMAND_KIND = "command"
JOB_ID_PREFIX = "rtjob-"
MAX_ARGS = 256
MAX_ARG_CHARS = 4096


class CommandSpec(BaseModel):
    """What a ``command`` job runs (the stored spec; see the module's docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1, description="The model to register a new version of.")
    dataset: str = Field(min_length=1, description="Training dataset, pinned: NAME@VERSION.")
    entry: list[str] = Field(min_length=1, max_length=MAX_ARGS, description="argv, no shell.")
    parent: str | None = Field(None, description="NAME@VERSION the new version derives from.")
    suite: str | None = Field(None, description="Absolute path of an eval suite YAML.")
    suite_name: str | None = None
    suite_digest: str | None = Field(None, description="The suite's content digest at submit.")
    label: str | None = Field(None, description="Label to move when the gates pass.")
    submitted_by: Submitter

    @field_validator("entry")
    @classmethod
    def _argv(cls, value: list[str]) -> list[str]:
        for i, arg in enumerate(value):
            if "\x00" in arg or len(arg) > MAX_ARG_CHARS:
                raise ValueError(f"entry[{i}] holds a NUL byte or is over {MAX_ARG_CHARS} chars")
        if not value[0].strip():
            raise ValueError("entry[0], the program to run, is empty")
        return value


class CommandResult(JobResult):
    """A finished ``command`` job's result (``job.result``).

    ``promoted`` says whether ``label`` moved; when it did not, ``eval.refused`` lists why
    (the same shape as a fine-tuning job's ``result.eval``): the job still ``succeeded``,
    since its version is registered, but it was not promoted."""

    model: str  # NAME@VERSION registered (or the identical version found)
    created: bool  # False: the entry point produced a file identical to an existing version
    parent: str | None
    dataset: str
    run_id: str
    exit_code: int
    metrics: dict[str, float] = Field(default_factory=dict)
    label: str | None = None
    promoted: bool = False
    eval: dict[str, Any] | None = None


def command_spec(job: JobInfo) -> CommandSpec:
    """The spec a stored ``command`` job was queued with."""
    try:
        return CommandSpec.model_validate(job.spec)
    except ValidationError as exc:
        raise SpecInvalid(f"job {job.id}: not a command job spec: {exc}") from None


def _resolve_entry(entry: Sequence[str], cwd: Path) -> list[str]:
    """argv with the program checked and arguments that name existing files made absolute."""
    if isinstance(entry, str) or not entry or not all(isinstance(a, str) for a in entry):
        raise SpecInvalid(
            "entry: give the entry point as a list of arguments, e.g. ['python', 'train.py'] "
            "(it is run without a shell)",
            param="entry",
        )
    program = entry[0]
    if "/" in program or "\\" in program:
        path = (cwd / program).expanduser()
        if not path.is_file():
            raise SpecInvalid(f"entry: no such program {program!r}", param="entry")
        program = os.path.abspath(path)  # not resolved: a venv's python is a symlink
    elif shutil.which(program) is None:
        raise SpecInvalid(f"entry: {program!r} is not a program on PATH", param="entry")
    args = [program]
    for arg in entry[1:]:
        candidate = cwd / arg
        if arg and not arg.startswith("-") and not Path(arg).is_absolute() and candidate.is_file():
            arg = os.path.abspath(candidate)
        args.append(arg)
    return args


def _parent(registry: Registry, model: str, label: str | None) -> str | None:
    """The version the new one derives from: the label's holder, else the latest; None for
    a model with no versions yet."""
    for selector in ([label] if label else []) + [LATEST]:
        try:
            version = registry.models.get(f"{model}@{selector}")
        except NotFound:
            continue
        if version.flavor != "sklearn":
            raise SpecInvalid(
                f"model: {model}@{version.version} is a {version.flavor!r} model; retraining "
                "registers scikit-learn versions (fine-tune LoRA adapters with finetune submit)",
                param="model",
            )
        return f"{version.name}@{version.version}"
    return None


def check_retrain(
    registry: Registry,
    model: str,
    *,
    dataset: str,
    entry: Sequence[str],
    label: str | None = None,
    suite: Path | None = None,
    cwd: Path | None = None,
) -> CommandSpec:
    """Every pre-flight check of :func:`submit_retrain`; returns the spec to store."""
    check_name(model, "model")
    if label is not None:
        check_label(label)
        if label == LATEST:
            raise SpecInvalid("label: 'latest' follows every version; name another", param="label")
    try:
        pinned = registry.datasets.get(dataset)
    except NotFound as exc:
        raise SpecInvalid(f"dataset: {exc.message}", param="dataset") from None
    where = (cwd or Path.cwd()).resolve()
    argv = _resolve_entry(entry, where)
    suite_path, suite_name, suite_digest = None, None, None
    if suite is not None:
        path = (where / Path(suite).expanduser()).resolve()
        if not path.is_file():
            raise SpecInvalid(f"suite: no such file {str(suite)!r}", param="suite")
        pin = registry.gates.pin_suite(path)
        suite_path, suite_name, suite_digest = str(path), pin.name, pin.digest
    if label is not None and suite is None and not _has_policy(registry, model, label):
        raise SpecInvalid(
            f"--label {label} needs --suite, or a gate policy on {model}@{label} (labels move "
            f"only through gates: lockgate model gate {model} {label} --suite FILE)",
            param="label",
        )
    try:
        return CommandSpec(
            model=model, dataset=f"{pinned.name}@{pinned.version}", entry=argv,
            parent=_parent(registry, model, label), suite=suite_path, suite_name=suite_name,
            suite_digest=suite_digest, label=label, submitted_by=local_submitter(registry),
        )  # fmt: skip
    except ValidationError as exc:
        raise SpecInvalid(f"entry: {exc.errors()[0]['msg']}", param="entry") from None


def _has_policy(registry: Registry, model: str, label: str) -> bool:
    try:
        return any(p.label == label for p in registry.gates.policies("model", model))
    except NotFound:
        return False


def submit_retrain(
    registry: Registry,
    model: str,
    *,
    dataset: str,
    entry: list[str],
    label: str | None = None,
    suite: Path | None = None,
    idempotency_key: str | None = None,
) -> JobInfo:
    """Queue a retraining job of ``model`` on ``dataset`` (``NAME`` or ``NAME@VERSION``,
    pinned now) that runs ``entry`` (an argv list, no shell) and, when ``label`` is given,
    moves it to the new version only through the label's gate policy and ``suite`` (pinned
    by content now). Raises :class:`~finetune.errors.SpecInvalid` (nothing queued) when
    anything is wrong; with an ``idempotency_key`` already used, returns that job."""
    spec = check_retrain(registry, model, dataset=dataset, entry=entry, label=label, suite=suite)
    job, created = registry.jobs.create(
        COMMAND_KIND,
        spec.model_dump(mode="json"),
        idempotency_key=idempotency_key,
        job_id=JOB_ID_PREFIX + uuid.uuid4().hex[:24],
        created_by=spec.submitted_by.name[:200],
    )
    if created:
        registry.jobs.add_event(
            job.id,
            f"retrain {model} on {spec.dataset}"
            + (f" from {spec.parent}" if spec.parent else " (its first version)")
            + (f"; gate: suite {spec.suite_name}" if spec.suite else "")
            + (f"; label {label!r} moves on a pass" if label else ""),
            data={"dataset": spec.dataset, "parent": spec.parent, "entry": spec.entry},
        )
    return job
