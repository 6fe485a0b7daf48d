"""Retention: `lockgate db prune` deletes old call records and :predict samples, and nothing
else; the registry's record (runs, versions, labels) is never pruned."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from lockgate.registry.calls import NewCall
from lockgate.registry.predictions import NewSample
from lockgate.registry.registry import Registry
from tests.conftest import Cli

NOW = datetime.now(UTC)


def _calls(registry: Registry, ages_h: list[float]) -> None:
    registry.calls.record([
        NewCall(request_id=f"c{i}", operation="chat", route="r", model="m", status_code=200,
                latency_ms=10.0,
                created_at=NOW - timedelta(hours=h))
        for i, h in enumerate(ages_h)
    ])  # fmt: skip


def _samples(registry: Registry, model: str, version: int, ages_h: list[float]) -> None:
    registry.predictions.record([
        NewSample(request_id=f"{model}{version}-{i}", model=model, version=version,
                  inputs={"x": float(i)}, created_at=NOW - timedelta(hours=h))
        for i, h in enumerate(ages_h)
    ])  # fmt: skip


def _ages(rows: list, attr: str = "created_at") -> list[float]:
    return sorted(round((NOW - getattr(r, attr)).total_seconds() / 3600) for r in rows)


def test_prune_deletes_only_what_is_older_than_the_cutoff_in_batches(registry: Registry) -> None:
    _calls(registry, [1, 5, 30, 49, 72, 200])
    # batch 2 with 3 old rows: the loop must go round more than once and stop by itself
    assert registry.calls.prune(NOW - timedelta(hours=48), batch=2) == 3
    assert _ages(registry.calls.query(limit=100).calls) == [1, 5, 30]
    assert registry.calls.prune(NOW - timedelta(hours=48)) == 0


def test_samples_are_pruned_per_model_and_version_alike(registry: Registry) -> None:
    _samples(registry, "churn", 1, [1, 100, 300])
    _samples(registry, "churn", 2, [2, 150])
    _samples(registry, "fraud", 1, [3, 400])
    assert registry.predictions.prune(NOW - timedelta(hours=50), batch=1) == 4
    assert _ages(registry.predictions.samples("churn")) == [1, 2]
    assert _ages(registry.predictions.samples("fraud")) == [3]


def test_a_naive_time_is_refused_rather_than_guessed(registry: Registry) -> None:
    from lockgate.registry.errors import InvalidInput

    with pytest.raises(InvalidInput, match="UTC"):
        registry.calls.prune(datetime.now())
    with pytest.raises(InvalidInput, match="batch"):
        registry.calls.prune(NOW, batch=0)


def test_db_prune_cli_reports_counts_and_names_a_bad_age(cli: Cli, registry: Registry) -> None:
    _calls(registry, [1, 24 * 40])
    _samples(registry, "churn", 1, [1, 24 * 20])
    code, out, err = cli("db", "prune", "--calls", "30d", "--samples", "14d", "--json")
    assert code == 0, err
    done = json.loads(out)
    assert done["calls"]["deleted"] == 1 and done["samples"]["deleted"] == 1
    assert len(registry.calls.query(limit=10).calls) == 1

    code, _, err = cli("db", "prune", "--calls", "thirty days")
    assert code == 2 and "--calls" in err and "thirty days" in err
    code, _, err = cli("db", "prune")
    assert code == 2 and "--calls" in err
