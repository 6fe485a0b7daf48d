"""The job spec: what to fine-tune, on which data, how, and where the adapter goes.

A spec comes from a YAML file (``lockgate finetune submit spec.yaml``), from CLI flags, or
from an OpenAI-style request (:func:`spec_from_openai`). Unknown keys are refused, so a
typo is an error rather than a silently ignored setting.

```yaml
base_model: registry:tiny-llama@production   # a local directory, a hub id, or registry:NAME@LABEL
training_file: data/train.jsonl               # a path or an uploaded file id (file-…)
validation_file: data/valid.jsonl             # optional
output_model: support-bot-lora                # registry model that receives the adapter
lora: {r: 16, alpha: 32, dropout: 0.05}       # target_modules default per architecture
training: {epochs: 3, learning_rate: 2.0e-4, batch_size: 8, max_seq_length: 2048}
eval: {suite: evals/support.yaml, label: production}   # optional: gate, then label
gpus: 1                                       # null: one GPU when present, else CPU
executor: local                               # local | torchrun | kubernetes
```
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from finetune.errors import SpecInvalid

# LoRA targets per ``config.model_type``: attention and MLP projections (the QLoRA paper's
# finding: adapting every linear layer matches full fine-tuning far better than q/v only).
DEFAULT_TARGET_MODULES: dict[str, list[str]] = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mixtral": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen3": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "phi": ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "falcon": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "bloom": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "opt": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
}
ALL_LINEAR = "all-linear"  # PEFT's own fallback for an architecture not listed above

ExecutorName = Literal["local", "torchrun", "kubernetes"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoraParams(_Strict):
    r: int = Field(16, gt=0, description="Rank of the low-rank update.")
    alpha: int | None = Field(None, gt=0, description="Scaling numerator; default 2 x r.")
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | None = Field(
        None, description="Module names to adapt; default per architecture."
    )

    @property
    def lora_alpha(self) -> int:
        return self.alpha if self.alpha is not None else 2 * self.r

    def modules_for(self, model_type: str | None) -> list[str] | str:
        if self.target_modules:
            return list(self.target_modules)
        return DEFAULT_TARGET_MODULES.get(model_type or "", ALL_LINEAR)


class TrainingParams(_Strict):
    epochs: int = Field(3, ge=1)
    learning_rate: float = Field(2e-4, gt=0.0, lt=1.0)
    batch_size: int = Field(8, ge=1, description="Sequences per micro-batch (one packed row).")
    gradient_accumulation: int = Field(1, ge=1)
    max_seq_length: int | None = Field(
        None, ge=8, description="Longer examples are truncated; default min(2048, the model's)."
    )
    seed: int = 0
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    max_grad_norm: float = Field(1.0, gt=0.0)
    max_steps: int | None = Field(None, ge=1, description="Cap on optimizer steps.")
    checkpoint_every: int = Field(50, ge=0, description="Optimizer steps; 0: only at the end.")
    eval_every: int | None = Field(
        None, ge=1, description="Validation loss every N steps; default: checkpoint_every."
    )
    log_every: int = Field(1, ge=1, description="Step metrics every N optimizer steps.")
    gradient_checkpointing: bool = False
    packing: bool = Field(True, description="Padding-free packing of each micro-batch.")
    bf16: bool | None = Field(None, description="Default: when the GPU supports it.")


class EvalParams(_Strict):
    suite: str = Field(description="Path of an eval suite YAML file.")
    label: str = Field("production", description="Label to set when the gates pass.")
    baseline: str | None = Field(
        None, description="Default: the label's current holder, else the base model."
    )


class JobSpec(_Strict):
    base_model: str = Field(min_length=1)
    training_file: str = Field(min_length=1)
    validation_file: str | None = None
    output_model: str = Field(min_length=1)
    lora: LoraParams = Field(default_factory=LoraParams)
    training: TrainingParams = Field(default_factory=TrainingParams)
    eval: EvalParams | None = None
    gpus: int | None = Field(None, ge=0, description="None: one GPU when present, else CPU.")
    executor: ExecutorName | None = Field(None, description="Default: torchrun for gpus > 1.")

    @model_validator(mode="after")
    def _coherent(self) -> JobSpec:
        if self.executor == "torchrun" and not self.gpus:
            raise ValueError("executor 'torchrun' needs gpus >= 1")
        return self

    @property
    def executor_name(self) -> ExecutorName:
        if self.executor is not None:
            return self.executor
        return "torchrun" if (self.gpus or 0) > 1 else "local"

    def seq_length(self, model_positions: int | None) -> int:
        if self.training.max_seq_length is not None:
            return self.training.max_seq_length
        return min(2048, model_positions or 2048)

    def hyperparameters(self) -> dict[str, Any]:
        """The settings that shape the adapter, for run params and lineage."""
        return {
            "lora": self.lora.model_dump(),
            "training": self.training.model_dump(),
            "gpus": self.gpus,
        }


def parse_spec(data: Any, *, source: str = "spec") -> JobSpec:
    """Validate a mapping as a :class:`JobSpec`; errors name every bad field."""
    if not isinstance(data, dict):
        raise SpecInvalid(f"{source}: a job spec is a mapping, not {type(data).__name__}")
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "spec"
            problems.append(f"{where}: {err['msg']}")
        first = ".".join(str(p) for p in exc.errors()[0]["loc"]) or None
        raise SpecInvalid(f"{source}: " + "; ".join(problems), param=first) from exc


def load_spec(path: Path) -> JobSpec:
    """Read a YAML (or JSON) spec. Relative data paths are taken from the spec's folder."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecInvalid(f"cannot read {path}: {exc.strerror}", param="spec") from exc
    except yaml.YAMLError as exc:
        raise SpecInvalid(f"{path} is not valid YAML: {exc}", param="spec") from exc
    spec = parse_spec(data, source=str(path))
    return _relative_to(spec, path.parent)


def _relative_to(spec: JobSpec, folder: Path) -> JobSpec:
    def fix(value: str | None) -> str | None:
        if value is None or value.startswith(("file-", "registry:")) or Path(value).is_absolute():
            return value
        candidate = folder / value
        return str(candidate) if candidate.exists() else value

    update: dict[str, Any] = {
        "training_file": fix(spec.training_file),
        "validation_file": fix(spec.validation_file),
        "base_model": fix(spec.base_model),
    }
    if spec.eval is not None:
        update["eval"] = spec.eval.model_copy(update={"suite": fix(spec.eval.suite)})
    return spec.model_copy(update=update)


def spec_from_openai(body: dict[str, Any]) -> JobSpec:
    """Map a ``POST /v1/fine_tuning/jobs`` body onto a spec.

    ``model`` → ``base_model``; ``training_file``/``validation_file`` stay file ids;
    ``hyperparameters`` (top level or under ``method.supervised``): ``n_epochs``,
    ``batch_size``, ``learning_rate_multiplier`` (x 2e-4); ``suffix`` names the output
    model (default ``<base>-ft``); ``seed``. ``"auto"`` keeps lockgate's default. Extra
    lockgate settings may ride in ``metadata.lockgate`` as a partial spec.
    """
    hyper = dict(body.get("hyperparameters") or {})
    method = body.get("method") or {}
    if isinstance(method, dict):
        sup = (method.get("supervised") or {}).get("hyperparameters") or {}
        hyper.update(sup)
    training: dict[str, Any] = {}
    if isinstance(hyper.get("n_epochs"), int):
        training["epochs"] = hyper["n_epochs"]
    if isinstance(hyper.get("batch_size"), int):
        training["batch_size"] = hyper["batch_size"]
    mult = hyper.get("learning_rate_multiplier")
    if isinstance(mult, int | float):
        training["learning_rate"] = 2e-4 * float(mult)
    if isinstance(body.get("seed"), int):
        training["seed"] = body["seed"]
    model = str(body.get("model") or "")
    short = model.removeprefix("registry:").split("@")[0].rstrip("/").split("/")[-1] or "model"
    data: dict[str, Any] = {
        "base_model": model,
        "training_file": body.get("training_file") or "",
        "validation_file": body.get("validation_file"),
        "output_model": body.get("suffix") or f"{short}-ft",
        "training": training,
    }
    extra = (body.get("metadata") or {}).get("lockgate") if body.get("metadata") else None
    if isinstance(extra, str):  # OpenAI metadata values are strings: JSON inside
        try:
            extra = json.loads(extra)
        except ValueError as exc:
            raise SpecInvalid("metadata.lockgate must be a JSON object", param="metadata") from exc
    if isinstance(extra, dict):
        for key, value in extra.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
    return parse_spec(data, source="request")
