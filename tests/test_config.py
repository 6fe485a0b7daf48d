"""One configuration: lockgate.yaml, overridden by LOCKGATE_* variables, validated with names."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockgate.gateway.config import ConfigError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("LOCKGATE_"):
            monkeypatch.delenv(key)


def test_yaml_then_env_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "lockgate.yaml"
    cfg.write_text(
        f"registry:\n  data_dir: {tmp_path}/from-yaml\n  artifact_url: memory://a\n"
        "server:\n  port: 5000\n"
    )
    settings = load_settings(cfg)
    assert settings.registry.data_dir == tmp_path / "from-yaml"
    assert settings.server.port == 5000
    assert (
        settings.registry.resolved_database_url() == f"sqlite:///{tmp_path}/from-yaml/registry.db"
    )

    monkeypatch.setenv("LOCKGATE_SERVER__PORT", "6000")
    monkeypatch.setenv("LOCKGATE_DATABASE_URL", "postgresql://db.internal/lockgate")
    settings = load_settings(cfg)
    assert settings.server.port == 6000
    assert settings.registry.database_url == "postgresql://db.internal/lockgate"
    assert settings.registry.artifact_url == "memory://a"  # untouched keys stay from the file


def test_config_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("server:\n  port: 4100\n")
    monkeypatch.setenv("LOCKGATE_CONFIG", str(cfg))
    assert load_settings().server.port == 4100


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("registry:\n  databse_url: x\n", "registry.databse_url: Extra inputs are not permitted"),
        ("server:\n  port: 0\n", "server.port"),
        ("- just\n- a list\n", "the top level must be a mapping"),
        ("server: [unclosed\n", "is not valid YAML"),
    ],
)
def test_bad_config_names_the_problem(tmp_path: Path, content: str, message: str) -> None:
    cfg = tmp_path / "lockgate.yaml"
    cfg.write_text(content)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert message in str(err.value)
    assert err.value.exit_code == 2


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_settings(tmp_path / "absent.yaml")
