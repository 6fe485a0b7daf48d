"""Every command and file the docs show is parsed by what reads it: the CLI, make, pip, the
settings models.

For README.md and every docs/*.md page but docs/cli.md (generated from ``--help``; checked
by test_docs.py), each fenced block is checked by its language:

- ``sh``, ``bash``, ``shell``, ``console`` (the lines after ``$ ``), ``crontab`` (the command
  after the five time fields), with ``\\`` continuations, ``&&``/``|``/``;`` and
  ``NAME=value`` prefixes: a ``lockgate`` command is parsed by the CLI's own click parser
  (nothing runs), so an unknown command or option, or a missing value, fails with the page
  and line; ``make TARGET`` names a Makefile target; ``pip install 'lockgate[x]'`` a real
  extra; ``python tests/….py --flag`` a repository script whose argparse defines the flag; a
  repository path a command names (``deploy/…``, ``tests/…``, ``docs/…``) exists; a
  ``LOCKGATE_*`` variable a command sets is a setting's variable (the generated reference),
  ``LOCKGATE_CONFIG``, or one that a documented ``*_env`` setting names.
- Untagged and ``text`` blocks are read as synopses: ``[optional]`` brackets and ``…`` are
  allowed, and each ``lockgate`` line must name a real command and only its real options.
- ``yaml`` (every document), ``json`` and ``toml`` blocks parse. A YAML mapping with a
  top-level lockgate section (``gateway:``, ``registry:``, …) validates against the settings
  models; an eval suite, a fine-tuning job spec, a monitor policy, a gate policy and a prompt
  file validate as the CLI reads them. Kubernetes manifests and compose files are left to
  tests/deploy. ``python`` blocks compile, and their ``lockgate`` imports exist.
- A block opts out only with ``<!-- not-tested: REASON -->`` on the line before it; the
  opt-outs are listed and capped at :data:`MAX_OPT_OUTS`.

What the pages say about the code is checked in test_doc_claims.py, and the quickstart and
tracing pages are run by test_doc_runs.py.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
import json
import os
import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.doc_blocks import (
    DOCS,
    ROOT,
    SHELL,
    SYNOPSIS,
    Block,
    Command,
    blocks,
    commands,
    pages,
    program,
    unbracket,
)
from tests.test_doc_examples import _parse_lockgate

# litellm, imported by the gateway for its cost map, makes pydantic chatty
pytestmark = pytest.mark.filterwarnings("ignore:.*ReadOnly.*qualifier:UserWarning")

MAX_OPT_OUTS = 4
# folders of the repository that a reader's own project would not have
REPO_DIRS = ("deploy/", "docs/", "tests/", ".ci/", "charts/")


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


# --- what each program must be -------------------------------------------------------------


def lockgate_problem(args: list[str], *, strict: bool) -> str | None:
    """Why ``lockgate ARGS`` is not a real command line (None: it is)."""
    if not strict:
        return _synopsis_problem(args)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            _parse_lockgate(args)
    except Exception as exc:  # the click typer carries: its usage errors and Exit
        if type(exc).__name__ == "Exit":  # --help
            return None if getattr(exc, "exit_code", 1) == 0 else f"exits {exc}"
        if not hasattr(exc, "format_message"):
            raise
        return str(exc.format_message())
    return None


def _synopsis_problem(args: list[str]) -> str | None:
    import typer.main

    from lockgate.gateway.cli import app

    command: Any = typer.main.get_command(app)  # typer's own copy of click
    path = ["lockgate"]
    rest = list(args)
    while hasattr(command, "commands") and rest:
        word = rest.pop(0)
        if word.startswith("-"):
            if word in ("-c", "--config") and rest:
                rest.pop(0)
            continue
        sub = command.get_command(None, word)  # the root imports a group when asked
        if sub is None:
            return f"no command `{' '.join(path)} {word}`"
        command, path = sub, [*path, word]
    options = {"--help"}
    for param in command.params:
        if param.param_type_name == "option":
            options.update(param.opts, param.secondary_opts)
    for word in rest:
        name = word.split("=", 1)[0]
        if name.startswith("-") and name not in ("-", "--") and name not in options:
            return f"`{' '.join(path)}` has no option {name}"
    return None


@cache
def make_targets() -> frozenset[str]:
    text = (ROOT / "Makefile").read_text()
    return frozenset(re.findall(r"^([A-Za-z0-9_.-]+):(?!=)", text, re.M))


@cache
def extras() -> frozenset[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return frozenset(project["optional-dependencies"])


def pip_problems(words: list[str]) -> list[str]:
    problems = []
    for word in words[words.index("install") + 1 :] if "install" in words else []:
        match = re.fullmatch(r"lockgate\[([\w,-]+)\]\S*", word)
        if match:
            unknown = set(match.group(1).split(",")) - extras()
            if unknown:
                problems.append(f"no extra {sorted(unknown)} in pyproject.toml")
    return problems


@cache
def argparse_flags(script: Path) -> frozenset[str]:
    """The option strings a script's argparse defines (read from its source, not run)."""
    flags = {"-h", "--help"}
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
            flags.update(
                a.value
                for a in node.args
                if isinstance(a, ast.Constant) and isinstance(a.value, str)
            )
    return frozenset(flags)


def python_problems(words: list[str]) -> list[str]:
    args = words[1:]
    if args[:3] == ["-m", "pip", "install"]:
        return pip_problems(args[2:])
    if not args or not args[0].endswith(".py") or not args[0].startswith(REPO_DIRS):
        return []  # the reader's own script (train.py), or python -c
    script = ROOT / args[0]
    if not script.is_file():
        return [f"no file {args[0]}"]
    flags = argparse_flags(script)
    unknown = [w for w in unbracket(args[1:]) if w.startswith("-") and w.split("=")[0] not in flags]
    return [f"{args[0]} defines no option {w}" for w in unknown]


def path_problems(words: list[str]) -> list[str]:
    problems = []
    for word in words:
        path = word.split("=", 1)[-1].lstrip("@").rstrip("/")
        named = path.startswith(REPO_DIRS) and not re.search(r"[*?$]", path)
        if named and not (ROOT / path).exists():
            problems.append(f"no {path} in the repository")
    return problems


@cache
def known_variables() -> frozenset[str]:
    """``LOCKGATE_*`` names a reader may set: each setting's variable, ``LOCKGATE_CONFIG``,
    and those a documented ``*_env`` setting names."""
    from lockgate.gateway.docgen import render_configuration

    names = set(re.findall(r"LOCKGATE_[A-Z0-9_]+", render_configuration())) | {"LOCKGATE_CONFIG"}
    texts = [p.read_text() for p in pages()]
    texts += [p.read_text() for p in (DOCS / "examples").rglob("*.y*ml")]
    texts += [p.read_text() for p in (ROOT / "deploy").rglob("*.y*ml")]
    for text in texts:
        names.update(re.findall(r"\w*_env:\s*[\"']?(LOCKGATE_[A-Z0-9_]+)", text))
    return frozenset(names)


def command_problems(command: Command, *, strict: bool) -> list[str]:
    words, name = command.words, program(command.words)
    problems: list[str] = []
    if name == "lockgate":
        problem = lockgate_problem(unbracket(words[1:]), strict=strict)
        problems += [problem] if problem else []
    elif name == "make":
        targets = [t for t in words[1:] if not t.startswith("-") and "=" not in t]
        problems += [f"no make target {t}" for t in targets if t not in make_targets()]
    elif name in ("pip", "pip3"):
        problems += pip_problems(words)
    elif name.startswith("python"):
        problems += python_problems(words)
    problems += path_problems(words)
    for word in command.assigned:
        variable = word.split("=", 1)[0]
        if variable.startswith("LOCKGATE_") and variable not in known_variables():
            problems.append(f"{variable} is no setting's variable (docs/configuration.md)")
    return [f"{command.where}: {p}: {' '.join(words)}" for p in problems]


@pytest.mark.parametrize("page", pages(), ids=_ids(pages()))
def test_every_command_is_a_real_command(page: Path) -> None:
    problems = []
    for block in blocks(page):
        if block.opt_out is None and (block.lang in SHELL or block.lang in SYNOPSIS):
            for command in commands(block):
                problems += command_problems(command, strict=block.lang in SHELL)
    assert not problems, "\n".join(problems)


# --- data and code blocks -----------------------------------------------------------------


class _AnyEnviron(dict[str, str]):
    """An environment in which every variable is set (a suite's api_key_env)."""

    def __missing__(self, key: str) -> str:
        return "x"

    def get(self, key: str, default: Any = None) -> str:
        return "x"


@cache
def _sections() -> frozenset[str]:
    from lockgate.gateway.config import LockgateSettings

    return frozenset(LockgateSettings.model_fields)


def _validate_document(doc: Any, folder: Path) -> None:
    """Validate a YAML mapping as the kind of file its keys say it is."""
    if not isinstance(doc, dict) or {"apiVersion", "kind", "services", "jobs"} & set(doc):
        return  # not lockgate's (Kubernetes, compose, a GitHub workflow): tests/deploy
    keys = set(doc)
    if keys & _sections():
        from lockgate.gateway.config import LockgateSettings

        LockgateSettings.model_validate(doc)
    elif {"dataset", "target", "scorers"} <= keys:
        from lockgate.evals.suite import parse_suite

        parse_suite(doc, base_dir=folder, environ=_AnyEnviron())
    elif "base_model" in keys:
        from lockgate.finetune.spec import parse_spec

        parse_spec(doc)
    elif {"signal", "actions"} <= keys:
        from lockgate.gateway.monitor.policy import parse_policy

        parse_policy(doc)
    elif keys <= {"suites", "drift", "service"} and keys & {"drift", "service"}:
        from lockgate.registry.gate_limits import parse_limits

        parse_limits({k: v for k, v in doc.items() if k != "suites"})
    elif keys <= {"messages", "template", "config"} and keys & {"messages", "template"}:
        from lockgate.registry.prompts import load_prompt_file

        (folder / "prompt.yaml").write_text(yaml.safe_dump(doc))
        load_prompt_file(folder / "prompt.yaml")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No LOCKGATE_* variable and no ./lockgate.yaml: a block is read as it is."""
    for name in list(os.environ):
        if name.startswith(("LOCKGATE_", "OTEL_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("page", pages(), ids=_ids(pages()))
def test_every_file_shown_parses(page: Path, clean_env: Path) -> None:
    problems = []
    for block in blocks(page):
        if block.opt_out is not None:
            continue
        try:
            if block.lang == "yaml":
                for doc in yaml.safe_load_all(block.text):
                    _validate_document(doc, clean_env)
            elif block.lang == "json":
                json.loads(block.text)
            elif block.lang == "toml":
                tomllib.loads(block.text)
            elif block.lang == "python":
                _check_python(block)
        except Exception as exc:
            problems.append(f"{block.where} ({block.lang}): {type(exc).__name__}: {exc}")
    assert not problems, "\n\n".join(problems)


def _check_python(block: Block) -> None:
    """The block compiles and what it imports from lockgate exists."""
    tree = ast.parse(block.text, block.where)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lockgate"):
            module = importlib.import_module(str(node.module))
            missing = [a.name for a in node.names if not hasattr(module, a.name)]
            assert not missing, f"{node.module} has no {missing}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("lockgate"):
                    importlib.import_module(alias.name)


def test_opt_outs_are_rare_and_say_why() -> None:
    opted = [(b.where, b.opt_out) for p in pages() for b in blocks(p) if b.opt_out is not None]
    print("\n".join(f"not tested: {where}: {why}" for where, why in opted) or "no opt-outs")
    assert all(why for _, why in opted), "a <!-- not-tested: … --> needs a reason"
    assert len(opted) <= MAX_OPT_OUTS, f"{len(opted)} blocks opt out of the checks: {opted}"


def test_the_checks_find_what_is_wrong(clean_env: Path) -> None:
    """Each check can fail: a misspelt command or option, a target, an extra, a path, a
    variable, a configuration key."""
    page = DOCS / "quickstart.md"

    def problems(text: str, lang: str = "sh") -> list[str]:
        block = Block(page, 1, lang, text, None, None)
        return [p for c in commands(block) for p in command_problems(c, strict=lang in SHELL)]

    assert problems("lockgate prompt push support --file support.yaml -m 'first'\n") == []
    assert "No such option: --flie" in problems("lockgate prompt push x --flie x.yaml\n")[0]
    assert "No such command 'pussh'" in problems("$ lockgate prompt pussh x\nout\n", "console")[0]
    assert problems("X=1 lockgate serve \\\n  --prot 1\n")  # after a prefix, continued
    assert problems("cd /srv && lockgate keys create\n")  # --name is required
    assert problems("lockgate keys list  # comment --bad\n") == []
    assert (
        problems("lockgate --help && lockgate drift check --reference m:c@p#ref --current x\n")
        == []
    )
    assert problems("lockgate serve --workers two\n")  # not an integer
    assert problems("lockgate prompt gate support production [--suitez F]\n", "")
    assert problems("make demo tests\n") == [
        "docs/quickstart.md:2: no make target tests: make demo tests"
    ]
    assert problems("pip install 'lockgate[postgress]'\n")
    assert problems(".venv/bin/python tests/benchmarks/cli_startup.py --nn 3\n")
    assert problems("python tests/benchmarks/nothing.py\n")
    assert problems("docker compose -f deploy/compose.yml up\n")
    assert problems("export LOCKGATE_REDIS_URL=redis://x\n")
    assert problems("0 * * * * lockgate monitor runn x.yaml\n", "crontab")
    with pytest.raises(Exception, match="routez"):
        _validate_document({"gateway": {"routez": {}}}, clean_env)
    with pytest.raises(Exception, match="epochz"):
        _validate_document({"base_model": "tiny@1", "training": {"epochz": 1}}, clean_env)
    marked = clean_env / "page.md"
    marked.write_text("<!-- not-tested: a reason -->\n```sh\nlockgate nothing\n```\n")
    assert [b.opt_out for b in blocks(marked)] == ["a reason"]
