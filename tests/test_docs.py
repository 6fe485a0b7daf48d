"""Docs are checked: the CLI reference is generated from the commands and must be current."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_cli_reference_is_current() -> None:
    from lockgate.gateway.docgen import render

    current = (ROOT / "docs" / "cli.md").read_text()
    assert current == render(), "docs/cli.md is stale: run `make docs`"


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
