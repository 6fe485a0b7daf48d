"""Targets: what an eval run calls, resolved and pinned before the first call.

``prompt:NAME@LABEL`` and ``registry:NAME@LABEL`` are resolved to a version once, so a label
moving mid-run cannot mix versions; that version is part of the cache key and the run's
lineage. With ``render: client`` (the default) the prompt is rendered here and plain
``messages`` are sent, which any OpenAI-compatible server understands; with
``render: gateway`` the request carries lockgate's ``prompt`` object and the gateway renders.

The target's key comes with the suite (``target.api_key_env``, looked up when the suite is
loaded); a named variable that held no key stops the run here, before its first call.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lockgate.evals.errors import EvalError, SuiteInvalid
from lockgate.evals.records import ExampleResult
from lockgate.evals.suite import LLMTarget, SklearnTarget
from lockgate.registry.records import LineageEdge, PromptVersionInfo
from lockgate.registry.templates import render_template, variables_of

if TYPE_CHECKING:
    from lockgate.registry.registry import Registry


@dataclass
class ResolvedLLMTarget:
    """An LLM target with versions pinned; builds one request body per dataset row."""

    spec: LLMTarget
    model: str
    variables: dict[str, str]  # template variable -> dataset column
    prompt: PromptVersionInfo | None = None
    lineage: list[LineageEdge] = field(default_factory=list)

    @property
    def identity(self) -> dict[str, Any]:
        """What the cache key and the resume file hang on."""
        prompt = None
        if self.prompt is not None:
            prompt = {"name": self.prompt.name, "version": self.prompt.version,
                      "hash": self.prompt.content_hash}  # fmt: skip
        messages = [m.model_dump() for m in self.spec.messages] if self.spec.messages else None
        return {
            "base_url": self.spec.base_url, "model": self.model, "prompt": prompt,
            "messages": messages, "params": self.spec.params, "render": self.spec.render,
            "variables": self.variables,
        }  # fmt: skip

    @property
    def label(self) -> str:
        if self.prompt is not None:
            return f"prompt:{self.prompt.name}@{self.prompt.version}"
        return self.model

    def required_columns(self) -> list[tuple[str, str]]:
        return [(col, f"target.variables.{var}") for var, col in self.variables.items()]

    def request(self, row: dict[str, Any], registry: Registry | None) -> dict[str, Any]:
        values = {var: row[col] for var, col in self.variables.items()}
        params = dict(self.spec.params)
        if self.prompt is not None and self.spec.render == "gateway":
            return {
                **params,
                "model": self.model,
                "prompt": {
                    "name": self.prompt.name,
                    "version": self.prompt.version,
                    "variables": values,
                },
            }
        if self.prompt is not None:
            assert registry is not None
            rendered = registry.render_prompt(self.prompt, values)
            config = {k: v for k, v in rendered.config.items() if k != "model"}
            messages = rendered.messages or [{"role": "user", "content": rendered.text or ""}]
            return {**config, **params, "model": self.model, "messages": messages}
        assert self.spec.messages is not None
        messages = [
            {"role": m.role, "content": render_template(m.content, values)}
            for m in self.spec.messages
        ]
        return {**params, "model": self.model, "messages": messages}


def resolve_llm_target(spec: LLMTarget, registry: Registry | None) -> ResolvedLLMTarget:
    """Pin the target's prompt and model versions; refuse a target whose key is missing."""
    if spec.missing_key_env is not None:
        var = spec.missing_key_env
        raise SuiteInvalid(
            f"names the environment variable {var}, which is not set (or empty), so the "
            f"target would be called without its key; set {var} (in CI, from a secret) or "
            "remove target.api_key_env",
            param="target.api_key_env",
        )
    lineage: list[LineageEdge] = []
    prompt = None
    if spec.prompt_ref is not None:
        if registry is None:
            raise EvalError(f"target {spec.model} needs a registry", param="target.model")
        prompt = registry.get_prompt(spec.prompt_ref)
        lineage.append(LineageEdge("prompt", f"{prompt.name}@{prompt.version}", "input"))
        template_vars = list(prompt.variables)
        model = str(spec.params.get("model") or prompt.config.get("model") or "")
        if spec.render == "gateway":
            model = f"prompt:{prompt.name}@{prompt.version}"
        if not model:
            raise SuiteInvalid(
                f"prompt {prompt.name}@{prompt.version} names no model in its config; "
                "set target.params.model",
                param="target.params.model",
            )
    else:
        assert spec.messages is not None
        template_vars = variables_of(m.content for m in spec.messages)
        model = spec.model
    if model.startswith("registry:"):
        if registry is None:
            raise EvalError(f"target model {model} needs a registry", param="target.model")
        version = registry.get_model(model.removeprefix("registry:"))
        model = f"registry:{version.name}@{version.version}"
        lineage.append(LineageEdge("model", f"{version.name}@{version.version}", "input"))
    unknown = sorted(set(spec.variables) - set(template_vars))
    if unknown:
        raise SuiteInvalid(
            f"maps {', '.join(unknown)}, which the template does not use "
            f"(it takes: {', '.join(template_vars) or 'none'})",
            param="target.variables",
        )
    variables = {var: spec.variables.get(var, var) for var in template_vars}
    return ResolvedLLMTarget(spec, model, variables, prompt, lineage)


@dataclass
class ResolvedSklearnTarget:
    spec: SklearnTarget
    estimator: Any
    ref: str
    lineage: list[LineageEdge]

    @property
    def identity(self) -> dict[str, Any]:
        return {"model": self.ref, "features": self.spec.features, "label": self.spec.label}

    @property
    def label(self) -> str:
        return f"registry:{self.ref}"

    def required_columns(self) -> list[tuple[str, str]]:
        cols = [(c, f"target.features[{i}]") for i, c in enumerate(self.spec.features)]
        return [*cols, (self.spec.label, "target.label")]

    def predict(self, pending: list[ExampleResult]) -> None:
        """Fill ``output`` (and class probabilities) for every pending example, in one batch."""
        if not pending:
            return
        import numpy as np

        features = self.spec.features
        x: Any
        if hasattr(self.estimator, "feature_names_in_"):  # fitted on a DataFrame
            pd: Any = importlib.import_module("pandas")
            x = pd.DataFrame([{f: r.input[f] for f in features} for r in pending])
        else:
            x = np.array([[r.input[f] for f in features] for r in pending])
        predictions = self.estimator.predict(x)
        proba = None
        if hasattr(self.estimator, "predict_proba"):
            try:
                proba = self.estimator.predict_proba(x)
            except (AttributeError, NotImplementedError):
                proba = None
        classes = [_plain(c) for c in getattr(self.estimator, "classes_", [])]
        for i, r in enumerate(pending):
            r.output = _plain(predictions[i])
            if proba is not None:
                r.extra = {"proba": [float(p) for p in proba[i]], "classes": classes}


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def resolve_sklearn_target(spec: SklearnTarget, registry: Registry | None) -> ResolvedSklearnTarget:
    if registry is None:
        raise EvalError("a sklearn target needs a registry", param="target.model")
    version = registry.get_model(spec.model_ref)
    ref = f"{version.name}@{version.version}"
    estimator = registry.load_sklearn_model(ref)
    return ResolvedSklearnTarget(spec, estimator, ref, [LineageEdge("model", ref, "input")])
