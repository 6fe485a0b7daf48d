"""The drift report as one self-contained HTML page: no script, no network, no files.

Per column it shows the test, statistic, p-value, score, threshold and verdict, and the
reference and current distributions as inline SVG drawn from the two profiles: a histogram
over shared bins for a numeric column (from its sorted values, or its sketch's weighted
atoms), the share of each category (the 20 largest, the rest as one "other" bar) for a
categorical one. Every name and value from the data is HTML-escaped, so a column called
``<script>`` is text; a Content-Security-Policy forbids scripts and remote loads anyway.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Any

import numpy as np

from lockgate.evals.drift.profile import CategoricalProfile, NumericProfile, Profile
from lockgate.evals.drift.results import ColumnDrift, DriftReport

BINS = 30
TOP_CATEGORIES = 20
LABEL_CHARS = 40
_REF, _CUR, _DRIFT = "#8a94a6", "#1c7ed6", "#d9480f"
_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:980px;color:#1f2933}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em;word-break:break-all}
table{border-collapse:collapse;margin:1em 0}td,th{border-bottom:1px solid #d9dee5;
padding:.3em .7em;text-align:left}th{background:#f3f5f8}td.num{text-align:right;
font-variant-numeric:tabular-nums}.drift{color:#c92a2a;font-weight:600}.ok{color:#2b8a3e}
.meta{color:#52606d}.key{display:inline-block;width:.9em;height:.9em;margin:0 .3em 0 1em;
vertical-align:middle}svg{display:block;margin:.5em 0}code{word-break:break-all}
"""


def render_html(
    report: DriftReport,
    reference: Profile,
    current: Profile,
    *,
    title: str = "Drift report",
    reference_name: str = "",
    current_name: str = "",
    run_id: str | None = None,
) -> str:
    """The page for ``report``, with pictures from the ``reference`` and ``current``
    profiles (columns a profile lacks are shown without a picture)."""
    verdict = "drift" if report.drifted else "no drift"
    css = "drift" if report.drifted else "ok"
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">",
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        '<p class="meta">',
        f"reference: <code>{escape(reference_name)}</code> ({report.n_reference} rows)<br>",
        f"current: <code>{escape(current_name)}</code> ({report.n_current} rows)",
        f"<br>registry run: <code>{escape(run_id)}</code>" if run_id else "",
        "</p>",
        f'<p>Dataset: <span class="{css}">{verdict}</span>: {report.n_drifted} of '
        f"{len(report.columns)} columns drifted (share {_num(report.share_drifted)}; "
        f"dataset drift at a share of {_num(report.drift_share)} or more).</p>",
        _summary(report.columns),
    ]
    if report.skipped:
        parts.append("<h2>Not checked</h2><ul>")
        parts.extend(
            f"<li><code>{escape(name)}</code>: {escape(why)}</li>"
            for name, why in report.skipped.items()
        )
        parts.append("</ul>")
    for column in report.columns:
        parts.append(_section(column, reference, current))
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p) + "\n"


def _summary(columns: Sequence[ColumnDrift]) -> str:
    head = "".join(
        f"<th>{h}</th>"
        for h in ("column", "kind", "test", "statistic", "p-value", "score", "threshold",
                  "verdict")
    )  # fmt: skip
    rows = []
    for c in columns:
        rows.append(
            f"<tr><td><code>{escape(c.column)}</code></td><td>{escape(c.kind)}</td>"
            f"<td>{escape(c.test)}</td><td class=num>{_num(c.statistic)}</td>"
            f"<td class=num>{_num(c.p_value)}</td><td class=num>{_num(c.score)}</td>"
            f"<td class=num>{_num(c.threshold)}</td><td>{_verdict(c)}</td></tr>"
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _verdict(column: ColumnDrift) -> str:
    approx = "" if column.exact else " (from a sketch)"
    if column.drifted:
        return f'<span class="drift">drift</span>{approx}'
    return f'<span class="ok">no drift</span>{approx}'


def _section(column: ColumnDrift, reference: Profile, current: Profile) -> str:
    name = escape(column.column)
    ref = reference.columns.get(column.column)
    cur = current.columns.get(column.column)
    colour = _DRIFT if column.drifted else _CUR
    if isinstance(ref, NumericProfile) and isinstance(cur, NumericProfile):
        picture = _histogram(ref, cur, column.column, colour)
    elif isinstance(ref, CategoricalProfile) and isinstance(cur, CategoricalProfile):
        picture = _categories(ref, cur, column.column, colour)
    else:
        picture = _words(column) or '<p class="meta">No picture for this column.</p>'
    legend = (
        f'<p class="meta"><span class="key" style="background:{_REF}"></span>reference '
        f"({column.n_reference} values)"
        f'<span class="key" style="background:{colour}"></span>current '
        f"({column.n_current} values)</p>"
    )
    return (
        f"<section><h2>{name}</h2>"
        f"<p>{escape(column.test)}: score {_num(column.score)}, threshold "
        f"{_num(column.threshold)}: {_verdict(column)}</p>{legend}{picture}</section>"
    )


def _words(column: ColumnDrift) -> str:
    """What a text column's classifier found typical of each side, when it says."""
    lines = []
    for side in ("reference", "current"):
        words = getattr(column, f"words_{side}", ()) or ()
        if words:
            shown = ", ".join(f"<code>{escape(str(w))}</code>" for w in words)
            lines.append(f"<p>Words typical of the {side} data: {shown}</p>")
    return "".join(lines)


def _weighted(profile: NumericProfile) -> tuple[np.ndarray[Any, Any], Any] | None:
    """Values and weights to bin: the sorted values, else the sketch's atoms."""
    if profile.values is not None and profile.values.size:
        return profile.values, None
    if profile.sketch is not None:
        return profile.sketch.values, profile.sketch.weights
    return None


def _histogram(ref: NumericProfile, cur: NumericProfile, name: str, colour: str) -> str:
    left, right = _weighted(ref), _weighted(cur)
    if left is None or right is None:
        return '<p class="meta">The profile holds no values to draw.</p>'
    low = float(min(ref.minimum, cur.minimum))
    high = float(max(ref.maximum, cur.maximum))
    if not (math.isfinite(low) and math.isfinite(high)):
        return '<p class="meta">The profile holds no values to draw.</p>'
    if high <= low:
        high = low + 1.0
    edges = np.linspace(low, high, BINS + 1)
    shares = []
    for values, weights in (left, right):
        counts, _ = np.histogram(values, bins=edges, weights=weights)
        total = float(counts.sum())
        shares.append(counts / total if total else counts)
    width, height, pad = 900, 220, 28
    top = max(float(shares[0].max()), float(shares[1].max()), 1e-12)
    step = (width - 2 * pad) / BINS
    bars = []
    for i in range(BINS):
        for side, (share, fill) in enumerate(((shares[0][i], _REF), (shares[1][i], colour))):
            h = (height - 2 * pad) * float(share) / top
            x = pad + i * step + side * step / 2
            tip = (
                f"{'reference' if side == 0 else 'current'} {_num(edges[i])} .. "
                f"{_num(edges[i + 1])}: {float(share):.1%}"
            )
            bars.append(
                f'<rect x="{x:.1f}" y="{height - pad - h:.1f}" width="{step / 2 - 1:.1f}" '
                f'height="{h:.1f}" fill="{fill}"><title>{escape(tip)}</title></rect>'
            )
    axis = (
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
        'stroke="#52606d"/>'
        f'<text x="{pad}" y="{height - 8}" font-size="12">{escape(_num(low))}</text>'
        f'<text x="{width - pad}" y="{height - 8}" font-size="12" text-anchor="end">'
        f"{escape(_num(high))}</text>"
        f'<text x="{pad}" y="16" font-size="12">{top:.1%} of rows</text>'
    )
    label = escape(f"distribution of {name}")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{label}">'
        f"<title>{label}</title>{axis}{''.join(bars)}</svg>"
    )


def _categories(ref: CategoricalProfile, cur: CategoricalProfile, name: str, colour: str) -> str:
    keys = set(ref.counts) | set(cur.counts)
    ranked = sorted(keys, key=lambda k: (-(ref.counts.get(k, 0) + cur.counts.get(k, 0)), repr(k)))
    shown, rest = ranked[:TOP_CATEGORIES], ranked[TOP_CATEGORIES:]
    rows: list[tuple[str, float, float]] = []
    for key in shown:
        rows.append((str(key), _share(ref.counts.get(key, 0), ref.n),
                     _share(cur.counts.get(key, 0), cur.n)))  # fmt: skip
    if rest:
        rows.append((
            f"other ({len(rest)} categories)",
            _share(sum(ref.counts.get(k, 0) for k in rest), ref.n),
            _share(sum(cur.counts.get(k, 0) for k in rest), cur.n),
        ))  # fmt: skip
    width, label_w, row_h = 900, 300, 26
    height = row_h * len(rows) + 10
    top = max([max(r, c) for _, r, c in rows] + [1e-12])
    span = width - label_w - 70
    parts = []
    for i, (key, r, c) in enumerate(rows):
        y = 5 + i * row_h
        shown_key = key if len(key) <= LABEL_CHARS else key[: LABEL_CHARS - 1] + "…"
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 16}" font-size="12" text-anchor="end">'
            f"<title>{escape(key)}</title>{escape(shown_key)}</text>"
        )
        for j, (share, fill, who) in enumerate(((r, _REF, "reference"), (c, colour, "current"))):
            w = span * share / top
            parts.append(
                f'<rect x="{label_w}" y="{y + j * 11:.1f}" width="{w:.1f}" height="10" '
                f'fill="{fill}"><title>{escape(f"{who} {key}: {share:.1%}")}</title></rect>'
            )
        parts.append(
            f'<text x="{label_w + span * max(r, c) / top + 6:.1f}" y="{y + 16}" '
            f'font-size="11" fill="#52606d">{r:.1%} / {c:.1%}</text>'
        )
    label = escape(f"category shares of {name}")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{label}">'
        f"<title>{label}</title>{''.join(parts)}</svg>"
    )


def _share(count: int, total: int) -> float:
    return count / total if total else 0.0


def _num(value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{float(value):.4g}"
