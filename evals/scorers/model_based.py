"""Scorers that call a model through the target: embedding similarity and LLM-as-judge."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lockgate.evals.errors import ScorerInvalid
from lockgate.evals.records import ExampleResult, ExampleScore
from lockgate.evals.scorers._base import BaseScorer, Caller, ScoreContext, register, text_of


def _caller(ctx: ScoreContext, who: str) -> Caller:
    if ctx.caller is None:
        raise ScorerInvalid(f"scorer {who} needs an HTTP target (target.base_url or the gateway)")
    return ctx.caller


class EmbeddingParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(description="Embedding model (a gateway route).")


def cosine(a: list[float], b: list[float]) -> float:
    dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
    na, nb = math.sqrt(math.fsum(x * x for x in a)), math.sqrt(math.fsum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


@register("embedding_similarity")
class EmbeddingSimilarity(BaseScorer):
    """Cosine similarity of output and reference embeddings from ``/v1/embeddings``."""

    Params = EmbeddingParams

    async def score(self, sample: ExampleResult, ctx: ScoreContext) -> ExampleScore:
        caller = _caller(ctx, "embedding_similarity")
        body = {"model": self.params.model,
                "input": [text_of(sample.output), text_of(sample.reference)]}  # fmt: skip
        data = await caller.post_json("/embeddings", body)
        try:
            items = sorted(data["data"], key=lambda d: d.get("index", 0))
            a, b = items[0]["embedding"], items[1]["embedding"]
        except (KeyError, IndexError, TypeError) as exc:
            raise ScorerInvalid(f"the embeddings response has no two vectors: {exc!r}") from exc
        return ExampleScore(cosine(a, b))


class JudgeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(description="Rubric prompt in the registry, NAME@LABEL.")
    model: str | None = Field(default=None, description="Judge model; default: the prompt's.")
    variables: dict[str, str] = Field(
        default_factory=lambda: {"input": "input", "output": "output", "reference": "reference"},
        description="Prompt variable -> input | output | reference | a dataset column.",
    )
    scale: tuple[float, float] = Field(default=(0.0, 1.0), description="Raw score range.")
    params: dict[str, Any] = Field(default_factory=lambda: {"temperature": 0})


_SCORE_RE = re.compile(r"score\W{0,3}\s*([-+]?\d+(?:\.\d+)?)", re.IGNORECASE)
_NUM_RE = re.compile(r"[-+]?\d+(?:\.\d+)?")


def parse_judge_score(text: str) -> float | None:
    """A score from a judge's answer: JSON ``{"score": …}``, ``Score: 4``, or a bare number."""
    stripped = text.strip().removeprefix("```json").removeprefix("```").removesuffix("```")
    try:
        data = json.loads(stripped)
        if isinstance(data, dict) and isinstance(data.get("score"), int | float):
            return float(data["score"])
        if isinstance(data, int | float) and not isinstance(data, bool):
            return float(data)
    except ValueError:
        pass
    match = _SCORE_RE.search(text)
    if match:
        return float(match.group(1))
    numbers = _NUM_RE.findall(text)
    return float(numbers[-1]) if len(numbers) == 1 else None


@register("llm_judge")
class LLMJudge(BaseScorer):
    """A rubric prompt from the registry, answered by a judge model through the target.

    The score is parsed from the answer and mapped from ``scale`` to 0-1; the raw answer is
    kept in the example's detail. An answer without a score scores ``None`` (left out of
    the mean) and says so.
    """

    Params = JudgeParams

    def prepare(self, ctx: ScoreContext) -> None:
        if ctx.registry is None:
            raise ScorerInvalid("llm_judge needs the registry for its rubric prompt")
        self._prompt = ctx.registry.prompts.get(self.params.prompt)
        self._model = self.params.model or self._prompt.config.get("model")
        if not self._model:
            raise ScorerInvalid(
                f"llm_judge: give `model`, or set one in the prompt {self.params.prompt}",
                param=f"scorers.{self.metric}.model",
            )

    def _variables(self, sample: ExampleResult) -> dict[str, Any]:
        known = {"input": sample.input, "output": text_of(sample.output),
                 "reference": text_of(sample.reference)}  # fmt: skip
        return {
            var: known[src] if src in known else sample.input.get(src)
            for var, src in self.params.variables.items()
            if var in self._prompt.variables
        }

    async def score(self, sample: ExampleResult, ctx: ScoreContext) -> ExampleScore:
        caller = _caller(ctx, "llm_judge")
        assert ctx.registry is not None
        rendered = ctx.registry.prompts.render(self._prompt, self._variables(sample))
        messages = rendered.messages or [{"role": "user", "content": rendered.text or ""}]
        config = {k: v for k, v in rendered.config.items() if k != "model"}
        body = {**config, **self.params.params, "model": self._model, "messages": messages}
        data = await caller.post_json("/chat/completions", body)
        try:
            raw = str(data["choices"][0]["message"]["content"] or "")
        except (KeyError, IndexError, TypeError):
            raw = json.dumps(data)[:2000]
        parsed = parse_judge_score(raw)
        detail: dict[str, Any] = {
            "raw": raw,
            "judge": f"{self._prompt.name}@{self._prompt.version}",
        }
        if parsed is None:
            detail["error"] = "no score found in the judge's answer"
            return ExampleScore(None, detail=detail)
        lo, hi = self.params.scale
        value = (parsed - lo) / (hi - lo) if hi != lo else parsed
        detail["raw_score"] = parsed
        return ExampleScore(min(1.0, max(0.0, value)), detail=detail)
