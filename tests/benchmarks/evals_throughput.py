"""Benchmark: an eval run of 1,000 examples against an upstream answering in 50 ms, with
concurrency 50 (ideal wall time 1.0 s; target within 1.5x), then a fully cached rerun
(target under 1 s).

The stub upstream (tests/evals/upstream.py) runs in a separate process, so it does not
share the runner's interpreter. Library imports happen before the clock starts; the timed
wall includes loading the dataset with ``datasets``, the calls, scoring, the resume file
and, with ``--registry``, recording the run in a SQLite registry. Each line also gives the
CPU time the runner's process spent (the upstream's is not counted).

``--transport httpx`` sends through httpx's own connection pool (httpcore) instead of the
runner's aiohttp-backed transport: the figures docs/evals.md gives for why the eval client
sends through aiohttp.

    .venv/bin/python tests/benchmarks/evals_throughput.py [--n 1000] [--concurrency 50]
        [--delay 0.05] [--registry] [--transport aiohttp|httpx]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def serve(delay: float, ports: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    from tests.evals.upstream import Upstream

    with Upstream() as upstream:
        upstream.state.delay = delay
        ports.put(upstream.port)
        while True:
            time.sleep(3600)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--registry", action="store_true", help="record runs in a registry")
    parser.add_argument("--transport", choices=["aiohttp", "httpx"], default="aiohttp")
    args = parser.parse_args()

    ports: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    server = multiprocessing.Process(target=serve, args=(args.delay, ports), daemon=True)
    server.start()
    port = ports.get(timeout=30)

    import datasets  # noqa: F401  (imports are not part of the run)
    import httpx

    from lockgate.evals import RunOptions, parse_suite, run_suite
    from lockgate.registry import Registry, RegistrySettings

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.jsonl"
        data.write_text("".join(
            json.dumps({"question": f"What is {i}+{i % 7}?", "answer": str(i + i % 7)}) + "\n"
            for i in range(args.n)
        ))  # fmt: skip
        suite = parse_suite({
            "name": "bench", "dataset": str(data), "reference": "answer",
            "target": {"base_url": f"http://127.0.0.1:{port}/v1", "model": "stub",
                       "messages": [{"role": "user", "content": "{{ question }}"}]},
            "scorers": ["exact_match"], "concurrency": args.concurrency,
        })  # fmt: skip
        registry = Registry(RegistrySettings(data_dir=Path(tmp))) if args.registry else None
        ideal = args.n / args.concurrency * args.delay
        done: list[float] = []
        runs = [("first run", "a"), ("cached rerun", "a"), ("second uncached run", "b")]
        limits = httpx.Limits(max_connections=args.concurrency,
                              max_keepalive_connections=args.concurrency)  # fmt: skip
        network = (lambda: httpx.AsyncHTTPTransport(limits=limits)) if args.transport == "httpx" \
            else None  # fmt: skip
        for title, cache in runs:
            options = RunOptions(cache_dir=Path(tmp) / cache, progress=lambda d, t: done.append(
                time.perf_counter()), network_transport=network)  # fmt: skip
            done.clear()
            t0, cpu0 = time.perf_counter(), time.process_time()
            run = run_suite(suite, registry=registry, options=options)
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            assert run.summaries["exact_match"].value == 1.0
            calls = done[-1] - done[0] if done else 0.0
            print(f"{title:>19}: {wall:.3f} s wall ({wall / ideal:.2f}x ideal {ideal:.2f} s; "
                  f"first to last example {calls:.3f} s), {cpu:.2f} s CPU, {run.calls} calls, "
                  f"{run.cache_hits} cache hits")  # fmt: skip
    server.terminate()


if __name__ == "__main__":
    main()
