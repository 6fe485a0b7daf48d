"""LLM traffic drift: the gateway's call records of one window against an earlier one.

:func:`traffic_frame` reads the call records (:mod:`registry.calls`) of a model and/or a
prompt between two times into one row per call with the columns :data:`COLUMNS`:

================  ==========================================================  ===========
column            from the call record                                        kind
================  ==========================================================  ===========
input_tokens      prompt tokens                                               numeric
output_tokens     completion tokens                                           numeric
latency_ms        the whole call                                              numeric
ttft_ms           time to the first token (streamed calls only)               numeric
error             1 when the status is 400 or more or an error was recorded   categorical
cost_usd          the priced cost                                             numeric
finish_reason     how the answer ended (``stop``, ``length``, ``tool_calls``,  categorical
                  …; a stream's last); none for failed calls and embeddings
================  ==========================================================  ===========

**Judge scores.** When LLM judges score a sampled share of the traffic (``gateway.judges``,
:mod:`gateway.judges`), each judge found in either window adds a numeric column
``judge:NAME``: the scores (0-1) of the calls it judged, from the registry's call scores
(:meth:`registry.calls.Calls.scores`, the same model/route, prompt and window), at most
:data:`MAX_SCORES` per window. Its default test follows the same rules with ``n`` the
reference's scores. The column's ``details`` say how much of each window was judged:
``judged_reference`` / ``judged_current`` (calls with a judgment, scored or not),
``scored_*`` and ``judged_share_*`` (judged / calls).

A column without a value in either window (``ttft_ms`` when no call streamed, ``cost_usd``
without prices, ``finish_reason`` when every call failed, a judge that scored nothing in one
window) is listed in the report's ``skipped``, not tested.

:func:`run_traffic_drift` compares the ``current`` window (``24h``: the last 24 hours)
with the ``reference`` window just before it (``7d``: the 7 days before those 24 hours),
with the default test per column (:mod:`evals.drift.check`), and records a ``drift`` run as
:func:`evals.drift.runs.run_drift_check` does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from lockgate.evals.drift.check import DriftOptions, check_drift
from lockgate.evals.drift.errors import DriftInputInvalid
from lockgate.evals.drift.profile import Profile, build_profile, profile_column
from lockgate.evals.drift.runs import DriftRun, record_drift_run, resolve_subject
from lockgate.registry._extras import require
from lockgate.registry.errors import InvalidInput
from lockgate.registry.records import Ref

if TYPE_CHECKING:
    from lockgate.evals.drift._frames import Kind
    from lockgate.evals.drift.results import ColumnDrift
    from lockgate.registry.calls import CallFilter, CallInfo, ScoreInfo
    from lockgate.registry.registry import Registry

COLUMNS: dict[str, Kind] = {
    "input_tokens": "numeric",
    "output_tokens": "numeric",
    "latency_ms": "numeric",
    "ttft_ms": "numeric",
    "error": "categorical",
    "cost_usd": "numeric",
    "finish_reason": "categorical",
}
JUDGE_PREFIX = "judge:"
MAX_CALLS = 200_000  # per window, the newest
MAX_SCORES = 200_000  # judge scores per window, the newest
_PAGE = 1000
_SCORE_PAGE = 10_000


def traffic_frame(
    registry: Registry,
    *,
    model: str | None,
    prompt: str | None,
    start: datetime,
    end: datetime,
    max_calls: int = MAX_CALLS,
) -> Any:
    """The call records from ``start`` (inclusive) to ``end`` (exclusive) whose model or
    route is ``model`` and whose prompt is ``prompt`` (``NAME`` or ``NAME@VERSION``), newest
    ``max_calls`` at most, as a pandas DataFrame of :data:`COLUMNS` (missing values NaN)."""
    pd = require("pandas", feature="traffic drift", extra="evals")
    calls = _calls(registry, model, prompt, start, end, max_calls)
    calls.sort(key=lambda c: c.id)

    def floats(name: str) -> Any:
        values = [getattr(c, name) for c in calls]
        return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)

    error = [int(c.status_code >= 400 or c.error_type is not None) for c in calls]
    return pd.DataFrame(
        {
            "input_tokens": floats("input_tokens"),
            "output_tokens": floats("output_tokens"),
            "latency_ms": floats("latency_ms"),
            "ttft_ms": floats("ttft_ms"),
            "error": np.array(error, dtype=np.int64),
            "cost_usd": floats("cost_usd"),
            "finish_reason": np.array([c.finish_reason for c in calls], dtype=object),
        }
    )


@dataclass(frozen=True)
class JudgeColumn:
    """One judge's scores in a window: the scores (NaN: judged without a score)."""

    name: str
    scores: Any  # numpy float64 array

    @property
    def column(self) -> str:
        return JUDGE_PREFIX + self.name

    @property
    def scored(self) -> int:
        return int(np.isfinite(self.scores).sum())


def judge_scores(
    registry: Registry,
    *,
    model: str | None,
    prompt: str | None,
    start: datetime,
    end: datetime,
    max_scores: int = MAX_SCORES,
) -> dict[str, JudgeColumn]:
    """The judge scores of the calls :func:`traffic_frame` reads (the newest ``max_scores``),
    by judge name."""

    def fetch(where: CallFilter, limit: int, before: int | None) -> tuple[list[Any], int | None]:
        page = registry.calls.scores(where, limit=limit, before=before)
        return page, (page[-1].id if len(page) == limit else None)

    filters = _filters(registry, model, prompt)
    newest: list[ScoreInfo] = _newest(filters, start, end, max_scores, _SCORE_PAGE, fetch)
    by_judge: dict[str, list[float]] = {}
    for score in reversed(newest):
        value = np.nan if score.score is None else float(score.score)
        by_judge.setdefault(score.judge, []).append(value)
    return {
        name: JudgeColumn(name, np.array(values, dtype=np.float64))
        for name, values in sorted(by_judge.items())
    }


def _filters(registry: Registry, model: str | None, prompt: str | None) -> list[CallFilter]:
    from lockgate.registry.calls import CallFilter

    name, version = None, None
    if prompt is not None:
        ref = Ref.parse(prompt)
        name = ref.name
        if ref.version is not None:
            version = ref.version
        elif ref.label is not None:
            version = registry.prompts.get(ref).version
    base = CallFilter(prompt_name=name, prompt_version=version)
    if model is None:
        return [base]
    # the model as the gateway resolved it, or as the client asked for it (the route)
    return [replace(base, model=model), replace(base, route=model)]


def _calls(
    registry: Registry,
    model: str | None,
    prompt: str | None,
    start: datetime,
    end: datetime,
    max_calls: int,
) -> list[CallInfo]:
    def fetch(where: CallFilter, limit: int, before: int | None) -> tuple[list[Any], int | None]:
        page = registry.calls.query(where, limit=limit, before=before)
        return page.calls, page.next_before

    return _newest(_filters(registry, model, prompt), start, end, max_calls, _PAGE, fetch)


def _newest(
    filters: list[CallFilter],
    start: datetime,
    end: datetime,
    limit: int,
    page_size: int,
    fetch: Callable[[CallFilter, int, int | None], tuple[list[Any], int | None]],
) -> list[Any]:
    """The newest ``limit`` rows (by id) from ``start`` to ``end`` matching any of
    ``filters``, read a page at a time through ``fetch(where, limit, before)``, which gives a
    page newest first and the ``before`` of the next page (None: the last)."""
    found: dict[int, Any] = {}
    for where in filters:
        where = replace(where, since=start, until=end)
        before: int | None = None
        taken = 0
        while taken < limit:
            rows, before = fetch(where, min(page_size, limit - taken), before)
            for row in rows:
                found[row.id] = row
            taken += len(rows)
            if before is None:
                break
    return sorted(found.values(), key=lambda r: -r.id)[:limit]


def windows(
    current: str, reference: str, now: datetime
) -> tuple[tuple[datetime, datetime], tuple[datetime, datetime]]:
    """(current start, end), (reference start, end): the current window ends ``now``, the
    reference window ends where the current one starts."""
    spans = []
    for option, text in (("--current", current), ("--reference", reference)):
        span = _duration(option, text)
        spans.append(span)
    current_start = now - spans[0]
    return (current_start, now), (current_start - spans[1], current_start)


def _duration(option: str, text: str) -> timedelta:
    from lockgate.registry.console import parse_moment

    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    hint = "a window like 24h, 7d or 90m"
    span = epoch - parse_moment(text, option, now=epoch, sign=-1, hint=hint)
    if text.strip()[-1:] not in tuple("smhdw") or span <= timedelta(0):  # an ISO time, 0h
        raise InvalidInput(f"{option} {text!r}: give {hint}", param=option[2:])
    return span


def run_traffic_drift(
    registry: Registry,
    *,
    model: str | None = None,
    prompt: str | None = None,
    current: str = "24h",
    reference: str = "7d",
    options: DriftOptions | None = None,
    html: bool = True,
    now: datetime | None = None,
) -> DriftRun:
    """Check the ``current`` window's traffic against the ``reference`` window before it and
    record a ``drift`` run (subject ``prompt:NAME@VERSION`` when the prompt names one)."""
    if model is None and prompt is None:
        raise DriftInputInvalid("name a model (--model), a prompt (--prompt) or both")
    options = options or DriftOptions()
    now = now or datetime.now(UTC)
    (cur_start, cur_end), (ref_start, ref_end) = windows(current, reference, now)
    scope = ",".join(
        f"{key}={value}" for key, value in (("model", model), ("prompt", prompt)) if value
    )
    frames, judged = [], []
    for what, start, end in (("reference", ref_start, ref_end), ("current", cur_start, cur_end)):
        frame = traffic_frame(registry, model=model, prompt=prompt, start=start, end=end)
        if len(frame) == 0:
            raise DriftInputInvalid(
                f"no call records for {scope} in the {what} window "
                f"{start.isoformat()} .. {end.isoformat()}",
                param=what,
            )
        frames.append(frame)
        judged.append(judge_scores(registry, model=model, prompt=prompt, start=start, end=end))
    names = sorted(set(judged[0]) | set(judged[1]))
    kinds = dict(COLUMNS)
    ref_profile = _with_judges(build_profile(frames[0], kinds=kinds), judged[0], names)
    cur_profile = _with_judges(
        build_profile(frames[1], kinds=kinds, exact_limit=None), judged[1], names
    )
    known = [*COLUMNS, *(JUDGE_PREFIX + name for name in names)]
    usable = _usable(options, ref_profile, cur_profile, known)
    report = check_drift(ref_profile, cur_profile, usable)
    counts = (len(frames[0]), len(frames[1]))
    report = replace(
        report,
        columns=tuple(_judge_details(c, judged, counts) for c in report.columns),
        skipped={**report.skipped, **_empty(ref_profile, cur_profile, options, known)},
    )
    subject = ""
    if prompt is not None and "@" in prompt:
        subject = resolve_subject(registry, f"prompt:{prompt}")
    ref_name = f"calls:{scope}:{ref_start.isoformat()}..{ref_end.isoformat()}"
    cur_name = f"calls:{scope}:{cur_start.isoformat()}..{cur_end.isoformat()}"
    return record_drift_run(
        registry, report, reference=ref_name, current=cur_name, reference_digest=None,
        subject=subject, lineage=[], reference_profile=ref_profile, stored_profile=None,
        current_profile=cur_profile if html else None,
    )  # fmt: skip


def _with_judges(profile: Profile, judged: dict[str, JudgeColumn], names: list[str]) -> Profile:
    """``profile`` with a numeric column per judge in ``names`` (empty where it judged
    nothing in this window), its values kept exactly (at most :data:`MAX_SCORES`)."""
    if not names:
        return profile
    empty = np.array([], dtype=np.float64)
    columns = dict(profile.columns)
    for name in names:
        held = judged.get(name)
        columns[JUDGE_PREFIX + name] = profile_column(
            held.scores if held is not None else empty, "numeric", exact_limit=None,
            name=JUDGE_PREFIX + name,
        )  # fmt: skip
    return Profile(columns, profile.n_rows, profile.skipped)


def _judge_details(
    column: ColumnDrift, judged: list[dict[str, JudgeColumn]], calls: tuple[int, int]
) -> ColumnDrift:
    """A judge column's verdict with how much of each window was judged and scored."""
    if not column.column.startswith(JUDGE_PREFIX):
        return column
    name = column.column[len(JUDGE_PREFIX) :]
    details = dict(column.details)
    for (side, held), total in zip(zip(("reference", "current"), judged, strict=True), calls,
                                   strict=True):  # fmt: skip
        scores = held.get(name)
        count = len(scores.scores) if scores is not None else 0
        details[f"judged_{side}"] = count
        details[f"scored_{side}"] = scores.scored if scores is not None else 0
        details[f"judged_share_{side}"] = count / total if total else 0.0
    return replace(column, details=details)


def _wanted(options: DriftOptions, known: list[str]) -> list[str]:
    return list(options.columns) if options.columns is not None else list(known)


def _empty(
    reference: Profile, current: Profile, options: DriftOptions, known: list[str]
) -> dict[str, str]:
    out = {}
    for name in _wanted(options, known):
        if name not in known:
            continue
        sides = [w for w, p in (("reference", reference), ("current", current))
                 if p.columns[name].n == 0]  # fmt: skip
        if sides:
            out[name] = f"no values in the {' and '.join(sides)} window"
    return out


def _usable(
    options: DriftOptions, reference: Profile, current: Profile, known: list[str]
) -> DriftOptions:
    unknown = [name for name in _wanted(options, known) if name not in known]
    if unknown:
        raise DriftInputInvalid(
            f"traffic has no columns {unknown} (it has: {', '.join(known)})", param="columns"
        )
    empty = _empty(reference, current, options, known)
    return replace(options, columns=[n for n in _wanted(options, known) if n not in empty])
