"""Scorers, registered by name with :func:`register`; importing this package registers the
built-in ones. Custom scorers are given in a suite as ``module:function``."""

from __future__ import annotations

from lockgate.evals.scorers import classic, model_based, reference, text, usage
from lockgate.evals.scorers._base import (
    SCORERS,
    BaseScorer,
    Caller,
    ScoreContext,
    Scorer,
    build_scorers,
    register,
)

__all__ = [
    "SCORERS",
    "BaseScorer",
    "Caller",
    "ScoreContext",
    "Scorer",
    "build_scorers",
    "classic",
    "model_based",
    "reference",
    "register",
    "text",
    "usage",
]
