"""Datasets by content hash, and runs with metrics, artifacts and lineage (both backends)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lockgate.registry import DatasetFormatError, InvalidInput, LineageEdge, NotFound, Registry


def _jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_dataset_versions_follow_content(registry: Registry, tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "qa.jsonl", [{"q": "1+1", "a": "2"}, {"q": "2+2", "a": "4"}])
    v1, created = registry.datasets.add("qa", path)
    assert (v1.version, created, v1.num_rows, v1.columns, v1.format) == (
        1,
        True,
        2,
        ["q", "a"],
        "jsonl",
    )
    same, created = registry.datasets.add("qa", path)
    assert (same.version, created) == (1, False)
    _jsonl(path, [{"q": "3+3", "a": "6"}])
    v2, _ = registry.datasets.add("qa", path)
    assert v2.version == 2 and v2.digest != v1.digest
    # the bytes of version 1 are still there, verified by hash
    data = registry.artifacts.read_bytes(v1.digest).decode()
    assert '"1+1"' in data
    assert registry.datasets.get("qa").version == 2
    assert registry.datasets.get("qa@1").digest == v1.digest


def test_csv_parquet_and_folders(registry: Registry, tmp_path: Path) -> None:
    csv_path = tmp_path / "d.csv"
    csv_path.write_text("x,y\n1,2\n3,4\n")
    assert registry.datasets.add("c", csv_path)[0].num_rows == 2
    folder = tmp_path / "parts"
    folder.mkdir()
    for i in range(2):
        pq.write_table(pa.table({"x": [i, i + 1], "label": ["a", "b"]}), folder / f"p{i}.parquet")
    v, _ = registry.datasets.add("p", folder)
    assert (v.format, v.num_rows, v.columns) == ("parquet", 4, ["x", "label"])


@pytest.mark.parametrize(
    ("name", "content", "line", "reason"),
    [
        ("bad.jsonl", '{"a": 1}\n{"a": 2\n', 2, "not valid JSON"),
        ("bad.jsonl", '{"a": 1}\n\n[1, 2]\n', 3, "JSON object"),
        ("bad.csv", "x,y\n1,2\n3\n", 3, "1 fields, the header has 2"),
    ],
)
def test_malformed_rows_are_named_and_nothing_is_stored(
    registry: Registry, tmp_path: Path, name: str, content: str, line: int, reason: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DatasetFormatError, match=reason) as err:
        registry.datasets.add("bad", path)
    assert err.value.line == line and f"line {line}" in str(err.value)
    assert registry.datasets.list() == []
    with pytest.raises(NotFound):
        registry.datasets.get("bad")


def test_not_parquet_and_unknown_format(registry: Registry, tmp_path: Path) -> None:
    fake = tmp_path / "x.parquet"
    fake.write_text("not parquet")
    with pytest.raises(DatasetFormatError, match="not a Parquet file"):
        registry.datasets.add("x", fake)
    other = tmp_path / "x.xlsx"
    other.write_text("?")
    with pytest.raises(InvalidInput, match=r"\.jsonl, \.csv or \.parquet"):
        registry.datasets.add("x", other)


def test_runs_keep_params_metrics_series_artifacts_and_lineage(
    registry: Registry, tmp_path: Path
) -> None:
    registry.prompts.push("qa", "Q: {{ q }}")
    ds, _ = registry.datasets.add("qa", _jsonl(tmp_path / "d.jsonl", [{"q": "x"}]))
    run = registry.runs.create(
        "finetune",
        name="lora-qa",
        params={"lr": 1e-4, "r": 8},
        lineage=[
            LineageEdge("dataset", f"qa@{ds.version}", "input"),
            LineageEdge("prompt", "qa@1", "input"),
        ],
    )
    for step, loss in enumerate([2.0, 1.5, 1.1]):
        registry.runs.log_metrics(run.id, {"loss": loss}, step=step)
    report = tmp_path / "report.json"
    report.write_text("{}")
    digest = registry.runs.log_artifact(run.id, "report", report)
    registry.runs.add_lineage(run.id, [LineageEdge("model", "tiny-qa@1", "output")])
    done = registry.runs.set_status(run.id, "succeeded", metrics={"eval_loss": 1.2})
    assert done.status == "succeeded" and done.ended_at is not None
    assert done.params == {"lr": 1e-4, "r": 8}
    assert done.metrics == {"eval_loss": 1.2}
    assert [(p.step, p.value) for p in done.series] == [(0, 2.0), (1, 1.5), (2, 1.1)]
    assert done.artifacts == {"report": digest}
    assert [(e.subject_type, e.subject_ref, e.role) for e in done.lineage] == [
        ("dataset", "qa@1", "input"),
        ("prompt", "qa@1", "input"),
        ("model", "tiny-qa@1", "output"),
    ]
    assert [r.id for r in registry.runs.list("finetune")] == [run.id]
    assert registry.runs.list("eval") == []
    with pytest.raises(NotFound):
        registry.runs.get("nope")
    with pytest.raises(InvalidInput):
        registry.runs.create("training")
