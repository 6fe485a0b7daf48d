"""``lockgate eval run|merge``: run a suite from CI and gate on it.

Exit codes: 0 every gate passed; 1 a gate failed, or the run is not a pass for another
reason: a gate was inconclusive or skipped, the suite has no gates, or calls errored (unless
the suite says ``stats: {inconclusive: warn}`` or ``{skipped: warn}``: then 0, and the output
says so); 2 an error (bad suite or data, unreachable target, a report that cannot be
written), raised as a :class:`registry.errors.LockgateError` for the root to print.

Output is like every lockgate command's: a summary for people, or with ``--json`` the JSON
report on stdout for scripts. Reports go to files with ``--junit``, ``--markdown``,
``--html`` and ``--json-out`` (which was ``--json PATH`` before ``--json`` became the flag it
is everywhere; the old spelling is refused with a message naming the new one).

The root CLI mounts ``eval_app`` and puts an object in the typer context with
``registry()`` and ``registry_settings``; when it also has ``eval_transport_factory``
(a callable returning an ``httpx`` transport), suites without ``target.base_url`` run
against the in-process gateway through it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import typer
from typer.core import TyperCommand

from lockgate.registry.console import JsonOption, console, table

if TYPE_CHECKING:
    from lockgate.evals.report import EvalReport
    from lockgate.registry.registry import Registry
    from lockgate.registry.settings import RegistrySettings


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
    typer.Option(
        "--json-out",
        help="Write the JSON report (with examples) here; it serves as --baseline and as a "
        "shard for merge.",
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the verdict.")]


class _JsonIsAFlag(TyperCommand):
    """Refuses the old ``--json PATH`` (now ``--json-out PATH``) before it is misread: as an
    extra argument by ``run``, or worse as one more shard by ``merge``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        for i, arg in enumerate(args):
            value = arg.partition("=")[2] if arg.startswith("--json=") else None
            if arg == "--json" and i + 1 < len(args):
                after = args[i + 1]
                if after == "-" or (not after.startswith("-") and after.endswith(".json")):
                    value = after
            if value is not None:
                shown = "" if value == "-" else f"; to write it to {value}, use --json-out {value}"
                raise typer.BadParameter(
                    f"--json takes no value now: it prints the JSON report on stdout, as "
                    f"--json does for every lockgate command{shown}",
                    ctx=ctx,
                    param_hint="'--json'",
                )
        return super().parse_args(ctx, args)


def _state(ctx: typer.Context) -> EvalContext:
    state: EvalContext = ctx.obj
    return state


def _json_text(report: EvalReport) -> str:
    import json

    return json.dumps(report.to_dict(), indent=1, ensure_ascii=False, default=str) + "\n"


_OUTPUTS = {"junit": "JUnit report", "markdown": "Markdown summary", "html": "HTML report",
            "json": "JSON report"}  # fmt: skip


def _unwritable(path: Path, exc: OSError) -> str:
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            return f"{parent} is a file, not a folder"
    return exc.strerror or str(exc)


def _write_outputs(
    report: EvalReport, junit: Path | None, markdown: Path | None, html: Path | None,
    json_out: Path | None,
) -> list[str]:  # fmt: skip
    """Write the reports asked for, creating their folders; one line per report that could
    not be written."""
    from lockgate.evals.formats import html_page, junit_xml
    from lockgate.evals.formats import markdown as render_markdown

    renderers: dict[str, tuple[Path | None, Callable[[], str]]] = {
        "junit": (junit, lambda: junit_xml(report)),
        "markdown": (markdown, lambda: render_markdown(report)),
        "html": (html, lambda: html_page(report)),
        "json": (json_out, lambda: _json_text(report)),
    }
    errors = []
    for kind, (path, render) in renderers.items():
        if path is None:
            continue
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render(), encoding="utf-8")
        except OSError as exc:
            errors.append(f"cannot write the {_OUTPUTS[kind]} to {path}: {_unwritable(path, exc)}")
    return errors


def _finish(
    registry: Registry, report: EvalReport, outputs: tuple[Path | None, ...], quiet: bool,
    as_json: bool,
) -> None:  # fmt: skip
    """Record the verdict, write the reports, print the summary (or the JSON report); exit
    with the run's code, or 2 when a report could not be written (recorded on the run)."""
    from lockgate.evals.errors import EvalError
    from lockgate.evals.report import record_output_errors, record_verdict

    record_verdict(registry, report)
    junit, markdown, html, json_out = outputs
    errors = _write_outputs(report, junit, markdown, html, json_out)
    if as_json:
        sys.stdout.write(_json_text(report))
    elif quiet:
        _verdict_line(report)
    else:
        _show(report)
    if errors:
        record_output_errors(registry, report, errors)
        raise EvalError("; ".join(errors), param="outputs")
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def _verdict_line(report: EvalReport) -> None:
    colours = {"pass": "green", "fail": "red", "inconclusive": "yellow", "skipped": "yellow"}
    out = console()
    why = (
        f" — {report.verdict_reason}" if report.verdict != "pass" and report.verdict_reason else ""
    )
    out.print(f"verdict: [{colours[report.verdict]}]{report.verdict}[/]{why}", highlight=False)
    if report.exit_note:
        out.print(report.exit_note, highlight=False)


def _show(report: EvalReport) -> None:
    from lockgate.evals.formats import num, signed

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
    colours = {"pass": "green", "fail": "red", "inconclusive": "yellow", "skipped": "yellow"}
    for g in report.gates:
        shown = "waived" if g.waived else g.verdict
        out.print(f"[{colours[g.verdict]}]{shown:>12}[/]  {g.gate}: {g.reason}", highlight=False)
    _verdict_line(report)


class _Bar:
    """A rich progress bar, only when stdout is a terminal."""

    def __init__(self, description: str) -> None:
        self._progress: Any = None
        self._description = description
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
            self._task = self._progress.add_task(self._description, total=total)
        self._progress.update(self._task, completed=done)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


@eval_app.command("run", cls=_JsonIsAFlag)
def run_command(
    ctx: typer.Context,
    suite_path: Annotated[Path, typer.Argument(metavar="SUITE", help="The suite YAML file.")],
    baseline: BaselineOpt = None,
    junit: JunitOpt = None,
    markdown: MarkdownOpt = None,
    html: HtmlOpt = None,
    json_out: JsonOutOpt = None,
    as_json: JsonOption = False,
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
    quiet: QuietOpt = False,
) -> None:
    """Run a suite, compare with a baseline, write reports; exit 1 unless the run passed."""
    from lockgate.evals.baseline import resolve_baseline
    from lockgate.evals.report import build_report
    from lockgate.evals.runner import RunOptions, Shard, run_suite
    from lockgate.evals.suite import load_suite

    suite = load_suite(suite_path)
    state = _state(ctx)
    defaults = getattr(state, "evals_settings", None)  # the evals section of lockgate.yaml
    if defaults is not None:
        from lockgate.evals.settings import with_eval_defaults

        suite = with_eval_defaults(suite, defaults)
        cache_dir = cache_dir or defaults.cache_dir
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
    _finish(registry, report, (junit, markdown, html, json_out), quiet, as_json)


@eval_app.command("merge", cls=_JsonIsAFlag)
def merge_command(
    ctx: typer.Context,
    suite_path: Annotated[Path, typer.Argument(metavar="SUITE", help="The suite YAML file.")],
    shards: Annotated[list[Path], typer.Argument(help="JSON reports of the shard runs.")],
    baseline: BaselineOpt = None,
    junit: JunitOpt = None,
    markdown: MarkdownOpt = None,
    html: HtmlOpt = None,
    json_out: JsonOutOpt = None,
    as_json: JsonOption = False,
    quiet: QuietOpt = False,
) -> None:
    """Merge the JSON reports of ``--shard`` runs into one run, then gate on it."""
    from lockgate.evals.baseline import resolve_baseline
    from lockgate.evals.report import merge_shards
    from lockgate.evals.suite import load_suite

    suite = load_suite(suite_path)
    registry = _state(ctx).registry()
    base = resolve_baseline(baseline, suite, registry) if baseline else None
    report = merge_shards(suite, shards, base, registry)
    _finish(registry, report, (junit, markdown, html, json_out), quiet, as_json)
