"""Micro-benchmark: resolving NAME@LABEL from the registry, uncached.

Target (issue 2): p50 under 1 ms on SQLite. For reference, MLflow's ``load_prompt`` by
alias, uncached, measures about 23 ms on the same machine kind.

    .venv/bin/python tests/benchmarks/registry_resolve.py [--n 5000] [--postgres URL]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from lockgate.registry import Registry, RegistrySettings


def measure(reg: Registry, n: int) -> dict[str, float]:
    for i in range(20):
        reg.prompts.push("support", f"v{i}: answer {{{{ question }}}} in {{{{ lang }}}}")
    reg.labels.set("prompt", "support", "production", 7)
    for _ in range(200):  # warm the connection pool and statement cache
        reg.prompts.get("support@production")
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        reg.prompts.get("support@production")
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    samples.sort()
    render = []
    prompt = reg.prompts.get("support@production")
    for _ in range(n):
        t0 = time.perf_counter_ns()
        reg.prompts.render(prompt, {"question": "why?", "lang": "en"})
        render.append((time.perf_counter_ns() - t0) / 1e6)
    render.sort()
    return {
        "p50_ms": statistics.median(samples),
        "p99_ms": samples[int(len(samples) * 0.99) - 1],
        "render_p50_ms": statistics.median(render),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument(
        "--postgres",
        help="also measure on PostgreSQL: a server URL; a scratch database is made and dropped",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        backends = {"sqlite": RegistrySettings(data_dir=Path(tmp))}
        if args.postgres:
            backends["postgres"] = RegistrySettings(
                data_dir=Path(tmp), database_url=scratch_database(args.postgres)
            )
        print(f"resolve NAME@LABEL, uncached, n={args.n}")
        try:
            for name, settings in backends.items():
                reg = Registry(settings, migrate=True)
                r = measure(reg, args.n)
                reg.close()
                print(
                    f"  {name:8s} p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms  "
                    f"(render p50 {r['render_p50_ms']:.3f} ms)"
                )
        finally:
            if args.postgres:
                drop_database(args.postgres)


SCRATCH = "lockgate_bench_resolve"


def scratch_database(server_url: str) -> str:
    import psycopg
    from sqlalchemy.engine import make_url

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{SCRATCH}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{SCRATCH}"')
    return make_url(server_url).set(database=SCRATCH).render_as_string(hide_password=False)


def drop_database(server_url: str) -> None:
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{SCRATCH}" WITH (FORCE)')


if __name__ == "__main__":
    main()
