"""Drift check of 1,000,000 rows x (20 numeric + 5 categorical) columns: time and peak RSS.

Usage::

    .venv/bin/python tests/benchmarks/drift_check.py [--rows 1000000]

Prints: building the reference profile, the first check (reference read from the DataFrame),
storing the profile as bytes, and a second check against the stored profile (only the current
data is read), each with its wall time, and the process's peak RSS (data included: the two
DataFrames alone are about 0.5 GB). Targets (issue 12): first check under 5 s and under 1 GB
RSS on the 2-core machine.
"""

from __future__ import annotations

import argparse
import resource
import threading
import time
from typing import Any

import numpy as np


def make_frame(rows: int, seed: int, *, shifted: bool) -> Any:
    import pandas as pd

    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {}
    for i in range(20):
        loc = 0.2 if shifted and i < 8 else 0.0
        cols[f"num_{i}"] = rng.normal(loc, 1.0 + i / 10, rows)
    pools = [np.array([f"c{j}" for j in range(k)], dtype=object) for k in (3, 5, 8, 12, 30)]
    for i, pool in enumerate(pools):
        cols[f"cat_{i}"] = pool[rng.integers(0, pool.size, rows)]
    return pd.DataFrame(cols)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


class RssPeak:
    """Samples the RSS every 5 ms while a block runs (ru_maxrss cannot be reset)."""

    def __enter__(self) -> RssPeak:
        self.peak, self._stop = rss_mb(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    from lockgate.evals.drift import Profile, build_profile, check_drift

    reference = make_frame(args.rows, 1, shifted=False)
    current = make_frame(args.rows, 2, shifted=True)
    print(f"data: {args.rows:,} rows x 25 columns per side; RSS so far {peak_rss_mb():.0f} MB")
    check_drift(reference.head(2000), current.head(2000))  # imports scipy, warms up

    print(f"RSS with both DataFrames loaded: {rss_mb():.0f} MB")
    start = time.perf_counter()
    with RssPeak() as first_peak:
        report = check_drift(reference, current)
    first = time.perf_counter() - start
    print(
        f"first check (reference from the DataFrame): {first:.2f} s, "
        f"{report.n_drifted}/{len(report.columns)} columns drifted, dataset {report.drifted}; "
        f"peak RSS {first_peak.peak:.0f} MB"
    )

    start = time.perf_counter()
    profile = build_profile(reference)
    built = time.perf_counter() - start
    start = time.perf_counter()
    blob = profile.to_bytes()
    stored = Profile.from_bytes(blob)
    serial = time.perf_counter() - start
    print(
        f"profile: built in {built:.2f} s; {len(blob) / 1e6:.0f} MB as bytes, "
        f"written and read back in {serial:.2f} s"
    )

    del profile, blob
    start = time.perf_counter()
    with RssPeak() as second_peak:
        again = check_drift(stored, current)
    second = time.perf_counter() - start
    same = [c.drifted for c in again.columns] == [c.drifted for c in report.columns]
    print(
        f"second check (stored profile): {second:.2f} s; same verdicts: {same}; "
        f"peak RSS {second_peak.peak:.0f} MB"
    )
    print(f"peak RSS of the whole run (data generation included): {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
