"""Scorers against their reference implementations, on a fixed corpus."""

from __future__ import annotations

import asyncio
import math

import pytest
import sacrebleu
from rouge_score import rouge_scorer
from sklearn import metrics

from lockgate.evals.errors import ScorerInvalid
from lockgate.evals.records import ExampleResult
from lockgate.evals.scorers import ScoreContext, build_scorers
from lockgate.evals.suite import ScorerSpec

HYPS = [
    "The cat sat on the mat.",
    "A quick brown fox jumps over the lazy dog",
    "It is raining heavily in Paris today",
    "He read the book in one evening.",
    "",
    "Completely unrelated words here",
]
REFS = [
    "The cat is sitting on the mat.",
    "The quick brown fox jumped over the lazy dog",
    "Today it rains heavily in Paris",
    "He read the whole book in a single evening.",
    "Nothing was said.",
    "The committee approved the budget",
]


def _scorer(name: str, **params: object):  # type: ignore[no-untyped-def]
    return build_scorers([ScorerSpec(name=name, params=params)], "ref")[0]


def _score_all(scorer, outputs, refs, extra=None):  # type: ignore[no-untyped-def]
    out = []
    for i, (o, r) in enumerate(zip(outputs, refs, strict=True)):
        sample = ExampleResult(
            str(i), i, 0, {}, reference=r, output=o, extra=(extra or {}).get(i, {})
        )
        out.append(asyncio.run(scorer.score(sample, ScoreContext())))
    return out


def test_bleu_equals_sacrebleu() -> None:
    scorer = _scorer("bleu")
    scores = _score_all(scorer, HYPS, REFS)
    assert scorer.aggregate(scores) == pytest.approx(
        sacrebleu.corpus_bleu(HYPS, [REFS]).score, abs=1e-9
    )
    for s, h, r in zip(scores, HYPS, REFS, strict=True):
        assert s.value == pytest.approx(sacrebleu.sentence_bleu(h, [r]).score, abs=1e-9)


def test_chrf_equals_sacrebleu() -> None:
    scorer = _scorer("chrf")
    scores = _score_all(scorer, HYPS, REFS)
    assert scorer.aggregate(scores) == pytest.approx(
        sacrebleu.corpus_chrf(HYPS, [REFS]).score, abs=1e-9
    )
    for s, h, r in zip(scores, HYPS, REFS, strict=True):
        assert s.value == pytest.approx(sacrebleu.sentence_chrf(h, [r]).score, abs=1e-9)
    plus = _scorer("chrf", word_order=2)
    assert plus.aggregate(_score_all(plus, HYPS, REFS)) == pytest.approx(
        sacrebleu.corpus_chrf(HYPS, [REFS], word_order=2).score, abs=1e-9
    )


def test_rouge_l_equals_rouge_score() -> None:
    scorer = _scorer("rouge_l")
    scores = _score_all(scorer, HYPS, REFS)
    ref = rouge_scorer.RougeScorer(["rougeL"])
    expected = [ref.score(r, h)["rougeL"].fmeasure for h, r in zip(HYPS, REFS, strict=True)]
    assert [s.value for s in scores] == pytest.approx(expected, abs=1e-12)
    assert scorer.aggregate(scores) == pytest.approx(sum(expected) / len(expected))


def test_classic_metrics_equal_sklearn() -> None:
    y_true = [0, 1, 1, 0, 1, 1, 0, 0, 1, 0, 1, 1]
    y_pred = [0, 1, 0, 0, 1, 1, 1, 0, 1, 0, 0, 1]
    p1 = [0.1, 0.9, 0.4, 0.2, 0.8, 0.7, 0.6, 0.3, 0.95, 0.05, 0.45, 0.85]
    extra = {i: {"proba": [1 - p, p], "classes": [0, 1]} for i, p in enumerate(p1)}
    expected = {
        "accuracy": metrics.accuracy_score(y_true, y_pred),
        "precision": metrics.precision_score(y_true, y_pred),
        "recall": metrics.recall_score(y_true, y_pred),
        "f1": metrics.f1_score(y_true, y_pred),
        "roc_auc": metrics.roc_auc_score(y_true, p1),
        "log_loss": metrics.log_loss(y_true, [[1 - p, p] for p in p1]),
    }
    for name, want in expected.items():
        scorer = _scorer(name)
        got = scorer.aggregate(_score_all(scorer, y_pred, y_true, extra))
        assert got == pytest.approx(want, abs=1e-12), name
    f1_macro = _scorer("f1", average="macro")
    assert f1_macro.aggregate(_score_all(f1_macro, y_pred, y_true)) == pytest.approx(
        metrics.f1_score(y_true, y_pred, average="macro")
    )
    r_true = [3.0, -0.5, 2.0, 7.0, 4.2]
    r_pred = [2.5, 0.0, 2.1, 7.8, 3.9]
    for name, want in {
        "mae": metrics.mean_absolute_error(r_true, r_pred),
        "rmse": math.sqrt(metrics.mean_squared_error(r_true, r_pred)),
        "r2": metrics.r2_score(r_true, r_pred),
    }.items():
        scorer = _scorer(name)
        assert scorer.aggregate(_score_all(scorer, r_pred, r_true)) == pytest.approx(want), name


@pytest.mark.parametrize(
    ("name", "params", "output", "ref", "want"),
    [
        ("exact_match", {}, "  Paris ", "paris", 1.0),
        ("exact_match", {"case": True}, "Paris", "paris", 0.0),
        ("exact_match", {"punctuation": True}, "Paris!", "paris", 1.0),
        ("exact_match", {}, "Paris!", "paris", 0.0),
        ("exact_match", {}, "b", ["a", "b"], 1.0),
        ("contains", {}, "It is Paris.", "Paris", 1.0),
        ("contains", {}, "It is paris.", "Paris", 0.0),
        ("icontains", {}, "It is paris.", "Paris", 1.0),
        ("regex", {"pattern": r"\d{4}"}, "in 1969", None, 1.0),
        ("regex", {"pattern": r"\d{4}", "full": True}, "in 1969", None, 0.0),
        ("json_valid", {}, '```json\n{"a": 1}\n```', None, 1.0),
        ("json_valid", {}, "{a: 1}", None, 0.0),
        ("json_schema", {"schema": {"type": "object", "required": ["a"]}}, '{"a": 1}', None, 1.0),
        ("json_schema", {"schema": {"type": "object", "required": ["a"]}}, '{"b": 1}', None, 0.0),
        ("numeric", {"abs_tol": 0.01}, "The answer is 3.141", "3.14", 1.0),
        ("numeric", {}, "about 1,000 people", 1000, 1.0),
        ("numeric", {"rel_tol": 0.01}, "12", "10", 0.0),
    ],
)
def test_text_scorers(
    name: str, params: dict[str, object], output: str, ref: object, want: float
) -> None:
    (score,) = _score_all(_scorer(name, **params), [output], [ref])
    assert score.value == want


def test_unknown_scorer_and_bad_params_name_the_field() -> None:
    with pytest.raises(ScorerInvalid, match="unknown scorer 'blue'"):
        _scorer("blue")
    with pytest.raises(ScorerInvalid, match="casee"):
        _scorer("exact_match", casee=True)
    with pytest.raises(ScorerInvalid, match="schema is invalid"):
        _scorer("json_schema", schema={"type": 12})


def test_custom_scorer_by_module_function() -> None:
    scorer = build_scorers([ScorerSpec(name="tests.evals.custom_scorers:length_ratio")], "ref")[0]
    (score,) = _score_all(scorer, ["abcd"], ["ab"])
    assert scorer.metric == "length_ratio" and score.value == 2.0
