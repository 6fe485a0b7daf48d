"""The scorer seam: a :class:`Scorer` Protocol, a registry filled by ``@register``, and a
base class that validates parameters with pydantic.

A scorer turns one :class:`ExampleResult` into an :class:`ExampleScore` and a list of them
into the run's figure for its metric. ``aggregation`` tells the statistics how to resample
it: ``mean`` (the mean of per-example values), ``stats`` (sums of sufficient statistics,
then :meth:`Scorer.from_stats`, as corpus BLEU does) or ``custom`` (call
:meth:`Scorer.aggregate` on each resample, as F1 and ROC AUC need).
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from lockgate.evals.errors import ScorerInvalid
from lockgate.evals.records import ExampleResult, ExampleScore

if TYPE_CHECKING:
    from lockgate.evals.suite import ScorerSpec
    from lockgate.registry.registry import Registry

Aggregation = Literal["mean", "stats", "custom"]


class Caller(Protocol):
    """How model-based scorers reach the target (embeddings, a judge model)."""

    base_url: str

    async def post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]: ...


@dataclass
class ScoreContext:
    """What a scorer may need beyond the example: the target client, the registry."""

    caller: Caller | None = None
    registry: Registry | None = None


class Scorer(Protocol):
    metric: str
    binary: bool
    higher_is_better: bool
    aggregation: Aggregation
    scale: float | None

    def prepare(self, ctx: ScoreContext) -> None: ...
    async def score(self, sample: ExampleResult, ctx: ScoreContext) -> ExampleScore: ...
    def aggregate(self, scores: Sequence[ExampleScore]) -> float: ...
    def from_stats(self, totals: Sequence[float]) -> float: ...


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BaseScorer:
    """Shared behaviour: params validated by ``Params``; the mean of values by default."""

    name: ClassVar[str] = ""
    binary: ClassVar[bool] = False
    higher_is_better: ClassVar[bool] = True
    aggregation: ClassVar[Aggregation] = "mean"
    scale: ClassVar[float | None] = 1.0  # the metric's range; None when unbounded
    Params: ClassVar[type[BaseModel]] = NoParams

    def __init__(self, metric: str, params: Mapping[str, Any], reference: str | None) -> None:
        self.metric = metric
        self.reference_column = reference
        try:
            self.params: Any = self.Params.model_validate(dict(params))
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"])
            raise ScorerInvalid(
                f"scorer {self.name!r} ({metric}): {field}: {err['msg']}",
                param=f"scorers.{metric}.{field}",
            ) from None

    def prepare(self, ctx: ScoreContext) -> None:
        """Resolve what the scorer needs once, before the run (e.g. a judge prompt)."""

    async def score(self, sample: ExampleResult, ctx: ScoreContext) -> ExampleScore:
        return self.score_one(sample)

    def score_one(self, sample: ExampleResult) -> ExampleScore:
        raise NotImplementedError

    def aggregate(self, scores: Sequence[ExampleScore]) -> float:
        values = [s.value for s in scores if s.value is not None]
        return math.fsum(values) / len(values) if values else math.nan

    def from_stats(self, totals: Sequence[float]) -> float:
        raise NotImplementedError(f"{self.name} has no sufficient statistics")


ScorerClass = type[BaseScorer]
SCORERS: dict[str, ScorerClass] = {}


def register(name: str) -> Callable[[ScorerClass], ScorerClass]:
    """Class decorator: make a scorer available to suites by ``name``."""

    def add(cls: ScorerClass) -> ScorerClass:
        cls.name = name
        SCORERS[name] = cls
        return cls

    return add


def text_of(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else str(value)


class FunctionScorer(BaseScorer):
    """A custom scorer given as ``module:function``.

    The function takes ``(output, reference, example)`` (``example`` is the dataset row)
    and returns a number, a bool, or a mapping ``{"value": …, "detail": {…}}``; it may be
    async. Params in the suite are passed as keyword arguments.
    """

    binary = False
    scale = None

    def __init__(self, func: Callable[..., Any], metric: str, params: Mapping[str, Any],
                 reference: str | None, binary: bool) -> None:  # fmt: skip
        self.metric, self.reference_column = metric, reference
        self.func, self.kwargs, self.binary = func, dict(params), binary  # type: ignore[misc]
        self.name = getattr(func, "__qualname__", "custom")  # type: ignore[misc]

    async def score(self, sample: ExampleResult, ctx: ScoreContext) -> ExampleScore:
        result = self.func(sample.output, sample.reference, sample.input, **self.kwargs)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, Mapping):
            value = result.get("value")
            return ExampleScore(
                None if value is None else float(value), detail=dict(result.get("detail") or {})
            )
        return ExampleScore(None if result is None else float(result))


def _custom(spec: ScorerSpec) -> BaseScorer:
    module_name, _, attr = spec.name.partition(":")
    try:
        func = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ScorerInvalid(
            f"custom scorer {spec.name!r} cannot be imported: {exc}", param="scorers.name"
        ) from exc
    if not callable(func):
        raise ScorerInvalid(f"custom scorer {spec.name!r} is not callable", param="scorers.name")
    params = dict(spec.params)
    binary = bool(params.pop("binary", False))
    return FunctionScorer(func, spec.metric, params, spec.reference, binary)


def build_scorers(specs: Sequence[ScorerSpec], default_reference: str | None) -> list[BaseScorer]:
    """Instantiate the suite's scorers; an unknown name lists the known ones."""
    from lockgate.evals import scorers as _  # noqa: F401  (registers the built-in scorers)

    out: list[BaseScorer] = []
    for i, spec in enumerate(specs):
        reference = spec.reference or default_reference
        if ":" in spec.name:
            out.append(_custom(spec))
            continue
        cls = SCORERS.get(spec.name)
        if cls is None:
            raise ScorerInvalid(
                f"scorers[{i}]: unknown scorer {spec.name!r}; built in: "
                f"{', '.join(sorted(SCORERS))}; or give module:function",
                param=f"scorers[{i}].name",
            )
        out.append(cls(spec.metric, spec.params, reference))
    return out
