"""The classic-model loop end to end, as a user runs it (issue 12, "Must show"):

train a scikit-learn classifier → ``dataset add`` → ``model register --reference --target``
→ ``eval run`` → label ``production`` behind a gate → ``lockgate serve`` answering
``:predict`` → the incoming data shifts → ``drift check`` says so → ``monitor run`` fires and
queues a retraining job → ``finetune worker`` runs the user's ``train.py``, registers the new
version with lineage, gates it → the label moves → the gateway serves the new version.

Every step is the real command in a process of its own, in a folder of its own, on the
embedded SQLite registry; the gateway is a real ``lockgate serve`` on a loopback port.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from tests.cli_folder import Folder

pytest.importorskip("sklearn")
pytest.importorskip("skops")
np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")
pytestmark = pytest.mark.slow

# the user's training entry point: the first version is trained by hand, the next by the job
TRAIN = """
import os, sys
import pandas as pd
import skops.io as sio
from sklearn.linear_model import LogisticRegression
data = os.environ.get("LOCKGATE_DATASET") or sys.argv[1]
output = os.environ.get("LOCKGATE_OUTPUT") or sys.argv[2]
frame = pd.read_csv(data)
features = ["tenure", "spend"]
model = LogisticRegression().fit(frame[features], frame["churned"])
sio.dump(model, output)
print("trained on", len(frame), "rows")
"""


def rows(n: int, seed: int, *, shift: float = 0.0) -> Any:
    """Customers; ``churned`` follows one rule whatever the population, so a model trained on
    shifted data stays accurate on the original one."""
    rng = np.random.default_rng(seed)
    tenure = rng.normal(12 + shift, 4, n)
    spend = rng.normal(50 + 10 * shift, 15, n)
    churned = (spend - 3 * tenure + rng.normal(0, 3, n) > 14).astype(int)
    return pd.DataFrame({"tenure": tenure, "spend": spend, "churned": churned})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Folder:
    path = tmp_path_factory.mktemp("classic-loop")
    (path / "lockgate.yaml").write_text(yaml.safe_dump({
        "gateway": {"predict": {"sample_rate": 1.0, "max_sample_rows_per_request": 1000,
                                "sample_flush_interval_s": 0.2}},
    }))  # fmt: skip
    (path / "train.py").write_text(TRAIN)
    rows(400, 1).to_csv(path / "train1.csv", index=False)
    # the retraining data: what the business sees now (shifted), labelled, with the old rows
    pd.concat([rows(400, 1), rows(400, 2, shift=8.0)]).to_csv(path / "train2.csv", index=False)
    held_out = rows(200, 3).to_dict(orient="records")
    (path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in held_out))
    (path / "suite.yaml").write_text(yaml.safe_dump({
        "name": "churn-accuracy", "dataset": "eval.jsonl", "reference": "churned",
        "target": {"kind": "sklearn", "model": "registry:churn@production",
                   "features": ["tenure", "spend"]},
        "scorers": ["accuracy"], "gates": ["accuracy >= 0.8"],
    }))  # fmt: skip
    return Folder(path)


@pytest.fixture(scope="module")
def gateway(folder: Folder) -> Iterator[str]:
    """``lockgate serve`` on a free loopback port, started once churn@1 is in production."""
    first_version(folder)
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "lockgate.gateway.cli", "serve", "--port", str(port)],
        cwd=folder.path, env=folder.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "lockgate serve did not become ready"
            time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def first_version(folder: Folder) -> None:
    subprocess.run(
        [sys.executable, "train.py", "train1.csv", "model.skops"], cwd=folder.path, check=True,
        capture_output=True,
    )  # fmt: skip
    assert folder.json("dataset", "add", "churn-train", "train1.csv")["version"] == 1
    registered = folder.json(
        "model", "register", "churn", "--flavor", "sklearn", "--path", "model.skops",
        "--reference", "churn-train@1", "--target", "churned",
    )  # fmt: skip
    assert registered["version"] == 1
    folder.lockgate("model", "label", "churn", "1", "production")
    folder.lockgate("model", "gate", "churn", "production", "--suite", "suite.yaml")
    verdict = folder.json("eval", "run", "suite.yaml")
    assert verdict["verdict"] == "pass", verdict


def _predict(url: str, frame: Any) -> dict[str, Any]:
    instances = frame[["tenure", "spend"]].to_dict(orient="records")
    answer = httpx.post(url + "/v1/models/churn@production:predict",
                        json={"instances": instances}, timeout=30)  # fmt: skip
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert len(body["predictions"]) == len(instances)
    return body


def _wait_for_samples(folder: Folder, at_least: int) -> None:
    from lockgate.registry import Registry, RegistrySettings

    registry = Registry(RegistrySettings(data_dir=folder.path / "data"))
    try:
        deadline = time.monotonic() + 30
        while len(registry.predictions.samples("churn", limit=10_000)) < at_least:
            assert time.monotonic() < deadline, "the gateway wrote no :predict samples"
            time.sleep(0.2)
    finally:
        registry.close()


def test_a_shift_is_detected_the_model_retrained_gated_and_served(
    folder: Folder, gateway: str
) -> None:
    assert _predict(gateway, rows(50, 4))["model"] == "churn@1"
    # the incoming population moves: longer tenure, higher spend
    for seed in range(5, 9):
        _predict(gateway, rows(100, seed, shift=8.0))
    _wait_for_samples(folder, 450)

    report = folder.json(
        "drift", "check", "--reference", "model:churn@production#reference",
        "--current", "model:churn@production:1h", "--html", "drift.html", expect=1,
    )  # fmt: skip
    by_column = {c["column"]: c for c in report["columns"]}
    assert by_column["tenure"]["drifted"] and by_column["spend"]["drifted"], report
    assert "<svg" in (folder.path / "drift.html").read_text()

    folder.lockgate("dataset", "add", "churn-train", "train2.csv")
    (folder.path / "policy.yaml").write_text(yaml.safe_dump({
        "name": "churn-drift", "target": "churn@production", "window": "1h",
        "min_samples": 100, "persistence": 1, "cooldown": "1h",
        "signal": {"kind": "drift", "max_share_drifted": 0.5},
        "actions": [
            {"kind": "alert"},
            {"kind": "retrain", "dataset": "churn-train@2", "entry": [sys.executable, "train.py"],
             "label": "production", "suite": "suite.yaml"},
        ],
    }))  # fmt: skip
    decision = folder.json("monitor", "run", "policy.yaml", expect=1)
    fired = json.dumps(decision)
    assert '"fired"' in fired, decision
    # run again at once: the cooldown holds it back, and no second job is queued
    folder.json("monitor", "run", "policy.yaml", expect=0)
    jobs = folder.json("finetune", "list", "--kind", "command")
    assert len(jobs) == 1, jobs

    folder.lockgate("finetune", "worker", "--once", "--kind", "command", timeout=600)
    job = folder.json("finetune", "status", jobs[0]["id"])
    assert job["status"] == "succeeded", job
    said = " ".join(folder.lockgate("finetune", "status", jobs[0]["id"]).split())
    assert "eval 'churn-accuracy' on churn@2: pass" in said, said
    assert "label 'production' moved to churn@2" in said and "None" not in said, said

    shown = folder.json("model", "show", "churn@production")
    assert shown["version"] == 2, (shown, job)
    history = folder.json("model", "history", "churn")
    moves = [(h["label"], h["to_version"]) for h in history]
    assert ("production", 2) in moves, history

    # the gateway serves the new version within its cache TTL, without a restart
    deadline = time.monotonic() + 30
    while _predict(gateway, rows(20, 10))["model"] != "churn@2":
        assert time.monotonic() < deadline, "the gateway kept serving churn@1"
        time.sleep(0.5)
