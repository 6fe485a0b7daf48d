"""lockgate's drift check against Evidently 0.7's DataDriftPreset: verdicts and wall time.

Usage::

    .venv/bin/python tests/benchmarks/drift_vs_evidently.py [--sizes 500,1000,1001,20000]
    .venv/bin/python tests/benchmarks/drift_vs_evidently.py --layout wide --sizes 1000000

Evidently 0.7.x is installed, if missing, into its own virtual environment
(``/tmp/evidently-venv``; pandas below 3, which Evidently 0.7.23 needs). This script then runs
itself under that interpreter as a worker (``--evidently-worker``) on the same data, built from
the same seed with numpy and pandas only, and compares per column: the test chosen, the score
(p-value or distance) and the verdict. It exits 1 when any verdict differs.

The data plants shifts in half the columns and covers every branch of the default choice:
floats (KS / Wasserstein), strings of 3-5 categories (chi-square / Jensen-Shannon), a
two-valued string (Z-test), floats of 4 distinct values (chi-square / Jensen-Shannon on a
numeric column), integers of 8 values (categorical by Evidently's integer rule), with NaN and
±inf sprinkled in.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

VENV = Path(os.environ.get("EVIDENTLY_VENV", "/tmp/evidently-venv"))
P_AT_MOST = {"K-S p_value"}
P_BELOW = {"chi-square p_value", "Z-test p_value"}


def make_data(n: int, seed: int, *, shifted: bool, layout: str = "branches") -> Any:
    import pandas as pd

    rng = np.random.default_rng(seed)
    shift = 1.0 if shifted else 0.0
    cols: dict[str, Any] = {}
    if layout == "wide":  # the shape: 20 numeric and 5 categorical columns
        for i in range(20):
            values = rng.normal(0.2 * shift if i % 4 == 0 else 0.0, 1.0 + i / 10, n)
            values[rng.random(n) < 0.01] = np.nan
            cols[f"num_{i:02d}"] = values
        for i in range(5):
            names = np.array([f"c{i}_{k}" for k in range(3 + i)], dtype=object)
            probs = np.full(len(names), 1.0 / len(names))
            if shifted and i % 2 == 0:
                probs = probs * np.linspace(0.6, 1.4, len(names))
                probs /= probs.sum()
            cols[f"cat_{i}"] = rng.choice(names, n, p=probs)
        return pd.DataFrame(cols)
    for i in range(6):
        loc = 0.25 * shift if i % 2 == 0 else 0.0
        values = rng.normal(loc, 1.0 + i, n)
        values[rng.random(n) < 0.01] = np.nan
        values[rng.random(n) < 0.002] = np.inf
        cols[f"num_{i}"] = values
    probs = [0.5, 0.3, 0.2] if not shifted else [0.35, 0.35, 0.3]
    cols["cat_shifted"] = rng.choice(np.array(["a", "b", "c"], dtype=object), n, p=probs)
    cols["cat_same"] = rng.choice(np.array(["u", "v", "w", "x", "y"], dtype=object), n)
    cols["binary"] = rng.choice(np.array(["yes", "no"], dtype=object), n, p=[0.6, 0.4])
    cols["few_floats"] = rng.choice(np.array([0.5, 1.5, 2.5, 3.5]), n)
    cols["int_codes"] = rng.integers(0, 8, n)
    return pd.DataFrame(cols)


def evidently_worker(n: int, seed: int, layout: str) -> None:
    import resource

    from evidently import Report
    from evidently.presets import DataDriftPreset

    reference = make_data(n, seed, shifted=False, layout=layout)
    current = make_data(n, seed + 1, shifted=True, layout=layout)
    start = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
    seconds = time.perf_counter() - start
    columns = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            method, threshold, value = config["method"], config["threshold"], metric["value"]
            if method in P_AT_MOST:
                drifted = value <= threshold
            elif method in P_BELOW:
                drifted = value < threshold
            else:
                drifted = value >= threshold
            columns[config["column"]] = {"method": method, "score": value, "drifted": bool(drifted)}
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "columns": columns}))


def ensure_evidently() -> Path:
    python = VENV / "bin" / "python"
    probe = [
        str(python),
        "-c",
        "import evidently, sys; sys.exit(evidently.__version__[:4] != '0.7.')",
    ]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(VENV / "bin" / "pip"), "install", "-q", "evidently==0.7.*", "pandas<3"]
    subprocess.run(pip, check=True)
    return python


def compare(n: int, seed: int, python: Path, layout: str) -> bool:
    from lockgate.evals.drift import check_drift

    reference = make_data(n, seed, shifted=False, layout=layout)
    current = make_data(n, seed + 1, shifted=True, layout=layout)
    start = time.perf_counter()
    report = check_drift(reference, current)
    ours_s = time.perf_counter() - start
    del reference, current  # the worker builds its own copy; free ours before it runs
    worker = [str(python), __file__, "--evidently-worker", str(n), str(seed), "--layout", layout]
    done = subprocess.run(worker, capture_output=True, text=True, check=True)
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    equal = True
    print(f"\nn = {n:,} rows per side")
    print(f"{'column':<12} {'lockgate':<14} {'score':>12} {'evidently':<28} {'score':>12}  same")
    for col in report.columns:
        other = theirs["columns"][col.column]
        same = col.drifted == other["drifted"]
        equal &= same
        print(
            f"{col.column:<12} {col.test:<14} {col.score:12.4g} {other['method']:<28} "
            f"{other['score']:12.4g}  {'yes' if same else 'NO'}"
        )
    missing = set(theirs["columns"]) - {c.column for c in report.columns}
    if missing:
        equal = False
        print(f"columns Evidently checked and lockgate did not: {sorted(missing)}")
    ratio = theirs["seconds"] / ours_s if ours_s else float("inf")
    print(
        f"verdicts equal: {equal}; lockgate {ours_s:.3f} s, Evidently {theirs['seconds']:.3f} s "
        f"({ratio:.0f}x); dataset drift: lockgate {report.drifted} ({report.share_drifted:.2f}); "
        f"Evidently peak RSS {theirs.get('peak_mb', float('nan')):.0f} MB"
    )
    return equal


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="500,1000,1001,20000,200000")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--layout", choices=["branches", "wide"], default="branches",
        help="branches: 11 columns covering every default test; wide: 20 numeric + 5 categorical",
    )  # fmt: skip
    parser.add_argument("--evidently-worker", nargs=2, type=int, metavar=("N", "SEED"))
    args = parser.parse_args()
    if args.evidently_worker:
        evidently_worker(*args.evidently_worker, args.layout)
        return 0
    python = ensure_evidently()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = [compare(n, args.seed, python, args.layout) for n in sizes]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
