"""Targets: what an eval run evaluates, chosen once from the suite's ``target`` and pinned
before the first call.

Every target is a :class:`Target`; there is one class per kind:

* :class:`~evals.chat_target.RemoteEndpoint` (``target.base_url`` set): chat completions
  from an OpenAI-compatible server over HTTP;
* :class:`~evals.chat_target.InProcessGateway` (no ``base_url``): the same, from lockgate's
  gateway running in this process;
* :class:`~evals.sklearn_target.SklearnModel` (``kind: sklearn``): predictions of a registered
  scikit-learn model, in process, in one batch.

:func:`resolve_target` looks the suite's ``target.kind`` up in :data:`TARGET_KINDS` once; the
runner never looks at the kind again. A new kind (a prediction endpoint, a drift target) is
one class with these members and one entry in that table.

The runner owns the cache, the resume file, scoring and progress; a target owns how an
example gets its answer. It calls ``answering.done(sample)`` once per example it answered
(with ``sample.output`` set, or ``sample.error`` when its call failed and ``on_error`` lets
the run go on), in any order, and may stop early by raising.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from lockgate.evals.chat_target import Connection, resolve_chat_target
from lockgate.evals.client import EVAL_RETRY_TIMING, TransportFactory
from lockgate.evals.records import ExampleResult
from lockgate.evals.retry import Backoff
from lockgate.evals.sklearn_target import SklearnModel
from lockgate.evals.suite import OnError
from lockgate.registry.records import LineageEdge

if TYPE_CHECKING:
    from lockgate.evals.scorers import Caller
    from lockgate.evals.store import ResponseCache
    from lockgate.evals.suite import Suite
    from lockgate.registry.registry import Registry


@dataclass
class Answering:
    """What the runner lends a target while it answers: where finished examples go, the
    response cache (None: do not cache) and the suite's ``on_error``; the target counts the
    calls it made in ``calls``."""

    done: Callable[[ExampleResult], Awaitable[None]]
    on_error: OnError
    cache: ResponseCache | None = None
    calls: int = 0


class Target(Protocol):
    """What an eval run evaluates, with its versions pinned."""

    @property
    def name(self) -> str:
        """What the run records as its target: ``prompt:qa@7``, ``registry:churn@3``, a
        route name."""
        ...

    @property
    def identity(self) -> dict[str, Any]:
        """Everything an answer depends on; the cache key and the resume file hang on it."""
        ...

    @property
    def lineage(self) -> list[LineageEdge]:
        """The registry versions the run reads (prompt, model)."""
        ...

    @property
    def epochs(self) -> int:
        """Answers per example (1 for a deterministic target, whatever the suite says)."""
        ...

    def required_columns(self) -> list[tuple[str, str]]:
        """``(column, the suite field that names it)`` for every column the target reads."""
        ...

    def open(self) -> Caller | None:
        """Opens the target's connections; the client model-based scorers call through, or
        None when the target makes no calls."""
        ...

    async def answer(self, pending: Sequence[ExampleResult], answering: Answering) -> None:
        """Answer every pending example, handing each to ``answering.done``."""
        ...

    async def close(self) -> None:
        """Closes what :meth:`open` opened (safe to call when it was not)."""
        ...


@dataclass(frozen=True)
class TargetOptions:
    """How targets that call reach their server: ``in_process`` is the in-process gateway's
    transport (from the CLI root), ``network`` replaces aiohttp's pool for remote endpoints
    (tests, benchmarks); ``headers`` are added to every call."""

    in_process: TransportFactory | None = None
    network: TransportFactory | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    retry_timing: Backoff = EVAL_RETRY_TIMING
    rng: random.Random | None = None


TargetBuilder = Callable[["Suite", "Registry | None", TargetOptions], Target]


def _chat(suite: Suite, registry: Registry | None, options: TargetOptions) -> Target:
    connection = Connection(
        timeout=suite.timeout, retries=suite.retries, concurrency=suite.concurrency,
        headers=options.headers, timing=options.retry_timing, rng=options.rng,
    )  # fmt: skip
    return resolve_chat_target(
        suite, registry, network=options.network, in_process=options.in_process,
        connection=connection,
    )  # fmt: skip


def _sklearn(suite: Suite, registry: Registry | None, options: TargetOptions) -> Target:
    return SklearnModel.resolve(suite, registry)


TARGET_KINDS: dict[str, TargetBuilder] = {"llm": _chat, "sklearn": _sklearn}
"""``target.kind`` -> the builder of its :class:`Target`."""


def resolve_target(
    suite: Suite, registry: Registry | None, options: TargetOptions | None = None
) -> Target:
    """The suite's target, versions pinned; every mistake that can be found before the first
    call (a missing key, an unknown version, a variable the template does not take) is
    raised here. Nothing is opened until :meth:`Target.open`."""
    return TARGET_KINDS[suite.target.kind](suite, registry, options or TargetOptions())
