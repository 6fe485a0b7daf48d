"""The registry CLI: human and --json output, exit codes, nothing half-written on errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lockgate.registry import Registry, RegistrySettings

LOCKGATE = [sys.executable, "-m", "lockgate.gateway.cli"]


@pytest.fixture
def prompt_files(tmp_path: Path) -> tuple[Path, Path]:
    text = tmp_path / "v1.txt"
    text.write_text("Answer the question: {{ question }}\n")
    chat = tmp_path / "v2.yaml"
    chat.write_text(
        "messages:\n"
        "  - role: system\n    content: Answer in one word.\n"
        "  - role: user\n    content: '{{ question }}'\n"
        "config:\n  model: gpt-4o-mini\n  temperature: 0\n"
    )
    return text, chat


def test_prompt_workflow(cli, prompt_files, registry_settings: RegistrySettings) -> None:  # type: ignore[no-untyped-def]
    text, chat = prompt_files
    code, out, _ = cli("prompt", "push", "qa", "--file", str(text), "-m", "first")
    assert code == 0 and "pushed qa@1" in out and "variables: question" in out
    code, out, _ = cli("prompt", "push", "qa", "--file", str(chat), "-m", "chat", "--json")
    pushed = json.loads(out)
    assert (code, pushed["version"], pushed["created"], pushed["kind"]) == (0, 2, True, "chat")
    code, out, _ = cli("prompt", "push", "qa", "--file", str(chat), "--json")
    assert json.loads(out)["created"] is False

    assert cli("prompt", "label", "qa", "1", "production", "--reason", "ship")[0] == 0
    code, out, _ = cli("prompt", "render", "qa@production", "--var", "question=2+2?")
    assert (code, out.strip()) == (0, "Answer the question: 2+2?")
    code, out, _ = cli("prompt", "render", "qa@2", "--var", "question=hi", "--json")
    assert json.loads(out)["messages"][1] == {"role": "user", "content": "hi"}

    code, out, _ = cli("prompt", "diff", "qa", "production", "latest")
    assert code == 0 and "--- qa@1" in out and "+- role: system" in out

    code, out, _ = cli("prompt", "list", "--json")
    assert json.loads(out)[0]["labels"] == {"latest": 2, "production": 1}
    code, out, _ = cli("prompt", "show", "qa@production")
    assert code == 0 and "qa@1" in out and "production" in out

    assert cli("prompt", "label", "qa", "2", "production", "--expect", "1")[0] == 0
    code, out, err = cli("prompt", "label", "qa", "1", "production", "--expect", "1")
    assert code == 2 and "points to version 2, expected version 1" in err
    code, out, _ = cli("prompt", "history", "qa", "--label", "production", "--json")
    assert [(m["from_version"], m["to_version"]) for m in json.loads(out)] == [(None, 1), (1, 2)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["prompt", "show", "nope"], "no prompt named 'nope'"),
        (["prompt", "render", "qa@production", "--var", "question=x"], "no label 'production'"),
        (["prompt", "render", "qa@1"], "missing variable(s): question"),
        (
            ["prompt", "render", "qa@1", "--var", "question=x", "--var", "tone=y"],
            "unknown variable(s): tone",
        ),
        (["prompt", "render", "qa@1", "--var", "question"], "is not KEY=VALUE"),
        (["prompt", "label", "qa", "5", "production"], "has no version 5"),
    ],
)
def test_bad_input_exits_2_with_the_reason(cli, prompt_files, args, message) -> None:  # type: ignore[no-untyped-def]
    cli("prompt", "push", "qa", "--file", str(prompt_files[0]))
    code, _, err = cli(*args)
    assert code == 2
    assert message in err


def test_bad_template_is_rejected_and_nothing_written(
    cli, tmp_path: Path, registry_settings
) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.txt"
    bad.write_text("hello\n{% if x %}never closed\n")
    code, _, err = cli("prompt", "push", "broken", "--file", str(bad))
    assert code == 2 and "template does not parse" in err
    assert cli("prompt", "list", "--json")[1].strip() == "[]"


def test_malformed_dataset_and_corrupted_artifact(cli, tmp_path: Path, registry_settings) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "rows.jsonl"
    bad.write_text('{"q": 1}\n{"q": \n')
    code, _, err = cli("dataset", "add", "rows", str(bad))
    assert code == 2 and "rows.jsonl, line 2: not valid JSON" in err
    assert cli("dataset", "list", "--json")[1].strip() == "[]"

    good = tmp_path / "good.jsonl"
    good.write_text('{"q": 1}\n')
    code, out, _ = cli("dataset", "add", "rows", str(good), "--json")
    digest = json.loads(out)["digest"]
    blob = next((registry_settings.data_dir / "artifacts").rglob(digest.split(":")[1]))
    blob.write_text('{"q": 2}\n')
    code, _, err = cli("dataset", "download", "rows", str(tmp_path / "out"))
    assert code == 2 and f"artifact {digest} is corrupted" in err
    assert not (tmp_path / "out" / "good.jsonl").exists()


def test_model_register_show_download(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = cli(
        "model",
        "register",
        "chat",
        "--flavor",
        "upstream",
        "--model",
        "openai/gpt-4o-mini",
        "--param",
        "temperature=0.2",
        "--json",
    )
    assert code == 0 and json.loads(out)["spec"] == {
        "model": "openai/gpt-4o-mini",
        "params": {"temperature": 0.2},
    }
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text("{}")
    assert cli("model", "register", "tiny", "--flavor", "hf", "--path", str(d))[0] == 0
    assert cli("model", "label", "tiny", "1", "staging")[0] == 0
    code, out, _ = cli("model", "download", "tiny@staging", str(tmp_path / "dl"))
    assert code == 0 and (tmp_path / "dl" / "config.json").read_text() == "{}"
    code, _, err = cli("model", "register", "x", "--flavor", "upstream")
    assert code == 2 and "needs model in its spec" in err
    code, out, _ = cli("model", "history", "tiny", "--json")
    assert [m["label"] for m in json.loads(out)] == ["latest", "staging"]


def _env(settings: RegistrySettings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKGATE_")}
    env["LOCKGATE_DATA_DIR"] = str(settings.data_dir)
    if settings.database_url:
        env["LOCKGATE_DATABASE_URL"] = settings.database_url
    return env


def test_concurrent_label_moves_through_the_cli(
    registry: Registry, registry_settings: RegistrySettings
) -> None:
    """Two `lockgate prompt label … --expect 1` processes at once: one wins, one conflicts."""
    registry.prompts.push("qa", "a {{ q }}")
    registry.prompts.push("qa", "b {{ q }}")
    registry.prompts.push("qa", "c {{ q }}")
    registry.labels.set("prompt", "qa", "production", 1)
    env = _env(registry_settings)
    procs = [
        subprocess.Popen(
            [*LOCKGATE, "prompt", "label", "qa", str(v), "production", "--expect", "1"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for v in (2, 3)
    ]
    results = [(p.wait(timeout=60), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert "expected version 1: someone moved it" in loser
    assert len(registry.labels.history("prompt", "qa", "production")) == 2


def test_json_errors_and_exit_code_from_the_real_entry_point(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKGATE_")}
    env["LOCKGATE_DATA_DIR"] = str(tmp_path)
    proc = subprocess.run(
        [*LOCKGATE, "prompt", "show", "ghost"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: no prompt named 'ghost'"
    assert "Traceback" not in proc.stderr


def test_keys_create_list_revoke(cli) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = cli(
        "keys", "create", "--name", "ci", "--models", "gpt-4o-mini,claude", "--rpm", "60",
        "--budget-usd", "2.5", "--expires", "30d", "--json",
    )  # fmt: skip
    created = json.loads(out)
    assert code == 0 and created["key"].startswith("lg-") and created["models"] == [
        "claude", "gpt-4o-mini"
    ]  # fmt: skip
    code, out, _ = cli("keys", "list")
    assert code == 0 and "rpm=60" in out and "active" in out and created["key"] not in out
    code, out, _ = cli("keys", "list", "--json")
    assert created["prefix"] in out and created["key"] not in out
    code, out, _ = cli("keys", "revoke", created["id"])
    assert code == 0
    code, out, _ = cli("keys", "list", "--json")
    assert json.loads(out)[0]["revoked_at"] is not None
    code, _, err = cli("keys", "create", "--name", "x", "--scopes", "root")
    assert code == 2 and "unknown scope(s) root" in err


def test_gate_policy_through_the_cli(cli, prompt_files, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cli("prompt", "push", "qa", "--file", str(prompt_files[0]))
    (tmp_path / "qa.jsonl").write_text('{"question": "1+1", "answer": "2"}\n')
    suite = tmp_path / "qa-accuracy.yaml"
    suite.write_text("name: qa-accuracy\ndataset: qa.jsonl\ngates: ['exact_match >= 0.9']\n")
    code, _, err = cli("prompt", "gate", "qa", "production", "--suite", "qa-accuracy")
    assert code == 2 and "cannot read the suite file" in err  # a suite is pinned by its file
    code, out, _ = cli("prompt", "gate", "qa", "production", "--suite", str(suite))
    assert code == 0 and "suite qa-accuracy (sha256:" in out
    code, _, err = cli("prompt", "label", "qa", "1", "production")
    assert code == 1 and "refused by its gate policy" in err and "no eval run" in err
    code, _, _ = cli("prompt", "label", "qa", "1", "production", "--force", "--reason", "bootstrap")
    assert code == 0
    code, out, _ = cli("prompt", "history", "qa", "--label", "production", "--json")
    assert json.loads(out)[0]["forced"] is True
