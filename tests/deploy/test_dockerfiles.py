"""The images' Dockerfiles (deploy/Dockerfile, deploy/Dockerfile.worker). No image is built
here (no Docker daemon): hadolint lints them, and the shape users rely on is read from them:
a builder stage and a final stage that copies its virtual environment, a non-root numeric
USER last, no build tools or pip in the final stage, the health check on /healthz, and every
package folder of pyproject.toml in the build context and the image."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from tests.deploy.conftest import DEPLOY, ROOT, Stage, dockerfile_stages, run, tool

GATEWAY = DEPLOY / "Dockerfile"
WORKER = DEPLOY / "Dockerfile.worker"
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|make|build-essential|[\w.+-]+-dev|cmake|git)\b")


@pytest.mark.parametrize("path", [GATEWAY, WORKER], ids=["gateway", "worker"])
def test_hadolint_passes(path: Path) -> None:
    done = run(tool("hadolint"), "--failure-threshold", "info", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_finds_a_problem_when_there_is_one(tmp_path: Path) -> None:
    """The check above means something: an unpinned base image is reported."""
    broken = tmp_path / "Dockerfile"
    broken.write_text(
        GATEWAY.read_text().replace("ARG PYTHON_IMAGE=python:3.11.10-slim-bookworm\n", "")
        + "FROM debian\n"
    )
    done = run(tool("hadolint"), "--failure-threshold", "info", str(broken))
    assert done.returncode != 0
    assert "DL3006" in done.stdout  # always tag the version of an image explicitly


def _arg_default(path: Path, name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", path.read_text(), re.M)
    assert match, f"{path.name}: no ARG {name}"
    return match.group(1)


def _final(path: Path) -> tuple[list[Stage], Stage]:
    stages = dockerfile_stages(path)
    return stages, stages[-1]


@pytest.mark.parametrize(
    ("path", "base_arg", "final_name"),
    [(GATEWAY, "PYTHON_IMAGE", "gateway"), (WORKER, "CUDA_IMAGE", "worker")],
    ids=["gateway", "worker"],
)
def test_multi_stage_with_a_lean_non_root_final_stage(
    path: Path, base_arg: str, final_name: str
) -> None:
    stages, final = _final(path)
    assert [s.name for s in stages] == ["builder", final_name]
    # both stages on the same pinned base: the venv's interpreter is the same in both
    base = _arg_default(path, base_arg)
    assert re.search(r":\d[\w.-]*$", base), base
    assert {s.base for s in stages} == {f"${{{base_arg}}}"}
    assert any(
        a.startswith("--from=builder /opt/lockgate /opt/lockgate") for a in final.all("COPY")
    )
    user = final.all("USER")[-1]
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), user
    final_runs = " ".join(final.all("RUN"))
    assert not BUILD_TOOLS.search(final_runs), BUILD_TOOLS.search(final_runs)
    assert "pip install" not in final_runs
    assert not [a for a in final.all("COPY") if not a.startswith("--from=builder")]
    # the builder removes pip from the venv it hands over
    assert "/opt/lockgate/bin/pip uninstall --yes pip" in " ".join(stages[0].all("RUN"))
    assert final.all("ENTRYPOINT") == ['["lockgate"]']


def test_the_gateway_image_checks_healthz_on_its_port() -> None:
    _, final = _final(GATEWAY)
    (check,) = final.all("HEALTHCHECK")
    assert "http://127.0.0.1:4000/healthz" in check
    assert final.all("EXPOSE") == ["4000"]
    assert final.all("CMD") == ['["serve", "--host", "0.0.0.0", "--port", "4000"]']
    assert _arg_default(GATEWAY, "EXTRAS") == "postgres,redis,s3"


def test_the_worker_image_has_the_finetune_extra_on_cuda() -> None:
    stages, final = _final(WORKER)
    assert _arg_default(WORKER, "CUDA_IMAGE").startswith("nvidia/cuda:")
    extras = _arg_default(WORKER, "EXTRAS").split(",")
    assert "finetune" in extras
    optional = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert set(extras) <= set(optional)
    assert "torch==2.13.0" in optional["finetune"]
    assert "python3.11" in " ".join(stages[0].all("RUN"))
    assert final.all("CMD") == ['["finetune", "worker"]']


def test_every_package_folder_reaches_the_images() -> None:
    """A folder pyproject.toml installs must be in the build context and copied, or the
    image's pip install leaves it out."""
    package_dirs = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
            "package-dir"
        ].values()
    )
    needed = package_dirs | {"pyproject.toml", "README.md"}
    for path in (GATEWAY, WORKER):
        allowed = {
            line[1:].rstrip("/")
            for line in Path(f"{path}.dockerignore").read_text().splitlines()
            if line.startswith("!")
        }
        assert needed <= allowed, (path.name, needed - allowed)
        copied = {a.split()[0].rstrip("/") for a in dockerfile_stages(path)[0].all("COPY")}
        copied |= {w for a in dockerfile_stages(path)[0].all("COPY") for w in a.split()[:-1]}
        assert needed <= copied, (path.name, needed - copied)
