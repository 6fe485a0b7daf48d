"""One decision of a policy: measure the window, apply persistence and cooldown, act.

Every decision is a registry run of kind ``monitor`` named after the policy, fired or not:
its metrics are the signal's figures plus ``breached``, ``fired``, ``consecutive`` and
``samples``; its ``decision`` tag says which of these it was:

============  =====================================================================
decision      meaning
============  =====================================================================
fired         breached for ``persistence`` windows in a row, outside the cooldown:
              the actions ran (their results are the run's ``actions`` tag)
pending       breached, but fewer than ``persistence`` windows in a row so far
cooldown      would have fired, but the policy fired less than ``cooldown`` ago
quiet         the window did not breach the limit
insufficient  fewer than ``min_samples`` samples: no verdict (breaks a streak)
============  =====================================================================

Persistence and cooldown are computed from the policy's previous decision runs: the streak
from the newest ``persistence - 1`` of them, the last firing from the newest one (each run
carries ``last_fired_at`` forward in its tags, so nothing older is read).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from lockgate.gateway.monitor.actions import ACTIONS, ActionContext, ActionResult
from lockgate.gateway.monitor.errors import MonitorError
from lockgate.gateway.monitor.policy import Policy
from lockgate.gateway.monitor.signals import Measurement, SignalContext, measure
from lockgate.registry.errors import LockgateError
from lockgate.registry.records import LineageEdge, RunInfo
from lockgate.registry.registry import Registry

if TYPE_CHECKING:
    from lockgate.evals.settings import EvalsSettings

RUN_KIND = "monitor"


@dataclass(frozen=True)
class Decision:
    policy: str
    run_id: str
    decision: str  # fired | pending | cooldown | quiet | insufficient | error
    fired: bool
    reason: str
    consecutive: int
    measurement: Measurement | None
    actions: list[ActionResult] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(a.ok for a in self.actions)

    def to_dict(self) -> dict[str, Any]:
        m = self.measurement
        return {
            "policy": self.policy, "run_id": self.run_id, "decision": self.decision,
            "fired": self.fired, "reason": self.reason, "consecutive": self.consecutive,
            "value": m.value if m else None, "samples": m.samples if m else None,
            "figures": m.figures if m else {}, "actions": [a.to_dict() for a in self.actions],
            "error": self.error,
        }  # fmt: skip


def policy_digest(policy: Policy) -> str:
    text = json.dumps(policy.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def previous_decisions(registry: Registry, policy: Policy, count: int) -> list[RunInfo]:
    """The policy's newest finished decisions (newest first), at most ``count``."""
    runs = registry.runs.list(RUN_KIND, name=policy.name, limit=count + 5)
    return [r for r in runs if "breached" in r.metrics][:count]


def _time(text: Any) -> datetime | None:
    return datetime.fromisoformat(text) if isinstance(text, str) and text else None


def run_policy(
    registry: Registry,
    policy: Policy,
    *,
    now: datetime | None = None,
    evals: EvalsSettings | None = None,
    eval_transport_factory: Any = None,
) -> Decision:
    """Decide once, record the decision run, and act when it fires. A signal that cannot be
    measured is recorded as a failed decision run and raised (:class:`MonitorError`)."""
    now = now or datetime.now(UTC)
    previous = previous_decisions(registry, policy, max(policy.persistence - 1, 1))
    newest = previous[0] if previous else None
    last_fired = _time(newest.tags.get("last_fired_at")) if newest else None
    first_at = _time(newest.tags.get("first_decision_at")) if newest else None
    since_data = last_fired or first_at or (now - policy.window)
    signal = policy.signal
    run = registry.runs.create(
        RUN_KIND, name=policy.name,
        params={"policy": policy.name, "policy_digest": policy_digest(policy),
                "target": str(policy.target), "signal": signal.model_dump(mode="json"),
                "window_s": policy.window.total_seconds(), "min_samples": policy.min_samples,
                "persistence": policy.persistence,
                "cooldown_s": policy.cooldown.total_seconds() if policy.cooldown else None,
                "decided_at": now.isoformat()},
        tags={"policy": policy.name},
    )  # fmt: skip
    try:
        measurement = measure(SignalContext(registry, policy, now, last_fired, since_data))
    except LockgateError as exc:
        registry.runs.tag(run.id, {"decision": "error"})
        registry.runs.set_status(run.id, "failed", error=exc.message)
        raise
    except Exception as exc:  # boundary: record what broke, then let it propagate
        registry.runs.tag(run.id, {"decision": "error"})
        registry.runs.set_status(run.id, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    enough = measurement.samples >= policy.min_samples
    breached = measurement.breached and enough
    consecutive = 0
    if breached:
        consecutive = 1
        for prior in previous:
            if prior.metrics.get("breached") != 1.0:
                break
            consecutive += 1
    fired, decision, reason = False, "quiet", measurement.reason
    if not enough:
        decision = "insufficient"
        reason = f"{measurement.samples} samples, fewer than min_samples {policy.min_samples}"
    elif breached and consecutive < policy.persistence:
        decision = "pending"
        reason += f"; {consecutive} of {policy.persistence} windows in a row"
    elif breached:
        cooling = (
            policy.cooldown is not None and last_fired is not None
            and now < last_fired + policy.cooldown
        )  # fmt: skip
        if cooling:
            assert policy.cooldown is not None and last_fired is not None
            decision = "cooldown"
            reason += f"; in cooldown until {(last_fired + policy.cooldown).isoformat()}"
        else:
            fired, decision = True, "fired"
    fired_at = now if fired else last_fired
    registry.runs.tag(run.id, {
        **measurement.params, "decision": decision, "reason": reason[:500],
        "last_fired_at": fired_at.isoformat() if fired_at else None,
        "first_decision_at": (first_at or now).isoformat(),
    })  # fmt: skip
    registry.runs.log_metrics(run.id, {
        **measurement.figures, "breached": float(breached), "fired": float(fired),
        "consecutive": float(consecutive), "samples": float(measurement.samples),
        **({"value": measurement.value} if measurement.value is not None else {}),
    })  # fmt: skip
    edges = [*measurement.lineage, *_target_edge(registry, policy)]
    if edges:
        registry.runs.add_lineage(run.id, edges)
    results: list[ActionResult] = []
    if fired:
        results = _act(registry, policy, run.id, measurement, evals, eval_transport_factory)
    failed = [a for a in results if not a.ok]
    if results:
        registry.runs.tag(run.id, {"actions": [a.to_dict() for a in results]})
    error = "; ".join(f"{a.kind}: {a.detail}" for a in failed) or None
    registry.runs.set_status(run.id, "failed" if error else "succeeded", error=error)
    return Decision(
        policy.name, run.id, decision, fired, reason, consecutive, measurement, results, error
    )


def _target_edge(registry: Registry, policy: Policy) -> list[LineageEdge]:
    target = policy.target
    if target.kind == "route":
        return []
    from lockgate.gateway.monitor.signals import holder_version

    try:
        version = holder_version(registry, target)
    except MonitorError:
        return []
    return [LineageEdge(target.kind, f"{target.name}@{version}", "input")]


def _act(
    registry: Registry, policy: Policy, run_id: str, measurement: Measurement,
    evals: EvalsSettings | None, transport: Any,
) -> list[ActionResult]:  # fmt: skip
    """Run every action in order; one failing does not stop the others."""
    results = []
    for i, action in enumerate(policy.actions):
        ctx = ActionContext(registry, policy, run_id, measurement, i, evals, transport)
        try:
            results.append(ACTIONS[action.kind](ctx, action))
        except LockgateError as exc:
            results.append(ActionResult(action.kind, False, exc.message))
        except Exception as exc:  # boundary: record the action's failure, run the next one
            results.append(ActionResult(action.kind, False, f"{type(exc).__name__}: {exc}"))
    return results
