"""`lockgate demo` uses only its own embedded registry and artifact store, whatever the
environment says: a user's registry named by ``LOCKGATE_DATABASE_URL`` (SQLite or
PostgreSQL), ``LOCKGATE_ARTIFACT_URL``, ``LOCKGATE_DATA_DIR`` and ``LOCKGATE_CONFIG`` is left
exactly as it was."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from lockgate.registry import Registry, RegistrySettings


def _snapshot(reg: Registry, artifacts: Path) -> dict[str, Any]:
    return {
        "prompts": [(s.name, s.latest_version, s.labels) for s in reg.prompts.list()],
        "support": [(v.version, v.template) for v in reg.prompts.versions("support")],
        "history": [
            (m.label, m.to_version, m.actor) for m in reg.labels.history("prompt", "support")
        ],
        "gates": reg.gates.policies("prompt", "support"),
        "models": [(s.name, s.latest_version) for s in reg.models.list()],
        "runs": [r.id for r in reg.runs.list(limit=1000)],
        "jobs": [j.id for j in reg.jobs.list(limit=1000)],
        "artifacts": sorted(str(p.relative_to(artifacts)) for p in artifacts.rglob("*")),
    }


def test_the_demo_leaves_the_users_registry_alone(
    registry_settings: RegistrySettings, tmp_path: Path
) -> None:
    user = tmp_path / "user"
    user.mkdir()
    artifacts = user / "artifacts"
    database_url = registry_settings.database_url or f"sqlite:///{tmp_path / 'registry.db'}"
    settings = RegistrySettings(
        data_dir=user, database_url=database_url, artifact_url=str(artifacts)
    )
    reg = Registry(settings, actor="user")
    try:
        reg.prompts.push("support", "The user's own support prompt: {{ question }}")
        reg.labels.set("prompt", "support", "production", 1, reason="the user's release")
        before = _snapshot(reg, artifacts)
    finally:
        reg.close()
    config = user / "lockgate.yaml"
    config.write_text(yaml.safe_dump({"registry": {"database_url": database_url}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKGATE_")}
    env.update(
        LOCKGATE_DATABASE_URL=database_url,
        LOCKGATE_ARTIFACT_URL=str(artifacts),
        LOCKGATE_DATA_DIR=str(user),
        LOCKGATE_CONFIG=str(config),
        LOCKGATE_REGISTRY__DATABASE_URL=database_url,
    )
    demo_dir = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "lockgate.gateway.cli", "demo", "--data-dir", str(demo_dir)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert f"embedded registry at sqlite:///{demo_dir / 'registry.db'}" in done.stdout
    assert "support: production 2 -> 4" in done.stdout

    reg = Registry(settings, actor="user")
    try:
        assert _snapshot(reg, artifacts) == before
    finally:
        reg.close()
    demo = Registry(RegistrySettings(data_dir=demo_dir), actor="check")
    try:
        assert demo.labels.of("prompt", "support")["production"] == 4
        assert demo.runs.list(limit=1)
    finally:
        demo.close()


def test_the_demo_wipes_only_a_new_empty_or_earlier_demo_folder(tmp_path: Path) -> None:
    """`--data-dir` is wiped first: a folder holding anything else (say, the user's own
    registry) is refused, exit 2, and left as it was."""
    user = tmp_path / "lockgate-data"
    user.mkdir()
    (user / "registry.db").write_bytes(b"the user's registry")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKGATE_")}
    done = subprocess.run(
        [sys.executable, "-m", "lockgate.gateway.cli", "demo", "--data-dir", str(user)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "not an earlier demo's" in done.stderr
    assert (user / "registry.db").read_bytes() == b"the user's registry"
