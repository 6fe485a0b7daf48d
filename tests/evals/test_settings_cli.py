"""The ``evals`` section of lockgate.yaml reaches ``lockgate eval run``: its cache folder, and
the call settings a suite leaves out (the suite's own win)."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from lockgate.gateway.cli import app
from tests.evals.conftest import arithmetic_rows, write_jsonl
from tests.evals.upstream import Upstream


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("LOCKGATE_")]:
        monkeypatch.delenv(key)


def _run(tmp_path: Path, upstream: Upstream, **suite_extra: Any) -> list[float]:
    """``lockgate --config … eval run`` with ``evals: {concurrency: 1}``; the arrival times."""
    write_jsonl(tmp_path / "data.jsonl", arithmetic_rows(6))
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({
        "name": "arith-settings", "dataset": "data.jsonl",
        "target": {"base_url": upstream.base_url, "model": "stub",
                   "messages": [{"role": "user", "content": "{{ question }}"}]},
        "reference": "answer", "scorers": ["exact_match"], **suite_extra,
    }))  # fmt: skip
    config = tmp_path / "lockgate.yaml"
    config.write_text(yaml.safe_dump({
        "registry": {"data_dir": str(tmp_path / "data")},
        "evals": {"cache_dir": str(tmp_path / "from-config"), "concurrency": 1, "retries": 0},
    }))  # fmt: skip
    upstream.state.delay = 0.05
    result = CliRunner().invoke(
        app, ["--config", str(config), "eval", "run", str(suite), "--no-resume", "-q"]
    )
    assert result.exit_code in (0, 1), result.output  # 1: no gates, not a pass
    assert (tmp_path / "from-config" / "cache.sqlite").is_file()
    return sorted(upstream.state.arrivals)


def _overlapping(arrivals: list[float]) -> bool:
    return any(b - a < 0.04 for a, b in itertools.pairwise(arrivals))


def test_a_suite_without_concurrency_takes_the_config_s(upstream: Upstream, tmp_path: Path) -> None:
    arrivals = _run(tmp_path, upstream)
    assert len(arrivals) == 6 and not _overlapping(arrivals)  # one call at a time


def test_the_suite_s_own_concurrency_wins(upstream: Upstream, tmp_path: Path) -> None:
    arrivals = _run(tmp_path, upstream, concurrency=6)
    assert len(arrivals) == 6 and _overlapping(arrivals)
