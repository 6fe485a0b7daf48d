"""Errors of monitoring policies.

Hierarchy::

    LockgateError (registry.errors)
    └── MonitorError              a policy could not be run (exit 2)
        ├── PolicyInvalid         (400) the policy file: names the wrong key
        └── SignalUnavailable     the signal's source is missing (no such model, label, suite)
"""

from __future__ import annotations

from lockgate.registry.errors import LockgateError


class MonitorError(LockgateError):
    code = "monitor_error"


class PolicyInvalid(MonitorError):
    code = "policy_invalid"


class SignalUnavailable(MonitorError):
    code = "signal_unavailable"
