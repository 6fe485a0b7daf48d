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

Paths are a convenience for the machine's own user (the CLI). Over HTTP
(:func:`spec_from_openai`) the base model is a registry model, the data are uploaded file ids,
and ``metadata.lockgate`` sets only the LoRA and training settings (:data:`HTTP_SETTABLE`).
Whoever submits a job is recorded in ``submitted_by`` by the entry point, never by the request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from lockgate.finetune.base_model import REGISTRY_PREFIX
from lockgate.finetune.errors import SpecInvalid

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


class Submitter(_Strict):
    """Who queued a job: written by the entry point (the CLI, or the HTTP API from the
    authenticated key), never taken from a spec file or a request.

    ``holds_label_scope``: the principal held ``registry:label`` (or ``admin``) when the job
    was submitted. The step after training moves a label only when this is true."""

    via: Literal["cli", "http"]
    principal: str = Field(
        min_length=1, description="The API key id over HTTP; the local user on the CLI."
    )
    name: str = Field(description="The key's name, or the local user.")
    holds_label_scope: bool

    @property
    def remote(self) -> bool:
        """Submitted over HTTP: registry references and file ids only, no eval or label."""
        return self.via == "http"


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
    submitted_by: Submitter | None = Field(
        None, description="Set on submission (finetune.submit); a spec file's value is replaced."
    )

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


# What a request's ``metadata.lockgate`` may set over HTTP: each section's own fields, no more.
# The data, the base and output models, an eval suite or label, devices and executors are not
# a request's to choose (the request's own fields name the first three; the rest is the server's).
HTTP_SETTABLE: dict[str, type[_Strict]] = {"lora": LoraParams, "training": TrainingParams}
OPENAI_LR_UNIT = 2e-4  # learning_rate_multiplier x this = lockgate's learning_rate

_Epochs = Annotated[int, Field(ge=1, le=1000)]
_Batch = Annotated[int, Field(ge=1, le=4096)]
_Multiplier = Annotated[float, Field(gt=0, lt=1 / OPENAI_LR_UNIT)]
_Auto = Literal["auto"]


class _OpenAIModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class OpenAIHyperparameters(_OpenAIModel):
    """OpenAI's supervised hyper-parameters; ``"auto"`` keeps lockgate's default."""

    n_epochs: _Epochs | _Auto | None = None
    batch_size: _Batch | _Auto | None = None
    learning_rate_multiplier: _Multiplier | _Auto | None = Field(
        None, description="Times 2e-4, lockgate's default learning rate."
    )


class OpenAISupervised(_OpenAIModel):
    hyperparameters: OpenAIHyperparameters | None = None


class OpenAIMethod(_OpenAIModel):
    type: Literal["supervised"] = Field(
        "supervised", description="lockgate trains supervised LoRA adapters only."
    )
    supervised: OpenAISupervised | None = None


class OpenAIJobRequest(BaseModel):
    """The body of ``POST /v1/fine_tuning/jobs``. Fields OpenAI defines that lockgate does not
    use (``integrations``) are accepted and ignored."""

    model_config = ConfigDict(extra="ignore", strict=True)
    model: str = Field(
        min_length=1,
        max_length=300,
        description="The base model: registry:NAME@LABEL (or @VERSION), or the name of a "
        "registered 'hf' model. Never a server path.",
    )
    training_file: str = Field(
        min_length=1, description="The id of a file uploaded with POST /v1/files (file-…)."
    )
    validation_file: str | None = Field(None, description="A file id too.")
    hyperparameters: OpenAIHyperparameters | None = None
    method: OpenAIMethod | None = None
    suffix: str | None = Field(
        None, min_length=1, max_length=64, description="The registry model the adapter joins."
    )
    seed: int | None = None
    metadata: dict[str, Any] | None = Field(
        None,
        description="metadata.lockgate: a JSON object (or its JSON text) of lora and training "
        'settings, e.g. {"lora": {"r": 8}, "training": {"max_seq_length": 1024}}.',
    )
    integrations: list[Any] | None = None

    @field_validator("training_file", "validation_file")
    @classmethod
    def _file_id(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("file-"):
            raise ValueError(
                "give the file id (file-…) of a file uploaded with POST /v1/files; "
                "the HTTP API does not take server paths"
            )
        return value


def _where(loc: tuple[int | str, ...]) -> str:
    """An error's field path, without pydantic's union-member tags (``int``, ``literal[…]``)."""
    parts: list[str] = []
    for part in loc:
        if isinstance(part, str) and ("[" in part or part.startswith("constrained-")):
            break
        parts.append(str(part))
    return ".".join(parts)


def _invalid(exc: ValidationError, prefix: str = "") -> SpecInvalid:
    first = exc.errors(include_url=False)[0]
    where = prefix + _where(first["loc"]) if first["loc"] else prefix.rstrip(".") or "request"
    message = str(first["msg"]).removeprefix("Value error, ")
    return SpecInvalid(f"{where}: {message}", param=where)


def _lockgate_settings(metadata: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """``metadata.lockgate``, checked against :data:`HTTP_SETTABLE`; a key outside it is a
    400 that names it."""
    extra = (metadata or {}).get("lockgate")
    if extra is None:
        return {}
    if isinstance(extra, str):  # OpenAI metadata values are strings: JSON inside
        try:
            extra = json.loads(extra)
        except ValueError:
            extra = None
    if not isinstance(extra, dict):
        raise SpecInvalid(
            "metadata.lockgate must be a JSON object (or its JSON text)", param="metadata.lockgate"
        )
    allowed = "; ".join(
        f"{name} ({', '.join(m.model_fields)})" for name, m in HTTP_SETTABLE.items()
    )
    sections: dict[str, dict[str, Any]] = {}
    for key, value in extra.items():
        where = f"metadata.lockgate.{key}"
        model = HTTP_SETTABLE.get(key)
        if model is None:
            raise SpecInvalid(
                f"{where} cannot be set over HTTP: metadata.lockgate sets only {allowed}. The "
                "base model, data and output model are the request's model, training_file, "
                "validation_file and suffix; eval gates and labels are set on the server "
                "(lockgate finetune submit)",
                param=where,
            )
        if not isinstance(value, dict):
            raise SpecInvalid(f"{where} must be an object of {key} settings", param=where)
        try:
            model.model_validate(value)
        except ValidationError as exc:
            raise _invalid(exc, f"{where}.") from None
        sections[key] = value
    return sections


def spec_from_openai(body: Mapping[str, Any]) -> JobSpec:
    """Map a ``POST /v1/fine_tuning/jobs`` body onto a spec, under the HTTP API's rules.

    ``model`` → ``base_model``, always a registry reference (a plain name is taken as
    ``registry:NAME``); ``training_file``/``validation_file`` are file ids; ``hyperparameters``
    (top level or under ``method.supervised``): ``n_epochs``, ``batch_size``,
    ``learning_rate_multiplier`` (x 2e-4); ``suffix`` names the output model (default
    ``<base>-ft``); ``seed``. ``"auto"`` keeps lockgate's default. ``metadata.lockgate`` may
    set the ``lora`` and ``training`` sections, nothing else. Raises :class:`SpecInvalid`
    naming the offending field.
    """
    try:
        request = OpenAIJobRequest.model_validate(body)
    except ValidationError as exc:
        raise _invalid(exc) from None
    hyper = request.hyperparameters or OpenAIHyperparameters()
    if request.method is not None and request.method.supervised is not None:
        nested = request.method.supervised.hyperparameters
        if nested is not None:
            hyper = hyper.model_copy(update=nested.model_dump(exclude_none=True))
    training: dict[str, Any] = {}
    if isinstance(hyper.n_epochs, int):
        training["epochs"] = hyper.n_epochs
    if isinstance(hyper.batch_size, int):
        training["batch_size"] = hyper.batch_size
    if isinstance(hyper.learning_rate_multiplier, float):
        training["learning_rate"] = OPENAI_LR_UNIT * hyper.learning_rate_multiplier
    if request.seed is not None:
        training["seed"] = request.seed
    model = request.model
    if not model.startswith(REGISTRY_PREFIX):
        model = REGISTRY_PREFIX + model
    short = model.removeprefix(REGISTRY_PREFIX).split("@")[0].rstrip("/").split("/")[-1]
    data: dict[str, Any] = {
        "base_model": model,
        "training_file": request.training_file,
        "validation_file": request.validation_file,
        "output_model": request.suffix or f"{short or 'model'}-ft",
        "training": training,
    }
    for section, values in _lockgate_settings(request.metadata).items():
        data[section] = {**data.get(section, {}), **values}
    return parse_spec(data, source="request")
