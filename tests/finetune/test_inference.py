"""Generation on a loaded base: a set ``stop`` event ends it after the current token, and
the base counts every decoding step (so a stopped generation is visible as work not done)."""

from __future__ import annotations

import threading
from pathlib import Path

MESSAGES = [{"role": "user", "content": "What colour is the sky?"}]
LONG = 200  # far more tokens than a stopped generation gets to (the model holds 256)


def test_a_generation_runs_to_its_limit_without_stop(tiny_model: Path) -> None:
    from lockgate.finetune.inference import generate, load_base

    base = load_base(tiny_model)
    text = generate(base, MESSAGES, max_new_tokens=LONG)
    assert text  # the random tiny model does not end early: the stop tests below mean something
    assert base.generated_tokens == LONG


def test_stop_ends_a_stream_after_the_current_token(tiny_model: Path) -> None:
    from lockgate.finetune.inference import load_base, stream

    base = load_base(tiny_model)
    stop = threading.Event()
    pieces = []
    for piece in stream(base, MESSAGES, max_new_tokens=LONG, stop=stop):
        pieces.append(piece)
        stop.set()  # the caller has gone after the first piece
    assert 1 <= base.generated_tokens < 10
    assert base.lock.acquire(blocking=False), "the base is free for the next request"
    base.lock.release()


def test_stop_set_before_generate_returns_at_once(tiny_model: Path) -> None:
    from lockgate.finetune.inference import generate, load_base

    base = load_base(tiny_model)
    stop = threading.Event()
    stop.set()
    generate(base, MESSAGES, max_new_tokens=LONG, stop=stop)
    assert base.generated_tokens == 1
