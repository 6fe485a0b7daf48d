"""The step schedule without a model: step counts, the micro-batches of each step (alone and
under DDP), the learning rate, and the position a checkpoint saves for a resumed run."""

from __future__ import annotations

import pytest

from lockgate.finetune.checkpoints import TrainState
from lockgate.finetune.schedule import Schedule


def _plan(examples: int, **over: object) -> Schedule:
    args: dict[str, object] = {
        "batch_size": 1, "accumulation": 1, "world": 1, "epochs": 1, **over,
    }  # fmt: skip
    return Schedule.plan(examples, **args)  # type: ignore[arg-type]


def test_steps_per_epoch_and_total() -> None:
    schedule = _plan(10, batch_size=3, accumulation=2, epochs=3, warmup_ratio=0.5)
    assert schedule.micro_batches == 4  # ceil(10 / 3)
    assert schedule.steps_per_epoch == 2  # ceil(4 / 2)
    assert (schedule.total, schedule.warmup) == (6, 3)
    capped = _plan(10, batch_size=3, accumulation=2, epochs=3, max_steps=5, warmup_ratio=0.5)
    assert (capped.total, capped.warmup) == (5, 2)  # the warm-up is a share of the capped run
    ddp = _plan(10, batch_size=3, accumulation=2, world=2, epochs=3)
    assert (ddp.steps_per_epoch, ddp.total) == (1, 3)  # ceil(4 / (2 x 2))
    with pytest.raises(ValueError, match="at least one example"):
        _plan(0)


def test_alone_each_micro_batch_is_read_once_per_epoch_the_last_step_short() -> None:
    schedule = _plan(7, accumulation=3, epochs=2)
    assert schedule.steps_per_epoch == 3
    steps = [schedule.picks(step, rank=0) for step in range(schedule.total)]
    assert steps == [[0, 1, 2], [3, 4, 5], [6]] * 2
    assert [schedule.epoch(step) for step in range(schedule.total)] == [0, 0, 0, 1, 1, 1]


def test_under_ddp_ranks_interleave_and_wrap_to_stay_in_step() -> None:
    schedule = _plan(7, accumulation=2, world=2)
    assert schedule.steps_per_epoch == 2
    assert [schedule.picks(0, rank) for rank in (0, 1)] == [[0, 2], [1, 3]]
    # positions 4..7 of an epoch of 7: the 8th wraps to the first, so both ranks run two
    assert [schedule.picks(1, rank) for rank in (0, 1)] == [[4, 6], [5, 0]]
    read = {i for step in range(2) for rank in (0, 1) for i in schedule.picks(step, rank)}
    assert read == set(range(7))


def test_learning_rate_warms_up_then_decays_to_zero() -> None:
    schedule = _plan(6, epochs=1, warmup_ratio=0.34)  # 6 steps, 2 of warm-up
    assert schedule.warmup == 2
    factors = [schedule.lr_factor(step) for step in range(schedule.total + 1)]
    assert factors == pytest.approx([1 / 3, 2 / 3, 1.0, 3 / 4, 2 / 4, 1 / 4, 0.0])
    flat = _plan(4, epochs=1)
    assert [flat.lr_factor(s) for s in range(4)] == pytest.approx([1.0, 0.75, 0.5, 0.25])


def test_the_state_after_each_step_points_at_the_next_steps_first_micro_batch() -> None:
    schedule = _plan(9, batch_size=2, accumulation=2, epochs=2)  # 5 micro-batches, 3 steps each
    state = TrainState(0, schedule.total, 0, 0, 0, "fp")
    seen = []
    while state.step < schedule.total:
        state = schedule.after(state, tokens=10)
        seen.append((state.step, state.epoch, state.micro_batch))
        if state.step < schedule.total:  # a run resumed here reads what the next step would
            assert state.micro_batch == schedule.picks(state.step, rank=0)[0]
            assert state.epoch == schedule.epoch(state.step)
    assert seen == [(1, 0, 2), (2, 0, 4), (3, 1, 0), (4, 1, 2), (5, 1, 4), (6, 2, 0)]
    assert (state.total_steps, state.tokens_seen, state.fingerprint) == (6, 60, "fp")


def test_under_ddp_the_saved_position_counts_every_ranks_micro_batches() -> None:
    schedule = _plan(16, batch_size=1, accumulation=2, world=4, epochs=1)
    assert schedule.steps_per_epoch == 2
    after_one = schedule.after(TrainState(0, schedule.total, 0, 0, 0, "fp"), tokens=0)
    assert after_one.micro_batch == 8  # 2 micro-batches x 4 ranks
    assert [schedule.picks(1, rank)[0] for rank in range(4)] == [8, 9, 10, 11]
