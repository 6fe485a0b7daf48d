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


# --------------------------------------------------------------- one builder for every caller
def test_python_registry_sees_what_the_cli_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Registry(RegistrySettings())`` reads ``LOCKGATE_DATABASE_URL`` as the CLI does,
    instead of opening an empty registry in the user data directory."""
    from typer.testing import CliRunner

    from lockgate.gateway.cli import app
    from lockgate.registry import Registry, RegistrySettings

    monkeypatch.chdir(tmp_path)  # no ./lockgate.yaml
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "user-data"))  # the default data_dir
    monkeypatch.setenv("LOCKGATE_DATABASE_URL", f"sqlite:///{tmp_path / 'shared.db'}")
    monkeypatch.setenv("LOCKGATE_ARTIFACT_URL", str(tmp_path / "artifacts"))
    (tmp_path / "qa.txt").write_text("Answer: {{ question }}")
    pushed = CliRunner().invoke(app, ["prompt", "push", "qa", "--file", "qa.txt", "--json"])
    assert pushed.exit_code == 0, pushed.output

    with Registry(RegistrySettings()) as registry:
        assert registry.prompts.get("qa@latest").template == "Answer: {{ question }}"
    assert not (tmp_path / "user-data").exists()


def test_registry_settings_sources_and_precedence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Code > LOCKGATE_REGISTRY__* > short names > ./lockgate.yaml > defaults."""
    from lockgate.registry import RegistrySettings

    monkeypatch.chdir(tmp_path)
    (tmp_path / "lockgate.yaml").write_text(
        "registry:\n  data_dir: /from/file\n  artifact_url: memory://file\ngateway:\n  routes: {}\n"
    )
    assert RegistrySettings().data_dir == Path("/from/file")
    monkeypatch.setenv("LOCKGATE_DATA_DIR", "/from/short-name")
    assert RegistrySettings().data_dir == Path("/from/short-name")
    monkeypatch.setenv("LOCKGATE_REGISTRY__DATA_DIR", "/from/env")
    settings = RegistrySettings()
    assert (settings.data_dir, settings.artifact_url) == (Path("/from/env"), "memory://file")
    assert RegistrySettings(data_dir=Path("/from/code")).data_dir == Path("/from/code")

    other = tmp_path / "other.yaml"
    other.write_text("server: {port: 4100}\n")  # no registry section: the defaults
    monkeypatch.setenv("LOCKGATE_CONFIG", str(other))
    assert RegistrySettings().artifact_url is None


def test_a_chosen_file_is_the_only_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With --config, ./lockgate.yaml contributes nothing, not even to sections the chosen
    file leaves out."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lockgate.yaml").write_text(
        "registry: {artifact_url: memory://cwd}\nfinetune: {stale_after_s: 7}\n"
    )
    chosen = tmp_path / "chosen.yaml"
    chosen.write_text("registry: {data_dir: /chosen}\n")
    settings = load_settings(chosen)
    assert settings.registry.data_dir == Path("/chosen")
    assert settings.registry.artifact_url is None
    assert settings.finetune.stale_after_s == 120
    assert load_settings().finetune.stale_after_s == 7  # discovered when nothing is chosen


def test_finetune_and_evals_sections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "lockgate.yaml"
    cfg.write_text(
        "finetune:\n"
        "  stale_after_s: 300\n"
        "  executors:\n"
        "    image: registry.local/lockgate:1.4\n"
        "    namespace: ml-jobs\n"
        "    node_selector: {gpu: h100}\n"
        "evals: {concurrency: 32, timeout_s: 5, cache_dir: /var/cache/evals}\n"
    )
    monkeypatch.setenv("LOCKGATE_FINETUNE__EXECUTORS__NAMESPACE", "from-env")
    settings = load_settings(cfg)
    executors = settings.finetune.executors
    assert (executors.image, executors.namespace) == ("registry.local/lockgate:1.4", "from-env")
    assert executors.node_selector == {"gpu": "h100"}
    assert settings.finetune.stale_after_s == 300 and settings.finetune.poll_interval_s == 5
    assert (settings.evals.concurrency, settings.evals.timeout_s) == (32, 5)
    assert settings.evals.cache_dir == Path("/var/cache/evals") and settings.evals.retries == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "gateway:\n  upstream: {connect_timeout_s: 3}\n",
            "gateway.upstream.connect_timeout_s was renamed: use gateway.timeouts.connect_s",
        ),
        (
            "gateway:\n  upstream: {read_timeout_s: 3}\n",
            "gateway.upstream.read_timeout_s was renamed: use gateway.timeouts.read_s",
        ),
        (
            "gateway:\n  tracing: {export_delay_ms: 50}\n",
            "gateway.tracing.export_delay_ms was renamed: use gateway.tracing.export_delay_s",
        ),
        (
            "finetune: {poll_interval: 3}\n",
            "finetune.poll_interval was renamed: use finetune.poll_interval_s",
        ),
        ("finetune: {heartbeat_interval: 3}\n", "use finetune.heartbeat_interval_s"),
        ("finetune: {stale_after: 3}\n", "use finetune.stale_after_s"),
        (
            "finetune: {executors: {poll_interval: 3}}\n",
            "finetune.executors.poll_interval was renamed: use finetune.executors.poll_interval_s",
        ),
    ],
)
def test_renamed_keys_name_the_new_key(tmp_path: Path, content: str, message: str) -> None:
    cfg = tmp_path / "lockgate.yaml"
    cfg.write_text(content)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert message in str(err.value)
    assert err.value.exit_code == 2


def test_renamed_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKGATE_FINETUNE__STALE_AFTER", "30")
    with pytest.raises(ConfigError, match=r"finetune\.stale_after was renamed"):
        load_settings()


def test_renamed_keys_in_python_too() -> None:
    from pydantic import ValidationError

    from lockgate.finetune import WorkerSettings

    with pytest.raises(ValidationError, match="`poll_interval` was renamed: use `poll_interval_s`"):
        WorkerSettings(poll_interval=1)  # type: ignore[call-arg]


def test_evals_section_fills_what_a_suite_leaves_out() -> None:
    from lockgate.evals.settings import EvalsSettings, with_eval_defaults
    from lockgate.evals.suite import parse_suite

    document = {
        "name": "qa",
        "dataset": "data.jsonl",
        "target": {
            "base_url": "http://127.0.0.1:9/v1",
            "model": "m",
            "messages": [{"role": "user", "content": "{{ question }}"}],
        },
        "scorers": ["exact_match"],
        "retries": 0,
    }
    suite = parse_suite(document)
    filled = with_eval_defaults(suite, EvalsSettings(concurrency=32, timeout_s=5, retries=4))
    assert (filled.concurrency, filled.timeout, filled.retries) == (32, 5, 0)  # the file's wins
    assert filled.digest("sha256:d") == suite.digest("sha256:d")  # call settings are not pinned
