"""Report formats: JUnit XML (one test case per gate), Markdown for a pull-request
comment, and a self-contained HTML page."""

from __future__ import annotations

import html
import json
import math
from xml.etree import ElementTree as ET

from lockgate.evals.compare import MetricComparison
from lockgate.evals.report import EvalReport

MAX_FLIPS = 10
_ICON = {"pass": "✅", "fail": "❌", "inconclusive": "⚠️", "skipped": "⏭️"}


def num(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}g}"


def signed(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x:+.4g}"


def junit_xml(report: EvalReport) -> str:
    """One ``<testcase>`` per gate: failed gates fail, inconclusive ones fail or are skipped
    as the suite's ``inconclusive`` setting says (``warn``: skipped). A run that is not a pass
    for a reason no gate shows (no gates, skipped gates, errored calls) gets a ``verdict``
    case: a failure when it exits non-zero, else skipped."""
    suite = ET.Element("testsuite", name=f"lockgate eval {report.suite}",
                       tests=str(len(report.gates)), time=f"{report.wall_s:.3f}")  # fmt: skip
    failures = skipped = 0
    props = ET.SubElement(suite, "properties")
    properties = {"target": report.target, "dataset": report.dataset_digest,
                  "run_id": report.run_id or "", "baseline": report.baseline or ""}  # fmt: skip
    for key, value in properties.items():
        ET.SubElement(props, "property", name=key, value=value)
    for gate in report.gates:
        case = ET.SubElement(suite, "testcase", classname=f"eval.{report.suite}", name=gate.gate)
        blocks = gate.verdict == "fail" or (gate.verdict == "inconclusive" and report.exit_code)
        if blocks:
            failures += 1
            ET.SubElement(
                case, "failure", message=gate.reason, type=gate.verdict
            ).text = gate.reason
        elif gate.verdict in ("skipped", "inconclusive"):
            skipped += 1
            ET.SubElement(case, "skipped", message=gate.reason)
        ET.SubElement(case, "system-out").text = gate.reason
    if report.verdict != "pass" and not failures and not report.shards:
        case = ET.SubElement(suite, "testcase", classname=f"eval.{report.suite}", name="verdict")
        why = f"{report.verdict}: {report.verdict_reason}"
        if report.exit_code:
            failures += 1
            ET.SubElement(case, "failure", message=why, type=report.verdict).text = why
        else:
            skipped += 1
            ET.SubElement(case, "skipped", message=f"{why} ({report.exit_note})")
        suite.set("tests", str(len(report.gates) + 1))
    suite.set("failures", str(failures))
    suite.set("skipped", str(skipped))
    suite.set("errors", "0")
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _short(value: object, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(str(text).split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def _comparison_rows(comparisons: dict[str, MetricComparison]) -> list[str]:
    rows = ["| metric | baseline | candidate | Δ | 95% CI | p (test) | n |",
            "|---|---:|---:|---:|---|---|---:|"]  # fmt: skip
    for c in comparisons.values():
        arrow = "" if c.higher_is_better else " (lower is better)"
        rows.append(
            f"| {c.metric}{arrow} | {num(c.baseline)} | {num(c.candidate)} | {signed(c.delta)} | "
            f"{signed(c.ci_low)} … {signed(c.ci_high)} | {num(c.p_value, 3)} ({c.test}) | "
            f"{c.n_paired} |"
        )
    return rows


def markdown(report: EvalReport) -> str:
    """A pull-request comment: verdict, gates, per-metric table, examples that flipped."""
    lines = [
        f"### {_ICON.get(report.verdict, '')} lockgate eval `{report.suite}`: **{report.verdict}**",
        "",
        f"Target `{report.target}` on `{report.dataset}` ({report.examples_count} examples"
        f"{f', {report.epochs} epochs' if report.epochs > 1 else ''})"
        + (f"; baseline: {report.baseline}" if report.baseline else "; no baseline"),
        "",
    ]
    if report.verdict != "pass" and report.verdict_reason:
        note = f" ({report.exit_note})" if report.exit_note else ""
        lines += [f"**{report.verdict}**: {_short(report.verdict_reason, 400)}{note}", ""]
    if report.gates:
        lines += ["| gate | verdict | why |", "|---|---|---|"]
        lines += [f"| `{g.gate}` | {_ICON[g.verdict]} {'waived' if g.waived else g.verdict} | "
                  f"{_short(g.reason, 400)} |" for g in report.gates]  # fmt: skip
        lines.append("")
    if report.comparisons:
        lines += _comparison_rows(report.comparisons)
    else:
        lines += ["| metric | value | 95% CI | n |", "|---|---:|---|---:|"]
        lines += [f"| {s.metric} | {num(s.value)} | {num(s.ci_low)} … {num(s.ci_high)} | {s.n} |"
                  for s in report.summaries.values()]  # fmt: skip
    lines.append("")
    for c in (report.comparisons or {}).values():
        if not c.flips:
            continue
        lines += [
            f"<details><summary>{c.metric}: {c.worse} got worse, {c.better} got better</summary>",
            "", "| # | input | reference | baseline | candidate | |", "|---:|---|---|---|---|---|",
        ]  # fmt: skip
        for f in c.flips[:MAX_FLIPS]:
            lines.append(
                f"| {f.index} | {_short(f.input)} | {_short(f.reference)} | "
                f"{_short(f.baseline_output)} | {_short(f.candidate_output)} | "
                f"{'🔻' if f.direction == 'worse' else '🔺'} |"
            )
        if len(c.flips) > MAX_FLIPS:
            lines.append(f"\n…and {len(c.flips) - MAX_FLIPS} more.")
        lines += ["", "</details>", ""]
    run = f"run `{report.run_id}`, " if report.run_id else ""
    lines.append(
        f"<sub>{run}{report.calls} calls, {report.cache_hits} cache hits, "
        f"{report.resumed} resumed, {report.errors} errors, {report.wall_s:.1f}s</sub>"
    )
    return "\n".join(lines) + "\n"


_CSS = """body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;
margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}.pass{color:#1a7f37}.fail{color:#cf222e}.inconclusive{color:#9a6700}
.skipped{color:#666}code{background:#f4f4f4;padding:1px 4px}"""


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def html_page(report: EvalReport) -> str:
    e = html.escape
    parts = [
        f"<!doctype html><meta charset=utf-8><title>lockgate eval {e(report.suite)}</title>",
        f"<style>{_CSS}</style>",
        f"<h1>lockgate eval <code>{e(report.suite)}</code>: "
        f"<span class={report.verdict}>{report.verdict}</span></h1>",
        f"<p>Target <code>{e(report.target)}</code>, dataset <code>{e(report.dataset)}</code> "
        f"({report.examples_count} examples). Baseline: {e(report.baseline or 'none')}. "
        f"Run: <code>{e(report.run_id or '-')}</code>.</p>",
        f"<p>{e(report.verdict_reason)}{e(f' ({report.exit_note})' if report.exit_note else '')}"
        "</p>",
        "<h2>Gates</h2>",
        _table(["gate", "verdict", "why"], [
            [f"<code>{e(g.gate)}</code>", f"<span class={g.verdict}>{g.verdict}</span>",
             e(g.reason)] for g in report.gates]),
        "<h2>Metrics</h2>",
        _table(["metric", "value", "95% CI", "n"], [
            [e(s.metric), num(s.value), f"{num(s.ci_low)} … {num(s.ci_high)}", str(s.n)]
            for s in report.summaries.values()]),
    ]  # fmt: skip
    if report.comparisons:
        parts += ["<h2>Against the baseline</h2>", _table(
            ["metric", "baseline", "candidate", "Δ", "95% CI", "p", "test", "n"],
            [[e(c.metric), num(c.baseline), num(c.candidate), signed(c.delta),
              f"{signed(c.ci_low)} … {signed(c.ci_high)}", num(c.p_value, 3), c.test,
              str(c.n_paired)] for c in report.comparisons.values()])]  # fmt: skip
        for c in report.comparisons.values():
            if c.flips:
                parts += [f"<h3>{e(c.metric)}: examples that flipped</h3>", _table(
                    ["#", "input", "reference", "baseline", "candidate", ""],
                    [[str(f.index), e(_short(f.input, 200)), e(_short(f.reference, 200)),
                      e(_short(f.baseline_output, 200)), e(_short(f.candidate_output, 200)),
                      f.direction] for f in c.flips])]  # fmt: skip
    rows = []
    for r in report.examples[:500]:
        scores = ", ".join(f"{k}={num(v.value, 3)}" for k, v in r.scores.items())
        rows.append([str(r.index), str(r.epoch), e(_short(r.input, 120)),
                     e(_short(r.output, 160)), e(scores), e(r.error or "")])  # fmt: skip
    parts += [
        "<h2>Examples</h2>",
        _table(["#", "epoch", "input", "output", "scores", "error"], rows),
    ]
    return "\n".join(parts) + "\n"
