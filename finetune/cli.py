"""``lockgate finetune submit|retrain|list|status|logs|cancel|worker|run``, and ``lockgate
model init-tiny`` (a base model to try them on). ``retrain`` queues a scikit-learn model's
retraining (a ``command`` job, docs/retraining.md); the other commands serve both kinds.

The root CLI (``gateway/cli.py``) puts an object with ``registry()`` and
``registry_settings`` in the typer context; when it also has ``eval_transport_factory``
(the gateway in process), eval gates after training call the new version through it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import typer

from lockgate.finetune.errors import SpecInvalid
from lockgate.registry.console import JsonOption, emit, table, when

if TYPE_CHECKING:
    from lockgate.finetune.settings import WorkerSettings
    from lockgate.registry.registry import Registry
    from lockgate.registry.settings import RegistrySettings


class FinetuneContext(Protocol):
    @property
    def registry_settings(self) -> RegistrySettings: ...

    @property
    def finetune_settings(self) -> WorkerSettings:
        """The ``finetune`` section of lockgate.yaml."""
        ...

    def registry(self) -> Registry: ...


def _registry(ctx: typer.Context) -> Registry:
    state: FinetuneContext = ctx.obj
    return state.registry()


finetune_app = typer.Typer(
    help="LoRA fine-tuning and scikit-learn retraining jobs: submit, watch, cancel, work.",
    no_args_is_help=True,
)

Opt = typer.Option


@finetune_app.command("submit")
def submit(
    ctx: typer.Context,
    spec_file: Annotated[Path | None, typer.Argument(help="Job spec YAML.")] = None,
    base_model: Annotated[
        str | None, Opt("--base-model", help="Dir, hub id, registry:NAME@LABEL.")
    ] = None,
    training_file: Annotated[str | None, Opt("--training-file", help="JSONL or file-id.")] = None,
    validation_file: Annotated[str | None, Opt("--validation-file")] = None,
    output_model: Annotated[str | None, Opt("--output-model")] = None,
    epochs: Annotated[int | None, Opt("--epochs")] = None,
    learning_rate: Annotated[float | None, Opt("--learning-rate")] = None,
    batch_size: Annotated[int | None, Opt("--batch-size")] = None,
    lora_r: Annotated[int | None, Opt("--lora-r")] = None,
    gpus: Annotated[int | None, Opt("--gpus", help="CUDA devices; 0 for CPU.")] = None,
    executor: Annotated[str | None, Opt("--executor", help="local|torchrun|kubernetes")] = None,
    eval_suite: Annotated[str | None, Opt("--eval-suite", help="Suite YAML to gate with.")] = None,
    label: Annotated[str | None, Opt("--label", help="Label to set when the gates pass.")] = None,
    idempotency_key: Annotated[str | None, Opt("--idempotency-key")] = None,
    json_mode: JsonOption = False,
) -> None:
    """Validate the data, then queue a job (flags override the spec file)."""
    from lockgate.finetune.spec import load_spec, parse_spec
    from lockgate.finetune.submit import submit_job

    data: dict[str, Any] = load_spec(spec_file).model_dump() if spec_file else {}
    flat = {
        "base_model": base_model,
        "training_file": training_file,
        "validation_file": validation_file,
        "output_model": output_model,
        "gpus": gpus,
        "executor": executor,
    }
    data.update({k: v for k, v in flat.items() if v is not None})
    training = {"epochs": epochs, "learning_rate": learning_rate, "batch_size": batch_size}
    data["training"] = {
        **data.get("training", {}),
        **{k: v for k, v in training.items() if v is not None},
    }
    if lora_r is not None:
        data["lora"] = {**data.get("lora", {}), "r": lora_r}
    if eval_suite or label:
        if not (eval_suite or (data.get("eval") or {}).get("suite")):
            raise SpecInvalid("--label needs --eval-suite (labels move only through gates)")
        data["eval"] = {
            **(data.get("eval") or {}),
            **({"suite": eval_suite} if eval_suite else {}),
            **({"label": label} if label else {}),
        }
    spec = parse_spec(data, source=str(spec_file) if spec_file else "flags")
    job, created = submit_job(_registry(ctx), spec, idempotency_key=idempotency_key)
    emit(
        {"created": created, **job.to_dict()},
        json_mode,
        lambda c: c.print(
            f"{'queued' if created else 'already submitted:'} {job.id}"
            f"  ({job.status}; lockgate finetune logs {job.id} --follow)"
        ),
    )


@finetune_app.command("retrain")
def retrain(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="The scikit-learn model to add a version to.")],
    entry: Annotated[
        list[str],
        typer.Argument(
            help="After --: the training entry point's arguments, run without a shell "
            "(-- python train.py).",
            show_default=False,
        ),
    ],
    dataset: Annotated[
        str, Opt("--dataset", help="Training data: registry dataset NAME@VERSION (pinned).")
    ],
    suite: Annotated[
        Path | None, Opt("--suite", help="Eval suite YAML to gate with (pinned by content).")
    ] = None,
    label: Annotated[str | None, Opt("--label", help="Label to move when the gates pass.")] = None,
    idempotency_key: Annotated[str | None, Opt("--idempotency-key")] = None,
    json_mode: JsonOption = False,
) -> None:
    """Queue a retraining job: a worker runs ENTRY on the dataset version, registers the
    skops file it writes as a new version of MODEL, gates it, and moves --label only on a
    pass (docs/retraining.md). ENTRY follows --, e.g. lockgate finetune retrain churn
    --dataset churn-train@2 --suite suite.yaml --label production -- python train.py"""
    from lockgate.finetune.command import submit_retrain

    job = submit_retrain(
        _registry(ctx), model, dataset=dataset, entry=entry, label=label, suite=suite,
        idempotency_key=idempotency_key,
    )  # fmt: skip
    emit(
        job,
        json_mode,
        lambda c: c.print(
            f"queued {job.id}  (retrain {model} on {job.spec['dataset']}; "
            f"lockgate finetune logs {job.id} --follow)",
            markup=False,
        ),
    )


KINDS = ("all", "finetune", "command")


def _kind(kind: str) -> str | None:
    if kind not in KINDS:
        raise SpecInvalid(f"--kind {kind!r}: use one of {', '.join(KINDS)}", param="kind")
    return None if kind == "all" else kind


@finetune_app.command("list")
def list_jobs(
    ctx: typer.Context,
    limit: Annotated[int, Opt("--limit")] = 20,
    kind: Annotated[str, Opt("--kind", help="all | finetune | command (retraining)")] = "all",
    json_mode: JsonOption = False,
) -> None:
    """Recent jobs, newest first."""
    jobs = _registry(ctx).jobs.list(_kind(kind), limit=limit)
    rows = [
        [
            j.id,
            j.status,
            j.spec.get("output_model") or j.spec.get("model"),
            j.result.get("model", ""),
            j.attempts,
            when(j.created_at),
        ]
        for j in jobs
    ]
    emit(
        jobs,
        json_mode,
        lambda c: c.print(
            table(None, ["job", "status", "output model", "version", "attempts", "created"], rows)
        ),
    )


@finetune_app.command("status")
def status(ctx: typer.Context, job_id: str, json_mode: JsonOption = False) -> None:
    """One job: state, spec, result or error (JOB_ID: the id or a unique prefix)."""
    registry = _registry(ctx)
    job = registry.jobs.get(registry.jobs.resolve_id(job_id))

    def human(c: Any) -> None:
        c.print(f"{job.id}  {job.status}  attempts {job.attempts}  worker {job.worker_id or '-'}")
        if job.kind == "command":
            _print_command(c, job)
            return
        c.print(f"base {job.spec.get('base_model')} → {job.spec.get('output_model')}")
        if job.result:
            c.print(
                f"result: {job.result.get('model', '')} steps {job.result.get('steps', '')}"
                f" metrics {job.result.get('metrics', {})}"
            )
        evaluation = job.result.get("eval")
        if isinstance(evaluation, dict):
            _print_eval(c, evaluation, (job.spec.get("eval") or {}).get("label"))
        if job.error:
            c.print(f"error: {job.error}")

    emit(job, json_mode, human)


def _print_command(c: Any, job: Any) -> None:
    """A retraining job: what it runs on, what it registered, the gate and the label."""
    spec, result = job.spec, job.result
    c.print(f"retrain {spec.get('model')} on {spec.get('dataset')} from "
            f"{spec.get('parent') or 'no version'}: {' '.join(spec.get('entry') or [])}",
            markup=False)  # fmt: skip
    if result:
        c.print(f"result: {result.get('model')} (run {result.get('run_id')}) metrics "
                f"{result.get('metrics', {})}", markup=False)  # fmt: skip
    evaluation = result.get("eval")
    if isinstance(evaluation, dict):
        if evaluation.get("verdict") is not None or "error" in evaluation:
            _print_eval(c, evaluation, None)
        label = spec.get("label")
        if evaluation.get("labelled"):
            c.print(f"label {label!r} moved to {result.get('model')}", markup=False)
        elif label is not None:
            refused = evaluation.get("refused") or [evaluation.get("error") or "not a pass"]
            c.print(f"label {label!r} not moved: " + "; ".join(map(str, refused)), markup=False)
    if job.error:
        c.print(f"error: {job.error}", markup=False)


def _print_eval(c: Any, evaluation: dict[str, Any], label: str | None) -> None:
    """The eval gate of a finished job: its verdict and why, and whether ``label`` moved
    (nothing about a label when it is None)."""
    from lockgate.finetune.results import eval_lines

    first, *gates = eval_lines(evaluation)
    c.print(first, markup=False)
    for line in gates:
        c.print(f"  {line}", markup=False)
    if label is None:  # the caller says what became of the label
        return
    if evaluation.get("labelled"):
        c.print(f"label {label!r} moved to {evaluation.get('model')}", markup=False)
    elif label is not None:
        refused = evaluation.get("refused") or [f"verdict {evaluation.get('verdict', 'none')}"]
        c.print(f"label {label!r} not moved: " + "; ".join(map(str, refused)), markup=False)


def _print_event(event: Any, json_mode: bool) -> None:
    line = f"{when(event.created_at)} {event.level:5} {event.message}"
    emit(event, json_mode, lambda c: c.print(line))


@finetune_app.command("logs")
def logs(
    ctx: typer.Context,
    job_id: str,
    follow: Annotated[bool, Opt("--follow", "-f", help="Wait for new events until done.")] = False,
    interval: Annotated[float, Opt("--interval")] = 1.0,
    json_mode: JsonOption = False,
) -> None:
    """Events and step metrics of a job (JOB_ID: the id or a unique prefix)."""
    from lockgate.registry.jobs import FINAL

    registry = _registry(ctx)
    job_id = registry.jobs.resolve_id(job_id)
    after = 0
    while True:
        events = registry.jobs.events(job_id, after=after)
        for e in events:
            _print_event(e, json_mode)
            after = e.id
        if not follow or (registry.jobs.get(job_id).status in FINAL and not events):
            return
        time.sleep(interval)


@finetune_app.command("cancel")
def cancel(ctx: typer.Context, job_id: str, json_mode: JsonOption = False) -> None:
    """Cancel a job: at once when queued, at the next step when running (JOB_ID: the id or
    a unique prefix)."""
    registry = _registry(ctx)
    job = registry.jobs.cancel(registry.jobs.resolve_id(job_id))
    text = (
        "cancellation requested" if job.cancel_requested and job.status == "running" else job.status
    )
    emit(job, json_mode, lambda c: c.print(f"{job.id}: {text}"))


def _worker_settings(
    ctx: typer.Context, executors: dict[str, Any] | None = None, **values: Any
) -> WorkerSettings:
    """The ``finetune`` section of lockgate.yaml under the options given (None: not given)."""
    from lockgate.finetune.settings import WorkerSettings

    state: FinetuneContext = ctx.obj
    data = state.finetune_settings.model_dump()
    data.update({k: v for k, v in values.items() if v is not None})
    data["executors"].update({k: v for k, v in (executors or {}).items() if v is not None})
    return WorkerSettings.model_validate(data)


@finetune_app.command("worker")
def worker(
    ctx: typer.Context,
    gpus: Annotated[int | None, Opt("--gpus", help="GPUs for jobs that leave it open.")] = None,
    once: Annotated[bool, Opt("--once", help="Exit when the queue is empty.")] = False,
    poll_interval: Annotated[
        float | None, Opt("--poll-interval", help="Seconds (finetune.poll_interval_s).")
    ] = None,
    executor: Annotated[str | None, Opt("--executor", help="Force an executor.")] = None,
    work_dir: Annotated[Path | None, Opt("--work-dir")] = None,
    kind: Annotated[
        str, Opt("--kind", help="Jobs to take: all | finetune | command (retraining).")
    ] = "all",
    kubectl_apply: Annotated[bool, Opt("--kubectl-apply", help="Apply Kubernetes Jobs.")] = False,
    upload_checkpoints: Annotated[
        bool | None,
        Opt(
            "--upload-checkpoints/--local-checkpoints",
            help="Copy checkpoints to the artifact store so a job requeued to another machine "
            "resumes, or keep them in --work-dir only (default: finetune.upload_checkpoints, "
            "true).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Claim and run jobs (requeues jobs whose worker died; resumes from checkpoints).

    Starts from the finetune section of lockgate.yaml; the options given override it.
    Retraining (command) jobs need no fine-tuning stack: with --kind all on a machine
    without it, the worker takes command jobs only."""
    from lockgate.finetune._torch import require_stack
    from lockgate.finetune.results import gate_and_label
    from lockgate.finetune.worker import JOB_KINDS, Worker
    from lockgate.registry.errors import MissingExtra

    wanted = _kind(kind)
    kinds = JOB_KINDS if wanted is None else (wanted,)
    if "finetune" in kinds:
        try:
            require_stack()
        except MissingExtra as exc:
            if wanted is not None:
                raise
            typer.echo(f"{exc.message}; taking retraining (command) jobs only", err=True)
            kinds = ("command",)
    settings = _worker_settings(
        ctx,
        gpus=gpus,
        poll_interval_s=poll_interval,
        executor=executor,
        work_dir=work_dir,
        executors={"kubectl_apply": True if kubectl_apply else None},
        upload_checkpoints=upload_checkpoints,
    )
    factory = getattr(ctx.obj, "eval_transport_factory", None)
    hook = None
    if factory is not None:

        def hook(registry: Any, spec: Any, version: Any) -> dict[str, Any]:
            return gate_and_label(registry, spec, version, transport_factory=factory)

    w = Worker(_registry(ctx), settings, eval_hook=hook, kinds=kinds)
    typer.echo(f"worker {w.worker_id} polling for {' and '.join(kinds)} jobs", err=True)
    handled = w.run(once=once)
    typer.echo(f"worker {w.worker_id}: {handled} job(s) handled", err=True)


@finetune_app.command("run", hidden=True)
def run_claimed(
    ctx: typer.Context,
    job_id: str,
    worker_id: Annotated[str, Opt("--worker-id", help="The claim to continue.")],
    gpus: Annotated[int | None, Opt("--gpus")] = None,
    work_dir: Annotated[Path | None, Opt("--work-dir")] = None,
) -> None:
    """Run a job already claimed under WORKER_ID (what a Kubernetes pod executes)."""
    from lockgate.finetune._torch import require_stack
    from lockgate.finetune.worker import execute_job

    require_stack()
    registry = _registry(ctx)
    settings = _worker_settings(
        ctx, gpus=gpus, work_dir=work_dir, executor="torchrun" if (gpus or 0) > 1 else "local"
    )
    job = execute_job(registry, registry.jobs.get(job_id), worker_id, settings)
    typer.echo(f"{job.id}: {job.status}", err=True)
    if job.status == "failed":
        raise typer.Exit(1)


TINY_CORPUS = (
    "user\nWhat is the capital of France?\nassistant\nParis.",
    "user\nHow many legs does a cat have?\nassistant\nFour.",
    "user\nWhat colour is the sky on a clear day?\nassistant\nBlue.",
    "user\nWho wrote the book?\nassistant\nI do not know which book you mean.",
    "user\nPlease say thanks.\nassistant\nThanks!",
)


def init_tiny(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The model name to register.")],
    corpus: Annotated[
        Path | None,
        Opt("--corpus", help="A text file; the tokenizer is trained on its lines."),
    ] = None,
    layers: Annotated[int, Opt("--layers", min=1, max=8, help="Decoder layers.")] = 2,
    label: Annotated[str | None, Opt("--label", help="Point this label at it.")] = None,
    json_mode: JsonOption = False,
) -> None:
    """Build a tiny Llama from a config and register it as an ``hf`` model.

    Random weights and a tokenizer trained on a few lines (built in, or ``--corpus``): it
    knows nothing, downloads nothing, and a LoRA adapter trained on it on a CPU changes its
    answers in seconds — a base for trying fine-tuning and serving
    (``registry:NAME@LABEL``) before pointing lockgate at a real model."""
    import tempfile
    import warnings

    from lockgate.finetune import _torch
    from lockgate.finetune.tiny import build_tiny_llama

    lines = list(TINY_CORPUS)
    if corpus is not None:
        try:
            lines = [line for line in corpus.read_text(encoding="utf-8").splitlines() if line]
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecInvalid(f"--corpus {corpus}: cannot read it: {exc}") from None
        if not lines:
            raise SpecInvalid(f"--corpus {corpus}: the file has no text")
    transformers = _torch.transformers()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    registry = _registry(ctx)
    with tempfile.TemporaryDirectory(prefix="lockgate-tiny-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        folder = build_tiny_llama(Path(tmp) / name, lines, layers=layers)
        version, created = registry.models.register(
            name, "hf", path=folder, message=f"tiny Llama ({layers} layers, random weights)"
        )
    if label is not None:
        registry.labels.set("model", name, label, version.version)
    result = {"name": name, "version": version.version, "created": created, "label": label,
              "model": f"registry:{name}@{label or version.version}"}  # fmt: skip

    def human(out: Any) -> None:
        verb = "registered" if created else "unchanged:"
        out.print(f"{verb} {name}@{version.version} (hf, {layers} layers, random weights)"
                  + (f", {label} → {version.version}" if label else ""))  # fmt: skip
        out.print(f"fine-tune it: lockgate finetune submit --base-model {result['model']} …")

    emit(result, json_mode, human)
