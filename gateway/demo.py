"""``lockgate demo``: the whole loop that exists, on the embedded defaults, offline.

Each capability adds a step; every step prints the CLI command a user would type for it.

The demo is a sandbox: it uses only its own embedded registry and artifact store under
``--data-dir``, whatever the environment says. While it runs, the ``LOCKGATE_*`` variables
(a user's ``LOCKGATE_DATABASE_URL``, ``LOCKGATE_CONFIG``, artifact settings…) and the OTLP
endpoint are hidden from it and from what it starts, and every command it runs takes the
demo's own ``lockgate.yaml``. It wipes ``--data-dir`` first only when that folder is empty
or holds an earlier demo.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lockgate.gateway.demo_classic import classic_step, traffic_drift_step
from lockgate.registry.console import console, table, when

SUPPORT_V1 = "You are a support agent. Answer the customer's question: {{ question }}"
SUPPORT_V2 = [
    {
        "role": "system",
        "content": "You are a support agent for {{ product }}. Answer in one short sentence.",
    },
    {"role": "user", "content": "{{ question }}"},
]
CONFIG_V1 = {"model": "support-bot", "temperature": 0.2}
CONFIG_V2 = {"model": "support-bot", "temperature": 0.0, "max_tokens": 64}


@dataclass
class Demo:
    root: Path
    out: Any  # a rich console
    registry: Any  # registry.Registry
    config: Path  # the demo's lockgate.yaml
    settings: Any  # gateway.config.LockgateSettings
    model_url: str  # the stand-in model

    def say(self, title: str) -> None:
        self.out.rule(f"[bold]{title}")

    def cmd(self, line: str) -> None:
        self.out.print(f"[dim]$ lockgate {line}[/dim]", markup=True, highlight=False)


def registry_step(demo: Demo) -> None:
    reg = demo.registry
    demo.say("1. Registry: versioned prompts with labels")
    demo.cmd("prompt push support --file support.txt -m 'first prompt'")
    v1, _ = reg.prompts.push("support", SUPPORT_V1, CONFIG_V1, message="first prompt")
    demo.out.print(f"pushed support@{v1.version}; variables: {', '.join(v1.variables)}")
    demo.cmd("prompt push support --file support.yaml -m 'chat form, names the product'")
    v2, _ = reg.prompts.push(
        "support",
        SUPPORT_V2,
        CONFIG_V2,
        message="chat form, names the product",
    )
    demo.out.print(f"pushed support@{v2.version}; variables: {', '.join(v2.variables)}")
    again, created = reg.prompts.push("support", SUPPORT_V1, CONFIG_V1)
    demo.out.print(
        f"pushing v1's content again returns support@{again.version} (created={created})"
    )

    demo.cmd("prompt label support 1 production --reason 'first release'")
    reg.labels.set("prompt", "support", "production", 1, reason="first release")
    demo.cmd("prompt render support@production --var question='Where is my order?'")
    rendered = reg.prompts.render(
        reg.prompts.get("support@production"), {"question": "Where is my order?"}
    )
    demo.out.print(rendered.text, markup=False)

    demo.cmd("prompt diff support production latest")
    demo.out.print(reg.prompts.diff("support", "production", "latest"), markup=False)

    demo.cmd("prompt label support 2 production --expect 1 --reason 'chat form reviewed'")
    reg.labels.set(
        "prompt", "support", "production", 2, expect_version=1, reason="chat form reviewed"
    )
    demo.cmd("prompt label support 1 production --expect 1   # a stale writer")
    from lockgate.registry.errors import Conflict

    try:
        reg.labels.set("prompt", "support", "production", 1, expect_version=1)
    except Conflict as exc:
        demo.out.print(f"[red]error:[/red] {exc.message}", highlight=False)

    demo.cmd("prompt history support")
    moves = reg.labels.history("prompt", "support")
    demo.out.print(
        table(
            None,
            ["when", "label", "from", "to", "actor", "reason"],
            [
                [
                    when(m.created_at),
                    m.label,
                    m.from_version or "-",
                    m.to_version,
                    m.actor,
                    m.reason,
                ]
                for m in moves
            ],
        )
    )


class DemoFailed(RuntimeError):
    """A demo step did not end as the loop it shows requires."""


def _lockgate(demo: Demo, *args: str, expect: int = 0) -> None:
    """Run a real `lockgate` command in process, printing what a user would see; the demo
    stops when its exit code is not the one the loop expects."""
    from lockgate.gateway.cli import app

    demo.cmd(" ".join(args))
    code = app(["--config", str(demo.config), *args], prog_name="lockgate", standalone_mode=False)
    if int(code or 0) != expect:
        raise DemoFailed(f"`lockgate {' '.join(args)}` exited {code or 0}, expected {expect}")


def _chat(demo: Demo, client: Any, shown: str, body: dict[str, Any]) -> None:
    """POST a chat completion through the gateway and print what came back."""
    if body.get("stream"):
        with client.stream("POST", "/chat/completions", json=body) as response:
            chunks = [line for line in response.iter_lines() if line.startswith("data: {")]
        result = f"{response.status_code}: {len(chunks)} SSE chunks"
    else:
        response = client.post("/chat/completions", json=body)
        data = response.json()
        text = data["choices"][0]["message"]["content"] if response.is_success else None
        result = f"{response.status_code}: {text or data['error']['message']}"
    printable = "".join(ch if ch.isprintable() else "?" for ch in result)
    demo.out.print(f"POST /v1/chat/completions {shown} -> {printable}", markup=False)


def _call_rows(calls: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for c in reversed(calls):
        prompt = f"{c['prompt_name']}@{c['prompt_version']}" if c["prompt_name"] else "-"
        ttft = f"{c['ttft_ms']:.1f}" if c["ttft_ms"] else "-"
        tokens = f"{c['input_tokens'] or 0}/{c['output_tokens'] or 0}"
        stream = "yes" if c["stream"] else "no"
        route = c["route"] or c["model"]
        rows.append(
            [route, prompt, c["status_code"], stream, f"{c['latency_ms']:.1f}", ttft, tokens]
        )
    return rows


def gateway_step(demo: Demo) -> None:
    import httpx

    from lockgate.gateway.app import create_app
    from lockgate.gateway.background import ServerThread

    demo.say("2. Gateway: an OpenAI-compatible endpoint, traced, resolving prompts")
    demo.out.print(
        f"upstream: the demo's stand-in model at {demo.model_url} (a scripted OpenAI-compatible "
        "server; no API keys)"
    )
    demo.cmd(f"serve --config {demo.config}")
    variables = {"product": "Acme Cloud", "question": "Where is my invoice?"}
    with (
        ServerThread(create_app(demo.settings)) as gateway,
        httpx.Client(base_url=gateway.url + "/v1", timeout=30) as client,
    ):
        demo.out.print(f"gateway listening on {gateway.url}/v1")
        question = {"role": "user", "content": "How long does a refund take?"}
        _chat(demo, client, "model=support-bot", {"model": "support-bot", "messages": [question]})
        prompt = {"name": "support", "label": "production", "variables": variables}
        _chat(demo, client, "prompt=support@production", {"model": "support-bot", "prompt": prompt})
        by_model = "prompt:support@production"
        streamed = {"variables": {**variables, "question": "I forgot my password."}}
        body = {"model": by_model, "stream": True, "prompt": streamed}
        _chat(demo, client, f"model={by_model} stream=true", body)
        body = {"model": by_model, "prompt": {"variables": {"question": "hi"}}}
        _chat(demo, client, "with a variable missing", body)
    columns = ["route", "prompt", "status", "stream", "ms", "ttft ms", "tokens"]
    rows = _call_rows(demo.registry.calls.list(limit=10))
    demo.out.print(
        table("call records (one per request, written off the request path)", columns, rows)
    )


def eval_step(demo: Demo) -> None:
    import yaml

    from lockgate.gateway.demo_model import dataset_rows

    demo.say("3. Evals and gates: a regression is caught before it ships")
    data = demo.root / "support-faq.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in dataset_rows()))
    suite = demo.root / "support-faq.yaml"

    def write_suite(ref: str) -> Path:
        suite.write_text(yaml.safe_dump({
            "name": "support-faq",
            "dataset": str(data),
            "target": {"model": ref, "variables": {"product": "product", "question": "question"}},
            "reference": "fact",
            "scorers": ["contains"],
            "gates": ["contains >= 0.9", {"contains": {"regression": True, "min_effect": 0.15}}],
            "stats": {"skipped": "warn"},
        }, sort_keys=False))  # fmt: skip
        return suite

    write_suite("prompt:support@production")
    # the policy pins the suite file's content and its dataset's: another suite named
    # support-faq, or this one edited, does not satisfy it until it is pinned again
    _lockgate(demo, "prompt", "gate", "support", "production", "--suite", str(suite))
    # production's own run, the baseline the candidates are compared with: its relative gate
    # has nothing to compare with, so it is skipped; not a pass, exit 0 as the suite says
    _lockgate(demo, "eval", "run", str(suite), "--cache-dir", str(demo.root / "cache"), "-q")
    regressed, _ = demo.registry.prompts.push(
        "support",
        [{"role": "system", "content": "You are a support agent for {{ product }}. "
                                       "Talk like a pirate."},
         {"role": "user", "content": "{{ question }}"}],
        CONFIG_V2, message="more personality",
    )  # fmt: skip
    demo.out.print(
        f"pushed support@{regressed.version}: 'Talk like a pirate.' (a planted regression)"
    )
    write_suite(f"prompt:support@{regressed.version}")
    _lockgate(demo, "eval", "run", str(suite), "--baseline", "label:production",
              "--cache-dir", str(demo.root / "cache"), "--markdown", str(demo.root / "summary.md"),
              expect=1)  # fmt: skip
    _lockgate(demo, "prompt", "label", "support", str(regressed.version), "production", expect=1)
    improved, _ = demo.registry.prompts.push(
        "support",
        [{"role": "system", "content": "You are a friendly support agent for {{ product }}. "
                                       "Answer in one short sentence."},
         {"role": "user", "content": "{{ question }}"}],
        CONFIG_V2, message="friendlier, same facts",
    )  # fmt: skip
    demo.out.print(f"pushed support@{improved.version}: friendlier wording, same facts")
    write_suite(f"prompt:support@{improved.version}")
    _lockgate(demo, "eval", "run", str(suite), "--baseline", "label:production",
              "--cache-dir", str(demo.root / "cache"), "-q")  # fmt: skip
    _lockgate(demo, "prompt", "label", "support", str(improved.version), "production",
              "--reason", "support-faq passed")  # fmt: skip
    _lockgate(demo, "prompt", "history", "support", "--label", "production")


def _faq_chats() -> list[dict[str, Any]]:
    from lockgate.gateway.demo_model import FAQ, PHRASINGS

    return [
        {"messages": [{"role": "user", "content": p.format(q=question)},
                      {"role": "assistant", "content": answer}]}
        for question, answer, _ in FAQ.values()
        for p in PHRASINGS
    ]  # fmt: skip


def finetune_step(demo: Demo) -> None:
    import importlib.util

    import yaml

    demo.say("4. Fine-tuning: a LoRA adapter trained, gated by evals, labelled and served")
    if any(importlib.util.find_spec(m) is None for m in ("torch", "peft", "transformers")):
        demo.out.print(
            "skipped: install the fine-tuning stack with pip install 'lockgate[finetune]'"
        )
        return
    import warnings

    import torch
    import transformers

    from lockgate.finetune.tiny import build_tiny_llama

    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    # the demo's output is the loop, not the libraries' progress bars and deprecation notes
    transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    transformers.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message="Could not find a config file")
    chats = _faq_chats()
    corpus = [f"user\n{c['messages'][0]['content']}\nassistant\n{c['messages'][1]['content']}"
              for c in chats]  # fmt: skip
    base = build_tiny_llama(demo.root / "tiny-base", corpus)
    demo.out.print("built a tiny Llama from a config (2 layers, random weights: it knows nothing), "
                   "with a tokenizer trained on the FAQ — no downloads")  # fmt: skip
    _lockgate(demo, "model", "register", "support-base", "--flavor", "hf", "--path", str(base),
              "-m", "tiny base model")  # fmt: skip
    train = demo.root / "support-train.jsonl"
    train.write_text("".join(json.dumps(c) + "\n" for c in chats))
    suite = demo.root / "support-lm.yaml"
    suite.write_text(yaml.safe_dump({
        "name": "support-lm",
        "dataset": str(demo.root / "support-faq.jsonl"),
        "target": {"model": "registry:support-base@latest",  # the job puts in the new version
                   "messages": [{"role": "user", "content": "{{ question }}"}],
                   "params": {"max_tokens": 24, "temperature": 0}},
        "reference": "fact",
        "scorers": ["contains"],
        "gates": ["contains >= 0.9", {"contains": {"regression": True, "min_effect": 0.15}}],
    }, sort_keys=False))  # fmt: skip
    spec = demo.root / "support-lm-job.yaml"
    spec.write_text(yaml.safe_dump({
        "base_model": "registry:support-base@latest",
        "training_file": str(train),
        "output_model": "support-lm",
        "lora": {"r": 16},
        "training": {"epochs": 30, "learning_rate": 5.0e-3, "batch_size": 8, "seed": 0},
        "eval": {"suite": str(suite), "label": "production"},
    }, sort_keys=False))  # fmt: skip
    _lockgate(demo, "finetune", "submit", str(spec))
    _lockgate(demo, "finetune", "worker", "--once", "--work-dir", str(demo.root / "work"))
    job = demo.registry.jobs.list("finetune", limit=1)[0]
    if job.status != "succeeded" or not job.result.get("eval", {}).get("labelled"):
        raise DemoFailed(f"fine-tuning job {job.id} ended {job.status}: {job.error or job.result}")
    _lockgate(demo, "finetune", "status", job.id)
    outcome = job.result["eval"]
    verdict = f"{outcome['verdict']}; label moved: {outcome['labelled']}"
    shown = f"eval gate {outcome['suite']!r} on support-lm vs {outcome['baseline']}: {verdict}"
    demo.out.print(shown, markup=False)
    for gate in outcome["gates"]:
        demo.out.print(f"  {gate['verdict']:>5}  {gate['gate']}: {gate['reason']}", markup=False)
    _lockgate(demo, "model", "show", "support-lm@production")
    _serve_trained(demo)


def _serve_trained(demo: Demo) -> None:
    import httpx

    from lockgate.gateway.app import create_app
    from lockgate.gateway.background import ServerThread
    from lockgate.gateway.demo_model import FAQ

    questions = [FAQ["refund"][0], "Hello, " + FAQ["warranty"][0]]
    with (
        ServerThread(create_app(demo.settings)) as gateway,
        httpx.Client(base_url=gateway.url + "/v1", timeout=120) as client,
    ):
        demo.out.print(f"gateway at {gateway.url}/v1 serves registry models in process:")
        demo.out.print(
            "(support-base has random weights, so it answers noise; support-lm is the LoRA "
            "adapter trained on it above)"
        )
        for model in ("registry:support-base@latest", "registry:support-lm@production"):
            for question in questions:
                body = {"model": model, "max_tokens": 24,
                        "messages": [{"role": "user", "content": question}]}  # fmt: skip
                _chat(demo, client, f"model={model} {question!r}", body)


STEPS: list[Callable[[Demo], None]] = [
    registry_step,
    gateway_step,
    eval_step,
    finetune_step,
    traffic_drift_step,
    classic_step,
]


DEMO_MARKER = ".lockgate-demo"
# what could point the demo elsewhere than its --data-dir: a user's registry, artifact store,
# configuration, or tracing backend
_HIDDEN_PREFIXES = ("LOCKGATE_", "OTEL_")


@contextlib.contextmanager
def _sandboxed_environment() -> Iterator[None]:
    """Hide the user's lockgate settings from the demo (and what it starts) while it runs."""
    hidden = {k: v for k, v in os.environ.items() if k.startswith(_HIDDEN_PREFIXES)}
    for key in hidden:
        del os.environ[key]
    try:
        yield
    finally:
        for key in [k for k in os.environ if k.startswith(_HIDDEN_PREFIXES)]:
            del os.environ[key]
        os.environ.update(hidden)


def _earlier_demo(root: Path) -> bool:
    if (root / DEMO_MARKER).is_file():
        return True
    try:  # a demo folder from before the marker: its lockgate.yaml names it as the data dir
        import yaml

        config = yaml.safe_load((root / "lockgate.yaml").read_text(encoding="utf-8"))
        return bool(config["registry"]["data_dir"] == str(root))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _fresh_folder(root: Path) -> None:
    from lockgate.registry.errors import InvalidInput

    if root.exists():
        if not root.is_dir():
            raise InvalidInput(f"--data-dir {root} is a file; give a new or empty folder",
                               param="data_dir")  # fmt: skip
        if any(root.iterdir()) and not _earlier_demo(root):
            raise InvalidInput(
                f"--data-dir {root} holds files that are not an earlier demo's, and the demo "
                "wipes its folder first; give a new or empty folder",
                param="data_dir",
            )
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / DEMO_MARKER).write_text("a lockgate demo folder: `lockgate demo` may wipe it\n")


def _demo_settings(config: Path, root: Path) -> Any:
    """The demo's settings, from its own lockgate.yaml alone."""
    from lockgate.gateway.config import load_settings

    settings = load_settings(config)
    registry = settings.registry
    if (
        registry.resolved_database_url() != f"sqlite:///{root / 'registry.db'}"
        or Path(registry.resolved_artifact_url()) != root / "artifacts"
    ):  # the environment was hidden: only a bug could get here
        raise DemoFailed(
            f"the demo would use {registry.resolved_database_url()} and "
            f"{registry.resolved_artifact_url()}, not its own registry under {root}"
        )
    return settings


def run_demo(root: Path, *, serve: bool = False, port: int = 4000) -> None:
    """Run the demo in ``root`` (wiped first: it must be new, empty or an earlier demo's).

    It ends by creating a key to sign in to the UI with and printing it with the UI's
    address; with ``serve`` it then serves the gateway and the UI on ``port`` (loopback)
    until interrupted, with the demo's stand-in model still answering the playground."""
    _fresh_folder(root)
    with _sandboxed_environment():
        _run(root, serve=serve, port=port)


def _run(root: Path, *, serve: bool, port: int) -> None:
    import yaml

    from lockgate.gateway.background import ServerThread
    from lockgate.gateway.demo_model import build_app
    from lockgate.registry import Registry

    out = console()
    with ServerThread(build_app()) as model:
        config = root / "lockgate.yaml"
        config.write_text(yaml.safe_dump({
            "registry": {"data_dir": str(root)},
            "server": {"port": port},
            "gateway": {
                "routes": {"support-bot": {"deployments": [
                    {"provider": "openai", "model": "lockgate-demo-faq",
                     "api_base": model.url + "/v1"}
                ]}},
                # every :predict request is sampled, so the classic step's drift check has rows
                "predict": {"sample_rate": 1.0},
            },
        }, sort_keys=False))  # fmt: skip
        settings = _demo_settings(config, root)
        registry = Registry(settings.registry, actor="demo")
        out.print(
            f"lockgate demo — embedded registry at {settings.registry.resolved_database_url()}"
        )
        try:
            demo = Demo(root, out, registry, config, settings, model.url)
            for step in STEPS:
                step(demo)
            secret = _ui_key(demo)
        finally:
            registry.close()
        out.rule()
        url = f"http://127.0.0.1:{port}/ui"
        out.print(
            f"Explore it: lockgate --config {config} prompt show support@production\n"
            f"The UI: {url} — sign in with the key {secret}\n"
            "(the registry now has keys, so the gateway asks every caller for one)",
            markup=False, highlight=False,
        )  # fmt: skip
        if not serve:
            out.print(
                f"Serve it: lockgate demo --serve (or lockgate --config {config} serve; the "
                "stand-in model answers only while `lockgate demo --serve` runs)",
                markup=False, highlight=False,
            )  # fmt: skip
            return
        from lockgate.gateway.serve import serve as run_server

        out.print(f"serving {url} until Ctrl-C", markup=False, highlight=False)
        run_server(_demo_settings(config, root), config_path=config, host="127.0.0.1", port=port)


def _ui_key(demo: Demo) -> str:
    """A key to sign in to the UI with: it may read, write, move labels and approve (not
    admin). Made last, as it closes open mode for everything the demo started."""
    scopes = ["inference", "registry:read", "registry:write", "registry:label",
              "registry:approve"]  # fmt: skip
    made = demo.registry.keys.create("demo-ui", scopes=scopes, created_by="demo")
    secret: str = made.secret
    return secret
