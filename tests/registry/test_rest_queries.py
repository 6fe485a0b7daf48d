"""The registry queries the REST API pages and reads with (issue 13), on SQLite and
PostgreSQL: keyset paging of runs and jobs, one metric's series, a run's artifact by name,
the runs linked to a version, a dataset's versions, a key's creator."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockgate.registry import LineageEdge, NotFound, Registry
from lockgate.registry.tables import Run, utcnow


def test_runs_keyset_paging_walks_each_run_once(registry: Registry) -> None:
    made = [registry.runs.create("eval", name=f"r{i % 2}").id for i in range(7)]
    # ties on created_at are broken by id, so equal times neither repeat nor skip a run
    with registry.db.write() as session:
        same = utcnow()
        for run_id in made[2:5]:
            session.get(Run, run_id).created_at = same  # type: ignore[union-attr]
    seen: list[str] = []
    after = None
    while True:
        page = registry.runs.list("eval", limit=2, after=after)
        seen.extend(r.id for r in page)
        if len(page) < 2:
            break
        after = page[-1].id
    assert sorted(seen) == sorted(made) and len(seen) == 7
    assert [r.id for r in registry.runs.list(name="r1", limit=10)] == [
        r for r in seen if r in made[1::2]
    ]
    with pytest.raises(NotFound):
        registry.runs.list(after="no-such-run")


def test_series_artifact_and_linked_runs(registry: Registry, tmp_path: Path) -> None:
    run = registry.runs.create("finetune", lineage=[LineageEdge("model", "m@1", "input")])
    registry.runs.log_metrics(run.id, {"loss": 2.0}, step=2)
    registry.runs.log_metrics(run.id, {"loss": 3.0, "lr": 0.1}, step=1)
    registry.runs.log_metrics(run.id, {"final": 1.0})
    assert registry.runs.series_keys(run.id) == ["loss", "lr"]
    assert [(p.step, p.value) for p in registry.runs.series(run.id, "loss")] == [(1, 3.0), (2, 2.0)]
    assert registry.runs.series(run.id, "final") == []
    assert registry.runs.get(run.id, series=False).series == []
    file = tmp_path / "a.txt"
    file.write_text("a")
    digest = registry.runs.log_artifact(run.id, "out/a.txt", file)
    assert registry.runs.artifact(run.id, "out/a.txt") == (digest, "file")
    for name in ("../out/a.txt", "/out/a.txt", "a.txt", "out"):
        with pytest.raises(NotFound):
            registry.runs.artifact(run.id, name)
    registry.runs.add_lineage(run.id, [LineageEdge("model", "m@2", "output")])
    other = registry.runs.create("eval", lineage=[LineageEdge("model", "m@2", "input")])
    linked = registry.runs.linked("model", "m@2")
    assert [(r.id, role) for r, role in linked] == [(other.id, "input"), (run.id, "output")]
    assert registry.runs.linked("model", "m@3") == []


def test_jobs_paging_and_status(registry: Registry) -> None:
    made = [registry.jobs.create("finetune", {"i": i})[0].id for i in range(5)]
    registry.jobs.cancel(made[0])
    seen: list[str] = []
    after = None
    while page := registry.jobs.list(limit=2, after=after):
        seen.extend(j.id for j in page)
        after = page[-1].id
    assert sorted(seen) == sorted(made)
    assert [j.id for j in registry.jobs.list(status="cancelled")] == [made[0]]
    with pytest.raises(NotFound):
        registry.jobs.list(after="ftjob-none")


def test_dataset_versions_and_key_creator(registry: Registry, tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    for rows in (1, 2):
        path.write_text('{"x": 1}\n' * rows)
        registry.datasets.add("d", path)
    assert [v.version for v in registry.datasets.versions("d")] == [1, 2]
    assert registry.datasets.artifact_kind("d@1")[1] == "file"
    with pytest.raises(NotFound):
        registry.datasets.versions("none")
    assert registry.keys.create("k", created_by="api:key_1").created_by == "api:key_1"
    assert registry.keys.create("k2").created_by == "tester"
