"""The LLM loop's drift stage end to end, as a user runs it (issue 12, "Must show"):

traffic through the gateway on a registry prompt → the inputs shift (longer questions on
another topic) → ``lockgate drift traffic`` reports it → a monitoring policy on the prompt
fires and re-runs its eval suite.

The gateway is real (on a loopback port, settings from the same ``lockgate.yaml`` the
commands read), the upstream is the demo's scripted OpenAI-compatible model (its token
counts follow the words sent), the client is the official ``openai`` SDK, and every
``lockgate`` command is a process of its own.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import openai
import pytest
import yaml

from tests.cli_folder import Folder

pytestmark = pytest.mark.slow

QUESTIONS = ["Where is my invoice?", "How long does a refund take?", "I forgot my password."]
LONG = (
    "I am writing on behalf of our procurement department about the enterprise agreement we "
    "signed last spring, which covers forty seats, priority support and a custom data "
    "retention clause; could you explain in detail how the renewal pricing will change if we "
    "add twelve seats in the middle of the term and move to annual invoicing?"
)


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Folder, str]]:
    """A folder whose lockgate.yaml routes ``support-bot`` to the demo model, support@1 in
    production with an eval suite, and a gateway serving it: (folder, gateway URL)."""
    from lockgate.gateway.app import create_app
    from lockgate.gateway.background import ServerThread
    from lockgate.gateway.config import load_settings
    from lockgate.gateway.demo_model import build_app, dataset_rows

    path = tmp_path_factory.mktemp("llm-loop")
    folder = Folder(path)
    with ServerThread(build_app()) as model:
        (path / "lockgate.yaml").write_text(yaml.safe_dump({
            "registry": {"data_dir": str(path / "data")},
            "gateway": {
                "routes": {"support-bot": {"deployments": [
                    {"provider": "openai", "model": "lockgate-demo-faq",
                     "api_base": model.url + "/v1"}]}},
                "call_records": {"flush_interval_s": 0.05},
            },
        }))  # fmt: skip
        (path / "support.yaml").write_text(yaml.safe_dump({
            "template": [
                {"role": "system", "content": "You are a support agent. Answer briefly."},
                {"role": "user", "content": "{{ question }}"},
            ],
            "config": {"model": "support-bot", "temperature": 0},
        }))  # fmt: skip
        pushed = folder.json("prompt", "push", "support", "--file", "support.yaml",
                                 "-m", "first")  # fmt: skip
        assert pushed["version"] == 1, pushed
        folder.json("prompt", "label", "support", "1", "production")
        data = path / "faq.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in dataset_rows()))
        (path / "suite.yaml").write_text(yaml.safe_dump({
            "name": "support-faq", "dataset": str(data), "reference": "fact",
            "target": {"model": "prompt:support@production",
                       "variables": {"question": "question"}},
            "scorers": ["contains"], "gates": ["contains >= 0.5"],
        }))  # fmt: skip
        settings = load_settings(path / "lockgate.yaml")
        with ServerThread(create_app(settings)) as gateway:
            yield folder, gateway.url


def _ask(client: openai.OpenAI, question: str) -> None:
    answer = client.chat.completions.create(
        model="prompt:support@production", messages=[],
        extra_body={"prompt": {"variables": {"question": question}}},
    )  # fmt: skip
    assert answer.choices[0].message.content


def test_a_shift_in_traffic_is_reported_and_the_policy_re_runs_the_suite(
    loop: tuple[Folder, str],
) -> None:
    folder, url = loop
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    for i in range(60):
        _ask(client, QUESTIONS[i % len(QUESTIONS)])
    time.sleep(3)  # the gap between the reference traffic and the shifted traffic
    shifted_from = time.time()
    for i in range(60):
        _ask(client, f"{LONG} (case {i})")
    time.sleep(0.5)  # the call records' exporter flushes every 50 ms
    until = datetime.now(UTC)
    # the current window holds the shifted calls only; the reference is the hour before it
    current = f"{math.ceil(until.timestamp() - shifted_from)}s"
    # the columns a shift of the inputs moves, and the error rate beside them: with every
    # column, the unchanged finish reasons (all `stop`) and the error rate outvote the two
    # token columns unless latency drifts too, which it does only now and then
    report = folder.json(
        "drift", "traffic", "--prompt", "support@production", "--current", current,
        "--reference", "1h", "--until", until.isoformat(),
        "--columns", "input_tokens,output_tokens,latency_ms,error", expect=1,
    )  # fmt: skip
    by_column = {c["column"]: c for c in report["columns"]}
    assert by_column["input_tokens"]["drifted"], report
    assert report["subject"] == "prompt:support@1", report
    tokens = by_column["input_tokens"]
    assert (tokens["n_reference"], tokens["n_current"]) == (60, 60), tokens

    # the same shift, seen by a policy that re-runs the prompt's eval suite when it fires
    # the policy's window ends when its process starts, a moment after this: 2 s of slack
    # keep the shifted calls in it, and the 3 s gap keeps the reference calls out
    window = f"{math.ceil(time.time() - shifted_from) + 2}s"
    (folder.path / "policy.yaml").write_text(yaml.safe_dump({
        "name": "support-inputs", "target": "prompt:support@production", "window": window,
        "min_samples": 30, "persistence": 1,
        "signal": {"kind": "drift", "max_share_drifted": 0.2, "reference_window": "1h"},
        "actions": [{"kind": "eval", "suite": "suite.yaml"}],
    }))  # fmt: skip
    decisions = folder.json("monitor", "run", "policy.yaml", expect=1)
    text = json.dumps(decisions)
    assert '"fired"' in text, decisions
    runs = folder.json("run", "list", "--kind", "eval")
    assert [r["name"] for r in runs] == ["support-faq"], runs
