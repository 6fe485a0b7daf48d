"""``eval run|merge``: ``--json`` is the flag it is for every command (the JSON report on
stdout), ``--json-out PATH`` writes the file, and the old ``--json PATH`` is refused."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from lockgate.registry import Registry
from tests.evals.conftest import arithmetic_rows, run_cli, write_jsonl
from tests.evals.upstream import Upstream


def write_suite(tmp: Path, upstream: Upstream) -> Path:
    write_jsonl(tmp / "data.jsonl", arithmetic_rows(5))
    path = tmp / "suite.yaml"
    path.write_text(yaml.safe_dump({
        "name": "arith", "dataset": "data.jsonl", "reference": "answer",
        "target": {"base_url": upstream.base_url, "model": "stub",
                   "messages": [{"role": "user", "content": "{{ question }}"}]},
        "scorers": ["exact_match"], "gates": ["exact_match >= 0.5"],
        "stats": {"min_examples": 1},
    }))  # fmt: skip
    return path


def test_json_prints_the_report_and_json_out_writes_the_same(
    registry: Registry, upstream: Upstream, tmp_path: Path, cache_dir: Path
) -> None:
    suite, out = write_suite(tmp_path, upstream), tmp_path / "reports" / "r.json"
    res = run_cli(registry, ["run", str(suite), "--cache-dir", str(cache_dir), "--json",
                             "--json-out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output + res.error
    printed = json.loads(res.output)  # nothing but the report on stdout
    assert printed["verdict"] == "pass" and printed["suite"] == "arith"
    assert json.loads(out.read_text()) == printed


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["run", "{suite}", "--json", "report.json"], "use --json-out report.json"),
        (["run", "{suite}", "--json=report.json"], "use --json-out report.json"),
        (["run", "{suite}", "--json", "-"], "prints the JSON report on stdout"),
        (["merge", "{suite}", "a.json", "--json", "merged.json"], "use --json-out merged.json"),
    ],
)
def test_the_old_json_path_is_refused_with_the_new_spelling(
    registry: Registry, upstream: Upstream, tmp_path: Path, args: list[str], hint: str
) -> None:
    suite = write_suite(tmp_path, upstream)
    res = run_cli(registry, [a.format(suite=suite) for a in args])
    assert res.exit_code == 2
    said = " ".join(re.sub("[│╭╮╰╯─]", " ", res.output).split())  # unwrap the error box
    assert "--json takes no value now" in said and hint in said
    assert upstream.state.chat_calls == 0 and registry.runs.list(kind="eval") == []


def test_merge_prints_json_too(
    registry: Registry, upstream: Upstream, tmp_path: Path, cache_dir: Path
) -> None:
    suite = write_suite(tmp_path, upstream)
    shards = []
    for i in (1, 2):
        shards.append(tmp_path / f"shard-{i}.json")
        res = run_cli(registry, ["run", str(suite), "--shard", f"{i}/2", "--cache-dir",
                                 str(cache_dir), "--json-out", str(shards[-1]), "-q"])  # fmt: skip
        assert res.exit_code in (0, 1), res.output + res.error
    res = run_cli(registry, ["merge", str(suite), *map(str, shards), "--json"])
    assert res.exit_code == 0, res.output + res.error
    merged = json.loads(res.output)
    assert merged["verdict"] == "pass" and merged["examples_count"] == 5
