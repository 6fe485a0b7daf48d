"""Installs without extras: no torch needed, and a missing extra is named, not a traceback.

Each case runs the real CLI in a fresh interpreter where the optional packages are made
unimportable, as on a plain ``pip install lockgate``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys
    BLOCKED = {"torch", "transformers", "peft", "psycopg", "s3fs", "skops", "sklearn", "pyarrow"}
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None
    sys.meta_path.insert(0, Block())
    import importlib.util
    _find = importlib.util.find_spec
    def find_spec(name, package=None):
        if name.split(".")[0] in BLOCKED:
            return None
        return _find(name, package)
    importlib.util.find_spec = find_spec
    sys.argv = ["lockgate", *sys.argv[1:]]
    from lockgate.gateway.cli import main
    main()
    """
)


def lockgate_without_extras(
    tmp_path: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LOCKGATE_")}
    environ.update({"LOCKGATE_DATA_DIR": str(tmp_path / "data"), **env})
    return subprocess.run(
        [sys.executable, "-c", BLOCKER, *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_help_and_prompts_work_without_extras(tmp_path: Path) -> None:
    assert lockgate_without_extras(tmp_path, "--help").returncode == 0
    prompt = tmp_path / "p.txt"
    prompt.write_text("hi {{ name }}")
    done = lockgate_without_extras(tmp_path, "prompt", "push", "p", "--file", str(prompt), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["version"] == 1


@pytest.mark.parametrize(
    ("args", "env", "extra"),
    [
        (["prompt", "list"], {"LOCKGATE_DATABASE_URL": "postgresql://127.0.0.1/test"}, "postgres"),
        (["prompt", "list"], {"LOCKGATE_ARTIFACT_URL": "s3://bucket/lockgate"}, "s3"),
        (["model", "register", "m", "--flavor", "sklearn", "--path", "{model}"], {}, "sklearn"),
        (["dataset", "add", "d", "{parquet}"], {}, "datasets"),
    ],
)
def test_missing_extra_is_named(
    tmp_path: Path, args: list[str], env: dict[str, str], extra: str
) -> None:
    model = tmp_path / "m.skops"
    model.write_bytes(b"PK")
    parquet = tmp_path / "d.parquet"
    parquet.write_bytes(b"PAR1")
    args = [a.format(model=model, parquet=parquet) for a in args]
    done = lockgate_without_extras(tmp_path, *args, **env)
    assert done.returncode == 2
    assert f"pip install 'lockgate[{extra}]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_import_stays_light() -> None:
    """`lockgate --help` must not pay for the database, the model SDKs or torch."""
    code = (
        "import sys; import lockgate.gateway.cli; "
        "print([m for m in ('sqlalchemy', 'litellm', 'torch', 'fastapi', 'openai', 'alembic') "
        "if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
