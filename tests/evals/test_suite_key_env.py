"""A suite takes its key from the environment (issue 11, item 16): ``target.api_key_env``.

Through the real ``lockgate eval run`` (a subprocess) against a real gateway on loopback whose
registry holds a key, so every call needs one, in front of the stub upstream. A named but
unset variable is exit 2 naming it, before any call; a literal ``target.api_key`` still works;
the two together are refused.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from lockgate.gateway.app import create_app
from lockgate.gateway.background import ServerThread
from lockgate.gateway.config import LockgateSettings
from lockgate.gateway.settings import GatewaySettings
from lockgate.registry import Registry, RegistrySettings
from tests.evals.conftest import arithmetic_rows, write_jsonl
from tests.evals.test_end_to_end import GOOD
from tests.evals.upstream import Upstream

KEY_VAR = "LOCKGATE_TEST_EVAL_KEY"


@dataclass
class KeyedGateway:
    url: str
    secret: str
    data_dir: Path


@pytest.fixture
def gateway(upstream: Upstream, tmp_path: Path, sqlite_template: Path) -> Iterator[KeyedGateway]:
    """A gateway on loopback with a route ``stub`` to the stub upstream; its registry holds
    an inference key, so a call without it is refused (401)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copy(sqlite_template, data_dir / "registry.db")
    registry_settings = RegistrySettings(data_dir=data_dir)
    registry = Registry(registry_settings)
    secret = registry.keys.create("ci", scopes=["inference"]).secret
    registry.close()
    route = {"deployments": [{"provider": "openai", "model": "stub",
                              "api_base": upstream.base_url}]}  # fmt: skip
    settings = LockgateSettings(
        registry=registry_settings,
        gateway=GatewaySettings.model_validate({"routes": {"stub": route}}),
    )
    with ServerThread(create_app(settings)) as server:
        yield KeyedGateway(server.url, secret, data_dir)


def _suite(tmp: Path, gateway: KeyedGateway, **target: Any) -> Path:
    path = tmp / "suite.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "arith-key",
                "dataset": "data.jsonl",
                "target": {
                    "base_url": gateway.url + "/v1",
                    "model": "stub",
                    "messages": GOOD,
                    **target,
                },
                "reference": "answer",
                "scorers": ["exact_match"],
                "retries": 0,
                "gates": ["exact_match >= 0.9"],
            }
        )
    )
    return path


def _eval_run(
    tmp: Path, gateway: KeyedGateway, suite: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LOCKGATE_")}
    environ.update({"LOCKGATE_DATA_DIR": str(gateway.data_dir), "COLUMNS": "200", **env})
    return subprocess.run(
        [sys.executable, "-m", "lockgate.gateway.cli", "eval", "run", str(suite),
         "--cache-dir", str(tmp / "cache"), "--no-cache", "--json-out", str(tmp / "report.json")],
        cwd=tmp, env=environ, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def test_the_key_comes_from_the_variable_the_suite_names(
    gateway: KeyedGateway, upstream: Upstream, tmp_path: Path
) -> None:
    write_jsonl(tmp_path / "data.jsonl", arithmetic_rows(20))
    suite = _suite(tmp_path, gateway, api_key_env=KEY_VAR)

    # named but unset: exit 2 naming the variable, and not one call made
    unset = _eval_run(tmp_path, gateway, suite)
    assert unset.returncode == 2, unset.stdout + unset.stderr
    assert "target.api_key_env" in unset.stderr and KEY_VAR in unset.stderr, unset.stderr
    assert upstream.state.chat_calls == 0
    # empty counts as unset
    empty = _eval_run(tmp_path, gateway, suite, **{KEY_VAR: ""})
    assert empty.returncode == 2 and KEY_VAR in empty.stderr, empty.stderr
    assert upstream.state.chat_calls == 0

    # set: every call carries it through the gateway, and the run passes
    ok = _eval_run(tmp_path, gateway, suite, **{KEY_VAR: gateway.secret})
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert upstream.state.chat_calls == 20
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["verdict"] == "pass" and report["errors"] == 0
    assert gateway.secret not in (tmp_path / "report.json").read_text()

    # the gateway does require the key: without one the calls are refused
    keyless = _eval_run(tmp_path, gateway, _suite(tmp_path, gateway))
    assert keyless.returncode == 2 and "401" in keyless.stderr, keyless.stderr


def test_a_literal_key_still_works_but_not_beside_a_variable(
    gateway: KeyedGateway, upstream: Upstream, tmp_path: Path
) -> None:
    write_jsonl(tmp_path / "data.jsonl", arithmetic_rows(20))
    literal = _eval_run(tmp_path, gateway, _suite(tmp_path, gateway, api_key=gateway.secret))
    assert literal.returncode == 0, literal.stdout + literal.stderr
    assert upstream.state.chat_calls == 20

    both = _suite(tmp_path, gateway, api_key=gateway.secret, api_key_env=KEY_VAR)
    refused = _eval_run(tmp_path, gateway, both, **{KEY_VAR: gateway.secret})
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "target: give api_key_env (preferred) or api_key, not both" in refused.stderr
    assert upstream.state.chat_calls == 20
