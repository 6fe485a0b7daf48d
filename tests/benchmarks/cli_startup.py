"""Benchmark: how long `lockgate --help` and a registry command take to start.

.venv/bin/python tests/benchmarks/cli_startup.py [--n 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOCKGATE = str(Path(sys.executable).with_name("lockgate"))


def median_seconds(args: list[str], n: int, env: dict[str, str]) -> float:
    runs = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(args, env=env, check=True, capture_output=True)
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "LOCKGATE_DATA_DIR": tmp}
        bare = median_seconds([sys.executable, "-c", "pass"], args.n, env)
        helps = median_seconds([LOCKGATE, "--help"], args.n, env)
        prompt = Path(tmp) / "p.txt"
        prompt.write_text("hi {{ name }}")
        subprocess.run(
            [LOCKGATE, "prompt", "push", "p", "--file", str(prompt)],
            env=env,
            check=True,
            capture_output=True,
        )
        listing = median_seconds([LOCKGATE, "prompt", "list"], args.n, env)
    print(f"median of {args.n} runs")
    print(f"  python -c pass        {bare * 1000:7.1f} ms")
    print(f"  lockgate --help       {helps * 1000:7.1f} ms")
    print(f"  lockgate prompt list  {listing * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
