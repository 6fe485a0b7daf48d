"""Drift checks as registry runs (SQLite and PostgreSQL): sources, the recorded run, the
stored reference profile, model inputs and references, and refused sources."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from lockgate.evals.drift.runs import DriftRun, run_drift_check
from lockgate.evals.drift.sources import DriftSourceInvalid, DriftSourceNotFound, resolve_source
from lockgate.registry import InvalidInput, LineageEdge, NotFound, Registry
from lockgate.registry.predictions import NewSample
from lockgate.registry.tables import utcnow


def _rows(n: int, seed: int, shift: float) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    plans = ["basic", "pro", "team"]
    probs = [0.5 - shift / 4, 0.3, 0.2 + shift / 4]
    return [
        {
            "age": float(a),
            "income": float(i),
            "plan": str(p),
        }
        for a, i, p in zip(
            rng.normal(40 + 10 * shift, 8, n),
            rng.exponential(1000, n),
            rng.choice(plans, n, p=probs),
            strict=True,
        )
    ]


def _add(reg: Registry, tmp_path: Path, name: str, rows: list[dict[str, object]]) -> str:
    path = tmp_path / f"{name}-{len(rows)}-{id(rows)}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    version, _ = reg.datasets.add(name, path)
    return f"{version.name}@{version.version}"


def _blob(reg: Registry, digest: str) -> Path:
    """The artifact store's file for ``digest`` (the default store is a local folder)."""
    return Path(reg.artifacts._blob(digest))  # type: ignore[attr-defined]


def test_check_is_recorded_as_a_drift_run(registry: Registry, tmp_path: Path) -> None:
    ref = _add(registry, tmp_path, "churn-ref", _rows(400, 1, 0.0))
    cur = _add(registry, tmp_path, "churn-cur", _rows(300, 2, 1.0))
    run = run_drift_check(registry, f"dataset:{ref}", cur)
    assert isinstance(run, DriftRun)
    assert run.report.drifted and run.report.column("age").drifted
    assert run.reference_digest == registry.datasets.get(ref).digest
    info = registry.runs.get(run.run_id)
    assert (info.kind, info.status) == ("drift", "succeeded")
    assert info.params["reference"] == f"dataset:{ref}"
    assert info.params["current"] == cur
    assert info.params["reference_digest"] == run.reference_digest
    assert info.params["subject"] == ""
    assert info.metrics["dataset_drift"] == 1.0
    assert info.metrics["columns"] == 3
    assert info.metrics["drifted_columns"] == run.report.n_drifted
    assert info.metrics["share_drifted"] == pytest.approx(run.report.share_drifted)
    stored = json.loads(registry.artifacts.read_bytes(info.artifacts["drift.json"]))
    assert stored == json.loads(json.dumps(run.report.to_dict()))
    assert [c["test"] for c in stored["columns"]] == ["ks", "ks", "chisquare"]
    page = registry.artifacts.read_bytes(info.artifacts["report.html"]).decode()
    assert page == run.html and page.count("<svg") == 3
    assert {(e.subject_type, e.subject_ref) for e in info.lineage} == {
        ("dataset", ref),
        ("dataset", cur),
    }


def test_unshifted_data_is_no_drift_and_columns_narrow_the_check(
    registry: Registry, tmp_path: Path
) -> None:
    ref = _add(registry, tmp_path, "ref", _rows(500, 3, 0.0))
    cur = _add(registry, tmp_path, "cur", _rows(500, 4, 0.0))
    run = run_drift_check(registry, ref, cur, columns=["plan", "age"], html=False)
    assert not run.report.drifted
    assert [c.column for c in run.report.columns] == ["plan", "age"]
    assert run.html is None
    assert "report.html" not in registry.runs.get(run.run_id).artifacts


def test_second_check_reads_only_the_current_data(registry: Registry, tmp_path: Path) -> None:
    ref = _add(registry, tmp_path, "big-ref", _rows(2000, 5, 0.0))
    cur = _add(registry, tmp_path, "cur", _rows(300, 6, 0.5))
    first = run_drift_check(registry, ref, cur)
    assert not first.reference_cached
    # the reference's bytes are gone from the store: only the stored profile can serve now
    _blob(registry, first.reference_digest).unlink()
    with pytest.raises(NotFound):
        registry.datasets.fetch(ref, tmp_path / "gone")
    second = run_drift_check(registry, ref, cur, columns=["income"])
    assert second.reference_cached
    assert second.report.column("income") == first.report.column("income")
    params = registry.runs.get(second.run_id).params
    assert params["reference_cached"] is True
    assert (
        params["reference_profile"] == registry.runs.get(first.run_id).params["reference_profile"]
    )
    assert "reference.profile" not in registry.runs.get(second.run_id).artifacts
    # a damaged stored profile is not trusted: profiling again needs the (missing) data
    profile = registry.runs.get(first.run_id).artifacts["reference.profile"]
    _blob(registry, profile).write_bytes(b"LGDRIFT\0garbage")
    with pytest.raises(NotFound):
        run_drift_check(registry, ref, cur)


def _model(registry: Registry, tmp_path: Path) -> str:
    ref = _add(registry, tmp_path, "churn-ref", _rows(300, 7, 0.0))
    x = np.array([[30.0, 100.0], [50.0, 900.0], [45.0, 20.0], [20.0, 3000.0]])
    est = LogisticRegression().fit(x, [0, 1, 0, 1])
    registry.models.register_sklearn("churn", est, reference=ref, target="plan")
    registry.labels.set("model", "churn", "production", 1, force=True, reason="test")
    return ref


def test_model_reference_and_logged_inputs(registry: Registry, tmp_path: Path) -> None:
    ref = _model(registry, tmp_path)
    now = utcnow()
    shifted = [{k: v for k, v in row.items() if k != "plan"} for row in _rows(200, 8, 1.0)]
    old = [NewSample(request_id="old", model="churn", version=1, inputs={"age": 1.0, "income": 1.0},
                     created_at=now - timedelta(days=3))]  # fmt: skip
    samples = [
        NewSample(request_id=f"r{i}", model="churn", version=1, inputs=row,
                  created_at=now - timedelta(minutes=i))
        for i, row in enumerate(shifted)
    ]  # fmt: skip
    registry.predictions.record([*old, *samples])
    run = run_drift_check(
        registry, "model:churn@production#reference", "model:churn@production:24h", now=now
    )
    assert run.report.n_current == 200  # the 3-day-old sample is outside the window
    assert run.report.drifted
    assert run.subject == "model:churn@1"
    assert run.reference_digest == registry.datasets.get(ref).digest
    info = registry.runs.get(run.run_id)
    assert info.params["subject"] == "model:churn@1"
    assert LineageEdge("model", "churn@1", "input") in info.lineage
    assert LineageEdge("dataset", ref, "input") in info.lineage
    # a wider window takes the old sample too; an explicit subject wins, pinned to a version
    wide = run_drift_check(
        registry, ref, "model:churn@1:7d", columns=["age", "income"],
        subject="model:churn@production", now=now,
    )  # fmt: skip
    assert wide.report.n_current == 201 and wide.subject == "model:churn@1"


def test_model_sources_name_what_is_missing(registry: Registry, tmp_path: Path) -> None:
    _model(registry, tmp_path)
    x = np.array([[1.0, 2.0], [2.0, 1.0]])
    registry.models.register_sklearn("bare", LogisticRegression().fit(x, [0, 1]))
    with pytest.raises(DriftSourceInvalid, match="registered without a reference"):
        run_drift_check(registry, "model:bare@1#reference", "churn-ref@1")
    with pytest.raises(DriftSourceInvalid, match="no logged :predict inputs"):
        run_drift_check(registry, "churn-ref@1", "model:churn@production:1h")
    with pytest.raises(DriftSourceNotFound, match="'model:nobody@1:24h'"):
        run_drift_check(registry, "churn-ref@1", "model:nobody@1:24h")
    with pytest.raises(DriftSourceInvalid, match="#weights"):
        resolve_source(registry, "model:churn@1#weights")
    with pytest.raises(DriftSourceInvalid, match="window"):
        resolve_source(registry, "model:churn@1:yesterday")
    with pytest.raises(DriftSourceInvalid, match="subject"):
        run_drift_check(registry, "churn-ref@1", "churn-ref@1", subject="route:x")
    with pytest.raises(DriftSourceNotFound):
        run_drift_check(registry, "churn-ref@1", "churn-ref@1", subject="prompt:none@1")


@pytest.mark.parametrize(
    "hostile",
    [
        "/etc/passwd",
        "../../etc/passwd",
        "./data.csv",
        "~/.ssh/id_rsa",
        "file:/etc/passwd",
        "reference.jsonl",
        "dir\\evil",
        "team/../../etc@1",
    ],
)
def test_paths_are_refused_where_only_registry_refs_are_allowed(
    registry: Registry, tmp_path: Path, hostile: str
) -> None:
    """The Python API as a service calls it (files=False) opens no path, whatever it says."""
    (tmp_path / "reference.jsonl").write_text('{"a": 1}\n')
    with pytest.raises(DriftSourceInvalid, match="files are read only by the CLI") as caught:
        resolve_source(registry, hostile)
    assert repr(hostile) in caught.value.message
    assert isinstance(caught.value, InvalidInput) and caught.value.exit_code == 2
    with pytest.raises(DriftSourceInvalid):
        run_drift_check(registry, hostile, hostile)
    assert registry.runs.list("drift") == []


def test_unknown_and_malformed_refs_name_the_ref(registry: Registry) -> None:
    with pytest.raises(DriftSourceNotFound, match="'dataset:nope@1'"):
        resolve_source(registry, "dataset:nope@1")
    with pytest.raises(DriftSourceInvalid, match="'@@@'"):
        resolve_source(registry, "@@@")
    with pytest.raises(DriftSourceInvalid, match="empty"):
        resolve_source(registry, "  ")
    with pytest.raises(DriftSourceInvalid, match="not by label"):
        resolve_source(registry, "dataset:x@production")
