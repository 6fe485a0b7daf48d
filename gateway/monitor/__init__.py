"""Monitoring policies: watch a model, prompt or route, decide, and act.

``load_policy(path)`` reads a policy file (:mod:`.policy`); ``run_policy(registry, policy)``
makes one decision (:mod:`.runner`): it measures the signal over the window
(:mod:`.signals`), applies persistence and cooldown from the policy's earlier decisions,
records the decision as a ``monitor`` run and, when it fires, runs the actions
(:mod:`.actions`). ``lockgate monitor run`` is the CLI (:mod:`.cli`).
"""

from lockgate.gateway.monitor.errors import MonitorError, PolicyInvalid, SignalUnavailable
from lockgate.gateway.monitor.policy import Policy, load_policy, parse_policy
from lockgate.gateway.monitor.runner import Decision, run_policy

__all__ = [
    "Decision",
    "MonitorError",
    "Policy",
    "PolicyInvalid",
    "SignalUnavailable",
    "load_policy",
    "parse_policy",
    "run_policy",
]
