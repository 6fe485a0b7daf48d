"""The circuit breaker's states on a manual clock: closed, open for the cooldown, half-open
with one probe at a time; the probe's verdict closes or re-opens the circuit."""

from __future__ import annotations

import pytest

from lockgate.gateway.breaker import CircuitBreakers
from lockgate.gateway.clock import ManualClock, SystemClock
from lockgate.gateway.settings import BreakerSettings

DEP = "openai/gpt http://127.0.0.1:1/v1"
COOLDOWN_S = 30.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def breakers(clock: ManualClock) -> CircuitBreakers:
    return CircuitBreakers(BreakerSettings(failures=3, cooldown_s=COOLDOWN_S), clock=clock)


def _open(breakers: CircuitBreakers) -> None:
    for _ in range(3):
        breakers.attempt(DEP)
        breakers.failure(DEP)


def test_consecutive_failures_open_the_circuit_for_the_cooldown(
    breakers: CircuitBreakers, clock: ManualClock
) -> None:
    for _ in range(2):
        breakers.failure(DEP)
    assert (breakers.state(DEP), breakers.blocked_for(DEP)) == ("closed", None)
    breakers.failure(DEP)
    assert breakers.state(DEP) == "open"
    assert breakers.blocked_for(DEP) == COOLDOWN_S
    clock.advance(COOLDOWN_S - 1)
    assert (breakers.state(DEP), breakers.blocked_for(DEP)) == ("open", 1.0)
    clock.advance(1)
    assert (breakers.state(DEP), breakers.blocked_for(DEP)) == ("half_open", None)


def test_a_success_between_failures_resets_the_count(breakers: CircuitBreakers) -> None:
    breakers.failure(DEP)
    breakers.failure(DEP)
    breakers.success(DEP)
    breakers.failure(DEP)
    breakers.failure(DEP)
    assert breakers.state(DEP) == "closed"


def test_half_open_lets_one_probe_through_and_its_success_closes(
    breakers: CircuitBreakers, clock: ManualClock
) -> None:
    _open(breakers)
    clock.advance(COOLDOWN_S)
    breakers.attempt(DEP)  # the probe goes out
    assert breakers.blocked_for(DEP) == 1.0  # no second call while it is out
    breakers.success(DEP)
    assert (breakers.state(DEP), breakers.blocked_for(DEP)) == ("closed", None)
    breakers.failure(DEP)  # counting starts again from zero
    assert breakers.state(DEP) == "closed"


def test_a_failed_probe_opens_the_circuit_for_another_cooldown(
    breakers: CircuitBreakers, clock: ManualClock
) -> None:
    _open(breakers)
    clock.advance(COOLDOWN_S + 5)
    breakers.attempt(DEP)
    breakers.failure(DEP)  # one failure is enough while probing
    assert breakers.state(DEP) == "open"
    assert breakers.blocked_for(DEP) == COOLDOWN_S
    clock.advance(COOLDOWN_S)
    assert breakers.state(DEP) == "half_open"


def test_a_probe_that_ends_without_a_verdict_frees_the_slot(
    breakers: CircuitBreakers, clock: ManualClock
) -> None:
    _open(breakers)
    clock.advance(COOLDOWN_S)
    breakers.attempt(DEP)
    assert breakers.blocked_for(DEP) == 1.0
    breakers.release(DEP)  # the client went away
    assert breakers.blocked_for(DEP) is None
    assert breakers.state(DEP) == "half_open"


def test_circuits_are_per_deployment(breakers: CircuitBreakers) -> None:
    _open(breakers)
    other = "openai/gpt http://127.0.0.1:2/v1"
    assert (breakers.state(other), breakers.blocked_for(other)) == ("closed", None)


def test_the_default_clock_is_the_system_clock() -> None:
    breakers = CircuitBreakers(BreakerSettings(failures=1, cooldown_s=60))
    breakers.failure(DEP)
    left = breakers.blocked_for(DEP)
    assert left is not None and 59 < left <= 60  # a real minute from now, not a manual clock
    clock = SystemClock()
    assert clock.monotonic() <= clock.monotonic()


def test_a_manual_clock_moves_only_forward() -> None:
    clock = ManualClock(start=100.0)
    assert (clock.monotonic(), clock.time()) == (0.0, 100.0)
    clock.advance(2.5)
    assert (clock.monotonic(), clock.time()) == (2.5, 102.5)
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance(-1)
