"""``lockgate eval run|merge``: run a suite from CI and gate on it.

Exit codes: 0 every gate passed; 1 a gate failed (or was inconclusive, unless the suite
says ``stats: {inconclusive: warn}``); 2 an error (bad suite or data, unreachable target),
raised as a :class:`registry.errors.LockgateError` for the root to print.

The root CLI mounts ``eval_app`` and puts an object in the typer context with
``registry()`` and ``registry_settings``; when it also has ``eval_transport_factory``
(a callable returning an ``httpx`` transport), suites without ``target.base_url`` run
against the in-process gateway through it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import typer

from registry.console import console, table

if TYPE_CHECKING:
    from evals.report import EvalReport
    from registry.registry import Registry
    from registry.settings import RegistrySettings


class EvalContext(Protocol):
    @property
    def registry_settings(self) -> RegistrySettings: ...

    def registry(self) -> Registry: ...


eval_app = typer.Typer(
    help="Dataset-based evaluation runs with statistically sound gates.", no_args_is_help=True
)

BaselineOpt = Annotated[
    str | None,
    typer.Option(
        "--baseline",
        "-b",
        help="A run id, label:X (latest run of this suite on the version holding label X), "
        "or a JSON report.",
    ),
]
JunitOpt = Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML here.")]
MarkdownOpt = Annotated[
    Path | None, typer.Option("--markdown", help="Write a Markdown summary (PR comment) here.")
]
HtmlOpt = Annotated[Path | None, typer.Option("--html", help="Write an HTML report here.")]
JsonOutOpt = Annotated[
    Path | None,
    typer.Option("--json", help="Write the JSON report (with examples) here; - for stdout."),
]


def _state(ctx: typer.Context) -> EvalContext:
    state: EvalContext = ctx.obj
    return state


def _write_outputs(
    report: EvalReport, junit: Path | None, markdown: Path | None, html: Path | None,
    json_out: Path | None,
) -> None:  # fmt: skip
    from evals.formats import html_page, junit_xml
    from evals.formats import markdown as render_markdown

    if junit is not None:
        junit.write_text(junit_xml(report), encoding="utf-8")
    if markdown is not None:
        markdown.write_text(render_markdown(report), encoding="utf-8")
    if html is not None:
        html.write_text(html_page(report), encoding="utf-8")
    if json_out is not None:
        if str(json_out) == "-":
            import json

            sys.stdout.write(json.dumps(report.to_dict(), indent=1, default=str) + "\n")
        else:
            report.write_json(json_out)


def _show(report: EvalReport) -> None:
    from evals.formats import num, signed

    out = console()
    out.print(
        f"eval [bold]{report.suite}[/bold]: {report.target} on {report.dataset} "
        f"({report.examples_count} examples; {report.calls} calls, {report.cache_hits} cache "
        f"hits, {report.resumed} resumed, {report.errors} errors, {report.wall_s:.1f}s)"
    )
    if report.run_id:
        out.print(f"registry run {report.run_id}")
    if report.comparisons:
        out.print(table(f"against {report.baseline}",
                        ["metric", "baseline", "candidate", "delta", "95% CI", "p", "n"],
                        [[c.metric, num(c.baseline), num(c.candidate), signed(c.delta),
                          f"{signed(c.ci_low)} .. {signed(c.ci_high)}",
                          f"{num(c.p_value, 3)} {c.test}", c.n_paired]
                         for c in report.comparisons.values()]))  # fmt: skip
    else:
        out.print(table("metrics", ["metric", "value", "95% CI", "n"],
                        [[s.metric, num(s.value), f"{num(s.ci_low)} .. {num(s.ci_high)}", s.n]
                         for s in report.summaries.values()]))  # fmt: skip
    colours = {"pass": "green", "fail": "red", "inconclusive": "yellow", "skipped": "dim"}
    for g in report.gates:
        out.print(f"[{colours[g.verdict]}]{g.verdict:>12}[/]  {g.gate}: {g.reason}")
    out.print(f"verdict: [{colours[report.verdict]}]{report.verdict}[/]")


class _Bar:
    """A rich progress bar, only when stdout is a terminal."""

    def __init__(self, label: str) -> None:
        self._progress: Any = None
        self._label = label
        self._task: Any = None

    def __enter__(self) -> _Bar:
        if sys.stdout.isatty():
            from rich.progress import Progress

            self._progress = Progress(transient=True)
            self._progress.start()
        return self

    def update(self, done: int, total: int) -> None:
        if self._progress is None:
            return
        if self._task is None:
            self._task = self._progress.add_task(self._label, total=total)
        self._progress.update(self._task, completed=done)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


@eval_app.command("run")
def run_command(
    ctx: typer.Context,
    suite_path: Annotated[Path, typer.Argument(metavar="SUITE", help="The suite YAML file.")],
    baseline: BaselineOpt = None,
    junit: JunitOpt = None,
    markdown: MarkdownOpt = None,
    html: HtmlOpt = None,
    json_out: JsonOutOpt = None,
    shard: Annotated[
        str | None, typer.Option("--shard", help="Run shard i of n (i/n), for CI fan-out.")
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option("--cache-dir", help="Response cache and resume files.")
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Always call the target.")] = False,
    no_resume: Annotated[
        bool, typer.Option("--no-resume", help="Start over instead of resuming.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the verdict.")] = False,
) -> None:
    """Run a suite, compare with a baseline, write reports; exit 1 when a gate fails."""
    from evals.baseline import resolve_baseline
    from evals.report import build_report, record_verdict
    from evals.runner import RunOptions, Shard, run_suite
    from evals.suite import load_suite

    suite = load_suite(suite_path)
    state = _state(ctx)
    registry = state.registry()
    base = resolve_baseline(baseline, suite, registry) if baseline else None
    with _Bar(f"eval {suite.name}") as bar:
        options = RunOptions(
            cache_dir=cache_dir, use_cache=not no_cache, resume=not no_resume,
            shard=Shard.parse(shard) if shard else None,
            transport_factory=getattr(state, "eval_transport_factory", None),
            progress=bar.update,
        )  # fmt: skip
        run = run_suite(suite, registry=registry, options=options)
    report = build_report(run, base)
    record_verdict(registry, report)
    _write_outputs(report, junit, markdown, html, json_out)
    if str(json_out) != "-":
        if quiet:
            console().print(f"verdict: {report.verdict}")
        else:
            _show(report)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


@eval_app.command("merge")
def merge_command(
    ctx: typer.Context,
    suite_path: Annotated[Path, typer.Argument(metavar="SUITE", help="The suite YAML file.")],
    shards: Annotated[list[Path], typer.Argument(help="JSON reports of the shard runs.")],
    baseline: BaselineOpt = None,
    junit: JunitOpt = None,
    markdown: MarkdownOpt = None,
    html: HtmlOpt = None,
    json_out: JsonOutOpt = None,
) -> None:
    """Merge the JSON reports of ``--shard`` runs into one run, then gate on it."""
    from evals.baseline import resolve_baseline
    from evals.report import merge_shards, record_verdict
    from evals.suite import load_suite

    suite = load_suite(suite_path)
    registry = _state(ctx).registry()
    base = resolve_baseline(baseline, suite, registry) if baseline else None
    report = merge_shards(suite, shards, base, registry)
    record_verdict(registry, report)
    _write_outputs(report, junit, markdown, html, json_out)
    if str(json_out) != "-":
        _show(report)
    if report.exit_code:
        raise typer.Exit(report.exit_code)
