"""A recorded eval run keeps its report as content-addressed artifacts: ``report.json`` (the
JSON report without the example rows: summaries, the paired comparison with the baseline,
gates) and ``report.html``, which the UI's evidence page reads and links."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml

from lockgate.evals.report import REPORT_HTML, REPORT_JSON
from lockgate.registry import Registry
from tests.evals.conftest import arithmetic_rows, run_cli, write_jsonl
from tests.evals.test_end_to_end import GOOD, WRONG
from tests.evals.upstream import Upstream


def _suite(tmp: Path, upstream: Upstream, version: int) -> Path:
    path = tmp / f"suite-{version}.yaml"
    path.write_text(yaml.safe_dump({
        "name": "arith", "dataset": "data.jsonl", "reference": "answer",
        "target": {"base_url": upstream.base_url, "model": f"prompt:arith@{version}"},
        "scorers": ["exact_match"],
        "gates": ["exact_match >= 0.9", {"exact_match": {"regression": True}}],
    }))  # fmt: skip
    return path


def test_the_run_keeps_its_report_as_artifacts(
    registry: Registry, upstream: Upstream, tmp_path: Path, cache_dir: Path
) -> None:
    write_jsonl(tmp_path / "data.jsonl", arithmetic_rows(20))
    registry.prompts.push("arith", GOOD, {"model": "stub", "temperature": 0})
    registry.labels.set("prompt", "arith", "production", 1)
    registry.prompts.push("arith", WRONG, {"model": "stub", "temperature": 0})
    cache = ["--cache-dir", str(cache_dir)]
    base = run_cli(registry, ["run", str(_suite(tmp_path, upstream, 1)), *cache, "-q"])
    assert base.exit_code in (0, 1), base.output + base.error
    out = tmp_path / "bad.json"
    bad = run_cli(registry, ["run", str(_suite(tmp_path, upstream, 2)), *cache, "--baseline",
                             "label:production", "--json-out", str(out), "-q"])  # fmt: skip
    assert bad.exit_code == 1, bad.output + bad.error
    written = json.loads(out.read_text())
    run = registry.runs.get(written["run_id"])
    assert {REPORT_JSON, REPORT_HTML, "examples.jsonl"} <= set(run.artifacts)

    # content-addressed: the digest is the sha256 of the stored bytes
    data = registry.artifacts.read_bytes(run.artifacts[REPORT_JSON])
    assert run.artifacts[REPORT_JSON] == "sha256:" + hashlib.sha256(data).hexdigest()
    stored = json.loads(data)
    # the JSON report, less its example rows (the run's examples.jsonl holds those)
    assert "examples" not in stored
    assert stored == {k: v for k, v in written.items() if k != "examples"}
    paired = stored["comparisons"]["exact_match"]
    assert paired["delta"] == -1 and paired["test"] == "mcnemar" and paired["n_paired"] == 20
    assert paired["p_value"] < 0.001 and paired["ci_high"] == -1
    assert len(paired["flips"]) == 20 and paired["flips"][0]["direction"] == "worse"
    assert stored["verdict"] == "fail" and run.tags["verdict"] == "fail"

    page = registry.artifacts.read_bytes(run.artifacts[REPORT_HTML]).decode()
    assert "Against the baseline" in page and "mcnemar" in page

    # the baseline run (no comparison) has its report too
    first = registry.runs.get(stored["baseline_run"])
    assert (
        json.loads(registry.artifacts.read_bytes(first.artifacts[REPORT_JSON]))["comparisons"]
        is None
    )


def test_a_run_without_a_registry_run_records_nothing(registry: Registry) -> None:
    from lockgate.evals.report import record_report

    class NoRun:
        run_id = None

    assert record_report(registry, NoRun()) == {}  # type: ignore[arg-type]
