"""Metrics for classic models, computed by scikit-learn on the run's predictions.

Each example keeps ``[y_true, y_pred]`` (and the class probabilities for ROC AUC and log
loss) as its statistics, so the run's figure is scikit-learn's own, and resampling for the
confidence interval calls the same function.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from lockgate.evals.records import ExampleResult, ExampleScore
from lockgate.evals.scorers._base import BaseScorer, register
from lockgate.registry.errors import MissingExtra


def _metrics() -> Any:
    try:
        from sklearn import metrics
    except ImportError as exc:
        raise MissingExtra("classic metrics", "evals") from exc
    return metrics


class _Classic(BaseScorer):
    aggregation = "custom"

    def score_one(self, sample: ExampleResult) -> ExampleScore:
        stats = [sample.reference, sample.output]
        if "proba" in sample.extra:
            stats += [sample.extra["proba"], sample.extra.get("classes")]
        return ExampleScore(self.per_example(sample), stats=stats)

    def per_example(self, sample: ExampleResult) -> float | None:
        return None

    def columns(self, scores: Sequence[ExampleScore]) -> tuple[list[Any], list[Any]]:
        rows = [s.stats for s in scores if s.stats is not None]
        return [r[0] for r in rows], [r[1] for r in rows]

    def aggregate(self, scores: Sequence[ExampleScore]) -> float:
        y_true, y_pred = self.columns(scores)
        if not y_true:
            return math.nan
        return float(self.compute(y_true, y_pred, scores))

    def compute(self, y_true: list[Any], y_pred: list[Any], scores: Sequence[ExampleScore]) -> Any:
        raise NotImplementedError


@register("accuracy")
class Accuracy(_Classic):
    binary = True

    def per_example(self, sample: ExampleResult) -> float:
        return float(sample.output == sample.reference)

    def compute(self, y_true: list[Any], y_pred: list[Any], scores: Sequence[ExampleScore]) -> Any:
        return _metrics().accuracy_score(y_true, y_pred)


class AverageParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    average: Literal["binary", "micro", "macro", "weighted"] = "binary"
    pos_label: Any = 1
    zero_division: float = 0.0


class _Averaged(_Classic):
    Params = AverageParams
    function = ""

    def compute(self, y_true: list[Any], y_pred: list[Any], scores: Sequence[ExampleScore]) -> Any:
        p = self.params
        kwargs: dict[str, Any] = {"average": p.average, "zero_division": p.zero_division}
        if p.average == "binary":
            kwargs["pos_label"] = p.pos_label
        return getattr(_metrics(), self.function)(y_true, y_pred, **kwargs)


@register("precision")
class Precision(_Averaged):
    function = "precision_score"


@register("recall")
class Recall(_Averaged):
    function = "recall_score"


@register("f1")
class F1(_Averaged):
    function = "f1_score"


class ProbaParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    multi_class: Literal["ovr", "ovo"] = "ovr"


def _proba(scores: Sequence[ExampleScore]) -> tuple[list[list[float]], list[Any]]:
    rows = [s.stats for s in scores if s.stats is not None and len(s.stats) >= 4]
    if not rows:
        from lockgate.evals.errors import ScorerInvalid

        raise ScorerInvalid("this metric needs class probabilities (a model with predict_proba)")
    return [r[2] for r in rows], list(rows[0][3])


@register("roc_auc")
class RocAuc(_Classic):
    Params = ProbaParams

    def compute(self, y_true: list[Any], y_pred: list[Any], scores: Sequence[ExampleScore]) -> Any:
        proba, classes = _proba(scores)
        metrics = _metrics()
        if len(classes) == 2:
            return metrics.roc_auc_score([c == classes[1] for c in y_true], [p[1] for p in proba])
        return metrics.roc_auc_score(
            y_true, proba, multi_class=self.params.multi_class, labels=classes
        )


@register("log_loss")
class LogLoss(_Classic):
    higher_is_better = False
    scale = None

    def per_example(self, sample: ExampleResult) -> float | None:
        proba, classes = sample.extra.get("proba"), sample.extra.get("classes")
        if proba is None or classes is None or sample.reference not in classes:
            return None
        p = min(max(proba[classes.index(sample.reference)], 1e-15), 1 - 1e-15)
        return -math.log(p)

    def compute(self, y_true: list[Any], y_pred: list[Any], scores: Sequence[ExampleScore]) -> Any:
        proba, classes = _proba(scores)
        return _metrics().log_loss(y_true, proba, labels=classes)


class _Regression(_Classic):
    higher_is_better = False
    scale = None

    def per_example(self, sample: ExampleResult) -> float | None:
        try:
            return abs(float(sample.output) - float(sample.reference))
        except (TypeError, ValueError):
            return None


@register("mae")
class Mae(_Regression):
    def compute(self, y_true: list[Any], y_pred: list[Any], scores: Sequence[ExampleScore]) -> Any:
        return _metrics().mean_absolute_error(y_true, y_pred)


@register("rmse")
class Rmse(_Regression):
    def compute(self, y_true: list[Any], y_pred: list[Any], scores: Sequence[ExampleScore]) -> Any:
        return math.sqrt(_metrics().mean_squared_error(y_true, y_pred))


@register("r2")
class R2(_Classic):
    scale = None

    def compute(self, y_true: list[Any], y_pred: list[Any], scores: Sequence[ExampleScore]) -> Any:
        return _metrics().r2_score(y_true, y_pred)
