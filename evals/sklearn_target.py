"""The scikit-learn target: a registered ``sklearn`` model, loaded once and predicted in
process, all pending examples in one batch.

Its version is pinned when the run starts (``registry:churn@candidate`` becomes
``churn@3``), and that version is the run's lineage and identity. Predictions are
deterministic, so an example is predicted once whatever the suite's ``epochs``, nothing is
cached, and no scorer can call through it (``llm_judge`` and ``embedding_similarity`` need an
LLM target). The column of true values is the suite's ``reference``, as for every target.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lockgate.evals.errors import EvalError
from lockgate.evals.records import ExampleResult
from lockgate.evals.suite import SklearnTarget
from lockgate.registry.records import LineageEdge

if TYPE_CHECKING:
    from lockgate.evals.scorers import Caller
    from lockgate.evals.suite import Suite
    from lockgate.evals.target import Answering
    from lockgate.registry.registry import Registry


@dataclass
class SklearnModel:
    """A :class:`~evals.target.Target`: a registered scikit-learn estimator."""

    spec: SklearnTarget
    estimator: Any
    ref: str  # NAME@VERSION
    lineage: list[LineageEdge]
    epochs: int = 1

    @classmethod
    def resolve(cls, suite: Suite, registry: Registry | None) -> SklearnModel:
        """Pin the model's version and load it (skops, allowlisted types only)."""
        spec = suite.target
        assert isinstance(spec, SklearnTarget)
        if registry is None:
            raise EvalError("a sklearn target needs a registry", param="target.model")
        version = registry.models.get(spec.model_ref)
        ref = f"{version.name}@{version.version}"
        estimator = registry.models.load_sklearn(ref)
        return cls(spec, estimator, ref, [LineageEdge("model", ref, "input")])

    @property
    def identity(self) -> dict[str, Any]:
        return {"model": self.ref, "features": self.spec.features}

    @property
    def name(self) -> str:
        return f"registry:{self.ref}"

    def required_columns(self) -> list[tuple[str, str]]:
        return [(c, f"target.features[{i}]") for i, c in enumerate(self.spec.features)]

    def open(self) -> Caller | None:
        return None

    async def answer(self, pending: Sequence[ExampleResult], answering: Answering) -> None:
        self.predict(pending)
        for sample in pending:
            await answering.done(sample)

    async def close(self) -> None:
        return None

    def predict(self, pending: Sequence[ExampleResult]) -> None:
        """Fill ``output`` (and class probabilities) for every pending example, in one batch."""
        if not pending:
            return
        import numpy as np

        features = self.spec.features
        x: Any
        if hasattr(self.estimator, "feature_names_in_"):  # fitted on a DataFrame
            pd: Any = importlib.import_module("pandas")
            x = pd.DataFrame([{f: r.input[f] for f in features} for r in pending])
        else:
            x = np.array([[r.input[f] for f in features] for r in pending])
        predictions = self.estimator.predict(x)
        proba = None
        if hasattr(self.estimator, "predict_proba"):
            try:
                proba = self.estimator.predict_proba(x)
            except (AttributeError, NotImplementedError):
                proba = None
        classes = [_plain(c) for c in getattr(self.estimator, "classes_", [])]
        for i, r in enumerate(pending):
            r.output = _plain(predictions[i])
            if proba is not None:
                r.extra = {"proba": [float(p) for p in proba[i]], "classes": classes}


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
