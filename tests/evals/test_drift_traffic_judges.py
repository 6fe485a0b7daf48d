"""Judge scores and finish reasons in traffic drift, over stored call records and call scores
(SQLite and PostgreSQL): the columns, their defaults, what is skipped, and pruning."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
import pytest

from lockgate.evals.drift import DriftInputInvalid, DriftOptions
from lockgate.evals.drift.traffic import judge_scores, run_traffic_drift
from lockgate.registry import InvalidInput, Registry
from lockgate.registry.calls import CallFilter, NewCall, NewScore
from lockgate.registry.tables import utcnow
from tests.conftest import Cli


def _traffic(
    reg: Registry,
    now: datetime,
    *,
    hours_ago: tuple[float, float],
    n: int,
    seed: int,
    judged: float = 0.2,
    good: float = 0.9,
    length: float = 0.05,
    judge: str = "helpful",
) -> int:
    """``n`` calls of route ``bot`` and a judge's scores of a ``judged`` share of them
    (``good``: the share scored 1, else 0); returns how many were judged."""
    rng = np.random.default_rng(seed)
    calls, scores = [], []
    for i in range(n):
        created = now - timedelta(hours=float(rng.uniform(*hours_ago)))
        finish = "length" if rng.random() < length else "stop"
        calls.append(NewCall(request_id=f"{seed}-{i}", operation="chat", status_code=200,
                             latency_ms=float(rng.gamma(4, 50)), created_at=created,
                             route="bot", model="m-1", input_tokens=int(rng.poisson(100)),
                             output_tokens=50, finish_reason=finish))  # fmt: skip
        if rng.random() < judged:
            value = 1.0 if rng.random() < good else 0.0
            scores.append(NewScore(created_at=created, request_id=f"{seed}-{i}", judge=judge,
                                   route="bot", model="m-1", rubric="rubric@3",
                                   score=value, raw_score=1 + 4 * value))  # fmt: skip
    reg.calls.record(calls)
    reg.calls.record_scores(scores)
    return len(scores)


def test_falling_judge_scores_and_more_length_finishes_are_drift(registry: Registry) -> None:
    now = utcnow()
    judged_ref = _traffic(registry, now, hours_ago=(25, 24 * 7), n=1500, seed=1)
    judged_cur = _traffic(registry, now, hours_ago=(0, 23), n=800, seed=2, good=0.6, length=0.3)
    # a judgment without a score counts as judged, not as a score
    registry.calls.record_scores(
        [
            NewScore(
                created_at=now - timedelta(hours=1),
                request_id="x",
                judge="helpful",
                route="bot",
                error="no score",
            )
        ]
    )
    run = run_traffic_drift(registry, model="bot", now=now)
    report = run.report
    finish = report.column("finish_reason")
    assert finish.drifted and finish.test == "jensenshannon"  # n > 1000, categorical
    quality = report.column("judge:helpful")
    assert quality.kind == "numeric" and quality.drifted
    assert quality.n_reference == judged_ref and quality.n_current == judged_cur
    assert quality.test == "z"  # at most 1000 scores, two values: Evidently's branch
    details = quality.details
    assert (details["judged_reference"], details["scored_reference"]) == (judged_ref, judged_ref)
    assert (details["judged_current"], details["scored_current"]) == (judged_cur + 1, judged_cur)
    assert details["judged_share_current"] == pytest.approx((judged_cur + 1) / 800)
    assert 0.15 < details["judged_share_reference"] < 0.25
    stored = json.loads(registry.artifacts.read_bytes(  # the run's report keeps them
        registry.runs.get(run.run_id).artifacts["drift.json"]))  # fmt: skip
    by_column = {c["column"]: c for c in stored["columns"]}
    assert by_column["judge:helpful"]["details"]["judged_current"] == judged_cur + 1


def test_unchanged_scores_are_no_drift_and_a_judge_of_one_window_is_skipped(
    registry: Registry,
) -> None:
    now = utcnow()
    _traffic(registry, now, hours_ago=(25, 24 * 7), n=600, seed=3)
    _traffic(registry, now, hours_ago=(0, 23), n=400, seed=4)
    _traffic(registry, now, hours_ago=(0, 23), n=100, seed=5, judge="new-judge", judged=0.5)
    run = run_traffic_drift(registry, model="m-1", now=now, html=False)
    report = run.report
    assert not report.column("judge:helpful").drifted
    assert not report.column("finish_reason").drifted
    assert "judge:new-judge" in report.skipped
    assert "reference window" in report.skipped["judge:new-judge"]
    # a judge column can be asked for by name, an unknown one is an error naming the known
    only = run_traffic_drift(registry, model="bot", now=now, html=False,
                             options=DriftOptions(columns=["judge:helpful"]))  # fmt: skip
    assert [c.column for c in only.report.columns] == ["judge:helpful"]
    with pytest.raises(DriftInputInvalid, match="judge:helpful"):
        run_traffic_drift(registry, model="bot", now=now,
                          options=DriftOptions(columns=["judge:nobody"]))  # fmt: skip


def test_no_judges_no_judge_columns(registry: Registry) -> None:
    now = utcnow()
    _traffic(registry, now, hours_ago=(25, 100), n=200, seed=6, judged=0)
    _traffic(registry, now, hours_ago=(0, 20), n=200, seed=7, judged=0)
    report = run_traffic_drift(registry, model="bot", now=now, html=False).report
    assert not [c for c in report.columns if c.column.startswith("judge:")]
    assert not [k for k in report.skipped if k.startswith("judge:")]


def test_scores_are_read_by_window_and_scope_and_pruned_with_the_calls(
    registry: Registry,
) -> None:
    now = utcnow()
    _traffic(registry, now, hours_ago=(0, 10), n=100, seed=8, judged=1.0)
    _traffic(registry, now, hours_ago=(48, 60), n=100, seed=9, judged=1.0)
    found = judge_scores(registry, model="bot", prompt=None, start=now - timedelta(hours=24),
                         end=now)  # fmt: skip
    assert len(found["helpful"].scores) == 100
    assert judge_scores(registry, model="other", prompt=None, start=now - timedelta(days=9),
                        end=now) == {}  # fmt: skip
    capped = judge_scores(registry, model="bot", prompt=None, start=now - timedelta(days=9),
                          end=now, max_scores=30)  # fmt: skip
    assert len(capped["helpful"].scores) == 30
    with pytest.raises(InvalidInput, match="by route, model, prompt and time"):
        registry.calls.scores(CallFilter(statuses=((500, 599),)))
    with pytest.raises(InvalidInput, match="aware"):
        registry.calls.scores(CallFilter(since=datetime(2026, 1, 1)))
    with pytest.raises(InvalidInput, match="NewScore"):
        registry.calls.record_scores([{"judge": "x"}])  # type: ignore[list-item]
    assert registry.calls.prune(now - timedelta(hours=24)) == 100
    left = registry.calls.scores(CallFilter(), limit=1000)
    assert len(left) == 100 and all(s.created_at > now - timedelta(hours=24) for s in left)


def test_db_prune_takes_the_scores_with_the_calls(cli: Cli, registry: Registry) -> None:
    now = utcnow()
    _traffic(registry, now, hours_ago=(48, 60), n=50, seed=10, judged=1.0)
    code, out, err = cli("db", "prune", "--calls", "1d", "--json")
    assert code == 0, err
    assert json.loads(out)["calls"]["deleted"] == 50
    assert registry.calls.scores(CallFilter(), limit=10) == []


def test_the_cli_shows_the_judged_share(cli: Cli, registry: Registry) -> None:
    now = utcnow()
    _traffic(registry, now, hours_ago=(25, 24 * 7), n=500, seed=11)
    _traffic(registry, now, hours_ago=(0.1, 23), n=300, seed=12, good=0.3)
    code, out, err = cli("drift", "traffic", "--model", "bot")
    assert code in (0, 1), err
    assert "judge:helpful: judged" in out and "of the current calls" in out
