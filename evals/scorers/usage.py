"""Scorers from the call record: latency, tokens and cost (lower is better)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from lockgate.evals.records import ExampleResult, ExampleScore
from lockgate.evals.scorers._base import BaseScorer, register


@register("latency")
class Latency(BaseScorer):
    """Milliseconds per call, as measured by the runner (a cached answer keeps its own)."""

    higher_is_better = False
    scale = None

    def score_one(self, sample: ExampleResult) -> ExampleScore:
        return ExampleScore(sample.latency_ms)


class TokenParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    which: str = Field(default="total_tokens", description="prompt/completion/total_tokens")


@register("tokens")
class Tokens(BaseScorer):
    higher_is_better = False
    scale = None
    Params = TokenParams

    def score_one(self, sample: ExampleResult) -> ExampleScore:
        value = sample.usage.get(self.params.which)
        return ExampleScore(None if value is None else float(value))


class CostParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input_per_1m: float = Field(default=0.0, ge=0, description="Price per 1M prompt tokens.")
    output_per_1m: float = Field(default=0.0, ge=0, description="Price per 1M output tokens.")


@register("cost")
class Cost(BaseScorer):
    """Cost per call: the response's ``usage.cost`` when the gateway reports one, else
    tokens times the prices given."""

    higher_is_better = False
    scale = None
    Params = CostParams

    def score_one(self, sample: ExampleResult) -> ExampleScore:
        usage = sample.usage
        if isinstance(usage.get("cost"), int | float):
            return ExampleScore(float(usage["cost"]))
        if "prompt_tokens" not in usage and "completion_tokens" not in usage:
            return ExampleScore(None)
        cost = (
            float(usage.get("prompt_tokens") or 0) * self.params.input_per_1m
            + float(usage.get("completion_tokens") or 0) * self.params.output_per_1m
        ) / 1e6
        return ExampleScore(cost)
