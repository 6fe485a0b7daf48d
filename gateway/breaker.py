"""A circuit breaker per deployment, in process (each replica judges for itself).

closed ──(``failures`` consecutive failures)──> open ──(``cooldown_s``)──> half-open
half-open: one probe call is let through; success closes the circuit, failure opens it again.

A failure is what makes a deployment look unhealthy: a connection error, a timeout or a 5xx.
A 429 is not (the deployment is busy, not broken: its ``Retry-After`` is honoured instead),
nor is a 4xx (the request was wrong, the deployment answered).

Time is read from the ``clock`` given (:mod:`gateway.clock`; the system's by default), so
a cooldown can be passed in a test by advancing a :class:`~gateway.clock.ManualClock`.
"""

from __future__ import annotations

from dataclasses import dataclass

from lockgate.gateway.clock import SYSTEM_CLOCK, Clock
from lockgate.gateway.settings import BreakerSettings


@dataclass(slots=True)
class _Circuit:
    failures: int = 0
    open_until: float = 0.0  # monotonic; 0 when closed
    probing: bool = False


class CircuitBreakers:
    def __init__(self, settings: BreakerSettings, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._threshold = settings.failures
        self._cooldown = settings.cooldown_s
        self._now = clock.monotonic
        self._circuits: dict[str, _Circuit] = {}

    def _circuit(self, deployment: str) -> _Circuit:
        circuit = self._circuits.get(deployment)
        if circuit is None:
            circuit = self._circuits[deployment] = _Circuit()
        return circuit

    def blocked_for(self, deployment: str) -> float | None:
        """Seconds until the deployment may be tried again, or None when it may be now."""
        circuit = self._circuits.get(deployment)
        if circuit is None or circuit.open_until == 0.0:
            return None
        left = circuit.open_until - self._now()
        if left > 0:
            return left
        return 1.0 if circuit.probing else None  # half-open: one probe at a time

    def attempt(self, deployment: str) -> None:
        """Called just before a call goes out; a half-open circuit now has its probe."""
        circuit = self._circuits.get(deployment)
        if circuit is not None and circuit.open_until and circuit.open_until <= self._now():
            circuit.probing = True

    def success(self, deployment: str) -> None:
        circuit = self._circuits.get(deployment)
        if circuit is not None and (circuit.failures or circuit.open_until):
            circuit.failures, circuit.open_until, circuit.probing = 0, 0.0, False

    def failure(self, deployment: str) -> None:
        circuit = self._circuit(deployment)
        circuit.failures += 1
        if circuit.probing or circuit.failures >= self._threshold:
            circuit.open_until = self._now() + self._cooldown
            circuit.probing = False

    def release(self, deployment: str) -> None:
        """A call ended without a verdict (cancelled): free the probe slot."""
        circuit = self._circuits.get(deployment)
        if circuit is not None:
            circuit.probing = False

    def state(self, deployment: str) -> str:
        circuit = self._circuits.get(deployment)
        if circuit is None or not circuit.open_until:
            return "closed"
        return "open" if circuit.open_until > self._now() else "half_open"
