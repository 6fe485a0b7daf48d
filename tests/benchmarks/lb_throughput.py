"""Benchmark: two ``lockgate serve`` replicas behind HAProxy against one, and against no
load balancer at all (issue 14).

Starts the fast stub upstream (``gateway_stub.py``), a fresh PostgreSQL registry database
(dropped at the end) shared by two replicas that keep their limits in Redis, and HAProxy with
two front ends: one over replica A alone, one over A and B (round robin, the checks of
docs/scaling.md). Then ``wrk`` drives, in turns, (1) replica A directly, (2) HAProxy over A,
(3) HAProxy over A and B, at each concurrency, for ``--rounds`` rounds, so that the three are
measured side by side under the same load from the rest of the machine; it prints the
medians over the rounds as a Markdown table, and the ratios.

Every request is what a production call is: a virtual key with rpm/tpm limits (Redis), a
registry prompt resolved at request time (cached per replica), a call record written to
PostgreSQL.

    apt-get install -y wrk haproxy
    .venv/bin/python tests/benchmarks/lb_throughput.py [--duration 5] [--rounds 3] \\
        [--concurrency 1,32] [--pg postgresql://postgres@127.0.0.1:5432/test]

What it shows depends on the cores: replicas scale throughput only when there are cores for
both (and for HAProxy, the stub and wrk). On a 2-core machine the gateways, HAProxy, the
stub, wrk and PostgreSQL share two cores, so "A and B" cannot be faster than "A": the ratios
there measure what the load balancer's hop costs, not scaling.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests.* from the repository
from gateway_overhead import BIN, MESSAGES, PROMPT, free_port, run_wrk, start, stop, wait_ready

from tests.scale.cluster import HAPROXY_DEFAULTS

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
DEFAULT_PG = os.environ.get("LOCKGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
TARGETS = ("direct to A", "HAProxy, A", "HAProxy, A+B")


def haproxy_config(lb1: int, lb2: int, a: int, b: int) -> str:
    return f"""global
    maxconn 4000

{HAPROXY_DEFAULTS.rstrip()}
    default-server inter 2s fall 3 rise 2

frontend one
    bind 127.0.0.1:{lb1}
    default_backend a_only

frontend two
    bind 127.0.0.1:{lb2}
    default_backend a_and_b

backend a_only
    option httpchk
    http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host localhost
    server a 127.0.0.1:{a} check

backend a_and_b
    balance roundrobin
    option httpchk
    http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host localhost
    server a 127.0.0.1:{a} check
    server b 127.0.0.1:{b} check
"""


def replica_config(tmp: Path, name: str, database_url: str, stub: str) -> Path:
    deployment = {"provider": "openai", "model": "bench-model", "api_base": stub + "/v1",
                  "api_key": "sk-x"}  # fmt: skip
    config = {
        "registry": {"database_url": database_url, "data_dir": str(tmp / name)},
        "gateway": {
            "routes": {"bench": {"deployments": [deployment]}},
            "redis_url": "redis://127.0.0.1:6379/0",
        },
        "ui": {"enabled": False},
    }
    path = tmp / f"{name}.yaml"
    path.write_text(json.dumps(config))
    return path


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99", "errors")}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="turns over the three targets")
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL to create a database in")
    args = parser.parse_args()
    for tool, hint in (("wrk", "apt-get install -y wrk"), (HAPROXY, "apt-get install -y haproxy")):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed: {hint}")
    os.environ["LOCKGATE_TEST_PG"] = args.pg  # the server tests/conftest.py creates it on
    from lockgate.registry import db as registry_db
    from tests.conftest import scratch_pg_database

    tmp = Path(tempfile.mkdtemp(prefix="lockgate-lb-bench-"))
    with scratch_pg_database("lockgate_bench_lb") as database_url:
        engine = registry_db.make_engine(database_url)
        registry_db.upgrade(engine)
        engine.dispose()
        try:
            measure(args, tmp, database_url)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def measure(args: argparse.Namespace, tmp: Path, database_url: str) -> None:
    """Start the stub, two replicas and HAProxy, drive the three targets, print the table."""
    levels = [int(c) for c in args.concurrency.split(",")]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        stub_port = free_port()
        procs.append(
            start([sys.executable, "tests/benchmarks/gateway_stub.py", "--port", str(stub_port)])
        )
        stub = f"http://127.0.0.1:{stub_port}"
        wait_ready(stub + "/")

        from lockgate.registry import Registry, RegistrySettings

        settings = RegistrySettings(data_dir=tmp / "tester", database_url=database_url)
        with Registry(settings) as reg:
            reg.prompts.push(
                "bench", [{"role": "system", "content": "Answer briefly: {{ question }}"}]
            )
            reg.labels.set("prompt", "bench", "production", 1)
            key = reg.keys.create("bench", rpm=10**9, tpm=10**9).secret
        ports = {}
        for name in ("a", "b"):
            ports[name] = free_port()
            config = replica_config(tmp, name, database_url, stub)
            procs.append(start([str(BIN / "lockgate"), "serve", "-c", str(config),
                                "--port", str(ports[name])], log=tmp / f"{name}.log"))  # fmt: skip
        for port in ports.values():
            wait_ready(f"http://127.0.0.1:{port}/readyz", timeout=120)
        lb1, lb2 = free_port(), free_port()
        (tmp / "haproxy.cfg").write_text(haproxy_config(lb1, lb2, ports["a"], ports["b"]))
        procs.append(start([HAPROXY, "-db", "-f", str(tmp / "haproxy.cfg")],
                           log=tmp / "haproxy.log"))  # fmt: skip
        urls = dict(zip(TARGETS, (f"http://127.0.0.1:{p}" for p in (ports["a"], lb1, lb2)),
                        strict=True))  # fmt: skip
        for url in urls.values():
            wait_ready(url + "/readyz")
        body = {"model": "bench", "messages": MESSAGES, "prompt": PROMPT}
        auth = {"Authorization": f"Bearer {key}"}
        path = "/v1/chat/completions"
        check = httpx.post(urls[TARGETS[2]] + path, json=body, headers=auth, timeout=30).json()
        assert check["choices"][0]["message"]["content"] == "Hello world", check

        for url in urls.values():  # warm-up: connections, caches, both replicas
            run_wrk(url + path, body, 16, 2, tmp, auth)
        runs: dict[tuple[str, int], list[dict[str, float]]] = {}
        for _ in range(args.rounds):
            for c in levels:
                for name, url in urls.items():
                    result = run_wrk(url + path, body, c, args.duration, tmp, auth)
                    runs.setdefault((name, c), []).append(result)
        report(runs, levels, args)
    finally:
        for proc in reversed(procs):
            stop(proc)


def report(runs: dict[tuple[str, int], list[dict[str, float]]], levels: list[int],
           args: Any) -> None:  # fmt: skip
    medians = {k: median_of(v) for k, v in runs.items()}
    print(
        f"\nlockgate behind HAProxy: {os.cpu_count()} cores, wrk {args.duration} s per run, "
        f"median of {args.rounds} rounds (targets measured in turn within each round)\n"
    )
    print("| target | concurrency | req/s | p50 ms | p99 ms | non-2xx |")
    print("|---|---:|---:|---:|---:|---:|")
    for c in levels:
        for name in TARGETS:
            m = medians[(name, c)]
            print(f"| {name} | {c} | {m['rps']:,.0f} | {m['p50']:.2f} | {m['p99']:.2f} "
                  f"| {m['errors']:.0f} |")  # fmt: skip
    print()
    for c in levels:
        direct, one, two = (medians[(name, c)] for name in TARGETS)
        print(
            f"c={c}: HAProxy over A {one['rps'] / direct['rps']:.2f}x the req/s of A directly "
            f"(p50 {one['p50'] - direct['p50']:+.2f} ms); over A+B "
            f"{two['rps'] / direct['rps']:.2f}x A directly, {two['rps'] / one['rps']:.2f}x "
            "over A alone"
        )


if __name__ == "__main__":
    main()
