"""Which configuration ``lockgate serve`` reads, and what it says at start-up (issue 11,
items 17 and 18).

Without ``--config`` (and without ``$LOCKGATE_CONFIG``) every command reads ``./lockgate.yaml``
when there is one; ``serve`` says which file it loaded (or that it runs on the built-in
defaults), which routes it serves, and warns, one line per route and variable, when a
deployment's ``api_key_env`` names an unset variable. The real CLI in a subprocess, in a
folder of its own; the official ``openai`` SDK calls the route through it to a loopback
upstream.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.gateway.upstream import Upstream

UNSET_VAR = "LOCKGATE_TEST_SERVE_UNSET_KEY"
SET_VAR = "LG_TEST_SERVE_SET_KEY"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKGATE_")}
    env.pop(UNSET_VAR, None)
    env.update(extra)
    return env


def _lockgate(cwd: Path, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "lockgate.gateway.cli", *args],
        cwd=cwd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


class Served:
    """``lockgate serve`` started in ``cwd``; :meth:`stop` returns what it wrote on stderr."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = _lockgate(cwd, "serve", "--port", str(self.port), env=env)
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                out, err = self.process.communicate()
                pytest.fail(f"lockgate serve exited {self.process.returncode}: {out}{err}")
            try:
                httpx.get(self.url + "/healthz", timeout=1).raise_for_status()
                return
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "lockgate serve did not start"
                time.sleep(0.2)

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        _, err = self.process.communicate(timeout=30)
        return err


@pytest.fixture
def folder(tmp_path: Path, sqlite_template: Path) -> Iterator[Path]:
    """A working folder with a migrated registry under ``data/``."""
    (tmp_path / "data").mkdir()
    shutil.copy(sqlite_template, tmp_path / "data" / "registry.db")
    yield tmp_path


def _write_config(path: Path, upstream: Upstream, data_dir: Path) -> None:
    v1 = upstream.url + "/v1"  # type: ignore[attr-defined]
    routes: dict[str, Any] = {
        "from-yaml": {"deployments": [
            {"provider": "openai", "model": "stub-model", "api_base": v1,
             "api_key_env": SET_VAR}]},
        "keyless": {"deployments": [
            {"provider": "openai", "model": "other-model", "api_base": v1,
             "api_key_env": UNSET_VAR},
            {"provider": "openai", "model": "third-model", "api_base": v1,
             "api_key_env": UNSET_VAR}]},
    }  # fmt: skip
    config = {"registry": {"data_dir": str(data_dir)}, "gateway": {"routes": routes}}
    path.write_text(yaml.safe_dump(config))


def test_serve_reads_lockgate_yaml_from_the_working_folder(
    folder: Path, upstream: Upstream
) -> None:
    _write_config(folder / "lockgate.yaml", upstream, folder / "data")
    served = Served(folder, _environment(**{SET_VAR: "sk-upstream-set-0123456789"}))
    try:
        client = openai.OpenAI(base_url=served.url + "/v1", api_key="unused", max_retries=0)
        models = {m.id for m in client.models.list()}
        assert {"from-yaml", "keyless"} <= models
        answer = client.chat.completions.create(
            model="from-yaml", messages=[{"role": "user", "content": "hi"}]
        )
        assert answer.choices[0].message.content == "Hello world"
        # the route's key came from the environment and went to its upstream
        assert upstream.requests[-1]["headers"]["authorization"] == (
            "Bearer sk-upstream-set-0123456789"
        )
        # an unset key is a warning, not an error: the route is still served (keyless)
        client.chat.completions.create(
            model="keyless", messages=[{"role": "user", "content": "hi"}]
        )
        assert "authorization" not in upstream.requests[-1]["headers"]
    finally:
        err = served.stop()
    lines = err.splitlines()
    assert f"INFO:     configuration file: {folder.resolve() / 'lockgate.yaml'}" in lines, err
    routes = [line for line in lines if "routes:" in line]
    assert routes == [
        "INFO:     routes: from-yaml (openai/stub-model), "
        "keyless (openai/other-model, openai/third-model)"
    ], err
    warnings = [line for line in lines if line.startswith("WARNING:")]
    assert len(warnings) == 1, err  # one line per route and variable, none for the set one
    assert "route 'keyless'" in warnings[0] and UNSET_VAR in warnings[0], err
    assert SET_VAR not in err


def test_serve_without_a_file_says_it_runs_on_the_defaults(folder: Path) -> None:
    env = _environment(LOCKGATE_DATA_DIR=str(folder / "data"))
    served = Served(folder, env)
    try:
        models = httpx.get(served.url + "/v1/models").json()["data"]
        assert models == []
    finally:
        err = served.stop()
    lines = err.splitlines()
    assert "INFO:     no configuration file: built-in defaults" in lines, err
    assert "INFO:     routes: none configured (registry: and prompt: models only)" in lines, err
    assert not [line for line in lines if line.startswith("WARNING:")], err


def test_every_command_reads_lockgate_yaml_and_explicit_paths_win(folder: Path) -> None:
    """``./lockgate.yaml`` is read by the one settings loader, so every command sees it;
    ``$LOCKGATE_CONFIG`` and ``--config`` name another file and win over it."""
    (folder / "lockgate.yaml").write_text(yaml.safe_dump({"registry": {"data_dir": "here"}}))
    (folder / "other.yaml").write_text(yaml.safe_dump({"registry": {"data_dir": "there"}}))
    (folder / "third.yaml").write_text(yaml.safe_dump({"registry": {"data_dir": "third"}}))
    env = _environment()

    def prompt_list(*args: str, **extra: str) -> None:
        process = _lockgate(folder, *args, "prompt", "list", "--json", env={**env, **extra})
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, out + err

    prompt_list()
    assert (folder / "here" / "registry.db").is_file()
    prompt_list(LOCKGATE_CONFIG=str(folder / "other.yaml"))
    assert (folder / "there" / "registry.db").is_file()
    prompt_list("--config", "third.yaml", LOCKGATE_CONFIG=str(folder / "other.yaml"))
    assert (folder / "third" / "registry.db").is_file()
