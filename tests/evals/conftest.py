"""Fixtures for the eval tests: the stub upstream, datasets and a CLI root like lockgate's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from lockgate.evals.cli import eval_app
from lockgate.registry import Registry, RegistrySettings
from lockgate.registry.errors import LockgateError
from tests.evals.upstream import Upstream


@pytest.fixture(scope="session")
def _upstream_server() -> Iterator[Upstream]:
    with Upstream() as server:
        yield server


@pytest.fixture
def upstream(_upstream_server: Upstream) -> Iterator[Upstream]:
    _upstream_server.state.reset()
    yield _upstream_server
    _upstream_server.state.reset()


def arithmetic_rows(n: int) -> list[dict[str, Any]]:
    return [
        {"question": f"What is {i}+{i * 7 % 11}?", "answer": str(i + i * 7 % 11)} for i in range(n)
    ]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@dataclass
class State:
    """What lockgate's root puts in the typer context (see evals.cli.EvalContext)."""

    reg: Registry

    @property
    def registry_settings(self) -> RegistrySettings:
        return self.reg.settings

    def registry(self) -> Registry:
        return self.reg


@dataclass
class CliResult:
    exit_code: int
    output: str
    error: str


def run_cli(registry: Registry, args: list[str]) -> CliResult:
    """Invoke ``lockgate eval …`` the way gateway.cli.main does (LockgateError -> exit_code)."""
    app = typer.Typer(pretty_exceptions_enable=False)

    @app.callback()
    def root(ctx: typer.Context) -> None:
        ctx.obj = State(registry)

    app.add_typer(eval_app, name="eval")
    result = CliRunner().invoke(app, ["eval", *args])
    if isinstance(result.exception, LockgateError):
        return CliResult(result.exception.exit_code, result.output, result.exception.message)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return CliResult(result.exit_code, result.output, "")


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"
