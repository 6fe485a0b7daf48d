"""The suite file: what to evaluate, on which data, scored how, and gated by what.

A suite is YAML, parsed into the pydantic models below. Every validation error names the
field it is about (``target.model: …``). Example::

    name: qa
    dataset: data/qa.jsonl            # a file or folder, or registry:NAME[@VERSION]
    target:
      base_url: http://127.0.0.1:4000/v1   # leave out for the in-process gateway
      model: prompt:qa@candidate           # a route, registry:NAME@LABEL or prompt:NAME@LABEL
      variables: {question: question}      # prompt variable -> dataset column
      api_key_env: LOCKGATE_EVAL_KEY       # the gateway key, from the environment
    reference: answer                      # the column scorers compare against
    scorers:
      - exact_match: {case: false}
      - bleu
    epochs: 1
    concurrency: 8
    gates:
      - exact_match >= 0.8
      - "exact_match: no significant regression vs baseline"

The target's key is read from the environment when the suite is loaded (``api_key_env``;
:func:`load_suite` takes the environment, by default the process's): the suite file names
the variable, never the secret. A named variable that is unset or empty fails the run
before its first call (:func:`evals.chat_target.resolve_chat_target`); ``eval merge`` makes
no calls and needs no key.

A scikit-learn target names its model and feature columns; the column of true values is the
suite's ``reference``, as for an LLM target (``label`` means a registry pointer only)::

    target: {kind: sklearn, model: registry:churn@candidate, features: [tenure, plan]}
    reference: churned
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from lockgate.evals.errors import SuiteInvalid

OnError = Literal["fail", "skip", "score_zero"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(_Model):
    """A data file or folder (relative to the suite file), or ``registry:NAME[@VERSION]``."""

    source: str
    limit: int | None = Field(default=None, ge=1, description="Use only the first N rows.")

    @property
    def is_registry(self) -> bool:
        return self.source.startswith("registry:")


class Message(_Model):
    role: Literal["system", "developer", "user", "assistant"]
    content: str


class LLMTarget(_Model):
    """An OpenAI-compatible endpoint and what to send it."""

    kind: Literal["llm"] = "llm"
    base_url: str | None = None
    model: str
    variables: dict[str, str] = Field(default_factory=dict)
    messages: list[Message] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    api_key: str | None = Field(
        default=None,
        description="The key sent as a bearer token; filled from api_key_env when the suite is "
        "loaded. Prefer api_key_env: a key written here is a secret in the suite file.",
    )
    api_key_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Name of the environment variable holding the key (as routes name theirs).",
    )
    render: Literal["client", "gateway"] = "client"

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        if value.startswith("prompt:") and "@" not in value:
            raise ValueError("a prompt target is prompt:NAME@LABEL or prompt:NAME@VERSION")
        return value

    @model_validator(mode="after")
    def _one_key_source(self) -> LLMTarget:
        if self.api_key is not None and self.api_key_env is not None:
            raise ValueError("give api_key_env (preferred) or api_key, not both")
        return self

    @model_validator(mode="after")
    def _messages_or_prompt(self) -> LLMTarget:
        if self.messages is not None and self.model.startswith("prompt:"):
            raise ValueError("give either a prompt:NAME@LABEL model or messages, not both")
        if not self.model.startswith("prompt:") and self.messages is None:
            raise ValueError(
                "a route or registry model needs `messages` templates, e.g. "
                "[{role: user, content: '{{ question }}'}]"
            )
        return self

    @property
    def prompt_ref(self) -> str | None:
        return self.model.removeprefix("prompt:") if self.model.startswith("prompt:") else None

    @property
    def missing_key_env(self) -> str | None:
        """The variable ``api_key_env`` names when no key was found in it, else None."""
        return self.api_key_env if self.api_key_env and not self.api_key else None

    def with_key_from(self, environ: Mapping[str, str]) -> LLMTarget:
        """A copy holding the key ``api_key_env`` names, when ``environ`` has it (not empty)."""
        if self.api_key_env is None or not environ.get(self.api_key_env):
            return self
        return self.model_copy(update={"api_key": environ[self.api_key_env]})


class SklearnTarget(_Model):
    """A registered scikit-learn model, predicted in process."""

    kind: Literal["sklearn"]
    model: str
    features: list[str] = Field(min_length=1)

    @property
    def model_ref(self) -> str:
        return self.model.removeprefix("registry:")


class ScorerSpec(_Model):
    """One scorer: a registered name or ``module:function``, its metric name and params."""

    name: str
    as_: str | None = Field(default=None, alias="as")
    reference: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def metric(self) -> str:
        return self.as_ or self.name.rsplit(":", 1)[-1]


class GateSpec(_Model):
    """``metric op threshold`` (absolute) or a regression check against the baseline."""

    metric: str
    op: Literal[">=", ">", "<=", "<", "=="] | None = None
    threshold: float | None = None
    regression: bool = False
    max_drop: float | None = Field(default=None, ge=0)
    min_effect: float | None = Field(default=None, gt=0)
    min_examples: int | None = Field(default=None, ge=1)
    text: str = ""

    @model_validator(mode="after")
    def _kind(self) -> GateSpec:
        absolute = self.op is not None and self.threshold is not None
        relative = self.regression or self.max_drop is not None
        if absolute == relative:
            raise ValueError(
                "a gate is either absolute (`accuracy >= 0.9`) or relative "
                "(`accuracy: no significant regression vs baseline`, `max_drop: 0.02`)"
            )
        return self

    @property
    def relative(self) -> bool:
        return self.op is None

    def describe(self) -> str:
        if self.text:
            return self.text
        if not self.relative:
            return f"{self.metric} {self.op} {self.threshold:g}"
        if self.max_drop is not None:
            return f"{self.metric}: max_drop {self.max_drop:g} vs baseline"
        return f"{self.metric}: no significant regression vs baseline"


class StatsSpec(_Model):
    alpha: float = Field(default=0.05, gt=0, lt=1)
    power: float = Field(default=0.8, gt=0, lt=1)
    min_effect: float = Field(default=0.05, gt=0, description="Smallest drop worth detecting.")
    resamples: int = Field(default=2000, ge=100)
    seed: int = 0
    min_examples: int = Field(default=20, ge=1, description="Below this, a gate is inconclusive.")
    inconclusive: Literal["fail", "warn"] = "fail"
    skipped: Literal["fail", "warn"] = Field(
        default="fail",
        description="The exit code of a run with a skipped gate or no gates: 1 (fail) or 0 "
        "(warn); either way it is not a pass and moves no label.",
    )


class Suite(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-/]{0,199}$")
    dataset: DatasetSpec
    target: Annotated[LLMTarget | SklearnTarget, Field(discriminator="kind")]
    reference: str | None = None
    scorers: list[ScorerSpec] = Field(min_length=1)
    epochs: int = Field(default=1, ge=1, le=100)
    concurrency: int = Field(default=8, ge=1, le=1000)
    timeout: float = Field(default=60.0, gt=0)
    retries: int = Field(default=2, ge=0, le=10)
    on_error: OnError = "fail"
    gates: list[GateSpec] = Field(default_factory=list)
    stats: StatsSpec = Field(default_factory=StatsSpec)
    base_dir: Path = Field(default=Path("."), exclude=True)
    _document: dict[str, Any] | None = PrivateAttr(default=None)
    _parsed: dict[str, Any] | None = PrivateAttr(default=None)

    def _pinned_fields(self) -> dict[str, Any]:
        from lockgate.registry.gates import suite_content

        return suite_content(self.model_dump(mode="json", by_alias=True, exclude_defaults=True))

    def digest(self, dataset_digest: str) -> str:
        """The suite's content digest over a dataset version: what runs record and gate
        policies pin (:func:`registry.gates.suite_digest` of the file as YAML loaded it;
        of the fields themselves for a suite built in code or changed since it was read)."""
        from lockgate.registry.gates import suite_digest

        document = self._document
        if document is None or self._parsed != self._pinned_fields():
            document = self.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        return suite_digest(document, dataset_digest)

    @model_validator(mode="after")
    def _reference_for_sklearn(self) -> Suite:
        if isinstance(self.target, SklearnTarget) and self.reference is None:
            raise ValueError(
                "a sklearn target needs `reference`: the column holding the true values"
            )
        return self

    @model_validator(mode="after")
    def _metrics_unique(self) -> Suite:
        names = [s.metric for s in self.scorers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"two scorers report the metric {dupes[0]!r}; name one with `as:`")
        return self


# ----------------------------------------------------------------------------- parsing
def _scorer_entry(entry: Any) -> Any:
    """``bleu`` | ``{exact_match: {case: false}}`` | ``{name: …, as: …, params: {…}}``."""
    if isinstance(entry, str):
        return {"name": entry}
    if isinstance(entry, dict) and "name" not in entry and len(entry) == 1:
        ((name, params),) = entry.items()
        params = dict(params or {})
        out: dict[str, Any] = {"name": name}
        for key in ("as", "reference"):
            if key in params:
                out[key] = params.pop(key)
        out["params"] = params
        return out
    return entry


def _gate_entry(entry: Any) -> Any:
    """Gate strings: ``m >= 0.9``, ``m: no significant regression vs baseline``,
    ``m: max_drop 0.02``; or a mapping with the same fields as :class:`GateSpec`."""
    from lockgate.evals.gates import parse_gate

    if isinstance(entry, str):
        return parse_gate(entry)
    if isinstance(entry, dict) and "metric" not in entry and len(entry) == 1:
        ((metric, body),) = entry.items()
        if isinstance(body, str):
            return parse_gate(f"{metric}: {body}")
        if isinstance(body, dict):
            return {"metric": metric, **body}
    return entry


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in {"llm", "sklearn"} and out == "target":
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def parse_suite(
    data: Any,
    *,
    base_dir: Path = Path("."),
    source: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Suite:
    """Validate a suite mapping; errors name the field (``scorers[1].name: …``).

    ``target.api_key_env`` is looked up in ``environ`` (default: the process's environment)."""
    if not isinstance(data, dict):
        raise SuiteInvalid("a suite is a YAML mapping", path=source)
    document = copy.deepcopy(data)
    data = dict(data)
    if isinstance(data.get("dataset"), str):
        data["dataset"] = {"source": data["dataset"]}
    elif isinstance(data.get("dataset"), dict) and "path" in data["dataset"]:
        data["dataset"] = {"source": data["dataset"].pop("path"), **data["dataset"]}
    if isinstance(data.get("target"), dict) and "kind" not in data["target"]:
        data["target"] = {"kind": "llm", **data["target"]}
    old_target = data.get("target")
    if (
        isinstance(old_target, dict)
        and old_target.get("kind") == "sklearn"
        and "label" in old_target
    ):
        raise SuiteInvalid(  # the old spelling: say what it is called now
            f"was renamed: name the column of true values with `reference: "
            f"{old_target['label']}` at the top of the suite, as LLM suites do (a label is a "
            "registry pointer)",
            param="target.label",
            path=source,
        )
    if isinstance(data.get("scorers"), list):
        data["scorers"] = [_scorer_entry(e) for e in data["scorers"]]
    if isinstance(data.get("gates"), list):
        try:
            data["gates"] = [_gate_entry(e) for e in data["gates"]]
        except SuiteInvalid as exc:
            raise SuiteInvalid(exc.message, path=source) from None
    try:
        suite = Suite.model_validate({**data, "base_dir": base_dir})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = _loc(tuple(err["loc"]))
        msg = str(err["msg"]).removeprefix("Value error, ")
        more = f" (and {exc.error_count() - 1} more problem(s))" if exc.error_count() > 1 else ""
        raise SuiteInvalid(msg + more, param=field or None, path=source) from None
    if isinstance(suite.target, LLMTarget):
        target = suite.target.with_key_from(os.environ if environ is None else environ)
        suite = suite.model_copy(update={"target": target})
    suite._document, suite._parsed = document, suite._pinned_fields()
    return suite


def load_suite(path: Path, *, environ: Mapping[str, str] | None = None) -> Suite:
    """Read and validate a suite file; ``environ`` (default: the process's environment)
    supplies the key ``target.api_key_env`` names."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SuiteInvalid(f"cannot read the suite file: {exc.strerror}", path=str(path)) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise SuiteInvalid(f"not valid YAML{line}: {exc}", path=str(path)) from exc
    return parse_suite(data, base_dir=path.resolve().parent, source=str(path), environ=environ)
