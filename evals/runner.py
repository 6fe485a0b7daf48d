"""The eval runner: loads the data, pins the target, has it answer every example (cached,
resumable), scores every example and records the run in the registry.

The target is whatever :func:`evals.target.resolve_target` chose for the suite's
``target.kind`` (a remote endpoint, the in-process gateway, a scikit-learn model); the
runner itself never looks at the kind. Everything that can be checked is checked before the
first call: the suite, the target's versions and key, the scorers, the columns every
mapping names, and the gates' metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs

from lockgate.evals.client import EVAL_RETRY_TIMING, TransportFactory
from lockgate.evals.compare import MetricSummary, summarise
from lockgate.evals.data import EvalDataset, load_dataset
from lockgate.evals.errors import EvalError, SuiteInvalid
from lockgate.evals.records import ExampleResult, ExampleScore, digest, example_keys
from lockgate.evals.retry import Backoff
from lockgate.evals.scorers import BaseScorer, ScoreContext, build_scorers
from lockgate.evals.store import ResponseCache, ResultsFile
from lockgate.evals.suite import Suite
from lockgate.evals.target import Answering, Target, TargetOptions, resolve_target
from lockgate.registry.records import LineageEdge

if TYPE_CHECKING:
    from lockgate.registry.registry import Registry

ProgressHook = Callable[[int, int], None]  # (done, total)


def default_cache_dir() -> Path:
    return platformdirs.user_cache_path("lockgate", appauthor=False) / "evals"


@dataclass(frozen=True)
class Shard:
    """``i/n`` (1-based): this shard takes the examples whose index is ``i-1`` modulo ``n``."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        i, sep, n = text.partition("/")
        if not sep or not i.isdigit() or not n.isdigit() or not 1 <= int(i) <= int(n):
            raise EvalError(f"--shard takes i/n with 1 <= i <= n, not {text!r}", param="shard")
        return cls(int(i), int(n))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, index: int) -> bool:
        return index % self.count == self.index - 1


@dataclass
class EvalRun:
    """A finished run: its examples, metric summaries and bookkeeping."""

    suite: Suite
    dataset_source: str
    dataset_digest: str
    target: str
    target_identity: dict[str, Any]
    results: list[ExampleResult]
    summaries: dict[str, MetricSummary]
    scorers: list[BaseScorer]
    run_id: str | None = None
    suite_digest: str = ""
    shard: str | None = None
    calls: int = 0
    cache_hits: int = 0
    resumed: int = 0
    errors: int = 0
    wall_s: float = 0.0
    lineage: list[LineageEdge] = field(default_factory=list)


@dataclass
class RunOptions:
    """How to run a suite. ``transport_factory`` is the in-process gateway (for suites without
    ``target.base_url``); ``network_transport`` replaces aiohttp's pool for remote endpoints
    (tests, benchmarks); ``retry_timing`` is the backoff of :mod:`evals.retry` (the number of
    retries is the suite's)."""

    cache_dir: Path | None = None
    use_cache: bool = True
    resume: bool = True
    shard: Shard | None = None
    transport_factory: TransportFactory | None = None
    network_transport: TransportFactory | None = None
    progress: ProgressHook | None = None
    headers: dict[str, str] = field(default_factory=dict)
    retry_timing: Backoff = EVAL_RETRY_TIMING


def _check_columns(
    suite: Suite, data: EvalDataset, target: Target, scorers: Sequence[BaseScorer]
) -> None:
    needed = list(target.required_columns())
    for i, spec in enumerate(suite.scorers):
        ref = spec.reference or suite.reference
        if ref is not None:
            needed.append((ref, f"scorers[{i}].reference" if spec.reference else "reference"))
    data.require_columns(needed)
    metrics = {s.metric for s in scorers}
    for i, gate in enumerate(suite.gates):
        if gate.metric not in metrics:
            raise SuiteInvalid(
                f"names the metric {gate.metric!r}; the scorers give: {', '.join(sorted(metrics))}",
                param=f"gates[{i}].metric",
            )


def run_suite(
    suite: Suite, *, registry: Registry | None = None, options: RunOptions | None = None
) -> EvalRun:
    """Run ``suite`` and return its results (sync wrapper over :func:`run_suite_async`).

    The heap that exists before the run (the imported libraries, the registry) is frozen out
    of the garbage collector for the run's duration: otherwise every full collection walks
    it again, pausing the event loop for tens of milliseconds at a time.
    """
    gc.freeze()
    try:
        return asyncio.run(run_suite_async(suite, registry=registry, options=options))
    finally:
        gc.unfreeze()


async def run_suite_async(
    suite: Suite, *, registry: Registry | None = None, options: RunOptions | None = None
) -> EvalRun:
    opts = options or RunOptions()
    started = time.perf_counter()
    data = load_dataset(suite.dataset, base_dir=suite.base_dir, registry=registry)
    scorers = build_scorers(suite.scorers, suite.reference)
    target = resolve_target(suite, registry, TargetOptions(
        in_process=opts.transport_factory, network=opts.network_transport,
        headers=opts.headers, retry_timing=opts.retry_timing,
    ))  # fmt: skip
    _check_columns(suite, data, target, scorers)

    reference_col = suite.reference
    keys = example_keys(data.rows)
    examples = [
        (i, keys[i], row)
        for i, row in enumerate(data.rows)
        if opts.shard is None or opts.shard.holds(i)
    ]
    epochs = target.epochs
    identity = {"suite": suite.name, "target": target.identity, "dataset": data.digest,
                "epochs": epochs, "scorers": [s.model_dump() for s in suite.scorers],
                "shard": str(opts.shard) if opts.shard else None}  # fmt: skip
    cache_dir = opts.cache_dir or default_cache_dir()
    results_file = ResultsFile(
        cache_dir / "results" / f"{suite.name.replace('/', '_')}-{digest(identity, 20)}.jsonl"
    )
    if not opts.resume:
        results_file.remove()
    done = results_file.load()
    lineage = [_dataset_edge(data), *target.lineage]
    suite_digest = suite.digest(data.digest)
    run_id = None
    if registry is not None:
        run_id = registry.runs.create(
            "eval", name=suite.name,
            params={"suite": suite.name, "suite_digest": suite_digest, "target": target.name,
                    "dataset": data.source, "dataset_digest": data.digest, "epochs": epochs,
                    "shard": str(opts.shard) if opts.shard else None},
            tags={"target": target.name}, lineage=lineage,
        ).id  # fmt: skip
    run = EvalRun(
        suite, data.source, data.digest, target.name, target.identity, [], {}, scorers,
        run_id=run_id, suite_digest=suite_digest, shard=str(opts.shard) if opts.shard else None,
        lineage=lineage,
    )  # fmt: skip
    try:
        pending = [
            ExampleResult(
                key, i, e, row, reference=row.get(reference_col) if reference_col else None
            )
            for i, key, row in examples
            for e in range(epochs)
            if (i, e) not in done
        ]
        run.resumed = len(examples) * epochs - len(pending)
        await _answer(suite, target, pending, scorers, registry, results_file, opts, run)
        finished = results_file.load()
        run.results = [finished[(i, e)] for i, _, _ in examples for e in range(epochs)]
        run.errors = sum(1 for r in run.results if r.error)
        run.summaries = summarise(scorers, [r for r in run.results if r.scores], suite.stats)
        run.wall_s = time.perf_counter() - started
        if registry is not None and run_id is not None:
            _record(registry, run_id, run, results_file.path)
        results_file.remove()  # finished: a rerun starts over (answered from the cache)
    except BaseException as exc:
        if registry is not None and run_id is not None:
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            with contextlib.suppress(Exception):
                registry.runs.set_status(run_id, "failed", error=f"{message} (rerun to resume)")
        raise
    finally:
        results_file.close()
    return run


def _dataset_edge(data: EvalDataset) -> LineageEdge:
    return LineageEdge("dataset", data.registry_ref or f"{data.source}#{data.digest}", "input")


async def _score(
    sample: ExampleResult, scorers: Sequence[BaseScorer], ctx: ScoreContext
) -> dict[str, ExampleScore]:
    return {s.metric: await s.score(sample, ctx) for s in scorers}


async def _answer(
    suite: Suite, target: Target, pending: list[ExampleResult], scorers: Sequence[BaseScorer],
    registry: Registry | None, results_file: ResultsFile, opts: RunOptions, run: EvalRun,
) -> None:  # fmt: skip
    """Has ``target`` answer the pending examples; scores and records each as it is answered."""
    cache = None
    total, finished = len(pending), 0

    async def done(sample: ExampleResult) -> None:
        nonlocal finished
        if sample.error is None:
            sample.scores = await _score(sample, scorers, ctx)
        elif suite.on_error == "score_zero":
            sample.scores = {s.metric: ExampleScore(0.0, detail={"error": sample.error})
                             for s in scorers}  # fmt: skip
        results_file.append(sample)
        finished += 1
        if opts.progress is not None:
            opts.progress(finished, total)

    answering = Answering(done, suite.on_error)
    try:
        ctx = ScoreContext(target.open(), registry)
        for s in scorers:
            s.prepare(ctx)
        if opts.use_cache:
            cache = ResponseCache((opts.cache_dir or default_cache_dir()) / "cache.sqlite")
            answering.cache = cache
        await target.answer(pending, answering)
    finally:
        run.calls = answering.calls
        if cache is not None:
            run.cache_hits = cache.hits
            cache.close()
        await target.close()


def _record(registry: Registry, run_id: str, run: EvalRun, results_path: Path) -> None:
    """Per-example rows as the ``examples.jsonl`` artifact, figures as metrics."""
    with tempfile.TemporaryDirectory(prefix="lockgate-eval-") as tmp:
        path = Path(tmp) / "examples.jsonl"
        from lockgate.evals.records import canonical_json

        with path.open("w", encoding="utf-8") as f:
            for r in run.results:
                f.write(canonical_json(r.to_row()) + "\n")
        registry.runs.log_artifact(run_id, "examples.jsonl", path)
    metrics = {m: s.value for m, s in run.summaries.items() if s.value == s.value}
    metrics.update({"eval.examples": float(len({r.key for r in run.results})),
                    "eval.errors": float(run.errors), "eval.cache_hits": float(run.cache_hits),
                    "eval.calls": float(run.calls)})  # fmt: skip
    registry.runs.log_metrics(run_id, metrics)
    registry.runs.set_status(run_id, "succeeded")
