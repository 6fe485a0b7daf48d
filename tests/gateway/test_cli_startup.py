"""What the CLI imports to start: ``--help`` loads no sub-command group and none of the
heavy libraries; registering an unchanged scikit-learn file again does not load skops."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lockgate.gateway.cli import SUBCOMMANDS, subcommand_app

ROOT = Path(__file__).resolve().parents[2]
# runs the CLI with the given arguments in this interpreter, then prints what it imported
RUN_CLI = """
import json, sys
from lockgate.gateway.cli import main
sys.argv = ["lockgate", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
print("\\n" + json.dumps({"modules": sorted(sys.modules), "code": code}))
"""


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> tuple[str, set[str], int]:
    """(what the command printed, the modules it imported, its exit code)."""
    done = subprocess.run(
        [sys.executable, "-c", RUN_CLI, *args],
        capture_output=True, text=True, cwd=cwd, env=env, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed, _, last = done.stdout.rstrip("\n").rpartition("\n")
    result = json.loads(last)
    return printed, set(result["modules"]), result["code"]


def test_help_imports_no_group_and_no_heavy_library() -> None:
    printed, modules, code = run_cli("--help")
    assert code == 0
    assert all(f"  {name}" in printed for name in SUBCOMMANDS)  # every group is listed
    heavy = {"sklearn", "skops", "torch", "litellm", "sqlalchemy", "rich", "pydantic"}
    assert {m.split(".")[0] for m in modules} & heavy == set()
    groups = {module for module, _, _ in SUBCOMMANDS.values()}
    assert modules & groups == set()


def test_a_group_is_imported_when_named() -> None:
    printed, modules, code = run_cli("db", "--help")
    assert code == 0 and "upgrade" in printed
    assert "lockgate.registry.cli" in modules
    assert "lockgate.evals.cli" not in modules and "lockgate.finetune.cli" not in modules


def test_root_help_lines_are_the_groups_own() -> None:
    for name, (_, _, short_help) in SUBCOMMANDS.items():
        assert subcommand_app(name).info.help == short_help, name


@pytest.mark.slow
def test_an_unchanged_sklearn_file_is_not_checked_again(tmp_path: Path) -> None:
    sio = pytest.importorskip("skops.io")
    linear = pytest.importorskip("sklearn.linear_model")
    model = linear.LogisticRegression().fit([[0.0, 1.0], [1.0, 0.0]], [0, 1])
    path = tmp_path / "model.skops"
    sio.dump(model, path)
    env = {"PATH": "/usr/bin:/bin", "LOCKGATE_DATA_DIR": str(tmp_path / "data")}
    register = ("model", "register", "clf", "--flavor", "sklearn", "--path", str(path))

    printed, modules, code = run_cli(*register, env=env, cwd=tmp_path)
    assert code in (0, None) and "registered clf@1" in printed
    assert "skops.io" in modules  # a new file is checked

    printed, modules, code = run_cli(*register, env=env, cwd=tmp_path)
    assert code in (0, None) and "unchanged, already clf@1" in printed
    assert "skops.io" not in modules and "sklearn" not in modules

    printed, modules, code = run_cli(*register, "--param", "task=classify", env=env, cwd=tmp_path)
    assert code in (0, None) and "registered clf@2" in printed  # another spec: checked again
    assert "skops.io" in modules
