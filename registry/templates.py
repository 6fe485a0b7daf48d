"""Sandboxed, strict prompt templates (Jinja2 ``{{ var }}`` syntax).

A template is parsed once at push time: a syntax error is rejected with its line, and the
variables it takes are extracted and stored with the version. Rendering is strict both
ways: a missing variable and an unknown extra variable are errors naming them. Values are
inserted as text and never evaluated as template code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, meta
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from registry.errors import InvalidInput, TemplateSyntaxInvalid, VariablesMismatch

# Configuration only: the environment holds no per-request state.
_ENV = ImmutableSandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
)


def template_variables(source: str, *, where: str | None = None) -> set[str]:
    """The variables ``source`` reads; raises :class:`TemplateSyntaxInvalid` with the line."""
    try:
        ast = _ENV.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateSyntaxInvalid(exc.message or str(exc), line=exc.lineno, param=where) from exc
    return set(meta.find_undeclared_variables(ast))


def variables_of(sources: Iterable[str]) -> list[str]:
    found: set[str] = set()
    for i, src in enumerate(sources):
        found |= template_variables(src, where=f"messages[{i}].content")
    return sorted(found)


@lru_cache(maxsize=1024)
def _compiled(source: str) -> Any:
    return _ENV.from_string(source)


def check_variables(expected: Iterable[str], given: Mapping[str, Any]) -> None:
    expected_set = set(expected)
    missing = sorted(expected_set - given.keys())
    unknown = sorted(given.keys() - expected_set)
    if missing or unknown:
        raise VariablesMismatch(missing, unknown, sorted(expected_set))


def render_template(source: str, variables: Mapping[str, Any]) -> str:
    try:
        return str(_compiled(source).render(**variables))
    except UndefinedError as exc:  # e.g. an attribute missing on a given value
        raise InvalidInput(f"template rendering failed: {exc.message}", param="variables") from exc
    except SecurityError as exc:
        raise InvalidInput(f"template rejected by the sandbox: {exc}", param="variables") from exc
