"""``lockgate serve`` with a route through litellm: litellm is imported and warmed in the
background at start-up, ``/readyz`` says so until it is done, and the gateway's log carries
none of the pydantic notes litellm's types cause."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import httpx
import pytest

from lockgate.gateway._litellm import silence_readonly_notes
from tests.gateway.upstream import Upstream

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _readiness(url: str, proc: subprocess.Popen[bytes], log: Path) -> list[dict[str, str]]:
    """Every /readyz answer until the first 200 (connection refusals left out)."""
    answers: list[dict[str, str]] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"gateway exited: {log.read_text()[-2000:]}"
        try:
            response = httpx.get(url + "/readyz", timeout=5)
        except httpx.HTTPError:
            time.sleep(0.01)
            continue
        answers.append(response.json())
        if response.status_code == 200:
            return answers
        time.sleep(0.05)
    raise AssertionError(f"gateway not ready: {answers[-3:]} {log.read_text()[-2000:]}")


@pytest.mark.slow
def test_serve_warms_litellm_before_ready_and_logs_no_pydantic_notes(
    upstream: Upstream, tmp_path: Path
) -> None:
    config = tmp_path / "lockgate.yaml"
    config.write_text(
        "gateway:\n  routes:\n    via-litellm:\n      deployments:\n"
        "        - {provider: openai, via: litellm, model: openai/stub-model, "
        f"api_base: '{upstream.url}/v1', api_key: sk-test}}\n"  # type: ignore[attr-defined]
    )
    port, log = _free_port(), tmp_path / "serve.log"
    env = {**os.environ, "LOCKGATE_DATA_DIR": str(tmp_path / "data")}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lockgate.gateway.cli", "serve", "-c", str(config),
             "--port", str(port)],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        answers = _readiness(url, proc, log)
        # litellm takes seconds to load: the first answers say what is still loading
        assert answers[0] == {"status": "unavailable", "reason": "warming up: litellm"}
        assert answers[-1] == {"status": "ready"}
        body = {"model": "via-litellm", "messages": [{"role": "user", "content": "hi"}]}
        answer = httpx.post(url + "/v1/chat/completions", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"]
        sent = upstream.requests[-1]
        assert sent["path"] == "/v1/chat/completions" and sent["body"]["model"] == "stub-model"
    finally:
        proc.terminate()
        proc.wait(30)
    text = log.read_text(errors="replace")
    assert "Application startup complete" in text
    assert "ReadOnly" not in text and "UserWarning" not in text, text


def test_only_pydantic_readonly_notes_are_silenced() -> None:
    note = "Item 'a' on TypedDict class 'X' is using the `ReadOnly` qualifier. Pydantic will not"
    pydantic_module = "pydantic._internal._generate_schema"
    plural = note.replace("Item 'a'", "Items 'a', 'b'").replace(" is ", " are ")
    where = "_generate_schema.py"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_readonly_notes()
        warnings.warn_explicit(note, UserWarning, where, 1, module=pydantic_module)
        warnings.warn_explicit(plural, UserWarning, where, 2, module=pydantic_module)
        warnings.warn_explicit(note, UserWarning, "ours.py", 1, module="lockgate.gateway.ours")
        warnings.warn_explicit("another note", UserWarning, where, 3, module=pydantic_module)
    assert [str(w.message) for w in caught] == [note, "another note"]
