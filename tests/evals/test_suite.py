"""Suite files: parsed into typed models, errors naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lockgate.evals.errors import SuiteInvalid
from lockgate.evals.suite import load_suite, parse_suite
from lockgate.registry import Registry

BASE = {
    "name": "qa",
    "dataset": "qa.jsonl",
    "target": {"base_url": "http://x/v1", "model": "prompt:qa@prod"},
    "scorers": ["exact_match"],
}


def test_full_suite(tmp_path: Path) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text(
        """
name: qa
dataset: {path: data/qa.jsonl, limit: 10}
target:
  base_url: http://127.0.0.1:4000/v1
  model: prompt:qa@candidate
  variables: {question: q}
reference: answer
scorers:
  - exact_match: {case: true, as: em}
  - bleu
  - {name: contains, params: {value: Paris}}
epochs: 3
concurrency: 4
on_error: skip
gates:
  - em >= 0.8
  - "em: no significant regression vs baseline"
  - bleu: {max_drop: 2}
"""
    )
    suite = load_suite(path)
    assert suite.base_dir == tmp_path
    assert suite.dataset.source == "data/qa.jsonl" and suite.dataset.limit == 10
    assert [s.metric for s in suite.scorers] == ["em", "bleu", "contains"]
    assert suite.scorers[0].params == {"case": True}
    assert [g.relative for g in suite.gates] == [False, True, True]
    assert suite.gates[2].max_drop == 2


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"epochs": 0}, "epochs", "greater than or equal to 1"),
        ({"on_error": "explode"}, "on_error", "fail"),
        ({"target": {"base_url": "http://x", "model": "gpt"}}, "target", "messages"),
        ({"target": {"model": "prompt:qa@p", "timeout": 3}}, "target.timeout", "Extra"),
        ({"scorers": []}, "scorers", "at least 1"),
        ({"gates": ["accuracy ~ 0.9"]}, "gates", "cannot read the gate"),
        ({"scorers": ["bleu", "bleu"]}, None, "two scorers report the metric 'bleu'"),
        ({"target": {"kind": "sklearn", "model": "m@p", "features": []}}, "target.features", ""),
    ],
)
def test_errors_name_the_field(change: dict[str, object], field: str | None, words: str) -> None:
    with pytest.raises(SuiteInvalid) as info:
        parse_suite({**BASE, **change}, source="s.yaml")
    assert info.value.message.startswith("s.yaml: ")
    if field:
        assert f": {field}: " in info.value.message or info.value.param == field
    assert words in info.value.message


def test_bad_yaml_has_the_line(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: qa\nscorers: [a\n")
    with pytest.raises(SuiteInvalid, match="line"):
        load_suite(path)


@pytest.mark.parametrize("dataset", ["file", "folder", "registry"])
def test_a_run_records_the_digest_a_gate_policy_pins(
    registry: Registry, tmp_path: Path, dataset: str
) -> None:
    """`lockgate prompt gate … --suite FILE` (the registry) and `lockgate eval run FILE`
    (evals) give a suite the same content digest, for every kind of dataset; the target's
    version and endpoint and the call settings are not part of it, the rest is."""
    from lockgate.evals.data import load_dataset

    rows = '{"q": "1+1", "answer": "2"}\n{"q": "2+2", "answer": "4"}\n'
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.jsonl").write_text(rows)
    source = {"file": "data/a.jsonl", "folder": "data", "registry": "registry:qa-data"}[dataset]
    if dataset == "registry":
        registry.datasets.add("qa-data", tmp_path / "data" / "a.jsonl")
    doc = {**BASE, "dataset": {"path": source, "limit": 5}, "reference": "answer",
           "gates": ["exact_match >= 0.5"], "stats": {"seed": 1}}  # fmt: skip
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(doc))
    suite = load_suite(path)
    run_digest = suite.digest(
        load_dataset(suite.dataset, base_dir=tmp_path, registry=registry).digest
    )
    pin = registry.gates.pin_suite(path)
    assert (pin.name, pin.digest) == ("qa", run_digest)

    elsewhere = {"base_url": "http://elsewhere/v1", "model": "prompt:qa@7", "headers": {"x": "y"}}
    same = {**doc, "target": elsewhere, "concurrency": 3, "timeout": 5, "retries": 0,
            "on_error": "skip", "stats": {"seed": 1, "inconclusive": "warn"}}  # fmt: skip
    path.write_text(yaml.safe_dump(same))
    assert registry.gates.pin_suite(path) == pin
    for changed in ({"gates": ["exact_match >= 0.4"]}, {"stats": {"seed": 2}},
                    {"dataset": {"path": source, "limit": 1}}, {"reference": "q"},
                    {"target": {**BASE["target"], "params": {"temperature": 1}}}):  # fmt: skip
        path.write_text(yaml.safe_dump({**doc, **changed}))
        assert registry.gates.pin_suite(path) != pin, changed
