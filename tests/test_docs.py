"""Docs are checked: the CLI and configuration references are generated (from the commands
and the settings models) and must be current."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_cli_reference_is_current() -> None:
    from lockgate.gateway.docgen import render

    current = (ROOT / "docs" / "cli.md").read_text()
    assert current == render(), "docs/cli.md is stale: run `make docs`"


def test_configuration_reference_is_current() -> None:
    """The end of docs/configuration.md is generated from the settings models."""
    from lockgate.gateway.docgen import CONFIG_MARKER, with_configuration_reference

    current = (ROOT / "docs" / "configuration.md").read_text()
    assert CONFIG_MARKER in current
    assert current == with_configuration_reference(current), (
        "docs/configuration.md is stale: run `make docs`"
    )


def test_configuration_reference_names_every_key() -> None:
    """Every key of every section has its row, with its environment variable."""
    from lockgate.gateway.docgen import render_configuration

    reference = render_configuration()
    for row in [
        "| `registry.database_url` |",
        "`LOCKGATE_DATABASE_URL`",
        "| `gateway.timeouts.read_s` |",
        "`LOCKGATE_GATEWAY__TIMEOUTS__CONNECT_S`",
        "| `gateway.routes.<name>.deployments[].api_key_env` |",
        "| `finetune.executors.node_selector` |",
        "| `finetune.stale_after_s` |",
        "| `evals.concurrency` |",
    ]:
        assert row in reference
    assert "connect_timeout_s" not in reference and "poll_interval`" not in reference


def test_readme_setup_is_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_changelog_keeps_a_changelog_form() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert changelog.startswith("# Changelog")
    assert "## [Unreleased]" in changelog


def test_configuration_example_is_valid() -> None:
    """The lockgate.yaml shown in docs/configuration.md loads as it is."""
    import re

    import yaml

    from lockgate.gateway.config import LockgateSettings

    text = (ROOT / "docs" / "configuration.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert blocks
    for block in blocks:
        LockgateSettings.model_validate(yaml.safe_load(block))
