"""Benchmark: what ``POST /v1/models/{NAME@LABEL}:predict`` adds over the model's own
``predict``, on a 100-row batch.

Trains a scikit-learn pipeline (StandardScaler on three numeric columns and OneHotEncoder on
one categorical column into a LogisticRegression), registers it with a reference dataset on
a scratch SQLite registry, starts ``lockgate serve`` (one worker; default settings: call
records on, 10% of :predict requests sampled), then times from this process, interleaved
and with the same 100 rows:

* direct: ``model.predict(frame)`` on a ready pandas DataFrame;
* gateway: ``httpx.Client.post`` of ``{"instances": [...]}`` (100 row objects) on loopback,
  request encoding, response decoding and the JSON answer included;
* floor: ``GET /healthz`` on the same client: the HTTP round trip alone.

The gateway runs in its own process: uvicorn in a thread of this one shows a constant
~44 ms per request on the development VM whatever the app (a bare Starlette route
included), which is not lockgate's.

Prints the median and p99 of each and the difference of the medians (the overhead).

    .venv/bin/python tests/benchmarks/predict_overhead.py [--n 2000] [--rows 100]

Target (issue 12): the gateway adds under 2 ms to a 100-row batch.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from lockgate.registry import Registry, RegistrySettings

BIN = Path(sys.executable).parent
FEATURES = ["tenure", "spend", "calls", "plan"]


def rows(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        plan = rng.choice(["basic", "pro", "team"])
        row = {"tenure": rng.randint(0, 60), "spend": round(rng.uniform(5, 200), 2),
               "calls": rng.randint(0, 9), "plan": plan}  # fmt: skip
        row["churned"] = int(row["tenure"] < 12 or row["spend"] > 150)
        out.append(row)
    return out


def fitted(reference: list[dict[str, Any]]) -> Any:
    frame = pd.DataFrame(reference)
    prepare = ColumnTransformer([
        ("num", StandardScaler(), ["tenure", "spend", "calls"]),
        ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
    ])  # fmt: skip
    model = Pipeline([("prepare", prepare), ("clf", LogisticRegression())])
    return model.fit(frame[FEATURES], frame["churned"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(client: httpx.Client, url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if client.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the gateway did not become ready at {url}")
        time.sleep(0.2)


def timed(fns: list[Callable[[], Any]], n: int) -> list[list[float]]:
    """Each of ``fns`` ``n`` times, interleaved (so that the machine's noise falls on all of
    them alike), after a warm-up; the sorted times of each in ms."""
    for _ in range(min(200, n)):
        for fn in fns:
            fn()
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(n):
        for fn, times in zip(fns, samples, strict=True):
            t0 = time.perf_counter_ns()
            fn()
            times.append((time.perf_counter_ns() - t0) / 1e6)
    for times in samples:
        times.sort()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=2000, help="timed calls of each")
    parser.add_argument("--rows", type=int, default=100, help="rows per batch")
    args = parser.parse_args()
    reference = rows(1000, seed=1)
    model = fitted(reference)
    batch = [{k: r[k] for k in FEATURES} for r in rows(args.rows, seed=2)]
    frame = pd.DataFrame(batch)[FEATURES]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "reference.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in reference))
        registry_settings = RegistrySettings(data_dir=Path(tmp) / "registry")
        with Registry(registry_settings) as reg:
            reg.datasets.add("bench-ref", data)
            reg.models.register_sklearn("bench", model, reference="bench-ref", target="churned")
            reg.labels.set("model", "bench", "production", 1, reason="benchmark")
        config = {"registry": {"data_dir": str(registry_settings.data_dir)}}
        (Path(tmp) / "lockgate.yaml").write_text(json.dumps(config))
        port = free_port()
        server = subprocess.Popen(
            [str(BIN / "lockgate"), "serve", "-c", str(Path(tmp) / "lockgate.yaml"),
             "--port", str(port), "--workers", "1"],
            cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            with httpx.Client() as client:
                base = f"http://127.0.0.1:{port}"
                wait_ready(client, base + "/readyz")
                url = f"{base}/v1/models/bench@production:predict"
                body = {"instances": batch}
                # the first call loads the model (imports included): longer than httpx's 5 s
                answer = client.post(url, json=body, timeout=120).json()
                assert answer["predictions"] == model.predict(frame).tolist(), answer
                direct, gateway, floor = timed(
                    [
                        lambda: model.predict(frame),
                        lambda: client.post(url, json=body).raise_for_status(),
                        lambda: client.get(base + "/healthz").raise_for_status(),
                    ],
                    args.n,
                )
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(15)
    p99 = int(len(direct) * 0.99) - 1
    print(f":predict overhead, {args.rows}-row batch, n={args.n} each (ms)")
    print(f"  direct model.predict  p50 {statistics.median(direct):.3f}  p99 {direct[p99]:.3f}")
    print(f"  through the gateway   p50 {statistics.median(gateway):.3f}  p99 {gateway[p99]:.3f}")
    print(f"  GET /healthz (floor)  p50 {statistics.median(floor):.3f}  p99 {floor[p99]:.3f}")
    added = statistics.median(gateway) - statistics.median(direct)
    print(f"  added (p50 - p50)     {added:.3f}  (target: under 2 ms)")


if __name__ == "__main__":
    main()
