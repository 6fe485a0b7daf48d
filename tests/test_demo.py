"""`lockgate demo` runs the whole loop that exists, offline, and ends where it should."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from lockgate.registry import Registry, RegistrySettings


def test_demo_runs_the_loop(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKGATE_")}
    done = subprocess.run(
        [sys.executable, "-m", "lockgate.gateway.cli", "demo",
         "--data-dir", str(tmp_path / "demo")],
        env=env, capture_output=True, text=True, timeout=600,
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
    # LLM traffic drift: longer prompts on another topic are reported, the policy re-runs evals
    assert "$ lockgate drift traffic --model support-bot" in out
    assert "support-traffic: fired — column 'input_tokens' drifted" in out
    assert "eval: ok — suite support-faq" in out
    # the classic model: served, drift seen, retrained by the policy's job, gated, labelled
    assert "POST /v1/models/churn@production:predict x15" in out
    assert "churn-drift: fired" in out and "retrain: ok — retraining job" in out
    assert "label 'production' moved to churn@2" in out
    assert (tmp_path / "demo" / "churn" / "drift.html").is_file()
    # it ends with the UI's address and a key to sign in with, and does not keep serving
    ui = re.search(r"The UI: (http://127\.0\.0\.1:4000/ui) — sign in with the key (lg-\S+)", out)
    assert ui is not None, out[-2000:]
    assert "Serve it: lockgate demo --serve" in out
    reg = Registry(RegistrySettings(data_dir=tmp_path / "demo"), actor="check")
    try:
        drifts = {r.params["current"]: r for r in reg.runs.list("drift", limit=20)}
        assert drifts["model:churn@production:1h"].metrics["dataset_drift"] == 1
        assert drifts["model:churn@production:1h"].params["subject"] == "model:churn@1"
        traffic = [r for c, r in drifts.items() if c.startswith("calls:model=support-bot")]
        assert traffic and traffic[0].metrics["dataset_drift"] == 1
        assert reg.labels.of("model", "churn")["production"] == 2
        moves = [(m.label, m.from_version, m.to_version)
                 for m in reg.labels.history("model", "churn")]  # fmt: skip
        assert ("production", 1, 2) in moves
        assert reg.models.get("churn@2").spec["reference"] == "churn-train@2"
        [job] = reg.jobs.list("command", limit=5)
        assert job.status == "succeeded" and job.result["promoted"] is True
        fired = reg.runs.list("monitor", limit=5)
        assert {r.name for r in fired if r.tags.get("decision") == "fired"} == {
            "support-traffic", "churn-drift"}  # fmt: skip
        key = reg.keys.lookup(ui.group(2))
        assert key is not None and "registry:label" in key.scopes and "admin" not in key.scopes
    finally:
        reg.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_demo_serve_keeps_the_gateway_and_the_ui_up_until_interrupted(tmp_path: Path) -> None:
    """`lockgate demo --serve`: after the loop, the UI signs in with the printed key, the
    registry API answers with it, and the playground's model still answers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKGATE_")}
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "lockgate.gateway.cli", "demo", "--serve", "--port", str(port),
         "--data-dir", str(tmp_path / "demo")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []
    try:
        key = None
        deadline = time.monotonic() + 600
        while key is None:
            line = process.stdout.readline()
            assert line or process.poll() is None, "".join(lines[-50:])
            assert time.monotonic() < deadline, "".join(lines[-50:])
            lines.append(line)
            found = re.search(r"sign in with the key (lg-\S+)", line)
            key = found.group(1) if found else None
        url = f"http://127.0.0.1:{port}"
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "".join(lines[-50:])
            time.sleep(0.3)
        headers = {"Authorization": f"Bearer {key}"}
        prompts = httpx.get(url + "/api/v1/prompts", headers=headers, timeout=10).json()
        assert "support" in {p["name"] for p in prompts["data"]}
        answer = httpx.post(
            url + "/v1/chat/completions",
            headers=headers,
            timeout=30,
            json={"model": "support-bot", "messages": [{"role": "user", "content": "refund?"}]},
        )
        assert answer.status_code == 200, answer.text
        assert httpx.get(url + "/v1/models", timeout=10).status_code == 401  # keys now exist
        with httpx.Client(base_url=url, timeout=10, follow_redirects=True) as browser:
            form = browser.get("/ui/sign-in").text
            token = re.search(r'name="csrf" value="([^"]+)"', form)
            assert token is not None, form[:1000]
            page = browser.post("/ui/sign-in", data={"key": key, "csrf": token.group(1)},
                                headers={"Origin": url})  # fmt: skip
            assert page.status_code == 200 and "support" in page.text, page.text[:1000]
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
