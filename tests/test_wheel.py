"""The distribution installs one import name, ``lockgate``, whatever folders the repository has.

The repository keeps ``registry/``, ``evals/``, ``finetune/`` and ``gateway/`` at its top
level; installed, they are ``lockgate.registry`` and so on, so that another distribution
with a module named ``registry`` or ``evals`` cannot shadow lockgate's (or be shadowed)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("registry", "evals", "finetune", "gateway")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from a copy of the sources: setuptools reuses ./build, which may hold old files."""
    source, out = tmp_path_factory.mktemp("source") / "lockgate", tmp_path_factory.mktemp("wheel")
    skip = shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__", "tests")
    shutil.copytree(ROOT, source, ignore=skip)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(source)],
        check=True, capture_output=True, text=True, cwd=out,
    )  # fmt: skip
    [built] = out.glob("lockgate-*.whl")
    return built


def test_the_wheel_holds_lockgate_and_nothing_else_at_the_top(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/", 1)[0] for name in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"lockgate"}, sorted(top)
    assert "lockgate/__init__.py" not in names  # a namespace: nothing of its own to run
    for part in PARTS:
        assert f"lockgate/{part}/__init__.py" in names
        assert f"lockgate/{part}/py.typed" in names
    assert "lockgate/registry/migrations/versions/0001_initial_schema.py" in names
    assert "lockgate/evals/scorers/__init__.py" in names
    assert not [n for n in names if n.startswith("lockgate/tests") or "__pycache__" in n]
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "lockgate = lockgate.gateway.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


@pytest.mark.slow
def test_a_fresh_environment_gains_one_import_name(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    listing = (
        "import pathlib, sys, sysconfig; "
        "print('\\n'.join(sorted(p.name.removesuffix('.py') for p in "
        "pathlib.Path(sysconfig.get_paths()['purelib']).iterdir() "
        "if not p.name.endswith(('.dist-info', '.pth')) and p.name != '__pycache__')))"
    )

    def names() -> set[str]:
        out = subprocess.run([python, "-c", listing], check=True, capture_output=True, text=True)
        return set(out.stdout.split())

    before = names()
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    assert names() - before == {"lockgate"}
    probe = (
        "import importlib.util as u; "
        "print([n for n in ('registry', 'evals', 'finetune', 'gateway') if u.find_spec(n)]); "
        "print([n for n in ('registry', 'evals', 'finetune', 'gateway') "
        "if u.find_spec('lockgate.' + n) is None])"
    )
    out = subprocess.run(
        [python, "-c", probe], check=True, capture_output=True, text=True, cwd=tmp_path
    )
    assert out.stdout.split("\n")[:2] == ["[]", "[]"], out.stdout
