"""A label moves only on evidence, through the real `lockgate` CLI (a subprocess) and the real
registry (SQLite and PostgreSQL):

* a skipped gate, or a suite without gates, is never a pass (the run may exit 0 when the suite
  says so, and says why, but the label does not move);
* a run whose calls errored is not evidence;
* the gate policy pins the suite by content (suite file and dataset digest): another suite
  under the same name does not satisfy it;
* a first version (the label unset) is judged by its absolute gates; once the label holds a
  version, relative gates must have compared the candidate with that version;
* report folders are created, and an unwritable report is exit 2 naming the path, recorded
  on the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from lockgate.registry import Registry, RegistrySettings
from tests.evals.conftest import arithmetic_rows, write_jsonl
from tests.evals.test_end_to_end import ALSO_GOOD, GOOD, WRONG
from tests.evals.upstream import Upstream

Lockgate = Callable[..., subprocess.CompletedProcess[str]]
CONFIG = {"model": "stub", "temperature": 0}


def _lockgate_command() -> list[str]:
    script = Path(sys.executable).with_name("lockgate")
    return [str(script)] if script.exists() else [sys.executable, "-m", "lockgate.gateway.cli"]


@pytest.fixture
def lockgate(registry_settings: RegistrySettings, tmp_path: Path) -> Lockgate:
    """`lockgate …` in a subprocess on the test's registry, from ``tmp_path``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKGATE_")}
    env["LOCKGATE_DATA_DIR"] = str(registry_settings.data_dir)
    if registry_settings.database_url:
        env["LOCKGATE_DATABASE_URL"] = registry_settings.database_url
    env["COLUMNS"] = "200"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*_lockgate_command(), *args], env=env, cwd=tmp_path, capture_output=True,
            text=True, timeout=180,
        )  # fmt: skip

    return run


def _suite(
    tmp: Path, upstream: Upstream, file: str, *, gates: list[Any], model: str = "prompt:arith@1",
    name: str = "arith-ci", data: str = "data.jsonl", **extra: Any,
) -> Path:  # fmt: skip
    path = tmp / file
    path.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "dataset": data,
                "target": {"base_url": upstream.base_url, "model": model},
                "reference": "answer",
                "scorers": ["exact_match"],
                "gates": gates,
                **extra,
            }
        )
    )
    return path


def _say(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"


def _retarget(path: Path, model: str) -> None:
    """The same suite file pointed at another version (the target's model is not pinned)."""
    doc = yaml.safe_load(path.read_text())
    doc["target"]["model"] = model
    path.write_text(yaml.safe_dump(doc))


RELATIVE = {"exact_match": {"regression": True, "min_effect": 0.15}}


def test_a_skipped_relative_gate_is_not_a_pass_and_moves_nothing(
    lockgate: Lockgate, registry: Registry, upstream: Upstream, tmp_path: Path
) -> None:
    """The finding: exact_match 0, the only gate relative, no baseline: it exited 0 and
    production moved."""
    write_jsonl(tmp_path / "data.jsonl", arithmetic_rows(60))
    registry.prompts.push("arith", WRONG, CONFIG)
    suite = _suite(tmp_path, upstream, "suite.yaml", gates=[RELATIVE])

    done = lockgate("eval", "run", "suite.yaml", "--json-out", "run.json")
    assert done.returncode == 1, _say(done)
    report = json.loads((tmp_path / "run.json").read_text())
    assert report["summaries"]["exact_match"]["value"] == 0.0
    assert report["verdict"] == "skipped" and [g["verdict"] for g in report["gates"]] == ["skipped"]
    assert "skipped" in done.stdout and "not a pass" in done.stdout

    # against an unset label, relative gates have nothing to compare with: the absolute
    # gates decide, and this suite has none
    done = lockgate("eval", "run", "suite.yaml", "--baseline", "label:production")
    assert done.returncode == 1, _say(done)
    assert "absolute" in done.stdout

    done = lockgate("prompt", "gate", "arith", "production", "--suite", str(suite))
    assert done.returncode == 0, _say(done)
    assert "arith-ci" in done.stdout and "sha256:" in done.stdout
    done = lockgate("prompt", "label", "arith", "1", "production")
    assert done.returncode == 1, _say(done)
    assert "refused by its gate policy" in done.stderr and "skipped" in done.stderr
    assert "production" not in registry.labels.of("prompt", "arith")


def test_a_suite_without_gates_never_passes_even_when_it_exits_0(
    lockgate: Lockgate, registry: Registry, upstream: Upstream, tmp_path: Path
) -> None:
    write_jsonl(tmp_path / "data.jsonl", arithmetic_rows(30))
    registry.prompts.push("arith", GOOD, CONFIG)
    _suite(tmp_path, upstream, "suite.yaml", gates=[])
    done = lockgate("eval", "run", "suite.yaml")
    assert done.returncode == 1, _say(done)
    assert "no gates" in done.stdout

    # CI may accept it (exit 0) when the suite says so; the output says why, and that the
    # run moves no label
    _suite(tmp_path, upstream, "suite.yaml", gates=[], stats={"skipped": "warn"})
    done = lockgate("eval", "run", "suite.yaml")
    assert done.returncode == 0, _say(done)
    assert "stats.skipped: warn" in done.stdout and "moves no label" in done.stdout
    assert (
        lockgate("prompt", "gate", "arith", "production", "--suite", "suite.yaml").returncode == 0
    )
    done = lockgate("prompt", "label", "arith", "1", "production")
    assert done.returncode == 1 and "no gates" in done.stderr, _say(done)


def test_a_run_whose_calls_errored_is_not_evidence(
    lockgate: Lockgate, registry: Registry, upstream: Upstream, tmp_path: Path
) -> None:
    write_jsonl(tmp_path / "data.jsonl", arithmetic_rows(60))
    registry.prompts.push("arith", GOOD, CONFIG)
    _suite(tmp_path, upstream, "suite.yaml", gates=["exact_match >= 0.9"], on_error="skip",
           retries=0, concurrency=1)  # fmt: skip
    upstream.state.fail_after = 50  # 10 calls fail; the 50 answered are all right
    done = lockgate("eval", "run", "suite.yaml", "--no-cache", "--json-out", "run.json")
    assert done.returncode == 1, _say(done)
    report = json.loads((tmp_path / "run.json").read_text())
    assert report["errors"] == 10 and report["summaries"]["exact_match"]["value"] == 1.0
    assert report["gates"][0]["verdict"] == "pass" and report["verdict"] == "inconclusive"
    assert "errored" in report["verdict_reason"]

    assert (
        lockgate("prompt", "gate", "arith", "production", "--suite", "suite.yaml").returncode == 0
    )
    done = lockgate("prompt", "label", "arith", "1", "production")
    assert done.returncode == 1 and "errored" in done.stderr, _say(done)
    assert "production" not in registry.labels.of("prompt", "arith")


def test_another_suite_under_the_same_name_does_not_satisfy_the_policy(
    lockgate: Lockgate, registry: Registry, upstream: Upstream, tmp_path: Path
) -> None:
    write_jsonl(tmp_path / "data.jsonl", arithmetic_rows(60))
    # the same questions, with the regressed prompt's (wrong) answers as the reference
    rows = [{**r, "answer": str(int(r["answer"]) + 1)} for r in arithmetic_rows(60)]
    write_jsonl(tmp_path / "lenient.jsonl", rows)
    bad, _ = registry.prompts.push("arith", WRONG, CONFIG)
    pinned = _suite(tmp_path, upstream, "suite.yaml", gates=["exact_match >= 0.9"])
    _suite(tmp_path, upstream, "other.yaml", gates=["exact_match >= 0.9"], data="lenient.jsonl")
    assert (
        lockgate("prompt", "gate", "arith", "production", "--suite", "suite.yaml").returncode == 0
    )

    done = lockgate("eval", "run", "other.yaml")  # same name, other data: it passes
    assert done.returncode == 0, _say(done)
    done = lockgate("prompt", "label", "arith", str(bad.version), "production")
    assert done.returncode == 1, _say(done)
    assert "other content" in done.stderr and "arith-ci" in done.stderr
    assert "production" not in registry.labels.of("prompt", "arith")

    good, _ = registry.prompts.push("arith", GOOD, CONFIG)
    _retarget(pinned, f"prompt:arith@{good.version}")  # where the model is served: not pinned
    done = lockgate("eval", "run", "suite.yaml")
    assert done.returncode == 0, _say(done)
    done = lockgate("prompt", "label", "arith", str(good.version), "production")
    assert done.returncode == 0, _say(done)
    assert registry.labels.of("prompt", "arith")["production"] == good.version

    # the pinned file edited (a gate loosened) is other content until it is pinned again
    _suite(tmp_path, upstream, "suite.yaml", gates=["exact_match >= 0.0"],
           model=f"prompt:arith@{bad.version}")  # fmt: skip
    assert lockgate("eval", "run", "suite.yaml").returncode == 0
    done = lockgate("prompt", "label", "arith", str(bad.version), "production")
    assert done.returncode == 1 and "other content" in done.stderr, _say(done)


def test_a_first_version_is_judged_by_absolute_gates_then_against_the_holder(
    lockgate: Lockgate, registry: Registry, upstream: Upstream, tmp_path: Path
) -> None:
    write_jsonl(tmp_path / "data.jsonl", arithmetic_rows(60))
    v1, _ = registry.prompts.push("arith", GOOD, CONFIG)
    suite = _suite(tmp_path, upstream, "suite.yaml", gates=["exact_match >= 0.9", RELATIVE])
    assert (
        lockgate("prompt", "gate", "arith", "production", "--suite", "suite.yaml").returncode == 0
    )

    done = lockgate(
        "eval", "run", "suite.yaml", "--baseline", "label:production", "--json-out", "1.json"
    )
    assert done.returncode == 0, _say(done)
    first = json.loads((tmp_path / "1.json").read_text())
    assert first["verdict"] == "pass"
    assert [(g["verdict"], g["waived"]) for g in first["gates"]] == [
        ("pass", False),
        ("skipped", True),
    ]
    done = lockgate("prompt", "label", "arith", "1", "production")
    assert done.returncode == 0, _say(done)

    # v2 and v3 are both compared with v1's run (by run id), while v1 holds production
    v2, _ = registry.prompts.push("arith", ALSO_GOOD, CONFIG)
    _retarget(suite, f"prompt:arith@{v2.version}")
    done = lockgate("eval", "run", "suite.yaml", "--baseline", first["run_id"])
    assert done.returncode == 0, _say(done)
    v3, _ = registry.prompts.push("arith", ALSO_GOOD, {**CONFIG, "seed": 3})
    _retarget(suite, f"prompt:arith@{v3.version}")
    done = lockgate("eval", "run", "suite.yaml", "--baseline", first["run_id"])
    assert done.returncode == 0, _say(done)
    done = lockgate("prompt", "label", "arith", str(v2.version), "production")
    assert done.returncode == 0, _say(done)  # compared with v1, production's holder
    # v3's relative gate compared it with v1, but v2 holds production now: not evidence
    done = lockgate("prompt", "label", "arith", str(v3.version), "production")
    assert done.returncode == 1, _say(done)
    assert f"arith@{v2.version}" in done.stderr and "--baseline label:production" in done.stderr

    done = lockgate("eval", "run", "suite.yaml", "--baseline", "label:production")
    assert done.returncode == 0, _say(done)
    done = lockgate("prompt", "label", "arith", str(v3.version), "production")
    assert done.returncode == 0, _say(done)
    assert registry.labels.of("prompt", "arith")["production"] == v3.version
    assert [m.to_version for m in registry.labels.history("prompt", "arith", "production")] == [
        v1.version, v2.version, v3.version,
    ]  # fmt: skip


def test_report_folders_are_created_and_an_unwritable_report_is_exit_2(
    lockgate: Lockgate, registry: Registry, upstream: Upstream, tmp_path: Path
) -> None:
    write_jsonl(tmp_path / "data.jsonl", arithmetic_rows(30))
    registry.prompts.push("arith", GOOD, CONFIG)
    _suite(tmp_path, upstream, "suite.yaml", gates=["exact_match >= 0.9"])
    done = lockgate("eval", "run", "suite.yaml", "--junit", "out/j.xml",
                    "--markdown", "out/deep/summary.md", "--json-out", "out/r.json")  # fmt: skip
    assert done.returncode == 0, _say(done)
    assert (tmp_path / "out" / "j.xml").read_text().startswith("<?xml")
    assert "**pass**" in (tmp_path / "out" / "deep" / "summary.md").read_text()
    assert "verdict: pass" in done.stdout

    (tmp_path / "blocker").write_text("a file where a folder is wanted\n")
    done = lockgate("eval", "run", "suite.yaml", "--junit", "blocker/j.xml", "--json-out", "r.json")
    assert done.returncode == 2, _say(done)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "blocker/j.xml" in lines[0] and lines[0].startswith("error:")
    assert "verdict: pass" in done.stdout  # the summary is still printed
    report = json.loads((tmp_path / "r.json").read_text())  # the other outputs are written
    run = registry.runs.get(report["run_id"])
    assert any("blocker/j.xml" in e for e in run.tags["output_errors"])


def _finish(registry: Registry, tmp_path: Path, spec: dict[str, Any]) -> Any:
    """A claimed job finished with an adapter: registered, evaluated, labelled (or not)."""
    from lockgate.finetune.results import finish_job
    from lockgate.finetune.spec import parse_spec
    from lockgate.finetune.trainer import TrainInputs, TrainResult

    job, _ = registry.jobs.create("finetune", spec)
    claimed = registry.jobs.claim("worker-1")
    assert claimed is not None and claimed.id == job.id
    run = registry.runs.create("finetune", name=job.id)
    adapter = tmp_path / f"adapter-{job.id}"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"r": 8}')
    inputs = TrainInputs(parse_spec(spec), "tiny", Path(spec["training_file"]), None,
                         tmp_path / "out", tmp_path / "ck")  # fmt: skip
    result = TrainResult(adapter, 1, 1, None, 10, {"loss": 0.5})
    return finish_job(registry, claimed, "worker-1", run.id, inputs, result)


def test_a_fine_tuned_adapter_moves_its_label_only_through_the_gate(
    registry: Registry, upstream: Upstream, tmp_path: Path
) -> None:
    """The job's own suite and the label's gate policy, pinned by content, decide; a first
    adapter with no baseline is judged by its absolute gates; the job says why not."""
    write_jsonl(tmp_path / "data.jsonl", arithmetic_rows(60))
    train = write_jsonl(tmp_path / "train.jsonl", [{"messages": []}])
    target = {"base_url": upstream.base_url, "model": "registry:qa-bot@latest",
              "messages": [{"role": "user", "content": "{{ question }}"}]}  # fmt: skip
    suite = tmp_path / "suite.yaml"

    def write_suite(gates: list[Any], data: str = "data.jsonl") -> None:
        suite.write_text(yaml.safe_dump({"name": "qa-lm", "dataset": data, "target": target,
                                         "reference": "answer", "scorers": ["exact_match"],
                                         "gates": gates}))  # fmt: skip

    spec = {
        "base_model": "hub/tiny-llama",
        "training_file": str(train),
        "output_model": "qa-bot",
        "eval": {"suite": str(suite), "label": "production"},
    }

    # a first adapter, no baseline, only a relative gate: nothing judged it; it stays unlabelled
    write_suite([RELATIVE])
    done = _finish(registry, tmp_path, spec)
    assert done.status == "succeeded" and done.result["eval"]["labelled"] is False
    assert "absolute" in " ".join(done.result["eval"]["refused"])
    events = [e for e in registry.jobs.events(done.id) if e.level == "warn"]
    assert any("label 'production' not moved" in e.message for e in events)
    assert "production" not in registry.labels.of("model", "qa-bot")

    # with an absolute gate the first adapter is judged by it, and labelled
    write_suite(["exact_match >= 0.9", RELATIVE])
    done = _finish(registry, tmp_path, spec)
    assert done.result["eval"]["labelled"] == "production", done.result
    assert registry.labels.of("model", "qa-bot")["production"] == 2
    move = registry.labels.history("model", "qa-bot", "production")[-1]
    assert not move.forced and "qa-lm passed" in move.reason

    # the next one is compared with the holder; a gate policy on the label must pass too:
    # pinned to a suite this job did not run, the label stays
    (tmp_path / "other.yaml").write_text(
        suite.read_text().replace("data.jsonl", "other.jsonl").replace("qa-lm", "qa-other")
    )
    write_jsonl(tmp_path / "other.jsonl", arithmetic_rows(30))
    registry.gates.set_policy(
        "model", "qa-bot", "production", [registry.gates.pin_suite(tmp_path / "other.yaml")]
    )
    done = _finish(registry, tmp_path, spec)
    assert done.result["eval"]["verdict"] == "pass" and done.result["eval"]["labelled"] is False
    assert "suite 'qa-other'" in " ".join(done.result["eval"]["refused"])
    assert registry.labels.of("model", "qa-bot")["production"] == 2
    registry.gates.set_policy("model", "qa-bot", "production", [])

    # a submitter without the registry:label scope: evaluated, never labelled
    remote = {"via": "http", "principal": "key_1", "name": "ml", "holds_label_scope": False}
    done = _finish(registry, tmp_path, {**spec, "submitted_by": remote})
    assert done.result["eval"]["verdict"] == "pass" and done.result["eval"]["labelled"] is False
    assert "does not hold the registry:label scope" in done.result["eval"]["refused"][0]
    assert registry.labels.of("model", "qa-bot")["production"] == 2
    allowed = {**remote, "holds_label_scope": True}
    done = _finish(registry, tmp_path, {**spec, "submitted_by": allowed})
    assert done.result["eval"]["labelled"] == "production"
    assert registry.labels.of("model", "qa-bot")["production"] == 5
