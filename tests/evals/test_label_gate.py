"""The whole CI loop through the real `lockgate` CLI: a suite runs against the in-process
gateway (no server), its verdict lands on the registry run, and the production label's gate
refuses a regressed version with the reasons, then admits a good one."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lockgate.gateway.cli import app
from lockgate.registry import GateRefused, Registry, RegistrySettings
from tests.evals.conftest import arithmetic_rows, write_jsonl
from tests.evals.test_end_to_end import GOOD, WRONG
from tests.evals.upstream import Upstream


@pytest.fixture
def lockgate(
    registry_settings: RegistrySettings,
    upstream: Upstream,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):  # type: ignore[no-untyped-def]
    for key in list(os.environ):
        if key.startswith("LOCKGATE_"):
            monkeypatch.delenv(key)
    config = tmp_path / "lockgate.yaml"
    registry_section = {"data_dir": str(registry_settings.data_dir)}
    if registry_settings.database_url:
        registry_section["database_url"] = registry_settings.database_url
    config.write_text(
        yaml.safe_dump(
            {
                "registry": registry_section,
                "gateway": {
                    "routes": {
                        "stub": {
                            "deployments": [
                                {
                                    "provider": "openai",
                                    "model": "stub",
                                    "api_base": upstream.base_url,
                                }
                            ]
                        }
                    }
                },
            }
        )
    )
    monkeypatch.setenv("LOCKGATE_CONFIG", str(config))
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(app, list(args))
        return result.exit_code, result.stdout, result.stderr

    return run


def test_gate_refuses_a_regressed_prompt_and_admits_a_good_one(
    lockgate, registry: Registry, upstream: Upstream, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    write_jsonl(tmp_path / "data.jsonl", arithmetic_rows(60))
    v1, _ = registry.prompts.push("arith", GOOD, {"model": "stub", "temperature": 0})
    registry.labels.set("prompt", "arith", "production", v1.version)
    bad, _ = registry.prompts.push("arith", WRONG, {"model": "stub", "temperature": 0})

    def suite(ref: str) -> Path:
        path = tmp_path / f"suite-{ref.replace(':', '_').replace('@', '_')}.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "name": "arith-ci",
                    "dataset": str(tmp_path / "data.jsonl"),
                    "target": {"model": ref},  # no base_url: the in-process gateway
                    "reference": "answer",
                    "scorers": ["exact_match"],
                    "gates": [
                        "exact_match >= 0.9",
                        {"exact_match": {"regression": True, "min_effect": 0.15}},
                    ],
                }
            )
        )
        return path

    cache = ["--cache-dir", str(tmp_path / "cache")]
    # the policy pins the suite's content; which version it targets is not part of it
    code, out, err = lockgate(
        "prompt", "gate", "arith", "production", "--suite", str(suite("prompt:arith@production"))
    )
    assert code == 0 and "arith-ci (sha256:" in out, out + err
    code, out, err = lockgate("eval", "run", str(suite("prompt:arith@production")), *cache)
    assert code == 1, out + err  # the baseline: production's own run; its relative gate skipped
    assert "verdict: skipped" in out
    code, out, err = lockgate(
        "eval",
        "run",
        str(suite(f"prompt:arith@{bad.version}")),
        *cache,
        "--baseline",
        "label:production",
        "--json-out",
        str(tmp_path / "bad.json"),
    )
    assert code == 1, out + err
    assert upstream.state.chat_calls == 60 + 60  # baseline and candidate, through the gateway
    report = json.loads((tmp_path / "bad.json").read_text())
    assert registry.runs.get(report["run_id"]).tags["verdict"] == "fail"

    with pytest.raises(GateRefused) as refused:
        registry.labels.set("prompt", "arith", "production", bad.version)
    assert "suite 'arith-ci'" in refused.value.reasons[0]
    assert "fail" in refused.value.reasons[0] and "exact_match" in refused.value.reasons[0]
    code, _, err = lockgate("prompt", "label", "arith", str(bad.version), "production")
    assert code == 1 and "refused by its gate policy" in err

    good, _ = registry.prompts.push("arith", GOOD, {"model": "stub", "temperature": 0.0, "seed": 1})
    code, out, err = lockgate(
        "eval",
        "run",
        str(suite(f"prompt:arith@{good.version}")),
        *cache,
        "--baseline",
        "label:production",
    )
    assert code == 0, out + err
    code, out, err = lockgate("prompt", "label", "arith", str(good.version), "production")
    assert code == 0, err
    assert registry.prompts.get("arith@production").version == good.version
    # every call went through the gateway and left a call record
    assert len(registry.calls.list(limit=1000, prompt_name=None)) >= 180
