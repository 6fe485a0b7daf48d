"""Submitting a job: every check that can fail runs before anything is queued.

1. the spec parses (:mod:`finetune.spec`);
2. the base model exists (:mod:`finetune.base_model`), and a registry label is pinned to
   the version it points at now, so a label moving later cannot change what is trained;
3. the machine can do what was asked (``gpus``; skipped for the ``kubernetes`` executor,
   whose nodes are checked by the worker that runs there);
4. the training and validation files parse, every bad row named (the OpenAI
   ``validating_files`` step, done synchronously);
5. local files are uploaded to the registry (``purpose="fine-tune"``) and the stored spec
   names them by file id, so any worker on any machine can fetch them.

Only then is the job created, ``queued``, with ``submitted_by`` saying who asked for it.

Local paths (data, base model, eval suite) are the CLI's convenience for the machine's own
user. A job submitted over HTTP (``submitted_by.via == "http"``) names a registry base model
and uploaded file ids only, and carries no eval suite or label: nothing on the server's disk
is read, or even looked at, on its behalf.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lockgate.finetune.base_model import (
    REGISTRY_PREFIX,
    BaseModel,
    hub_reachable,
    resolve_base_model,
)
from lockgate.finetune.data import DataReport, scan_file
from lockgate.finetune.devices import check_gpus
from lockgate.finetune.errors import SpecInvalid, TrainingDataInvalid
from lockgate.finetune.spec import JobSpec, Submitter, parse_spec
from lockgate.registry.errors import NotFound
from lockgate.registry.records import check_name

if TYPE_CHECKING:
    from lockgate.registry.jobs import JobInfo
    from lockgate.registry.registry import Registry

JOB_KIND = "finetune"


@dataclass(frozen=True)
class CheckedJob:
    spec: JobSpec  # with file ids and a pinned base model
    base: BaseModel
    training: DataReport
    validation: DataReport | None


def _scan(registry: Registry, ref: str, param: str, tmp: Path) -> tuple[DataReport, str]:
    """Scan a path or an uploaded file; returns the report and the file id to store."""
    if ref.startswith("file-"):
        try:
            info = registry.files.get(ref)
        except NotFound as exc:
            raise SpecInvalid(f"{param}: no uploaded file {ref!r}", param=param) from exc
        local = registry.files.fetch(ref, tmp / f"{param}-{info.filename}")
        return scan_file(local, name=f"{info.filename} ({ref})"), ref
    path = Path(ref).expanduser()
    if not path.is_file():
        raise SpecInvalid(f"{param}: no such file {ref!r}", param=param)
    report = scan_file(path, name=ref)
    if report.problems:
        return report, ref
    return report, registry.files.create(path, purpose="fine-tune").id


def local_submitter(registry: Registry) -> Submitter:
    """The machine's own user (the CLI, or Python code with the registry in hand): it may
    move labels already (``lockgate model label``), so its jobs may too."""
    return Submitter(
        via="cli", principal=registry.actor, name=registry.actor, holds_label_scope=True
    )


def _check_remote(spec: JobSpec) -> None:
    """What a job submitted over HTTP may name: registry models and uploaded files only."""
    if not spec.base_model.startswith(REGISTRY_PREFIX):
        raise SpecInvalid(
            f"base_model: over HTTP the base model is a registry model ({REGISTRY_PREFIX}"
            "NAME@LABEL, or a registered model's name), never a server path or hub id",
            param="base_model",
        )
    files = {"training_file": spec.training_file, "validation_file": spec.validation_file}
    for param, ref in files.items():
        if ref is not None and not ref.startswith("file-"):
            raise SpecInvalid(
                f"{param}: give the file id (file-…) of a file uploaded with POST /v1/files; "
                "the HTTP API does not take server paths",
                param=param,
            )
    if spec.eval is not None:
        raise SpecInvalid(
            "eval: a job submitted over HTTP cannot run an eval suite or move a label; "
            "submit it with lockgate finetune submit on the server, or move the label "
            "through its gate policy afterwards",
            param="eval",
        )


def check_job(
    registry: Registry,
    spec: JobSpec | Mapping[str, Any],
    *,
    submitter: Submitter | None = None,
    check_devices: bool = True,
    probe_hub: Callable[[str], tuple[bool, str]] = hub_reachable,
) -> CheckedJob:
    """Run every pre-flight check; raise the first class of problem found.

    ``submitter`` (default: :func:`local_submitter`) is recorded in the stored spec; a remote
    one (over HTTP) may name registry models and file ids only, and no eval suite."""
    spec = spec if isinstance(spec, JobSpec) else parse_spec(dict(spec))
    submitter = submitter or local_submitter(registry)
    if submitter.remote:
        _check_remote(spec)
    check_name(spec.output_model, "output_model")
    base = resolve_base_model(spec.base_model, registry, probe_hub=probe_hub)
    asked = spec.training.max_seq_length
    if base.max_positions and asked is not None and asked > base.max_positions:
        raise SpecInvalid(
            f"training.max_seq_length {asked} exceeds the base "
            f"model's {base.max_positions} positions",
            param="training.max_seq_length",
        )
    if check_devices and spec.executor_name != "kubernetes":
        check_gpus(spec.gpus)
    if spec.eval is not None and not Path(spec.eval.suite).is_file():
        raise SpecInvalid(f"eval.suite: no such file {spec.eval.suite!r}", param="eval.suite")
    with tempfile.TemporaryDirectory(prefix="lockgate-ft-") as tmp:
        training, training_id = _scan(registry, spec.training_file, "training_file", Path(tmp))
        validation, validation_id = None, None
        if spec.validation_file is not None:
            validation, validation_id = _scan(
                registry, spec.validation_file, "validation_file", Path(tmp)
            )
    problems = training.problems + (validation.problems if validation else [])
    if problems:
        param = "training_file" if training.problems else "validation_file"
        raise TrainingDataInvalid(problems, param=param)
    pinned = REGISTRY_PREFIX + base.ref if base.kind == "registry" else spec.base_model
    if base.kind == "path":
        pinned = base.ref
    stored = spec.model_copy(
        update={
            "base_model": pinned,
            "training_file": training_id,
            "validation_file": validation_id,
            "submitted_by": submitter,
        }
    )
    return CheckedJob(stored, base, training, validation)


def submit_job(
    registry: Registry,
    spec: JobSpec | Mapping[str, Any],
    *,
    submitter: Submitter | None = None,
    idempotency_key: str | None = None,
    check_devices: bool = True,
    probe_hub: Callable[[str], tuple[bool, str]] = hub_reachable,
) -> tuple[JobInfo, bool]:
    """Validate and queue a fine-tuning job; returns (job, created).

    Raises a :class:`~finetune.errors.FinetuneError` (nothing queued) when the spec, the
    base model, the machine or any data row is wrong. With an ``idempotency_key`` already
    used, the existing job comes back with ``created=False``. ``submitter`` is who asks
    (default: the machine's own user, :func:`local_submitter`); it is stored in the spec's
    ``submitted_by`` and as the job's ``created_by``.
    """
    checked = check_job(
        registry, spec, submitter=submitter, check_devices=check_devices, probe_hub=probe_hub
    )
    who = checked.spec.submitted_by
    assert who is not None
    created_by = who.name if who.principal == who.name else f"{who.principal} ({who.name})"
    job, created = registry.jobs.create(
        JOB_KIND,
        checked.spec.model_dump(mode="json"),
        idempotency_key=idempotency_key,
        created_by=created_by[:200],  # the column's width
    )
    if created:
        summary = {
            "training": checked.training.to_dict(),
            "validation": checked.validation.to_dict() if checked.validation else None,
            "base_model": checked.base.lineage_ref,
        }
        rows = checked.training.rows
        registry.jobs.add_event(
            job.id,
            f"files validated: {rows} training row(s) ({checked.training.format})"
            + (f", {checked.validation.rows} validation row(s)" if checked.validation else ""),
            data=summary,
        )
    return job, created


def job_spec(job: JobInfo) -> JobSpec:
    """The spec a stored job was queued with."""
    return parse_spec(job.spec, source=f"job {job.id}")
