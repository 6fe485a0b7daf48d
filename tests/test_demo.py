"""`lockgate demo` runs the whole loop that exists, offline, and ends where it should."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_demo_runs_the_loop(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKGATE_")}
    done = subprocess.run(
        [sys.executable, "-m", "lockgate.gateway.cli", "demo",
         "--data-dir", str(tmp_path / "demo")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout + done.stderr
    assert "pushed support@2" in out
    assert "POST /v1/chat/completions model=support-bot -> 200" in out
    assert "refused by its gate policy" in out  # the planted regression is stopped
    assert "support: production 2 -> 4" in out  # the good version ships
    assert (tmp_path / "demo" / "summary.md").read_text().count("fail") >= 1
    # a tiny model fine-tuned, gated against its base, labelled and served in process
    assert "label moved: production" in out
    assert (
        "model=registry:support-lm@production 'How long does a refund take?' -> 200: "
        "Refunds reach your card within 5 business days" in out
    )
