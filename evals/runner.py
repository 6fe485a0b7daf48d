"""The eval runner: loads the data, pins the target, calls it concurrently (cached,
resumable), scores every example and records the run in the registry.

Everything that can be checked is checked before the first call: the suite, the scorers,
the columns every mapping names, and the gates' metrics.
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

from lockgate.evals.client import (
    IN_PROCESS_URL,
    CallFailed,
    TargetClient,
    TransportFactory,
    trace_id_of,
)
from lockgate.evals.compare import MetricSummary, summarise
from lockgate.evals.data import EvalDataset, load_dataset
from lockgate.evals.errors import EvalError, SuiteInvalid, TargetFailed
from lockgate.evals.records import ExampleResult, ExampleScore, digest, example_keys
from lockgate.evals.scorers import BaseScorer, ScoreContext, build_scorers
from lockgate.evals.store import ResponseCache, ResultsFile
from lockgate.evals.suite import Suite
from lockgate.evals.target import (
    ResolvedLLMTarget,
    ResolvedSklearnTarget,
    resolve_llm_target,
    resolve_sklearn_target,
)
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
    cache_dir: Path | None = None
    use_cache: bool = True
    resume: bool = True
    shard: Shard | None = None
    transport_factory: TransportFactory | None = None
    progress: ProgressHook | None = None
    headers: dict[str, str] = field(default_factory=dict)
    backoff: float = 0.1


def _check_columns(
    suite: Suite, data: EvalDataset, target: Any, scorers: Sequence[BaseScorer]
) -> None:
    needed = list(target.required_columns())
    for i, spec in enumerate(suite.scorers):
        ref = spec.reference or suite.reference
        if ref is not None and isinstance(target, ResolvedLLMTarget):
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
    target: ResolvedLLMTarget | ResolvedSklearnTarget
    if suite.target.kind == "sklearn":
        target = resolve_sklearn_target(suite.target, registry)
    else:
        target = resolve_llm_target(suite.target, registry)
    _check_columns(suite, data, target, scorers)

    reference_col = suite.target.label if suite.target.kind == "sklearn" else suite.reference
    keys = example_keys(data.rows)
    examples = [
        (i, keys[i], row)
        for i, row in enumerate(data.rows)
        if opts.shard is None or opts.shard.holds(i)
    ]
    epochs = 1 if suite.target.kind == "sklearn" else suite.epochs
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
        run_id = registry.create_run(
            "eval", name=suite.name,
            params={"suite": suite.name, "suite_digest": suite_digest, "target": target.label,
                    "dataset": data.source, "dataset_digest": data.digest, "epochs": epochs,
                    "shard": str(opts.shard) if opts.shard else None},
            tags={"target": target.label}, lineage=lineage,
        ).id  # fmt: skip
    run = EvalRun(
        suite, data.source, data.digest, target.label, target.identity, [], {}, scorers,
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
        if isinstance(target, ResolvedSklearnTarget):
            await _run_sklearn(target, pending, scorers, registry, results_file)
        else:
            await _run_llm(suite, target, pending, scorers, registry, results_file, opts, run)
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
                registry.set_run_status(run_id, "failed", error=f"{message} (rerun to resume)")
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


async def _run_sklearn(
    target: ResolvedSklearnTarget, pending: list[ExampleResult], scorers: Sequence[BaseScorer],
    registry: Registry | None, results_file: ResultsFile,
) -> None:  # fmt: skip
    ctx = ScoreContext(None, registry)
    for s in scorers:
        s.prepare(ctx)
    target.predict(pending)
    for sample in pending:
        sample.scores = await _score(sample, scorers, ctx)
        results_file.append(sample)


async def _run_llm(
    suite: Suite, target: ResolvedLLMTarget, pending: list[ExampleResult],
    scorers: Sequence[BaseScorer], registry: Registry | None, results_file: ResultsFile,
    opts: RunOptions, run: EvalRun,
) -> None:  # fmt: skip
    base_url = suite.target.base_url if suite.target.kind == "llm" else None
    transport = None
    if base_url is None:
        if opts.transport_factory is None:
            raise EvalError(
                "target.base_url is not set and no in-process gateway is available here; "
                "set target.base_url (e.g. http://127.0.0.1:4000/v1)",
                param="target.base_url",
            )
        transport, base_url = opts.transport_factory(), IN_PROCESS_URL
    headers = {**suite.target.headers, **opts.headers} if suite.target.kind == "llm" else {}
    if suite.target.kind == "llm" and suite.target.api_key:
        headers.setdefault("authorization", f"Bearer {suite.target.api_key}")
    client = TargetClient(base_url, timeout=suite.timeout, retries=suite.retries,
                          concurrency=suite.concurrency, headers=headers, transport=transport,
                          backoff=opts.backoff)  # fmt: skip
    ctx = ScoreContext(client, registry)
    for s in scorers:
        s.prepare(ctx)
    cache = None
    if opts.use_cache:
        cache = ResponseCache((opts.cache_dir or default_cache_dir()) / "cache.sqlite")
    semaphore = asyncio.Semaphore(suite.concurrency)
    total, finished = len(pending), 0

    stopping = False  # set by the first fatal error, so queued examples are not sent

    async def one(sample: ExampleResult) -> None:
        nonlocal finished, stopping
        async with semaphore:
            if stopping:
                return
            body = target.request(sample.input, registry)
            key = digest({"target": target.identity, "body": body, "epoch": sample.epoch})
            hit = cache.get(key) if cache is not None else None
            if hit is not None:
                sample.cached = True
                _fill(sample, hit)
            else:
                try:
                    result = await client.call("/chat/completions", body)
                except EvalError:
                    stopping = True
                    raise
                except CallFailed as exc:
                    if suite.on_error == "fail":
                        stopping = True
                        raise TargetFailed(
                            f"example {sample.index} (epoch {sample.epoch}): {exc}; "
                            "rerun to resume, or set on_error: skip | score_zero",
                        ) from exc
                    sample.error = str(exc)
                else:
                    run.calls += 1
                    response = _response(
                        result.data, result.latency_ms, trace_id_of(result.headers)
                    )
                    _fill(sample, response)
                    if cache is not None:
                        cache.put(key, response)
            if sample.error is None:
                sample.scores = await _score(sample, scorers, ctx)
            elif suite.on_error == "score_zero":
                sample.scores = {s.metric: ExampleScore(0.0, detail={"error": sample.error})
                                 for s in scorers}  # fmt: skip
            results_file.append(sample)
            finished += 1
            if opts.progress is not None:
                opts.progress(finished, total)

    try:
        async with asyncio.TaskGroup() as group:
            for sample in pending:
                group.create_task(one(sample))
    except* Exception as excs:  # the first failure stops the run; finished rows are kept
        raise excs.exceptions[0] from None
    finally:
        if cache is not None:
            run.cache_hits = cache.hits
            cache.close()
        await client.close()


def _response(data: dict[str, Any], latency_ms: float, trace_id: str | None) -> dict[str, Any]:
    try:
        message = data["choices"][0]["message"]
        output = message.get("content")
        if output is None and message.get("tool_calls"):
            output = message["tool_calls"]
    except (KeyError, IndexError, TypeError, AttributeError):
        output = None
    return {"output": output, "usage": data.get("usage") or {}, "latency_ms": latency_ms,
            "trace_id": trace_id, "model": data.get("model")}  # fmt: skip


def _fill(sample: ExampleResult, response: dict[str, Any]) -> None:
    sample.output = response.get("output")
    sample.usage = dict(response.get("usage") or {})
    sample.latency_ms = response.get("latency_ms")
    sample.trace_id = response.get("trace_id")
    if sample.output is None:
        sample.error = "the response has no choices[0].message.content"


def _record(registry: Registry, run_id: str, run: EvalRun, results_path: Path) -> None:
    """Per-example rows as the ``examples.jsonl`` artifact, figures as metrics."""
    with tempfile.TemporaryDirectory(prefix="lockgate-eval-") as tmp:
        path = Path(tmp) / "examples.jsonl"
        from lockgate.evals.records import canonical_json

        with path.open("w", encoding="utf-8") as f:
            for r in run.results:
                f.write(canonical_json(r.to_row()) + "\n")
        registry.log_artifact(run_id, "examples.jsonl", path)
    metrics = {m: s.value for m, s in run.summaries.items() if s.value == s.value}
    metrics.update({"eval.examples": float(len({r.key for r in run.results})),
                    "eval.errors": float(run.errors), "eval.cache_hits": float(run.cache_hits),
                    "eval.calls": float(run.calls)})  # fmt: skip
    registry.log_metrics(run_id, metrics)
    registry.set_run_status(run_id, "succeeded")
