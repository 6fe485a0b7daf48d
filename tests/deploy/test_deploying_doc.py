"""The helm, docker and kubectl commands docs/deploying.md shows are the ones this folder's
tests check: each `helm upgrade --install` is rendered with `helm template` and the same
chart and values, each `helm lint` is run, each `docker compose` line is loaded by
docker-compose with the same files and profiles, each `docker build` names a real
Dockerfile and stage, and the Secrets the page creates are the ones the production-like
values file reads. (tests/test_doc_commands.py parses the page's `lockgate` commands.)"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import (
    CHART,
    ROOT,
    clean_environ,
    compose_binary,
    dockerfile_stages,
    run,
    tool,
)

PAGE = ROOT / "docs" / "deploying.md"
FENCE = re.compile(r"^```(\w*)\s*$")
ENV = {"LOCKGATE_ADMIN_KEY": "k" * 32, "LOCKGATE_UI_SESSION_SECRET": "s" * 32}


def shell_commands() -> list[list[str]]:
    """The page's shell lines, split into words, one command per line."""
    commands, language = [], None
    for line in PAGE.read_text().splitlines():
        fence = FENCE.match(line)
        if fence:
            language = None if language is not None else fence.group(1)
            continue
        if language in ("sh", "bash") and line.strip():
            words = shlex.split(line.split(" #", 1)[0])
            if words:
                commands.append(words)
    return commands


def commands_of(program: str, *sub: str) -> list[list[str]]:
    found = [c for c in shell_commands() if c[0] == program and c[1 : 1 + len(sub)] == list(sub)]
    assert found, f"docs/deploying.md shows no `{program} {' '.join(sub)}`"
    return found


def without(words: list[str], flags: dict[str, int]) -> list[str]:
    """``words`` less the given flags (each with its number of values)."""
    kept, skip = [], 0
    for word in words:
        if skip:
            skip -= 1
        elif word in flags:
            skip = flags[word]
        else:
            kept.append(word)
    return kept


def test_every_helm_install_on_the_page_renders() -> None:
    for command in commands_of("helm", "upgrade"):
        assert command[2] == "--install", command
        args = without(command[3:], {"--namespace": 1, "--create-namespace": 0, "--wait": 0})
        release, chart, *values = args
        assert Path(ROOT / chart) == CHART
        done = run(tool("helm"), "template", release, str(ROOT / chart), *values,
                   env=clean_environ())  # fmt: skip
        assert done.returncode == 0, (command, done.stderr)
        assert yaml.safe_load_all(done.stdout)


def test_every_helm_lint_on_the_page_passes() -> None:
    for command in commands_of("helm", "lint"):
        done = run(tool("helm"), *command[1:], env=clean_environ())
        assert done.returncode == 0, (command, done.stdout)


def test_every_docker_compose_line_loads() -> None:
    for command in commands_of("docker", "compose"):
        words = command[2:]
        verb = next(i for i, w in enumerate(words) if not w.startswith("-") and (
            i == 0 or words[i - 1] not in ("-f", "--profile")))  # fmt: skip
        project = words[:verb]
        assert project[:2] == ["-f", "deploy/compose.yaml"], command
        done = run(compose_binary(), *project, "config", "--quiet", env=clean_environ() | ENV)
        assert done.returncode == 0, (command, done.stderr)
        if words[verb] == "exec":
            service = words[verb + 1]
            services = run(compose_binary(), *project, "config", "--services",
                           env=clean_environ() | ENV).stdout.split()  # fmt: skip
            assert service in services, command
        if "--scale" in words:
            assert words[words.index("--scale") + 1].startswith("gateway="), command


def test_every_docker_build_names_a_real_dockerfile_and_stage() -> None:
    builds = commands_of("docker", "build")
    assert len(builds) == 2
    for command in builds:
        dockerfile = ROOT / command[command.index("-f") + 1]
        target = command[command.index("--target") + 1]
        assert target in [s.name for s in dockerfile_stages(dockerfile)], command
        assert target == dockerfile_stages(dockerfile)[-1].name  # the default target too
        assert command[-1] == "."  # the repository root is the context


def test_the_secrets_the_page_creates_are_those_production_values_read() -> None:
    created: dict[str, set[str]] = {}
    for command in commands_of("kubectl", "-n"):
        if command[3:6] != ["create", "secret", "generic"]:
            continue
        keys = {w.split("=", 2)[1] for w in command if w.startswith("--from-literal=")}
        created[command[6]] = keys
    values = yaml.safe_load((CHART / "ci" / "production-values.yaml").read_text())["secrets"]
    read: dict[str, set[str]] = {}
    for item in values.values():
        if isinstance(item, dict):
            read.setdefault(item["secretName"], set()).add(item["secretKey"])
    for name, keys in read.items():
        assert keys <= created.get(name, set()), (name, keys)
    assert values["providerKeysSecretName"] in created


@pytest.mark.parametrize("path", ["deploy/helm/lockgate/ci/production-values.yaml",
                                  "deploy/helm/lockgate/ci/minimal-values.yaml"])  # fmt: skip
def test_the_values_files_the_page_names_exist(path: str) -> None:
    assert path in PAGE.read_text() or Path(path).name in PAGE.read_text()
    assert (ROOT / path).exists()
