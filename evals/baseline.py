"""Finding the baseline a candidate run is compared with.

``--baseline`` takes:

* a run id (the registry run's ``examples.jsonl`` artifact is read);
* ``label:X`` (or ``@X``): the latest succeeded run of the same suite on the version of
  the target's prompt (or model) that holds label ``X`` now. When no version holds ``X``
  yet, there is nothing to regress against: relative gates are waived and the absolute
  gates judge the first version;
* a path to a JSON report written by ``--json`` (not registry evidence: a label gate does
  not accept relative gates compared with a file).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lockgate.evals.errors import BaselineNotFound, ResultsInvalid
from lockgate.evals.records import ExampleResult
from lockgate.registry.errors import NotFound

if TYPE_CHECKING:
    from lockgate.evals.suite import Suite
    from lockgate.registry.registry import Registry

RUN_SCAN_LIMIT = 2000


@dataclass
class Baseline:
    """What a candidate is compared with. ``registry_run``: the registry run its results were
    read from (the label gate's evidence); ``unset_label``: the baseline was a label no
    version holds yet, so there is nothing to compare with."""

    description: str
    results: list[ExampleResult]
    run_id: str | None = None
    target: str | None = None
    registry_run: str | None = None
    unset_label: str | None = None

    @classmethod
    def first_version(cls, label: str) -> Baseline:
        """No baseline: no version holds ``label`` yet."""
        return cls(f"none: no version holds label {label!r} yet", [], unset_label=label)


def rows_of(text: str, source: str) -> list[ExampleResult]:
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(ExampleResult.from_row(json.loads(line)))
        except (ValueError, KeyError, TypeError) as exc:
            raise ResultsInvalid(f"{source}, line {lineno}: not an example row ({exc})") from exc
    return out


def from_run(registry: Registry, run_id: str) -> Baseline:
    try:
        run = registry.runs.get(run_id)
    except NotFound as exc:
        raise BaselineNotFound(f"baseline run {run_id!r} does not exist", param="baseline") from exc
    digest = run.artifacts.get("examples.jsonl")
    if run.kind != "eval" or digest is None:
        raise BaselineNotFound(
            f"run {run_id} is not a finished eval run (no examples.jsonl artifact)",
            param="baseline",
        )
    text = registry.artifacts.read_bytes(digest).decode("utf-8")
    target = run.params.get("target")
    return Baseline(
        f"run {run_id} ({target})", rows_of(text, f"run {run_id}"), run_id, target, run_id
    )


def _label_unset(registry: Registry, suite: Suite, label: str) -> bool:
    """Whether the target's prompt (or model) exists and no version of it holds ``label``."""
    target = suite.target
    if target.kind == "sklearn":
        subject, name = "model", target.model_ref
    elif target.prompt_ref is not None:
        subject, name = "prompt", target.prompt_ref
    elif target.model.startswith("registry:"):
        subject, name = "model", target.model.removeprefix("registry:")
    else:
        return False
    try:
        labels = registry.labels.of(subject, name.partition("@")[0])  # type: ignore[arg-type]
    except NotFound:
        return False
    return label not in labels


def target_on_label(registry: Registry, suite: Suite, label: str) -> str:
    """The target string (as runs record it) of the version that holds ``label``."""
    target = suite.target
    if target.kind == "sklearn":
        version = registry.models.get(f"{target.model_ref.partition('@')[0]}@{label}")
        return f"registry:{version.name}@{version.version}"
    if target.prompt_ref is not None:
        prompt = registry.prompts.get(f"{target.prompt_ref.partition('@')[0]}@{label}")
        return f"prompt:{prompt.name}@{prompt.version}"
    if target.model.startswith("registry:"):
        name = target.model.removeprefix("registry:").partition("@")[0]
        model = registry.models.get(f"{name}@{label}")
        return f"registry:{model.name}@{model.version}"
    raise BaselineNotFound(
        f"label:{label} needs a prompt:NAME@LABEL or registry:NAME@LABEL target; "
        f"{target.model!r} has no versions",
        param="baseline",
    )


def from_label(registry: Registry, suite: Suite, label: str) -> Baseline:
    try:
        wanted = target_on_label(registry, suite, label)
    except NotFound as exc:
        if _label_unset(registry, suite, label):
            return Baseline.first_version(label)
        raise BaselineNotFound(f"baseline label:{label}: {exc.message}", param="baseline") from exc
    for run in registry.runs.list(kind="eval", limit=RUN_SCAN_LIMIT):
        if (
            run.name == suite.name
            and run.status == "succeeded"
            and run.params.get("target") == wanted
            and not run.params.get("shard")
        ):
            baseline = from_run(registry, run.id)
            baseline.description = f"latest run of {suite.name} on {wanted} (label {label})"
            return baseline
    raise BaselineNotFound(
        f"no succeeded run of suite {suite.name!r} on {wanted} (which holds label {label!r}); "
        "run the suite on it first",
        param="baseline",
    )


def from_report(path: Path) -> Baseline:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = [ExampleResult.from_row(r) for r in data["examples"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ResultsInvalid(f"{path} is not a JSON report with examples: {exc}") from exc
    return Baseline(f"report {path}", rows, data.get("run_id"), data.get("target"))


def resolve_baseline(text: str, suite: Suite, registry: Registry | None) -> Baseline:
    path = Path(text)
    if text.endswith(".json") and path.exists():
        return from_report(path)
    if registry is None:
        raise BaselineNotFound(f"baseline {text!r} needs the registry", param="baseline")
    if text.startswith(("label:", "@")):
        return from_label(registry, suite, text.removeprefix("label:").removeprefix("@"))
    return from_run(registry, text.removeprefix("run:"))
