"""Reference-based text metrics: BLEU and chrF (sacrebleu), ROUGE-L (rouge-score).

BLEU and chrF are sentence-level per example and corpus-level for the run: each example
keeps sacrebleu's sufficient statistics, and the run's figure is sacrebleu's score of their
sums, which is exactly what ``sacrebleu.corpus_bleu`` / ``corpus_chrf`` compute. Keeping the
statistics also makes bootstrap resampling of the corpus score cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from lockgate.evals.records import ExampleResult, ExampleScore
from lockgate.evals.scorers._base import BaseScorer, register, text_of
from lockgate.registry._extras import require
from lockgate.registry.errors import MissingExtra


def _refs(value: Any) -> list[str]:
    return [text_of(v) for v in value] if isinstance(value, list) else [text_of(value)]


class BleuParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tokenize: str | None = None
    lowercase: bool = False


class _Sacre(BaseScorer):
    """Shared sacrebleu plumbing; subclasses say which metric class to build."""

    aggregation = "stats"
    scale = 100.0
    metric_class = ""

    def _metric(self, **extra: Any) -> Any:
        try:
            from sacrebleu import metrics
        except ImportError as exc:
            raise MissingExtra(f"{self.name} scoring", "evals") from exc
        kwargs = {k: v for k, v in self.params.model_dump().items() if v is not None}
        return getattr(metrics, self.metric_class)(**kwargs, **extra)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._corpus = self._metric()
        self._sentence = self._sentence_metric()

    def _sentence_metric(self) -> Any:
        return self._corpus

    def score_one(self, sample: ExampleResult) -> ExampleScore:
        hyp, refs = text_of(sample.output), _refs(sample.reference)
        stats = self._corpus._extract_corpus_statistics([hyp], [[r] for r in refs])[0]
        value = self._sentence._compute_score_from_stats(list(stats)).score
        return ExampleScore(float(value), stats=[float(s) for s in stats])

    def from_stats(self, totals: Sequence[float]) -> float:
        return float(self._corpus._compute_score_from_stats(list(totals)).score)

    def aggregate(self, scores: Sequence[ExampleScore]) -> float:
        rows = [s.stats for s in scores if s.stats is not None]
        if not rows:
            return float("nan")
        return self.from_stats([sum(col) for col in zip(*rows, strict=True)])


@register("bleu")
class Bleu(_Sacre):
    """BLEU (0-100): sentence BLEU with effective order per example, corpus BLEU overall."""

    Params = BleuParams
    metric_class = "BLEU"

    def _sentence_metric(self) -> Any:
        return self._metric(effective_order=True)


class ChrfParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    char_order: int | None = None
    word_order: int | None = None
    beta: int | None = None
    lowercase: bool = False


@register("chrf")
class Chrf(_Sacre):
    """chrF (0-100), or chrF++ with ``word_order: 2``."""

    Params = ChrfParams
    metric_class = "CHRF"


class RougeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    use_stemmer: bool = False
    measure: str = "fmeasure"


@register("rouge_l")
class RougeL(BaseScorer):
    """ROUGE-L F-measure (0-1) by rouge-score, averaged over examples (max over references)."""

    Params = RougeParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        rouge_scorer = require("rouge_score.rouge_scorer", feature="ROUGE scoring", extra="evals")
        self._scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=self.params.use_stemmer)

    def score_one(self, sample: ExampleResult) -> ExampleScore:
        hyp = text_of(sample.output)
        best = max(
            getattr(self._scorer.score(ref, hyp)["rougeL"], self.params.measure)
            for ref in _refs(sample.reference)
        )
        return ExampleScore(float(best))
