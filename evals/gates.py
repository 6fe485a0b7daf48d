"""Gates: absolute thresholds and regressions against a baseline, with plain verdicts.

Verdicts are ``pass``, ``fail``, ``inconclusive`` (too few examples to tell, with the
number needed) and ``skipped`` (a relative gate when no baseline was asked for). A relative
gate against a baseline label that is unset is ``skipped`` and *waived*: a first version has
nothing to regress against, so its absolute gates decide.

A run's verdict (:func:`judge`) is ``pass`` only when every gate was evaluated on evidence:
at least one gate, each ``pass`` (or waived, with an absolute gate passed), and no example
errored. A skipped gate or a suite without gates makes the run ``skipped``; errored calls
make it ``inconclusive``. Neither is a pass, whatever the exit code.

* Absolute ``metric >= x``: the run's figure against the threshold; fewer than
  ``min_examples`` examples (default 20) is inconclusive.
* Relative ``metric: no significant regression vs baseline`` (margin 0) or
  ``metric: max_drop m``: with ``drop`` the paired change oriented so that worse is
  negative, and ``[lo, hi]`` its 95% bootstrap interval,

  - **fail** when the drop is significant (``p < alpha``) and larger than the margin, or the
    whole interval lies below ``-margin``;
  - **pass** when the interval rules out a drop larger than ``bound = max(margin, effect)``
    (``effect``: ``min_effect``, default 0.05 of the metric's range; or the margin):
    ``lo >= -bound``, on at least ``min_examples`` paired examples. This is the
    non-inferiority test at the stated alpha: ``lo`` is the lower end of a two-sided
    ``1 - alpha`` interval, so when the true drop is exactly ``bound`` a pass happens with
    probability about ``alpha / 2``; with no change it happens more often as ``n`` grows;
  - **inconclusive** when the interval straddles ``-bound`` (or too few examples), with the
    number of examples that would detect a drop of ``effect`` at the stated power
    (:func:`evals.stats.examples_needed`) as planning advice.

  Checked by simulation in ``tests/evals/test_gate_power.py``: false passes at a true drop
  equal to the bound at most ``alpha / 2``, false fails with no change at most ``alpha``.

:func:`evaluate_gates` is a pure function over summaries and comparisons, so the registry's
label gate can call it on stored runs.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from lockgate.evals.compare import MetricComparison, MetricSummary
from lockgate.evals.errors import SuiteInvalid
from lockgate.evals.stats import examples_needed
from lockgate.evals.suite import GateSpec, StatsSpec

Verdict = Literal["pass", "fail", "inconclusive", "skipped"]

_NAME = r"([A-Za-z0-9_][\w.\-/]*)"
_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_ABSOLUTE = re.compile(rf"^\s*{_NAME}\s*(>=|<=|==|>|<)\s*{_NUM}\s*$")
_REGRESSION = re.compile(
    rf"^\s*{_NAME}\s*:\s*no\s+(?:significant\s+)?regression(?:\s+(?:vs\.?|against)\s+baseline)?\s*$",
    re.IGNORECASE,
)
_MAX_DROP = re.compile(rf"^\s*{_NAME}\s*:\s*max_drop\s*[:=]?\s*{_NUM}\s*$", re.IGNORECASE)
OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq,
}  # fmt: skip


def parse_gate(text: str) -> dict[str, Any]:
    """A gate string as the fields of :class:`GateSpec`."""
    if m := _ABSOLUTE.match(text):
        return {"metric": m[1], "op": m[2], "threshold": float(m[3]), "text": text.strip()}
    if m := _REGRESSION.match(text):
        return {"metric": m[1], "regression": True, "text": text.strip()}
    if m := _MAX_DROP.match(text):
        return {"metric": m[1], "max_drop": float(m[2]), "text": text.strip()}
    raise SuiteInvalid(
        f"cannot read the gate {text!r}; write `accuracy >= 0.9`, "
        "`accuracy: no significant regression vs baseline` or `accuracy: max_drop 0.02`",
        param="gates",
    )


@dataclass
class GateResult:
    gate: str
    metric: str
    kind: Literal["absolute", "relative"]
    verdict: Verdict
    reason: str
    value: float | None = None
    baseline: float | None = None
    delta: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    n: int = 0
    needed: int | None = None
    waived: bool = False  # a relative gate of a first version: nothing to compare with

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"


def _fmt(x: float | None) -> str:
    if x is None or math.isnan(x):
        return "n/a"
    return f"{x:.4g}"


def _absolute(gate: GateSpec, s: MetricSummary, spec: StatsSpec) -> GateResult:
    assert gate.op is not None and gate.threshold is not None
    base = GateResult(gate.describe(), gate.metric, "absolute", "pass", "", value=s.value,
                      ci_low=s.ci_low, ci_high=s.ci_high, n=s.n)  # fmt: skip
    minimum = gate.min_examples or spec.min_examples
    shown = f"{gate.metric} = {_fmt(s.value)} (95% CI {_fmt(s.ci_low)}..{_fmt(s.ci_high)}, n={s.n})"
    if s.n < minimum:
        base.verdict, base.needed = "inconclusive", minimum
        base.reason = (f"inconclusive: {s.n} examples are too few to tell; at least {minimum} "
                       f"are needed ({shown})")  # fmt: skip
    elif math.isnan(s.value) or not OPS[gate.op](s.value, gate.threshold):
        base.verdict = "fail"
        base.reason = f"{shown}, needs {gate.op} {gate.threshold:g}"
    else:
        base.reason = f"{shown} {gate.op} {gate.threshold:g}"
    return base


def _effect(gate: GateSpec, c: MetricComparison, spec: StatsSpec) -> float:
    if gate.min_effect is not None:
        return gate.min_effect
    if gate.max_drop:
        return gate.max_drop
    scale = c.scale if c.scale is not None else (abs(c.baseline) or 1.0)
    return spec.min_effect * scale


def _relative(gate: GateSpec, c: MetricComparison, spec: StatsSpec) -> GateResult:
    margin = gate.max_drop or 0.0
    imp = c.improvement
    lo, hi = c.improvement_ci
    out = GateResult(
        gate.describe(), gate.metric, "relative", "pass", "", value=c.candidate,
        baseline=c.baseline, delta=c.delta, ci_low=c.ci_low, ci_high=c.ci_high,
        p_value=c.p_value, n=c.n_paired,
    )  # fmt: skip
    shown = (f"{gate.metric} {_fmt(c.baseline)} -> {_fmt(c.candidate)} "
             f"(delta {c.delta:+.4g}, 95% CI {_fmt(c.ci_low)}..{_fmt(c.ci_high)}, "
             f"{c.test} p={_fmt(c.p_value)}, n={c.n_paired})")  # fmt: skip
    if c.n_paired == 0:
        out.verdict, out.reason = "inconclusive", "inconclusive: no example scored in both runs"
        return out
    significant = c.p_value < spec.alpha
    if (significant and imp < -margin) or hi < -margin:
        allowed = f" (allowed drop {margin:g})" if margin else ""
        out.verdict, out.reason = "fail", f"significant regression{allowed}: {shown}"
        return out
    effect = _effect(gate, c, spec)
    needed = examples_needed(effect, binary=c.binary, observed_sd=c.observed_sd,
                             score_sd=c.score_sd, alpha=spec.alpha, power=spec.power)  # fmt: skip
    out.needed = needed
    bound = max(margin, effect)
    minimum = gate.min_examples or spec.min_examples
    if c.n_paired >= minimum and lo >= -bound:
        out.reason = (f"no regression beyond {bound:.4g}: the interval rules out a larger "
                      f"drop: {shown}")  # fmt: skip
        return out
    out.verdict = "inconclusive"
    if c.n_paired < minimum:
        out.reason = (f"inconclusive: {c.n_paired} examples are too few to tell (the "
                      f"least is {minimum}); about {needed} are needed to tell a drop of "
                      f"{effect:.4g} in {gate.metric} (power {spec.power:.0%}, alpha "
                      f"{spec.alpha:g}): {shown}")  # fmt: skip
    else:
        out.reason = (f"inconclusive: the interval still allows a drop of {-lo:.4g} (more "
                      f"than {bound:.4g}); about {needed} examples are needed to tell a drop "
                      f"of {effect:.4g} (power {spec.power:.0%}, alpha {spec.alpha:g}): "
                      f"{shown}")  # fmt: skip
    return out


def evaluate_gates(
    gates: Sequence[GateSpec],
    summaries: Mapping[str, MetricSummary],
    comparisons: Mapping[str, MetricComparison] | None,
    spec: StatsSpec | None = None,
    *,
    unset_label: str | None = None,
) -> list[GateResult]:
    """Each gate's verdict with its reason; ``comparisons`` is None without a baseline.
    ``unset_label``: the baseline was a label that no version holds yet, so relative gates
    are waived (a first version is judged by its absolute gates)."""
    spec = spec or StatsSpec()
    out = []
    for gate in gates:
        if not gate.relative:
            if gate.metric not in summaries:
                out.append(GateResult(gate.describe(), gate.metric, "absolute", "fail",
                                      f"the run has no metric {gate.metric!r}"))  # fmt: skip
                continue
            out.append(_absolute(gate, summaries[gate.metric], spec))
        elif comparisons is None and unset_label is not None:
            out.append(GateResult(
                gate.describe(), gate.metric, "relative", "skipped",
                f"waived: no version holds {unset_label!r} yet, so there is nothing to "
                "regress against; a first version is judged by its absolute gates",
                waived=True,
            ))  # fmt: skip
        elif comparisons is None:
            out.append(GateResult(gate.describe(), gate.metric, "relative", "skipped",
                                  "skipped: no baseline given (use --baseline)"))  # fmt: skip
        elif gate.metric not in comparisons:
            out.append(GateResult(gate.describe(), gate.metric, "relative", "fail",
                                  f"the comparison has no metric {gate.metric!r}"))  # fmt: skip
        else:
            out.append(_relative(gate, comparisons[gate.metric], spec))
    return out


def judge(results: Sequence[GateResult], *, errors: int = 0) -> tuple[Verdict, str]:
    """The run's verdict and why: ``pass`` only when every gate was evaluated on evidence.

    Any fail fails; then any inconclusive gate, or an errored example, is inconclusive; then
    a skipped gate (not waived) or no gates at all is ``skipped``; waived relative gates need
    an absolute gate that passed."""
    if any(r.verdict == "fail" for r in results):
        failed = sum(r.verdict == "fail" for r in results)
        return "fail", f"{failed} of {len(results)} gate(s) failed"
    if any(r.verdict == "inconclusive" for r in results):
        unsure = sum(r.verdict == "inconclusive" for r in results)
        return "inconclusive", f"{unsure} gate(s) could not tell: not a pass"
    if errors:
        return "inconclusive", (
            f"{errors} example(s) errored: a run whose calls failed is not evidence; run it "
            "again (answered calls come from the cache)"
        )
    if not results:
        return "skipped", "the suite has no gates: nothing was judged, so the run is not a pass"
    skipped = [r for r in results if r.verdict == "skipped" and not r.waived]
    if skipped:
        why = skipped[0].reason.removeprefix("skipped: ")
        return "skipped", f"{len(skipped)} gate(s) skipped ({why}): a skipped gate is not a pass"
    if any(r.waived for r in results):
        if not any(r.kind == "absolute" and r.verdict == "pass" for r in results):
            return "skipped", ("relative gates were waived (a first version has nothing to "
                               "compare with) and the suite has no absolute gate: nothing "
                               "was judged, so the run is not a pass")  # fmt: skip
        return "pass", "every absolute gate passed; relative gates waived for a first version"
    return "pass", "every gate passed"


def outcome(results: Sequence[GateResult], spec: StatsSpec | None = None) -> Verdict:
    """The run's overall verdict (see :func:`judge`)."""
    return judge(results)[0]


def exit_code(verdict: Verdict, spec: StatsSpec) -> int:
    """0 pass; 1 fail; inconclusive and skipped are 1 unless the suite says ``warn`` for
    them (``stats: {inconclusive: warn, skipped: warn}``)."""
    if verdict == "fail":
        return 1
    if verdict == "inconclusive":
        return 1 if spec.inconclusive == "fail" else 0
    if verdict == "skipped":
        return 1 if spec.skipped == "fail" else 0
    return 0
