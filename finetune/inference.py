"""Loading a base model with LoRA adapters for inference, for the gateway's local provider.

One base model is loaded once; adapters are attached to it by name (``PeftModel`` with
several adapters) and switched per request, so many ``lora`` versions share one copy of
the base weights::

    base = load_base("/models/tiny")                      # LoadedBase(model, tokenizer)
    peft_model = attach_adapter(base, "/adapters/v3", "support-bot@3")
    text = generate(base, [{"role": "user", "content": "hi"}], adapter="support-bot@3")
    for piece in stream(base, messages, adapter="support-bot@3"): ...

Threading: generation on one loaded base is serialised by the lock on :class:`LoadedBase`
(switching adapters is model-global state); run it in a worker thread from async code, and
pass ``stop`` (a ``threading.Event``) to end a generation whose caller has gone: it stops
after the current token and frees the base for the next request.

A job's stored checkpoints are adapters too: the model string ``ft:JOB_ID:ckpt-step-N``
(:func:`checkpoint_model`, OpenAI's ``fine_tuned_model_checkpoint``) names the adapter of
the checkpoint at step N that the job's run uploaded to the artifact store;
:func:`find_checkpoint` looks it up.

Loading and generating say nothing on the terminal: :func:`quiet_model_libraries` turns off
transformers' and PEFT's advisory warnings and the Hub's progress bars.
"""

from __future__ import annotations

import importlib
import logging
import re
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lockgate.finetune import _torch
from lockgate.finetune.checkpoints import ARTIFACT_PREFIX, PREFIX
from lockgate.finetune.data import Example
from lockgate.finetune.encoding import render_example
from lockgate.registry.errors import NotFound

if TYPE_CHECKING:
    from lockgate.registry.registry import Registry

CHECKPOINT_PREFIX = "ft:"
_CHECKPOINT = re.compile(r"ft:(?P<job>[A-Za-z0-9_-]{1,100}):ckpt-step-(?P<step>[0-9]{1,9})")
# the libraries whose warnings and progress bars are noise for someone serving or training
QUIET_LIBRARIES = ("transformers", "peft", "huggingface_hub", "accelerate", "safetensors")


def quiet_model_libraries() -> None:
    """Silence transformers, PEFT and the Hugging Face Hub: their loggers above warnings
    only, their progress bars off, and the Python warnings they raise ignored (filters for
    their modules alone; lockgate's own warnings and logs are untouched). Idempotent; does
    nothing when transformers is not installed."""
    try:
        transformers: Any = importlib.import_module("transformers")
        hub: Any = importlib.import_module("huggingface_hub.utils")
    except ImportError:  # not installed: nothing of theirs to silence
        return
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    hub.disable_progress_bars()
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.ERROR)
        pattern = rf"{name}(\.|$)"
        if not any(f[0] == "ignore" and f[3] is not None and f[3].pattern == pattern
                   for f in warnings.filters):  # fmt: skip
            warnings.filterwarnings("ignore", module=pattern)


def checkpoint_model(job_id: str, step: int) -> str:
    """The model string that calls the adapter of ``job_id``'s checkpoint at ``step``."""
    return f"{CHECKPOINT_PREFIX}{job_id}:ckpt-step-{step}"


@dataclass(frozen=True)
class CheckpointAdapter:
    """A job's stored checkpoint, as a servable adapter."""

    model: str  # ft:JOB_ID:ckpt-step-N
    job_id: str
    step: int
    digest: str  # of the checkpoint folder in the artifact store; its adapter is adapter/
    base_model: str  # as the job's spec names it (registry:NAME@VERSION, a directory…)

    @property
    def adapter_name(self) -> str:
        return f"{self.job_id}-step-{self.step}"


def find_checkpoint(registry: Registry, model: str) -> CheckpointAdapter:
    """The stored checkpoint ``model`` (``ft:JOB_ID:ckpt-step-N``) names; NotFound (404,
    param ``model``) when the job has none at that step in the artifact store."""
    match = _CHECKPOINT.fullmatch(model)
    if match is None:
        raise NotFound(
            f"model {model!r} is not a checkpoint: a checkpoint model is ft:JOB_ID:ckpt-step-N "
            "(see GET /v1/fine_tuning/jobs/JOB_ID/checkpoints)",
            param="model",
        )
    job_id, step = match["job"], int(match["step"])
    try:
        job = registry.jobs.get(job_id)
    except NotFound:
        raise NotFound(f"model {model!r}: there is no job {job_id!r}", param="model") from None
    stored = registry.runs.artifacts(job.run_id) if job.run_id is not None else {}
    digest = stored.get(f"{ARTIFACT_PREFIX}{PREFIX}{step:07d}")
    if job.kind != "finetune" or digest is None:
        raise NotFound(
            f"model {model!r}: job {job_id} has no stored checkpoint at step {step} (its "
            f"checkpoints: GET /v1/fine_tuning/jobs/{job_id}/checkpoints; a worker run with "
            "--local-checkpoints keeps them in its work_dir only, where the gateway cannot "
            "serve them)",
            param="model",
        )
    return CheckpointAdapter(model, job_id, step, digest, str(job.spec["base_model"]))


@dataclass
class LoadedBase:
    model: Any  # a transformers model, or a PeftModel once an adapter is attached
    tokenizer: Any
    device: str
    adapters: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    generated_tokens: int = 0  # decoding steps run on this base, stopped generations included


def load_base(path: str | Path, *, device: str | None = None, dtype: str = "auto") -> LoadedBase:
    """Load a causal LM and its tokenizer (SDPA attention, eval mode)."""
    torch = _torch.torch()
    transformers = _torch.transformers()
    quiet_model_libraries()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(path), dtype=dtype if device != "cpu" else torch.float32, attn_implementation="sdpa"
    )
    model.to(device).eval()
    return LoadedBase(model, tokenizer, device)


def attach_adapter(base: LoadedBase, adapter_dir: str | Path, name: str) -> Any:
    """Load a PEFT adapter under ``name`` onto the base (idempotent)."""
    peft = _torch.peft()
    quiet_model_libraries()
    with base.lock:
        if name in base.adapters:
            return base.model
        if not base.adapters:
            base.model = peft.PeftModel.from_pretrained(
                base.model, str(adapter_dir), adapter_name=name
            )
        else:
            base.model.load_adapter(str(adapter_dir), adapter_name=name)
        base.model.eval()
        base.adapters.add(name)
        return base.model


def prompt_ids(base: LoadedBase, messages: list[dict[str, Any]]) -> Any:
    """Token ids of a chat prompt, with the generation prompt (or the fallback format)."""
    tokenizer = base.tokenizer
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        rendered, _ = render_example(tokenizer, Example(messages=[*messages]))
        text = rendered + "### Assistant:\n"
    return tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]


def _generation(base: LoadedBase, adapter: str | None) -> Any:
    model = base.model
    if hasattr(model, "set_adapter") and base.adapters:
        if adapter is None:
            return model.disable_adapter()
        model.set_adapter(adapter)
    import contextlib

    return contextlib.nullcontext()


def _watch(base: LoadedBase, stop: threading.Event | None) -> Any:
    """A stopping criterion that counts decoding steps on ``base`` and ends the generation
    once ``stop`` is set."""
    transformers = _torch.transformers()
    torch = _torch.torch()

    class Watch(transformers.StoppingCriteria):  # type: ignore[misc,name-defined]
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            base.generated_tokens += 1  # under base.lock
            done = stop is not None and stop.is_set()
            rows = input_ids.shape[0]
            return torch.full((rows,), done, dtype=torch.bool, device=input_ids.device)

    return transformers.StoppingCriteriaList([Watch()])


def _generate_kwargs(
    base: LoadedBase, ids: Any, max_new_tokens: int, temperature: float,
    stop: threading.Event | None,
) -> dict[str, Any]:  # fmt: skip
    """What ``model.generate`` takes for a chat prompt, for both :func:`generate` and
    :func:`stream`: greedy at temperature 0, cut short once ``stop`` is set."""
    torch = _torch.torch()
    tok = base.tokenizer
    kwargs: dict[str, Any] = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "pad_token_id": tok.pad_token_id or tok.eos_token_id,
        "max_new_tokens": max_new_tokens,
        "do_sample": temperature > 0,
        "stopping_criteria": _watch(base, stop),
    }
    if temperature > 0:
        kwargs["temperature"] = temperature
    return kwargs


@dataclass
class TokenCounts:
    """What one generation took and made, counted as the model saw them (re-encoding the
    decoded text would count differently: decoding does not round-trip)."""

    prompt: int = 0
    completion: int = 0


def generate(
    base: LoadedBase,
    messages: list[dict[str, Any]],
    *,
    adapter: str | None = None,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    stop: threading.Event | None = None,
    counts: TokenCounts | None = None,
) -> str:
    """The completion for a chat; greedy when ``temperature`` is 0; cut short once ``stop``
    is set. ``counts``, when given, receives the prompt and completion token counts."""
    torch = _torch.torch()
    ids = prompt_ids(base, messages).to(base.device)
    kwargs = _generate_kwargs(base, ids, max_new_tokens, temperature, stop)
    with base.lock, torch.no_grad(), _generation(base, adapter):
        steps = base.generated_tokens
        out = base.model.generate(**kwargs)
        if counts is not None:
            counts.prompt, counts.completion = int(ids.shape[1]), base.generated_tokens - steps
    return str(base.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))


def stream(
    base: LoadedBase,
    messages: list[dict[str, Any]],
    *,
    adapter: str | None = None,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    stop: threading.Event | None = None,
    counts: TokenCounts | None = None,
) -> Iterator[str]:
    """Yield text pieces as they are generated (``TextIteratorStreamer`` in a thread); the
    generation ends after the current token once ``stop`` is set. ``counts``, when given, is
    filled in once the last piece has been yielded."""
    transformers = _torch.transformers()
    torch = _torch.torch()
    streamer = transformers.TextIteratorStreamer(
        base.tokenizer, skip_prompt=True, skip_special_tokens=True
    )
    ids = prompt_ids(base, messages).to(base.device)
    kwargs = _generate_kwargs(base, ids, max_new_tokens, temperature, stop)
    kwargs["streamer"] = streamer

    def run() -> None:
        with base.lock, torch.no_grad(), _generation(base, adapter):
            steps = base.generated_tokens
            base.model.generate(**kwargs)
            if counts is not None:
                counts.prompt, counts.completion = int(ids.shape[1]), base.generated_tokens - steps

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield from streamer
    thread.join()
