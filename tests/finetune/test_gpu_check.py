"""The GPU check script in its CPU mode, so that it cannot rot between GPU runs.

``tests/benchmarks/gpu_check.py --device cpu --shape tiny`` runs the five measurements the
GPU run makes (fine-tuning throughput against the Trainer recipe, its trade-offs, a job
through the worker with kill and resume, the torchrun executor, the local provider serving
base + adapter), each in its own process, on a tiny model built here."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "benchmarks" / "gpu_check.py"


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_gpu_check_cpu_mode_measures_all_five(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    pytest.importorskip("openai")
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--shape", "tiny", "--out", str(out),
         "--work", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    report = json.loads((out / "gpu_check.json").read_text())
    m = report["measurements"]
    log = (out / "gpu_check.log").read_text()[-4000:]
    assert done.returncode == 0 and report["failed"] == [], done.stdout + log
    assert set(m) == {"setup", "throughput", "tradeoffs", "worker_local", "worker_torchrun",
                      "serving"}  # fmt: skip

    # 1. both recipes trained and were measured, each in its own process
    results = m["throughput"]["results"]
    assert set(results) == {"baseline", "lockgate"}
    for r in results.values():
        assert _positive(r["tokens_per_s"]) and _positive(r["peak_mem_mib"]), r
    assert _positive(m["throughput"]["speedup"]) and _positive(m["throughput"]["memory_ratio"])

    # 2. the same with gradient checkpointing at a longer max_seq_length
    [variant] = m["tradeoffs"]["variants"].values()
    assert variant["config"]["gradient_checkpointing"] is True
    assert variant["config"]["max_len"] > m["throughput"]["config"]["max_len"]
    assert _positive(variant["results"]["lockgate"]["tokens_per_s"])

    # 3. a whole job through the worker registers its adapter; kill + resume ends the same
    local = m["worker_local"]
    job = local["job"]
    assert job["status"] == "succeeded" and local["registered"], job
    assert job["steps"] == job["total_steps"] == 12 and _positive(job["loss"])
    assert _positive(job["step_tokens_per_s"]) and _positive(job["peak_mem_mib"])
    resume = local["resume"]
    assert resume["holds"], resume
    assert resume["attempts"] == 2 and 4 <= resume["resumed_from"] < 12
    assert resume["loss_rel_diff"] <= resume["tolerance"]

    # 4. the torchrun executor (one process) ends in the same adapter as the local one
    torchrun = m["worker_torchrun"]
    assert torchrun["job"]["status"] == "succeeded" and torchrun["registered"], torchrun
    assert torchrun["job"]["steps"] == 12
    compared = torchrun["compared_with_local"]
    assert compared["same_tensors"] and compared["loss_rel_diff"] <= 1e-3, compared

    # 5. the local provider streamed every token asked for, one and four at once
    serving = m["serving"]
    assert serving["tokens_as_expected"] and serving["device"] == "cpu", serving
    for key in ("adapter_c1", "adapter_c4", "base_c1"):
        s = serving[key]
        assert _positive(s["ttft_ms_median"]) and s["ttft_ms_max"] >= s["ttft_ms_median"]
        assert _positive(s["tokens_per_s_per_request"]) and _positive(s["aggregate_tokens_per_s"])
    assert serving["adapter_c4"]["requests"] == 4

    # the GPU machine has no litellm: neither the worker nor the local provider imports it
    for name in ("setup", "worker_local", "worker_torchrun", "serving"):
        assert m[name]["litellm_imported"] is False, name
        assert "litellm" not in m[name]["distributions"], name

    table = (out / "gpu_check.md").read_text()
    for n in range(1, 6):
        assert f"| {n} " in table, table
