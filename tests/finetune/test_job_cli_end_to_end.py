"""A fine-tuning job through the real commands, as a user runs them (issue 11, item 19).

``lockgate model init-tiny``, ``finetune submit`` with an eval suite and a label,
``finetune worker --once``, then ``finetune status`` and ``logs``, then ``lockgate serve``
answering the adapter and one of the job's checkpoints — each a subprocess in a folder of
its own, on CPU. Checked: the eval verdict and why it is not a pass are in the human
``status`` and in the job's events, not only in ``status --json``; a checkpoint listed by
the jobs API is callable; and nothing of transformers, PEFT or the Hub (warnings, weight
loading progress bars) reaches the terminal of the worker or the gateway.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.finetune.conftest import QA, chat_rows, write_jsonl

pytest.importorskip("torch")
pytest.importorskip("peft")
pytestmark = pytest.mark.slow

# what transformers, PEFT and huggingface_hub write when left alone
NOISE = ("Warning", "warnings.warn", "Loading weights", "it/s]", "%|", "transformers",
         "peft", "huggingface")  # fmt: skip


def _env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCKGATE_", "HF_"))}
    env.update({"LOCKGATE_DATA_DIR": str(folder / "data"), "HOME": str(folder / "home")})
    return env


def _lockgate(folder: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lockgate.gateway.cli", *args], cwd=folder, env=_env(folder),
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _quiet(stderr: str, allowed: tuple[str, ...]) -> list[str]:
    """The lines of ``stderr`` that are not lockgate's own (``allowed`` prefixes)."""
    return [line for line in stderr.splitlines() if line and not line.startswith(allowed)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, str]]:
    """A folder where a job trained with checkpoints every 2 steps and an eval gate of 3
    examples; (folder, job id, worker stderr)."""
    folder = tmp_path_factory.mktemp("ft-cli")
    (folder / "home").mkdir()
    made = _lockgate(folder, "model", "init-tiny", "tiny", "--label", "production")
    assert made.returncode == 0, made.stderr
    write_jsonl(folder / "train.jsonl", chat_rows(2))
    write_jsonl(folder / "qa.jsonl", [{"question": q, "answer": a} for q, a in QA[:3]])
    (folder / "suite.yaml").write_text(yaml.safe_dump({
        "name": "tq-smoke", "dataset": "qa.jsonl", "reference": "answer",
        "target": {"model": "registry:tq@latest", "params": {"max_tokens": 8},
                   "messages": [{"role": "user", "content": "{{ question }}"}]},
        "scorers": ["exact_match"], "gates": ["exact_match >= 0.5"],
    }))  # fmt: skip
    (folder / "job.yaml").write_text(yaml.safe_dump({
        "base_model": "registry:tiny@production", "training_file": "train.jsonl",
        "output_model": "tq", "gpus": 0,
        "training": {"epochs": 2, "batch_size": 4, "checkpoint_every": 2},
        "eval": {"suite": str(folder / "suite.yaml"), "label": "production"},
    }))  # fmt: skip
    submitted = _lockgate(folder, "finetune", "submit", "job.yaml", "--json")
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads(submitted.stdout)["id"]
    worked = _lockgate(folder, "finetune", "worker", "--once", timeout=600)
    assert worked.returncode == 0, worked.stderr
    yield folder, job_id, worked.stderr


def test_the_worker_writes_nothing_of_transformers_or_peft(
    trained: tuple[Path, str, str],
) -> None:
    _, _, stderr = trained
    assert "1 job(s) handled" in stderr
    strays = _quiet(stderr, ("worker ",))
    assert strays == [], "\n".join(strays)
    assert not any(noise in stderr for noise in NOISE), stderr


def test_status_and_events_say_the_verdict_and_why(trained: tuple[Path, str, str]) -> None:
    folder, job_id, _ = trained
    as_json = json.loads(_lockgate(folder, "finetune", "status", job_id, "--json").stdout)
    assert as_json["status"] == "succeeded"
    evaluation = as_json["result"]["eval"]
    assert evaluation["verdict"] == "inconclusive" and evaluation["labelled"] is False

    status = _lockgate(folder, "finetune", "status", job_id)
    assert status.returncode == 0, status.stderr
    text = " ".join(status.stdout.split())  # the console wraps long lines
    assert "eval 'tq-smoke' on tq@1: inconclusive" in text, text
    assert "exact_match >= 0.5: inconclusive: 3 examples are too few" in text, text
    assert "at least 20 are needed" in text, text
    assert "label 'production' not moved" in text, text

    logs = _lockgate(folder, "finetune", "logs", job_id, "--json")
    events = [json.loads(line) for line in _json_lines(logs.stdout)]
    verdicts = [e for e in events if e["message"].startswith("eval 'tq-smoke'")]
    assert len(verdicts) == 1, [e["message"] for e in events]
    assert verdicts[0]["level"] == "warn"
    assert verdicts[0]["data"]["verdict"] == "inconclusive"
    assert "exact_match >= 0.5: inconclusive" in verdicts[0]["message"]
    assert any(e["message"].startswith("label 'production' not moved") for e in events)


def _json_lines(output: str) -> list[str]:
    """``--json`` prints one indented object per event: split them."""
    decoder = json.JSONDecoder()
    objects, index = [], 0
    while index < len(output):
        if output[index].isspace():
            index += 1
            continue
        obj, end = decoder.raw_decode(output, index)
        objects.append(json.dumps(obj))
        index = end
    return objects


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_gateway_serves_the_adapter_and_its_checkpoints_quietly(
    trained: tuple[Path, str, str],
) -> None:
    folder, job_id, _ = trained
    created = _lockgate(folder, "keys", "create", "--name", "reader",
                        "--scopes", "inference,registry:read", "--json")  # fmt: skip
    assert created.returncode == 0, created.stderr
    auth = {"authorization": f"Bearer {json.loads(created.stdout)['key']}"}
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "lockgate.gateway.cli", "serve", "--port", str(port)],
        cwd=folder, env=_env(folder), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.communicate()
            try:
                httpx.get(url + "/healthz", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "lockgate serve did not start"
                time.sleep(0.2)
        with httpx.Client(base_url=url + "/v1", headers=auth, timeout=120) as client:
            listed = client.get(f"/fine_tuning/jobs/{job_id}/checkpoints").json()["data"]
            steps = [c["step_number"] for c in listed]
            assert len(steps) >= 2 and steps == sorted(steps, reverse=True), listed
            messages = [{"role": "user", "content": QA[0][0]}]
            answers = {}
            for checkpoint in listed:
                model = checkpoint["fine_tuned_model_checkpoint"]
                assert model == f"ft:{job_id}:ckpt-step-{checkpoint['step_number']}"
                answer = client.post("/chat/completions", json={
                    "model": model, "messages": messages, "max_tokens": 8})  # fmt: skip
                assert answer.status_code == 200, answer.text
                answers[model] = answer.json()["choices"][0]["message"]["content"]
            final = client.post("/chat/completions", json={
                "model": "registry:tq@1", "messages": messages, "max_tokens": 8})  # fmt: skip
            assert final.status_code == 200, final.text
            # the last checkpoint is the adapter that was registered
            last = listed[0]["fine_tuned_model_checkpoint"]
            assert answers[last] == final.json()["choices"][0]["message"]["content"]
            missing = client.post("/chat/completions", json={
                "model": f"ft:{job_id}:ckpt-step-999", "messages": messages})  # fmt: skip
            assert missing.status_code == 404
            assert "no stored checkpoint at step 999" in missing.json()["error"]["message"]
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=30)
    strays = _quiet(stderr, ("INFO:",))
    assert strays == [], "\n".join(strays)
    assert not any(noise in stderr for noise in NOISE), stderr
