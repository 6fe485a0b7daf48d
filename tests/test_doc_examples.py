"""The files docs/ shows are real files, shown verbatim, parsed, and run where they can be.

``docs/examples/`` holds the GitHub Actions workflow, the ``lockgate.yaml`` and the eval
suite of docs/evals.md ("In GitHub Actions"), and the suite's dataset. The markdown shows
each YAML file after a link to it; these tests check the block is the file, that every
``lockgate`` command of the workflow parses with the options it names (the CLI's own
parser), and run the workflow's steps as GitHub would (``bash -eo pipefail``) in a folder
laid out as the repository, against a fake OpenAI upstream on loopback: the OpenAI URL and
port 4000 are the only things swapped.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lockgate.gateway.background import ServerThread
from lockgate.registry import Registry, RegistrySettings

# litellm, imported by the gateway for its cost map, makes pydantic chatty
pytestmark = pytest.mark.filterwarnings("ignore:.*ReadOnly.*qualifier:UserWarning")
ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
WORKFLOW = EXAMPLES / "github-actions-evals.yml"
OPENAI_URL = "https://api.openai.com/v1"
UPSTREAM_KEY = "sk-upstream-from-the-job-secret"
SHELL_OPERATORS = frozenset({"&", "&&", "|", "||", ";", ">", ">>", ">&", "<", "(", ")"})


def _yaml_examples() -> list[Path]:
    return sorted(p for p in EXAMPLES.rglob("*") if p.suffix in (".yml", ".yaml"))


def _shown_blocks() -> dict[str, list[str]]:
    """Per example path (relative to docs/examples): the fenced blocks that follow a link
    to it in docs/*.md (on the line just before the block, a blank line between)."""
    shown: dict[str, list[str]] = {}
    pattern = re.compile(r"\]\(examples/([^)\s]+)\)[^\n]*\n\n```[a-z]*\n(.*?)```", re.S)
    for page in DOCS.glob("*.md"):
        for rel, block in pattern.findall(page.read_text(encoding="utf-8")):
            shown.setdefault(rel, []).append(block)
    return shown


def test_every_yaml_example_is_shown_verbatim() -> None:
    examples = _yaml_examples()
    assert WORKFLOW in examples
    shown = _shown_blocks()
    for path in examples:
        rel = path.relative_to(EXAMPLES).as_posix()
        blocks = shown.get(rel)
        assert blocks, f"no docs/*.md shows docs/examples/{rel} (a link, then its block)"
        for block in blocks:
            assert block == path.read_text(encoding="utf-8"), (
                f"the block after the link to examples/{rel} is not the file: copy the file "
                "into the markdown"
            )


def test_links_to_examples_name_files_that_exist() -> None:
    for page in DOCS.glob("*.md"):
        for rel in re.findall(r"\]\(examples/([^)#\s]*)\)", page.read_text(encoding="utf-8")):
            assert (EXAMPLES / rel).exists(), f"{page.name} links to missing examples/{rel}"


def test_yaml_examples_parse() -> None:
    from lockgate.evals.suite import load_suite
    from lockgate.gateway.config import LockgateSettings

    for path in _yaml_examples():
        assert isinstance(yaml.safe_load(path.read_text(encoding="utf-8")), dict), path
    LockgateSettings.model_validate(yaml.safe_load((EXAMPLES / "lockgate.yaml").read_text()))
    suite = load_suite(EXAMPLES / "evals" / "qa.yaml", environ={"LOCKGATE_EVAL_KEY": "lg-x"})
    assert suite.target.model == "prompt:qa@candidate"
    for line in (EXAMPLES / "evals" / "data" / "qa.jsonl").read_text().splitlines():
        row = json.loads(line)
        assert set(row) == {"question", "answer"}


def _steps() -> list[dict[str, Any]]:
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as True
    assert workflow.get("on", workflow.get(True)) == "pull_request"
    jobs = workflow["jobs"]
    assert list(jobs) == ["eval"]
    steps: list[dict[str, Any]] = jobs["eval"]["steps"]
    for step in steps:
        assert ("run" in step) != ("uses" in step), step
    return steps


def _commands(script: str) -> list[list[str]]:
    """The simple commands of a shell script, as words (redirections and operators cut)."""
    joined = script.replace("\\\n", " ")
    commands: list[list[str]] = []
    for line in joined.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words: list[str] = []
        skip_target = False
        for token in lexer:
            if token in SHELL_OPERATORS or token in ("{", "}"):
                if words:
                    commands.append(words)
                words = []
                skip_target = token in (">", ">>", ">&", "<")
                continue
            if skip_target:
                skip_target = False
                continue
            if token.isdigit() and not words:
                continue  # the fd of "2>&1" once split
            words.append(token)
        if words:
            commands.append(words)
    return commands


def _parse_lockgate(args: list[str]) -> Any:
    """Parse ``lockgate ARGS`` with the CLI's own parser (nothing runs); a bad command or
    option raises the parser's usage error."""
    import typer.main

    from lockgate.gateway.cli import app

    command: Any = typer.main.get_command(app)
    name, parent = "lockgate", None
    while True:
        ctx = command.make_context(name, list(args), parent=parent)
        if not hasattr(command, "resolve_command"):
            return ctx
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        name, command, args = command.resolve_command(ctx, rest)
        parent = ctx


def test_workflow_commands_are_real_lockgate_commands() -> None:
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ])  # fmt: skip
    seen: list[str] = []
    for step in _steps():
        for words in _commands(step.get("run", "")):
            if words[:2] == ["pip", "install"]:
                for requirement in words[2:]:
                    match = re.fullmatch(r"lockgate\[([a-z,]+)\]", requirement)
                    assert match, requirement
                    assert set(match.group(1).split(",")) <= extras, requirement
            if words[0] == "lockgate":
                ctx = _parse_lockgate(words[1:])
                seen.append(f"{ctx.parent.info_name} {ctx.info_name}")
    assert seen == ["lockgate serve", "eval run"]


def test_the_parser_refuses_an_option_that_does_not_exist() -> None:
    """The check above can fail: a misspelt option is an error, not ignored."""
    with pytest.raises(Exception, match="No such option: --junit-xml"):
        _parse_lockgate(["eval", "run", "suite.yaml", "--junit-xml", "x.xml"])


# --- running the workflow ------------------------------------------------------------------


@dataclass
class FakeOpenAI:
    """Answers each question of the example dataset with its reference answer."""

    answers: dict[str, str]
    seen: list[dict[str, Any]] = field(default_factory=list)

    async def chat(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.seen.append({"authorization": request.headers.get("authorization"), **body})
        question = body["messages"][-1]["content"].removeprefix("Answer in one word: ")
        message = {"role": "assistant", "content": self.answers.get(question, "?")}
        return JSONResponse({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 1,
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10},
        })  # fmt: skip


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[tuple[FakeOpenAI, str]]:
    rows = (EXAMPLES / "evals" / "data" / "qa.jsonl").read_text().splitlines()
    fake = FakeOpenAI({(r := json.loads(line))["question"]: r["answer"] for line in rows})
    app = Starlette(routes=[Route("/v1/chat/completions", fake.chat, methods=["POST"])])
    with ServerThread(app) as server:
        yield fake, server.url + "/v1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Repository:
    path: Path
    env: dict[str, str]
    port: int


@pytest.fixture
def repository(
    tmp_path: Path, sqlite_template: Path, fake_openai: tuple[FakeOpenAI, str]
) -> Iterator[Repository]:
    """A checkout laid out as docs/evals.md shows, a shared registry (SQLite here) holding
    the prompt under review and the job's inference key, and the job's environment."""
    _, upstream_url = fake_openai
    port = _free_port()
    repo = tmp_path / "repo"
    (repo / ".github" / "workflows").mkdir(parents=True)
    shutil.copy(WORKFLOW, repo / ".github" / "workflows" / "eval.yml")
    config = (EXAMPLES / "lockgate.yaml").read_text()
    assert OPENAI_URL in config
    (repo / "lockgate.yaml").write_text(config.replace(OPENAI_URL, upstream_url))
    shutil.copytree(EXAMPLES / "evals", repo / "evals")
    suite = (repo / "evals" / "qa.yaml").read_text()
    assert "127.0.0.1:4000" in suite
    (repo / "evals" / "qa.yaml").write_text(suite.replace(":4000", f":{port}"))

    shutil.copy(sqlite_template, tmp_path / "registry.db")
    database_url = f"sqlite:///{tmp_path / 'registry.db'}"
    registry = Registry(RegistrySettings(database_url=database_url, data_dir=tmp_path / "data"))
    try:
        messages = [{"role": "user", "content": "Answer in one word: {{ question }}"}]
        version, _ = registry.prompts.push("qa", messages, {"model": "gpt-4o-mini"})
        registry.labels.set("prompt", "qa", "candidate", version.version)
        eval_key = registry.keys.create("ci-evals", scopes=["inference"]).secret
    finally:
        registry.close()

    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LOCKGATE_", "XDG_", "OPENAI_"))}  # fmt: skip
    env.update({
        "HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        # the job's env, its secrets filled in
        "LOCKGATE_DATABASE_URL": database_url,
        "LOCKGATE_DATA_DIR": str(tmp_path / "data"),
        "OPENAI_API_KEY": UPSTREAM_KEY,
        "LOCKGATE_EVAL_KEY": eval_key,
    })  # fmt: skip
    yield Repository(repo, env, port)


def _step_script(step: dict[str, Any], port: int) -> str:
    script = str(step["run"])
    return script.replace("127.0.0.1:4000", f"127.0.0.1:{port}").replace(
        "--port 4000", f"--port {port}"
    )


def _run_steps(repo: Repository, env: dict[str, str]) -> list[subprocess.CompletedProcess[str]]:
    """Run the workflow's ``run`` steps (all but the install) as GitHub's bash does; stop
    at the first that fails. Whatever a step left running is stopped afterwards."""
    results: list[subprocess.CompletedProcess[str]] = []
    groups: list[int] = []
    try:
        for step in _steps():
            if "run" not in step or str(step["run"]).startswith("pip install"):
                continue
            args = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c",
                    _step_script(step, repo.port)]  # fmt: skip
            process = subprocess.Popen(
                args, cwd=repo.path, env=env, text=True, start_new_session=True,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
            groups.append(process.pid)
            out, err = process.communicate(timeout=240)
            results.append(subprocess.CompletedProcess(args, process.returncode, out, err))
            if process.returncode != 0:
                break
    finally:
        for group in groups:
            with contextlib.suppress(ProcessLookupError):  # it ended with its step
                os.killpg(group, signal.SIGTERM)
    return results


@pytest.mark.slow
def test_the_workflow_runs_against_loopback(
    repository: Repository, fake_openai: tuple[FakeOpenAI, str]
) -> None:
    fake, _ = fake_openai
    fake.seen.clear()
    started, evaluated = _run_steps(repository, repository.env)
    log = (repository.path / "gateway.log").read_text()
    assert started.returncode == 0, started.stdout + started.stderr + log
    assert f"configuration file: {repository.path.resolve() / 'lockgate.yaml'}" in started.stdout
    assert "routes: gpt-4o-mini (openai/gpt-4o-mini)" in started.stdout
    assert "WARNING" not in started.stdout, started.stdout

    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    for report in ("junit.xml", "summary.md", "report.html", "report.json"):
        assert (repository.path / report).is_file(), report
    report = json.loads((repository.path / "report.json").read_text())
    assert report["verdict"] == "pass", report.get("verdict_reason")
    # every example went through the gateway to the route's upstream, with the job's key
    assert len(fake.seen) == 20
    assert {s["authorization"] for s in fake.seen} == {f"Bearer {UPSTREAM_KEY}"}
    assert {s["model"] for s in fake.seen} == {"gpt-4o-mini"}


@pytest.mark.slow
def test_the_workflow_without_the_eval_key_stops_at_once(repository: Repository) -> None:
    """A fork's pull request gets no secrets: the suite step exits 2 naming the variable."""
    env = {k: v for k, v in repository.env.items() if k != "LOCKGATE_EVAL_KEY"}
    started, evaluated = _run_steps(repository, env)
    assert started.returncode == 0, started.stderr
    assert evaluated.returncode == 2, evaluated.stdout + evaluated.stderr
    assert "LOCKGATE_EVAL_KEY" in evaluated.stderr
