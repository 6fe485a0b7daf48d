"""``lockgate prompt|model|dataset|run|db …``: a thin layer over :class:`registry.Registry`.

The root CLI (``gateway/cli.py``) puts an object with a ``registry()`` method in the
typer context; nothing here reads configuration itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lockgate.registry.cli_labels import add_label_commands
from lockgate.registry.console import (
    JsonOption,
    RegistryContext,
    emit,
    registry_of,
    table,
    when,
)
from lockgate.registry.errors import InvalidInput

_registry = registry_of

if TYPE_CHECKING:
    pass


def parse_pairs(pairs: list[str] | None, what: str) -> dict[str, Any]:
    """``k=v`` pairs; a value that parses as JSON (numbers, true, lists) is taken as such
    for ``--param``; template variables stay strings."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"{what} {pair!r} is not KEY=VALUE", param=what)
        out[key] = value
    return out


def _json_values(values: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _emit_subjects(title: str, subjects: list[Any], json_mode: bool) -> None:
    """A prompt or model list: name, latest version, labels."""
    rows = [
        [s.name, s.latest_version, ", ".join(f"{k}={v}" for k, v in sorted(s.labels.items()))]
        for s in subjects
    ]
    emit(subjects, json_mode, lambda c: c.print(table(title, ["name", "latest", "labels"], rows)))


# --------------------------------------------------------------------------- prompts
prompt_app = typer.Typer(help="Versioned prompt templates with labels.", no_args_is_help=True)


@prompt_app.command("push")
def prompt_push(
    ctx: typer.Context,
    name: str,
    file: Annotated[
        Path, typer.Option("--file", "-f", help=".txt text template or .yaml/.json chat prompt")
    ],
    message: Annotated[str, typer.Option("--message", "-m", help="What changed.")] = "",
    json_mode: JsonOption = False,
) -> None:
    """Push a new version (identical content returns the existing version)."""
    from lockgate.registry.prompts import load_prompt_file

    template, config = load_prompt_file(file)
    version, created = _registry(ctx).prompts.push(name, template, config, message=message)
    emit(
        {"created": created, **version.to_dict()},
        json_mode,
        lambda c: c.print(
            f"{'pushed' if created else 'unchanged, already'} {name}@{version.version}"
            f"  variables: {', '.join(version.variables) or '(none)'}"
        ),
    )


@prompt_app.command("list")
def prompt_list(ctx: typer.Context, json_mode: JsonOption = False) -> None:
    """List prompts with their latest version and labels."""
    _emit_subjects("prompts", _registry(ctx).prompts.list(), json_mode)


@prompt_app.command("show")
def prompt_show(ctx: typer.Context, ref: str, json_mode: JsonOption = False) -> None:
    """Show NAME[@LABEL|@VERSION] and the prompt's versions."""
    reg = _registry(ctx)
    version = reg.prompts.get(ref)
    versions = reg.prompts.versions(version.name)

    def human(c: Any) -> None:
        from lockgate.registry.prompts import prompt_document

        labels = next(v.labels for v in versions if v.version == version.version)
        c.print(
            f"[bold]{version.name}@{version.version}[/bold]  ({version.kind}; labels: "
            f"{', '.join(labels) or '-'}; by {version.author} {when(version.created_at)})"
        )
        if version.message:
            c.print(f"message: {version.message}")
        c.print(f"variables: {', '.join(version.variables) or '(none)'}")
        c.print(prompt_document(version), markup=False)
        c.print(
            table(
                "versions",
                ["version", "labels", "author", "created", "message"],
                [
                    [v.version, ", ".join(v.labels), v.author, when(v.created_at), v.message]
                    for v in versions
                ],
            )
        )

    emit({**version.to_dict(), "versions": versions}, json_mode, human)


@prompt_app.command("render")
def prompt_render(
    ctx: typer.Context,
    ref: str,
    var: Annotated[list[str] | None, typer.Option("--var", help="KEY=VALUE, repeatable.")] = None,
    json_mode: JsonOption = False,
) -> None:
    """Render NAME[@LABEL|@VERSION] with variables (strict: missing or extra is an error)."""
    reg = _registry(ctx)
    rendered = reg.prompts.render(reg.prompts.get(ref), parse_pairs(var, "--var"))

    def human(c: Any) -> None:
        if rendered.text is not None:
            c.print(rendered.text, markup=False)
            return
        for m in rendered.messages or []:
            c.print(f"[bold]{m['role']}:[/bold] ", end="")
            c.print(m["content"], markup=False)

    emit(rendered, json_mode, human)


@prompt_app.command("diff")
def prompt_diff(
    ctx: typer.Context, name: str, a: str, b: str, json_mode: JsonOption = False
) -> None:
    """Unified diff of two versions (numbers or labels) of NAME."""
    diff = _registry(ctx).prompts.diff(name, a, b)
    emit({"diff": diff}, json_mode, lambda c: c.print(diff or "(no difference)", markup=False))


add_label_commands(prompt_app, "prompt")


# --------------------------------------------------------------------------- models
model_app = typer.Typer(
    help="Registered models: upstream LLMs, LoRA adapters, HF and scikit-learn.",
    no_args_is_help=True,
)


@model_app.command("register")
def model_register(
    ctx: typer.Context,
    name: str,
    flavor: Annotated[str, typer.Option(help="upstream | lora | hf | sklearn")],
    model: Annotated[
        str | None, typer.Option(help="upstream: provider/model, e.g. openai/gpt-4o-mini.")
    ] = None,
    base_model: Annotated[
        str | None, typer.Option(help="lora: the base model (path, hub id or registry:NAME@LABEL).")
    ] = None,
    path: Annotated[
        Path | None, typer.Option(help="lora/hf: a directory; sklearn: a .skops file.")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option(help="KEY=VALUE default parameter, repeatable.")
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(
            help="sklearn: the dataset NAME[@VERSION] the model's input schema (columns and "
            "kinds) comes from; the gateway serves only models registered with one."
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(help="sklearn: the reference dataset's column of true values (not an input)."),
    ] = None,
    message: Annotated[str, typer.Option("--message", "-m")] = "",
    json_mode: JsonOption = False,
) -> None:
    """Register a model version (identical content returns the existing version)."""
    spec: dict[str, Any] = {}
    if model:
        spec["model"] = model
    if base_model:
        spec["base_model"] = base_model
    if param:
        spec["params"] = _json_values(parse_pairs(param, "--param"))
    check_spec = getattr(ctx.obj, "check_model_spec", None)  # the gateway's rules, if any
    if check_spec is not None:
        check_spec(flavor, spec)
    version, created = _registry(ctx).models.register(
        name, flavor, spec, path=path, message=message, reference=reference, target=target
    )
    inputs = version.spec.get("input_schema") or []
    schema = ", ".join(f"{c['name']} ({c['kind']})" for c in inputs)
    emit(
        {"created": created, **version.to_dict()},
        json_mode,
        lambda c: c.print(
            f"{'registered' if created else 'unchanged, already'} "
            f"{name}@{version.version} ({flavor})"
            + (f"\ninputs from {version.spec['reference']}: {schema}" if inputs else ""),
            markup=False,
        ),
    )


@model_app.command("list")
def model_list(ctx: typer.Context, json_mode: JsonOption = False) -> None:
    """List models with their latest version and labels."""
    _emit_subjects("models", _registry(ctx).models.list(), json_mode)


@model_app.command("show")
def model_show(ctx: typer.Context, ref: str, json_mode: JsonOption = False) -> None:
    """Show NAME[@LABEL|@VERSION] and the model's versions."""
    reg = _registry(ctx)
    version = reg.models.get(ref)
    versions = reg.models.versions(version.name)

    def human(c: Any) -> None:
        c.print(
            f"[bold]{version.name}@{version.version}[/bold]  ({version.flavor}; labels: "
            f"{', '.join(version.labels) or '-'}; by {version.author} {when(version.created_at)})"
        )
        c.print(f"spec: {json.dumps(version.spec, sort_keys=True)}", markup=False)
        if version.artifact_digest:
            c.print(f"artifact: {version.artifact_digest}")
        c.print(
            table(
                "versions",
                ["version", "flavor", "labels", "created", "message"],
                [
                    [v.version, v.flavor, ", ".join(v.labels), when(v.created_at), v.message]
                    for v in versions
                ],
            )
        )

    emit({**version.to_dict(), "versions": versions}, json_mode, human)


@model_app.command("diff")
def model_diff(
    ctx: typer.Context, name: str, a: str, b: str, json_mode: JsonOption = False
) -> None:
    """Unified diff of two versions' flavor, spec and artifact."""
    from lockgate.registry.prompts import unified_diff

    reg = _registry(ctx)
    left, right = (reg.models.get(f"{name}@{x}") for x in (a, b))

    def doc(v: Any) -> str:
        body = {"flavor": v.flavor, "spec": v.spec, "artifact": v.artifact_digest}
        return json.dumps(body, indent=2, sort_keys=True) + "\n"

    diff = unified_diff(doc(left), doc(right), f"{name}@{left.version}", f"{name}@{right.version}")
    emit({"diff": diff}, json_mode, lambda c: c.print(diff or "(no difference)", markup=False))


@model_app.command("download")
def model_download(ctx: typer.Context, ref: str, dest: Path, json_mode: JsonOption = False) -> None:
    """Fetch a version's artifact (file or directory) to DEST, verifying its sha256."""
    reg = _registry(ctx)
    version = reg.models.get(ref)
    if version.artifact_digest is None:
        raise InvalidInput(f"{ref} is a {version.flavor!r} model: it has no artifact")
    if version.flavor == "sklearn":
        out = reg.artifacts.fetch_file(version.artifact_digest, dest / "model.skops")
    else:
        out = reg.models.fetch(ref, dest)
    emit(
        {"path": str(out), "digest": version.artifact_digest},
        json_mode,
        lambda c: c.print(f"{version.name}@{version.version} -> {out} (sha256 verified)"),
    )


add_label_commands(model_app, "model")


# --------------------------------------------------------------------------- datasets
dataset_app = typer.Typer(help="Datasets versioned by content hash.", no_args_is_help=True)


@dataset_app.command("add")
def dataset_add(
    ctx: typer.Context,
    name: str,
    path: Path,
    format: Annotated[
        str | None, typer.Option(help="jsonl | csv | parquet (default: by suffix)")
    ] = None,
    json_mode: JsonOption = False,
) -> None:
    """Check and register a JSONL/CSV/Parquet file or folder as a dataset version."""
    version, created = _registry(ctx).datasets.add(name, path, format=format)
    emit(
        {"created": created, **version.to_dict()},
        json_mode,
        lambda c: c.print(
            f"{'added' if created else 'unchanged, already'} {name}@{version.version}: "
            f"{version.num_rows} rows, columns {', '.join(version.columns)} "
            f"({version.digest[:19]}…)"
        ),
    )


@dataset_app.command("list")
def dataset_list(ctx: typer.Context, json_mode: JsonOption = False) -> None:
    """List datasets (latest version of each)."""
    rows = _registry(ctx).datasets.list()
    emit(
        rows,
        json_mode,
        lambda c: c.print(
            table(
                "datasets",
                ["name", "version", "format", "rows", "digest"],
                [[d.name, d.version, d.format, d.num_rows, d.digest[:19] + "…"] for d in rows],
            )
        ),
    )


@dataset_app.command("show")
def dataset_show(ctx: typer.Context, ref: str, json_mode: JsonOption = False) -> None:
    """Show NAME[@VERSION]."""
    d = _registry(ctx).datasets.get(ref)
    emit(
        d,
        json_mode,
        lambda c: c.print(
            f"{d.name}@{d.version}: {d.format}, {d.num_rows} rows, columns {', '.join(d.columns)}\n"
            f"digest {d.digest}\nsource {d.source}",
            markup=False,
        ),
    )


@dataset_app.command("download")
def dataset_download(
    ctx: typer.Context, ref: str, dest: Path, json_mode: JsonOption = False
) -> None:
    """Fetch NAME[@VERSION]'s bytes to DEST (a file or folder), verifying its sha256."""
    reg = _registry(ctx)
    d = reg.datasets.get(ref)
    out = reg.datasets.fetch(f"{d.name}@{d.version}", dest)
    emit(
        {"path": str(out), "digest": d.digest},
        json_mode,
        lambda c: c.print(f"{d.name}@{d.version} -> {out} (sha256 verified)"),
    )


# --------------------------------------------------------------------------- runs
run_app = typer.Typer(help="Runs of evals, fine-tunes and drift checks.", no_args_is_help=True)


@run_app.command("list")
def run_list(
    ctx: typer.Context,
    kind: Annotated[str | None, typer.Option(help="eval | finetune | drift | other")] = None,
    limit: int = 20,
    json_mode: JsonOption = False,
) -> None:
    """The newest runs first; `run show` takes an id or a unique prefix of it."""
    runs = _registry(ctx).runs.list(kind, limit=limit)
    rows = [
        [r.id, r.kind, r.name, r.status, when(r.created_at),
         ", ".join(f"{k}={v:.4g}" for k, v in sorted(r.metrics.items()))]
        for r in runs
    ]  # fmt: skip

    def human(c: Any) -> None:
        shown = table("runs", ["id", "kind", "name", "status", "created", "metrics"], rows)
        shown.columns[0].no_wrap = True  # ids stay whole: the other columns wrap first
        c.print(shown)

    emit(runs, json_mode, human)


@run_app.command("show")
def run_show(ctx: typer.Context, run_id: str, json_mode: JsonOption = False) -> None:
    """A run with its parameters, metrics, artifacts and lineage (RUN_ID: the id or a
    unique prefix of at least 4 characters)."""
    reg = _registry(ctx)
    r = reg.runs.get(reg.runs.resolve_id(run_id))

    def human(c: Any) -> None:
        c.print(f"[bold]{r.id}[/bold] {r.kind} {r.name} — {r.status}")
        c.print(f"params: {json.dumps(r.params, sort_keys=True)}", markup=False)
        c.print(f"metrics: {json.dumps(r.metrics, sort_keys=True)}", markup=False)
        for edge in r.lineage:
            c.print(f"{edge.role}: {edge.subject_type} {edge.subject_ref}", markup=False)
        for name, digest in r.artifacts.items():
            c.print(f"artifact {name}: {digest}")
        if r.error:
            c.print(f"error: {r.error}", markup=False)

    emit(r, json_mode, human)


# --------------------------------------------------------------------------- db
db_app = typer.Typer(help="The registry database.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context, json_mode: JsonOption = False) -> None:
    """Apply pending schema migrations (PostgreSQL needs this; SQLite does it itself)."""
    from lockgate.registry import db

    state: RegistryContext = ctx.obj
    engine = db.make_engine(state.registry_settings.resolved_database_url())
    try:
        before = db.current_revision(engine)
        db.upgrade(engine)
        after = db.current_revision(engine)
    finally:
        engine.dispose()
    shown = engine.url.render_as_string(hide_password=True)
    emit(
        {"database": shown, "from": before, "to": after},
        json_mode,
        lambda c: c.print(f"{shown}: schema {before or 'empty'} -> {after}"),
    )


@db_app.command("current")
def db_current(ctx: typer.Context, json_mode: JsonOption = False) -> None:
    """Show the schema revision of the database and the one this lockgate needs."""
    from lockgate.registry import db

    state: RegistryContext = ctx.obj
    engine = db.make_engine(state.registry_settings.resolved_database_url())
    try:
        current, head = db.current_revision(engine), db.head_revision()
    finally:
        engine.dispose()
    emit(
        {"current": current, "head": head},
        json_mode,
        lambda c: c.print(f"current {current or 'empty'}, head {head}"),
    )


@db_app.command("prune")
def db_prune(
    ctx: typer.Context,
    calls: Annotated[
        str | None,
        typer.Option(
            "--calls", help="Delete call records older than this (30d, 12h, or an ISO time)."
        ),
    ] = None,
    samples: Annotated[
        str | None,
        typer.Option(
            "--samples", help="Delete :predict samples older than this (14d, or an ISO time)."
        ),
    ] = None,
    json_mode: JsonOption = False,
) -> None:
    """Delete call records and prediction samples past their retention (cron-friendly).

    Nothing else is touched: runs, labels, versions and artifacts are the record and stay.
    Deletes in batches, each its own transaction, so the gateway keeps writing meanwhile."""
    from datetime import UTC, datetime

    from lockgate.registry.console import parse_moment

    if calls is None and samples is None:
        raise InvalidInput("name what to prune: --calls 30d and/or --samples 14d", param="calls")
    reg = _registry(ctx)
    now = datetime.now(UTC)
    done: dict[str, Any] = {}
    for option, value, part in (
        ("--calls", calls, reg.calls),
        ("--samples", samples, reg.predictions),
    ):
        if value is None:
            continue
        before = parse_moment(value, option, now=now, sign=-1, hint="an age like 30d or 12h")
        done[option.lstrip("-")] = {"before": before.isoformat(), "deleted": part.prune(before)}
    emit(
        done,
        json_mode,
        lambda c: c.print(
            "\n".join(
                f"{k}: {v['deleted']} deleted (before {v['before']})" for k, v in done.items()
            ),
            markup=False,
        ),
    )
