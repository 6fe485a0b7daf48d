"""End to end: suites run against a real HTTP upstream on loopback, recorded in the registry
(SQLite and PostgreSQL), gated against a baseline through the CLI."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import yaml

from lockgate.registry import Registry
from tests.evals.conftest import arithmetic_rows, run_cli, write_jsonl
from tests.evals.upstream import Upstream

GOOD = [
    {"role": "system", "content": "Answer with the number only."},
    {"role": "user", "content": "{{ question }}"},
]
WRONG = [
    {"role": "system", "content": "Answer WRONG on purpose."},
    {"role": "user", "content": "{{ question }}"},
]
ALSO_GOOD = [
    {"role": "system", "content": "Answer with the number only, please."},
    {"role": "user", "content": "{{ question }}"},
]


def write_suite(tmp: Path, upstream: Upstream, model: str, **extra: Any) -> Path:
    suite = {
        "name": "arith",
        "dataset": "data.jsonl",
        "target": {"base_url": upstream.base_url, "model": model},
        "reference": "answer",
        "scorers": ["exact_match", {"latency": {}}, {"tokens": {}}],
        "concurrency": 8,
        "gates": [
            "exact_match >= 0.9",
            {"exact_match": {"regression": True, "min_effect": 0.15}},
        ],
        **extra,
    }
    path = tmp / f"suite-{abs(hash(json.dumps(suite, sort_keys=True, default=str)))}.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def test_regression_fails_identical_passes_tiny_is_inconclusive(
    registry: Registry, upstream: Upstream, tmp_path: Path, cache_dir: Path
) -> None:
    write_jsonl(tmp_path / "data.jsonl", arithmetic_rows(60))
    v1, _ = registry.prompts.push("arith", GOOD, {"model": "stub", "temperature": 0})
    registry.labels.set("prompt", "arith", "production", v1.version)
    cache = ["--cache-dir", str(cache_dir)]

    # the baseline: production, no baseline of its own (relative gate skipped: not a pass)
    base = run_cli(
        registry,
        [
            "run",
            str(write_suite(tmp_path, upstream, "prompt:arith@production")),
            *cache,
            "--json-out",
            str(tmp_path / "base.json"),
        ],
    )
    assert base.exit_code == 1, base.output + base.error
    assert upstream.state.chat_calls == 60
    doc = json.loads((tmp_path / "base.json").read_text())
    assert doc["summaries"]["exact_match"]["value"] == 1.0
    assert [g["verdict"] for g in doc["gates"]] == ["pass", "skipped"]
    assert doc["verdict"] == "skipped" and "not a pass" in doc["verdict_reason"]
    stored = registry.runs.get(doc["run_id"])
    assert stored.status == "succeeded" and stored.metrics["exact_match"] == 1.0
    assert {(e.subject_type, e.subject_ref) for e in stored.lineage} >= {("prompt", "arith@1")}
    assert any(e.subject_type == "dataset" for e in stored.lineage)
    rows = registry.artifacts.read_bytes(stored.artifacts["examples.jsonl"]).decode().splitlines()
    first = json.loads(rows[0])
    assert first["trace_id"] and first["usage"]["total_tokens"] == 12 and first["latency_ms"] > 0
    assert first["input"]["question"] and first["scores"]["exact_match"]["value"] == 1.0

    # a regressed prompt version fails the relative gate: exit 1, with flips in the summary
    v2, _ = registry.prompts.push("arith", WRONG, {"model": "stub", "temperature": 0})
    registry.labels.set("prompt", "arith", "candidate", v2.version)
    junit, md = tmp_path / "junit.xml", tmp_path / "summary.md"
    bad = run_cli(
        registry,
        [
            "run",
            str(write_suite(tmp_path, upstream, "prompt:arith@candidate")),
            *cache,
            "--baseline",
            "label:production",
            "--junit",
            str(junit),
            "--markdown",
            str(md),
            "--html",
            str(tmp_path / "r.html"),
        ],
    )
    assert bad.exit_code == 1, bad.output + bad.error
    assert "significant regression" in bad.output
    cases = ET.parse(junit).getroot().findall(".//testcase")
    assert len(cases) == 2 and all(c.find("failure") is not None for c in cases)
    summary = md.read_text()
    assert "**fail**" in summary and "60 got worse, 0 got better" in summary
    assert "| exact_match | 1 | 0 | -1 |" in summary
    assert "<table>" in (tmp_path / "r.html").read_text()

    # an identical-behaving candidate passes
    v3, _ = registry.prompts.push("arith", ALSO_GOOD, {"model": "stub", "temperature": 0})
    registry.labels.set("prompt", "arith", "candidate", v3.version)
    good = run_cli(
        registry,
        [
            "run",
            str(write_suite(tmp_path, upstream, "prompt:arith@candidate")),
            *cache,
            "--baseline",
            "label:production",
            "--json-out",
            str(tmp_path / "good.json"),
        ],
    )
    assert good.exit_code == 0, good.output + good.error
    gates = json.loads((tmp_path / "good.json").read_text())["gates"]
    assert [g["verdict"] for g in gates] == ["pass", "pass"]

    # three examples cannot tell: inconclusive (not a pass), with the number needed
    tiny = run_cli(
        registry,
        [
            "run",
            str(
                write_suite(
                    tmp_path,
                    upstream,
                    "prompt:arith@candidate",
                    dataset={"path": "data.jsonl", "limit": 3},
                )
            ),
            *cache,
            "--baseline",
            "label:production",
            "--json-out",
            str(tmp_path / "tiny.json"),
        ],
    )
    assert tiny.exit_code == 1
    gates = json.loads((tmp_path / "tiny.json").read_text())["gates"]
    assert [g["verdict"] for g in gates] == ["inconclusive", "inconclusive"]
    assert "3 examples are too few" in gates[1]["reason"] and gates[1]["needed"] > 3
    assert f"about {gates[1]['needed']} are needed" in gates[1]["reason"]


def test_shards_merge_to_the_full_run(
    registry: Registry, upstream: Upstream, tmp_path: Path, cache_dir: Path
) -> None:
    write_jsonl(tmp_path / "data.jsonl", arithmetic_rows(30))
    suite = write_suite(
        tmp_path,
        upstream,
        "stub",
        gates=["exact_match >= 0.9"],
        target={
            "base_url": upstream.base_url,
            "model": "stub",
            "messages": [{"role": "user", "content": "{{ question }}"}],
        },
    )
    outs = []
    for i in (1, 2):
        out = tmp_path / f"shard{i}.json"
        res = run_cli(
            registry,
            [
                "run",
                str(suite),
                "--shard",
                f"{i}/2",
                "--cache-dir",
                str(cache_dir),
                "--json-out",
                str(out),
            ],
        )
        assert res.exit_code == 0, res.output + res.error
        outs.append(out)
    assert [len(json.loads(o.read_text())["examples"]) for o in outs] == [15, 15]
    merged = tmp_path / "merged.json"
    res = run_cli(registry, ["merge", str(suite), *map(str, outs), "--json-out", str(merged)])
    assert res.exit_code == 0, res.output + res.error
    doc = json.loads(merged.read_text())
    assert doc["examples_count"] == 30 and doc["summaries"]["exact_match"]["n"] == 30
    run = registry.runs.get(doc["run_id"])
    assert sum(e.subject_type == "run" for e in run.lineage) == 2
