"""A folder of its own where a test runs ``lockgate`` commands as a user does: each command a
process, the folder's ``lockgate.yaml`` and embedded registry, none of the caller's
``LOCKGATE_*`` settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


class Folder:
    def __init__(self, path: Path) -> None:
        self.path = path
        (path / "home").mkdir(exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKGATE_")}
        self.env.update({
            "LOCKGATE_DATA_DIR": str(path / "data"), "HOME": str(path / "home"),
            "LOCKGATE_CONFIG": str(path / "lockgate.yaml"),
        })  # fmt: skip

    def lockgate(self, *args: str, expect: int = 0, timeout: float = 300) -> str:
        """``lockgate ARGS`` in the folder; its stdout, once its exit code is ``expect``."""
        done = subprocess.run(
            [sys.executable, "-m", "lockgate.gateway.cli", *args], cwd=self.path,
            env=self.env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        assert done.returncode == expect, (args, done.returncode, done.stdout, done.stderr)
        return done.stdout

    def json(self, *args: str, expect: int = 0, timeout: float = 300) -> Any:
        """``lockgate ARGS --json``, parsed."""
        return json.loads(self.lockgate(*args, "--json", expect=expect, timeout=timeout))
