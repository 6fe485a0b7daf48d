"""Benchmark: the UI's pages with real volumes (issue 13: under 200 ms each on 2 cores).

Fills a registry (bulk inserts) with ``--calls`` call records (1,000,000) spread over 30
days, ``--prompts`` prompts (1,000) x ``--versions`` versions (20), a few models, a
fine-tuning job with 2,000 loss events, drift and monitor runs; starts ``lockgate serve``,
signs in and prints the median render time of each page (server time seen by the client:
the whole HTTP round trip on loopback).

    .venv/bin/python tests/benchmarks/ui_pages.py [--calls 1000000] [--prompts 1000]
        [--versions 20] [--repeat 15] [--postgres] [--compare]

``--postgres`` runs on a scratch PostgreSQL database (tests/conftest.py's, dropped after),
and runs ``ANALYZE`` after the bulk load, as autovacuum would soon after one.
``--compare`` then measures every page a second time, on the same records and the same
running server, with the call-record indexes as they were before migration 0009, and prints
both side by side with their ratio.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import random
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlalchemy import insert, text

from lockgate.registry import Registry, RegistrySettings
from lockgate.registry.records import LineageEdge
from lockgate.registry.tables import CallRecord, Label, Prompt, PromptVersion

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.ui import conftest  # noqa: E402
from tests.ui.conftest import Keys, start_serve  # noqa: E402


class _WithDatabase:
    """``yaml`` for tests/ui/conftest.py's ``start_serve``: adds the database URL."""

    def __init__(self, url: str) -> None:
        self.url = url

    def safe_dump(self, config: dict[str, Any]) -> str:
        config["registry"]["database_url"] = self.url
        return str(yaml.safe_dump(config))


ROUTES = [f"route-{i}" for i in range(9)]
MODELS = ["gpt-small", "gpt-large", "claude-mini", "llama-8b", "mistral-7b"]
CHUNK = 50_000


def fill(reg: Registry, n_calls: int, n_prompts: int, n_versions: int) -> dict[str, str]:
    rng = random.Random(13)
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    key_ids = [reg.keys.create(f"app-{i}", scopes=["inference"]).id for i in range(5)]
    with reg.db.write() as session:
        prompts = [
            {"id": i + 1, "name": f"team-{i % 10}/prompt-{i:04d}", "created_at": now}
            for i in range(n_prompts)
        ]
        session.execute(insert(Prompt.__table__), prompts)  # type: ignore[arg-type]
        versions, labels = [], []
        for p in prompts:
            for v in range(1, n_versions + 1):
                template = f"v{v} of {p['name']}: answer {{{{ question }}}} in {{{{ lang }}}}"
                versions.append({
                    "prompt_id": p["id"], "version": v, "kind": "text", "template": template,
                    "config": {"temperature": 0.1 * (v % 10)}, "variables": ["lang", "question"],
                    "message": f"change {v}", "author": "bench",
                    "content_hash": hashlib.sha256(template.encode()).hexdigest(),
                    "created_at": now - timedelta(hours=n_versions - v),
                })  # fmt: skip
            for name, version in (("latest", n_versions), ("production", n_versions - 1)):
                labels.append({"subject_type": "prompt", "subject_id": p["id"],
                               "name": name, "version": version, "updated_at": now,
                               "updated_by": "bench"})  # fmt: skip
        session.execute(insert(PromptVersion.__table__), versions)  # type: ignore[arg-type]
        session.execute(insert(Label.__table__), labels)  # type: ignore[arg-type]
    print(f"  prompts: {n_prompts} x {n_versions} in {time.perf_counter() - t0:.1f} s", flush=True)

    t0 = time.perf_counter()
    table = insert(CallRecord.__table__)  # type: ignore[arg-type]
    span = timedelta(days=30).total_seconds()
    done = 0
    while done < n_calls:
        rows = []
        for i in range(done, min(done + CHUNK, n_calls)):
            r = rng.random()
            status = 200 if r < 0.97 else (429 if r < 0.99 else 500)
            prompt = rng.randrange(100)
            rows.append({
                "created_at": now - timedelta(seconds=span * (1 - i / n_calls)),
                "request_id": f"req-{i:08d}", "trace_id": f"{i:032x}", "operation": "chat",
                "route": "route-rare" if i % 1000 == 0 else ROUTES[i % len(ROUTES)],
                "model": MODELS[(i // 7) % len(MODELS)], "provider": "openai",
                "deployment": None, "prompt_name": f"team-{prompt % 10}/prompt-{prompt:04d}",
                "prompt_version": 1 + i % n_versions, "key_id": key_ids[i % len(key_ids)],
                "status_code": status, "error_type": None if status == 200 else "upstream",
                "stream": i % 2 == 0, "latency_ms": 50 + rng.random() * 900, "ttft_ms": None,
                "input_tokens": 100, "output_tokens": 50, "cost_usd": 0.0001,
            })  # fmt: skip
        with reg.db.write() as session:
            session.execute(table, rows)
        done += len(rows)
    print(f"  call records: {n_calls} in {time.perf_counter() - t0:.1f} s", flush=True)

    for i in range(30):
        reg.models.register(f"model-{i:02d}", "upstream", {"model": MODELS[i % 5]})
        reg.models.register(f"model-{i:02d}", "upstream", {"model": MODELS[(i + 1) % 5]})
    reg.labels.set("model", "model-01", "production", 1, force=True, reason="bench")
    reg.runs.create("eval", name="e", lineage=[LineageEdge("model", "model-01@1", "input")])
    job, _ = reg.jobs.create("finetune", {"model": "model-01", "base_model": "tiny"})
    with reg.db.write() as session:
        session.execute(
            text("INSERT INTO job_events (job_id, level, message, data, created_at) "
                 "VALUES (:j, 'info', :m, :d, :t)"),
            [{"j": job.id, "m": f"step {s}/2000", "t": now,
              "d": f'{{"step": {s}, "total_steps": 2000, "loss": {2.0 / s}}}'}
             for s in range(1, 2001)],
        )  # fmt: skip
    drift = reg.runs.create("drift", name="d", params={"reference": "a", "current": "b"})
    reg.runs.set_status(drift.id, "succeeded", metrics={"share_drifted": 0.2, "dataset_drift": 0})
    for _ in range(60):
        mon = reg.runs.create("monitor", name="watch", tags={"decision": "quiet", "reason": "ok"})
    return {"job": job.id, "drift": drift.id, "monitor": mon.id}


def measure(url: str, key: str, pages: list[str], repeat: int) -> dict[str, float]:
    client = httpx.Client(base_url=url, timeout=60)
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/ui/sign-in").text)
    assert token is not None
    answer = client.post("/ui/sign-in", data={"csrf": token.group(1), "key": key})
    assert answer.status_code == 303, answer.text
    out = {}
    for path in pages:
        samples = []
        for i in range(repeat + 2):
            t0 = time.perf_counter()
            answer = client.get(path)
            elapsed = (time.perf_counter() - t0) * 1000
            assert answer.status_code == 200, (path, answer.status_code, answer.text[:500])
            if i >= 2:  # two warm-ups
                samples.append(elapsed)
        out[path] = statistics.median(samples)
        print(f"  {out[path]:8.1f} ms  {path}", flush=True)
    return out


def analyze(reg: Registry) -> None:
    """PostgreSQL's ``ANALYZE``, as autovacuum runs it soon after a bulk load."""
    t0 = time.perf_counter()
    with reg.db.write() as session:
        session.execute(text("ANALYZE"))
    print(f"  ANALYZE in {time.perf_counter() - t0:.1f} s", flush=True)


def measure_without_0009(served: Any, key: str, pages: list[str], repeat: int) -> dict[str, float]:
    """The pages again, on the same records and server, with the call-record indexes as they
    were before migration 0009 (its new indexes dropped, the ones it replaced rebuilt)."""
    path = ROOT / "registry/migrations/versions/0009_call_record_filter_indexes.py"
    spec = importlib.util.spec_from_file_location("migration_0009", path)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    t0 = time.perf_counter()
    with served.registry.db.write() as session:
        for name in migration.NEW:
            session.execute(text(f"DROP INDEX {name}"))
        for name, columns in migration.REPLACED.items():
            session.execute(text(f"CREATE INDEX {name} ON call_records ({', '.join(columns)})"))
    print(f"indexes as before 0009 in {time.perf_counter() - t0:.1f} s", flush=True)
    if not served.registry.db.is_sqlite:
        analyze(served.registry)
    return measure(served.url, key, pages, repeat)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--versions", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--postgres", action="store_true", help="on a scratch PostgreSQL db")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also measure with the call-record indexes before migration 0009",
    )
    args = parser.parse_args()
    if not args.postgres:
        run(args, None)
        return
    from lockgate.registry import db as registry_db
    from tests.conftest import scratch_pg_database

    with scratch_pg_database("lockgate_bench") as url:
        engine = registry_db.make_engine(url)
        registry_db.upgrade(engine)
        engine.dispose()
        run(args, url)


def run(args: argparse.Namespace, database_url: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = folder / "data"
        data.mkdir()
        settings = RegistrySettings(data_dir=data, database_url=database_url)
        reg = Registry(settings, actor="bench")
        print(f"filling {'PostgreSQL' if database_url else 'SQLite'}:", flush=True)
        ids = fill(reg, args.calls, args.prompts, args.versions)
        if database_url:
            analyze(reg)
        reader = reg.keys.create("reader", scopes=["registry:read"])
        reg.close()
        if database_url:  # start_serve names only the data folder: point it at PostgreSQL
            conftest.yaml = _WithDatabase(database_url)  # type: ignore[attr-defined]
        served = start_serve(folder, settings, Keys("", str(reader.secret), ""))
        try:
            newest = served.registry.calls.query(limit=1).calls[0].id
            pages = [
                "/ui/prompts", "/ui/prompts?q=prompt-09", "/ui/prompts?page=19",
                "/ui/prompts/team-0/prompt-0500", "/ui/prompt-diff/team-0/prompt-0500?a=1&b=20",
                "/ui/prompt-labels/team-0/prompt-0010?label=production&version=20",
                "/ui/prompt-evidence/team-0/prompt-0010?version=11",
                "/ui/calls", f"/ui/calls?before={newest // 2}", "/ui/calls?route=route-3",
                "/ui/calls?route=route-rare", "/ui/calls?route=no-such-route",
                "/ui/calls?model=gpt-large", "/ui/calls?status=5xx", "/ui/calls?status=429",
                "/ui/calls?since=1h", "/ui/calls?since=7d&until=6d", "/ui/calls?key=app-3",
                "/ui/calls?prompt=team-1/prompt-0011@3", "/ui/calls?route=route-2&status=5xx",
                f"/ui/calls/{newest // 3}", "/ui/models", "/ui/models/model-01",
                "/ui/model-version/model-01?version=1",
                "/ui/model-labels/model-01?label=production&version=2",
                "/ui/jobs", f"/ui/jobs/{ids['job']}",
                "/ui/drift", f"/ui/drift/{ids['drift']}", "/ui/monitors",
                f"/ui/monitors/{ids['monitor']}",
            ]  # fmt: skip
            print(f"median of {args.repeat} requests, after 2 warm-ups:", flush=True)
            times = measure(served.url, str(reader.secret), pages, args.repeat)
            slow = {p: t for p, t in times.items() if t >= 200}
            print(f"slowest: {max(times.values()):.1f} ms; pages at or over 200 ms: "
                  f"{len(slow)}{' ' + str(sorted(slow)) if slow else ''}")  # fmt: skip
            if args.compare:
                before = measure_without_0009(served, str(reader.secret), pages, args.repeat)
                print("\n| page | indexes before 0009 (ms) | with 0009 (ms) | ratio |")
                print("|---|---:|---:|---:|")
                for path in pages:
                    ratio = before[path] / times[path] if times[path] else float("nan")
                    print(f"| `{path}` | {before[path]:.1f} | {times[path]:.1f} | {ratio:.1f}x |")
        finally:
            served.registry.close()
            served.stop()


if __name__ == "__main__":
    main()
