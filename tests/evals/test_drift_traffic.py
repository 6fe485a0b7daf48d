"""LLM traffic drift over call records (SQLite and PostgreSQL), through the Python API and
the real CLI (``lockgate drift traffic``)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
import pytest

from lockgate.evals.drift import DriftInputInvalid, DriftOptions
from lockgate.evals.drift.traffic import run_traffic_drift, traffic_frame, windows
from lockgate.registry import InvalidInput, Registry
from lockgate.registry.calls import NewCall
from lockgate.registry.tables import utcnow
from tests.conftest import Cli


def _calls(
    reg: Registry,
    now: datetime,
    *,
    hours_ago: tuple[float, float],
    n: int,
    tokens: float,
    seed: int,
    model: str = "gpt-small",
    route: str = "support-bot",
    prompt: tuple[str, int] | None = ("support", 1),
    errors: float = 0.01,
    length: float = 0.0,
) -> None:
    rng = np.random.default_rng(seed)
    ages = rng.uniform(*hours_ago, n)
    statuses = np.where(rng.random(n) < errors, 500, 200)
    finishes = np.where(rng.random(n) < length, "length", "stop")
    calls = [
        NewCall(
            request_id=f"{seed}-{i}",
            operation="chat",
            status_code=int(statuses[i]),
            finish_reason=str(finishes[i]) if statuses[i] == 200 else None,
            latency_ms=float(rng.gamma(4, 80)),
            created_at=now - timedelta(hours=float(age)),
            model=model,
            route=route,
            prompt_name=prompt[0] if prompt else None,
            prompt_version=prompt[1] if prompt else None,
            input_tokens=int(rng.poisson(tokens)),
            output_tokens=int(rng.poisson(120)),
            cost_usd=None,
        )
        for i, age in enumerate(ages)
    ]
    reg.calls.record(calls)


def test_windows_follow_each_other() -> None:
    now = utcnow()
    (cur_start, cur_end), (ref_start, ref_end) = windows("24h", "7d", now)
    assert cur_end == now and cur_start == now - timedelta(hours=24)
    assert ref_end == cur_start and ref_start == cur_start - timedelta(days=7)
    for bad in ("yesterday", "0h", "2024-01-01T00:00:00Z", "-3d", ""):
        with pytest.raises(InvalidInput):
            windows(bad, "7d", now)


def test_longer_prompts_are_traffic_drift(registry: Registry) -> None:
    now = utcnow()
    _calls(registry, now, hours_ago=(25, 24 * 7), n=600, tokens=200, seed=1)
    _calls(registry, now, hours_ago=(0, 23), n=300, tokens=420, seed=2)
    _calls(registry, now, hours_ago=(0, 23), n=50, tokens=9000, seed=3, model="other",
           route="other", prompt=None)  # fmt: skip
    frame = traffic_frame(
        registry, model="gpt-small", prompt=None, start=now - timedelta(hours=24), end=now
    )
    assert len(frame) == 300
    assert list(frame.columns) == [
        "input_tokens", "output_tokens", "latency_ms", "ttft_ms", "error", "cost_usd",
        "finish_reason",
    ]  # fmt: skip
    run = run_traffic_drift(registry, model="gpt-small", now=now)
    report = run.report
    assert report.column("input_tokens").drifted
    assert not report.column("output_tokens").drifted
    assert report.column("error").kind == "categorical"
    # no call streamed and none was priced: said, not tested
    assert set(report.skipped) == {"ttft_ms", "cost_usd"}
    assert "no values" in report.skipped["ttft_ms"]
    assert (report.n_reference, report.n_current) == (600, 300)
    info = registry.runs.get(run.run_id)
    assert info.kind == "drift" and info.status == "succeeded"
    assert info.params["reference"].startswith("calls:model=gpt-small:")
    assert "report.html" in info.artifacts
    # the route the client asked for names the same traffic
    by_route = run_traffic_drift(registry, model="support-bot", now=now, html=False)
    assert by_route.report.to_dict() == report.to_dict()


def test_prompt_version_scopes_the_traffic_and_is_the_subject(registry: Registry) -> None:
    registry.prompts.push("support", "Answer: {{ question }}")
    now = utcnow()
    _calls(registry, now, hours_ago=(25, 100), n=300, tokens=200, seed=4)
    _calls(registry, now, hours_ago=(0, 20), n=200, tokens=200, seed=5)
    _calls(registry, now, hours_ago=(0, 20), n=200, tokens=900, seed=6, prompt=("support", 2))
    run = run_traffic_drift(registry, prompt="support@1", now=now)
    assert run.report.n_current == 200
    assert not run.report.column("input_tokens").drifted
    assert run.subject == "prompt:support@1"
    assert registry.runs.get(run.run_id).params["subject"] == "prompt:support@1"
    with pytest.raises(DriftInputInvalid, match="no call records"):
        run_traffic_drift(registry, prompt="support@1", current="1h", reference="1h",
                          now=now - timedelta(days=30))  # fmt: skip
    with pytest.raises(DriftInputInvalid, match="name a model"):
        run_traffic_drift(registry)
    with pytest.raises(DriftInputInvalid, match="'tokens'"):
        run_traffic_drift(registry, prompt="support", now=now,
                          options=DriftOptions(columns=["tokens"]))  # fmt: skip


def test_drift_traffic_cli(cli: Cli, registry: Registry) -> None:
    now = utcnow()
    _calls(registry, now, hours_ago=(25, 24 * 7), n=400, tokens=200, seed=7)
    _calls(registry, now, hours_ago=(0.1, 23), n=300, tokens=600, seed=8, errors=0.3,
           length=0.4)  # fmt: skip
    code, out, err = cli("drift", "traffic", "--model", "gpt-small", "--json")
    assert code == 1, err
    data = json.loads(out)
    drifted = {c["column"] for c in data["columns"] if c["drifted"]}
    assert {"input_tokens", "error", "finish_reason"} <= drifted
    assert data["drifted"] is True and registry.runs.get(data["run_id"]).kind == "drift"
    code, out, _ = cli("drift", "traffic", "--model", "gpt-small", "--columns", "output_tokens")
    assert code == 0
    assert "output_tokens" in out and "no drift" in out
    code, _, err = cli("drift", "traffic", "--model", "gpt-small", "--current", "yesterday")
    assert code == 2 and "--current 'yesterday'" in err
    code, _, err = cli("drift", "traffic", "--model", "nobody")
    assert code == 2 and "no call records" in err
