"""The monitoring policy file: what to watch, when it fires, what to do.

```yaml
name: churn-drift                  # default: the file's stem
target: churn@production           # a model (NAME@LABEL), prompt:NAME@LABEL or route:NAME
signal:
  kind: drift                      # drift | eval_metric | latency_p99 | error_rate |
  max_share_drifted: 0.3           #   data_volume | schedule
window: 24h                        # what one decision looks at
min_samples: 200                   # fewer rows or calls: no decision either way
persistence: 2                     # fire after this many breaching windows in a row
cooldown: 6h                       # and not again within this long
actions:
  - {kind: alert}
  - {kind: webhook}
  - {kind: retrain, dataset: churn-labelled, entry: [python, train.py], label: production}
```

Every key is checked (unknown keys are errors); :func:`load_policy` names the key that is
wrong, with its path (``signal.max_share_drifted``, ``actions[2].entry``).
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from lockgate.gateway.monitor.errors import PolicyInvalid

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def parse_duration(text: str | int | float) -> timedelta:
    """``90s``, ``15m``, ``1h``, ``7d``, ``2w`` (or a number of seconds)."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = _DURATION.match(str(text))
        if not match:
            raise ValueError(f"{text!r} is not a duration: use e.g. 90s, 15m, 1h, 7d")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError("a duration is positive")
    return timedelta(seconds=seconds)


def _to_timedelta(value: Any) -> Any:
    return value if isinstance(value, timedelta) else parse_duration(value)


Duration = Annotated[timedelta, BeforeValidator(_to_timedelta)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- signals -------------------------------------------------------------------------------


class DriftSignal(_Strict):
    """Data drift of the target's inputs: a model's logged :predict inputs against its
    registered reference, or a prompt's / route's traffic against an earlier window."""

    kind: Literal["drift"]
    max_share_drifted: float | None = Field(default=None, ge=0, le=1)
    column: str | None = None  # fire on this column's test instead of the share
    columns: list[str] | None = None
    reference: str | None = None  # default: model:NAME@LABEL#reference, or 7d of traffic
    reference_window: Duration | None = None  # traffic drift: the reference window

    @model_validator(mode="after")
    def _one_rule(self) -> DriftSignal:
        if self.max_share_drifted is None and self.column is None:
            raise ValueError("give max_share_drifted or column")
        return self


class EvalMetricSignal(_Strict):
    """A metric of the newest eval run of ``suite`` within the window (fresh labelled data)."""

    kind: Literal["eval_metric"]
    suite: str
    metric: str
    below: float | None = None
    above: float | None = None

    @model_validator(mode="after")
    def _bound(self) -> EvalMetricSignal:
        if (self.below is None) == (self.above is None):
            raise ValueError("give one of below or above")
        return self


class LatencySignal(_Strict):
    """The p99 latency (ms) of the target's calls within the window."""

    kind: Literal["latency_p99"]
    above_ms: float = Field(gt=0)


class ErrorRateSignal(_Strict):
    """The share of the target's calls within the window that failed (HTTP status >= 500, or
    any status >= 400 with ``client_errors: true``)."""

    kind: Literal["error_rate"]
    above: float = Field(ge=0, le=1)
    client_errors: bool = False


class DataVolumeSignal(_Strict):
    """Rows in new versions of ``dataset`` since the policy last fired."""

    kind: Literal["data_volume"]
    dataset: str
    min_rows: int = Field(ge=1)


class ScheduleSignal(_Strict):
    """Fires every ``every`` (since the policy last fired)."""

    kind: Literal["schedule"]
    every: Duration


Signal = Annotated[
    DriftSignal
    | EvalMetricSignal
    | LatencySignal
    | ErrorRateSignal
    | DataVolumeSignal
    | ScheduleSignal,
    Field(discriminator="kind"),
]

# --- actions -------------------------------------------------------------------------------


class AlertAction(_Strict):
    """Record the alert (the decision run is tagged ``alert``); always done when firing."""

    kind: Literal["alert"]
    message: str = ""


class WebhookAction(_Strict):
    """Emit a ``monitor.fired`` event for the configured webhooks to deliver."""

    kind: Literal["webhook"]


class EvalAction(_Strict):
    """Run an eval suite (its registry run is linked from the decision)."""

    kind: Literal["eval"]
    suite: Path
    baseline: str | None = None  # as `lockgate eval run --baseline`


class FinetuneAction(_Strict):
    """Submit a fine-tuning job from a job spec file."""

    kind: Literal["finetune"]
    spec: Path


class RetrainAction(_Strict):
    """Queue a retraining job of the target model (a ``command`` job)."""

    kind: Literal["retrain"]
    dataset: str
    entry: list[str] = Field(min_length=1)
    label: str | None = None
    suite: Path | None = None


Action = Annotated[
    AlertAction | WebhookAction | EvalAction | FinetuneAction | RetrainAction,
    Field(discriminator="kind"),
]

# --- the policy ----------------------------------------------------------------------------

TargetKind = Literal["model", "prompt", "route"]


class Target(_Strict):
    kind: TargetKind
    name: str
    label: str | None  # None for a route

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.label}" if self.label else self.name

    def __str__(self) -> str:
        return f"{self.kind}:{self.ref}"


def parse_target(text: str) -> Target:
    """``NAME@LABEL`` or ``model:NAME@LABEL`` (a model), ``prompt:NAME@LABEL``, ``route:NAME``."""
    kind, sep, rest = text.partition(":")
    if not sep:
        kind, rest = "model", text
    if kind not in ("model", "prompt", "route") or not rest:
        raise ValueError(
            f"{text!r}: a target is NAME@LABEL (a model), prompt:NAME@LABEL or route:NAME"
        )
    name, at, label = rest.partition("@")
    if kind == "route":
        if at:
            raise ValueError(f"{text!r}: a route has no label")
        return Target(kind="route", name=name, label=None)
    if not name or not label:
        raise ValueError(f"{text!r}: name the label, e.g. {name or 'NAME'}@production")
    return Target(kind=kind, name=name, label=label)


class Policy(_Strict):
    name: str
    target: Target
    signal: Signal
    window: Duration = timedelta(hours=24)
    min_samples: int = Field(default=1, ge=0)
    persistence: int = Field(default=1, ge=1)
    cooldown: Duration | None = None
    actions: list[Action] = Field(default_factory=lambda: list[Action]([AlertAction(kind="alert")]))

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _NAME.match(name):
            raise ValueError("letters, digits, '.', '_' and '-', up to 100 characters")
        return name

    @field_validator("target", mode="before")
    @classmethod
    def _target(cls, value: Any) -> Any:
        return parse_target(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _fits(self) -> Policy:
        for i, action in enumerate(self.actions):
            if action.kind == "retrain" and self.target.kind != "model":
                raise ValueError(f"actions[{i}]: retrain needs a model target, not {self.target}")
        return self


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in {"drift", "eval_metric", "latency_p99", "error_rate", "data_volume",
                      "schedule", "alert", "webhook", "eval", "finetune", "retrain"}:  # fmt: skip
            continue  # the discriminated union's branch, not a key of the file
        else:
            out += f".{part}" if out else str(part)
    return out or "policy"


def parse_policy(data: Any, *, source: str = "policy", default_name: str | None = None) -> Policy:
    """A :class:`Policy` from a mapping; :class:`PolicyInvalid` names each wrong key."""
    if not isinstance(data, dict):
        raise PolicyInvalid(f"{source}: a policy is a mapping of keys")
    if "name" not in data and default_name is not None:
        data = {"name": default_name, **data}
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{_loc(e['loc'])}: {e['msg']}" for e in exc.errors())
        first = _loc(exc.errors()[0]["loc"]) if exc.errors() else None
        raise PolicyInvalid(f"{source}: {problems}", param=first) from exc


def load_policy(path: Path) -> Policy:
    """Read and check a policy file. Relative paths in actions are relative to the file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyInvalid(f"cannot read {path}: {exc.strerror}", param="policy") from exc
    except yaml.YAMLError as exc:
        raise PolicyInvalid(f"{path} is not valid YAML: {exc}", param="policy") from exc
    policy = parse_policy(data, source=str(path), default_name=_stem_name(path))
    return _relative_to(policy, path.parent)


def _stem_name(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "-", path.stem)[:100] or "policy"


def _relative_to(policy: Policy, base: Path) -> Policy:
    actions: list[Any] = []
    for action in policy.actions:
        for attr in ("suite", "spec"):
            value = getattr(action, attr, None)
            if isinstance(value, Path) and not value.is_absolute():
                action = action.model_copy(update={attr: base / value})
        actions.append(action)
    return policy.model_copy(update={"actions": actions})
