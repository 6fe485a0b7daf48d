"""``lockgate drift check|traffic``: is current data distributed like a reference?

Exit codes, as ``lockgate eval run``: 0 no dataset drift; 1 dataset drift (the share of
drifted columns reached the drift share, 0.5 by default); 2 bad input (an unknown or
malformed source, a missing column, a report that cannot be written), raised as a
:class:`registry.errors.LockgateError` for the root to print. Every check is a registry run
of kind ``drift`` (``lockgate run show RUN``). Output: a table for people, or with
``--json`` the run and its report as JSON on stdout.

The root CLI mounts ``drift_app`` and puts an object with ``registry()`` in the typer
context (see :class:`evals.cli.EvalContext`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lockgate.registry.console import JsonOption, console

if TYPE_CHECKING:
    from lockgate.evals.drift.runs import DriftRun
    from lockgate.registry.registry import Registry

drift_app = typer.Typer(
    help="Drift checks of datasets, files, model inputs and LLM traffic.", no_args_is_help=True
)

HtmlOpt = Annotated[
    Path | None, typer.Option("--html", help="Write the HTML report (distributions) here.")
]
ColumnsOpt = Annotated[
    str | None,
    typer.Option("--columns", help="Check only these columns, comma-separated."),
]


def _registry(ctx: typer.Context) -> Registry:
    registry: Registry = ctx.obj.registry()
    return registry


def _columns(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        from lockgate.evals.drift.errors import DriftInputInvalid

        raise DriftInputInvalid("--columns names no column", param="columns")
    return names


@drift_app.command("check")
def check_command(
    ctx: typer.Context,
    reference: Annotated[
        str,
        typer.Option(
            "--reference",
            "-r",
            help="dataset:NAME@VERSION (or NAME@VERSION), a .jsonl/.csv/.parquet file, "
            "model:NAME@LABEL[:WINDOW] (its logged :predict inputs), or "
            "model:NAME@LABEL#reference (its registered reference dataset).",
        ),
    ],
    current: Annotated[
        str, typer.Option("--current", help="The data to check, named as --reference.")
    ],
    columns: ColumnsOpt = None,
    html: HtmlOpt = None,
    subject: Annotated[
        str | None,
        typer.Option(
            "--subject",
            help="What the check is evidence about, for gates: model:NAME@VERSION or "
            "prompt:NAME@VERSION (default: the model whose data is checked).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check CURRENT against REFERENCE, record a drift run; exit 1 on dataset drift."""
    from lockgate.evals.drift.runs import run_drift_check

    run = run_drift_check(
        _registry(ctx), reference, current, columns=_columns(columns), subject=subject,
        files=True,
    )  # fmt: skip
    _finish(run, html, as_json)


@drift_app.command("traffic")
def traffic_command(
    ctx: typer.Context,
    model: Annotated[
        str | None,
        typer.Option("--model", help="The model (as resolved, or as the client asked for it)."),
    ] = None,
    prompt: Annotated[
        str | None, typer.Option("--prompt", help="The prompt: NAME, NAME@VERSION or @LABEL.")
    ] = None,
    current: Annotated[
        str, typer.Option("--current", help="The current window, ending now.")
    ] = "24h",
    reference: Annotated[
        str,
        typer.Option("--reference", help="The reference window, ending where --current starts."),
    ] = "7d",
    until: Annotated[
        str | None,
        typer.Option(
            "--until",
            help="Where --current ends: an ISO 8601 time or an age like 2h (default: now), "
            "to look at a past incident.",
        ),
    ] = None,
    columns: ColumnsOpt = None,
    html: HtmlOpt = None,
    as_json: JsonOption = False,
) -> None:
    """Check LLM traffic (tokens, latency, errors, cost, finish reasons, judge scores) of a
    window against the one before."""
    from datetime import UTC, datetime

    from lockgate.evals.drift.check import DriftOptions
    from lockgate.evals.drift.traffic import run_traffic_drift
    from lockgate.registry.console import parse_moment

    now = datetime.now(UTC)
    if until is not None:
        now = parse_moment(until, "--until", now=now, sign=-1, hint="an age like 2h")
    run = run_traffic_drift(
        _registry(ctx), model=model, prompt=prompt, current=current, reference=reference,
        options=DriftOptions(columns=_columns(columns)), now=now,
    )  # fmt: skip
    _finish(run, html, as_json)


def _finish(run: DriftRun, html: Path | None, as_json: bool) -> None:
    """Write the HTML report, print the result; exit 1 on dataset drift, 2 when the report
    cannot be written (the run is recorded either way)."""
    if html is not None:
        _write_html(run, html)
    if as_json:
        import json

        sys.stdout.write(json.dumps(run.to_dict(), indent=2, ensure_ascii=False) + "\n")
    else:
        _show(run, html)
    if run.report.drifted:
        raise typer.Exit(1)


def _write_html(run: DriftRun, path: Path) -> None:
    from lockgate.evals.drift.errors import DriftError

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(run.html or "", encoding="utf-8")
    except OSError as exc:
        raise DriftError(
            f"cannot write the HTML report to {path}: {exc.strerror or exc} "
            f"(the check is recorded as run {run.run_id})",
            param="html",
        ) from exc


def _show(run: DriftRun, html: Path | None) -> None:
    from rich.table import Table
    from rich.text import Text

    from lockgate.evals.formats import num

    out = console()
    report = run.report
    out.print(Text(f"drift check: {run.current} against {run.reference}"))
    out.print(
        Text(
            f"{report.n_reference} reference rows, {report.n_current} current rows; "
            f"registry run {run.run_id}"
            + ("; stored reference profile used" if run.reference_cached else "")
        )
    )
    table = Table(title=None)
    table.add_column("column", overflow="fold", min_width=20)
    for heading in ("kind", "test", "statistic", "p-value", "score", "threshold", "verdict"):
        table.add_column(heading, overflow="fold")
    for c in report.columns:
        verdict = Text("drift", style="red") if c.drifted else Text("ok", style="green")
        table.add_row(
            Text(c.column), Text(c.kind), Text(c.test), Text(num(c.statistic)),
            Text(num(c.p_value)), Text(num(c.score)), Text(num(c.threshold)), verdict,
        )  # fmt: skip
    out.print(table)
    for c in report.columns:
        if "judged_share_current" in c.details:
            d = c.details
            out.print(Text(
                f"{c.column}: judged {d['judged_current']} of the current calls "
                f"({d['judged_share_current']:.1%}, {d['scored_current']} scored) and "
                f"{d['judged_reference']} of the reference calls "
                f"({d['judged_share_reference']:.1%}, {d['scored_reference']} scored)"
            ))  # fmt: skip
    for name, why in report.skipped.items():
        out.print(Text(f"not checked: {name}: {why}", style="yellow"))
    word = Text("drift", style="red") if report.drifted else Text("no drift", style="green")
    line = Text("dataset: ").append(word)
    line.append(
        f" ({report.n_drifted} of {len(report.columns)} columns drifted, share "
        f"{report.share_drifted:.2f}; drift at {report.drift_share:g} or more)"
    )
    out.print(line)
    if html is not None:
        out.print(Text(f"HTML report: {html}"))
