"""Typed settings of the ``evals`` section of ``lockgate.yaml``: defaults for ``lockgate eval
run``.

```yaml
evals:
  cache_dir: /var/cache/lockgate/evals  # response cache and resume files
  concurrency: 16                       # for suites that do not set their own
  timeout_s: 120
  retries: 3
```

A suite file's own ``concurrency``, ``timeout`` and ``retries`` win over this section; none of
them is part of a suite's pinned content, so the digest a gate policy pins is the same
whatever this section says. ``--cache-dir`` wins over ``cache_dir``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lockgate.evals.suite import Suite


def _suite_default(name: str) -> Any:
    return Suite.model_fields[name].default


class EvalsSettings(BaseModel):
    """Defaults for eval runs (the ``evals`` section)."""

    model_config = ConfigDict(extra="forbid")

    cache_dir: Path | None = Field(
        default=None,
        description="Response cache and resume files; default: the user cache directory "
        "(`eval run --cache-dir` wins).",
    )
    concurrency: int = Field(
        default=_suite_default("concurrency"),
        ge=1,
        le=1000,
        description="Calls in flight, for suites that do not set `concurrency`.",
    )
    timeout_s: float = Field(
        default=_suite_default("timeout"),
        gt=0,
        description="One call to the target, for suites that do not set `timeout`.",
    )
    retries: int = Field(
        default=_suite_default("retries"),
        ge=0,
        le=10,
        description="Retries of a failed call (transport errors, 429, 5xx), for suites that "
        "do not set `retries`.",
    )


def with_eval_defaults(suite: Suite, settings: EvalsSettings) -> Suite:
    """``suite`` with the call settings its file leaves out taken from ``settings``."""
    defaults = {
        "concurrency": settings.concurrency,
        "timeout": settings.timeout_s,
        "retries": settings.retries,
    }
    update = {k: v for k, v in defaults.items() if k not in suite.model_fields_set}
    return suite.model_copy(update=update) if update else suite
